"""Pictures of deep models: sample grids, reconstructions, the latent space (PNG, written atomically).

:func:`image_grid` is a pure array function (tested on its values); the ``save_*`` functions draw
it with matplotlib (Agg) and write the PNG through a temporary file and a rename.
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile

import numpy as np

from inference.errors import DataError

__all__ = ["image_grid", "save_grid", "save_reconstructions", "save_latent_scatter", "scatter_over_density"]


def image_grid(images, nrow: int | None = None, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tile images (N, H, W) into one array (rows * (H + pad) - pad, cols * (W + pad) - pad),
    row-major, ``nrow`` images per row (default ``ceil(sqrt(N))``), gaps filled with ``fill``."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[0] == 0:
        raise DataError(f"images must be (N, H, W) with N >= 1, got shape {images.shape}")
    n, h, w = images.shape
    cols = int(nrow or np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), fill)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = images[i]
    return grid


def _write_png(fig, path) -> pathlib.Path:
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)
    return path


def _figure(size):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def save_grid(images, path, *, nrow=None, title: str | None = None) -> pathlib.Path:
    """A grid of images (N, H, W) in [0, 1] as a PNG."""
    grid = image_grid(images, nrow)
    fig, ax = _figure((max(2.0, grid.shape[1] / 8), max(2.0, grid.shape[0] / 8)))
    ax.imshow(grid, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    return _write_png(fig, path)


def save_reconstructions(images, reconstructions, path, *, title: str | None = None) -> pathlib.Path:
    """Originals (top row) above their reconstructions (bottom row), as a PNG."""
    images, reconstructions = np.asarray(images), np.asarray(reconstructions)
    if images.shape != reconstructions.shape:
        raise DataError(f"images {images.shape} and reconstructions {reconstructions.shape} differ in shape")
    both = np.concatenate([images, reconstructions])
    return save_grid(both, path, nrow=len(images), title=title or "data (top), reconstructions (bottom)")


def save_latent_scatter(z, labels, path, *, title: str | None = None) -> pathlib.Path:
    """Posterior means of a 2-D latent space, coloured by label, as a PNG."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] != 2:
        raise DataError(f"a latent-space plot needs 2-D latents (N, 2), got shape {z.shape}")
    fig, ax = _figure((5, 5))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=6)
    if labels is not None:
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z_1")
    ax.set_ylabel("z_2")
    ax.set_title(title or "posterior means")
    return _write_png(fig, path)


def scatter_over_density(ax, density, samples, title: str = ""):
    """Samples (n, 2) in red over the density of ``density`` (a :mod:`deep.densities` density) in
    grey, on its box: the picture of a 2-D sampler's quality a person reads at a glance."""
    import torch

    box = float(density.box)
    grid = np.linspace(-box, box, 200)
    gx, gy = np.meshgrid(grid, grid)
    with torch.no_grad():
        lp = density.log_prob(torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1))).reshape(gx.shape).numpy()
    ax.contourf(gx, gy, np.exp(lp), levels=20, cmap="Greys")
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5, color="C3")
    ax.set_xlim(-box, box)
    ax.set_ylim(-box, box)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
