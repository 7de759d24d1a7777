"""Collapsed Gibbs sampling for LDA (Griffiths and Steyvers 2004), vectorised in JAX.

:math:`\\theta` and :math:`\\Phi` are integrated out; each token's topic is resampled from
:math:`p(z_{di} = k \\mid z_{-di}, w) \\propto (n_{dk}^{-di} + \\alpha)
\\frac{n_{kw}^{-di} + \\eta}{n_k^{-di} + V\\eta}`. Tokens are split into random blocks, each block
resampled in parallel from the counts the previous block left (AD-LDA, Newman et al. 2009).

References:
    Griffiths and Steyvers (2004). Finding scientific topics. PNAS.
    Newman, Asuncion, Smyth and Welling (2009). Distributed algorithms for topic models. JMLR.
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from inference.errors import DataError
from inference.rng import as_key
from inference.result import Result
from pgm.topics.corpus import BagOfWords, _bow, _check_topics
from pgm.topics.lda import LDA


def _tokens(bow: BagOfWords):
    """One entry per token: (document, word)."""
    reps = bow.count.astype(np.int64)
    return np.repeat(bow.doc, reps), np.repeat(bow.word, reps)


def _collapsed_log_likelihood(n_wk, eta, log_gamma_ratio=None):
    """:math:`\\log p(w \\mid z) = \\sum_k [\\log\\Gamma(V\\eta) - \\log\\Gamma(n_k + V\\eta)
    + \\sum_w \\log\\Gamma(n_{kw} + \\eta) - \\log\\Gamma(\\eta)]` (Griffiths and Steyvers 2004, eq. 2).
    ``log_gamma_ratio[n]`` may hold :math:`\\log\\Gamma(n + \\eta) - \\log\\Gamma(\\eta)` for integer
    counts (a table lookup instead of a log-gamma per cell)."""
    v = n_wk.shape[0]
    n_k = n_wk.sum(0)
    cells = log_gamma_ratio[n_wk] if log_gamma_ratio is not None else gammaln(n_wk + eta) - gammaln(eta)
    return jnp.sum(gammaln(v * eta) - gammaln(n_k + v * eta)) + jnp.sum(cells)


@partial(jax.jit, static_argnames=("n_docs", "n_words", "n_topics", "n_sweeps", "thin", "keep"))
def _gibbs_sweeps(key, state, docs, words, valid, alpha, eta, n_docs, n_words, n_topics, n_sweeps, thin, keep):
    """``n_sweeps`` sweeps in one scan from ``state = (n_dk, n_wk, z, phi_sum, theta_sum)``.
    ``docs``, ``words``, ``valid``, ``z`` are ``(n_blocks, B)`` (padding tokens have ``valid == 0``);
    counts are integers, the conditionals float32 (exact counts, a 2^-24 relative error in the
    probabilities of a draw). With ``keep``, every ``thin``-th sweep's :math:`\\Phi` and
    :math:`\\theta` estimates are added to the sums. Returns the new state and
    :math:`\\log p(w \\mid z)` per sweep."""
    v = valid.astype(jnp.int32)
    log_gamma_ratio = gammaln(jnp.arange(docs.size + 1) + eta) - gammaln(eta)
    topic_ids = jnp.arange(n_topics, dtype=jnp.int32)
    upper = jnp.triu(jnp.ones((n_topics, n_topics), jnp.float32))  # p @ upper: running sums over topics
    a, e, ve = jnp.float32(alpha), jnp.float32(eta), jnp.float32(n_words * eta)

    def block(carry, inputs):
        n_dk, n_wk, n_k = carry  # n_dk, n_wk flattened: cell (d, k) is d * K + k
        d, w, v, z_old, key = inputs
        old = (z_old[:, None] == topic_ids) & (v[:, None] > 0)  # (B, K) the token's own count
        own = old.astype(jnp.float32)
        # 1. the conditional of each token of the block given every other token's topic, unnormalised
        rows_d = n_dk.reshape(n_docs, n_topics)[d].astype(jnp.float32)  # (B, K)
        rows_w = n_wk.reshape(n_words, n_topics)[w].astype(jnp.float32)
        p = ((rows_d - own + a) * (rows_w - own + e)
             / (n_k.astype(jnp.float32) - own + ve))
        # 2. resample the block in parallel by inverting the cumulative sums with one uniform per token
        cdf = p @ upper
        u = jax.random.uniform(key, d.shape, jnp.float32) * cdf[:, -1]
        z_new = jnp.minimum(jnp.sum(cdf < u[:, None], axis=1, dtype=jnp.int32), n_topics - 1)
        z_new = jnp.where(v > 0, z_new, z_old)
        # 3. move the counts (padding tokens move nothing): one scatter per matrix, the topic
        #    totals from the one-hot differences
        new = (z_new[:, None] == topic_ids) & (v[:, None] > 0)
        moves = jnp.concatenate([-v, v])
        n_dk = n_dk.at[jnp.concatenate([d * n_topics + z_old, d * n_topics + z_new])].add(moves)
        n_wk = n_wk.at[jnp.concatenate([w * n_topics + z_old, w * n_topics + z_new])].add(moves)
        n_k = n_k + jnp.sum(new.astype(jnp.int32) - old.astype(jnp.int32), axis=0)
        return (n_dk, n_wk, n_k), z_new

    def sweep(carry, inputs):
        n_dk, n_wk, z, phi_sum, theta_sum = carry
        i, key = inputs
        keys = jax.random.split(key, docs.shape[0])
        (n_dk, n_wk, _), z = jax.lax.scan(block, (n_dk.ravel(), n_wk.ravel(), n_wk.sum(0)), (docs, words, v, z, keys))
        n_dk, n_wk = n_dk.reshape(n_docs, n_topics), n_wk.reshape(n_words, n_topics)
        if keep:
            kept = i % thin == thin - 1
            phi = ((n_wk + eta) / (n_wk.sum(0) + n_words * eta)).T
            theta = (n_dk + alpha) / (n_dk.sum(1, keepdims=True) + n_topics * alpha)
            phi_sum = jnp.where(kept, phi_sum + phi, phi_sum)
            theta_sum = jnp.where(kept, theta_sum + theta, theta_sum)
        return (n_dk, n_wk, z, phi_sum, theta_sum), _collapsed_log_likelihood(n_wk, eta, log_gamma_ratio)

    return jax.lax.scan(sweep, state, (jnp.arange(n_sweeps), jax.random.split(key, n_sweeps)))


def collapsed_gibbs(key, counts, lda: LDA, *, num_sweeps: int = 100, burn_in: int | str = "auto",
                    n_blocks: int = 64, thin: int = 10, window: int = 10, burn_in_tol: float = 1e-3,
                    max_burn_in: int = 1000) -> Result:
    """Collapsed Gibbs sampling for LDA (see the module docstring, method 1).

    Args:
        key: JAX PRNG key (initial topics and every draw).
        counts: ``(D, V)`` integer counts or a :class:`BagOfWords`.
        num_sweeps: sweeps after the burn-in; ``thin``: keep every ``thin``-th sweep's estimate.
        burn_in: a number of sweeps, or ``"auto"``: sweeps in windows of ``window`` until the mean
            :math:`\\log p(w \\mid z)` per token of a window differs from the previous window's by
            less than ``burn_in_tol`` per sweep (``window * burn_in_tol`` nats per token), at most
            ``max_burn_in`` sweeps. The criterion is per token and per sweep, so the same setting
            serves corpora of any size.
        n_blocks: tokens updated together per block are ``#tokens / n_blocks``.

    Returns:
        ``Result(method="collapsed_gibbs", params={"topic_word": (K, V), "doc_topic": (D, K)})``,
        the posterior-mean estimates :math:`\\hat\\phi_{kw} = (n_{kw} + \\eta) / (n_k + V\\eta)`,
        :math:`\\hat\\theta_{dk} = (n_{dk} + \\alpha) / (L_d + K\\alpha)` averaged over the kept sweeps;
        ``history``: :math:`\\log p(w \\mid z)` per sweep (burn-in included); ``diagnostics["burn_in"]``
        the burn-in sweeps run.
    """
    bow = _bow(counts)
    _check_topics(lda.n_topics, bow)
    if bow.n_words != lda.n_words:
        raise DataError(f"counts have {bow.n_words} words, the model {lda.n_words}")
    auto = isinstance(burn_in, str)
    if auto and burn_in != "auto":
        raise DataError(f"burn_in must be a number of sweeps or 'auto', got {burn_in!r}")
    if num_sweeps < 1 or thin < 1 or (not auto and burn_in < 0):
        raise DataError(f"need num_sweeps >= 1, burn_in >= 0, thin >= 1; got {num_sweeps}, {burn_in}, {thin}")
    if auto and (window < 1 or burn_in_tol <= 0 or max_burn_in < window):
        raise DataError(f"need window >= 1, burn_in_tol > 0, max_burn_in >= window; got {window}, {burn_in_tol}, "
                        f"{max_burn_in}")
    if num_sweeps < thin:
        raise DataError(f"num_sweeps={num_sweeps} keeps no sweep at thin={thin}")
    start = time.perf_counter()
    docs, words = _tokens(bow)
    n_tokens = len(docs)
    n_blocks = int(min(max(1, n_blocks), n_tokens))
    size = -(-n_tokens // n_blocks)
    k_perm, k_init, k_run = jax.random.split(as_key(key), 3)
    perm = np.asarray(jax.random.permutation(k_perm, n_tokens))
    pad = n_blocks * size - n_tokens
    shape = (n_blocks, size)
    d = jnp.asarray(np.concatenate([docs[perm], np.zeros(pad, np.int64)]).reshape(shape), jnp.int32)
    w = jnp.asarray(np.concatenate([words[perm], np.zeros(pad, np.int64)]).reshape(shape), jnp.int32)
    valid = jnp.asarray(np.concatenate([np.ones(n_tokens), np.zeros(pad)]).reshape(shape))
    z = jax.random.randint(k_init, shape, 0, lda.n_topics, dtype=jnp.int32)
    k, n_d, n_w = lda.n_topics, bow.n_docs, bow.n_words
    vi = valid.astype(jnp.int32)
    state = (jnp.zeros((n_d, k), jnp.int32).at[d, z].add(vi), jnp.zeros((n_w, k), jnp.int32).at[w, z].add(vi), z,
             jnp.zeros((k, n_w)), jnp.zeros((n_d, k)))
    run = partial(_gibbs_sweeps, docs=d, words=w, valid=valid, alpha=lda.alpha, eta=lda.eta, n_docs=n_d,
                  n_words=n_w, n_topics=k, thin=thin)
    history = []
    # 1. burn-in: a fixed number of sweeps, or windows until the log-likelihood per token settles
    if not auto:
        if burn_in:
            state, loglik = run(jax.random.fold_in(k_run, 0), state, n_sweeps=int(burn_in), keep=False)
            history.append(np.asarray(loglik))
    else:
        previous = None
        while sum(len(h) for h in history) + window <= max_burn_in:
            state, loglik = run(jax.random.fold_in(k_run, len(history)), state, n_sweeps=int(window), keep=False)
            history.append(np.asarray(loglik))
            mean = float(np.mean(history[-1])) / n_tokens
            if previous is not None and abs(mean - previous) < burn_in_tol * window:
                break
            previous = mean
    burned = sum(len(h) for h in history)
    # 2. the kept sweeps
    state, loglik = run(jax.random.fold_in(k_run, len(history) + 1), state, n_sweeps=int(num_sweeps), keep=True)
    history.append(np.asarray(loglik))
    kept = num_sweeps // thin
    topic_word = np.asarray(state[3]) / kept
    doc_topic = np.asarray(state[4]) / kept
    return Result(method="collapsed_gibbs", params={"topic_word": topic_word, "doc_topic": doc_topic},
                  history=np.concatenate(history), seconds=time.perf_counter() - start,
                  diagnostics={"n_blocks": n_blocks, "block_size": size, "tokens": n_tokens, "burn_in": burned,
                               "kept_sweeps": kept})
