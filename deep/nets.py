"""Small named networks that deep models compose, and the helpers they share.

Each network is a plain ``torch.nn.Module`` held by its model object, so every weight lives in
the model's ``state_dict()``; the programs register them with ``pyro.module`` (a no-op for the
computation) so that Pyro's own SVI finds them, and :func:`isolated` scopes Pyro's parameter store
and torch's random state so that nothing global is left changed by a call.

Shapes: ``B`` data points, ``D`` pixels (flattened), ``Z`` latent dimensions, ``C`` condition size.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from inference.errors import DataError
from inference.likelihood import seeded
from inference.train import isolated

__all__ = ["MLP", "Encoder", "Decoder", "isolated", "seeded"]


class MLP(nn.Sequential):
    """``Linear -> act -> ... -> Linear``; ``sizes = (in, hidden..., out)``; no hidden layer is a
    single affine map."""

    def __init__(self, sizes: Sequence[int], activation=nn.Softplus):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
        super().__init__(*layers)


class Encoder(nn.Module):
    """Amortised Gaussian posterior :math:`q(z \\mid x) = \\mathcal N(\\mu(x), \\mathrm{diag}\\,\\sigma(x)^2)`:
    ``(B, D) -> loc (B, Z), scale (B, Z)``."""

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int] = (128,)):
        super().__init__()
        self.body = MLP((x_dim, *hidden, 2 * z_dim))
        self.z_dim = z_dim

    def forward(self, x: torch.Tensor):
        out = self.body(x)  # (B, 2Z)
        loc, raw = out[..., : self.z_dim], out[..., self.z_dim:]
        return loc, nn.functional.softplus(raw) + 1e-5


class Decoder(nn.Module):
    """Likelihood :math:`p(x \\mid z)`: Bernoulli with logits :math:`f(z)` or Gaussian
    :math:`\\mathcal N(f(z), \\sigma^2 I)` with one learned :math:`\\sigma` (isotropic, as in
    probabilistic PCA). ``distribution(z)`` returns the pixels as one event of size D."""

    def __init__(self, z_dim: int, x_dim: int, hidden: Sequence[int] = (128,), likelihood: str = "bernoulli"):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise DataError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.likelihood = likelihood
        self.body = MLP((z_dim, *hidden, x_dim))
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)  # (..., D): logits or means

    def distribution(self, z: torch.Tensor, mask: torch.Tensor | None = None):
        import pyro.distributions as dist

        out = self(z)
        if self.likelihood == "bernoulli":
            base = dist.Bernoulli(logits=out)
        else:
            base = dist.Normal(out, self.log_scale.exp().expand(out.shape))
        if mask is not None:
            base = base.mask(mask)
        return base.to_event(1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        out = self(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out


