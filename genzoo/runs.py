"""Run folders and atomic writes: an interrupted run leaves no half-written file.

A run folder is ``runs/<model>-<method>-<UTC time>/`` holding ``metrics.json``, plots (PNG) and
checkpoints. Every file is written to a temporary file in the same folder and renamed into place
(``os.replace`` is atomic on POSIX), so a reader sees the old file or the new one, never a torn one.
A command writes its folder inside :func:`run_folder`, which removes the folder again when the
block fails or is interrupted: a run folder that exists is a finished one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import pathlib
import shutil
from typing import Any

import numpy as np

from inference.io import atomic_write

from inference.errors import DataError

__all__ = ["atomic_write", "write_json", "save_figure", "new_run_dir", "run_folder", "check_root"]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)) or hasattr(obj, "__array__"):
        return _jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return repr(obj)
    return obj


def write_json(path, obj: Any) -> pathlib.Path:
    """``obj`` as indented JSON, atomically (arrays become lists; inf / nan become strings)."""
    return atomic_write(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def save_figure(fig, path, **kwargs) -> pathlib.Path:
    """Save a matplotlib figure atomically (the format follows the suffix)."""
    import io

    path = pathlib.Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", bbox_inches="tight", **kwargs)
    return atomic_write(path, buffer.getvalue())


def check_root(root, name: str = "--out") -> pathlib.Path:
    """``root`` as a path where folders can be made: a :class:`DataError` naming ``name`` when
    ``root`` or a folder above it is an existing file (checked before any work is done)."""
    root = pathlib.Path(root)
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                raise DataError(f"{name} {str(root)!r}: {str(path)!r} is a file, not a folder")
            break
    return root


def new_run_dir(model: str, method: str, root="runs") -> pathlib.Path:
    """Create ``root/<model>-<method>-<UTC time>/`` (a numbered suffix if it exists already)."""
    check_root(root)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = pathlib.Path(root) / f"{model}-{method}-{stamp}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        except OSError as err:  # no permission, a read-only disk...
            raise DataError(f"--out {str(root)!r}: cannot make the run folder {str(path)!r}: {err.strerror}") from err


@contextlib.contextmanager
def run_folder(model: str, method: str, root="runs"):
    """:func:`new_run_dir` as a ``with`` block: the folder is removed again if the block raises
    (an error or Ctrl-C while its files are written), so no half-written run folder stays.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> try:
        ...     with run_folder("coin", "nuts", root) as folder:
        ...         raise KeyboardInterrupt
        ... except KeyboardInterrupt:
        ...     pass
        >>> list(pathlib.Path(root).iterdir())
        []
    """
    path = new_run_dir(model, method, root)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
