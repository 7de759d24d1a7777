"""A conditional VAE: class-conditional generation and inpainting with one program.

The condition :math:`c = (y, m \\odot x, m)` holds the class label :math:`y` (one-hot, or zeros when
unknown), the visible pixels :math:`m \\odot x` and the visibility mask :math:`m \\in \\{0, 1\\}^D`.
The program (Sohn et al. 2015, with a conditional prior network)::

    #   +-------------------------------------------- data (B) --+
    #   |   c_b = (y_b, m_b * x_b, m_b)                            |
    #   |   z_b ~ N(mu_prior(c_b), sigma_prior(c_b)^2)             |
    #   |   x_b,d ~ Bernoulli(f(z_b, c_b)_d)   for hidden d only   |   (m_b,d = 0)
    #   +----------------------------------------------------------+

scores only the hidden pixels, :math:`p(x_{\\bar m} \\mid x_m, y) = \\int p(z \\mid c)\\,
p(x_{\\bar m} \\mid z, c)\\, dz`; the guide is :math:`q(z \\mid x, c)`. With no pixel visible it is a
class-conditional generator; with a half image visible it completes the other half.
:meth:`CVAE.inpaint` returns images whose visible pixels *are* the condition (copied, not
generated) and whose hidden pixels come from the program.

Training draws a fresh mask and label dropout per image and step (:meth:`CVAE.augment`): a quarter
of the images show no pixel (pure class-conditional), the others show one of the four halves
(top, bottom, left, right); each label is hidden with probability one half, so the same network
serves with or without a label.

References:
    Sohn, Lee and Yan (2015). Learning structured output representation using deep conditional
        generative models. NeurIPS.

Example:
    >>> import numpy as np
    >>> from deep.cvae import CVAE
    >>> cvae = CVAE(hidden=(16,))
    >>> x = (np.random.default_rng(0).random((3, 8, 8)) > 0.5).astype(np.float32)
    >>> mask = np.zeros((3, 8, 8), bool); mask[:, :4] = True    # top half visible
    >>> out = cvae.inpaint(x, mask, seed=0)
    >>> bool(np.all(out[mask] == x[mask]))
    True
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
from deep.nets import MLP, Decoder, Encoder, isolated
from inference.errors import DataError

__all__ = ["CVAE", "half_masks"]


class CVAE(nn.Module):
    """Conditional VAE over binary images of ``image_shape`` with ``num_classes`` labels.

    Networks: ``prior`` (c -> loc, scale), ``encoder`` ((x, c) -> loc, scale), ``decoder``
    ((z, c) -> logits). All weights live in ``state_dict()``.
    """

    objective = "elbo"

    def __init__(self, image_shape: Sequence[int] = (8, 8), num_classes: int = 10, z_dim: int = 4,
                 hidden: Sequence[int] = (128,), *, name: str = "cvae"):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.x_dim = math.prod(self.image_shape)
        self.num_classes, self.z_dim, self.name = int(num_classes), int(z_dim), name
        c_dim = self.num_classes + 2 * self.x_dim
        self.prior = Encoder(c_dim, self.z_dim, tuple(hidden))
        self.encoder = Encoder(self.x_dim + c_dim, self.z_dim, tuple(hidden))
        self.decoder = Decoder(self.z_dim + c_dim, self.x_dim, tuple(hidden), "bernoulli")
        self.config = {"image_shape": list(self.image_shape), "num_classes": self.num_classes,
                       "z_dim": self.z_dim, "hidden": list(hidden), "name": name}

    # ------------------------------------------------------------------ the condition
    def condition(self, x, labels, mask, batch: int) -> torch.Tensor:
        """:math:`c = (\\text{one-hot}(y), m \\odot x, m)`, (B, C + 2D). ``labels`` entries < 0 or a
        None ``labels`` mean "unknown"; a None ``mask`` shows no pixel."""
        if mask is None:
            m = torch.zeros(batch, self.x_dim)
        else:
            m = check_images(torch.as_tensor(np.asarray(mask)) if not isinstance(mask, torch.Tensor) else mask,
                             self.image_shape, binary=True, name="mask")
            if m.shape[0] != batch:
                raise DataError(f"mask: {m.shape[0]} masks for {batch} images")
        if m.any() and x is None:
            raise DataError("mask shows pixels, so the images x are needed")
        visible = m * x if x is not None else torch.zeros(batch, self.x_dim)
        onehot = torch.zeros(batch, self.num_classes)
        if labels is not None:
            y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long()
            if y.shape != (batch,):
                raise DataError(f"labels: expected shape ({batch},), got {tuple(y.shape)}")
            if torch.any(y >= self.num_classes):
                raise DataError(f"labels: a label is >= num_classes={self.num_classes} (max {int(y.max())})")
            known = y >= 0
            onehot[known, y[known]] = 1.0
        return torch.cat([onehot, visible, m], -1)  # (B, C + 2D)

    # ------------------------------------------------------------------ programs
    def model(self, x=None, labels=None, mask=None, n: int | None = None):
        """:math:`p(z \\mid c)\\, p(x_{\\text{hidden}} \\mid z, c)`; with ``x=None`` draws every pixel."""
        pyro.module(f"{self.name}_prior", self.prior)
        pyro.module(f"{self.name}_decoder", self.decoder)
        if x is not None:
            x = check_images(x, self.image_shape, binary=True, name="x")  # (B, D)
        batch = x.shape[0] if x is not None else _positive(n)
        c = self.condition(x, labels, mask, batch)  # (B, C + 2D)
        hidden = c[:, -self.x_dim:] == 0  # (B, D) the pixels to generate
        with pyro.plate("data", batch):
            loc, scale = self.prior(c)
            z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))  # (..., B, Z)
            zc = torch.cat([z, c.expand(z.shape[:-1] + c.shape[-1:])], -1)
            fn = self.decoder.distribution(zc, mask=hidden if x is not None else None)
            return pyro.sample("x", fn, obs=x)

    def guide(self, x=None, labels=None, mask=None, n: int | None = None):
        """:math:`q(z \\mid x, c)`."""
        pyro.module(f"{self.name}_encoder", self.encoder)
        if x is None:
            raise DataError("the guide needs the images x")
        x = x.reshape(x.shape[0], self.x_dim).to(torch.float32)
        c = self.condition(x, labels, mask, x.shape[0])
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(torch.cat([x, c], -1))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ training data
    def augment(self, batch: dict, generator: torch.Generator) -> dict:
        """A random mask and label dropout per image (see the module docstring)."""
        x = batch["x"]
        b = x.shape[0]
        masks = half_masks(self.image_shape)  # (5, D): none, top, bottom, left, right
        choice = torch.randint(0, 8, (b,), generator=generator)
        which = torch.where(choice < 2, torch.zeros_like(choice), (choice - 2) % 4 + 1)
        out = dict(batch, mask=masks[which])
        if "labels" in batch:
            drop = torch.rand(b, generator=generator) < 0.5
            out["labels"] = torch.where(drop, torch.full_like(batch["labels"], -1), batch["labels"])
        return out

    # ------------------------------------------------------------------ uses
    def generate(self, labels, seed, *, mean: bool = True) -> np.ndarray:
        """Images of the given classes (B, *image_shape): probabilities when ``mean``, else 0/1 draws."""
        from pyro import poutine

        labels = np.asarray(labels)
        with isolated(seed), torch.no_grad():
            trace = poutine.trace(self.model).get_trace(labels=labels, n=len(labels))
        site = trace.nodes["x"]
        out = site["fn"].mean if mean else site["value"]
        return out.reshape((-1,) + self.image_shape).numpy().astype(np.float64)

    def inpaint(self, x, mask, seed, *, labels=None, mean: bool = False) -> np.ndarray:
        """Complete images from their visible part: visible pixels (``mask`` True) are copied from
        ``x``; hidden ones are drawn from :math:`p(x_{\\bar m} \\mid x_m, y)` (or their probabilities
        when ``mean``). Returns (B, *image_shape)."""
        from pyro import poutine

        x = check_images(x, self.image_shape, binary=True, name="x")
        m = torch.as_tensor(np.asarray(mask)).reshape(x.shape[0], -1).to(torch.float32)
        visible = m * x
        with isolated(seed), torch.no_grad():
            # the same program, its observed site "x" sampled instead (uncondition): the condition
            # c = (y, m * x, m) is built from the visible pixels only, every pixel is drawn
            trace = poutine.trace(poutine.uncondition(self.model)).get_trace(x=visible, labels=labels, mask=m)
        site = trace.nodes["x"]
        drawn = site["fn"].mean if mean else site["value"]
        out = torch.where(m.bool(), x, drawn.to(torch.float32))
        return out.reshape((-1,) + self.image_shape).numpy().astype(np.float64)


def half_masks(image_shape) -> torch.Tensor:
    """The five training masks, flattened (5, D): nothing visible, top, bottom, left, right half."""
    h, w = image_shape if len(image_shape) == 2 else (1, int(np.prod(image_shape)))
    masks = torch.zeros(5, h, w)
    masks[1, : h // 2] = 1
    masks[2, h // 2:] = 1
    masks[3, :, : w // 2] = 1
    masks[4, :, w // 2:] = 1
    return masks.reshape(5, h * w)


def _positive(n) -> int:
    if n is None or int(n) < 1:
        raise DataError(f"give the data x or a number of draws n >= 1 (got n={n})")
    return int(n)
