"""The flow guide on a conjugate model: SVI through inference.svi recovers the closed-form posterior."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from deep.flows.guide import FlowGuide
from inference.errors import ModelError
from inference.svi import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test, restored after
N, PRIOR_SD, NOISE_SD = 20, 2.0, 1.0


def regression_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 2, generator=g)
    x[:, 1] = 0.5 * x[:, 0] + x[:, 1]  # correlated covariates: a correlated posterior
    y = x @ torch.tensor([1.0, -0.5]) + NOISE_SD * torch.randn(N, generator=g)
    return x, y


def model(x, y):
    #   beta ~ N(0, 2^2 I_2)
    #   +---- data (N) ----+
    #   |  y_n ~ N(x_n beta, 1)
    #   +------------------+
    beta = pyro.sample("beta", dist.Normal(torch.zeros(2), PRIOR_SD).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ beta, NOISE_SD), obs=y)


def exact_posterior(x, y):
    """Bayesian linear regression with known noise: N(S X^T y / s^2, S), S = (X^T X / s^2 + I / t^2)^-1."""
    cov = torch.linalg.inv(x.T @ x / NOISE_SD**2 + torch.eye(2) / PRIOR_SD**2)
    return torch.distributions.MultivariateNormal(cov @ x.T @ y / NOISE_SD**2, cov)


def kl_to_posterior(guide, posterior, n=20_000):
    """KL(q || p(beta | y)) by Monte Carlo over the guide's draws, with its standard error: both
    densities are exact (the flow's by change of variables, the posterior's in closed form)."""
    with torch.no_grad():
        q = guide.get_posterior()
        z = q.sample((n,))  # (n, 2): beta is unconstrained, so the latent vector is beta itself
        d = q.log_prob(z) - posterior.log_prob(z)
    return float(d.mean()), float(d.std() / math.sqrt(n))


def test_flow_guide_recovers_the_conjugate_posterior():
    # oracle: the closed-form Gaussian posterior. The best mean-field Gaussian misses it by exactly
    # KL = -log(1 - rho^2) / 2 (rho the posterior correlation, here -0.43: 0.102 nats); the flow
    # guide, fitted by inference.svi (300 steps, Adam with a decaying rate), must beat that bound by
    # more than 3 standard errors of its Monte Carlo KL estimate, and its KL cannot be negative
    # beyond that noise.
    x, y = regression_data()
    posterior = exact_posterior(x, y)
    cov = posterior.covariance_matrix
    rho = float(cov[0, 1] / cov.diagonal().prod().sqrt())
    mean_field_kl = -0.5 * math.log(1.0 - rho**2)
    guide = FlowGuide(model, "realnvp", hidden=(8,), num_layers=2, init_scale=0.5, seed=0)
    result = fit(model, {"x": x, "y": y}, key=0, guide=guide, steps=300,
                 optimizer=pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.99}))
    kl, se = kl_to_posterior(guide, posterior)
    assert -3 * se < kl < mean_field_kl - 3 * se
    # the reported bound is an ELBO: below log p(y) (closed form), up to its 16-draw noise (~0.1 nats)
    log_evidence = torch.distributions.MultivariateNormal(
        torch.zeros(N), NOISE_SD**2 * torch.eye(N) + PRIOR_SD**2 * x @ x.T).log_prob(y)
    assert result.log_evidence_kind == "lower_bound"
    assert result.log_evidence < float(log_evidence) + 0.3


def test_flow_guide_bad_input():
    x, y = regression_data()
    with pytest.raises(ModelError, match="at least 2 latent dimensions"):
        def one_latent(y):
            mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            with pyro.plate("data", y.shape[0]):
                pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

        FlowGuide(one_latent, "nsf", seed=0)(y)
    with pytest.raises(ModelError, match="init_scale"):
        FlowGuide(model, "realnvp", init_scale=0.0, seed=0)


def test_eight_schools_program_is_the_numpyro_model():
    # The Pyro program must be the same density as pgm.conjugate.EightSchools(centered=True): its
    # log joint at a point equals NumPyro's, to float64 rounding (a sum of 18 log densities).
    import jax.numpy as jnp
    import pyro
    from numpyro.infer.util import log_density

    from deep.flows.guide import eight_schools
    from pgm.conjugate import EightSchools

    data = EightSchools.data()
    point = {"mu": 4.4, "tau": 3.6, "theta": np.linspace(-2.0, 9.0, 8)}
    conditioned = pyro.poutine.condition(eight_schools, {k: torch.as_tensor(v, dtype=torch.float64)
                                                         for k, v in point.items()})
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            trace = pyro.poutine.trace(conditioned).get_trace(data["sigma"], data["y"])
        finally:
            torch.set_default_dtype(torch.float32)
    ours = float(trace.log_prob_sum())
    theirs, _ = log_density(EightSchools(centered=True).model, (), data,
                            {k: jnp.asarray(v) for k, v in point.items()})
    assert abs(ours - float(theirs)) < 1e-10 * abs(float(theirs))


def test_eight_schools_entry_has_the_three_guides_and_the_flow_one_runs():
    # genzoo compare eight_schools: mean-field, full-rank and flow guides beside the long NUTS
    # reference. A few SVI steps of the flow guide give draws of every latent site with the
    # program's shapes and a finite ELBO (a lower bound: its value is the benchmark's business).
    from genzoo.registry import RunConfig
    from genzoo.zoo import ENTRIES

    entry = ENTRIES["eight_schools"]
    assert {"svi_normal", "svi_mvn", "svi_flow"} <= {m.name for m in entry.methods}
    problem = entry.problem()
    result = entry.method("svi_flow").fn(problem, RunConfig(seed=0, steps=5, progress=False))
    assert result.method == "svi_flow" and math.isfinite(result.log_evidence)
    assert result.log_evidence_kind == "lower_bound"
    shapes = {k: np.shape(v)[1:] for k, v in result.samples.items() if k in ("mu", "tau", "theta")}
    assert shapes == {"mu": (), "tau": (), "theta": (8,)}
    assert np.all(np.asarray(result.samples["tau"]) > 0)
