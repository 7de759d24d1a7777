"""The data of the topic models: a corpus as a sparse bag of words, and the bars topics.

A document-term matrix is stored in coordinate form (:class:`BagOfWords`: one entry per distinct
word of a document), so every kernel costs :math:`O(\\mathrm{nnz} \\cdot K)` per sweep.

References:
    Griffiths and Steyvers (2004). Finding scientific topics. PNAS (the bars).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from inference.errors import DataError


@dataclasses.dataclass(frozen=True)
class BagOfWords:
    """A document-term matrix in coordinate form: entry ``i`` says word ``word[i]`` occurs
    ``count[i]`` times in document ``doc[i]``.

    Build it with :meth:`from_counts`, which checks the counts: non-negative, finite, integer
    (``integer=True``), at least one document and one word, no empty document.
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
        if 0 in counts.shape:
            raise DataError(f"the corpus is empty: counts have shape {counts.shape} (documents, words)")
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
