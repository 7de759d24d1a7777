"""Kernel Stein discrepancy: the Stein kernel against autodiff, exact and shifted samples, bad input."""

import math

import numpy as np
import pytest
import torch

from inference.errors import DataError
from inference.stein import imq_kernel, ksd, stein_kernel_matrix



pytestmark = pytest.mark.usefixtures("one_thread")

def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("c,beta", [(0.7, -0.3)])
def test_stein_kernel_matches_autodiff(c, beta):
    # Oracle: u_p(x, y) assembled from the autodiff gradients and mixed Hessian of k(x, y).
    d = 3
    x = torch.randn(4, d, generator=_gen(0), dtype=torch.float64)
    s = torch.randn(4, d, generator=_gen(1), dtype=torch.float64)  # any vectors serve as scores

    def k(a, b):
        return (c * c + ((a - b) ** 2).sum()) ** beta

    expected = torch.empty(4, 4, dtype=torch.float64)
    for i in range(4):
        for j in range(4):
            a, b = x[i].clone().requires_grad_(True), x[j].clone().requires_grad_(True)
            kv = k(a, b)
            gx, gy = torch.autograd.grad(kv, (a, b), create_graph=True)
            trace = sum(torch.autograd.grad(gx[l], b, retain_graph=True)[0][l] for l in range(d))  # tr d/dy d/dx k
            expected[i, j] = (s[i] @ s[j] * kv + s[i] @ gy + gx @ s[j] + trace).detach()
    # Same float64 arithmetic in another order: agreement to ~1e-15 relative; 1e-12 leaves margin.
    np.testing.assert_allclose(stein_kernel_matrix(x, s, c, beta).numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(imq_kernel(x, x, c, beta).numpy(),
                               [[float(k(a, b)) for b in x] for a in x], rtol=1e-12)


def test_exact_samples_have_ksd_near_zero_within_the_standard_error():
    # Target N(m, diag(v)) in 2-D, score -(x - m) / v. With exact samples the U-statistic has mean 0
    # and its stated error overstates its spread (degenerate case: by about sqrt(3), see the module),
    # so |KSD^2| <= 3 SE holds with room (a Gaussian tail at 3 * sqrt(3) = 5.2 sd; the null law is a
    # weighted chi-square mixture, heavier on the right, for which Chebyshev still gives < 4%).
    m, v = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)

    def score(x):
        return -(x - m) / v

    z = []
    for seed in range(8):
        x = m + v.sqrt() * torch.randn(400, 2, generator=_gen(seed), dtype=torch.float64)
        out = ksd(x, score)
        assert abs(out.ksd2) <= 3 * out.standard_error
        z.append(out.ksd2 / out.standard_error)
    # Over 8 seeds the mean z-score of an unbiased statistic is within 3 / sqrt(8) of 0 in units of
    # the (conservative) stated error.
    assert abs(np.mean(z)) <= 3 / math.sqrt(8)


@pytest.mark.parametrize("shift", [0.5, 1.0])
def test_shifted_samples_are_detected(shift):
    x = torch.randn(400, 2, generator=_gen(3), dtype=torch.float64)
    exact = ksd(x, lambda x: -x)
    moved = ksd(x + shift, lambda x: -x)
    # The population KSD^2 of N(shift, I) against N(0, I) is positive and grows with the shift. Under
    # the null the statistic exceeds 4 of its (conservative) standard errors with probability below
    # 1e-3 even with the chi-square mixture's right tail; the shifted samples must clear that.
    assert moved.ksd2 > 4 * moved.standard_error
    assert moved.ksd2 > exact.ksd2 + 4 * exact.standard_error
    # A precomputed score array gives the same number as the score function.
    assert ksd(x + shift, -(x + shift)).ksd2 == pytest.approx(moved.ksd2, rel=1e-12)


def test_larger_shift_larger_discrepancy():
    x = torch.randn(200, 2, generator=_gen(4), dtype=torch.float64)
    values = [ksd(x + s, lambda x: -x).ksd2 for s in (0.25, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_bad_input():
    x = torch.randn(10, 2, generator=_gen(5), dtype=torch.float64)
    with pytest.raises(DataError, match=r"samples must have shape \(n, d\)"):
        ksd(torch.zeros(10), lambda x: -x)
    with pytest.raises(DataError, match="row 3"):
        bad = x.clone()
        bad[3, 1] = float("nan")
        ksd(bad, lambda x: -x)
    with pytest.raises(DataError, match="scores must have the samples' shape"):
        ksd(x, torch.zeros(10, 3))
    with pytest.raises(DataError, match="beta"):
        ksd(x, lambda x: -x, beta=0.5)
    with pytest.raises(DataError, match="c must be positive"):
        ksd(x, lambda x: -x, c=0.0)
    with pytest.raises(DataError, match="at least 3"):
        ksd(x[:2], lambda x: -x)
