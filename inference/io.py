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
