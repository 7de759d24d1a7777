"""Variational autoencoders: the VAE (Bernoulli or Gaussian pixels) and the IWAE.

The generative program, one latent per image::

    #   +---------------- data (B) --+
    #   |   z_b ~ N(0, I_Z)           |
    #   |    |                        |
    #   |    v   decoder f_theta      |
    #   |   x_b ~ p(x | f_theta(z_b)) |     Bernoulli(logits) or N(mean, sigma^2 I)
    #   +-----------------------------+

and the amortised guide :math:`q_\\phi(z_b \\mid x_b) = \\mathcal N(\\mu_\\phi(x_b),
\\mathrm{diag}\\,\\sigma_\\phi(x_b)^2)` (the encoder). Both are learned by maximising

- the **ELBO** (VAE, Kingma and Welling 2014):
  :math:`\\mathcal L = \\mathbb E_q[\\log p_\\theta(x, z) - \\log q_\\phi(z \\mid x)]`, or
- the **importance-weighted bound** (IWAE, Burda et al. 2016):
  :math:`\\mathcal L_K = \\mathbb E\\big[\\log \\frac1K \\sum_k p_\\theta(x, z_k) / q_\\phi(z_k \\mid x)\\big]`,
  with the doubly reparameterised (DReG) encoder gradient of Tucker et al. (2019).

The IWAE is the same program and guide as the VAE; only its objective differs
(:attr:`VAE.objective`). With no hidden layer and Gaussian pixels the VAE is linear and its
optimum is probabilistic PCA's (Tipping and Bishop 1999; Lucas et al. 2019).

References:
    Kingma and Welling (2014). Auto-encoding variational Bayes. ICLR.
    Burda, Grosse and Salakhutdinov (2016). Importance weighted autoencoders. ICLR.
    Tucker, Lawson, Gu and Maddison (2019). Doubly reparameterized gradient estimators for Monte
        Carlo objectives. ICLR.
    Lucas, Tucker, Grosse and Norouzi (2019). Don't blame the ELBO! A linear VAE perspective on
        posterior collapse. NeurIPS.

Example:
    >>> import numpy as np
    >>> from deep.vae import VAE
    >>> from deep.train import train
    >>> images = (np.random.default_rng(0).random((64, 8, 8)) > 0.5).astype(np.float32)
    >>> vae = VAE(z_dim=2, hidden=(16,))
    >>> result = train(vae, {"x": images}, seed=0, epochs=2, batch_size=32)
    >>> vae.sample(seed=1, n=4).shape
    (4, 8, 8)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from deep.data import check_images
from deep.nets import Decoder, Encoder, isolated
from inference.errors import DataError

__all__ = ["VAE", "IWAE"]


class VAE(nn.Module):
    """A VAE over images of ``image_shape`` with a ``z_dim``-dimensional standard-normal latent.

    Args:
        image_shape: the shape of one image, e.g. ``(8, 8)`` (or ``(D,)`` for plain vectors).
        z_dim: latent dimensions :math:`Z`.
        hidden: hidden-layer widths of the encoder and decoder MLPs (``()``: linear maps).
        likelihood: ``"bernoulli"`` (0/1 pixels) or ``"gaussian"`` (isotropic, learned variance).
        data_range: allowed pixel range, checked on every batch (None: no check).
        name: prefix of the networks' names in Pyro's parameter store.

    Parameters live in ``state_dict()``: ``encoder.*`` (the guide's :math:`\\phi`) and
    ``decoder.*`` (the model's :math:`\\theta`).
    """

    objective = "elbo"
    recordable = True  # static programs, every weight through pyro.module: deep.train records the loss

    def __init__(self, image_shape: Sequence[int] = (8, 8), z_dim: int = 2, hidden: Sequence[int] = (128,),
                 likelihood: str = "bernoulli", *, data_range=(0.0, 1.0), name: str = "vae"):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.x_dim = math.prod(self.image_shape)
        self.z_dim = int(z_dim)
        self.likelihood = likelihood
        self.data_range = None if data_range is None else tuple(float(v) for v in data_range)
        self.name = name
        self.encoder = Encoder(self.x_dim, self.z_dim, tuple(hidden))
        self.decoder = Decoder(self.z_dim, self.x_dim, tuple(hidden), likelihood)
        self.config = {"image_shape": list(self.image_shape), "z_dim": self.z_dim, "hidden": list(hidden),
                       "likelihood": likelihood, "data_range": None if data_range is None else list(self.data_range),
                       "name": name}

    # ------------------------------------------------------------------ programs
    def check(self, x) -> torch.Tensor:
        """``x`` validated and flattened to (B, D) float32 (DataError names the fault)."""
        return check_images(x, self.image_shape, binary=self.likelihood == "bernoulli",
                            data_range=self.data_range, name="x")

    def model(self, x=None, n: int | None = None):
        """:math:`p_\\theta(x, z)`; with ``x=None`` it draws ``n`` images (B = n)."""
        pyro.module(f"{self.name}_decoder", self.decoder)
        if x is not None:
            x = self.check(x)  # (B, D)
        batch = _batch_size(x, n)
        loc = torch.zeros(batch, self.z_dim)
        with pyro.plate("data", batch):
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))  # (B, Z)
            return pyro.sample("x", self.decoder.distribution(z), obs=x)  # (B, D)

    def guide(self, x=None, n: int | None = None):
        """:math:`q_\\phi(z \\mid x)`, the encoder."""
        pyro.module(f"{self.name}_encoder", self.encoder)
        if x is None:
            raise DataError("the guide needs the images x")
        x = self.check(x)  # (B, D); the guide runs first, so it checks the images too
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)  # (B, Z) each
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ uses
    def sample(self, seed, n: int, *, mean: bool = True) -> np.ndarray:
        """``n`` images (n, *image_shape) drawn through the program: pixel means (probabilities
        for Bernoulli pixels, clipped to [0, 1] for Gaussian ones) when ``mean``, else draws."""
        from pyro import poutine

        with isolated(seed), torch.no_grad():
            trace = poutine.trace(self.model).get_trace(n=int(n))
            site = trace.nodes["x"]
            images = site["fn"].mean if mean else site["value"]
        return self._images(images)

    def encode(self, x) -> np.ndarray:
        """Posterior means :math:`\\mu_\\phi(x)`, (B, Z)."""
        with torch.no_grad():
            return self.encoder(self.check(x))[0].numpy()

    def reconstruct(self, x) -> np.ndarray:
        """Decoder means at the posterior means, :math:`\\mathbb E[x \\mid z = \\mu_\\phi(x)]`."""
        with torch.no_grad():
            return self._images(self.decoder.mean(self.encoder(self.check(x))[0]))

    def _images(self, flat: torch.Tensor) -> np.ndarray:
        out = flat.detach().reshape((-1,) + self.image_shape).numpy().astype(np.float64)
        return np.clip(out, 0.0, 1.0) if self.likelihood == "gaussian" and self.data_range else out


class IWAE(VAE):
    """The VAE's program and guide trained on the importance-weighted bound with ``num_particles``
    particles and DReG gradients (``objective = "iwae_dreg"``)."""

    objective = "iwae_dreg"

    def __init__(self, image_shape=(8, 8), z_dim: int = 2, hidden=(128,), likelihood: str = "bernoulli", *,
                 num_particles: int = 8, data_range=(0.0, 1.0), name: str = "iwae"):
        super().__init__(image_shape, z_dim, hidden, likelihood, data_range=data_range, name=name)
        self.num_particles = int(num_particles)
        self.config["num_particles"] = self.num_particles


def _batch_size(x, n) -> int:
    if x is not None:
        return x.shape[0]
    if n is None or int(n) < 1:
        raise DataError(f"give the data x or a number of draws n >= 1 (got n={n})")
    return int(n)
