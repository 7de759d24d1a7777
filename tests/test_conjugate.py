"""The teaching models' closed forms, checked against independent derivations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import inference  # noqa: F401  (float64)
from inference.errors import DataError
from pgm.conjugate import (
    BayesianLinearRegression,
    BetaBernoulli,
    EightSchools,
    LogisticRegression,
    NormalNormal,
    simulate,
)


def test_beta_bernoulli_posterior_and_evidence_by_quadrature():
    m = BetaBernoulli(2.0, 3.0)
    x = np.asarray(simulate(m.model, jax.random.PRNGKey(0), n=15)["x"], dtype=float)
    k, n = x.sum(), len(x)

    def joint(t):
        return stats.beta(2.0, 3.0).pdf(t) * t**k * (1 - t) ** (n - k)

    evidence, _ = integrate.quad(joint, 0, 1, epsabs=1e-14, epsrel=1e-12)
    assert m.log_evidence(x) == pytest.approx(np.log(evidence), abs=1e-9)
    post = m.posterior(x)["theta"]
    mean, _ = integrate.quad(lambda t: t * joint(t) / evidence, 0, 1, epsabs=1e-14)
    assert float(post.mean) == pytest.approx(mean, abs=1e-9)


def test_normal_normal_evidence_is_the_marginal_gaussian():
    m = NormalNormal(prior_loc=0.5, prior_scale=2.0, noise_scale=0.7)
    x = np.asarray(simulate(m.model, jax.random.PRNGKey(1), n=6)["x"])
    cov = 0.7**2 * np.eye(6) + 2.0**2 * np.ones((6, 6))
    assert m.log_evidence(x) == pytest.approx(stats.multivariate_normal(0.5 * np.ones(6), cov).logpdf(x), abs=1e-10)


def test_normal_normal_is_linear_regression_on_a_constant():
    # two parametrisations that must agree: a Normal mean is a regression on the column of ones
    x = np.array([0.3, -1.2, 2.5, 0.9])
    nn = NormalNormal(0.0, 1.5, 0.8).posterior(x)["mu"]
    blr = BayesianLinearRegression(prior_scale=1.5, noise_scale=0.8).posterior(np.ones((4, 1)), x)["w"]
    assert float(nn.loc) == pytest.approx(float(blr.mean[0]), abs=1e-12)
    assert float(nn.scale) ** 2 == pytest.approx(float(blr.covariance_matrix[0, 0]), abs=1e-12)


def test_linear_regression_by_gaussian_conditioning():
    m = BayesianLinearRegression(prior_scale=1.3, noise_scale=0.4)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (12, 3)))
    y = np.asarray(simulate(m.model, jax.random.PRNGKey(3), x=x)["y"])
    # joint Gaussian of (w, y): cov(w, y) = s^2 X^T, cov(y) = s^2 X X^T + sigma^2 I
    s2, n2 = 1.3**2, 0.4**2
    cyy = s2 * x @ x.T + n2 * np.eye(12)
    mean = s2 * x.T @ np.linalg.solve(cyy, y)
    cov = s2 * np.eye(3) - s2**2 * x.T @ np.linalg.solve(cyy, x)
    post = m.posterior(x, y)["w"]
    np.testing.assert_allclose(post.mean, mean, atol=1e-10)
    np.testing.assert_allclose(post.covariance_matrix, cov, atol=1e-10)
    assert m.log_evidence(x, y) == pytest.approx(stats.multivariate_normal(np.zeros(12), cyy).logpdf(y), abs=1e-9)


def test_eight_schools_data_and_parametrisations():
    data = EightSchools.data()
    np.testing.assert_array_equal(data["y"], [28, 8, -3, 7, -1, 1, 18, 12])
    np.testing.assert_array_equal(data["sigma"], [15, 10, 16, 11, 9, 11, 10, 18])
    centred = simulate(EightSchools(centered=True).model, jax.random.PRNGKey(4), sigma=data["sigma"])
    non_centred = simulate(EightSchools(centered=False).model, jax.random.PRNGKey(4), sigma=data["sigma"])
    assert centred["theta"].shape == centred["y"].shape == (8,)
    assert "theta_tilde" in non_centred and "theta_tilde" not in centred


def test_logistic_regression_terms_match_the_program():
    from numpyro import handlers

    m = LogisticRegression(prior_scale=2.0)
    x = jax.random.normal(jax.random.PRNGKey(5), (50, 3))
    draws = simulate(m.model, jax.random.PRNGKey(6), x=x)
    tr = handlers.trace(handlers.substitute(m.model, data=draws)).get_trace(x=x, y=draws["y"])
    program = sum(float(jnp.sum(s["fn"].log_prob(s["value"]))) for s in tr.values() if s["type"] == "sample")
    ours = float(jnp.sum(m.log_likelihood_terms(draws["w"], draws["b"], x, draws["y"])) + m.log_prior(draws["w"], draws["b"]))
    assert ours == pytest.approx(program, abs=1e-10)


def test_bad_data_named():
    with pytest.raises(DataError, match="y"):
        BayesianLinearRegression().posterior(np.ones((3, 2)), np.array([1.0, np.nan, 2.0]))
    with pytest.raises(DataError, match="x must be"):
        BayesianLinearRegression().posterior(np.ones((4, 2)), np.ones(3))
