"""How good are topics? Held-out document completion, coherence, top words, matching to the truth.

References:
    Wallach, Murray, Salakhutdinov and Mimno (2009). Evaluation methods for topic models. ICML.
    Mimno, Wallach, Talley, Leenders and McCallum (2011). Optimizing semantic coherence in topic models.
    Bouma (2009). Normalized (pointwise) mutual information in collocation extraction.
"""

from __future__ import annotations


import jax.numpy as jnp
import numpy as np

from inference.errors import DataError
from pgm.topics.corpus import _bow
from pgm.topics.lda_vb import vb_e_step


def match_topics(estimated, true) -> tuple[np.ndarray, np.ndarray]:
    """Pair estimated topics with true ones minimising total variation:
    :func:`inference.align.align` with ``metric="tv"``. Returns ``(perm, tv)``: estimated topic
    ``perm[k]`` matches true topic ``k`` at total variation ``tv[k]``."""
    from inference.align import align

    return align(estimated, true, "tv")


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
