"""Run folders and atomic writes: an interrupted run leaves no half-written file.

A run folder is ``runs/<model>-<method>-<UTC time>/`` holding ``metrics.json``, plots (PNG) and
checkpoints. Every file is written to a temporary file in the same folder and renamed into place
(``os.replace`` is atomic on POSIX), so a reader sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np

from inference.io import atomic_write

__all__ = ["atomic_write", "write_json", "save_figure", "new_run_dir"]


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


def new_run_dir(model: str, method: str, root="runs") -> pathlib.Path:
    """Create ``root/<model>-<method>-<UTC time>/`` (a numbered suffix if it exists already)."""
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
