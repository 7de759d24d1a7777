"""Reference runs kept on disk, so that a second ``genzoo compare`` does not redo its long reference.

A question answered without an exact method is judged against a long run of a trusted method (4
chains of 1,000 NUTS draws for the HMM's and the mixture's learning question): most of a second
``compare hmm`` (23 of 42 s). That run is a deterministic function of the entry, the method, the
options, the seed, the step budget, the data and the code, so its :class:`~inference.result.Result` is
kept under a key hashing all of them, as posteriordb keeps reference posteriors:

- the folder is ``$GENZOO_CACHE/references`` if ``GENZOO_CACHE`` is set, else
  ``$XDG_CACHE_HOME/genzoo/references``, else ``~/.cache/genzoo/references``; ``GENZOO_CACHE=off``
  turns it off, as it turns off JAX's compilation cache; ``compare --fresh-reference`` runs the
  reference again and keeps the new run in place of the old (``ReferenceCache(folder, read=False)``);
- the code is the SHA-256 of every ``.py`` file of the four packages (``pgm``, ``deep``,
  ``inference``, ``genzoo``), so any change to the code computes the reference again;
- an entry is written atomically (:func:`inference.io.atomic_write`) as the Result's JSON
  (:meth:`Result.to_json`, exact to the bit) with the seconds the run took; one that cannot be read
  back is computed again and overwritten; data that cannot be pickled (no key) or a result that
  cannot be written (a warning says why) leave the comparison uncached.

Only references are kept: the methods they judge are always run, since their seconds are part of
what ``compare`` reports.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import pickle
import warnings
from typing import Any, Mapping

from inference.io import cache_root
from inference.result import Result

__all__ = ["ReferenceCache", "source_hash"]

_PACKAGES = ("pgm", "deep", "inference", "genzoo")


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 of the project's source: every ``.py`` file of its packages, by relative path."""
    digest = hashlib.sha256()
    top = pathlib.Path(__file__).resolve().parent.parent
    for package in _PACKAGES:
        for path in sorted((top / package).rglob("*.py")):
            digest.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class ReferenceCache:
    """Results of reference methods in ``folder``, keyed by what determines them; with ``read=False``
    nothing is read back (every reference runs) but each run is kept."""

    def __init__(self, folder: str | os.PathLike, read: bool = True):
        self.folder, self.read = pathlib.Path(folder), bool(read)

    @classmethod
    def default(cls, read: bool = True) -> "ReferenceCache | None":
        """The cache in the user's cache folder, or None where ``GENZOO_CACHE=off``."""
        root = cache_root()
        return None if root is None else cls(root / "references", read)

    def key(self, entry: str, method: str, options: Mapping[str, Any], seed: int, steps: int | None,
            data: Any) -> str | None:
        """The hex key of one reference run: entry, method, options, seed, steps, data, source; None
        where the data cannot be pickled (then the reference is not kept)."""
        try:
            data_hash = hashlib.sha256(pickle.dumps(data, protocol=4)).hexdigest()
        except (pickle.PicklingError, TypeError, AttributeError):
            return None
        fields = {"entry": entry, "method": method, "options": {str(k): str(v) for k, v in options.items()},
                  "seed": int(seed), "steps": steps, "data": data_hash, "source": source_hash()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> pathlib.Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> tuple[Result, float] | None:
        """``(result, seconds the run took)``, or None where the key is absent or its file unreadable
        (always None with ``read=False``)."""
        if not self.read:
            return None
        try:
            saved = json.loads(self._path(key).read_text())
            return Result.from_json(saved["result"]), float(saved["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: str, result: Result, seconds: float) -> bool:
        """Keep ``result``; False, with a warning, where it cannot be written as JSON or to the folder
        (the comparison goes on without the cache)."""
        from inference.io import atomic_write

        try:
            text = json.dumps({"seconds": float(seconds), "result": result.to_json()})
            atomic_write(self._path(key), text)
        except (TypeError, ValueError, OSError) as err:
            warnings.warn(f"{result.method}: reference not kept in {self.folder} ({type(err).__name__}: {err})",
                          stacklevel=2)
            return False
        return True
