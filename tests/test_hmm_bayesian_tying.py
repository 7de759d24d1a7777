"""The HMM's Bayesian program keeps spherical and tied covariances tied (issue 20).

Oracles: the program's trace shapes (one variance per state for spherical, one (D,) set shared by
all states for tied), and its log density at fixed parameters, with the states summed out by
NumPyro's enumeration, against the forward algorithm's exact log p(x) of the HMM built from those
parameters plus the priors' log densities written out with SciPy. Both sides sum the same float64
terms in a different order over 15 steps: 1e-10 relative.
"""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import pytest
import scipy.special
import scipy.stats

import inference  # noqa: F401  (float64)
from pgm.hmm import HMM

K, D = 3, 2


def _start(kind):
    rng = np.random.default_rng(0)
    pi, a = rng.dirichlet(np.ones(K) * 3), rng.dirichlet(np.ones(K) * 3, size=K)
    means = rng.normal(size=(K, D)) * 2
    covs = {"spherical": np.array([0.5, 1.0, 1.5]), "tied": np.array([[1.0, 0.3], [0.3, 0.8]])}[kind]
    return HMM.gaussian(pi, a, means, covs, covariance_type=kind)


@pytest.mark.parametrize("kind, shape", [("spherical", (K,)), ("tied", (D,))])
def test_tied_variance_site_and_log_density(kind, shape):
    """The site's shape when simulating; the log density at variances other than the model's (so
    the scale of the prior and the value differ) with the data observed."""
    from numpyro.contrib.funsor import enum, log_density

    hmm = _start(kind)
    trace = numpyro.handlers.trace(numpyro.handlers.seed(hmm.bayesian_model, 0)).get_trace(T=3)
    assert trace["variances"]["value"].shape == shape and trace["means"]["value"].shape == (K, D)
    assert trace["x"]["value"].shape == (3, 1, D)  # simulated with the drawn parameters
    x = hmm.sample(jax.random.PRNGKey(1), 15)["x"][0]
    if kind == "spherical":
        variances = np.array([0.7, 1.2, 0.9])
        covs = variances
        scale = np.array([0.5, 1.0, 1.5])
    else:
        variances = np.array([1.4, 0.6])
        sd0 = np.sqrt([1.0, 0.8])
        corr = np.array([[1.0, 0.3], [0.3, 0.8]]) / np.outer(sd0, sd0)
        covs = corr * np.sqrt(np.outer(variances, variances))
        scale = np.array([1.0, 0.8])
    means = hmm.emission.means + 0.1
    values = {"initial_probs": hmm.initial_probs, "transition_matrix": hmm.transition_matrix,
              "means": means, "variances": variances}
    value, _ = log_density(enum(hmm.bayesian_model, first_available_dim=-2), (), {"x": x}, values)
    oracle = HMM.gaussian(hmm.initial_probs, hmm.transition_matrix, means, covs, covariance_type=kind)
    log_prior = (
        (1 + K) * scipy.special.gammaln(K)  # Dirichlet(1) on pi and on each row of A: log Gamma(K)
        + scipy.stats.norm(hmm.emission.means, 10.0).logpdf(means).sum()
        + scipy.stats.invgamma(2.0, scale=scale).logpdf(variances).sum()
    )
    np.testing.assert_allclose(value, log_prior + oracle.log_prob(x), rtol=1e-10)
