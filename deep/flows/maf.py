"""Masked autoregressive flow: affine autoregressive layers with MADE conditioners.

Each layer maps data to base in **one** pass of a MADE network (:class:`deep.made.MADENet`),

.. math::

    z_i = x_i\\, e^{\\alpha_i(x_{o<i})} + \\mu_i(x_{o<i}), \\qquad
    \\log \\left|\\det \\frac{\\partial z}{\\partial x}\\right| = \\sum_i \\alpha_i,

so the density is fast; sampling (base -> data) inverts it coordinate by coordinate,
:math:`x_{o_t} = (z_{o_t} - \\mu_{o_t}) e^{-\\alpha_{o_t}}`, :math:`D` network passes per layer.
Papamakarios et al. write the same family as :math:`z_i = (x_i - \\mu_i) e^{-\\alpha_i}`; the form
above (zuko's, and Dinh et al.'s for couplings) trains faster by maximum likelihood (see
:mod:`deep.flows.transforms`). Layers alternate between the ordering :math:`0, \\dots, D-1` and its
reverse. The log-scale is softly bounded as in the coupling layers
(:func:`deep.flows.transforms.soft_bound`) and the last masked layer starts at zero (an untrained
MAF is the standard Normal).

References:
    Papamakarios, Pavlakou and Murray (2017). Masked autoregressive flow for density estimation. NeurIPS.
    Germain, Gregor, Murray and Larochelle (2015). MADE. ICML.

Example:
    >>> import torch
    >>> from deep.flows import MAF
    >>> flow = MAF(3, hidden=(16,), num_layers=2, seed=0)
    >>> x = flow.sample((5,), generator=0)
    >>> flow.log_prob(x).shape
    torch.Size([5])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from deep.flows.base import Flow, FlowSequence, FlowTransform, init_last_layer, positive_int
from deep.flows.transforms import soft_bound
from deep.made import MADENet
from deep.nets import seeded

__all__ = ["MAF", "AffineAutoregressive"]


class AffineAutoregressive(FlowTransform):
    """One MAF layer (see the module docstring); ``order`` is the autoregressive ordering."""

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), order=None, activation=nn.ReLU,
                 init: str = "identity"):
        super().__init__()
        self.dim = positive_int(dim, "dim")
        self.net = MADENet(self.dim, hidden, 2, order, activation=activation)
        init_last_layer(self.net, init)

    def _shift_log_scale(self, x):
        out = self.net(x.reshape(-1, self.dim)).reshape(*x.shape, 2)  # (..., D, 2)
        return out[..., 0], soft_bound(out[..., 1])  # (B, D) each

    def inverse_and_log_det(self, x):
        shift, log_scale = self._shift_log_scale(x)
        return x * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def forward_and_log_det(self, z):
        x = torch.zeros_like(z)  # (B, D)
        for _ in range(self.dim):  # after pass t the first t+1 coordinates in the ordering are final
            shift, log_scale = self._shift_log_scale(x)
            x = (z - shift) * torch.exp(-log_scale)
        return x, -log_scale.sum(-1)


class MAF(Flow):
    """A masked autoregressive flow on :math:`\\mathbb R^D` (see the module docstring).

    Args:
        dim: :math:`D \\ge 1`.
        hidden: hidden widths of each layer's MADE.
        num_layers: the number of autoregressive layers (orderings alternate, forward / reversed).
        activation: the MADEs' nonlinearity.
        init: ``"identity"`` (the untrained flow is the standard Normal) or ``"random"``
            (:func:`~deep.flows.base.init_last_layer`).
        seed: an int or ``torch.Generator`` that initialises the weights.
        device: where the weights live.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), num_layers: int = 4, *,
                 activation=nn.ReLU, init: str = "identity", seed, device="cpu"):
        super().__init__()
        self.dim = positive_int(dim, "dim")
        num_layers = positive_int(num_layers, "num_layers")
        self.config = {"flow": "maf", "dim": self.dim, "hidden": list(hidden), "num_layers": num_layers,
                       **({} if init == "identity" else {"init": init})}  # (the default leaves configs as they were)
        forward, backward = torch.arange(self.dim), torch.arange(self.dim - 1, -1, -1)
        with seeded(seed):
            self.transform = FlowSequence([AffineAutoregressive(self.dim, hidden, forward if i % 2 == 0 else backward,
                                                                activation, init) for i in range(num_layers)])
        self.to(device)
