"""Text to counts: the tokenizer, vocabulary pruning, document-term matrices and held-out splits.

Every topic model and every peer library in the benchmarks reads the corpus through this module,
so they all see the same tokens, the same vocabulary and the same split.

The pipeline, step by step:

1. **Tokenize** (:func:`tokenize`): lower-case, split on anything that is not a letter
   (``[a-z]+`` after lower-casing; digits and punctuation separate tokens and are dropped), keep
   tokens of 3 to 15 letters, drop English stop words (scikit-learn's ``ENGLISH_STOP_WORDS``, 318
   words, shipped with the package, nothing downloaded). Token order is kept: the
   document-completion perplexity scores the second half of each document in reading order.
2. **Prune the vocabulary** (:func:`build_vocabulary`): keep words that occur in at least
   ``min_df`` documents and in at most a fraction ``max_df`` of them (gensim's
   ``Dictionary.filter_extremes(no_below, no_above)``), then the ``max_size`` most frequent by
   document frequency (ties broken alphabetically, so the vocabulary is deterministic).
3. **Encode** (:func:`encode`): each document becomes the int array of the vocabulary ids of its
   kept tokens; :func:`document_term_matrix` counts them into a dense ``(D, V)`` matrix
   :math:`n_{dw}`.
4. **Split** (:func:`train_test_split`): a seeded permutation of the documents into train and
   held-out sets; :func:`completion_halves` splits each held-out document into its first and second
   half of tokens (document completion, Wallach et al. 2009).

Corpora that ship with gensim's test data and are read here offline: ``lee_background.cor``
(300 news stories, one per line: :func:`lee_corpus`) and the shortened English Wikipedia dump
``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2`` (:func:`wikipedia_corpus`:
the articles of the main namespace, wiki markup removed with gensim's ``filter_wiki``, pages shorter
than 50 tokens dropped as gensim's ``WikiCorpus`` does).

References:
    Wallach, Murray, Salakhutdinov and Mimno (2009). Evaluation methods for topic models. ICML.
    Řehůřek and Sojka (2010). Software framework for topic modelling with large corpora (gensim).

Example:
    >>> corpus = make_corpus(["The cat sat on the mat.", "A cat and a dog.", "Dogs bark at cats."],
    ...                      min_df=1, max_df=1.0)
    >>> corpus.vocabulary
    ('bark', 'cat', 'cats', 'dog', 'dogs', 'mat', 'sat')
    >>> corpus.counts.sum(axis=1).tolist()
    [3, 2, 3]
"""

from __future__ import annotations

import bz2
import dataclasses
import pathlib
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from inference.errors import DataError, MissingPackageError, ParseError

__all__ = [
    "STOP_WORDS",
    "tokenize",
    "build_vocabulary",
    "encode",
    "document_term_matrix",
    "Corpus",
    "make_corpus",
    "train_test_split",
    "completion_halves",
    "lee_corpus",
    "wikipedia_path",
    "wikipedia_documents",
    "wikipedia_corpus",
]

_WORD = re.compile(r"[a-z]+")


def _stop_words() -> frozenset[str]:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise MissingPackageError("scikit-learn", "the English stop-word list") from None
    return frozenset(ENGLISH_STOP_WORDS)


STOP_WORDS: frozenset[str] = _stop_words()


def tokenize(text: str, *, min_length: int = 3, max_length: int = 15,
             stop_words: Iterable[str] | None = STOP_WORDS) -> list[str]:
    """Lower-cased alphabetic tokens of ``text`` in reading order, stop words and short words dropped.

    Example:
        >>> tokenize("The 2 cats sat, purring; the dog didn't.")
        ['cats', 'sat', 'purring', 'dog', 'didn']
    """
    if not isinstance(text, str):
        raise DataError(f"tokenize expects a str, got {type(text).__name__}")
    stop = frozenset(stop_words or ())
    return [t for t in _WORD.findall(text.lower()) if min_length <= len(t) <= max_length and t not in stop]


def build_vocabulary(documents: Sequence[Sequence[str]], *, min_df: int = 2, max_df: float = 0.5,
                     max_size: int | None = None) -> tuple[str, ...]:
    """The sorted vocabulary of the tokenized ``documents`` after document-frequency pruning.

    Keeps word :math:`w` when :math:`\\mathrm{df}(w) \\ge` ``min_df`` and
    :math:`\\mathrm{df}(w) \\le` ``max_df`` :math:`\\cdot D`, then the ``max_size`` words of highest
    document frequency (ties alphabetical).

    Example:
        >>> build_vocabulary([["a", "b"], ["a", "c"], ["a", "b"]], min_df=2, max_df=1.0)
        ('a', 'b')
    """
    if min_df < 1:
        raise DataError(f"min_df must be at least 1, got {min_df}")
    if not 0.0 < max_df <= 1.0:
        raise DataError(f"max_df is a fraction of the documents in (0, 1], got {max_df}")
    df = Counter(w for doc in documents for w in set(doc))
    limit = max_df * len(documents)
    kept = [w for w, c in df.items() if min_df <= c <= limit]
    if max_size is not None:
        kept = sorted(kept, key=lambda w: (-df[w], w))[:max_size]
    if not kept:
        raise DataError(
            f"the vocabulary is empty after pruning (min_df={min_df}, max_df={max_df}, "
            f"{len(documents)} documents, {len(df)} distinct words)"
        )
    return tuple(sorted(kept))


def encode(documents: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> list[np.ndarray]:
    """Each tokenized document as an int64 array of vocabulary ids, out-of-vocabulary tokens dropped."""
    index = {w: i for i, w in enumerate(vocabulary)}
    return [np.fromiter((index[t] for t in doc if t in index), dtype=np.int64) for doc in documents]


def document_term_matrix(token_ids: Sequence[np.ndarray], vocabulary_size: int) -> np.ndarray:
    """Dense ``(D, V)`` int64 counts :math:`n_{dw}` of the encoded documents."""
    counts = np.zeros((len(token_ids), vocabulary_size), dtype=np.int64)
    for d, ids in enumerate(token_ids):
        if len(ids) and (ids.min() < 0 or ids.max() >= vocabulary_size):
            raise DataError(f"document {d} holds a word id outside 0..{vocabulary_size - 1}")
        np.add.at(counts[d], ids, 1)
    return counts


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A tokenized corpus.

    Attributes:
        vocabulary: the words, sorted; word id ``w`` is ``vocabulary[w]``.
        token_ids: per document, its kept tokens as vocabulary ids in reading order.
        counts: the ``(D, V)`` document-term matrix :math:`n_{dw}`.
        names: one label per document (its line number or page title).
    """

    vocabulary: tuple[str, ...]
    token_ids: tuple[np.ndarray, ...]
    counts: np.ndarray
    names: tuple[str, ...]

    def subset(self, indices) -> "Corpus":
        """The documents at ``indices``, same vocabulary."""
        indices = [int(i) for i in indices]
        return Corpus(self.vocabulary, tuple(self.token_ids[i] for i in indices), self.counts[indices],
                      tuple(self.names[i] for i in indices))

    def to_gensim(self) -> list[list[tuple[int, int]]]:
        """The bag-of-words list gensim's models read: per document ``[(word id, count), ...]``."""
        return [[(int(w), int(c)) for w in np.flatnonzero(row) for c in (row[w],)] for row in self.counts]


def make_corpus(texts: Sequence[str], *, names: Sequence[str] | None = None, min_df: int = 2,
                max_df: float = 0.5, max_size: int | None = None, min_tokens: int = 1) -> Corpus:
    """Tokenize, prune and count ``texts``; documents left with fewer than ``min_tokens`` kept tokens
    are dropped (an empty document carries no information for any topic model)."""
    names = list(names) if names is not None else [str(i) for i in range(len(texts))]
    if len(names) != len(texts):
        raise DataError(f"{len(names)} names for {len(texts)} documents")
    tokens = [tokenize(t) for t in texts]
    vocabulary = build_vocabulary(tokens, min_df=min_df, max_df=max_df, max_size=max_size)
    ids = encode(tokens, vocabulary)
    keep = [d for d, x in enumerate(ids) if len(x) >= min_tokens]
    if not keep:
        raise DataError("no document keeps any token after vocabulary pruning")
    ids = [ids[d] for d in keep]
    return Corpus(vocabulary, tuple(ids), document_term_matrix(ids, len(vocabulary)), tuple(names[d] for d in keep))


def train_test_split(n_documents: int, *, test_fraction: float = 0.1, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of document indices into (train, held-out), each sorted."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(round(test_fraction * n_documents)))
    if n_test >= n_documents:
        raise DataError(f"{n_documents} documents cannot be split with test_fraction={test_fraction}")
    perm = np.random.default_rng(seed).permutation(n_documents)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def completion_halves(corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Document completion: counts of the first half of each document's tokens (reading order,
    ``floor(L / 2)`` tokens) and of the second half. Documents of fewer than two tokens raise."""
    short = [corpus.names[d] for d, ids in enumerate(corpus.token_ids) if len(ids) < 2]
    if short:
        raise DataError(f"held-out documents need at least 2 tokens to be split; too short: {short[:5]}")
    v = len(corpus.vocabulary)
    first = [ids[: len(ids) // 2] for ids in corpus.token_ids]
    second = [ids[len(ids) // 2:] for ids in corpus.token_ids]
    return document_term_matrix(first, v), document_term_matrix(second, v)


# --------------------------------------------------------------------------- shipped corpora
def lee_corpus(**options) -> Corpus:
    """gensim's ``lee_background.cor``: 300 Australian news stories, one per line."""
    from genzoo.data import read_text_corpus, text_corpus_path

    texts = read_text_corpus(text_corpus_path("lee"))
    return make_corpus(texts, names=[f"line {i + 1}" for i in range(len(texts))], **options)


_WIKI_NAME = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def wikipedia_path() -> pathlib.Path:
    """Path of the shortened English Wikipedia dump in gensim's test data."""
    from genzoo.data import text_corpus_path

    return text_corpus_path("lee").parent / _WIKI_NAME


def wikipedia_documents(path=None, *, min_tokens: int = 50) -> tuple[list[str], list[str]]:
    """(titles, plain texts) of the main-namespace articles of a MediaWiki XML dump (``.bz2`` or
    plain), markup stripped with gensim's ``filter_wiki``; redirects and articles with fewer than
    ``min_tokens`` tokens (by :func:`tokenize`) are dropped, as gensim's ``WikiCorpus`` does."""
    try:
        from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    except ImportError:
        raise MissingPackageError("gensim", "reading a Wikipedia dump") from None
    path = pathlib.Path(path) if path is not None else wikipedia_path()
    opener = bz2.open if path.suffix == ".bz2" else open
    titles, texts = [], []
    try:
        with opener(path, "rb") as f:
            for title, text, _page_id in extract_pages(f, filter_namespaces=("0",)):
                if text is None or text.lstrip().lower().startswith("#redirect"):
                    continue
                plain = filter_wiki(text)
                if len(tokenize(plain)) >= min_tokens:
                    titles.append(title)
                    texts.append(plain)
    except (OSError, EOFError) as err:
        raise ParseError(f"cannot read the dump: {err}", str(path)) from None
    except Exception as err:  # xml.etree's ParseError carries the line
        position = getattr(err, "position", None)
        raise ParseError(f"malformed XML: {err}", str(path), position[0] if position else None) from None
    if not texts:
        raise ParseError("no article of the main namespace with enough text", str(path))
    return titles, texts


def wikipedia_corpus(path=None, **options) -> Corpus:
    """The Wikipedia dump as a :class:`Corpus` (see :func:`wikipedia_documents`)."""
    titles, texts = wikipedia_documents(path)
    return make_corpus(texts, names=titles, **options)
