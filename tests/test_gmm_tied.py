"""Tied covariances for the Gaussian mixture (issue 20): one (D, D) matrix shared by every component.

Oracles: scikit-learn's ``GaussianMixture(covariance_type="tied")`` from the same start (weights,
means and precision given, ``tol=0``, a fixed number of iterations): the same EM in float64, so the
parameters and the lower bound agree up to rounding (1e-8 relative, the issue's bar; 25 iterations
of a well-conditioned 3-D problem lose far less). The program's density against enumerating its
assignment site; the E-step's moments against SciPy.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
import scipy.stats
from numpyro import handlers
from scipy.special import logsumexp

import inference  # noqa: F401  (float64)
from inference import em
from inference.errors import ModelError
from pgm.mixture import GaussianMixture, fit_em

REL = 1e-8


def _points():
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(3, 3))
    z = rng.integers(0, 3, 250)
    return np.array([[-3.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.0, 4.0, -2.0]])[z] + rng.normal(size=(250, 3)) @ mix


def _sklearn(start, x, iterations):
    from sklearn.mixture import GaussianMixture as Sk

    model = Sk(start.n_components, covariance_type="tied", weights_init=start.weights, means_init=start.means,
               precisions_init=np.linalg.inv(start.covariances), max_iter=iterations, tol=0.0,
               reg_covar=start.reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed number of iterations "does not converge"
        return model.fit(x)


def test_tied_em_equals_sklearn_from_the_same_start():
    pytest.importorskip("sklearn")
    x = _points()
    start = GaussianMixture.initialize(jax.random.PRNGKey(2), x, 3, "tied")
    assert start.covariances.shape == (3, 3)
    ours = em.fit(start, x, max_iter=25, tol=-np.inf)
    peer = _sklearn(start, x, 25)
    assert ours.diagnostics["iterations"] == peer.n_iter_ == 25
    assert np.all(np.diff(ours.history) >= 0)
    fitted = ours.params
    np.testing.assert_allclose(fitted.weights, peer.weights_, rtol=REL)
    np.testing.assert_allclose(fitted.means, peer.means_, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(fitted.covariances, peer.covariances_, rtol=REL)
    np.testing.assert_allclose(fitted.prec_chol, peer.precisions_cholesky_, rtol=REL, atol=1e-12)
    # scikit-learn's lower_bound_: the mean log-likelihood at its last (25th) E-step, under the
    # parameters after 24 M-steps; our history[t] is log p(x) after t M-steps
    assert len(ours.history) == 26
    assert ours.history[24] / len(x) == pytest.approx(peer.lower_bound_, rel=REL)
    assert fitted.log_prob(x).mean() == pytest.approx(peer.score(x), rel=REL)
    np.testing.assert_allclose(fitted.responsibilities(x), peer.predict_proba(x), rtol=1e-7, atol=1e-12)
    assert fitted.n_parameters() == peer._n_parameters() == 2 + 9 + 6
    assert fitted.bic(x) == pytest.approx(peer.bic(x), rel=1e-12)
    assert fitted.aic(x) == pytest.approx(peer.aic(x), rel=1e-12)


def test_tied_log_prob_and_program_equal_enumeration_and_scipy():
    """log p(x_n) by logsumexp over SciPy's densities with the shared matrix, and the program with
    its assignment site conditioned on each value (the program's density is enumerated by hand)."""
    x = _points()[:40]
    cov = np.array([[1.5, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.7]])
    model = GaussianMixture([0.2, 0.5, 0.3], [[-3.0, 0.0, 1.0], [2.0, 1.0, 0.0], [0.0, 4.0, -2.0]], cov, "tied")
    joint = np.stack([np.log(w) + scipy.stats.multivariate_normal(m, cov).logpdf(x)
                      for w, m in zip(model.weights, model.means)], axis=1)
    np.testing.assert_allclose(model.log_joint(x), joint, rtol=1e-12)
    per_class = []
    for k in range(3):
        trace = handlers.trace(handlers.condition(model.model, {"z": np.full(len(x), k)})).get_trace(x=x)
        per_class.append(sum(np.asarray(s["fn"].log_prob(s["value"])) for s in trace.values() if s["type"] == "sample"))
    np.testing.assert_allclose(model.log_prob(x), logsumexp(np.stack(per_class), axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.full_covariances(), np.broadcast_to(cov, (3, 3, 3)))


def test_tied_sampling_has_the_shared_covariance():
    """Points of each component, centred on its mean, have the tied covariance: with n = 20000
    points the entries' standard error is about sqrt(2 / n) * max var = 0.015; 5 s.e. is 0.08."""
    cov = np.array([[1.5, 0.3], [0.3, 1.0]])
    model = GaussianMixture([0.5, 0.5], [[-5.0, 0.0], [5.0, 0.0]], cov, "tied")
    out = model.sample(jax.random.PRNGKey(0), 20000)
    centred = out["x"] - model.means[out["z"]]
    np.testing.assert_allclose(np.cov(centred, rowvar=False), cov, atol=0.08)


def test_tied_n_init_and_bad_input():
    x = _points()
    best = fit_em(jax.random.PRNGKey(4), x, 3, "tied", n_init=2, max_iter=10)
    assert best.params.covariance_type == "tied" and len(best.diagnostics["restarts"]) == 2
    assert best.log_evidence == max(best.diagnostics["restarts"])
    with pytest.raises(ModelError, match=r"tied covariances must have shape \(2, 2\)"):
        GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], np.stack([np.eye(2)] * 2), "tied")
    with pytest.raises(ModelError, match="tied covariance is not positive definite"):
        GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]], "tied")
