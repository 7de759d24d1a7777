"""The 2-D test densities and the sample-quality measures every deep family is scored with."""

import math

import numpy as np
import pytest
import torch

from deep.densities import NAMES, get
from inference.errors import DataError, ModelError, UnknownNameError
from inference.evaluate import mode_coverage, wasserstein2

CLOSED = ("8gaussians", "checkerboard", "ring", "grid")


@pytest.mark.parametrize("name", CLOSED)
def test_density_integrates_to_one(name):
    p = get(name)
    # Midpoint rule with cells a fifth of the narrowest component's sd: the integrand is smooth on
    # that scale for the mixtures (rule error far below 1e-3); for the checkerboard the grid's cell
    # edges fall on the squares' edges, so the rule is exact up to float rounding.
    cell = min(p.mode_std / 5, 0.05) if p.mode_std else 0.05
    edges = np.arange(-p.box, p.box, cell) + cell / 2
    gx, gy = np.meshgrid(edges, edges, indexing="ij")
    if name == "ring":  # the mass sits within 0.1 of the unit circle: integrate on an annulus grid
        keep = np.abs(np.hypot(gx, gy) - 1) < 0.1
        pts = np.stack([gx[keep], gy[keep]], 1)
    else:
        pts = np.stack([gx.ravel(), gy.ravel()], 1)
    total = float(get(name).log_prob(torch.as_tensor(pts)).exp().sum()) * cell * cell
    assert total == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name", CLOSED)
def test_entropy_equals_mean_nll_of_samples(name):
    p = get(name)
    x = p.sample(20000, generator=0).double()
    nll = -p.log_prob(x)
    assert torch.isfinite(nll).all()  # every sample lies in the support
    # The mean NLL of exact samples estimates H(p) without bias; 5 standard errors bound it.
    se = float(nll.std()) / math.sqrt(len(nll))
    assert float(nll.mean()) == pytest.approx(p.entropy(), abs=5 * se + 1e-12)


def test_known_entropies():
    # Figures stated by FFJORD's densities: log 32 for the checkerboard (area 32), and the eight
    # Gaussians' 2.832 nats (close to, and below, the disjoint-component value log 8 + 1 + log(2 pi s^2)).
    assert get("checkerboard").entropy() == pytest.approx(math.log(32), abs=1e-12)
    assert get("8gaussians").entropy() == pytest.approx(2.832, abs=5e-4)
    s = 0.5 / math.sqrt(2)
    assert get("8gaussians").entropy() < math.log(8) + 1 + math.log(2 * math.pi * s * s)


def test_samples_follow_the_generator():
    p = get("8gaussians")
    assert torch.equal(p.sample(10, 3), p.sample(10, torch.Generator().manual_seed(3)))
    assert not torch.equal(p.sample(10, 3), p.sample(10, 4))


def test_moons_have_no_density_and_bad_input():
    with pytest.raises(ModelError, match="moons"):
        get("moons").log_prob(torch.zeros(3, 2))
    with pytest.raises(UnknownNameError, match="spiral"):
        get("spiral")
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        get("ring").log_prob(torch.zeros(3, 3))
    with pytest.raises(DataError, match="row 1"):
        get("ring").log_prob(torch.tensor([[0.0, 0.0], [math.nan, 0.0]]))
    with pytest.raises(DataError, match="n must be"):
        get("grid").sample(0, 0)
    with pytest.raises(DataError, match="generator"):
        get("grid").sample(5, "seed")
    assert set(NAMES) >= set(CLOSED) | {"moons"}


def test_wasserstein2_against_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    assert wasserstein2(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)  # a permutation of itself
    assert wasserstein2(x, x + [3.0, 4.0]) == pytest.approx(5.0, abs=1e-12)  # a translation moves by |shift|
    # In one dimension the optimal coupling pairs sorted values.
    a, b = rng.normal(size=(150, 1)), rng.normal(size=(150, 1)) * 2 + 1
    expected = math.sqrt(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
    assert wasserstein2(a, b) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(DataError, match="same shape"):
        wasserstein2(x, x[:10])


def test_mode_coverage():
    ring = get("ring")
    exact = mode_coverage(ring.sample(2500, 0).numpy(), ring.modes, ring.mode_std)
    assert exact["modes_captured"] == 8
    # Within 3 sd of a 2-D Gaussian's centre lies 1 - exp(-9/2) = 98.9% of its mass; with 2,500
    # draws the fraction's standard error is 0.002, so 5 of them bound it.
    assert exact["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.011)
    collapsed = np.repeat(ring.modes[:1], 100, 0)
    out = mode_coverage(collapsed, ring.modes, ring.mode_std)
    assert out["modes_captured"] == 1 and out["reverse_kl"] == pytest.approx(math.log(8))
    far = mode_coverage(np.full((10, 2), 5.0), ring.modes, ring.mode_std)
    assert far["modes_captured"] == 0 and far["high_quality"] == 0.0
    with pytest.raises(DataError, match="std"):
        mode_coverage(collapsed, ring.modes, 0.0)


def test_score_is_the_gradient_of_the_log_density():
    # against central differences of log_prob in float64 (step 1e-5: error O(h^2) ~ 1e-10 relative)
    p = get("8gaussians")
    x = p.sample(5, 1).double()
    h = 1e-5
    fd = torch.stack([(p.log_prob(x + h * e) - p.log_prob(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=x.dtype)], 1)
    torch.testing.assert_close(p.score(x), fd, rtol=1e-4, atol=1e-5)  # score's autograd runs in float32
