"""Multinomial (count-vector) HMM emissions (issue 20): hmmlearn's ``MultinomialHMM`` on the same
data and parameters, brute-force enumeration, the NumPyro program, EM, sampling and bad input.

Tolerances: 1e-8 relative is the issue's bar for the peer; both sides run forward-backward in float64
over at most 76 steps (hmmlearn in log space with scipy's ``multinomial.logpmf``), so their rounding is
~1e-13. Enumeration sums 3^4 paths in float64: 1e-12.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
import scipy.special
import scipy.stats

import inference  # noqa: F401  (float64)
from inference import chain, em
from inference.errors import DataError, ModelError
from pgm.emissions import MultinomialEmission
from pgm.hmm import HMM

REL = 1e-8


def _hmm(seed=0, K=3, M=4, n_trials=5):
    rng = np.random.default_rng(seed)
    return HMM.multinomial(rng.dirichlet(np.ones(K) * 2), rng.dirichlet(np.ones(K) * 2, K),
                           rng.dirichlet(np.ones(M), K), n_trials)


def _peer(hmm, n_trials):
    hmm_mod = pytest.importorskip("hmmlearn.hmm")
    p = hmm.params
    peer = hmm_mod.MultinomialHMM(hmm.num_states, n_trials=n_trials, init_params="", params="ste", n_iter=1,
                                  tol=0.0)
    peer.startprob_, peer.transmat_, peer.emissionprob_ = p["initial_probs"], p["transition_matrix"], \
        p["emission_probs"]
    peer.n_features = p["emission_probs"].shape[1]
    return peer


@pytest.mark.parametrize("fixed_total", [True, False])
def test_equals_hmmlearn_multinomial_hmm(fixed_total):
    """Score, posteriors, AIC / BIC and one Baum-Welch iteration equal hmmlearn's on a ragged batch;
    with ``n_trials=None`` each step's total is its own (hmmlearn's inferred ``n_trials``)."""
    hmm = _hmm()
    data = hmm.sample(jax.random.PRNGKey(1), 40, 3)["x"]  # (3, 40, 4), every row sums to 5
    lengths = [40, 25, 11]
    seqs = [data[n, :L] for n, L in enumerate(lengths)]
    if not fixed_total:  # totals 1..5 varying over the steps: drop some counts
        rng = np.random.default_rng(2)
        seqs = [np.maximum(s - rng.integers(0, 2, s.shape), 0) for s in seqs]
        seqs = [np.where(s.sum(1, keepdims=True) == 0, np.eye(4, dtype=s.dtype)[0], s) for s in seqs]
        hmm = HMM.multinomial(hmm.initial_probs, hmm.transition_matrix, hmm.emission.probs, None)
    X = np.concatenate(seqs)
    peer = _peer(hmm, 5 if fixed_total else X.sum(1))

    np.testing.assert_allclose(hmm.log_prob(seqs).sum(), peer.score(X, lengths), rtol=REL)
    marg = chain.marginals(hmm, seqs).marginals["z"]
    ours = np.concatenate([marg[n, :L] for n, L in enumerate(lengths)])
    np.testing.assert_allclose(ours, peer.predict_proba(X, lengths), rtol=REL, atol=1e-12)
    assert hmm.aic(seqs) == pytest.approx(peer.aic(X, lengths), rel=REL)
    assert hmm.bic(seqs) == pytest.approx(peer.bic(X, lengths), rel=REL)

    stats, log_z = hmm.expected_stats(seqs)
    assert log_z == pytest.approx(peer.score(X, lengths), rel=REL)
    new = hmm.from_stats(stats)
    peer.fit(X, lengths)
    np.testing.assert_allclose(new.initial_probs, peer.startprob_, rtol=REL, atol=1e-13)
    np.testing.assert_allclose(new.transition_matrix, peer.transmat_, rtol=REL, atol=1e-13)
    np.testing.assert_allclose(new.params["emission_probs"], peer.emissionprob_, rtol=REL, atol=1e-13)
    assert new.emission.n_trials == hmm.emission.n_trials


def test_log_prob_and_marginals_equal_brute_force_enumeration():
    """Oracle: the joint p(z, x) = pi_{z0} prod A prod Mult(x_t; n, B_{z_t}) (scipy's pmf) summed over
    all 3^4 state paths, and p(z_t = k | x) from the same table."""
    hmm = _hmm(seed=3, K=3, M=3, n_trials=4)
    x = hmm.sample(jax.random.PRNGKey(4), 4)["x"][0]  # (4, 3)
    p = hmm.params
    emit = np.array([[scipy.stats.multinomial.logpmf(x[t], 4, p["emission_probs"][k]) for k in range(3)]
                     for t in range(4)])  # (T, K)
    paths = np.array(list(itertools.product(range(3), repeat=4)))
    log_joint = (np.log(p["initial_probs"])[paths[:, 0]]
                 + np.log(p["transition_matrix"])[paths[:, :-1], paths[:, 1:]].sum(1)
                 + emit[np.arange(4), paths].sum(1))
    log_z = scipy.special.logsumexp(log_joint)
    assert hmm.log_prob(x) == pytest.approx(log_z, rel=1e-12)
    weights = np.exp(log_joint - log_z)
    brute = np.stack([np.bincount(paths[:, t], weights, minlength=3) for t in range(4)])
    np.testing.assert_allclose(chain.marginals(hmm, x).marginals["z"], brute, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([hmm.log_joint(z, x) for z in paths[:5]], log_joint[:5], rtol=1e-12)


def test_a_zero_probability_symbol_with_zero_count_is_fine():
    """0 log 0 = 0: a state that never emits symbol 2 still explains steps without that symbol, and
    gives -inf to a step that has it."""
    hmm = HMM.multinomial([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], 2)
    x = np.array([[1, 1, 0], [0, 1, 1]])
    ll = np.asarray(hmm.chain(x).log_likelihoods[0])
    assert ll[0, 0] == pytest.approx(np.log(0.5), rel=1e-14)  # 2!/(1!1!) * 0.5 * 0.5
    assert ll[1, 0] == -np.inf and np.isfinite(ll[1, 1])
    assert np.isfinite(hmm.log_prob(x))


def test_numpyro_program_enumeration_equals_forward_algorithm():
    """The program's site "x" with "z" summed out by NumPyro's enumeration gives the forward
    algorithm's log p(x) on a ragged batch (padding masked)."""
    from numpyro.contrib.funsor import enum, log_density

    hmm = _hmm()
    x = hmm.sample(jax.random.PRNGKey(5), 4, 2)["x"]
    lengths = np.array([4, 2])
    value, _ = log_density(enum(hmm.model, first_available_dim=-2), (), {"x": x, "lengths": lengths}, {})
    np.testing.assert_allclose(value, hmm.log_prob(x, lengths).sum(), rtol=1e-10)


def test_bayesian_model_density_equals_prior_plus_log_prob():
    """Dirichlet(1) on pi (K=3), A and B rows (3 + 3 rows of sizes 3 and 4): log Gamma(K) per row."""
    from numpyro.contrib.funsor import enum, log_density

    hmm = _hmm(seed=6)
    x = hmm.sample(jax.random.PRNGKey(7), 12)["x"][0]
    values = {name: np.asarray(value) for name, value in hmm.params.items()}
    value, _ = log_density(enum(hmm.bayesian_model, first_available_dim=-2), (), {"x": x}, values)
    log_prior = 4 * scipy.special.gammaln(3) + 3 * scipy.special.gammaln(4)
    np.testing.assert_allclose(value, log_prior + hmm.log_prob(x), rtol=1e-12)


def test_sampling_and_em():
    hmm = _hmm(seed=8)
    out = hmm.sample(9, 30, n_sequences=4)
    assert out["x"].shape == (4, 30, 4) and out["x"].dtype == np.int64
    assert np.all(out["x"].sum(-1) == 5) and out["x"].min() >= 0
    # each state's empirical symbol frequencies: 120 steps x 5 trials split over 3 states, so about
    # 200 trials per state; the binomial standard error is <= sqrt(0.25 / 200) = 0.035: 5 s.e. = 0.18
    big = hmm.sample(10, 400, n_sequences=1)
    for k in range(3):
        rows = big["x"][0][big["z"][0] == k]
        if rows.sum() > 200:
            freq = rows.sum(0) / rows.sum()
            np.testing.assert_allclose(freq, hmm.emission.probs[k], atol=5 * np.sqrt(0.25 / rows.sum()))
    start = _hmm(seed=11)
    result = em.fit(start, out["x"], max_iter=5, tol=0.0)
    history = np.asarray(result.history)
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[:-1])) and history[-1] > history[0]
    assert result.params.emission.family == "multinomial"
    assert start.num_free_parameters == 2 + 6 + 3 * 3


def test_bad_input_gets_typed_errors():
    hmm = _hmm()
    with pytest.raises(DataError, match=r"x\[0, 1\] sums to 4, not n_trials = 5"):
        hmm.log_prob(np.array([[5, 0, 0, 0], [1, 1, 1, 1]]))
    with pytest.raises(DataError, match=r"x\[0, 0, 1\] = -1"):
        hmm.log_prob(np.array([[6, -1, 0, 0]]))
    with pytest.raises(DataError, match=r"x\[1, 0, 0\] = 2.5"):
        hmm.log_prob([np.array([[5, 0, 0, 0]]), np.array([[2.5, 2.5, 0, 0]])])
    with pytest.raises(DataError, match="M = 4"):
        hmm.log_prob(np.array([[5, 0, 0]]))
    with pytest.raises(ModelError, match="n_trials"):
        MultinomialEmission([[0.5, 0.5]], 1, n_trials=0)
    with pytest.raises(ModelError, match="emission_probs row 1"):
        HMM.multinomial([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.5, 0.5], [0.5, 0.6]], 3)
    free = HMM.multinomial([1.0], [[1.0]], [[0.5, 0.5]], None)
    with pytest.raises(ModelError, match="needs n_trials"):
        free.sample(0, 3)
