"""Flow matching: couplings by brute force, the optimal velocity and likelihood in closed form."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from deep.diffusion.flow_matching import FlowMatching, fit, ot_coupling
from deep.diffusion.gaussian import GaussianData
from deep.diffusion.schedules import CondOTScheduler
from inference.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test, restored after
D64 = torch.float64
MU = torch.tensor([1.0, -0.5], dtype=D64)
SIGMA = torch.tensor([[0.8, 0.3], [0.3, 0.5]], dtype=D64)


class OracleVelocity(nn.Module):
    def __init__(self):
        super().__init__()
        self.g = GaussianData(MU, SIGMA, CondOTScheduler())
        self.anchor = nn.Parameter(torch.zeros((), dtype=D64))

    def forward(self, x, t):
        return self.g.velocity(x, t)


def test_ot_coupling_is_the_brute_force_optimal_permutation():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 2, generator=gen, dtype=D64), torch.randn(6, 2, generator=gen, dtype=D64)
    paired = ot_coupling(x0, x1)
    cost = float(((paired - x1) ** 2).sum())
    best = min(float(((x0[list(p)] - x1) ** 2).sum()) for p in itertools.permutations(range(6)))  # 720 orders
    assert cost == pytest.approx(best, rel=1e-12)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x0.tolist()))  # a permutation of x0


@pytest.mark.parametrize("rounded", [False, True])
def test_ot_coupling_cost_equals_scipy_assignment_on_a_minibatch(rounded):
    """256 rows (the training minibatch), with and without tied costs: the network simplex's
    pairing costs what scipy's exact assignment costs (both are optimal; 1e-12 relative is float
    summation order over 256 terms)."""
    from scipy.optimize import linear_sum_assignment

    gen = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(256, 2, generator=gen, dtype=D64), 2 * torch.randn(256, 2, generator=gen, dtype=D64)
    if rounded:  # many equal distances: a degenerate assignment problem
        x0, x1 = x0.round(decimals=1), x1.round(decimals=1)
    paired = ot_coupling(x0, x1)
    cost_matrix = torch.cdist(x0, x1).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost_matrix)
    assert float(((paired - x1) ** 2).sum()) == pytest.approx(float(cost_matrix[rows, cols].sum()), rel=1e-12)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x0.tolist()))


def test_ot_coupling_falls_back_to_scipy_when_the_plan_is_not_a_permutation(monkeypatch):
    import ot

    gen = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(6, 2, generator=gen, dtype=D64), torch.randn(6, 2, generator=gen, dtype=D64)
    expected = ot_coupling(x0, x1)
    monkeypatch.setattr(ot, "emd", lambda a, b, m: np.full((6, 6), 1 / 36))  # a plan with no vertex
    assert torch.equal(ot_coupling(x0, x1), expected)


def test_ot_coupling_needs_equal_rows():
    with pytest.raises(DataError, match="equal numbers of rows, got 3 and 4"):
        ot_coupling(torch.zeros(3, 2), torch.zeros(4, 2))


def test_flow_with_the_optimal_velocity_has_the_gaussian_log_density_and_samples():
    model = FlowMatching(2, net=OracleVelocity())
    g = model.net.g
    x = g.sample(20, generator=1)
    out = model.log_prob(x, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(out.log_prob, g.log_prob(x), rtol=0, atol=1e-5)  # solver tolerance 1e-8
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(2), dtype=D64)
    samples = model.sample(z, method="dopri5", atol=1e-8, rtol=1e-8).x
    # the flow map of Gaussians is affine: x = MU + SIGMA^(1/2) z exactly (the symmetric root, since the
    # CondOT interpolation of N(0, I) and N(MU, SIGMA) is that map's displacement interpolation)
    L, Q = torch.linalg.eigh(SIGMA)
    root = Q @ torch.diag(L.sqrt()) @ Q.T
    torch.testing.assert_close(samples, MU + z @ root.T, rtol=0, atol=1e-6)  # solver tolerance 1e-8
    one = model.sample(z[:5], method="euler", num_steps=1)
    assert one.nfe == 1
    torch.testing.assert_close(one.x, z[:5] + g.velocity(z[:5], 0.0), rtol=0, atol=1e-12)


def test_sample_then_score_round_trip():
    torch.manual_seed(0)
    model = FlowMatching(2, hidden=(16, 16)).double()
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(3), dtype=D64)
    x = model.sample(z, method="dopri5", atol=1e-9, rtol=1e-9).x
    out = model.log_prob(x, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(out.x_noise, z, rtol=0, atol=1e-6)  # the backward solve returns the source
    # and Hutchinson's estimate agrees with the exact divergence within 4 of its standard errors
    h = model.log_prob(x, method="rk4", num_steps=30, divergence_method="hutchinson", num_probes=64, generator=0)
    assert ((h.log_prob - out.log_prob).abs() <= 4 * h.std_error + 1e-5).all()


@pytest.mark.parametrize("coupling", ["independent", "ot"])
def test_trained_network_approaches_the_optimal_velocity(coupling):
    g = GaussianData(MU, SIGMA, CondOTScheduler())
    torch.manual_seed(0)
    model = FlowMatching(2, hidden=(64, 64), coupling=coupling)
    gen = torch.Generator().manual_seed(4)
    t = torch.rand(2000, generator=gen, dtype=D64)
    xt = (t[:, None] * MU) + torch.randn(2000, 2, generator=gen, dtype=D64)

    def excess():
        with torch.no_grad():
            return float(((model.velocity(xt.float(), t.float()).double() - g.velocity(xt, t)) ** 2).sum(-1).mean())

    before = excess()
    r = fit(model, {"x": g.sample(4000, generator=0).float()}, seed=0, steps=300, batch_size=128, lr=3e-3)
    assert r.history.shape == (300,)
    if coupling == "independent":
        # its minimiser is the marginal velocity: the excess falls tenfold (measured ~40x)
        assert excess() < before / 10
    else:
        # minibatch OT changes the coupling, hence the regression target: its loss is far lower
        # (straighter paths) than the independent coupling's irreducible E Var[x_1 - x_0 | x_t] ~ 1
        assert float(r.history[-50:].mean()) < 0.5


def test_source_data_and_bad_input():
    model = FlowMatching(2, hidden=(8,))
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    fit(model, {"x": x, "source": x.flip(0)}, seed=0, steps=3, batch_size=8)
    with pytest.raises(DataError, match="source"):
        model.loss({"x": x, "source": x[:, :1]}, torch.Generator())
    with pytest.raises(DataError, match="coupling"):
        FlowMatching(2, coupling="sinkhorn")
    with pytest.raises(DataError, match="sigma"):
        FlowMatching(2, sigma=-0.1)
    with pytest.raises(DataError, match="positive integer"):
        model.sample(0, generator=0)
    with pytest.raises(DataError, match="generator"):
        model.sample(5)
    with pytest.raises(DataError, match="num_steps"):
        model.sample(5, generator=0, method="euler", num_steps=0)
    with pytest.raises(DataError, match=r"\(B, 2\)"):
        model.loss({"x": torch.zeros(4, 3)}, torch.Generator())
    nan = x.clone()
    nan[5] = math.nan
    with pytest.raises(DataError, match="5"):
        fit(model, {"x": nan}, seed=0, steps=4, batch_size=32)
