"""Topic models: recovery of the Griffiths-Steyvers bars (the exact support, the shape within the
asymptotic posterior spread), batch and online VB equal to scikit-learn's from one start, PLSA
monotone, tempered PLSA equal to PLSA at temperature 1 and monotone in its tempered objective,
ProdLDA's predictions against the known-topic posterior, perplexity and coherence against closed
forms and gensim, the text pipeline, and bad input."""

import bz2

import jax
import numpy as np
import pytest

import inference  # noqa: F401  (float64)
from genzoo import text
from pgm import topics
from inference.errors import DataError
from pgm.topics import (LDA, BagOfWords, bars_topics, collapsed_gibbs, completion_perplexity, fit_plsa, fit_prodlda,
                        match_topics, npmi_coherence, top_words, umass_coherence, variational_bayes, vb_e_step)
from pgm.topics.lda_vb import _dirichlet_expectation, _vb_start

BARS = bars_topics(5)  # 10 topics over 25 words


@pytest.fixture(scope="module")
def bars():
    """300 documents of 100 tokens from the LDA program with the bars as topics (theta ~ Dir(1))."""
    lda = LDA(10, 25, alpha=1.0, eta=0.1)
    rng = np.random.default_rng(0)
    theta = rng.dirichlet(np.ones(10), 300)
    counts = np.stack([rng.multinomial(100, t @ BARS) for t in theta])
    return lda, counts


def _fixture_theta():
    return np.random.default_rng(0).dirichlet(np.ones(10), 300)  # the fixture's draws (same seed, same order)


def _bars_found(topic_word):
    """The exact recovery criterion, no tolerance: matched to the bars (Hungarian, TV), each estimated
    topic's five largest entries are its bar's five words. Returns the matched topics and the count."""
    perm, _ = match_topics(topic_word, BARS)
    matched = np.asarray(topic_word)[perm]
    top = np.sort(np.argsort(-matched, axis=1)[:, :5], axis=1)
    return matched, sum(np.array_equal(top[k], np.flatnonzero(BARS[k])) for k in range(len(BARS)))


def _on_bar_tv(matched):
    """Each matched topic restricted to its bar's words and renormalised, in TV from the uniform 1/5."""
    on = matched[BARS > 0].reshape(len(BARS), 5)
    return 0.5 * np.abs(on / on.sum(1, keepdims=True) - 0.2).sum(1)


def _on_bar_tv_quantile(theta, lengths, level, inflate=1.0, draws=20_000):
    """The ``level`` quantile of max_k (on-bar TV of topic k) for an estimate distributed as the
    asymptotic (Bernstein-von Mises) posterior of the bars given the corpus, its covariance times
    ``inflate``.

    The likelihood of document d is multinomial with p_d = theta_d @ phi. Its Fisher information in
    (phi on the bars' support, theta_d) is L_d J_d^T diag(1/p_d) J_d with J_d = dp_d / d(phi, theta_d);
    the simplex constraints are removed with orthonormal sum-zero bases. With alpha = 1 the prior of
    theta_d is flat, so integrating theta_d out leaves, to first order, the Schur complement
    S = sum_d (I_pp - I_pt I_tt^+ I_tp) as the information about phi (I_tt^+: a pseudo-inverse,
    since rows minus columns of the bars is a direction of theta_d that leaves p_d unchanged and so
    carries no information). The eta = 0.1 prior adds O(1/n_k) to ~3,000 tokens per topic: dropped.
    The off-bar entries sit on the boundary phi = 0, where this expansion does not hold: they are
    left to the exact support criterion of _bars_found."""
    from scipy.linalg import null_space

    k, v = BARS.shape
    support = [np.flatnonzero(row) for row in BARS]
    topic_of, word_of = np.repeat(np.arange(k), 5), np.concatenate(support)  # the 50 on-bar entries
    n_par = len(word_of)
    u_phi = np.kron(np.eye(k), null_space(np.ones((1, 5))))  # (50, 40)
    u_theta = null_space(np.ones((1, k)))  # (10, 9)
    schur = np.zeros((u_phi.shape[1],) * 2)
    for theta_d, n_d in zip(theta, lengths):
        jac = np.zeros((v, n_par + k))
        jac[word_of, np.arange(n_par)] = theta_d[topic_of]  # dp_w / dphi_kw = theta_dk
        jac[:, n_par:] = BARS.T  # dp_w / dtheta_dk = phi_kw
        info = n_d * jac.T @ (jac / (theta_d @ BARS)[:, None])
        i_pp = u_phi.T @ info[:n_par, :n_par] @ u_phi
        i_pt = u_phi.T @ info[:n_par, n_par:] @ u_theta
        i_tt = u_theta.T @ info[n_par:, n_par:] @ u_theta
        schur += i_pp - i_pt @ np.linalg.pinv(i_tt, hermitian=True) @ i_pt.T
    cov = inflate * u_phi @ np.linalg.inv(schur) @ u_phi.T
    deviations = np.random.default_rng(1).multivariate_normal(np.zeros(n_par), cov, draws, method="eigh")
    return np.quantile(0.5 * np.abs(deviations).reshape(draws, k, 5).sum(2).max(1), level)


# Recovery of the bars, by two criteria that need no measured bound. (1) The support, exactly: every
# matched topic's five largest entries are its bar (_bars_found). (2) The shape on the bar: an
# estimate of the posterior mean is off the truth by the posterior's spread, whose asymptotic
# covariance _on_bar_tv_quantile computes from the true bars and proportions (expected on-bar TV
# 0.023 per topic; 0.015 for the oracle that knows every token's topic). Collapsed Gibbs reports the
# average over its kept sweeps of E[phi | z^(s)]. In the stationary chain each term has variance
# Var(E[phi | z] | w) <= Var(phi | w) (total variance), and an average of equally distributed terms
# has at most the variance of one (Cauchy-Schwarz), whatever the autocorrelation; this Monte Carlo
# error has mean zero given the data, so it adds to the data's error: covariance x 2 covers both.
# The bound is the 0.999 quantile of the maximum over the 10 topics under that law, 0.086 (a 0.1%
# chance of a false failure at the asymptotic law; from 20,000 draws the quantile rests on 20
# beyond it: 0.086 to 0.089 over five seeds of the draws, against a margin of 0.04). Measured
# largest on-bar TV: 0.042, 0.037, 0.051, 0.040 (keys 0, 1, 3, 4); the auto burn-in run 0.043.
# Two caveats: the blocked sampler (n_blocks) updates a block's tokens from the counts before the
# block, an approximation of the collapsed conditional; and it does not always reach the bars'
# mode in 200 sweeps: from key 2 it keeps two bars merged (9 of 10 found). The bound is for a run
# in the bars' mode; key 0 is one.
def test_collapsed_gibbs_recovers_the_bars(bars):
    lda, counts = bars
    r = collapsed_gibbs(jax.random.PRNGKey(0), counts, lda, num_sweeps=100, burn_in=100, n_blocks=32)
    matched, found = _bars_found(r.params["topic_word"])
    assert found == 10
    assert _on_bar_tv(matched).max() < _on_bar_tv_quantile(_fixture_theta(), counts.sum(1), 0.999, inflate=2.0)
    assert r.history[-1] > r.history[0]
    np.testing.assert_allclose(r.params["topic_word"].sum(1), 1.0)


def test_collapsed_gibbs_automatic_burn_in_stops_by_its_rule(bars):
    """burn_in="auto": the history shows the stop where the rule says, and the bars are found."""
    lda, counts = bars
    r = collapsed_gibbs(jax.random.PRNGKey(0), counts, lda, num_sweeps=100, burn_in="auto", n_blocks=32,
                        window=10, burn_in_tol=1e-3)
    burned = r.diagnostics["burn_in"]
    assert burned % 10 == 0 and 20 <= burned < 1000
    means = r.history[:burned].reshape(-1, 10).mean(1) / counts.sum()  # per window, per token
    changes = np.abs(np.diff(means))
    assert changes[-1] < 1e-3 * 10  # stopped after the first window that changed less than the tolerance
    assert np.all(changes[:-1] >= 1e-3 * 10)
    matched, found = _bars_found(r.params["topic_word"])  # the criteria of the fixed burn-in test above
    assert found == 10
    assert _on_bar_tv(matched).max() < _on_bar_tv_quantile(_fixture_theta(), counts.sum(1), 0.999, inflate=2.0)


def test_batch_vb_elbo_rises_and_the_best_restart_finds_the_bars(bars):
    lda, counts = bars
    fits = [variational_bayes(jax.random.PRNGKey(seed), counts, lda, max_iter=100) for seed in range(3)]
    for r in fits:
        assert r.log_evidence_kind == "lower_bound"
        assert np.all(np.diff(r.history) > -1e-6 * abs(r.history[-1]))  # coordinate ascent on the ELBO
    # Mean-field VB from a random start may merge bars (a local optimum): by the support criterion
    # the three starts find 7, 10 and 10 bars. The ELBO tells the good optima apart: the restart
    # with the highest bound recovers every bar. Its on-bar shape is not held to the posterior's
    # spread: mean-field VB is biased at a fixed document length (exp E[log theta_dk] ~ gamma_dk - 1/2
    # acts on every document and does not average out over documents; measured on-bar TV mean 0.037
    # against the posterior's 0.023). That VB's numbers are the reference algorithm's is
    # test_batch_vb_equals_scikit_learn_step_for_step.
    best = max(fits, key=lambda r: r.log_evidence)
    assert _bars_found(best.params["topic_word"])[1] == 10
    assert _bars_found(fits[0].params["topic_word"])[1] < 10  # the merged optimum: the ELBO is what tells


def test_batch_vb_without_the_elbo_runs_max_iter_of_the_same_updates(bars):
    lda, counts = bars
    tracked = variational_bayes(jax.random.PRNGKey(0), counts, lda, max_iter=6, tol=-np.inf)
    untracked = variational_bayes(jax.random.PRNGKey(0), counts, lda, max_iter=6, track_elbo=False)
    assert len(tracked.history) == 6 and len(untracked.history) == 0
    assert untracked.diagnostics["passes"] == 6
    np.testing.assert_array_equal(untracked.params["lambda"], tracked.params["lambda"])
    assert untracked.log_evidence == tracked.log_evidence  # the final bound is still reported


class _GivenStarts:
    """Stands in for scikit-learn's ``random_state_``, whose only use in its E-step is the draw of
    every document's starting gamma, ``gamma(100, 0.01, (documents, topics))``: hands out the
    starts that our run used instead."""

    def __init__(self):
        self.starts = None

    def gamma(self, shape, scale, size):
        assert self.starts.shape == size
        return np.array(self.starts, dtype=float)  # sklearn writes into it


def _sklearn_from(start, counts, monkeypatch, **options):
    """scikit-learn's LatentDirichletAllocation with lambda (``components_``) at ``start`` and its
    digamma replaced by SciPy's.

    ``partial_fit`` initialises only when ``components_`` is absent, so one call on a document sets
    every attribute, then ``components_``, ``exp_dirichlet_component_`` (exp E[log phi]),
    ``n_batch_iter_`` (its step counter, 1 after initialisation) and ``random_state_`` (the
    E-step's starts) are set. scikit-learn's Cython digamma is an asymptotic series with absolute
    error up to ~3e-9 (against SciPy's psi, on these arguments), which shows in lambda at ~1e-8
    relative; with SciPy's in its place the two programs differ by float rounding only."""
    import sklearn.decomposition._lda as sklearn_lda
    from scipy.special import psi
    from sklearn.decomposition import LatentDirichletAllocation

    def expectation_2d(x):
        return psi(x) - psi(x.sum(1, keepdims=True))

    def expectation_1d(doc_topic, prior, out):  # the Cython routine's contract: in place
        doc_topic += prior
        out[:] = np.exp(psi(doc_topic) - psi(doc_topic.sum()))

    monkeypatch.setattr(sklearn_lda, "_dirichlet_expectation_2d", expectation_2d)
    monkeypatch.setattr(sklearn_lda, "cy_dirichlet_expectation_1d", {"double": expectation_1d})
    peer = LatentDirichletAllocation(start.shape[0], doc_topic_prior=1.0, topic_word_prior=0.1,
                                     total_samples=len(counts), **options)
    peer.partial_fit(counts[:1])
    peer.components_ = start.copy()
    peer.exp_dirichlet_component_ = np.exp(expectation_2d(start))
    peer.n_batch_iter_ = 1
    peer.random_state_ = _GivenStarts()
    return peer


# Float tolerance of the comparisons with scikit-learn. Each lambda entry is eta plus a sum of 300
# positive per-document terms, each the end of ~10-100 E-step updates built from sums over <= 25 words
# and 10 topics. Summed in other orders, n positive terms differ by at most (n - 1) u relative
# (u = 1.1e-16): 3.3e-14 for the 300 documents, and the E-step is a contraction, which does not
# amplify what enters it; scikit-learn's eps = 2.2e-16 added to each denominator (ours 1e-100) is
# a relative change of eps / norm, below 1e-13 for every norm > 2e-3. Five iterations adding such
# errors without amplification stay below ~7e-13; measured largest relative difference 4e-14 over
# 5 batch iterations and 2 online passes; rtol 1e-12. (A document whose mean change fell within
# rounding of e_step_tol on one side only would stop one update apart: a difference near 1e-3,
# far outside; none does.)
def test_batch_vb_equals_scikit_learn_step_for_step(bars, monkeypatch):
    """Batch VB from one lambda against scikit-learn's batch EM step (``learning_method="batch"``),
    five iterations, lambda compared after each. scikit-learn starts every document's E-step afresh
    from a random gamma, ours from the document's previous gamma (warm start): scikit-learn is
    given, at each iteration, the starts ours used (_vb_start first, then our previous gamma)."""
    lda, counts = bars
    counts = counts.astype(float)
    key = jax.random.PRNGKey(0)
    start = np.random.default_rng(5).gamma(100.0, 0.01, (10, 25))  # scikit-learn's own kind of start
    peer = _sklearn_from(start, counts, monkeypatch, learning_method="batch")
    gamma = np.asarray(_vb_start(jax.random.split(key, 3)[1], (300, 10)))  # our first E-step's start
    for n in range(1, 6):
        peer.random_state_.starts = gamma
        peer._em_step(counts, total_samples=len(counts), batch_update=True)  # what fit runs per iteration
        ours = variational_bayes(key, counts, lda, max_iter=n, tol=-np.inf, start=start)
        np.testing.assert_allclose(ours.params["lambda"], peer.components_, rtol=1e-12)
        gamma = ours.params["gamma"]


def test_online_vb_equals_scikit_learn_pass_for_pass(bars, monkeypatch):
    """Online VB against scikit-learn's ``partial_fit`` (``learning_method="online"``) from one
    lambda: the same minibatches of 50 in our order, two passes (12 steps), lambda compared after each pass.
    scikit-learn's step counter starts at 1, so its rho_t = (tau_0 + 1 + t)^-kappa: its
    learning_offset 9 is our 10. Each minibatch's E-step starts, as in the batch test, where ours did."""
    lda, counts = bars
    counts = counts.astype(float)
    key = jax.random.PRNGKey(0)
    _, k_gamma, k_perm = jax.random.split(key, 3)
    start = np.random.default_rng(5).gamma(100.0, 0.01, (10, 25))
    peer = _sklearn_from(start, counts, monkeypatch, learning_method="online", batch_size=50, learning_offset=9.0,
                         learning_decay=0.7)
    gamma = np.asarray(_vb_start(k_gamma, (300, 10)))
    for passes in (1, 2):
        for b in np.asarray(jax.random.permutation(jax.random.fold_in(k_perm, passes - 1), 6)):  # our order
            rows = slice(50 * b, 50 * b + 50)
            peer.random_state_.starts = gamma[rows]
            peer.partial_fit(counts[rows])
        ours = variational_bayes(key, counts, lda, max_iter=passes, online=True, batch_size=50, learning_offset=10.0,
                                 learning_decay=0.7, start=start)
        np.testing.assert_allclose(ours.params["lambda"], peer.components_, rtol=1e-12)
        gamma = ours.params["gamma"]


def test_vb_start_is_checked():
    """A given start is used as lambda (the scikit-learn tests above); a wrong one is refused by name."""
    lda, counts = LDA(2, 3), np.array([[1, 2, 0], [0, 1, 1]])
    with pytest.raises(DataError, match=r"shape \(topics, words\) = \(2, 3\), got shape \(3, 2\)"):
        variational_bayes(0, counts, lda, start=np.ones((3, 2)))
    with pytest.raises(DataError, match="topic 1, word 2"):
        variational_bayes(0, counts, lda, start=np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))
    with pytest.raises(DataError, match="topic 0, word 1"):
        variational_bayes(0, counts, lda, start=np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]]))


def test_prodlda_predicts_documents_between_the_known_topic_posterior_and_the_raw_counts(bars):
    """Each document's predictive word distribution against the truth theta_d @ BARS, in total
    variation, beside two references on the same documents: the raw counts n_d / L_d (no
    sharing across documents) and the posterior mean of theta_d given the *true* bars (fold_in),
    whose error is the spread of the topic-proportion posterior itself.

    ProdLDA's decoder is a product of experts, softmax(theta_d^T B): softmax(B_k) is the word
    distribution of a document made of topic k alone, so matching it to a bar measures
    extrapolation to pure documents, which Dir(1) proportions seldom show. Its predictive
    distribution is what the ELBO fits, and topics shared across documents are what make it
    better than each document's own counts."""
    _, counts = bars
    docs = counts[:150]
    r = fit_prodlda(jax.random.PRNGKey(0), docs, 10, hidden=50, steps=1500, learning_rate=0.01)
    theta = np.random.default_rng(0).dirichlet(np.ones(10), 300)[:150]  # the fixture's draws
    truth = theta @ BARS

    def tv(p):
        return 0.5 * np.abs(p - truth).sum(1)

    prod = tv(r.params["model"].word_probs(r.params, docs))
    raw = tv(docs / docs.sum(1, keepdims=True))  # measured mean 0.188
    oracle = tv(topics.fold_in(BARS, docs, alpha=1.0) @ BARS)  # measured mean 0.094
    # Paired over the same 150 documents, each mean difference has standard error sd / sqrt(150);
    # 3 standard errors is a one-sided 0.13% chance under no difference. Measured: ProdLDA 0.129 to
    # 0.134 over two seeds, 14 standard errors below the raw counts and 17 above the oracle.
    def three_se(d):
        return 3 * d.std(ddof=1) / np.sqrt(len(d))

    assert prod.mean() < raw.mean() - three_se(prod - raw)  # it learned topics that the documents share
    assert prod.mean() > oracle.mean() - three_se(prod - oracle)  # no better than knowing the bars


def test_chunked_entries_rebuild_the_counts():
    counts = np.array([[0, 3, 1, 0, 2, 1, 1], [0, 0, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1]])
    bow = BagOfWords.from_counts(counts, allow_empty=True)
    for rows in (None, [3, 0, 1]):
        owner, words, chunk_counts = bow.chunked(rows, width=3)
        selected = counts if rows is None else counts[rows]
        rebuilt = np.zeros_like(selected, dtype=float)
        np.add.at(rebuilt, (np.repeat(owner, 3), words.ravel()), chunk_counts.ravel())
        np.testing.assert_array_equal(rebuilt, selected)
        assert np.all(np.diff(owner) >= 0)  # sorted: per-document sums are sorted segment sums
        widths = (selected > 0).sum(1)
        assert len(owner) == np.sum(-(-widths // 3))  # the empty document has no chunk


def _e_step_reference(counts, exp_elog_beta, alpha, max_iter, tol):
    """The per-document loop of Hoffman's and scikit-learn's code, in NumPy with SciPy's digamma."""
    from scipy.special import psi

    def exp_elog(g):
        return np.exp(psi(g) - psi(g.sum()))

    gammas, sstats = [], np.zeros_like(exp_elog_beta)
    for row in counts:
        ids = np.flatnonzero(row)
        cnts, beta_d = row[ids], exp_elog_beta[:, ids]
        gamma = np.ones(exp_elog_beta.shape[0])
        for _ in range(max_iter):
            theta = exp_elog(gamma)
            new = alpha + theta * ((cnts / (theta @ beta_d + 1e-100)) @ beta_d.T)
            change = np.mean(np.abs(new - gamma))
            gamma = new
            if change < tol:
                break
        theta = exp_elog(gamma)
        sstats[:, ids] += np.outer(theta, cnts / (theta @ beta_d + 1e-100))
        gammas.append(gamma)
    return np.array(gammas), sstats * exp_elog_beta


def test_e_step_equals_the_per_document_loop(bars):
    """Vectorised over chunks, each document stopping at its own tolerance: the same numbers as the
    sequential loop (float64 round-off apart)."""
    _, counts = bars
    rng = np.random.default_rng(1)
    lam = rng.gamma(100.0, 0.01, (10, 25)) + rng.random((10, 25)) * 20
    exp_elog_beta = np.exp(np.asarray(_dirichlet_expectation(jax.numpy.asarray(lam))))
    bow = BagOfWords.from_counts(counts[:40])
    for tol in (1e-3, 0.0):  # per-document stopping, and max_iter updates for all
        gamma, sstats = vb_e_step(*(jax.numpy.asarray(a) for a in bow.chunked(width=8)), exp_elog_beta.T, 0.1,
                                  jax.numpy.ones((40, 10)), max_iter=30, tol=tol)
        ref_gamma, ref_sstats = _e_step_reference(counts[:40].astype(float), exp_elog_beta, 0.1, 30, tol)
        np.testing.assert_allclose(gamma, ref_gamma, rtol=1e-10)
        np.testing.assert_allclose(sstats, ref_sstats, rtol=1e-10)


def test_online_vb_is_the_stepwise_algorithm():
    """The compiled online loop (stacked, padded minibatches) against the algorithm written out one
    minibatch at a time: 10 documents in minibatches of 4, 4 and 2, three passes."""
    jnp = jax.numpy
    lda = LDA(3, 12, alpha=0.3, eta=0.2)
    counts = np.random.default_rng(2).poisson(1.5, (10, 12))
    counts[:, 0] += 1  # no empty document
    key = jax.random.PRNGKey(3)
    r = variational_bayes(key, counts, lda, max_iter=3, online=True, batch_size=4, e_step_iter=50,
                          learning_offset=5.0, learning_decay=0.8)
    k_lam, k_gamma, k_perm = jax.random.split(key, 3)
    lam, gamma = _vb_start(k_lam, (3, 12)), _vb_start(k_gamma, (10, 3))
    bow = BagOfWords.from_counts(counts)
    batches = [np.arange(0, 4), np.arange(4, 8), np.arange(8, 10)]
    t = 0
    for epoch in range(3):
        for b in np.asarray(jax.random.permutation(jax.random.fold_in(k_perm, epoch), 3)):
            rows = batches[b]
            g, sstats = vb_e_step(*(jnp.asarray(a) for a in bow.chunked(rows)),
                                  jnp.exp(_dirichlet_expectation(lam)).T, 0.3, gamma[rows], max_iter=50)
            rho = (5.0 + t) ** -0.8
            lam = (1 - rho) * lam + rho * (0.2 + 10 / len(rows) * sstats)
            gamma = gamma.at[rows].set(g)
            t += 1
    np.testing.assert_allclose(r.params["lambda"], lam, rtol=1e-10)
    np.testing.assert_allclose(r.params["gamma"], gamma, rtol=1e-10)
    assert len(r.history) == 3 and np.all(np.isfinite(r.history))


def test_plsa_likelihood_is_monotone_and_fits_the_bars(bars):
    _, counts = bars
    r = fit_plsa(jax.random.PRNGKey(1), counts, 10, max_iter=150)
    assert np.all(np.diff(r.history) >= 0)  # inference.em also checks this and would raise
    _, tv = match_topics(r.params.topic_word, BARS)
    assert np.median(tv) < 0.1


def test_perplexity_of_uniform_topics_is_the_vocabulary_size(bars):
    _, counts = bars
    first, second = counts // 2, counts - counts // 2
    assert completion_perplexity(first, second, topic_word=np.full((3, 25), 1 / 25), alpha=0.1) == pytest.approx(25.0)
    # With the true topics, folding in half of each document scores the other half about as well as
    # the true proportions do (the oracle; the halves here share their word proportions, so the
    # fold-in may even beat it), and far below the uniform model's 25.
    rng = np.random.default_rng(0)
    theta = rng.dirichlet(np.ones(10), 300)  # the fixture's proportions (same seed, same draws)
    oracle = np.exp(-np.sum(second * np.log(theta @ BARS)) / second.sum())
    folded = completion_perplexity(first, second, topic_word=BARS + 1e-12, alpha=1.0)
    assert folded < 1.1 * oracle < 25.0  # measured: folded 21.18, oracle 21.63


def test_coherence_equals_gensim():
    from gensim.corpora import Dictionary
    from gensim.models.coherencemodel import CoherenceModel

    texts = [["apple", "pear", "fruit"], ["apple", "fruit"], ["car", "road", "wheel"], ["car", "wheel", "fruit"],
             ["pear", "fruit", "road"]]
    vocab = sorted({w for t in texts for w in t})
    counts = text.document_term_matrix(text.encode(texts, vocab), len(vocab))
    topic_word = np.random.default_rng(0).dirichlet(np.ones(len(vocab)), 2)
    tops = top_words(topic_word, vocab, n=4)
    dictionary = Dictionary(texts)
    corpus = [dictionary.doc2bow(t) for t in texts]
    umass = CoherenceModel(topics=tops, corpus=corpus, dictionary=dictionary, coherence="u_mass", topn=4)
    # gensim adds its 1e-12 to the co-document *fraction*, i.e. 1e-12 * D to the count.
    np.testing.assert_allclose(umass_coherence(topic_word, counts, n=4, eps=1e-12 * len(texts)),
                               umass.get_coherence_per_topic(), rtol=1e-10)
    npmi = CoherenceModel(topics=tops, texts=texts, dictionary=dictionary, coherence="c_npmi", topn=4,
                          window_size=100)  # a window longer than any document: document co-occurrence
    np.testing.assert_allclose(npmi_coherence(topic_word, counts, n=4), npmi.get_coherence_per_topic(), rtol=1e-8)


def test_bad_counts_get_typed_errors():
    with pytest.raises(DataError, match="word 1 in document 0 is negative"):
        BagOfWords.from_counts(np.array([[1, -1], [2, 0]]))
    with pytest.raises(DataError, match="document 1 is empty"):
        BagOfWords.from_counts(np.array([[1, 1], [0, 0]]))
    with pytest.raises(DataError, match="NaN"):
        BagOfWords.from_counts(np.array([[1.0, np.nan]]))
    with pytest.raises(DataError, match="exceeds the vocabulary size 2"):
        collapsed_gibbs(jax.random.PRNGKey(0), np.array([[1, 2]]), LDA(3, 2))
    with pytest.raises(DataError, match="burn_in must be a number of sweeps or 'auto'"):
        collapsed_gibbs(jax.random.PRNGKey(0), np.array([[1, 2]]), LDA(2, 2), burn_in="soon")


def _plsa_reference_step(counts, theta, phi, beta):
    """One tempered EM step in NumPy, cell by cell: q(z | d, w) proportional to
    (theta_dz phi_zw)^beta, then theta, phi from the normalised expected counts."""
    q = (theta[:, :, None] * phi[None]) ** beta  # (D, K, V)
    q /= q.sum(1, keepdims=True)
    resp = counts[:, None, :] * q
    n_dk, n_kw = resp.sum(2), resp.sum(0)
    return n_dk / n_dk.sum(1, keepdims=True), n_kw / n_kw.sum(1, keepdims=True)


def _tempered_objective(counts, theta, phi, beta):
    """L_beta = sum_dw n_dw log sum_z (theta_dz phi_zw)^beta, the maximum over q of the tempered
    free energy F_beta(q; theta, phi) = sum_dw n_dw sum_z q [beta log(theta phi) - log q]; the
    log-likelihood at beta = 1."""
    return float(np.sum(counts * np.log(np.sum((theta[:, :, None] * phi[None]) ** beta, axis=1))))


def _plsa_corpus():
    rng = np.random.default_rng(5)
    counts = rng.poisson(1.5, (12, 15)) * (rng.uniform(size=(12, 15)) < 0.7)
    counts[:, 0] += 1  # no empty document
    return counts


def test_tempered_plsa_at_temperature_one_is_plsa_step_for_step():
    """With beta = 1 the tempered E-steps (dense, forced onto its tempered branch, and sparse)
    and PLSA's own EM all equal the NumPy reference step, iterate by iterate, from one start."""
    from inference import em

    counts = _plsa_corpus()
    bow = topics.BagOfWords.from_counts(counts)
    start = topics.PLSA.initialize(jax.random.PRNGKey(1), *counts.shape, 3)
    reference, plsa = (start.doc_topic, start.topic_word), start
    tempered = {"dense": (start.doc_topic, start.topic_word), "sparse": (start.doc_topic, start.topic_word)}
    for _ in range(25):
        reference = _plsa_reference_step(counts, *reference, 1.0)
        plsa = em.fit(plsa, counts, max_iter=1, tol=-np.inf).params
        (dense, _) = topics.plsa_e_step_dense(bow.dense_device(), *bow.arrays(), *tempered["dense"], 1.0,
                                              tempered=True)
        (sparse, _) = topics.plsa_e_step(*bow.arrays(), *tempered["sparse"], 1.0)
        for name, stats in (("dense", dense), ("sparse", sparse)):
            new = start.from_stats(stats)
            tempered[name] = (new.doc_topic, new.topic_word)
        # the routes sum the same products in different orders: each step adds a few ulps of
        # relative error (2.2e-16 each) and EM does not amplify them much: measured largest
        # relative difference over the 25 steps 2.5e-14, so 1e-12 leaves a factor 40
        for theta, phi in ((plsa.doc_topic, plsa.topic_word), tempered["dense"], tempered["sparse"]):
            np.testing.assert_allclose(theta, reference[0], rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(phi, reference[1], rtol=1e-12, atol=1e-300)
    # fit_plsa runs the same 25 steps from the same start
    fitted = fit_plsa(jax.random.PRNGKey(1), counts, 3, max_iter=25, tol=-np.inf).params
    np.testing.assert_allclose(fitted.topic_word, reference[1], rtol=1e-12, atol=1e-300)


def test_tempered_em_never_decreases_the_tempered_objective():
    """Tempered EM is coordinate ascent on F_beta (see _tempered_objective): the E-step's
    q ~ (theta phi)^beta attains max_q F_beta = L_beta, the M-step maximises F_beta's first term.
    So L_beta never decreases from iterate to iterate, while the likelihood may."""
    from inference import em

    counts, beta = _plsa_corpus(), 0.6
    model = topics.PLSA.initialize(jax.random.PRNGKey(2), *counts.shape, 3, beta=beta)
    objective, loglik, reference = [], [], (model.doc_topic, model.topic_word)
    for step in range(40):
        theta, phi = model.doc_topic, model.topic_word
        objective.append(_tempered_objective(counts, theta, phi, beta))
        loglik.append(_tempered_objective(counts, theta, phi, 1.0))
        if step == 0:  # the E-step's q attains F_beta = L_beta (float rounding, 1e-12 relative)
            q = (theta[:, :, None] * phi[None]) ** beta
            q /= q.sum(1, keepdims=True)
            free = np.sum(counts[:, None, :] * q * (beta * np.log(theta[:, :, None] * phi[None]) - np.log(q)))
            assert free == pytest.approx(objective[0], rel=1e-12)
        model = em.fit(model, counts, max_iter=1, tol=-np.inf, check_monotone=False).params
        reference = _plsa_reference_step(counts, *reference, beta)
        np.testing.assert_allclose(model.topic_word, reference[1], rtol=1e-12, atol=1e-300)
    gains = np.diff(objective)
    # a decrease beyond the rounding of a sum of 180 logs (1e-12 relative of |L| ~ 220) would be a
    # bug; measured: smallest gain +1.3e-5
    assert gains.min() > -1e-12 * abs(objective[0]), gains.min()
    assert objective[-1] - objective[0] > 1.0  # it climbed (measured 10.2 nats) ...
    assert np.diff(loglik).min() < -0.1  # ... while the likelihood fell at some step (measured -1.0)
    # fit_plsa with beta runs the same steps (its monotonicity check is off: the likelihood may fall)
    fitted = fit_plsa(jax.random.PRNGKey(2), counts, 3, max_iter=40, tol=-np.inf, beta=beta).params
    np.testing.assert_allclose(fitted.topic_word, model.topic_word, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("beta", [1.0, 0.8])
def test_plsa_e_step_dense_and_sparse_equal_the_explicit_posterior(beta, monkeypatch):
    """Both E-steps against p_beta(z | d, w) formed cell by cell in NumPy."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.0, (6, 9)) * (rng.uniform(size=(6, 9)) < 0.6)
    counts[:, 0] += 1  # no empty document
    theta, phi = rng.dirichlet(np.ones(3), 6), rng.dirichlet(np.ones(9), 3)
    joint = (theta[:, :, None] * phi[None]) ** beta  # (D, K, V)
    resp = counts[:, None, :] * joint / joint.sum(1, keepdims=True)
    loglik = np.sum(counts * np.log(theta @ phi))
    bow = topics.BagOfWords.from_counts(counts)
    sparse, ll_sparse = topics.plsa_e_step(*bow.arrays(), theta, phi, beta)
    dense, ll_dense = topics.plsa_e_step_dense(bow.dense_device(), *bow.arrays(), theta, phi, beta,
                                               tempered=beta != 1.0)
    for (n_dk, n_kw), ll in ((sparse, ll_sparse), (dense, ll_dense)):
        np.testing.assert_allclose(n_dk, resp.sum(2), rtol=1e-12)
        np.testing.assert_allclose(n_kw, resp.sum(0), rtol=1e-12, atol=1e-15)
        assert float(ll) == pytest.approx(loglik, rel=1e-13)
    # fit_plsa takes the sparse E-step above PLSA_DENSE_CELLS: the same fit
    dense_fit = fit_plsa(jax.random.PRNGKey(0), counts, 3, max_iter=20, beta=beta)
    monkeypatch.setattr(topics.plsa, "PLSA_DENSE_CELLS", 0)  # the module whose PLSA reads it
    sparse_fit = fit_plsa(jax.random.PRNGKey(0), counts, 3, max_iter=20, beta=beta)
    np.testing.assert_allclose(dense_fit.history, sparse_fit.history, rtol=1e-11)


def test_em_fit_prepares_plsa_data_once():
    """em.fit turns a count matrix into the checked BagOfWords once (prepare_data); the fit equals
    the one given that BagOfWords directly, and bad counts are still refused by name."""
    from inference import em

    counts = np.array([[3, 1, 0, 0], [2, 2, 0, 1], [0, 0, 4, 2], [0, 1, 3, 3]])
    start = topics.PLSA.initialize(jax.random.PRNGKey(0), 4, 4, 2)
    from_matrix = em.fit(start, counts, max_iter=15, tol=-np.inf)
    from_bow = em.fit(start, BagOfWords.from_counts(counts), max_iter=15, tol=-np.inf)
    np.testing.assert_array_equal(from_matrix.history, from_bow.history)
    with pytest.raises(DataError, match="negative"):
        em.fit(start, -counts, max_iter=2)


def test_text_pipeline():
    assert text.tokenize("The cats, the DOGS & 42 birds!") == ["cats", "dogs", "birds"]
    vocab = text.build_vocabulary([["a", "b"], ["a", "c"], ["a", "b"], ["d"]], min_df=2, max_df=0.6)
    assert vocab == ("b",)  # "a" is in 3 of 4 documents (> 0.6), "c" and "d" in one
    train, test = text.train_test_split(10, test_fraction=0.3, seed=0)
    assert len(test) == 3 and sorted(np.r_[train, test]) == list(range(10))
    corpus = text.make_corpus(["alpha beta gamma delta", "alpha beta", "gamma delta alpha"], min_df=1, max_df=1.0)
    first, second = text.completion_halves(corpus)
    assert (first + second == corpus.counts).all() and first.sum() == 2 + 1 + 1


def test_wikipedia_reader_on_a_small_dump(tmp_path):
    body = " ".join(["physics"] * 30 + ["energy"] * 30)
    xml = ("<mediawiki xmlns=\"http://www.mediawiki.org/xml/export-0.10/\"><siteinfo><namespaces>"
           "<namespace key=\"0\" /></namespaces></siteinfo>"
           f"<page><title>Physics</title><ns>0</ns><id>1</id><revision><text>'''Physics''' {body} [[Energy]]</text>"
           "</revision></page><page><title>Redirect</title><ns>0</ns><id>2</id><revision><text>#REDIRECT [[Physics]]"
           "</text></revision></page></mediawiki>")
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(xml.encode()))
    titles, texts = text.wikipedia_documents(path)
    assert titles == ["Physics"]  # the redirect is dropped
    assert "[[" not in texts[0] and text.tokenize(texts[0]).count("energy") == 31


def test_collapsed_log_likelihood_by_table_equals_log_gamma():
    from jax.scipy.special import gammaln

    from pgm.topics.lda_gibbs import _collapsed_log_likelihood

    n_wk = jax.numpy.asarray(np.random.default_rng(0).integers(0, 30, (15, 4)), dtype=jax.numpy.int32)
    table = gammaln(jax.numpy.arange(n_wk.sum() + 1) + 0.05) - gammaln(0.05)
    np.testing.assert_allclose(_collapsed_log_likelihood(n_wk, 0.05, table), _collapsed_log_likelihood(n_wk, 0.05),
                               rtol=1e-12)


def test_plsa_smoothed_topics_are_the_closed_form_floor():
    from pgm.topics import PLSA

    phi = np.array([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    model = PLSA(np.full((1, 2), 0.5), phi)
    smoothed = model.smoothed_topic_word(n_tokens=10, pseudo_tokens=0.5)
    # closed form: (phi + c / N) / (1 + V c / N) with c / N = 0.05, V = 3; float rounding only
    np.testing.assert_allclose(smoothed, (phi + 0.05) / 1.15, atol=1e-15)
    assert np.all(smoothed > 0)
    np.testing.assert_array_equal(model.smoothed_topic_word(n_tokens=10, pseudo_tokens=0.0), phi)
    with pytest.raises(DataError, match="n_tokens"):
        model.smoothed_topic_word(n_tokens=0)
    with pytest.raises(DataError, match="pseudo_tokens"):
        model.smoothed_topic_word(n_tokens=5, pseudo_tokens=-1.0)
