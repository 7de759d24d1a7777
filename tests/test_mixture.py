"""Gaussian mixtures: EM against scikit-learn from the same start, the program against brute-force
enumeration, and the Bayesian methods (Gibbs, SVI, NUTS) on simulated components."""

import warnings

import jax
import numpy as np
import pytest
from numpyro import handlers
from scipy.special import logsumexp

import inference  # noqa: F401  (float64)
from inference import em
from inference.errors import DataError, ModelError
from pgm.mixture import BayesianGaussianMixture, GaussianMixture, fit_nuts, fit_svi, gibbs, match_components

TRUTH = GaussianMixture([0.3, 0.7], [[-3.0, 0.0], [3.0, 1.0]], [np.eye(2), [[1.0, 0.5], [0.5, 1.0]]])


@pytest.fixture(scope="module")
def points():
    return TRUTH.sample(jax.random.PRNGKey(0), 300)["x"]


def _sklearn(start, x, iterations):
    from sklearn.mixture import GaussianMixture as Sk

    ct = start.covariance_type
    precisions = np.linalg.inv(start.covariances) if ct == "full" else 1.0 / start.covariances
    model = Sk(start.n_components, covariance_type=ct, weights_init=start.weights, means_init=start.means,
               precisions_init=precisions, max_iter=iterations, tol=0.0, reg_covar=start.reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed number of iterations "does not converge"
        return model.fit(x)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_em_equals_sklearn_from_the_same_start_and_is_monotone(covariance_type):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 1, (150, 3)), rng.normal(2, 0.5, (100, 3)) @ rng.normal(size=(3, 3))])
    start = GaussianMixture.initialize(jax.random.PRNGKey(2), x, 3, covariance_type)
    ours = em.fit(start, x, max_iter=25, tol=-np.inf)
    peer = _sklearn(start, x, 25)
    assert ours.diagnostics["iterations"] == peer.n_iter_ == 25
    assert np.all(np.diff(ours.history) >= 0)
    # The same EM in float64: agreement up to rounding (the issue asks 1e-6 per sample).
    assert abs(ours.params.log_prob(x).mean() - peer.score(x)) < 1e-9
    np.testing.assert_allclose(ours.params.means, peer.means_, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(ours.params.covariances, peer.covariances_, rtol=1e-8, atol=1e-9)
    assert ours.params.bic(x) == pytest.approx(peer.bic(x), rel=1e-12)
    assert ours.params.aic(x) == pytest.approx(peer.aic(x), rel=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_chunked_e_step_equals_the_moments_in_numpy(covariance_type, monkeypatch):
    """The E-step over chunks of rows (6 whole chunks of 8 and 2 rows left) against the
    responsibilities and moments formed directly with SciPy's multivariate normal."""
    import jax.numpy as jnp
    import scipy.stats

    from pgm import mixture

    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 3)) * 2 + 10.0
    model = GaussianMixture.initialize(jax.random.PRNGKey(4), x, 3, covariance_type)
    cov = model.full_covariances()
    joint = np.stack([np.log(w) + scipy.stats.multivariate_normal(m, c).logpdf(x)
                      for w, m, c in zip(model.weights, model.means, cov)], axis=1)
    resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    xc = x - x.mean(0)
    second = np.einsum("nk,nd,ne->kde", resp, xc, xc)
    monkeypatch.setattr(mixture, "E_STEP_CHUNK", 8)
    e_step = jax.jit(mixture.gmm_e_step.__wrapped__, static_argnames="covariance_type")  # traced afresh
    (nk, sx, sxx, shift), loglik = e_step(jnp.asarray(x), *model._args(), covariance_type=covariance_type)
    np.testing.assert_allclose(nk, resp.sum(0), rtol=1e-12)
    np.testing.assert_allclose(sx, resp.T @ xc, rtol=1e-10, atol=1e-12)
    expected = second if covariance_type == "full" else np.diagonal(second, axis1=1, axis2=2)
    np.testing.assert_allclose(sxx, expected, rtol=1e-10)
    np.testing.assert_allclose(shift, x.mean(0), rtol=1e-14)
    assert float(loglik) == pytest.approx(logsumexp(joint, axis=1).sum(), rel=1e-13)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_log_prob_equals_enumerating_the_program(covariance_type, points):
    start = GaussianMixture.initialize(jax.random.PRNGKey(3), points, 3, covariance_type)
    per_class = []
    for k in range(3):  # condition the assignment site on each value, score the whole trace
        z = np.full(len(points), k)
        trace = handlers.trace(handlers.condition(start.model, {"z": z})).get_trace(x=points)
        per_class.append(sum(np.asarray(s["fn"].log_prob(s["value"])) for s in trace.values() if s["type"] == "sample"))
    np.testing.assert_allclose(start.log_prob(points), logsumexp(np.stack(per_class), axis=0), rtol=1e-12)


def test_bic_chooses_the_true_number_of_components(points):
    bics = [em.fit(GaussianMixture.initialize(jax.random.PRNGKey(k), points, k), points, max_iter=200).params.bic(points)
            for k in (1, 2, 3)]
    assert int(np.argmin(bics)) + 1 == 2


def test_bad_input_gets_typed_errors(points):
    bad = np.array(points)
    bad[4, 1] = np.nan
    with pytest.raises(DataError, match="row 4, column 1"):
        TRUTH.log_prob(bad)
    with pytest.raises(DataError, match="row 4, column 1"):  # a device array is checked where it lies
        em.fit(TRUTH, jax.numpy.asarray(bad), max_iter=2)
    with pytest.raises(DataError, match="3 columns"):
        TRUTH.prepare_data(jax.numpy.zeros((2, 3)))
    with pytest.raises(DataError, match="exceeds the 3 distinct points"):
        GaussianMixture.initialize(jax.random.PRNGKey(0), np.repeat(points[:3], 5, axis=0), 4)
    with pytest.raises(ModelError, match="component 1 is not positive definite"):
        GaussianMixture([0.5, 0.5], np.zeros((2, 2)), [np.eye(2), np.zeros((2, 2))])
    with pytest.raises(DataError, match="3 columns"):
        TRUTH.log_prob(np.zeros((2, 3)))


def test_a_collapsing_component_is_regularised_not_nan():
    # Two points on a line in 2-D: every empirical covariance is singular; reg_covar keeps EM finite.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    result = em.fit(GaussianMixture.initialize(jax.random.PRNGKey(0), x, 2), x, max_iter=20)
    assert np.all(np.isfinite(result.params.covariances)) and np.isfinite(result.log_evidence)
    assert np.all(np.linalg.eigvalsh(result.params.covariances) >= 1e-6 * (1 - 1e-9))


def _recovered(loc, weights, tol_loc):
    perm = match_components(loc, TRUTH.means)
    assert np.max(np.abs(loc[perm] - TRUTH.means)) < tol_loc
    assert np.max(np.abs(weights[perm] - TRUTH.weights)) < 0.1


# Tolerances: the components lie 6 sds apart, so assignments are all but certain and a posterior
# mean differs from the truth by the data's own sampling error. With 300 points a component mean
# has sd sigma / sqrt(N_k), i.e. 1 / sqrt(90) ~ 0.11 for the smaller component (0.07 for the
# other); 0.35 is 3.3 of those (two-sided 1e-3 per coordinate, four coordinates). A weight has
# sd sqrt(w (1 - w) / N) = sqrt(0.21 / 300) = 0.026; 0.1 is 3.8 of those (1.4e-4). The
# samplers' Monte Carlo error (200 draws) adds sd / sqrt(ESS), a few percent of these.
def test_gibbs_recovers_simulated_components(points):
    r = gibbs(jax.random.PRNGKey(4), points, BayesianGaussianMixture(2, 2), num_samples=200, burn_in=50)
    assert r.samples["loc"].shape == (200, 2, 2)
    _recovered(r.params["loc"], r.params["weights"], 0.35)


@pytest.mark.slow
def test_svi_with_enumerated_assignments_recovers_components(points):
    r = fit_svi(jax.random.PRNGKey(5), points, BayesianGaussianMixture(2, 2), steps=300)
    assert r.history[-1] < r.history[0]
    _recovered(r.params["loc"], r.params["weights"], 0.35)


@pytest.mark.slow
def test_nuts_with_enumerated_assignments_recovers_components(points):
    r = fit_nuts(jax.random.PRNGKey(6), points, BayesianGaussianMixture(2, 2), num_samples=150, num_warmup=150)
    assert r.diagnostics["divergences"] == 0
    _recovered(r.samples["loc"].mean(0), r.samples["weights"].mean(0), 0.35)


@pytest.mark.parametrize("covariance_type, covariances", [
    ("full", [np.eye(2), [[1.0, 0.5], [0.5, 1.0]]]), ("diag", [[1.0, 2.0], [0.5, 0.5]]), ("spherical", [1.0, 0.3]),
    ("tied", [[1.0, 0.2], [0.2, 2.0]])])
def test_sample_draws_the_program_forward_without_numpyros_second_check(covariance_type, covariances):
    """``sample`` skips NumPyro's argument checks (the constructor made them): the draws are those of
    the program traced with the checks on, bit for bit, and the checks are on again afterwards."""
    import numpyro
    from numpyro.distributions import Distribution

    truth = GaussianMixture([0.4, 0.6], [[-1.0, 0.0], [2.0, 1.0]], covariances, covariance_type=covariance_type)
    before = Distribution._validate_args
    with numpyro.validation_enabled(True):
        trace = handlers.trace(handlers.seed(truth.model, jax.random.PRNGKey(3))).get_trace(n=50)
        drawn = truth.sample(jax.random.PRNGKey(3), 50)
        assert Distribution._validate_args is True
    assert Distribution._validate_args is before
    for site in ("z", "x"):
        assert np.array_equal(drawn[site], np.asarray(trace[site]["value"]))
