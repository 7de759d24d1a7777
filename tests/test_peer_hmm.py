"""Spherical and tied covariances, AIC and BIC of HMMs (issue 20), against hmmlearn.

Oracle: hmmlearn's ``GaussianHMM`` / ``CategoricalHMM`` on the same data and the same starting
parameters: one Baum-Welch iteration (``n_iter=1``, ``init_params=""``, no priors) must give the
same parameters, and ``score`` / ``aic`` / ``bic`` the same numbers. Tolerance 1e-8 relative (the
issue's): both run forward-backward in float64 (hmmlearn scaled, ours in log space) over 60 steps,
a rounding of ~1e-13.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.errors import ModelError
from pgm.hmm import HMM

REL = 1e-8


def _start(kind, K=3, D=2):
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(K) * 3)
    a = rng.dirichlet(np.ones(K) * 3, size=K)
    means = rng.normal(size=(K, D)) * 2
    covs = {"spherical": rng.uniform(0.5, 1.5, K), "tied": np.array([[1.0, 0.3], [0.3, 0.8]])}[kind]
    return pi, a, means, covs


def _data(T=60, seed=1):
    rng = np.random.default_rng(seed)
    z = np.repeat(rng.integers(0, 3, T // 10), 10)
    return rng.normal(size=(T, 2)) + np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, -1.0]])[z]


@pytest.mark.parametrize("kind", ["spherical", "tied"])
def test_one_baum_welch_step_equals_hmmlearn(kind):
    hmm_mod = pytest.importorskip("hmmlearn.hmm")
    pi, a, means, covs = _start(kind)
    x = _data()
    ours = HMM.gaussian(pi, a, means, covs, covariance_type=kind)
    peer = hmm_mod.GaussianHMM(3, covariance_type=kind, n_iter=1, init_params="", params="stmc",
                               covars_prior=0.0, covars_weight=1.0 if kind == "spherical" else 0.0,
                               means_prior=0.0, means_weight=0.0, min_covar=0.0, tol=0.0)
    peer.startprob_, peer.transmat_, peer.means_, peer.covars_ = pi, a, means, covs
    assert ours.log_prob(x) == pytest.approx(peer.score(x), rel=REL)
    assert ours.aic(x) == pytest.approx(peer.aic(x), rel=REL)
    assert ours.bic(x) == pytest.approx(peer.bic(x), rel=REL)
    stats, _ = ours.expected_stats(x)
    new = ours.from_stats(stats)
    peer.fit(x)
    np.testing.assert_allclose(new.initial_probs, peer.startprob_, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(new.transition_matrix, peer.transmat_, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(new.emission.means, peer.means_, rtol=REL)
    if kind == "tied":  # hmmlearn's covars_: the (K, D, D) matrices
        np.testing.assert_allclose(new.emission.full_covariances(), peer.covars_, rtol=REL)
    else:  # after its M-step hmmlearn keeps spherical variances tiled (K, D), as we store them
        np.testing.assert_allclose(new.emission.covariances, peer._covars_, rtol=REL)
    assert new.emission.kind == kind


def test_tied_and_spherical_keep_their_constraint_under_em():
    from inference import em

    x = _data(seed=3)
    for kind in ("spherical", "tied"):
        pi, a, means, covs = _start(kind)
        fitted = em.fit(HMM.gaussian(pi, a, means, covs, covariance_type=kind), x, max_iter=20).params
        cov = fitted.emission.covariances
        if kind == "spherical":
            np.testing.assert_array_equal(cov, np.repeat(cov[:, :1], 2, axis=1))
        else:
            np.testing.assert_array_equal(cov, np.broadcast_to(cov[0], cov.shape))


def test_categorical_aic_bic_equal_hmmlearn():
    hmm_mod = pytest.importorskip("hmmlearn.hmm")
    rng = np.random.default_rng(4)
    pi, a, b = rng.dirichlet(np.ones(2)), rng.dirichlet(np.ones(2), size=2), rng.dirichlet(np.ones(4), size=2)
    x = rng.integers(0, 4, 50)
    ours = HMM.categorical(pi, a, b)
    peer = hmm_mod.CategoricalHMM(2, init_params="", n_features=4)
    peer.startprob_, peer.transmat_, peer.emissionprob_ = pi, a, b
    assert ours.aic(x) == pytest.approx(peer.aic(x[:, None]), rel=REL)
    assert ours.bic(x) == pytest.approx(peer.bic(x[:, None]), rel=REL)
    assert ours.num_free_parameters == 1 + 2 + 2 * 3


def test_bad_tied_or_spherical_covariances_raise():
    pi, a, means, _ = _start("tied")
    with pytest.raises(ModelError, match="spherical"):
        HMM.gaussian(pi, a, means, np.ones((3, 2)) * [1.0, 2.0], covariance_type="spherical")
    with pytest.raises(ModelError, match="tied"):
        HMM.gaussian(pi, a, means, np.ones(3), covariance_type="tied")
    with pytest.raises(ModelError, match="mixture"):
        HMM.gaussian_mixture(pi, a, np.full((3, 2), 0.5), np.zeros((3, 2, 2)), np.ones((3, 2)),
                             covariance_type="spherical")


@pytest.mark.parametrize("learn", ["tm", "stm", "mc", "t"])
def test_learning_a_subset_equals_hmmlearn_params(learn):
    hmm_mod = pytest.importorskip("hmmlearn.hmm")
    pi, a, means, _ = _start("tied")
    covs = np.array([np.eye(2) * 0.9, [[1.0, 0.2], [0.2, 1.1]], np.eye(2) * 1.3])
    x = _data(seed=5)
    ours = HMM.gaussian(pi, a, means, covs, covariance_type="full")
    new = ours.from_stats(ours.expected_stats(x)[0], learn=learn)
    peer = hmm_mod.GaussianHMM(3, covariance_type="full", n_iter=1, init_params="", params=learn,
                               covars_prior=0.0, covars_weight=0.0, means_prior=0.0, means_weight=0.0,
                               min_covar=0.0, tol=0.0)
    peer.startprob_, peer.transmat_, peer.means_, peer.covars_ = pi, a, means, covs
    peer.fit(x)
    np.testing.assert_allclose(new.initial_probs, peer.startprob_, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(new.transition_matrix, peer.transmat_, rtol=REL, atol=1e-12)
    np.testing.assert_allclose(new.emission.means, peer.means_, rtol=REL)
    np.testing.assert_allclose(new.emission.covariances, peer.covars_, rtol=REL)
    for letter, value, start in (("s", new.initial_probs, pi), ("t", new.transition_matrix, a),
                                 ("m", new.emission.means, means), ("c", new.emission.covariances, covs)):
        if letter not in learn:
            # held fixed; the constructor renormalises probability rows (one division: <= 2 ulp)
            np.testing.assert_allclose(value, start, rtol=1e-15, atol=0)
    with pytest.raises(ModelError, match="unknown letters"):
        ours.from_stats(ours.expected_stats(x)[0], learn="tz")


def test_covariances_about_kept_means_equal_the_closed_form():
    """hmmlearn cannot learn covariances without means (its posterior sums are then not
    accumulated: params="c" gives inf), so the oracle is the closed form
    :math:`\\Sigma_k = \\sum_t \\gamma_{tk} (x_t - \\mu_k)(x_t - \\mu_k)^T / \\sum_t \\gamma_{tk}` with
    hmmlearn's posteriors :math:`\\gamma` (``predict_proba``) and the kept means."""
    hmm_mod = pytest.importorskip("hmmlearn.hmm")
    pi, a, means, _ = _start("tied")
    covs = np.array([np.eye(2) * 0.9, [[1.0, 0.2], [0.2, 1.1]], np.eye(2) * 1.3])
    x = _data(seed=6)
    for kind, start in (("full", covs), ("diag", np.array([[0.9, 0.8], [1.0, 1.1], [1.3, 0.7]]))):
        peer = hmm_mod.GaussianHMM(3, covariance_type=kind, init_params="")
        peer.startprob_, peer.transmat_, peer.means_, peer.covars_ = pi, a, means, start
        gamma = peer.predict_proba(x)  # (T, K), the same model's posteriors
        ours = HMM.gaussian(pi, a, means, start, covariance_type=kind)
        new = ours.from_stats(ours.expected_stats(x)[0], learn="c")
        diff = x[:, None, :] - means[None]  # (T, K, D)
        scatter = np.einsum("tk,tkd,tke->kde", gamma, diff, diff) / gamma.sum(0)[:, None, None]
        expected = scatter if kind == "full" else np.einsum("kdd->kd", scatter)
        np.testing.assert_allclose(new.emission.covariances, expected, rtol=1e-8)
        np.testing.assert_array_equal(new.emission.means, means)


def test_em_fit_passes_learn_through_and_holds_the_rest():
    from inference import em

    pi, a, means, covs = _start("spherical")
    x = _data(seed=7)
    hmm = HMM.gaussian(pi, a, means, covs, covariance_type="spherical")
    result = em.fit(hmm, x, max_iter=5, learn="t")
    np.testing.assert_array_equal(result.params.emission.means, means)
    np.testing.assert_allclose(result.params.initial_probs, pi, rtol=1e-15)  # renormalised only
    assert np.all(np.diff(result.history) >= -1e-9 * abs(result.history[0]))  # EM never decreases


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_mean_prior_equals_hmmlearn(kind):
    hmm_mod = pytest.importorskip("hmmlearn.hmm")
    pi, a, means, _ = _start("tied")
    covs = np.array([[0.9, 0.8], [1.0, 1.1], [1.3, 0.7]])
    if kind == "full":
        covs = np.stack([np.diag(c) for c in covs])
    x = _data(seed=8)
    mu0 = np.array([[0.5, -0.5], [0.0, 1.0], [1.0, 0.0]])
    ours = HMM.gaussian(pi, a, means, covs, covariance_type=kind)
    new = ours.from_stats(ours.expected_stats(x)[0], mean_weight=4.0, mean_prior=mu0)
    peer = hmm_mod.GaussianHMM(3, covariance_type=kind, n_iter=1, init_params="", params="stmc",
                               means_prior=mu0, means_weight=4.0, covars_prior=0.0,
                               covars_weight=1.0 if kind == "diag" else 0.0, min_covar=0.0, tol=0.0)
    peer.startprob_, peer.transmat_, peer.means_, peer.covars_ = pi, a, means, covs
    peer.fit(x)
    np.testing.assert_allclose(new.emission.means, peer.means_, rtol=REL)
    np.testing.assert_allclose(new.emission.full_covariances(), peer.covars_, rtol=REL)


def test_em_with_a_mean_prior_never_decreases_its_objective():
    from inference import em

    pi, a, means, covs = _start("spherical")
    x = _data(seed=9)
    hmm = HMM.gaussian(pi, a, means, covs, covariance_type="spherical")
    # em.fit raises MonotonicityError if log p(x) + log_prior ever decreases beyond rounding
    result = em.fit(hmm, x, max_iter=10, mean_weight=2.0, mean_prior=np.zeros(2))
    assert np.all(np.diff(result.history) >= -1e-8 * abs(result.history[0]))
