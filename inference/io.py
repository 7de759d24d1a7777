"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

The content goes to a temporary file in the same folder, is flushed and fsynced, and is renamed
into place (``os.replace`` is atomic on POSIX); on any failure or interruption the temporary file
is removed and the old file, if any, is left as it was. Every checkpoint, cache and run file of the
zoo is written this way.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import BinaryIO, Callable, Union

Content = Union[bytes, str, Callable[[BinaryIO], None]]


def atomic_write(path, content: Content) -> pathlib.Path:
    """Write ``content`` to ``path`` atomically.

    ``content`` is bytes, text (written as UTF-8), or a function that writes to the open binary
    file (for ``torch.save`` / ``np.savez`` style writers).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def cache_root() -> pathlib.Path | None:
    """The project's cache folder: ``$GENZOO_CACHE`` if set, else ``$XDG_CACHE_HOME/genzoo``, else
    ``~/.cache/genzoo``; None where ``GENZOO_CACHE`` is ``off``, ``0`` or empty (nothing is kept).
    JAX's compiled programs (:mod:`inference`), ``compare``'s references
    (:mod:`genzoo.reference_cache`) and methods' seconds (:mod:`genzoo.method_times`) and the
    converted chorales (:mod:`deep.music`) live under it."""
    where = os.environ.get("GENZOO_CACHE")
    if where is not None:
        return None if where.strip().lower() in ("off", "0", "") else pathlib.Path(where).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "genzoo"
