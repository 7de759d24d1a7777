"""Ready-made runs of the deep models, the functions behind ``genzoo run / sample / compare vae``.

They take arrays (the caller loads the data, e.g. ``genzoo.data.digits(binarize=True)``), so the
``deep`` package depends on nothing above it. Defaults are sized to finish in well under a
minute on two CPU cores with the 8 x 8 digits.

- :func:`fit` — train a VAE, IWAE or CVAE (``genzoo run vae``) -> ``Result(params=model)``.
- :func:`sample_images` — images (N, H, W) in [0, 1] drawn through the program (``genzoo sample vae``).
- :func:`compare_bounds` — ELBO, IWAE_K and the importance-sampling estimate of
  :math:`\\log p(x)` on the same images, each a ``Result`` with its kind (``genzoo compare vae``).
- :func:`save_pictures` — sample grid, reconstructions and (2-D latents) the latent space, as PNG.

Example:
    >>> import numpy as np
    >>> images = (np.random.default_rng(0).random((40, 8, 8)) > 0.5).astype(float)
    >>> result = fit(images, model="vae", seed=0, epochs=1, hidden=(8,))
    >>> [r.log_evidence_kind for r in compare_bounds(result.params, images[:5], seed=0, k_iwae=4, k_is=16)]
    ['lower_bound', 'lower_bound', 'estimate']
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np
import torch

from inference.errors import DataError, UnknownNameError
from inference.result import Result

__all__ = ["MODELS", "make_model", "fit", "sample_images", "compare_bounds", "save_pictures"]

MODELS = ("vae", "iwae", "cvae")


def make_model(model: str = "vae", *, image_shape=(8, 8), z_dim: int = 2, hidden=(64,), num_particles: int = 8,
               num_classes: int = 10):
    """A fresh VAE, IWAE (``num_particles``, DReG) or CVAE over binary images."""
    from deep.cvae import CVAE
    from deep.vae import IWAE, VAE

    if model == "vae":
        return VAE(image_shape, z_dim, hidden)
    if model == "iwae":
        return IWAE(image_shape, z_dim, hidden, num_particles=num_particles)
    if model == "cvae":
        return CVAE(image_shape, num_classes, z_dim, hidden)
    raise UnknownNameError(f"unknown deep model {model!r}; choose one of {MODELS}")


def fit(images, labels=None, *, model: str = "vae", seed: int, epochs: int = 20, z_dim: int = 2, hidden=(64,),
        num_particles: int = 8, batch_size: int = 64, learning_rate: float = 3e-3, progress: bool = False,
        checkpoint=None) -> Result:
    """Train ``model`` on binary ``images`` (N, H, W); a CVAE also reads ``labels`` (N,).

    Returns the training :class:`Result` (``params`` is the trained model, ``history`` the loss
    per step; see :func:`deep.train.train`).
    """
    from deep.train import train

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise DataError(f"images must be (N, H, W), got shape {images.shape}")
    net = make_model(model, image_shape=images.shape[1:], z_dim=z_dim, hidden=tuple(hidden),
                     num_particles=num_particles, num_classes=int(np.max(labels)) + 1 if labels is not None else 10)
    data = {"x": images}
    if model == "cvae" and labels is not None:
        data["labels"] = np.asarray(labels, dtype=np.int64)
    return train(net, data, seed=seed, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                 progress=progress, checkpoint=checkpoint)


def sample_images(model, seed, n: int = 16) -> np.ndarray:
    """``n`` images (n, H, W) in [0, 1] (pixel probabilities) drawn through the model's program;
    a CVAE draws ``n`` images cycling through its classes."""
    if hasattr(model, "generate"):
        return model.generate(np.arange(n) % model.num_classes, seed)
    return model.sample(seed, n)


def compare_bounds(model, images, *, seed, labels=None, k_iwae: int = 50, k_is: int = 1000,
                   num_dims: int | None = None, which: Sequence[str] = ("elbo", "iwae", "importance_sampling")
                   ) -> list[Result]:
    """Estimates of :math:`\\log p(x)` on the same images: the ELBO (``lower_bound``), the IWAE
    bound with ``k_iwae`` particles (``lower_bound``) and importance sampling with ``k_is``
    particles (``estimate``), those named in ``which``, in that order. Each Result holds the
    data-set total in ``log_evidence`` and nats per image in ``diagnostics["mean"]``; in
    expectation ELBO <= IWAE_K <= IS <= log p(x)."""
    from inference.likelihood import elbo, importance_log_likelihood, iwae_bound

    unknown = sorted(set(which) - {"elbo", "iwae", "importance_sampling"})
    if unknown:
        raise UnknownNameError(f"unknown bound {unknown[0]!r}; choose from elbo, iwae, importance_sampling")
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    data = {"x": x}
    if labels is not None:
        data["labels"] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    dims = num_dims or int(np.prod(x.shape[1:]))
    generator = torch.Generator().manual_seed(int(seed))
    seeds = [int(s) for s in torch.randint(0, 2**62, (3,), generator=generator)]
    estimators = {
        "elbo": lambda: elbo(model.model, model.guide, data, num_particles=1, seed=seeds[0], num_dims=dims),
        "iwae": lambda: iwae_bound(model.model, model.guide, data, num_particles=k_iwae, seed=seeds[1],
                                   num_dims=dims),
        "importance_sampling": lambda: importance_log_likelihood(model.model, model.guide, data,
                                                                 num_particles=k_is, seed=seeds[2], num_dims=dims),
    }
    return [estimators[name]() for name in ("elbo", "iwae", "importance_sampling") if name in which]


def save_pictures(model, images, folder, *, seed, labels=None, n: int = 64) -> dict[str, pathlib.Path]:
    """PNG files in ``folder``: ``samples.png``, ``reconstructions.png`` (VAE / IWAE), ``inpainting.png``
    (CVAE: top halves given) and ``latent_space.png`` for 2-D latents."""
    from deep.plots import save_grid, save_latent_scatter, save_reconstructions

    folder = pathlib.Path(folder)
    out = {"samples": save_grid(sample_images(model, seed, n), folder / "samples.png", title="samples")}
    images = np.asarray(images, dtype=np.float32)
    shown = images[:10]
    if hasattr(model, "inpaint"):
        mask = np.zeros(shown.shape, bool)
        mask[:, : shown.shape[1] // 2] = True
        completed = model.inpaint(shown, mask, seed)
        out["inpainting"] = save_reconstructions(shown, completed, folder / "inpainting.png",
                                                 title="data (top), top half given (bottom)")
    else:
        out["reconstructions"] = save_reconstructions(shown, model.reconstruct(shown), folder / "reconstructions.png")
        if model.z_dim == 2:
            out["latent_space"] = save_latent_scatter(model.encode(images), labels, folder / "latent_space.png")
    return out
