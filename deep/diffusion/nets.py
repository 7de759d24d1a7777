"""The time-conditioned network shared by diffusion, score and flow-matching models.

``TimeMLP(dim)`` maps :math:`(x, t)` to a vector of the data's size (a noise prediction
:math:`\\hat\\epsilon`, a velocity :math:`u_t`, a score). The time enters as
:math:`[\\,t, \\sin(2\\pi k t), \\cos(2\\pi k t)\\,]_{k=1..F}` concatenated to :math:`x` (``frequencies=F``;
``frequencies=0`` feeds :math:`t` alone, torchcfm's MLP), through ``Linear -> act`` layers.

Example:
    >>> import torch
    >>> net = TimeMLP(2, hidden=(16, 16))
    >>> net(torch.zeros(5, 2), torch.rand(5)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from deep.nets import MLP
from inference.errors import DataError

__all__ = ["TimeMLP"]

_ACTIVATIONS = {"silu": nn.SiLU, "selu": nn.SELU, "softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh}


class TimeMLP(nn.Module):
    """``forward(x (B, D), t (B,) or scalar) -> (B, D)``: an MLP on :math:`[x, \\mathrm{emb}(t)]`."""

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128, 128), *, frequencies: int = 4,
                 activation: str = "silu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise DataError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise DataError(f"dim must be a positive integer, got {dim!r}")
        self.dim, self.frequencies = dim, int(frequencies)
        self.body = MLP((dim + 1 + 2 * self.frequencies, *hidden, dim), activation=_ACTIVATIONS[activation])
        self.register_buffer("k", 2 * math.pi * torch.arange(1, self.frequencies + 1, dtype=torch.float32))

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None]  # (B, 1)
        if not self.frequencies:
            return t
        kt = t * self.k.to(t.dtype)  # (B, F)
        return torch.cat([t, torch.sin(kt), torch.cos(kt)], -1)  # (B, 1 + 2F)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DataError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise DataError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
        w = self.body[0].weight
        out = self.body(torch.cat([x, self.embed(t)], -1).to(w.dtype))  # (B, D)
        return out.to(x.dtype)
