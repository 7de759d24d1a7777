"""Generative adversarial networks: a generator as a Pyro program, and its critic.

The generator is an implicit model: a latent code from its prior and a deterministic map,

.. math::
    z \\sim N(0, I_Z), \\qquad x = G_\\theta(z, y),

(``y`` a class label for the conditional GAN), so the density of :math:`x` is intractable but
sampling is one forward pass. Written as a Pyro program, ``sample`` and conditioning work as for
every other model of the zoo: ``pyro.condition(gan.model, data={"z": z})`` fixes the code,
``gan.sample(seed, n, y=labels)`` draws given the labels. The critic :math:`V_\\phi` reads
``pack`` samples at a time (PacGAN), each with its one-hot label when conditional. The objectives
are in :mod:`deep.gan_losses`, the alternating update in :mod:`deep.gan_steps`.

Plate diagram::

    y[i] ~ Cat(1/C)   (conditional only)
      |
      v
    z[i] ~ N(0, I) --> x[i] = G(z[i], y[i])     for i in plate "data" (n)

References:
    Goodfellow et al. (2014). Generative adversarial nets. NeurIPS.
    Mirza and Osindero (2014). Conditional generative adversarial nets. arXiv:1411.1784.
    Lin, Khetan, Fanti and Oh (2018). PacGAN. NeurIPS.

Example:
    >>> gan = GAN(x_dim=2, z_dim=2, hidden=(32,))
    >>> gan.sample(0, 5).shape
    (5, 2)
    >>> import pyro, torch
    >>> z = torch.zeros(3, 2)
    >>> x = pyro.condition(gan.model, data={"z": z})(3)           # the code fixed: x = G(0)
    >>> bool(torch.allclose(x, gan.generator(z)))
    True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from deep.nets import MLP
from inference.errors import DataError
from inference.train import isolated

__all__ = ["Generator", "Critic", "GAN"]


def _one_hot(y: torch.Tensor | None, n_classes: int, rows: int, device) -> torch.Tensor | None:
    if n_classes == 0:
        return None
    if y is None:
        raise DataError(f"a conditional GAN needs labels y (B,) in 0..{n_classes - 1}")
    y = torch.as_tensor(y, device=device)
    if y.shape != (rows,) or y.is_floating_point() or int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise DataError(f"labels y must be {rows} integers in 0..{n_classes - 1}, got shape {tuple(y.shape)}")
    return nn.functional.one_hot(y.long(), n_classes).float()  # (B, C)


class Generator(nn.Module):
    """:math:`G(z, y)`: ``(B, Z) [+ (B,) labels] -> (B, D)``, ReLU MLP."""

    def __init__(self, z_dim: int, x_dim: int, hidden: Sequence[int] = (128, 128), n_classes: int = 0):
        super().__init__()
        self.z_dim, self.x_dim, self.n_classes = z_dim, x_dim, n_classes
        self.body = MLP((z_dim + n_classes, *hidden, x_dim), activation=nn.ReLU)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise DataError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        onehot = _one_hot(y, self.n_classes, z.shape[0], z.device)
        return self.body(z if onehot is None else torch.cat([z, onehot], 1))  # (B, D)


class Critic(nn.Module):
    """:math:`V(x_{1:m}, y_{1:m})`: ``(B/m, m (D + C)) -> (B/m, 1)``, LeakyReLU(0.2) MLP; ``embed``
    makes its input rows (x with one-hot labels) before packing."""

    def __init__(self, x_dim: int, hidden: Sequence[int] = (128, 128), pack: int = 1, n_classes: int = 0):
        super().__init__()
        self.x_dim, self.pack, self.n_classes = x_dim, pack, n_classes
        self.body = MLP((pack * (x_dim + n_classes), *hidden, 1), activation=lambda: nn.LeakyReLU(0.2))

    def embed(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.x_dim:
            raise DataError(f"x must have shape (B, {self.x_dim}), got {tuple(x.shape)}")
        onehot = _one_hot(y, self.n_classes, x.shape[0], x.device)
        return x if onehot is None else torch.cat([x, onehot], 1)  # (B, D + C)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.body(packed)  # (B/m, 1)


class GAN(nn.Module):
    """A generator (a Pyro program) with its critic.

    Args:
        x_dim: data dimension D.
        z_dim: latent dimension Z.
        hidden: hidden sizes of both networks (or give ``critic_hidden``).
        pack: samples per critic input (PacGAN; 1: none).
        n_classes: C > 0 for a conditional GAN on labels 0..C-1.
    """

    def __init__(self, x_dim: int, z_dim: int = 2, hidden: Sequence[int] = (128, 128), *, pack: int = 1,
                 n_classes: int = 0, critic_hidden: Sequence[int] | None = None):
        super().__init__()
        for name, value in (("x_dim", x_dim), ("z_dim", z_dim), ("pack", pack)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 0:
            raise DataError(f"n_classes must be a non-negative integer, got {n_classes!r}")
        self.x_dim, self.z_dim, self.pack, self.n_classes = x_dim, z_dim, pack, n_classes
        self.hidden = tuple(hidden)
        self.critic_hidden = tuple(hidden if critic_hidden is None else critic_hidden)
        self.generator = Generator(z_dim, x_dim, self.hidden, n_classes)
        self.critic = Critic(x_dim, self.critic_hidden, pack, n_classes)

    def config(self) -> dict:
        return {"x_dim": self.x_dim, "z_dim": self.z_dim, "hidden": list(self.hidden), "pack": self.pack,
                "n_classes": self.n_classes, "critic_hidden": list(self.critic_hidden)}

    def model(self, n: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's program: ``y`` (conditional, observed when given), ``z``, then ``x = G(z, y)``."""
        import pyro
        import pyro.distributions as dist

        pyro.module("generator", self.generator)
        device = next(self.generator.parameters()).device
        with pyro.plate("data", n):
            if self.n_classes:
                y = pyro.sample("y", dist.Categorical(logits=torch.zeros(self.n_classes, device=device)), obs=y)
            z = pyro.sample("z", dist.Normal(torch.zeros(self.z_dim, device=device), 1.0).to_event(1))  # (n, Z)
            return pyro.deterministic("x", self.generator(z, y), event_dim=1)  # (n, D)

    def sample(self, seed, n: int, *, y=None) -> np.ndarray:
        """``n`` draws (n, D) through the program, a pure function of ``seed`` (int or generator);
        ``y`` (n,) fixes the labels of a conditional GAN."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DataError(f"n must be a positive integer, got {n!r}")
        if y is not None:
            y = torch.as_tensor(y, device=next(self.generator.parameters()).device)
        with isolated(seed), torch.no_grad():
            return self.model(int(n), y).cpu().numpy()

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`G(z, y)` with gradients (the training step's path, without Pyro's bookkeeping)."""
        return self.generator(z, y)
