"""One bits_per_dim: closed forms for uniform data, discrete and dequantised routes agreeing."""

import math

import numpy as np
import pytest
from scipy.stats import entropy

from inference.errors import DataError
from inference.evaluate import bits_per_dim


def test_uniform_data_have_log2_levels_bits_either_way():
    d, levels = 64, 256
    # discrete route: P(v) = L^-D for every image; the bpd is log2 L = 8 exactly (up to rounding)
    assert bits_per_dim([-d * math.log(levels)] * 3, d) == pytest.approx(8.0, rel=1e-15)
    # dequantised route: the uniform density on [0, 1)^D has log p(y) = 0; the bound adds log2 L
    assert bits_per_dim([0.0, 0.0], d, levels=levels) == pytest.approx(8.0, rel=1e-15)


def test_expected_bpd_of_the_true_model_is_its_entropy_in_bits():
    # oracle: scipy's entropy of an i.i.d. categorical over D = 3 dimensions, per dimension
    p = np.array([0.5, 0.25, 0.125, 0.125])
    joint = np.einsum("i,j,k->ijk", p, p, p).ravel()  # every image of 3 pixels
    log_p = np.log(joint)
    # the mean over data weighted by p is the expectation: each image repeated 512 p times
    counts = np.rint(joint * 512).astype(int)  # exact: every joint probability is a multiple of 1/512
    assert counts.sum() == 512
    data_ll = np.repeat(log_p, counts)
    assert bits_per_dim(data_ll, 3) == pytest.approx(entropy(p, base=2), rel=1e-14)


def test_the_likelihood_module_uses_the_same_function():
    from inference import likelihood

    assert likelihood.bits_per_dim is bits_per_dim


@pytest.mark.parametrize("args, kwargs, message", [
    (([np.nan], 4), {}, "NaN or infinite"),
    (([], 4), {}, "empty"),
    (([0.0], 0), {}, "num_dims must be an integer >= 1"),
    (([0.0], 2.5), {}, "num_dims must be an integer >= 1"),
    (([0.0], 4), {"levels": 1}, "levels must be an integer >= 2"),
])
def test_bad_input_is_a_data_error_naming_it(args, kwargs, message):
    with pytest.raises(DataError, match=message):
        bits_per_dim(*args, **kwargs)
