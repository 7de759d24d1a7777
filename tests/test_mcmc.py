"""NUTS and HMC against known posteriors; errors that name the site; distance helpers.

Moment tolerances: |z| < 4.5 with z = (estimate - truth) / (Monte Carlo se from the ESS), see
``inference.evaluate.moment_zscores``; a correct sampler fails such a check with probability
below 1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import inference  # noqa: F401  (float64)
from inference import evaluate, mcmc
from inference.errors import DataError, ModelError
from pgm.conjugate import BayesianLinearRegression, simulate

Z = 4.5
MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.6], [0.6, 2.0]])


def gaussian(dummy=None):
    numpyro.sample("x", dist.MultivariateNormal(jnp.asarray(MEAN), jnp.asarray(COV)))


@pytest.mark.parametrize("sampler", ["nuts", "hmc"])
def test_gaussian_moments(sampler):
    kwargs = {"num_steps": 8, "step_size": 0.5} if sampler == "hmc" else {}
    r = getattr(mcmc, sampler)(gaussian, key=jax.random.PRNGKey(0), num_samples=500, num_warmup=200,
                               num_chains=2, **kwargs)
    x = r.samples["x"]
    assert x.shape == (1000, 2) and r.method == sampler
    z = evaluate.moment_zscores(x, MEAN, np.diag(COV), num_chains=2)
    assert np.all(np.abs(z["mean"]) < Z) and np.all(np.abs(z["var"]) < Z), z
    assert np.all(r.diagnostics["r_hat"]["x"] < 1.05)
    assert r.diagnostics["num_chains"] == 2 and r.diagnostics["divergences"] == 0
    assert r.to_arviz().posterior["x"].shape == (2, 500, 2)


def test_nuts_recovers_the_linear_regression_posterior():
    m = BayesianLinearRegression(prior_scale=1.0, noise_scale=0.5)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (40, 3)))
    y = np.asarray(simulate(m.model, jax.random.PRNGKey(2), x=x)["y"])
    post = m.posterior(x, y)["w"]
    r = mcmc.nuts(m.model, {"x": x, "y": y}, key=jax.random.PRNGKey(3), num_samples=400, num_warmup=200)
    z = evaluate.moment_zscores(r.samples["w"], post.mean, jnp.diag(post.covariance_matrix))
    assert np.all(np.abs(z["mean"]) < Z) and np.all(np.abs(z["var"]) < Z), z


def mixture(y=None):
    #   mu ~ N(0, 2^2); z ~ Bernoulli(0.3) (enumerated); y | z, mu ~ N(mu + 3 z, 1)
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    z = numpyro.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
    numpyro.sample("y", dist.Normal(mu + 3.0 * z, 1.0), obs=y)


def test_nuts_sums_out_an_enumerated_site():
    r = mcmc.nuts(mixture, {"y": 2.0}, key=jax.random.PRNGKey(4), num_samples=1000, num_warmup=200)
    assert set(r.samples) == {"mu"}
    # the exact posterior of mu by quadrature on a fine grid, z summed by hand
    grid = np.linspace(-12, 12, 20001)
    log_post = stats.norm(0, 2).logpdf(grid) + np.logaddexp(np.log(0.7) + stats.norm(grid, 1).logpdf(2.0),
                                                            np.log(0.3) + stats.norm(grid + 3, 1).logpdf(2.0))
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    mean = (w * grid).sum()
    var = (w * (grid - mean) ** 2).sum()
    ess = r.diagnostics["ess"]["mu"]
    assert abs(r.samples["mu"].mean() - mean) < Z * np.sqrt(var / ess)


# ------------------------------------------------------------------ bad input names the site
def poisson_latent(y=None):
    n = numpyro.sample("count", dist.Poisson(3.0))
    numpyro.sample("y", dist.Normal(n, 1.0), obs=y)


def unmarked_discrete(y=None):
    z = numpyro.sample("switch", dist.Bernoulli(0.3))
    numpyro.sample("y", dist.Normal(z, 1.0), obs=y)


def outside_support(y=None):
    rate = numpyro.sample("rate", dist.Gamma(2.0, 2.0))
    numpyro.sample("waiting", dist.Exponential(rate), obs=y)


def plated(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", 5):
        numpyro.sample("obs", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("model, data, error, pattern", [
    (poisson_latent, {"y": 1.0}, ModelError, "'count'.*without finite support"),
    (unmarked_discrete, {"y": 1.0}, ModelError, "'switch'.*not marked for enumeration"),
    (outside_support, {"y": -1.0}, ModelError, "'waiting'.*not finite"),
    (plated, {"y": np.ones(7)}, DataError, r"'obs'.*\(7,\).*\(5,\).*plate 'data'"),
    (plated, {"y": np.array([1.0, np.nan, 0.0, 1.0, 2.0])}, DataError, "'obs'.*NaN"),
])
def test_bad_input_names_the_site(model, data, error, pattern):
    with pytest.raises(error, match=pattern):
        mcmc.nuts(model, data, key=jax.random.PRNGKey(0), num_samples=10, num_warmup=10)


def test_gibbs_is_re_exported():
    from inference import gibbs as gibbs_module  # a broken import fails here, never skips

    assert mcmc.gibbs is gibbs_module.gibbs


# ------------------------------------------------------------------ distances (inference.evaluate)
def test_discrete_distances_against_scipy():
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.6, 0.3])
    assert float(evaluate.kl_divergence(p, q)) == pytest.approx(stats.entropy(p, q), abs=1e-15)
    assert float(evaluate.tv_distance(p, q)) == pytest.approx(0.1, abs=1e-15)
    assert float(evaluate.kl_divergence([1.0, 0.0], [0.5, 0.5])) == pytest.approx(np.log(2), abs=1e-15)
    assert np.isinf(evaluate.kl_divergence([0.5, 0.5], [1.0, 0.0]))
    d = evaluate.marginal_distances({"a": p}, {"a": q})
    assert d["max_tv"] == pytest.approx(0.1)
    with pytest.raises(DataError, match="'b'"):
        evaluate.marginal_distances({"a": p, "b": p}, {"a": q})


def test_gaussian_kl_and_mmd():
    m0, s0, m1, s1 = np.zeros(2), np.eye(2), np.array([1.0, 0.0]), 2 * np.eye(2)
    # closed form for isotropic covariances: 0.5 (d s0/s1 + |dm|^2 / s1 - d + d log(s1/s0))
    assert evaluate.gaussian_kl(m0, s0, m1, s1) == pytest.approx(0.5 * (1 + 0.5 - 2 + 2 * np.log(2)), abs=1e-12)
    # Population MMD^2 between N(0, I) and N(delta, I) in d dimensions with the kernel
    # exp(-|a - b|^2 / 2h^2): 2 (h^2 / (h^2 + 2))^(d/2) (1 - exp(-|delta|^2 / (2 (h^2 + 2)))). The
    # estimator is unbiased: the mean of 20 estimates lies within Z standard errors of it.
    r = np.random.default_rng(0)
    h, d = 1.0, 2
    for delta in (np.zeros(2), np.array([1.0, 0.5])):
        exact = 2 * (h**2 / (h**2 + 2)) ** (d / 2) * (1 - np.exp(-delta @ delta / (2 * (h**2 + 2))))
        est = np.array([evaluate.mmd(r.normal(size=(300, 2)), r.normal(size=(300, 2)) + delta, bandwidth=h)
                        for _ in range(20)])
        assert abs(est.mean() - exact) < Z * est.std(ddof=1) / np.sqrt(len(est)), (delta, est.mean(), exact)


def test_eight_schools_nuts_agrees_with_a_long_reference_run():
    from pgm.conjugate import EightSchools

    data, model = EightSchools.data(), EightSchools(centered=False).model
    ref = mcmc.nuts(model, data, key=jax.random.PRNGKey(100), num_samples=2000, num_warmup=500, num_chains=4)
    run = mcmc.nuts(model, data, key=jax.random.PRNGKey(101), num_samples=500, num_warmup=300, num_chains=2)
    for r in (ref, run):
        # the reference is only an oracle if its chains mixed: rank-normalised R-hat and bulk ESS
        assert not [w for w in r.diagnostics["warnings"] if w.split(":")[0] in ("mu", "tau", "theta")], \
            r.diagnostics["warnings"]
    for site in ("mu", "tau", "theta"):
        a, b = np.asarray(run.samples[site], float), np.asarray(ref.samples[site], float)
        # both means carry Monte Carlo error sd / sqrt(ESS); their difference is within Z joint ses
        se = np.sqrt(a.var(0) / run.diagnostics["ess"][site] + b.var(0) / ref.diagnostics["ess"][site])
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < Z * se), (site, a.mean(0), b.mean(0), se)


@pytest.mark.parametrize("chains, method", [(1, None), (3, "sequential"), (2, "vectorized")])
def test_a_run_without_progress_bar_is_one_program_with_numpyros_draws(monkeypatch, chains, method):
    """Without a progress bar, NumPyro's run (the sampler's start, warm-up, draws; sequential chains
    one after another by ``lax.map``) is one compiled program (``mcmc._staged_run``); with one, NumPyro
    runs it eagerly. The same keys and starting points give the same draws to rounding: compiled,
    the operations fuse and their last bits differ (2e-13 at most here, after 120 iterations);
    a different key, step size or mass matrix would move a draw by about a posterior sd (1 here),
    so 1e-8 tells the two apart by orders of magnitude on either side."""
    calls = []
    staged_run = mcmc._staged_run
    monkeypatch.setattr(mcmc, "_staged_run", lambda *a: calls.append(a) or staged_run(*a))
    runs = {progress: mcmc.nuts(gaussian, key=5, num_samples=60, num_warmup=60, num_chains=chains,
                                chain_method=method, progress=progress)
            for progress in (False, True)}
    assert len(calls) == 1  # the run without a progress bar, only
    assert runs[False].samples["x"].shape == (60 * chains, 2)
    np.testing.assert_allclose(runs[False].samples["x"], runs[True].samples["x"], rtol=0, atol=1e-8)
    assert runs[False].diagnostics["divergences"] == runs[True].diagnostics["divergences"]


def test_a_run_that_cannot_be_compiled_runs_as_numpyro_runs_it(monkeypatch):
    """Where tracing the run needs concrete values (what ``staging.NEEDS_CONCRETE`` catches), the
    sampler runs eagerly, on a fresh kernel: the draws of a run with a progress bar (eager too)."""

    def refuse(mcmc_, *args):
        raise jax.errors.JAXTypeError("this sampler reads a value while it sets up")

    monkeypatch.setattr(mcmc, "_staged_run", refuse)
    runs = [mcmc.nuts(gaussian, key=7, num_samples=40, num_warmup=40, progress=progress) for progress in (False, True)]
    np.testing.assert_array_equal(runs[0].samples["x"], runs[1].samples["x"])
