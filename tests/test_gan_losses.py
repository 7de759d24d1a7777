"""GAN objectives against analytic answers on two 1-D Gaussians, and WGAN-GP's penalty."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from deep.gan_losses import (F_DIVERGENCES, LOSSES, f_divergence_bound, gradient_penalty, make_loss, pack,
                              r1_penalty)
from inference.errors import DataError, UnknownNameError

# Data P = N(0, 1), model Q = N(0.5, 1.2^2): Q is wider than P, so every divergence below (Pearson's
# chi-square included: p^2 / q decays like exp(-0.65 x^2)) is finite.
MU_P, SD_P, MU_Q, SD_Q = 0.0, 1.0, 0.5, 1.2
GRID = np.linspace(-12, 12, 4801)  # spacing 5e-3
DX = GRID[1] - GRID[0]



pytestmark = pytest.mark.usefixtures("one_thread")

def _densities(x):
    return stats.norm.pdf(x, MU_P, SD_P), stats.norm.pdf(x, MU_Q, SD_Q)


def _quadrature(values):
    # Trapezoid rule with h = 5e-3 on integrands smooth on the unit scale: error h^2/12 * int|f''|
    # ~ 2e-6 * O(1), far smaller for these analytic integrands (the rule is spectrally accurate for
    # smooth functions that vanish at both ends); and the tails beyond |x| = 12 carry less than e^-40 of either density.
    return float(np.trapezoid(values, dx=DX))


def _f_divergence_by_quadrature(name):
    p, q = _densities(GRID)
    u = torch.as_tensor(p / q)
    return _quadrature(q * F_DIVERGENCES[name].f(u).numpy())


def _inverse_activation(name, t):
    """The raw critic output v with g_f(v) = t, derived by hand from each g_f (independent of the module)."""
    return {
        "kl": t,
        "reverse_kl": -torch.log(-t),
        "js": -torch.log(2 * torch.exp(-t) - 1),
        "pearson": t,
        "hellinger": -torch.log(1 - t),
    }[name]


def _f_prime(name, u):
    """f'(u), derived by hand from each f."""
    return {
        "kl": 1 + torch.log(u),
        "reverse_kl": -1 / u,
        "js": torch.log(2 * u / (1 + u)),
        "pearson": 2 * (u - 1),
        "hellinger": 1 - 1 / torch.sqrt(u),
    }[name]


def test_kl_quadrature_matches_the_closed_form():
    # Oracle for the quadrature itself: KL(N(0,1) || N(0.5, 1.2^2)) in closed form.
    closed = math.log(SD_Q / SD_P) + (SD_P**2 + (MU_P - MU_Q) ** 2) / (2 * SD_Q**2) - 0.5
    assert _f_divergence_by_quadrature("kl") == pytest.approx(closed, abs=1e-7)


@pytest.mark.parametrize("name", list(F_DIVERGENCES))
def test_optimal_critic_recovers_the_density_ratio(name):
    # Maximise the bound pointwise: for each x, sup_v  r(x) g(v) - f*(g(v)) with r = p/q (the integrand
    # of the bound divided by q). The objective is concave in t = g(v), so L-BFGS finds the maximiser;
    # f-GAN's claim is that it is T* = f'(r), i.e. the module's ratio(g(v*)) gives back r.
    x = np.linspace(-3, 3, 25)
    p, q = _densities(x)
    r = torch.as_tensor(p / q)
    div = F_DIVERGENCES[name]
    v = torch.zeros_like(r, requires_grad=True)
    opt = torch.optim.LBFGS([v], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        t = div.activation(v)
        loss = -(r * t - div.conjugate(t)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    recovered = div.ratio(div.activation(v.detach()))
    # The pointwise objective is smooth and strictly concave near the optimum with curvature ~ 1/r;
    # L-BFGS in float64 reaches a gradient of 1e-12, so the ratio is right to far better than 1e-6.
    np.testing.assert_allclose(recovered.numpy(), r.numpy(), rtol=1e-6)
    # and the critic output is f'(r) (hand-derived f'):
    np.testing.assert_allclose(div.activation(v.detach()).numpy(), _f_prime(name, r).numpy(), atol=1e-6)


@pytest.mark.parametrize("name", list(F_DIVERGENCES))
def test_bound_reaches_the_divergence_and_never_exceeds_it(name):
    div = F_DIVERGENCES[name]
    d_f = _f_divergence_by_quadrature(name)
    p, q = _densities(GRID)
    r = torch.as_tensor(p / q)
    t_star = _f_prime(name, r)

    def bound(t):
        return _quadrature(p * t.numpy() - q * div.conjugate(t).numpy())

    # 1. At the optimal critic T* = f'(p/q) the bound equals D_f (both by the same quadrature: 1e-6).
    assert bound(t_star) == pytest.approx(d_f, abs=1e-6)
    # 2. Any other critic gives less: random smooth critics, and T* perturbed. Pointwise,
    #    r t - f*(t) <= f(r) by the Fenchel-Young inequality, so the integral can only be lower
    #    (the 1e-9 slack covers quadrature rounding).
    gen = torch.Generator().manual_seed(0)
    x = torch.as_tensor(GRID)[:, None]
    for _ in range(8):
        net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
        for param in net.parameters():
            param.data = torch.randn(param.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            t = div.activation(net(x).squeeze(-1))
        assert bound(t) <= d_f + 1e-9
    for eps in (0.3, 0.05, 0.01):
        with torch.no_grad():
            v = _inverse_activation(name, t_star) + eps * torch.sin(torch.as_tensor(GRID))
        assert bound(div.activation(v)) < d_f
    # 3. The module's Monte Carlo bound on samples at the optimal critic estimates D_f without bias:
    #    within 5 standard errors (the two sample means are independent).
    n = 50_000
    xp = torch.randn(n, generator=gen, dtype=torch.float64) * SD_P + MU_P
    xq = torch.randn(n, generator=gen, dtype=torch.float64) * SD_Q + MU_Q

    def v_star(xs):
        pp, qq = _densities(xs.numpy())
        return _inverse_activation(name, _f_prime(name, torch.as_tensor(pp / qq)))

    vp, vq = v_star(xp), v_star(xq)
    estimate = float(f_divergence_bound(name, vp, vq))
    se = math.sqrt(float(div.activation(vp).var()) / n + float(div.conjugate(div.activation(vq)).var()) / n)
    assert estimate == pytest.approx(d_f, abs=5 * se)


def test_critic_loss_is_minus_the_bound_and_gan_loss_at_the_optimum():
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(64, 2, generator=gen), torch.randn(64, 2, generator=gen) + 1
    critic = torch.nn.Linear(2, 1)
    with torch.no_grad():
        v_r, v_f = critic(real).squeeze(-1), critic(fake).squeeze(-1)
    for name in F_DIVERGENCES:
        with torch.no_grad():
            loss = make_loss(name).critic_loss(critic, real, fake, gen)
        assert float(loss) == pytest.approx(-float(f_divergence_bound(name, v_r, v_f)), rel=1e-6)
    # The JS bound's stable form equals the table's conjugate composed with the activation.
    js = F_DIVERGENCES["js"]
    direct = js.activation(v_r).mean() - js.conjugate(js.activation(v_f)).mean()
    assert float(f_divergence_bound("js", v_r, v_f)) == pytest.approx(float(direct), rel=1e-5)
    # Goodfellow et al.: at the optimal discriminator D = p / (p + q) the GAN critic loss is
    # log 4 - 2 JS(P, Q). Logits of D* are log(p/q); JS by quadrature on the two Gaussians.
    p, q = _densities(GRID)
    js_div = 0.5 * _quadrature(p * np.log(2 * p / (p + q)) + q * np.log(2 * q / (p + q)))
    n = 50_000
    xp = torch.randn(n, generator=gen, dtype=torch.float64) * SD_P + MU_P
    xq = torch.randn(n, generator=gen, dtype=torch.float64) * SD_Q + MU_Q

    class Optimal(torch.nn.Module):
        def forward(self, x):
            pp, qq = _densities(x.numpy())
            return torch.as_tensor(np.log(pp / qq))

    loss_terms_p = torch.nn.functional.softplus(-Optimal()(xp[:, None]).squeeze(-1))
    loss_terms_q = torch.nn.functional.softplus(Optimal()(xq[:, None]).squeeze(-1))
    value = float(make_loss("gan").critic_loss(Optimal(), xp[:, None], xq[:, None], gen))
    se = math.sqrt(float(loss_terms_p.var()) / n + float(loss_terms_q.var()) / n)
    assert value == pytest.approx(math.log(4) - 2 * js_div, abs=5 * se)  # 5 standard errors


def test_wgan_gp_penalty_is_zero_for_a_1_lipschitz_linear_critic():
    gen = torch.Generator().manual_seed(2)
    real, fake = torch.randn(32, 3, generator=gen), torch.randn(32, 3, generator=gen) * 2
    critic = torch.nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight /= critic.weight.norm()  # gradient norm exactly 1 everywhere
    # (|grad| - 1)^2 with |grad| = 1 up to float32 rounding of the normalised weight (~1e-7): ~1e-14.
    assert float(gradient_penalty(critic, real, fake, gen).detach()) < 1e-12
    with torch.no_grad():
        critic.weight *= 3.0  # |grad| = 3 everywhere: penalty (3 - 1)^2 = 4
    assert float(gradient_penalty(critic, real, fake, gen).detach()) == pytest.approx(4.0, rel=1e-5)
    # Packed by 2 the critic reads 6 inputs; a unit-norm weight again gives zero penalty, and the
    # loss is E_Q[V] - E_P[V] exactly.
    packed = torch.nn.Linear(6, 1)
    with torch.no_grad():
        packed.weight /= packed.weight.norm()
    loss = make_loss("wgan_gp", pack=2)
    expected = packed(pack(fake, 2)).mean() - packed(pack(real, 2)).mean()
    assert float(loss.critic_loss(packed, real, fake, gen).detach()) == pytest.approx(float(expected.detach()), abs=1e-5)
    assert loss.critic_steps == 5 and make_loss("gan").critic_steps == 1


def test_r1_penalty_against_closed_forms():
    gen = torch.Generator().manual_seed(4)
    real = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    # Linear critic V = w.x + b: the gradient is w everywhere, the penalty ||w||^2 exactly (float64:
    # the mean of 64 equal terms and the quadratic's sums below round at ~1e-14 relative; rel=1e-12).
    linear = torch.nn.Linear(3, 1).double()
    w2 = float(linear.weight.detach().pow(2).sum())
    assert float(r1_penalty(linear, real).detach()) == pytest.approx(w2, rel=1e-12)

    # Quadratic critic V = c ||x||^2: the gradient is 2 c x, the penalty 4 c^2 mean ||x||^2.
    class Quadratic(torch.nn.Module):
        def forward(self, x):
            return 0.7 * x.pow(2).sum(1, keepdim=True)

    expected = 4 * 0.7 ** 2 * float(real.pow(2).sum(1).mean())
    assert float(r1_penalty(Quadratic(), real).detach()) == pytest.approx(expected, rel=1e-12)
    # A constant critic (the optimum once the model matches the data) pays nothing.
    constant = torch.nn.Linear(3, 1).double()
    with torch.no_grad():
        constant.weight.zero_()
    assert float(r1_penalty(constant, real).detach()) == 0.0


@pytest.mark.parametrize("name", LOSSES)
def test_r1_adds_half_gamma_times_the_penalty_on_packed_data_to_every_critic_loss(name):
    gen = torch.Generator().manual_seed(6)
    real, fake = torch.randn(16, 2, generator=gen), torch.randn(16, 2, generator=gen)
    critic = torch.nn.Linear(4, 1)  # reads 2 packed 2-D samples: R1 is ||w||^2 on the packed input
    plain = make_loss(name, pack=2).critic_loss(critic, real, fake, torch.Generator().manual_seed(1))
    with_r1 = make_loss(name, pack=2, r1=3.0).critic_loss(critic, real, fake, torch.Generator().manual_seed(1))
    # Same critic outputs and the same WGAN-GP mixing draws (same seed): the difference is the
    # penalty alone, up to float32 rounding of losses of order 1 (~1e-7 relative).
    expected = 0.5 * 3.0 * float(critic.weight.detach().pow(2).sum())
    assert float((with_r1 - plain).detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    (grad,) = torch.autograd.grad(with_r1, critic.weight)
    (grad_plain,) = torch.autograd.grad(make_loss(name, pack=2).critic_loss(
        critic, real, fake, torch.Generator().manual_seed(1)), critic.weight)
    # d/dw of (gamma / 2) ||w||^2 is gamma w: the penalty's gradient reaches the critic's weights.
    np.testing.assert_allclose((grad - grad_plain).numpy(), 3.0 * critic.weight.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_packing_concatenates_consecutive_samples():
    x = torch.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(pack(x, 3).numpy(), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])


@pytest.mark.parametrize("name", LOSSES)
def test_generator_losses_have_gradients(name):
    gen = torch.Generator().manual_seed(3)
    g = torch.nn.Linear(2, 2)
    z = torch.randn(8, 2, generator=gen)
    critic = torch.nn.Linear(4, 1)
    for form in ("nonsaturating", "saddle"):
        fake = g(z)
        loss = make_loss(name, pack=2, generator_form=form).generator_loss(critic, fake)
        (grad,) = torch.autograd.grad(loss, g.weight)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(UnknownNameError, match="chi2"):
        make_loss("chi2")
    with pytest.raises(UnknownNameError, match="tv"):
        f_divergence_bound("tv", torch.zeros(2), torch.zeros(2))
    with pytest.raises(DataError, match="pack"):
        make_loss("gan", pack=0)
    with pytest.raises(DataError, match="critic_steps"):
        make_loss("gan", critic_steps=0)
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(DataError, match="r1"):
            make_loss("kl", r1=bad)
    with pytest.raises(DataError, match="multiple of pack=4"):
        make_loss("gan", pack=4).critic_loss(torch.nn.Linear(8, 1), torch.zeros(6, 2), torch.zeros(6, 2), 0)
    with pytest.raises(DataError, match=r"shape \(B, D\)"):
        pack(torch.zeros(4), 2)


def test_js_fgan_is_the_nonsaturating_gan_up_to_constants():
    # g(v) = log 2 - softplus(-v), f*(g(v)) = softplus(v) - log 2: the JS critic loss is the GAN's
    # minus 2 log 2, the non-saturating JS generator loss the GAN's minus log 2; gradients equal.
    gen = torch.Generator().manual_seed(5)
    real, fake = torch.randn(16, 2, generator=gen), torch.randn(16, 2, generator=gen)
    critic = torch.nn.Linear(2, 1)
    losses = {}
    for name in ("gan", "js"):
        loss = make_loss(name)
        d = loss.critic_loss(critic, real, fake, gen)
        g = loss.generator_loss(critic, fake)
        grads = torch.autograd.grad(d + 3 * g, list(critic.parameters()))
        losses[name] = (float(d.detach()), float(g.detach()), grads)
    # float32 rounding of O(1) sums: 1e-6.
    assert losses["gan"][0] - losses["js"][0] == pytest.approx(2 * math.log(2), abs=1e-6)
    assert losses["gan"][1] - losses["js"][1] == pytest.approx(math.log(2), abs=1e-6)
    for a, b in zip(losses["gan"][2], losses["js"][2]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(F_DIVERGENCES))
def test_stable_fake_term_equals_the_composition_and_stays_finite(name):
    """f*(g_f(v)) in its stable form equals the conjugate composed with the activation where both
    are accurate (float64, |v| <= 5: agreement to 1e-12 relative, a few float64 roundings), and is
    finite in float32 where the composition overflows or divides by zero."""
    div = F_DIVERGENCES[name]
    v = torch.linspace(-5, 5, 201, dtype=torch.float64)
    composed = div.conjugate(div.activation(v))
    torch.testing.assert_close(div.fake_term(v), composed, rtol=1e-12, atol=1e-12)
    # float32 values where the composed form breaks: Hellinger's 1 - t is 0 from v = 17.33 on;
    # reverse KL's log(e^-v) overflows for v < -88.7 (e^-v = inf); JS's log(2 - e^t) cancels as v grows
    large = {"hellinger": 20.0, "reverse_kl": -100.0, "js": 40.0}
    if name in large:
        x = torch.tensor([large[name]], dtype=torch.float32)
        assert not torch.isfinite(div.conjugate(div.activation(x))).all()
        exact = {"hellinger": math.expm1(20.0), "reverse_kl": -101.0, "js": 40.0 - math.log(2)}[name]
        assert float(div.fake_term(x)) == pytest.approx(exact, rel=1e-6)  # float32 rounding of exact
