"""Bach chorales from music21's corpus as 88-key piano rolls, converted once and cached.

The conversion (documented, deterministic):

1. The chorales are the files of music21's corpus whose composer is Bach (``bwv*.mxl`` and
   ``.krn``, shipped inside the ``music21`` wheel: nothing is downloaded), sorted by name.
2. Each score's tied notes are merged (``stripTies``); every note of every part (chord members
   included, rests and grace notes skipped) gives ``(MIDI pitch, onset, end)`` in quarter notes.
3. The time grid has one step per ``quantum`` quarter notes (default 1.0: one step per beat, as the
   JSB Chorales benchmark of Boulanger-Lewandowski et al. 2012), from the first onset on;
   key :math:`p` is on at step :math:`t` if a note of pitch :math:`p` sounds at time
   :math:`t \\cdot q` (onset :math:`\\le tq <` end).
4. The 88 keys are the piano's, MIDI 21 (A0) to 108 (C8); pitches outside are dropped (none in
   the chorales).

The result, ``{"rolls": [uint8 (T_i, 88)], "names": [str]}``, is cached as one ``.npz`` file
(written to a temporary file and renamed: a reader never sees a partial cache), keyed by the
music21 version, the quantum and the number of chorales.

Example:
    >>> rolls = chorale_rolls(limit=2)["rolls"]          # doctest: +SKIP
    >>> rolls[0].shape[1]                                # doctest: +SKIP
    88
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pathlib

import numpy as np

from inference.errors import DataError, MissingPackageError
from inference.io import atomic_write, cache_root

__all__ = ["chorale_rolls", "piano_roll", "chorale_paths", "LOWEST_KEY", "NUM_KEYS"]

LOWEST_KEY = 21  # A0
NUM_KEYS = 88


def _music21():
    if importlib.util.find_spec("music21") is None:
        raise MissingPackageError("music21", "the Bach chorales (its corpus ships inside the package)")
    import music21

    return music21


def chorale_paths() -> list[pathlib.Path]:
    """The Bach scores of music21's corpus, sorted by file name."""
    music21 = _music21()
    paths = [pathlib.Path(p) for p in music21.corpus.getComposer("bach")]
    return sorted((p for p in paths if p.suffix in (".mxl", ".krn", ".xml")), key=lambda p: p.name)


def piano_roll(notes, quantum: float = 1.0) -> np.ndarray:
    """A piano roll (T, 88) of uint8 from ``(midi, onset, end)`` triples in quarter notes (step 3
    of the module docstring); ``T`` covers the last note's end."""
    notes = [(int(p), float(a), float(b)) for p, a, b in notes if b > a]
    if not notes:
        return np.zeros((0, NUM_KEYS), np.uint8)
    if quantum <= 0:
        raise DataError(f"quantum must be positive, got {quantum}")
    start = min(a for _, a, _ in notes)
    steps = int(np.ceil((max(b for _, _, b in notes) - start) / quantum - 1e-9))
    roll = np.zeros((steps, NUM_KEYS), np.uint8)
    times = start + quantum * np.arange(steps)
    for pitch, onset, end in notes:
        key = pitch - LOWEST_KEY
        if 0 <= key < NUM_KEYS:
            roll[(times >= onset - 1e-9) & (times < end - 1e-9), key] = 1
    return roll


def _score_notes(path):
    music21 = _music21()
    score = music21.converter.parse(str(path)).stripTies()
    out = []
    for element in score.flatten().notes:
        length = float(element.duration.quarterLength)
        if length <= 0:  # grace notes
            continue
        onset = float(element.offset)
        pitches = element.pitches  # a Note has one, a Chord several
        out.extend((p.midi, onset, onset + length) for p in pitches)
    return out


def chorale_rolls(limit: int | None = None, *, quantum: float = 1.0, cache_dir=None) -> dict:
    """The chorales as piano rolls: ``{"rolls": [uint8 (T_i, 88)], "names": [str]}``.

    ``limit`` keeps the first chorales (by file name). Converted once and cached in
    ``cache_dir`` (default :func:`inference.io.cache_root`: ``$GENZOO_CACHE`` or ``~/.cache/genzoo``) as
    an ``.npz`` written atomically; with ``GENZOO_CACHE=off`` and no ``cache_dir`` nothing is kept
    (``"cache"`` is then None).
    """
    music21 = _music21()
    paths = chorale_paths()
    if limit is not None:
        paths = paths[: int(limit)]
    key = hashlib.sha256(f"{music21.__version__}|{quantum}|{[p.name for p in paths]}".encode()).hexdigest()[:16]
    folder = pathlib.Path(cache_dir) if cache_dir is not None else cache_root()
    cache = folder / f"chorales-{key}.npz" if folder is not None else None
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as blob:
            lengths, flat = blob["lengths"], blob["rolls"]
            names = [str(n) for n in blob["names"]]
        rolls = np.split(flat, np.cumsum(lengths)[:-1])
        return {"rolls": rolls, "names": names, "cache": str(cache)}
    rolls = [piano_roll(_score_notes(p), quantum) for p in paths]
    names = [p.stem for p in paths]
    if cache is None:
        return {"rolls": rolls, "names": names, "cache": None}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, rolls=np.concatenate(rolls) if rolls else np.zeros((0, NUM_KEYS), np.uint8),
                        lengths=np.array([len(r) for r in rolls], np.int64), names=np.array(names))
    atomic_write(cache, buffer.getvalue())
    return {"rolls": rolls, "names": names, "cache": str(cache)}
