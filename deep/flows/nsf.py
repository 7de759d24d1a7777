"""Neural spline flow (coupling form): rational-quadratic spline couplings with alternating masks.

.. math::

    z = f_L \\circ \\dots \\circ f_1(x), \\qquad
    f_l:\\ y_{a_l} = v_{a_l},\\ y_i = g_{\\theta_{l,i}(v_{a_l})}(v_i) \\ (i \\in b_l),

each :math:`g` a monotone rational-quadratic spline with :math:`K` bins on :math:`[-B, B]`, the
identity outside, applied data -> base as in Durkan et al. (see :mod:`deep.flows.transforms`);
:math:`\\log p(x) = \\log \\mathcal N(z) + \\sum_l \\sum_{i \\in b_l} \\log g'(v_i)`, and sampling
inverts each spline (a quadratic per coordinate). The spline code is Pyro's (see
:mod:`deep.flows.transforms`). A zero-initialised conditioner gives uniform knots with unit slopes:
the identity, so an untrained flow is the standard Normal.

References:
    Durkan, Bekasov, Murray and Papamakarios (2019). Neural spline flows. NeurIPS.

Example:
    >>> import torch
    >>> from deep.flows import NSF
    >>> flow = NSF(2, hidden=(32, 32), num_layers=4, bins=8, seed=0)
    >>> x = flow.sample((100,), generator=0)
    >>> flow.log_prob(x).shape
    torch.Size([100])
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from deep.flows.base import Flow, FlowSequence, positive_int
from deep.flows.transforms import SplineCoupling, alternating_masks
from deep.nets import seeded

__all__ = ["NSF"]


class NSF(Flow):
    """A coupling neural spline flow on :math:`\\mathbb R^D` (see the module docstring).

    Args:
        dim: :math:`D \\ge 2`.
        hidden: hidden widths of each coupling's conditioner.
        num_layers: the number of couplings (masks alternate).
        bins: :math:`K \\ge 2` spline bins.
        bound: :math:`B`: the splines act on :math:`[-B, B]`, the identity outside.
        activation: the conditioners' nonlinearity.
        init: ``"identity"`` (the untrained flow is the standard Normal) or ``"random"``
            (:func:`~deep.flows.base.init_last_layer`).
        seed: an int or ``torch.Generator`` that initialises the weights.
        device: where the weights live.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), num_layers: int = 4, bins: int = 8,
                 bound: float = 5.0, *, activation=nn.ReLU, init: str = "identity", seed, device="cpu"):
        super().__init__()
        self.dim = positive_int(dim, "dim", minimum=2)
        self.config = {"flow": "nsf", "dim": self.dim, "hidden": list(hidden), "num_layers": int(num_layers),
                       "bins": int(bins), "bound": float(bound), **({} if init == "identity" else {"init": init})}
        with seeded(seed):
            self.transform = FlowSequence([SplineCoupling(m, hidden, bins, bound, activation, init)
                                           for m in alternating_masks(self.dim, num_layers)])
        self.to(device)
