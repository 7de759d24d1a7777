"""SVI on Pyro programs through the one loop: DReG kept on every path, the backend rule."""

import math

import numpy as np
import pytest
import torch

from inference import svi
from inference.errors import ModelError
from inference.svi_pyro import DRegIWAE

X = torch.tensor([0.3, 1.4, 0.8, 2.1, 1.0], dtype=torch.float64)
PRIOR_SD, NOISE_SD = 2.0, 1.0
# conjugate Normal-Normal posterior of the mean: precision 1/4 + 5, mean sum(x) / precision
POST_VAR = 1.0 / (1 / PRIOR_SD**2 + len(X) / NOISE_SD**2)
POST_MEAN = POST_VAR * float(X.sum()) / NOISE_SD**2


def model(x):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(torch.zeros((), dtype=x.dtype), PRIOR_SD))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, NOISE_SD), obs=x)


def guide_at(loc, scale):
    def guide(x):
        import pyro
        import pyro.distributions as dist

        q_loc = pyro.param("q_loc", torch.tensor(loc, dtype=torch.float64))
        q_scale = pyro.param("q_scale", torch.tensor(scale, dtype=torch.float64),
                             constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(q_loc, q_scale))

    return guide


def _guide_grads(dreg: bool, loc: float, scale: float, seed: int):
    import pyro

    with pyro.get_param_store().scope(), torch.random.fork_rng():
        torch.manual_seed(seed)
        guide = guide_at(loc, scale)
        if dreg:
            loss = DRegIWAE(8)(model, guide, X)
            loss.backward()
            loss = float(loss.detach())
        else:  # Pyro's IWAE (Renyi at alpha = 0): the plain estimator, backward pass included
            loss = pyro.infer.RenyiELBO(alpha=0.0, num_particles=8).loss_and_grads(model, guide, X)
        return [float(pyro.param(n).unconstrained().grad) for n in ("q_loc", "q_scale")], loss


def test_dreg_guide_gradient_vanishes_at_the_posterior_for_a_pyro_program():
    # At q = posterior every importance weight equals p(x): log w_k is constant in z, so DReG's guide
    # gradient is exactly zero for every draw (float64 rounding: ~1e-15 relative), and the bound
    # equals log p(x) in closed form; the plain IWAE estimator's guide gradient is not zero.
    log_px = float(torch.distributions.MultivariateNormal(
        torch.zeros(len(X), dtype=torch.float64),
        NOISE_SD**2 * torch.eye(len(X), dtype=torch.float64) + PRIOR_SD**2).log_prob(X))
    for seed in range(3):
        grads, loss = _guide_grads(True, POST_MEAN, math.sqrt(POST_VAR), seed)
        assert max(abs(g) for g in grads) < 1e-12
        assert -loss == pytest.approx(log_px, abs=1e-12)
    plain, _ = _guide_grads(False, POST_MEAN, math.sqrt(POST_VAR), 0)
    assert max(abs(g) for g in plain) > 1e-6


def test_dreg_is_kept_through_fit_and_never_dropped():
    r = svi.fit(model, {"x": X}, key=0, guide=guide_at(0.0, 1.0), elbo="iwae", num_particles=4, steps=400,
                learning_rate=0.05)
    assert r.diagnostics["backend"] == "pyro" and r.diagnostics["dreg"] is True
    # Adam at a constant step hovers around the optimum; the IWAE optimum of this conjugate model is
    # the posterior itself (where the bound is tight), so the fitted location is within a quarter of
    # the posterior sd of its mean.
    assert float(r.params["q_loc"]) == pytest.approx(POST_MEAN, abs=0.25 * math.sqrt(POST_VAR))
    off = svi.fit(model, {"x": X}, key=0, guide=guide_at(0.0, 1.0), elbo="iwae", num_particles=4, steps=2,
                  dreg=False)
    assert off.diagnostics["dreg"] is False

    def student_guide(x):
        import pyro
        import pyro.distributions as dist

        pyro.sample("mu", dist.StudentT(3.0, pyro.param("t_loc", torch.tensor(0.0, dtype=torch.float64)), 1.0))

    with pytest.raises(ModelError, match="StudentT.*dreg=False"):
        svi.fit(model, {"x": X}, key=0, guide=student_guide, elbo="iwae", num_particles=4, steps=2)


def test_the_backend_rule():
    import jax.numpy as jnp

    from pgm.conjugate import NormalNormal

    assert svi.backend_of(model, {"x": X}) == "pyro"  # torch data
    assert svi.backend_of(NormalNormal(0.0, 1.0, 1.0).model, {"x": jnp.zeros(3)}) == "numpyro"
    assert svi.backend_of(model, {"x": np.zeros(3)}) == "numpyro"  # said, not guessed: pass backend="pyro"
    r = svi.fit(model, {"x": X.numpy()}, key=1, steps=3, backend="pyro")
    assert r.diagnostics["backend"] == "pyro"
