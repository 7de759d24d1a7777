"""Vector flows (RealNVP, NSF, MAF): log-determinants against the autodiff Jacobian, exact inverses,
densities that integrate to one, identity initialisation, the Pyro distribution, bad input."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from deep.flows import MAF, NSF, RealNVP
from deep.flows.transforms import SplineCoupling
from inference.errors import DataError, ModelError

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test, restored after

FLOWS = {
    "realnvp": lambda dim, seed: RealNVP(dim, hidden=(8, 8), num_layers=3, seed=seed),
    "nsf": lambda dim, seed: NSF(dim, hidden=(8, 8), num_layers=3, bins=5, bound=3.0, seed=seed),
    "maf": lambda dim, seed: MAF(dim, hidden=(8, 8), num_layers=3, seed=seed),
}


def perturbed(name, dim, dtype=torch.float64, scale=0.3, seed=0):
    """A flow whose weights are all redrawn N(0, scale^2): far from the identity it starts as."""
    flow = FLOWS[name](dim, seed).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=dtype))
    return flow


@pytest.mark.parametrize("name", list(FLOWS))
def test_log_det_equals_autodiff_jacobian(name):
    # oracle: log|det J| of the autodiff Jacobian of the map base -> data, and of its inverse
    flow = perturbed(name, 3)
    z = 2.0 * torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)  # (B, D)
    x, ladj = flow.transform.forward_and_log_det(z)
    _, ladj_inv = flow.transform.inverse_and_log_det(x)
    for b in range(z.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow.transform.forward_and_log_det(v[None])[0][0], z[b])
        jac_inv = torch.autograd.functional.jacobian(lambda v: flow.transform.inverse_and_log_det(v[None])[0][0], x[b])
        # float64: both sides are sums of a few dozen O(1) terms, rounding ~1e-15 each
        assert float(ladj[b].detach()) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-10)
        assert float(ladj_inv[b].detach()) == pytest.approx(float(torch.linalg.slogdet(jac_inv)[1]), abs=1e-10)
    # the Pyro Transform interface gives the same log-determinant
    assert torch.allclose(flow.transform.log_abs_det_jacobian(z, x), ladj, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(FLOWS))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_inverse_round_trip(name, dtype, tol):
    # invariant: inverse(forward(z)) == z and forward(inverse(x)) == x. Points reach |z| ~ 6, so the
    # spline's identity tails beyond B = 3 are crossed too. Tolerances: the issue's, float32 rounding
    # (6e-8 relative) times the few dozen operations of a 3-layer pass times |z| <= 6 is ~1e-5.
    flow = perturbed(name, 4, dtype=dtype)
    z = 2.0 * torch.randn(64, 4, generator=torch.Generator().manual_seed(3), dtype=dtype)  # (B, D)
    x = flow.transform(z)
    assert torch.allclose(flow.transform.inv(x), z, rtol=0, atol=tol)
    x2 = 2.0 * torch.randn(64, 4, generator=torch.Generator().manual_seed(4), dtype=dtype)
    z2, _ = flow.transform.inverse_and_log_det(x2)
    assert torch.allclose(flow.transform.forward_and_log_det(z2)[0], x2, rtol=0, atol=tol)


@pytest.mark.parametrize("name", list(FLOWS))
def test_density_integrates_to_one_on_a_grid(name):
    # oracle: a normalised density. Midpoint rule on [-L, L]^2 with step h; a smooth density's
    # midpoint error is ~h^2/24 * int |laplacian p|, < 1e-4 at h = 0.025 for these O(1)-curvature flows
    # (the spline flow's density is only piecewise smooth: its kinks add O(h) per kink line, ~1e-4).
    # The mass outside the box is bounded by sampling: none of 20,000 draws falls outside, so it is
    # below 3/20,000 = 1.5e-4 with 95% confidence. Total tolerance 1e-3.
    flow = perturbed(name, 2, scale=0.2)
    box, h = 8.0, 0.025
    draws = flow.sample((20_000,), generator=5)
    assert bool((draws.abs() < box).all())
    g = torch.arange(-box + h / 2, box, h, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)  # (G^2, 2)
    with torch.no_grad():
        mass = sum(float(flow.log_prob(chunk).exp().sum()) for chunk in grid.split(200_000)) * h * h
    assert mass == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name", list(FLOWS))
def test_identity_initialised_flow_is_the_base(name):
    # oracle: N(0, I) in closed form; zero-initialised last layers make every layer the identity
    flow = FLOWS[name](3, 0).to(torch.float64)
    x = 3.0 * torch.randn(50, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    # float64 rounding of a sum of 3 squares: 1e-14
    assert torch.allclose(flow.log_prob(x), expected, rtol=0, atol=1e-12)
    draws = flow.sample((5,), generator=7)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.allclose(draws, z, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(FLOWS))
def test_pyro_distribution_matches_log_prob(name):
    # the same density two ways: the flow's one-pass log_prob and Pyro's TransformedDistribution
    # (inverse then log_abs_det_jacobian), also inside a program through obs=
    flow = perturbed(name, 3)
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    d = flow.dist()
    assert d.event_shape == (3,)
    assert torch.allclose(d.log_prob(x), flow.log_prob(x), rtol=0, atol=1e-10)

    def program(data):
        with pyro.plate("data", data.shape[0]):
            pyro.sample("x", flow.dist(), obs=data)

    trace = pyro.poutine.trace(program).get_trace(x)
    assert float(trace.log_prob_sum().detach()) == pytest.approx(float(flow.log_prob(x).sum().detach()), abs=1e-9)
    draw = d.sample((4,))
    assert draw.shape == (4, 3)


def test_bad_input_is_a_typed_error():
    flow = RealNVP(2, hidden=(4,), num_layers=2, seed=0)
    with pytest.raises(DataError, match=r"x: expected shape \(B, 2\), got \(5, 3\)"):
        flow.log_prob(torch.zeros(5, 3))
    bad = torch.zeros(4, 2)
    bad[2, 1] = math.nan
    with pytest.raises(DataError, match="row 2"):
        flow.log_prob(bad)
    with pytest.raises(DataError, match="generator"):
        flow.sample((3,))
    with pytest.raises(ModelError, match="dim"):
        RealNVP(1, seed=0)
    with pytest.raises(ModelError, match="bins"):
        NSF(2, bins=1, seed=0)
    with pytest.raises(ModelError, match="bins"):
        SplineCoupling(torch.tensor([True, False]), bins=1)
    with pytest.raises(ModelError, match="mask"):
        SplineCoupling(torch.tensor([True, True]))
    with pytest.raises(ModelError, match="num_layers"):
        MAF(3, num_layers=0, seed=0)


@pytest.mark.parametrize("name", list(FLOWS))
def test_random_start_is_not_the_base_and_an_unknown_start_is_refused(name):
    # init="random" keeps torch's default initialisation of the conditioners' last layer (zuko's kind
    # of start): the untrained flow is then not its base distribution, and its last layers are not zero
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(4))
    base = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    make = {"realnvp": RealNVP, "nsf": NSF, "maf": MAF}[name]
    identity, random = make(3, hidden=(8,), seed=0), make(3, hidden=(8,), init="random", seed=0)
    with torch.no_grad():
        assert torch.allclose(identity.log_prob(x), base, atol=1e-5)  # float32 rounding of a few terms
        assert (random.log_prob(x) - base).abs().max() > 1e-2
    last = [m for m in random.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last.weight.abs().max() > 0
    assert random.config["init"] == "random" and "init" not in identity.config  # old configs unchanged
    with pytest.raises(ModelError, match="init must be one of"):
        make(3, hidden=(8,), init="zeros", seed=0)
