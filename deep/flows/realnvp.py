"""RealNVP on vectors: affine couplings with alternating masks.

.. math::

    z = f_L \\circ \\dots \\circ f_1(x), \\quad z \\sim \\mathcal N(0, I_D), \\qquad
    f_l:\\ y_{a_l} = v_{a_l},\\ y_{b_l} = v_{b_l} \\odot e^{s_l(v_{a_l})} + t_l(v_{a_l}),

each layer written data -> base as in Dinh et al. (see :mod:`deep.flows.transforms` for why),
where layer :math:`l` conditions on the coordinates :math:`a_l = \\{i : i \\bmod 2 = l \\bmod 2\\}`,
so consecutive layers swap roles and every coordinate is transformed. The log-density is exact:
:math:`\\log p(x) = \\log \\mathcal N(z) + \\sum_l \\sum_{i \\in b_l} s_l(\\cdot)_i`; sampling runs
the layers backwards, :math:`v_b = (y_b - t) e^{-s}`. Every conditioner's last layer starts at
zero, so an untrained flow is the standard Normal.

References:
    Dinh, Sohl-Dickstein and Bengio (2017). Density estimation using Real NVP. ICLR.

Example:
    >>> import torch
    >>> from deep.flows import RealNVP
    >>> flow = RealNVP(2, hidden=(32, 32), num_layers=4, seed=0)
    >>> x = torch.zeros(3, 2)
    >>> [round(v, 4) for v in flow.log_prob(x).tolist()]  # untrained: log N(0; 0, I_2)
    [-1.8379, -1.8379, -1.8379]
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from deep.flows.base import Flow, FlowSequence, positive_int
from deep.flows.transforms import AffineCoupling, alternating_masks
from deep.nets import seeded

__all__ = ["RealNVP"]


class RealNVP(Flow):
    """RealNVP on :math:`\\mathbb R^D` (see the module docstring).

    Args:
        dim: :math:`D \\ge 2`.
        hidden: hidden widths of each coupling's conditioner.
        num_layers: the number of couplings (masks alternate).
        activation: the conditioners' nonlinearity (a module class).
        init: ``"identity"`` (every coupling starts as the identity: the untrained flow is the
            standard Normal) or ``"random"`` (torch's default initialisation throughout, as zuko's
            flows start; measured to train to a lower KL on the 8 Gaussians, see
            :func:`~deep.flows.base.init_last_layer`).
        seed: an int or ``torch.Generator`` that initialises the weights (required: no default seed).
        device: where the weights live.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), num_layers: int = 4, *,
                 activation=nn.ReLU, init: str = "identity", seed, device="cpu"):
        super().__init__()
        self.dim = positive_int(dim, "dim", minimum=2)
        self.config = {"flow": "realnvp", "dim": self.dim, "hidden": list(hidden), "num_layers": int(num_layers),
                       **({} if init == "identity" else {"init": init})}  # (the default leaves configs as they were)
        with seeded(seed):
            self.transform = FlowSequence([AffineCoupling(m, hidden, activation, init)
                                           for m in alternating_masks(self.dim, num_layers)])
        self.to(device)
