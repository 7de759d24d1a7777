"""Mean-field variational Bayes for LDA, batch and online.

:math:`q(\\theta_d) = \\mathrm{Dir}(\\gamma_d)`, :math:`q(\\phi_k) = \\mathrm{Dir}(\\lambda_k)`; online VB
takes stochastic natural-gradient steps on :math:`\\lambda` with :math:`\\rho_t = (\\tau_0 + t)^{-\\kappa}`.

References:
    Blei, Ng and Jordan (2003). Latent Dirichlet allocation. JMLR.
    Hoffman, Blei and Bach (2010). Online learning for latent Dirichlet allocation. NeurIPS.
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln, logsumexp

from inference.errors import DataError
from inference.rng import as_key
from inference.result import Result
from pgm.topics.corpus import BagOfWords, _bow, _check_topics
from pgm.topics.lda import LDA


def _dirichlet_expectation(concentration):
    """:math:`\\mathbb E[\\log x_k]` under :math:`\\mathrm{Dir}(c)`, rows independent."""
    return digamma(concentration) - digamma(jnp.sum(concentration, axis=-1, keepdims=True))


@partial(jax.jit, static_argnames=("max_iter",))
def vb_e_step(owner, words, counts, exp_elog_beta_t, alpha, gamma, max_iter: int = 100, tol: float = 1e-3):
    """Per-document updates of :math:`q(\\theta_d) = \\mathrm{Dir}(\\gamma_d)` with the topics fixed.

    ``owner``, ``words``, ``counts``: the chunked entries of :meth:`BagOfWords.chunked` (chunk
    ``c`` holds ``words[c]`` with ``counts[c]`` of the document in row ``owner[c]`` of ``gamma``;
    padding has count 0). ``exp_elog_beta_t`` is :math:`\\exp\\mathbb E[\\log\\phi_{kw}]`
    transposed, ``(V, K)`` (or any topic-word matrix, for folding in). Iterates, for every
    document at once,

    .. math::
        \\gamma_{dk} \\leftarrow \\alpha + \\exp\\mathbb E[\\log\\theta_{dk}] \\sum_w
        \\frac{n_{dw}\\, \\exp\\mathbb E[\\log\\phi_{kw}]}{\\sum_{k'} \\exp\\mathbb E[\\log\\theta_{dk'}]
        \\exp\\mathbb E[\\log\\phi_{k'w}]},

    a document stopping once the mean absolute change of its :math:`\\gamma_d` is below ``tol``
    (per document, as Hoffman's and scikit-learn's code do), all of them after ``max_iter``.
    Returns ``(gamma, sstats)`` with ``sstats`` :math:`(K, V)` the expected topic-word counts.
    """
    n_rows, n_topics = gamma.shape
    beta_w = exp_elog_beta_t[words]  # (C, W, K)

    def expectations(gamma):
        theta = jnp.exp(_dirichlet_expectation(gamma))  # (D, K)
        norm = jnp.einsum("ck,cwk->cw", theta[owner], beta_w) + 1e-100  # (C, W)
        return theta, counts / norm

    def body(state):
        i, gamma, active = state
        theta, ratio = expectations(gamma)
        per_chunk = jnp.einsum("cw,cwk->ck", ratio, beta_w)  # (C, K)
        new = alpha + theta * jax.ops.segment_sum(per_chunk, owner, num_segments=n_rows, indices_are_sorted=True)
        change = jnp.mean(jnp.abs(new - gamma), axis=1)
        return i + 1, jnp.where(active[:, None], new, gamma), active & (change >= tol)

    def cond(state):
        i, _, active = state
        return (i < max_iter) & jnp.any(active)

    _, gamma, _ = jax.lax.while_loop(cond, body, (0, gamma, jnp.ones(n_rows, bool)))
    theta, ratio = expectations(gamma)
    weights = ratio[:, :, None] * theta[owner][:, None, :]  # (C, W, K)
    sstats_t = jax.ops.segment_sum(weights.reshape(-1, n_topics), words.reshape(-1),
                                   num_segments=exp_elog_beta_t.shape[0])  # (V, K)
    return gamma, (sstats_t * exp_elog_beta_t).T


@partial(jax.jit, static_argnames=("n_docs",))
def vb_elbo(doc, word, count, gamma, lam, alpha, eta, n_docs: int, scale: float = 1.0):
    """The evidence lower bound at :math:`(\\gamma, \\lambda)` with each token's :math:`q(z)` at its
    optimum (Hoffman et al. 2010, eq. 3); ``scale`` multiplies the document terms (online VB)."""
    elog_theta = _dirichlet_expectation(gamma)
    elog_beta = _dirichlet_expectation(lam)
    k = gamma.shape[1]
    v = lam.shape[1]
    words = jnp.sum(count * logsumexp(elog_theta[doc] + elog_beta.T[word], axis=1))
    docs = (jnp.sum((alpha - gamma) * elog_theta) + jnp.sum(gammaln(gamma) - gammaln(alpha))
            + jnp.sum(gammaln(k * alpha) - gammaln(jnp.sum(gamma, axis=1))))
    topics = (jnp.sum((eta - lam) * elog_beta) + jnp.sum(gammaln(lam) - gammaln(eta))
              + jnp.sum(gammaln(v * eta) - gammaln(jnp.sum(lam, axis=1))))
    return scale * (words + docs) + topics


@partial(jax.jit, static_argnames=("e_step_iter", "n_docs", "track_elbo"))
def _batch_vb_step(lam, gamma, chunks, flat, alpha, eta, e_step_tol, e_step_iter: int, n_docs: int,
                   track_elbo: bool = True):
    """One batch iteration: E-step on every document, :math:`\\lambda = \\eta + \\bar s`, the ELBO
    (NaN without ``track_elbo``)."""
    gamma, sstats = vb_e_step(*chunks, jnp.exp(_dirichlet_expectation(lam)).T, alpha, gamma, max_iter=e_step_iter,
                              tol=e_step_tol)
    lam = eta + sstats
    return lam, gamma, vb_elbo(*flat, gamma, lam, alpha, eta, n_docs=n_docs) if track_elbo else jnp.nan


@partial(jax.jit, static_argnames=("n_passes", "e_step_iter", "track_elbo", "n_docs"))
def _online_vb_run(key, lam, gamma, batches, flat, alpha, eta, learning_offset, learning_decay, e_step_tol,
                   n_passes: int, e_step_iter: int, track_elbo: bool, n_docs: int):
    """Every pass of online VB in one compiled loop. ``batches`` are the stacked minibatches of
    :func:`_minibatches`; ``gamma`` has one extra row, the target of the padding members."""
    members, sizes, owner, words, counts = batches
    n_batches = members.shape[0]

    def update(carry, b):
        lam, gamma, t = carry
        rows = members[b]
        g, sstats = vb_e_step(owner[b], words[b], counts[b], jnp.exp(_dirichlet_expectation(lam)).T, alpha,
                              gamma[rows], max_iter=e_step_iter, tol=e_step_tol)
        rho = (learning_offset + t) ** (-learning_decay)
        lam = (1.0 - rho) * lam + rho * (eta + (n_docs / sizes[b]) * sstats)
        return (lam, gamma.at[rows].set(g), t + 1.0), None

    def one_pass(carry, epoch):
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n_batches)
        carry, _ = jax.lax.scan(update, carry, order)
        lam, gamma, _ = carry
        elbo = vb_elbo(*flat, gamma[:n_docs], lam, alpha, eta, n_docs=n_docs) if track_elbo else jnp.nan
        return carry, elbo

    (lam, gamma, _), history = jax.lax.scan(one_pass, (lam, gamma, 0.0), jnp.arange(n_passes))
    return lam, gamma[:n_docs], history


def _vb_start(key, shape):
    """:math:`\\max(1 + 0.1\\,\\epsilon, 0.5)`, :math:`\\epsilon \\sim \\mathcal N(0, 1)`: the normal
    approximation (mean 1, sd 0.1) of the :math:`\\mathrm{Gamma}(100, 1/100)` starting values of
    Hoffman's and scikit-learn's code; JAX's gamma sampler takes seconds to compile on CPU."""
    return jnp.maximum(1.0 + 0.1 * jax.random.normal(key, shape), 0.5)


def _lambda_start(key, start, shape):
    """The starting :math:`\\lambda`: ``start`` checked (shape ``(K, V)``, finite, positive: Dirichlet
    concentrations), or :func:`_vb_start` drawn from ``key`` when ``start`` is None."""
    if start is None:
        return _vb_start(key, shape)
    start = np.asarray(start, dtype=np.float64)
    if start.shape != tuple(shape):
        raise DataError(f"start must be lambda of shape (topics, words) = {tuple(shape)}, got shape {start.shape}")
    if not np.all(np.isfinite(start) & (start > 0)):
        topic, word = np.argwhere(~(np.isfinite(start) & (start > 0)))[0]
        raise DataError(f"start must be finite and positive: entry (topic {topic}, word {word}) is "
                        f"{start[topic, word]}")
    return jnp.asarray(start)


def variational_bayes(key, counts, lda: LDA, *, max_iter: int = 50, online: bool = False, batch_size: int = 64,
                      learning_offset: float = 10.0, learning_decay: float = 0.7, tol: float = 1e-4,
                      e_step_iter: int = 100, e_step_tol: float = 1e-3, track_elbo: bool = True,
                      chunk_width: int = 16, start=None) -> Result:
    """Mean-field variational Bayes for LDA, batch or online (module docstring, method 2).

    1. Start :math:`\\lambda` and :math:`\\gamma` near 1 (:func:`_vb_start`: the starting values of
       Hoffman's and scikit-learn's code, up to a normal approximation), or :math:`\\lambda` at
       ``start`` (``(K, V)``, positive) when given: a chosen start, e.g. to run from another
       implementation's starting point.
    2. Batch: E-step on all documents (:func:`vb_e_step`, warm-started from the previous
       :math:`\\gamma`), then :math:`\\lambda = \\eta + \\bar s`; stop when the ELBO gains less
       than ``tol`` per token.
       Online: for each minibatch :math:`B` of ``batch_size`` consecutive documents (the order of
       the minibatches drawn afresh every pass), E-step on :math:`B` warm-started from the
       :math:`\\gamma_d` of the previous pass, then :math:`\\lambda \\leftarrow (1 - \\rho_t)\\lambda
       + \\rho_t(\\eta + \\tfrac{D}{|B|}\\bar s_B)`, :math:`\\rho_t = (\\tau_0 + t)^{-\\kappa}`
       (``learning_offset``, ``learning_decay``); ``max_iter`` passes, all in one compiled loop.

    The E-step of a document stops when the mean absolute change of :math:`\\gamma_d` is below
    ``e_step_tol`` or after ``e_step_iter`` updates (scikit-learn's ``mean_change_tol`` and
    ``max_doc_update_iter``). ``track_elbo=False`` skips the ELBO of every iteration (batch: then
    ``max_iter`` iterations run, ``tol`` unused, as with scikit-learn's ``evaluate_every=-1``) or
    pass (online); the history is then empty, the final ELBO is still reported. ``chunk_width``: see
    :meth:`BagOfWords.chunked`.

    Returns:
        ``Result(method="vb" | "online_vb", params={"topic_word": E_q[Phi], "doc_topic": E_q[theta],
        "lambda", "gamma"}, log_evidence=ELBO (kind "lower_bound"), history=ELBO per pass)``.
    """
    bow = _bow(counts)
    _check_topics(lda.n_topics, bow)
    if bow.n_words != lda.n_words:
        raise DataError(f"counts have {bow.n_words} words, the model {lda.n_words}")
    if online and not (0.5 < learning_decay <= 1.0):
        raise DataError(f"learning_decay must lie in (0.5, 1] for convergence, got {learning_decay}")
    if max_iter < 1 or e_step_iter < 1:
        raise DataError(f"need max_iter >= 1 and e_step_iter >= 1, got {max_iter}, {e_step_iter}")
    began = time.perf_counter()
    k_lam, k_gamma, k_perm = jax.random.split(as_key(key), 3)
    k, v, d = lda.n_topics, bow.n_words, bow.n_docs
    lam, gamma = _lambda_start(k_lam, start, (k, v)), _vb_start(k_gamma, (d, k))
    flat = bow.arrays()
    n_tokens = float(bow.count.sum())
    if not online:
        chunks = tuple(jnp.asarray(a) for a in bow.chunked(width=chunk_width))
        history = []
        for _ in range(max_iter):
            lam, gamma, elbo = _batch_vb_step(lam, gamma, chunks, flat, lda.alpha, lda.eta, e_step_tol,
                                              e_step_iter=e_step_iter, n_docs=d, track_elbo=bool(track_elbo))
            if not track_elbo:  # a fixed number of iterations
                continue
            history.append(float(elbo))
            if len(history) > 1 and abs(history[-1] - history[-2]) < tol * n_tokens:
                break
        history = np.asarray(history)
    else:
        batches = _minibatches(bow, batch_size, chunk_width)
        gamma = jnp.concatenate([gamma, jnp.ones((1, k))])  # the row padding members point at
        lam, gamma, history = _online_vb_run(k_perm, lam, gamma, batches, flat, lda.alpha, lda.eta,
                                             float(learning_offset), float(learning_decay), e_step_tol,
                                             n_passes=int(max_iter), e_step_iter=e_step_iter,
                                             track_elbo=bool(track_elbo), n_docs=d)
        history = np.asarray(history) if track_elbo else np.zeros(0)
    elbo = float(vb_elbo(*flat, gamma, lam, lda.alpha, lda.eta, n_docs=d))
    lam_np, gamma_np = np.asarray(lam), np.asarray(gamma)
    return Result(
        method="online_vb" if online else "vb",
        params={"topic_word": lam_np / lam_np.sum(1, keepdims=True),
                "doc_topic": gamma_np / gamma_np.sum(1, keepdims=True), "lambda": lam_np, "gamma": gamma_np},
        log_evidence=elbo, log_evidence_kind="lower_bound", history=history,
        seconds=time.perf_counter() - began,
        diagnostics={"passes": int(max_iter) if online or not track_elbo else len(history)},
    )


def _minibatches(bow: BagOfWords, batch_size: int, width: int):
    """Minibatches of consecutive documents, stacked for one compiled loop: ``(members (N_b, B),
    sizes (N_b,), owner (N_b, C), words (N_b, C, width), counts (N_b, C, width))``. The last
    minibatch's missing members point at row ``D`` (an extra row of ``gamma``), the missing
    chunks at the minibatch's last row with count 0."""
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    batch_size = min(batch_size, bow.n_docs)
    n_batches = -(-bow.n_docs // batch_size)
    members = np.full((n_batches, batch_size), bow.n_docs, np.int32)
    sizes = np.zeros(n_batches)
    parts = []
    for b in range(n_batches):
        rows = np.arange(b * batch_size, min((b + 1) * batch_size, bow.n_docs))
        members[b, : len(rows)] = rows
        sizes[b] = len(rows)
        parts.append(bow.chunked(rows, width))
    n_chunks = max(len(owner) for owner, _, _ in parts)
    owner = np.full((n_batches, n_chunks), batch_size - 1, np.int32)
    words = np.zeros((n_batches, n_chunks, width), np.int32)
    counts = np.zeros((n_batches, n_chunks, width))
    for b, (o, w, c) in enumerate(parts):
        owner[b, : len(o)], words[b, : len(o)], counts[b, : len(o)] = o, w, c
    return tuple(jnp.asarray(a) for a in (members, sizes, owner, words, counts))


def online_vb_stream(key, data, lda: LDA, *, batch_size: int, passes: int = 1, seed: int = 0,
                     learning_offset: float = 10.0, learning_decay: float = 0.7, width: int = 16,
                     start=None) -> Result:
    """Online VB for LDA on a corpus on disk: a :class:`~inference.shards.ShardedDataset` with a
    ``counts`` key (documents x vocabulary), read a minibatch of documents at a time.

    Hoffman et al. (2010), Algorithm 2: each minibatch :math:`B`'s :math:`\\gamma` starts afresh
    (:func:`vb_e_step`), and only :math:`\\lambda` (K x V) is kept between minibatches,

    .. math::
        \\lambda \\leftarrow (1 - \\rho_t)\\lambda + \\rho_t\\big(\\eta + \\tfrac{D}{|B|}\\hat s_B\\big),
        \\qquad \\rho_t = (\\tau_0 + t)^{-\\kappa},

    so memory holds one minibatch and :math:`\\lambda`, whatever the number of documents :math:`D`.
    :math:`\\lambda` starts near 1 (:func:`_vb_start`) or at ``start`` (``(K, V)``, positive).
    The documents come in the epoch order the dataset draws from ``seed``. Minibatches are padded to
    one shape, so the E-step compiles once. Returns ``Result(method="online_vb_stream",
    params={"lambda", "topic_word"}, diagnostics={"steps", "passes", "first_step_seconds"})``.
    """
    from inference.shards import is_sharded

    if not is_sharded(data) or "counts" not in data.shapes:
        raise DataError("data must be a ShardedDataset with a 'counts' array (documents x vocabulary)")
    n_docs, n_words = data.n, data.shapes["counts"][0]
    if n_words != lda.n_words:
        raise DataError(f"the counts have {n_words} columns, the model {lda.n_words} words")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise DataError(f"passes must be a positive integer, got {passes!r}")
    if not (0.5 < learning_decay <= 1.0):
        raise DataError(f"learning_decay must lie in (0.5, 1] for convergence, got {learning_decay}")
    began = time.perf_counter()
    lam = _lambda_start(as_key(key), start, (lda.n_topics, n_words))
    max_chunks = batch_size * -(-n_words // width)  # fixed shapes: one compilation
    t, first = 0, None
    for epoch in range(passes):
        for position in range(data.batches_per_epoch(batch_size)):
            _, batch = data.batch(seed, epoch, position, batch_size)
            bow = BagOfWords.from_counts(batch["counts"])
            owner, words, counts = bow.chunked(width=width)
            pad = max_chunks - len(owner)
            owner = np.concatenate([owner, np.full(pad, bow.n_docs - 1, np.int32)])
            words = np.concatenate([words, np.zeros((pad, width), np.int32)])
            counts = np.concatenate([counts, np.zeros((pad, width))])
            exp_elog_beta = jnp.exp(_dirichlet_expectation(lam))  # (K, V)
            _, sstats = vb_e_step(jnp.asarray(owner), jnp.asarray(words), jnp.asarray(counts), exp_elog_beta.T,
                                  lda.alpha, jnp.ones((bow.n_docs, lda.n_topics)))
            rho = (learning_offset + t) ** (-learning_decay)
            lam = (1.0 - rho) * lam + rho * (lda.eta + (n_docs / bow.n_docs) * sstats)
            t += 1
            if first is None:
                lam.block_until_ready()
                first = time.perf_counter() - began
    lam = np.asarray(lam)
    return Result(method="online_vb_stream", params={"lambda": lam, "topic_word": lam / lam.sum(1, keepdims=True)},
                  seconds=time.perf_counter() - began,
                  diagnostics={"steps": t, "passes": passes, "first_step_seconds": first})
