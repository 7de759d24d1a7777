"""inference.rng: an int seed or a key in, a key out; anything else a DataError naming the argument."""

import jax
import numpy as np
import pytest
import torch

from inference.errors import DataError
from inference.rng import as_generator, as_key, check_seed, int_seed


def test_an_int_becomes_jaxs_own_key_and_a_key_passes_through():
    # oracle: jax.random.PRNGKey of the same seed, bit for bit
    np.testing.assert_array_equal(as_key(3), jax.random.PRNGKey(3))
    np.testing.assert_array_equal(as_key(np.int64(3)), jax.random.PRNGKey(3))  # NumPy ints are ints
    raw = jax.random.PRNGKey(5)
    assert as_key(raw) is raw
    typed = jax.random.key(5)
    assert as_key(typed) is typed
    split = jax.random.split(raw)[1]  # a key made by JAX, not by a seed
    assert as_key(split) is split


def test_int_seed_is_reproducible_and_in_range():
    assert int_seed(11) == 11
    a, b = int_seed(jax.random.PRNGKey(0)), int_seed(jax.random.PRNGKey(0))
    assert a == b and 0 <= a < 2**31
    # oracle: the draw JAX itself makes from that key
    assert a == int(jax.random.randint(jax.random.PRNGKey(0), (), 0, 2**31 - 1))
    assert int_seed(jax.random.PRNGKey(1)) != a  # distinct keys, distinct seeds (here)


def test_an_int_becomes_a_seeded_torch_generator_and_a_generator_passes_through():
    # oracle: a generator seeded by torch's own manual_seed draws the same numbers
    reference = torch.Generator().manual_seed(4)
    np.testing.assert_array_equal(torch.rand(5, generator=as_generator(4)), torch.rand(5, generator=reference))
    gen = torch.Generator()
    assert as_generator(gen) is gen


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "3", True, None, np.zeros(3, np.uint32), np.zeros(2, np.int32)])
def test_a_bad_seed_or_key_is_a_data_error_naming_the_argument(bad):
    with pytest.raises(DataError, match="^rng_key must be"):
        as_key(bad, "rng_key")


@pytest.mark.parametrize("bad", [-1, 2**63, 2.0, "0", False, np.bool_(True)])
def test_check_seed_refuses_non_integers_and_out_of_range(bad):
    with pytest.raises(DataError, match="^my_seed must be"):
        check_seed(bad, "my_seed")
    with pytest.raises(DataError, match="^gen must be"):
        as_generator(bad, name="gen")
    with pytest.raises(DataError, match="^k must be"):
        int_seed(bad, "k")


def test_the_default_names_are_key_seed_and_generator():
    with pytest.raises(DataError, match="^key must be"):
        as_key("x")
    with pytest.raises(DataError, match="^seed must be"):
        check_seed(-3)
    with pytest.raises(DataError, match="^generator must be"):
        as_generator(None)


def _pgm_samplers():
    from genzoo.data import bn_network_path
    from pgm.bayesnet import BayesNet
    from pgm.conjugate import NormalNormal, simulate
    from pgm.hmm import HMM
    from pgm.mixture import GaussianMixture
    from pgm.topics import LDA, PLSA

    bn = BayesNet.from_bif(bn_network_path("asia"))
    hmm = HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.1, 0.9]])
    gmm = GaussianMixture([0.5, 0.5], [[0.0], [3.0]], [[[1.0]], [[1.0]]])
    return {
        "BayesNet.sample": lambda key: bn.sample(key, 3),
        "HMM.sample": lambda key: hmm.sample(key, 4),
        "GaussianMixture.sample": lambda key: gmm.sample(key, 3),
        "LDA.sample": lambda key: LDA(2, 5).sample(key, 2, 4),
        "PLSA.initialize": lambda key: {"phi": PLSA.initialize(key, 2, 5, 2).topic_word},
        "conjugate.simulate": lambda key: simulate(NormalNormal().model, key, n=3),
    }


@pytest.mark.parametrize("name", sorted(_pgm_samplers()))
def test_every_model_takes_an_int_seed_as_its_key(name):
    draw = _pgm_samplers()[name]
    by_seed, by_key = draw(3), draw(jax.random.PRNGKey(3))
    # oracle: the same function given JAX's key of that seed, bit for bit
    assert set(by_seed) == set(by_key)
    for site in by_key:
        np.testing.assert_array_equal(np.asarray(by_seed[site]), np.asarray(by_key[site]))
    with pytest.raises(DataError, match="^key must be"):
        draw("3")
