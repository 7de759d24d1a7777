"""Probabilistic latent semantic analysis (Hofmann 1999) by EM through :func:`inference.em.fit`.

:math:`p(w \\mid d) = \\sum_k \\theta_{dk}\\phi_{kw}`; tempered EM optional.

References:
    Hofmann (1999). Probabilistic latent semantic analysis. UAI.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.errors import DataError, ModelError
from inference.rng import as_key
from inference.result import Result
from pgm.topics.corpus import BagOfWords, _bow, _check_topics


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


def _check_distributions(name: str, rows: np.ndarray) -> None:
    """Each row of the matrix ``rows`` must be a probability vector (1e-8: float64 rounding of a
    normalised row of up to ~10^7 entries is far below it); ModelError names the first bad row."""
    if rows.ndim != 2:
        raise ModelError(f"{name} must be a matrix, got shape {rows.shape}")
    bad = ~(np.all(rows >= 0, axis=1) & (np.abs(rows.sum(1) - 1.0) <= 1e-8))  # NaN fails too
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ModelError(f"{name} row {i} is not a probability distribution (sum {rows[i].sum():.12g}, "
                         f"min {rows[i].min():.6g})")


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
        for name, rows in (("doc_topic", self.doc_topic), ("topic_word", self.topic_word)):
            _check_distributions(name, rows)
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
        # a topic no token was assigned to keeps a zero row: an M-step result, not a user's model,
        # so it bypasses the row check of __init__
        fitted = object.__new__(PLSA)
        fitted.doc_topic = n_dk / n_dk.sum(1, keepdims=True)
        fitted.topic_word = n_kw / np.maximum(n_kw.sum(1, keepdims=True), 1e-300)
        fitted.beta = self.beta
        return fitted

    def data_is_complete(self, counts) -> bool:
        return False

    def smoothed_topic_word(self, n_tokens, pseudo_tokens: float = 0.5) -> np.ndarray:
        """The topics with ``pseudo_tokens`` tokens' worth of probability added to every word,
        :math:`\\tilde\\phi_{kw} = (\\phi_{kw} + c / N) / (1 + V c / N)` with :math:`c` =
        ``pseudo_tokens`` and :math:`N` = ``n_tokens`` (the training corpus's token count).

        Maximum-likelihood topics give probability zero to every word unseen in training, so a
        held-out document holding one has likelihood zero; the floor makes held-out scores
        (perplexity) finite at a cost of :math:`O(Vc/N)` in the seen words' probabilities.

        Example:
            >>> PLSA([[1.0]], [[1.0, 0.0]]).smoothed_topic_word(n_tokens=2, pseudo_tokens=1.0).tolist()
            [[0.75, 0.25]]
        """
        n_tokens = float(n_tokens)
        if not (np.isfinite(n_tokens) and n_tokens > 0):
            raise DataError(f"n_tokens must be a positive count, got {n_tokens}")
        if not (np.isfinite(pseudo_tokens) and pseudo_tokens >= 0):
            raise DataError(f"pseudo_tokens must be non-negative, got {pseudo_tokens}")
        floored = self.topic_word + pseudo_tokens / n_tokens
        return floored / floored.sum(1, keepdims=True)

    @classmethod
    def initialize(cls, key, n_docs: int, n_words: int, n_topics: int, *, beta: float = 1.0) -> "PLSA":
        """Uniform-Dirichlet random starting point (normalised standard exponentials, which are
        :math:`\\mathrm{Dir}(\\mathbf 1)` exactly)."""
        k1, k2 = jax.random.split(as_key(key))
        a = np.asarray(jax.random.exponential(k1, (n_docs, n_topics)))
        b = np.asarray(jax.random.exponential(k2, (n_topics, n_words)))
        return cls(a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True), beta=beta)


def fit_plsa(key, counts, n_topics: int, *, max_iter: int = 100, tol: float = 1e-6, beta: float = 1.0) -> Result:
    """PLSA by EM through :func:`inference.em.fit` from a random start; ``params`` is the fitted
    :class:`PLSA`, ``params.topic_word`` its topics."""
    key = as_key(key)
    from inference import em

    bow = _bow(counts, integer=False)
    _check_topics(n_topics, bow)
    start = PLSA.initialize(key, bow.n_docs, bow.n_words, n_topics, beta=beta)
    return em.fit(start, bow, max_iter=max_iter, tol=tol / max(1, bow.n_docs) * float(bow.count.sum()),
                  check_monotone=beta == 1.0)
