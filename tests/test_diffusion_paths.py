"""Schedules, paths, the Gaussian closed forms and the ODE solver layer, against analytic answers."""

import math

import pytest
import torch

from deep.diffusion.gaussian import GaussianData
from deep.diffusion.ode import ODESolver, divergence
from deep.diffusion.paths import AffineProbPath, CondOTProbPath
from deep.diffusion.schedules import (CondOTScheduler, DiscreteSchedule, SubVPScheduler, VEScheduler, VPScheduler,
                                      cosine_betas, linear_betas, sde_coefficients, vp_betas)
from inference.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test, restored after
D64 = torch.float64
SCHEDULERS = [CondOTScheduler(), VPScheduler(), SubVPScheduler(), VEScheduler()]
MU = torch.tensor([1.0, -0.5], dtype=D64)
SIGMA = torch.tensor([[0.8, 0.3], [0.3, 0.5]], dtype=D64)


@pytest.mark.parametrize("sch", SCHEDULERS, ids=lambda s: s.name)
def test_scheduler_derivatives_equal_autograd(sch):
    t = torch.linspace(0.05, 0.95, 7, dtype=D64, requires_grad=True)
    out = sch(t)
    if out.alpha_t.requires_grad:
        (da,) = torch.autograd.grad(out.alpha_t.sum(), t, retain_graph=True)
    else:  # VE: alpha_t = 1 does not depend on t
        da = torch.zeros_like(t)
    (ds,) = torch.autograd.grad(out.sigma_t.sum(), t)
    # Both sides are the same float64 functions differentiated two ways: rounding only.
    torch.testing.assert_close(out.d_alpha_t.detach(), da, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.d_sigma_t.detach(), ds, rtol=1e-10, atol=1e-12)


def test_sde_coefficients_are_song_et_al():
    s = torch.linspace(0.1, 0.9, 5, dtype=D64)
    vp, svp, ve = VPScheduler(), SubVPScheduler(), VEScheduler(0.01, 10.0)
    beta = 0.1 + s * 19.9
    abar = torch.exp(-(0.1 * s + 0.5 * 19.9 * s**2))
    f, g2 = sde_coefficients(vp, 1 - s)
    torch.testing.assert_close(f, -0.5 * beta, rtol=1e-12, atol=0)  # Song et al. eq. (11)
    torch.testing.assert_close(g2, beta, rtol=1e-10, atol=0)
    f, g2 = sde_coefficients(svp, 1 - s)
    torch.testing.assert_close(f, -0.5 * beta, rtol=1e-12, atol=0)
    torch.testing.assert_close(g2, beta * (1 - abar**2), rtol=1e-10, atol=0)  # eq. (12)
    f, g2 = sde_coefficients(ve, 1 - s)
    sig = 0.01 * 1000.0**s
    torch.testing.assert_close(f, torch.zeros_like(s), rtol=0, atol=0)
    torch.testing.assert_close(g2, 2 * sig**2 * math.log(1000.0), rtol=1e-10, atol=0)  # d sigma^2 / ds, eq. (9)


def test_vp_betas_discretise_the_vp_sde_and_approach_ho_linear():
    sched = DiscreteSchedule(vp_betas(1000))
    s = torch.arange(1, 1001, dtype=D64) / 1000
    torch.testing.assert_close(sched.alphas_cumprod, torch.exp(VPScheduler().log_abar(s)), rtol=1e-10, atol=0)
    # beta_i = 1 - exp(-int beta) over a cell of width 1/T: within (beta_max / T)^2 / 2 + the
    # half-cell offset 19.9 / (2 T^2) of Ho's 1e-4..0.02 grid.
    assert float((vp_betas(1000) - linear_betas(1000)).abs().max()) < 3e-4


def test_discrete_schedule_posterior_is_bayes_rule():
    sched = DiscreteSchedule(cosine_betas(20))
    x_data = 0.7
    for i in (2, 7, 20):  # step i (1-based); index i - 1
        ab_prev, ab, beta = sched.alphas_cumprod[i - 2], sched.alphas_cumprod[i - 1], sched.betas[i - 1]
        # Joint of (x_{i-1}, x_i) given x_data: x_{i-1} = sqrt(ab_prev) x + e1, x_i = sqrt(1 - beta) x_{i-1} + e2.
        m1, v1 = ab_prev.sqrt() * x_data, 1 - ab_prev
        m2, v2, c12 = (1 - beta).sqrt() * m1, (1 - beta) * v1 + beta, (1 - beta).sqrt() * v1
        x_i = 0.3
        mean = m1 + c12 / v2 * (x_i - m2)  # Gaussian conditioning
        var = v1 - c12**2 / v2
        assert float(sched.coef_data[i - 1] * x_data + sched.coef_xt[i - 1] * x_i) == pytest.approx(float(mean), abs=1e-12)
        assert float(sched.posterior_variance[i - 1]) == pytest.approx(float(var), abs=1e-12)
        assert float(v2) == pytest.approx(float(1 - ab), abs=1e-12)  # the closed-form marginal
    assert float(sched.posterior_variance[0]) == 0.0


def test_ddpm_forward_chain_matches_closed_form_marginals():
    sched = DiscreteSchedule(linear_betas(200, 1e-3, 0.05))
    gen = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.tensor([1.5, -2.0], dtype=D64)
    x = x0.expand(n, 2).clone()
    for i in range(1, 201):
        beta = sched.betas[i - 1]
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(n, 2, generator=gen, dtype=D64)  # q(x_i | x_{i-1})
        if i in (1, 10, 50, 200):
            ab = sched.alphas_cumprod[i - 1]
            # mean: 5 standard errors sqrt((1 - ab)/n); variance: 5 se of a Gaussian variance, var sqrt(2/n)
            se_m, se_v = math.sqrt((1 - ab) / n), (1 - ab) * math.sqrt(2 / n)
            torch.testing.assert_close(x.mean(0), ab.sqrt() * x0, rtol=0, atol=5 * se_m)
            torch.testing.assert_close(x.var(0), (1 - ab).expand(2), rtol=0, atol=5 * se_v)


def test_bad_schedules_and_times():
    with pytest.raises(DataError, match="beta_3"):
        DiscreteSchedule(torch.tensor([0.1, 0.2, 1.0]))
    with pytest.raises(DataError, match="beta_1"):
        DiscreteSchedule(torch.tensor([0.0, 0.2]))
    with pytest.raises(DataError, match="positive integer"):
        linear_betas(0)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        VPScheduler()(torch.tensor([0.5, 1.2]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        CondOTProbPath().sample(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([-0.1, 0.5]))
    with pytest.raises(DataError, match="same shape"):
        CondOTProbPath().sample(torch.zeros(2, 2), torch.zeros(3, 2), 0.5)
    with pytest.raises(DataError, match="beta_max"):
        VPScheduler(beta_min=1.0, beta_max=0.5)


@pytest.mark.parametrize("sch", SCHEDULERS, ids=lambda s: s.name)
def test_gaussian_oracle_score_is_autograd_of_log_density_and_velocity_solves_continuity(sch):
    g = GaussianData(MU, SIGMA, sch)
    x = torch.tensor([[0.3, 0.2], [-1.0, 2.0], [2.0, -1.0]], dtype=D64, requires_grad=True)
    t = 0.6
    (score,) = torch.autograd.grad(g.marginal_log_prob(x, t).sum(), x)
    torch.testing.assert_close(g.score(x.detach(), t), score, rtol=1e-10, atol=1e-12)
    # Continuity equation: d/dt log p_t(x) = -div u - u . grad log p_t (u affine: exact divergence).
    h = 1e-5
    dlogp_dt = (g.marginal_log_prob(x.detach(), t + h) - g.marginal_log_prob(x.detach(), t - h)) / (2 * h)
    xg = x.detach().clone().requires_grad_(True)
    u = g.velocity(xg, t)
    div = divergence(u, xg)
    rhs = -div - (u * score).sum(-1)
    # central difference error O(h^2 * third derivative) ~ 1e-9; float64 cancellation ~ 1e-16 / h = 1e-11
    torch.testing.assert_close(dlogp_dt, rhs.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("sch", SCHEDULERS, ids=lambda s: s.name)
def test_path_conversions_agree_with_the_oracle(sch):
    g = GaussianData(MU, SIGMA, sch)
    path = AffineProbPath(sch)
    x = torch.tensor([[0.3, 0.2], [-1.0, 2.0]], dtype=D64)
    t = torch.tensor([0.3, 0.8], dtype=D64)
    eps, score, u, x1 = g.epsilon(x, t), g.score(x, t), g.velocity(x, t), g.denoiser(x, t)
    for got, want in [(path.epsilon_to_velocity(eps, x, t), u), (path.score_to_velocity(score, x, t), u),
                      (path.velocity_to_epsilon(u, x, t), eps), (path.velocity_to_score(u, x, t), score),
                      (path.epsilon_to_x1(eps, x, t), x1), (path.x1_to_velocity(x1, x, t), u),
                      (path.x1_to_epsilon(x1, x, t), eps), (path.epsilon_to_score(eps, x, t), score)]:
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)  # algebra in float64


def test_path_sample_conditional_velocity_is_the_time_derivative():
    path = AffineProbPath(VPScheduler())
    gen = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(4, 2, generator=gen, dtype=D64), torch.randn(4, 2, generator=gen, dtype=D64)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=D64)
    h = 1e-6
    fd = (path.sample(x0, x1, t + h).x_t - path.sample(x0, x1, t - h).x_t) / (2 * h)
    torch.testing.assert_close(path.sample(x0, x1, t).dx_t, fd, rtol=1e-7, atol=1e-8)  # O(h^2) + 1e-16/h


# --------------------------------------------------------------------------- the solver
A = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=D64)  # a damped rotation: x(t) = expm(A t) x0


def _linear(x, t):
    return x @ A.T


def test_adaptive_solver_reaches_its_tolerance_on_an_analytic_field():
    x0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=D64)
    exact = x0 @ torch.linalg.matrix_exp(A).T
    out = ODESolver(_linear).sample(x0, method="dopri5", atol=1e-9, rtol=1e-9)
    # dopri5's local error control at 1e-9 over a smooth field: global error a small multiple of it
    torch.testing.assert_close(out.x, exact, rtol=0, atol=1e-7)
    assert out.nfe > 6


@pytest.mark.parametrize("method,order,per_step", [("euler", 1, 1), ("midpoint", 2, 2), ("rk4", 4, 4)])
def test_fixed_step_solvers_converge_at_their_order_and_count_nfe(method, order, per_step):
    x0 = torch.tensor([[1.0, 0.0]], dtype=D64)
    exact = x0 @ torch.linalg.matrix_exp(A).T
    errs = []
    for n in (8, 16, 32):
        out = ODESolver(_linear).sample(x0, method=method, num_steps=n)
        assert out.nfe == per_step * n
        errs.append(float((out.x - exact).norm()))
    # Halving the step divides the global error by 2^order, up to the next term of its expansion.
    for a, b in zip(errs, errs[1:]):
        assert a / b == pytest.approx(2**order, rel=0.25)


def test_solver_bad_input():
    solver = ODESolver(_linear)
    x = torch.zeros(3, 2, dtype=D64)
    for bad in (0, -1, 2.5):
        with pytest.raises(DataError, match="num_steps"):
            solver.sample(x, method="euler", num_steps=bad)
    with pytest.raises(DataError, match="t1"):
        solver.sample(x, t1=1.5)
    with pytest.raises(DataError, match="unknown ODE method"):
        solver.sample(x, method="leapfrog")
    with pytest.raises(DataError, match=r"\(B, D\)"):
        solver.sample(torch.zeros(3, dtype=D64))
    with pytest.raises(DataError, match="row 1"):
        solver.sample(torch.tensor([[0.0, 0.0], [float("nan"), 0.0]], dtype=D64))
    with pytest.raises(DataError, match="generator"):
        solver.log_likelihood(x, lambda z: z.sum(-1), divergence_method="hutchinson")


@pytest.mark.parametrize("sch", [CondOTScheduler(), VPScheduler()], ids=lambda s: s.name)
def test_ode_likelihood_of_affine_field_is_the_gaussian_log_density(sch):
    g = GaussianData(MU, SIGMA, sch)
    t_data = 1.0 if sch.name == "condot" else 0.999  # VP's sigma_t vanishes at t = 1
    x = g.sample(5, generator=3)
    out = ODESolver(g.velocity).log_likelihood(x, lambda z: g.marginal_log_prob(z, 0.0), t_data=t_data,
                                               method="dopri5", atol=1e-9, rtol=1e-9)
    # The exact marginal log-density at t_data; the solver's tolerance 1e-9 bounds the error.
    torch.testing.assert_close(out.log_prob, g.marginal_log_prob(x, t_data), rtol=0, atol=1e-6)
    if sch.name == "condot":  # the noise end is exactly N(0, I) and p_1 = N(mu, Sigma)
        torch.testing.assert_close(out.log_prob, g.log_prob(x), rtol=0, atol=1e-6)


def test_hutchinson_likelihood_is_unbiased_within_its_standard_error():
    g = GaussianData(MU, SIGMA, CondOTScheduler())
    x = g.sample(4, generator=5)
    solver = ODESolver(g.velocity)
    exact = g.log_prob(x)
    out = solver.log_likelihood(x, lambda z: g.marginal_log_prob(z, 0.0), method="rk4", num_steps=40,
                                divergence_method="hutchinson", num_probes=200, generator=0)
    assert (out.std_error > 0).all()
    # rk4 with 40 steps: discretisation error ~1e-7, far below the Monte Carlo error; 4 standard errors.
    assert ((out.log_prob - exact).abs() <= 4 * out.std_error).all()
    # The same probes give the same answer (randomness only through the generator).
    again = solver.log_likelihood(x, lambda z: g.marginal_log_prob(z, 0.0), method="rk4", num_steps=40,
                                  divergence_method="hutchinson", num_probes=200, generator=0)
    torch.testing.assert_close(out.log_prob, again.log_prob, rtol=0, atol=0)
