"""Topic models: PLSA and latent Dirichlet allocation, with the measures users judge topics by.

LDA (Blei, Ng and Jordan 2003) as a program, with :math:`K` topics over a vocabulary of :math:`V`
words and :math:`D` documents of lengths :math:`L_d`:

.. math::
    \\phi_k \\sim \\mathrm{Dir}(\\eta \\mathbf 1_V), \\quad
    \\theta_d \\sim \\mathrm{Dir}(\\alpha \\mathbf 1_K), \\quad
    z_{di} \\sim \\mathrm{Cat}(\\theta_d), \\quad w_{di} \\sim \\mathrm{Cat}(\\phi_{z_{di}}).

Tokens are exchangeable within a document, so the program scores a document by its word counts
with the topic of each token summed out: :math:`n_{d\\cdot} \\sim \\mathrm{Mult}(L_d, \\theta_d^\\top\\Phi)`.

Methods, each returning :class:`~inference.result.Result` with ``params["topic_word"]`` (the
:math:`K \\times V` matrix :math:`\\Phi`, rows summing to one):

1. :func:`collapsed_gibbs`: :math:`\\theta` and :math:`\\Phi` integrated out, each token's topic
   resampled from :math:`p(z_{di} = k \\mid z_{-di}, w) \\propto (n_{dk}^{-di} + \\alpha)
   \\frac{n_{kw}^{-di} + \\eta}{n_k^{-di} + V\\eta}` (Griffiths and Steyvers 2004), vectorised in
   JAX: tokens are split into ``n_blocks`` random blocks, a block is resampled in parallel from the
   counts left by the previous block (AD-LDA, Newman et al. 2009, synchronised after every
   block); ``n_blocks`` equal to the number of tokens is the sequential sampler. Counts are
   integers, and a token's new topic is one uniform draw against the running sums of its
   unnormalised conditional (inverse CDF), not :math:`K` Gumbel draws.
2. :func:`variational_bayes`: mean-field :math:`q(\\theta_d) = \\mathrm{Dir}(\\gamma_d)`,
   :math:`q(\\phi_k) = \\mathrm{Dir}(\\lambda_k)`, batch or online (stochastic natural gradient on
   :math:`\\lambda` with step :math:`\\rho_t = (\\tau_0 + t)^{-\\kappa}`, Hoffman, Blei and Bach 2010).
3. :func:`fit_prodlda`: ProdLDA (Srivastava and Sutton 2017): a logistic-normal approximation of
   the Dirichlet prior, a product-of-experts decoder, and an amortised encoder
   :math:`q(z_d \\mid n_d)` trained by SVI through :func:`inference.svi.fit`.
4. :class:`PLSA` (Hofmann 1999): :math:`p(w \\mid d) = \\sum_k \\theta_{dk}\\phi_{kw}` by EM
   through :func:`inference.em.fit`, tempered EM optional.

Evaluation: :func:`completion_perplexity` (document completion: topic proportions inferred from
the first half of each held-out document with :math:`\\Phi` fixed, the second half scored),
:func:`umass_coherence` and :func:`npmi_coherence`, :func:`top_words`. Every kernel works on the
sparse bag of words (:class:`BagOfWords`: one entry per distinct word of a document), so a sweep
costs :math:`O(\\mathrm{nnz} \\cdot K)`.

References:
    Hofmann (1999). Probabilistic latent semantic analysis. UAI.
    Blei, Ng and Jordan (2003). Latent Dirichlet allocation. JMLR.
    Griffiths and Steyvers (2004). Finding scientific topics. PNAS.
    Newman, Asuncion, Smyth and Welling (2009). Distributed algorithms for topic models. JMLR.
    Hoffman, Blei and Bach (2010). Online learning for latent Dirichlet allocation. NeurIPS.
    Wallach, Murray, Salakhutdinov and Mimno (2009). Evaluation methods for topic models. ICML.
    Mimno, Wallach, Talley, Leenders and McCallum (2011). Optimizing semantic coherence in topic models.
    Bouma (2009). Normalized (pointwise) mutual information in collocation extraction.
    Srivastava and Sutton (2017). Autoencoding variational inference for topic models. ICLR.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import digamma, gammaln, logsumexp
from numpyro import handlers

from inference.errors import DataError, ModelError
from inference.result import Result

__all__ = [
    "BagOfWords",
    "LDA",
    "PLSA",
    "ProdLDA",
    "collapsed_gibbs",
    "variational_bayes",
    "fit_plsa",
    "fit_prodlda",
    "fold_in",
    "completion_perplexity",
    "umass_coherence",
    "npmi_coherence",
    "top_words",
    "match_topics",
    "bars_topics",
]


# --------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class BagOfWords:
    """A document-term matrix in coordinate form: entry ``i`` says word ``word[i]`` occurs
    ``count[i]`` times in document ``doc[i]``.

    Build it with :meth:`from_counts`, which checks the counts: non-negative, finite, integer
    (``integer=True``), no empty document.
    """

    doc: np.ndarray
    word: np.ndarray
    count: np.ndarray
    n_docs: int
    n_words: int
    _device: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_counts(cls, counts, *, integer: bool = True, allow_empty: bool = False) -> "BagOfWords":
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise DataError(f"counts must be a (documents, words) matrix, got shape {counts.shape}")
        if counts.dtype.kind not in "iuf":
            raise DataError(f"counts must be numbers, got dtype {counts.dtype}")
        if counts.dtype.kind == "f":
            bad = np.argwhere(~np.isfinite(counts))
            if len(bad):
                raise DataError(f"counts hold NaN or infinity (document {bad[0][0]}, word {bad[0][1]})")
            if integer and np.any(counts != np.round(counts)):
                d, w = np.argwhere(counts != np.round(counts))[0]
                raise DataError(f"count of word {w} in document {d} is {counts[d, w]}, not an integer")
        negative = np.argwhere(counts < 0)
        if len(negative):
            d, w = negative[0]
            raise DataError(f"count of word {w} in document {d} is negative ({counts[d, w]})")
        empty = np.flatnonzero(counts.sum(axis=1) == 0)
        if len(empty) and not allow_empty:
            raise DataError(f"document {int(empty[0])} is empty ({len(empty)} empty documents); drop them first")
        doc, word = np.nonzero(counts)
        return cls(doc.astype(np.int32), word.astype(np.int32), counts[doc, word].astype(np.float64),
                   counts.shape[0], counts.shape[1])

    def dense(self) -> np.ndarray:
        out = np.zeros((self.n_docs, self.n_words))
        out[self.doc, self.word] = self.count
        return out

    @property
    def lengths(self) -> np.ndarray:
        return np.bincount(self.doc, weights=self.count, minlength=self.n_docs)

    def arrays(self):
        """``(doc, word, count)`` as device arrays (made once, then kept)."""
        if "arrays" not in self._device:
            self._device["arrays"] = jnp.asarray(self.doc), jnp.asarray(self.word), jnp.asarray(self.count)
        return self._device["arrays"]

    def dense_device(self):
        """The ``(D, V)`` count matrix as a device array (made once, then kept)."""
        if "dense" not in self._device:
            self._device["dense"] = jnp.asarray(self.dense())
        return self._device["dense"]

    def chunked(self, rows=None, width: int = 16):
        """``(owner, words, counts)``: the entries of the documents ``rows`` (all by default, in that
        order) cut into chunks of ``width`` entries, so that a sweep over a document costs its number
        of distinct words rounded up to ``width``, not the longest document's.

        ``owner`` ``(C,)`` says which of ``rows`` each chunk belongs to (sorted, so per-document sums
        are sorted segment sums); ``words`` and ``counts`` ``(C, width)``, padded with count 0.
        A document without entries has no chunk. NumPy arrays.
        """
        if width < 1:
            raise DataError(f"chunk width must be positive, got {width}")
        rows = np.arange(self.n_docs) if rows is None else np.asarray(rows, dtype=np.int64)
        per_doc = np.bincount(self.doc, minlength=self.n_docs)
        starts = np.concatenate([[0], np.cumsum(per_doc)])  # entries are sorted by document
        local = np.full(self.n_docs, -1)
        local[rows] = np.arange(len(rows))
        entries = np.flatnonzero(local[self.doc] >= 0)
        entries = entries[np.argsort(local[self.doc[entries]], kind="stable")]
        owner_of_entry = local[self.doc[entries]]
        position = entries - starts[self.doc[entries]]
        n_chunks = -(-per_doc[rows] // width)
        first_chunk = np.concatenate([[0], np.cumsum(n_chunks)])
        total = max(1, int(first_chunk[-1]))
        chunk = first_chunk[owner_of_entry] + position // width
        words = np.zeros((total, width), np.int32)
        counts = np.zeros((total, width))
        words[chunk, position % width] = self.word[entries]
        counts[chunk, position % width] = self.count[entries]
        owner = np.repeat(np.arange(len(rows), dtype=np.int32), n_chunks)
        if len(owner) < total:  # no entries at all: one empty chunk
            owner = np.zeros(total, np.int32)
        return owner, words, counts


def _bow(counts, **kw) -> BagOfWords:
    return counts if isinstance(counts, BagOfWords) else BagOfWords.from_counts(counts, **kw)


def _check_topics(n_topics: int, bow: BagOfWords):
    if int(n_topics) < 1:
        raise DataError(f"n_topics must be at least 1, got {n_topics}")
    if n_topics > bow.n_words:
        raise DataError(f"n_topics={n_topics} exceeds the vocabulary size {bow.n_words}")


# --------------------------------------------------------------------------- LDA program
class LDA:
    """Latent Dirichlet allocation (see the module docstring).

    Args:
        n_topics: :math:`K`; n_words: :math:`V`.
        alpha: document-topic concentration (default :math:`1/K`, as scikit-learn and gensim);
        eta: topic-word concentration (default :math:`1/K`).

    Example:
        >>> import jax
        >>> lda = LDA(3, 10)
        >>> draw = lda.sample(jax.random.PRNGKey(0), n_docs=4, doc_length=20)
        >>> draw["counts"].shape, draw["counts"].sum(axis=1).astype(int).tolist()
        ((4, 10), [20, 20, 20, 20])
    """

    #   eta --> phi[k]  K        alpha
    #             |                |
    #  +----------|----------------v-----+
    #  |          |             theta[d] |
    #  |  +-------v-----------------|--+ |
    #  |  |  w[d,i] <---- z[d,i] <--+  | |
    #  |  |                      L_d   | |
    #  |  +----------------------------+ |
    #  |                               D |
    #  +---------------------------------+
    def __init__(self, n_topics: int, n_words: int, *, alpha: float | None = None, eta: float | None = None):
        self.n_topics, self.n_words = int(n_topics), int(n_words)
        if self.n_topics < 1 or self.n_words < 1:
            raise ModelError(f"need n_topics >= 1 and n_words >= 1, got {n_topics}, {n_words}")
        self.alpha = 1.0 / n_topics if alpha is None else float(alpha)
        self.eta = 1.0 / n_topics if eta is None else float(eta)
        if self.alpha <= 0 or self.eta <= 0:
            raise ModelError(f"alpha and eta must be positive, got {self.alpha}, {self.eta}")

    def model(self, counts=None, doc_lengths=None):
        """The program: ``phi`` (K, V), ``theta`` (D, K), then ``counts`` (D, V) with the token
        topics summed out."""
        if counts is not None:
            doc_lengths = jnp.sum(counts, axis=-1)
        doc_lengths = jnp.asarray(doc_lengths)
        with numpyro.plate("topics", self.n_topics):
            phi = numpyro.sample("phi", dist.Dirichlet(jnp.full(self.n_words, self.eta)))
        with numpyro.plate("documents", doc_lengths.shape[0]):
            theta = numpyro.sample("theta", dist.Dirichlet(jnp.full(self.n_topics, self.alpha)))
            numpyro.sample("counts", dist.Multinomial(doc_lengths, probs=theta @ phi), obs=counts)

    def sample(self, key, n_docs: int, doc_length: int) -> dict:
        """``{"phi", "theta", "counts"}`` by running the program forward."""
        lengths = jnp.full(int(n_docs), int(doc_length))
        trace = handlers.trace(handlers.seed(self.model, key)).get_trace(doc_lengths=lengths)
        return {name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] == "sample"}

    def log_joint(self, counts, phi, theta) -> float:
        """:math:`\\log p(n, \\theta, \\Phi)` from the program's trace."""
        data = handlers.substitute(self.model, {"phi": jnp.asarray(phi), "theta": jnp.asarray(theta)})
        trace = handlers.trace(data).get_trace(counts=jnp.asarray(counts))
        return float(sum(jnp.sum(s["fn"].log_prob(s["value"])) for s in trace.values() if s["type"] == "sample"))


def bars_topics(side: int = 5) -> np.ndarray:
    """The "bars" topics of Griffiths and Steyvers (2004): a ``side x side`` image of words, one
    topic per row and per column, uniform over its ``side`` pixels. Shape ``(2 side, side**2)``."""
    topics = []
    for i in range(side):
        row = np.zeros((side, side))
        row[i, :] = 1.0 / side
        col = np.zeros((side, side))
        col[:, i] = 1.0 / side
        topics += [row.ravel(), col.ravel()]
    return np.array(topics)


def match_topics(estimated, true) -> tuple[np.ndarray, np.ndarray]:
    """Pair estimated topics with true ones minimising total variation (Hungarian algorithm).
    Returns ``(perm, tv)``: estimated topic ``perm[k]`` matches true topic ``k`` at total
    variation ``tv[k]``."""
    from scipy.optimize import linear_sum_assignment

    est, true = np.asarray(estimated, dtype=np.float64), np.asarray(true, dtype=np.float64)
    tv = 0.5 * np.abs(true[:, None, :] - est[None, :, :]).sum(-1)  # (K_true, K_est)
    rows, cols = linear_sum_assignment(tv)
    return cols[np.argsort(rows)], tv[rows, cols][np.argsort(rows)]


# --------------------------------------------------------------------------- collapsed Gibbs
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
    k_perm, k_init, k_run = jax.random.split(key, 3)
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


# --------------------------------------------------------------------------- mean-field VB
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


def variational_bayes(key, counts, lda: LDA, *, max_iter: int = 50, online: bool = False, batch_size: int = 64,
                      learning_offset: float = 10.0, learning_decay: float = 0.7, tol: float = 1e-4,
                      e_step_iter: int = 100, e_step_tol: float = 1e-3, track_elbo: bool = True,
                      chunk_width: int = 16) -> Result:
    """Mean-field variational Bayes for LDA, batch or online (module docstring, method 2).

    1. Start :math:`\\lambda` and :math:`\\gamma` near 1 (:func:`_vb_start`: the starting values of
       Hoffman's and scikit-learn's code, up to a normal approximation).
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
    start = time.perf_counter()
    k_lam, k_gamma, k_perm = jax.random.split(key, 3)
    k, v, d = lda.n_topics, bow.n_words, bow.n_docs
    lam, gamma = _vb_start(k_lam, (k, v)), _vb_start(k_gamma, (d, k))
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
        seconds=time.perf_counter() - start,
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


# --------------------------------------------------------------------------- PLSA
@jax.jit
def plsa_e_step(doc, word, count, doc_topic, topic_word, beta):
    """Expected counts :math:`(n_{dk}, n_{kw})` under :math:`p_\\beta(z \\mid d, w) \\propto
    (\\theta_{dk}\\phi_{kw})^\\beta` and the log-likelihood :math:`\\sum_{dw} n_{dw} \\log \\sum_k
    \\theta_{dk}\\phi_{kw}`."""
    a = doc_topic**beta
    b_t = (topic_word**beta).T  # (V, K)
    joint = a[doc] * b_t[word]  # (nnz, K)
    resp = count[:, None] * joint / jnp.sum(joint, axis=1, keepdims=True)
    n_dk = jax.ops.segment_sum(resp, doc, num_segments=doc_topic.shape[0])
    n_kw = jax.ops.segment_sum(resp, word, num_segments=topic_word.shape[1]).T
    loglik = jnp.sum(count * jnp.log(jnp.sum(doc_topic[doc] * topic_word.T[word], axis=1)))
    return (n_dk, n_kw), loglik


@partial(jax.jit, static_argnames="tempered")
def plsa_e_step_dense(counts, doc, word, count, doc_topic, topic_word, beta, tempered: bool):
    """:func:`plsa_e_step` with the (D, V) count matrix ``counts`` held dense: the expected counts
    are two matrix products, :math:`n_{dk} = a_{dk} \sum_w r_{dw} b_{kw}` and
    :math:`n_{kw} = b_{kw} \sum_d a_{dk} r_{dw}` with :math:`a = \theta^\beta`, :math:`b = \phi^\beta`,
    :math:`r = n / (a b)` (0 where :math:`n_{dw} = 0`), instead of scatters over the entries."""
    a, b = (doc_topic**beta, topic_word**beta) if tempered else (doc_topic, topic_word)
    p = a @ b
    ratio = counts / jnp.where(counts > 0, p, 1.0)
    n_dk = a * (ratio @ b.T)
    n_kw = b * (a.T @ ratio)
    p_observed = jnp.sum(doc_topic[doc] * topic_word.T[word], axis=1) if tempered else p[doc, word]
    return (n_dk, n_kw), jnp.sum(count * jnp.log(p_observed))


PLSA_DENSE_CELLS = 2**22
"""Corpora with at most this many document-word cells take :func:`plsa_e_step_dense`."""


class PLSA:
    """Probabilistic latent semantic analysis, :math:`p(w \\mid d) = \\sum_k \\theta_{dk}\\phi_{kw}`,
    fitted by EM (:func:`fit_plsa`, or :func:`inference.em.fit` on a :class:`PLSA`).

    The E-step is the posterior :math:`p(z \\mid d, w)`, the M-step normalises expected counts:
    :math:`\\theta_{dk} \\propto n_{dk}`, :math:`\\phi_{kw} \\propto n_{kw}`. Tempered EM
    (``beta < 1``) flattens the posterior to :math:`(\\theta_{dk}\\phi_{kw})^\\beta` against
    over-fitting (Hofmann 1999); the likelihood is then no longer guaranteed to increase, so run
    :func:`inference.em.fit` with ``check_monotone=False``.

    Example:
        >>> import jax, numpy as np
        >>> counts = np.array([[3, 1, 0, 0], [2, 2, 0, 1], [0, 0, 4, 2], [0, 1, 3, 3]])
        >>> r = fit_plsa(jax.random.PRNGKey(0), counts, 2, max_iter=200)
        >>> bool(np.all(np.diff(r.history) >= -1e-9))
        True
    """

    #  +-------------------------+
    #  |  d ---> z[d,i] ---> w[d,i] |   theta[d] = p(z | d), phi[k] = p(w | z = k)
    #  +-------------------------+
    def __init__(self, doc_topic, topic_word, *, beta: float = 1.0):
        self.doc_topic = np.asarray(doc_topic, dtype=np.float64)
        self.topic_word = np.asarray(topic_word, dtype=np.float64)
        self.beta = float(beta)
        if not 0.0 < self.beta <= 1.0:
            raise ModelError(f"the tempering exponent beta must lie in (0, 1], got {beta}")
        if self.doc_topic.shape[1] != self.topic_word.shape[0]:
            raise ModelError(f"doc_topic has {self.doc_topic.shape[1]} topics, topic_word {self.topic_word.shape[0]}")

    def model(self, counts=None, doc_lengths=None):
        """The program: each document's counts are multinomial with :math:`p(w \\mid d)`."""
        if counts is not None:
            doc_lengths = jnp.sum(counts, axis=-1)
        probs = jnp.asarray(self.doc_topic) @ jnp.asarray(self.topic_word)
        with numpyro.plate("documents", probs.shape[0]):
            numpyro.sample("counts", dist.Multinomial(jnp.asarray(doc_lengths), probs=probs), obs=counts)

    def _check(self, bow: BagOfWords):
        if (bow.n_docs, bow.n_words) != (self.doc_topic.shape[0], self.topic_word.shape[1]):
            raise DataError(f"counts are {bow.n_docs} x {bow.n_words}, the model "
                            f"{self.doc_topic.shape[0]} x {self.topic_word.shape[1]}")

    def prepare_data(self, counts) -> BagOfWords:
        """The checked :class:`BagOfWords` that :func:`inference.em.fit` hands every E-step (its
        device copies are made once)."""
        bow = _bow(counts, integer=False)
        self._check(bow)
        return bow

    def expected_stats(self, counts):
        bow = _bow(counts, integer=False)
        self._check(bow)
        theta, phi = jnp.asarray(self.doc_topic), jnp.asarray(self.topic_word)
        if bow.n_docs * bow.n_words <= PLSA_DENSE_CELLS:
            stats, loglik = plsa_e_step_dense(bow.dense_device(), *bow.arrays(), theta, phi, self.beta,
                                              tempered=self.beta != 1.0)
        else:
            stats, loglik = plsa_e_step(*bow.arrays(), theta, phi, self.beta)
        return stats, float(loglik)

    def from_stats(self, stats) -> "PLSA":
        n_dk, n_kw = (np.asarray(s) for s in stats)
        return PLSA(n_dk / n_dk.sum(1, keepdims=True), n_kw / np.maximum(n_kw.sum(1, keepdims=True), 1e-300),
                    beta=self.beta)

    def data_is_complete(self, counts) -> bool:
        return False

    @classmethod
    def initialize(cls, key, n_docs: int, n_words: int, n_topics: int, *, beta: float = 1.0) -> "PLSA":
        """Uniform-Dirichlet random starting point (normalised standard exponentials, which are
        :math:`\\mathrm{Dir}(\\mathbf 1)` exactly)."""
        k1, k2 = jax.random.split(key)
        a = np.asarray(jax.random.exponential(k1, (n_docs, n_topics)))
        b = np.asarray(jax.random.exponential(k2, (n_topics, n_words)))
        return cls(a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True), beta=beta)


def fit_plsa(key, counts, n_topics: int, *, max_iter: int = 100, tol: float = 1e-6, beta: float = 1.0) -> Result:
    """PLSA by EM through :func:`inference.em.fit` from a random start; ``params`` is the fitted
    :class:`PLSA`, ``params.topic_word`` its topics."""
    from inference import em

    bow = _bow(counts, integer=False)
    _check_topics(n_topics, bow)
    start = PLSA.initialize(key, bow.n_docs, bow.n_words, n_topics, beta=beta)
    return em.fit(start, bow, max_iter=max_iter, tol=tol / max(1, bow.n_docs) * float(bow.count.sum()),
                  check_monotone=beta == 1.0)


# --------------------------------------------------------------------------- ProdLDA
class ProdLDA:
    """ProdLDA (Srivastava and Sutton 2017): LDA with a logistic-normal prior and a
    product-of-experts decoder, learned by amortised SVI.

    .. math::
        z_d \\sim \\mathcal N(\\mu_0, \\mathrm{diag}\\,\\sigma_0^2), \\quad
        \\theta_d = \\mathrm{softmax}(z_d), \\quad
        n_{d\\cdot} \\sim \\mathrm{Mult}(L_d, \\mathrm{softmax}(\\theta_d^\\top B))

    :math:`(\\mu_0, \\sigma_0^2)` is the Laplace approximation of :math:`\\mathrm{Dir}(\\alpha)` in
    the softmax basis: :math:`\\mu_{0k} = \\log\\alpha_k - \\overline{\\log\\alpha}`,
    :math:`\\sigma^2_{0k} = \\frac{1}{\\alpha_k}(1 - \\frac2K) + \\frac{1}{K^2}\\sum_j \\frac1{\\alpha_j}`.
    The guide is an encoder MLP from :math:`\\log(1 + n_d)` to the mean and log-scale of
    :math:`q(z_d \\mid n_d)`. The topic-word weights :math:`B` (``K x V``) are a parameter; the
    topics shown are :math:`\\mathrm{softmax}(B_k)`.

    Example:
        >>> m = ProdLDA(n_topics=3, n_words=10, hidden=8)
        >>> m.prior_loc.shape, m.prior_scale.shape
        ((3,), (3,))
    """

    def __init__(self, n_topics: int, n_words: int, *, hidden: int = 100, alpha: float = 1.0):
        self.n_topics, self.n_words, self.hidden = int(n_topics), int(n_words), int(hidden)
        if alpha <= 0:
            raise ModelError(f"alpha must be positive, got {alpha}")
        a = np.full(self.n_topics, float(alpha))
        self.prior_loc = np.log(a) - np.log(a).mean()
        self.prior_scale = np.sqrt((1.0 / a) * (1 - 2.0 / self.n_topics) + (1.0 / a).sum() / self.n_topics**2)

    #                          B (K x V)
    #  +-----------------------|----+
    #  |  z[d] -> theta[d] -> n[d]  |
    #  |                         D  |
    #  +----------------------------+
    def model(self, counts=None, doc_lengths=None):
        if counts is not None:
            doc_lengths = jnp.sum(counts, axis=-1)
        k, v = self.n_topics, self.n_words
        topic_word = numpyro.param("topic_word_logits", lambda key: 0.01 * jax.random.normal(key, (k, v)))
        with numpyro.plate("documents", doc_lengths.shape[0]):
            z = numpyro.sample("z", dist.Normal(jnp.asarray(self.prior_loc), jnp.asarray(self.prior_scale)).to_event(1))
            theta = jax.nn.softmax(z, axis=-1)
            numpyro.sample("counts", dist.Multinomial(doc_lengths, logits=jax.nn.log_softmax(theta @ topic_word, -1)),
                           obs=counts)

    def encode(self, params: dict, counts):
        """The encoder: ``(mean, scale)`` of :math:`q(z_d \\mid n_d)`, each ``(D, K)``."""
        h = jax.nn.softplus(jnp.log1p(counts) @ params["enc_w1"] + params["enc_b1"])
        h = jax.nn.softplus(h @ params["enc_w2"] + params["enc_b2"])
        return h @ params["enc_wm"] + params["enc_bm"], jnp.exp(h @ params["enc_ws"] + params["enc_bs"])

    def guide(self, counts=None, doc_lengths=None):
        v, h, k = self.n_words, self.hidden, self.n_topics

        def weight(name, shape):
            scale = 1.0 / np.sqrt(shape[0])
            return numpyro.param(name, lambda key: scale * jax.random.normal(key, shape))

        params = {"enc_w1": weight("enc_w1", (v, h)), "enc_b1": numpyro.param("enc_b1", jnp.zeros(h)),
                  "enc_w2": weight("enc_w2", (h, h)), "enc_b2": numpyro.param("enc_b2", jnp.zeros(h)),
                  "enc_wm": weight("enc_wm", (h, k)), "enc_bm": numpyro.param("enc_bm", jnp.zeros(k)),
                  "enc_ws": numpyro.param("enc_ws", jnp.zeros((h, k))),
                  "enc_bs": numpyro.param("enc_bs", jnp.full(k, -1.0))}
        loc, scale = self.encode(params, counts)
        with numpyro.plate("documents", counts.shape[0]):
            numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def topic_word(self, params: dict) -> np.ndarray:
        """:math:`\\mathrm{softmax}(B_k)` per topic, ``(K, V)``."""
        return np.asarray(jax.nn.softmax(params["topic_word_logits"], axis=-1))

    def word_probs(self, params: dict, counts) -> np.ndarray:
        """Predictive word distribution of each document, :math:`\\mathrm{softmax}(\\hat\\theta_d^\\top B)`
        with :math:`\\hat\\theta_d = \\mathrm{softmax}(\\text{encoder mean})`: ``(D, V)``."""
        loc, _ = self.encode(params, jnp.asarray(counts, dtype=jnp.float64))
        return np.asarray(jax.nn.softmax(jax.nn.softmax(loc, -1) @ params["topic_word_logits"], -1))


def fit_prodlda(key, counts, n_topics: int, *, hidden: int = 100, alpha: float = 1.0, steps: int = 2000,
                learning_rate: float = 5e-3, num_particles: int = 1) -> Result:
    """ProdLDA by SVI (``Trace_ELBO``, Adam) through :func:`inference.svi.fit`.
    ``params`` holds the learned parameters plus ``"topic_word"`` (:math:`\\mathrm{softmax}(B)`) and
    ``"model"`` (the :class:`ProdLDA`, for :meth:`ProdLDA.word_probs`)."""
    from inference import svi

    bow = _bow(counts)
    _check_topics(n_topics, bow)
    prod = ProdLDA(n_topics, bow.n_words, hidden=hidden, alpha=alpha)
    dense = jnp.asarray(bow.dense())
    result = svi.fit(prod.model, {"counts": dense}, key=key, guide=prod.guide, elbo="trace", steps=steps,
                     learning_rate=learning_rate, num_particles=num_particles)
    params = dict(result.params)
    params["topic_word"] = prod.topic_word(params)
    params["model"] = prod
    return dataclasses.replace(result, method="prodlda", params=params)


# --------------------------------------------------------------------------- evaluation
def fold_in(topic_word, counts, *, alpha: float, max_iter: int = 200, tol: float = 1e-6) -> np.ndarray:
    """Topic proportions :math:`\\hat\\theta_d = \\gamma_d / \\sum_k \\gamma_{dk}` of new documents
    with the topics fixed: the variational E-step (:func:`vb_e_step`) with
    :math:`\\exp\\mathbb E[\\log\\phi_{kw}]` replaced by the point estimate :math:`\\phi_{kw}`."""
    bow = _bow(counts, allow_empty=True)
    topic_word = jnp.asarray(topic_word, dtype=jnp.float64)
    gamma0 = jnp.full((bow.n_docs, topic_word.shape[0]), alpha + float(bow.count.sum()) / max(bow.n_docs, 1)
                      / topic_word.shape[0])
    chunks = (jnp.asarray(a) for a in bow.chunked())
    gamma, _ = vb_e_step(*chunks, topic_word.T, alpha, gamma0, max_iter=max_iter, tol=tol)
    gamma = np.asarray(gamma)
    return gamma / gamma.sum(1, keepdims=True)


def completion_perplexity(first_half, second_half, *, topic_word=None, alpha: float | None = None,
                          word_probs=None) -> float:
    """Document-completion perplexity :math:`\\exp\\left(-\\sum_d \\log p(w_d^{(2)} \\mid w_d^{(1)})
    / \\sum_d |w_d^{(2)}|\\right)` (Wallach et al. 2009).

    Either ``topic_word`` (with the fold-in ``alpha``: :math:`\\hat\\theta_d` from the first half by
    :func:`fold_in`, then :math:`p(w) = \\sum_k \\hat\\theta_{dk}\\phi_{kw}`), or ``word_probs``
    ``(D, V)``, the model's own predictive distribution given the first half (ProdLDA).
    """
    second = _bow(second_half, allow_empty=True)
    if word_probs is None:
        if topic_word is None or alpha is None:
            raise DataError("give topic_word and alpha, or word_probs")
        theta = fold_in(topic_word, first_half, alpha=alpha)
        probs = np.einsum("dk,dk->d", theta[second.doc], np.asarray(topic_word).T[second.word])
    else:
        probs = np.asarray(word_probs)[second.doc, second.word]
    if np.any(probs <= 0):
        raise DataError("a held-out word has probability zero under the model (smooth the topics)")
    return float(np.exp(-np.sum(second.count * np.log(probs)) / second.count.sum()))


def top_words(topic_word, vocabulary=None, n: int = 10) -> list[list]:
    """The ``n`` most probable words of each topic (ids, or words when ``vocabulary`` is given)."""
    order = np.argsort(-np.asarray(topic_word), axis=1, kind="stable")[:, :n]
    return [[vocabulary[i] for i in row] if vocabulary is not None else row.tolist() for row in order]


def _document_frequencies(counts):
    present = (np.asarray(counts) > 0).astype(np.float64)  # (D, V)
    return present, present.sum(0)


def umass_coherence(topic_word, reference_counts, *, n: int = 10, eps: float = 1.0) -> np.ndarray:
    """UMass coherence per topic (Mimno et al. 2011): for the top words :math:`w_1, \\dots, w_n`
    (most probable first), the mean over pairs :math:`i > j` of
    :math:`\\log \\frac{D(w_i, w_j) + \\epsilon}{D(w_j)}`, :math:`D(\\cdot)` counting the
    reference documents that contain the words. Mimno's :math:`\\epsilon = 1`; gensim's
    ``u_mass`` uses :math:`10^{-12}`. Higher is better."""
    present, df = _document_frequencies(reference_counts)
    tops = np.asarray(top_words(topic_word, n=n))
    out = []
    for top in tops:
        co = present[:, top].T @ present[:, top]  # (n, n) co-document counts
        i, j = np.tril_indices(len(top), -1)
        out.append(np.mean(np.log((co[i, j] + eps) / df[top][j])))
    return np.array(out)


def npmi_coherence(topic_word, reference_counts, *, n: int = 10, eps: float = 1e-12) -> np.ndarray:
    """NPMI coherence per topic (Bouma 2009; Lau, Newman and Baldwin 2014), documents as
    co-occurrence windows: the mean over pairs of top words of
    :math:`\\frac{\\log \\frac{p(w_i, w_j) + \\epsilon}{p(w_i) p(w_j)}}{-\\log(p(w_i, w_j) + \\epsilon)}`,
    in :math:`[-1, 1]`, higher is better."""
    present, df = _document_frequencies(reference_counts)
    n_docs = present.shape[0]
    tops = np.asarray(top_words(topic_word, n=n))
    out = []
    for top in tops:
        joint = (present[:, top].T @ present[:, top]) / n_docs
        marg = df[top] / n_docs
        i, j = np.tril_indices(len(top), -1)
        pmi = np.log((joint[i, j] + eps) / (marg[i] * marg[j]))
        out.append(np.mean(pmi / -np.log(joint[i, j] + eps)))
    return np.array(out)
