"""NADE: the neural autoregressive distribution estimator for binary vectors.

NADE (Larochelle and Murray 2011) writes :math:`p(x) = \\prod_t p(x_{o_t} \\mid x_{o_{<t}})` in an
ordering :math:`o` and computes each conditional with one hidden layer whose weights are **shared**
across the conditionals:

.. math::

    a_t = c + \\sum_{s < t} W_{:, o_s} x_{o_s}, \\qquad h_t = \\sigma(a_t), \\qquad
    p(x_{o_t} = 1 \\mid x_{o_{<t}}) = \\sigma(b_{o_t} + V_{o_t} \\cdot h_t).

Because :math:`a_{t+1} = a_t + W_{:, o_t} x_{o_t}`, all :math:`D` conditionals cost
:math:`O(DH)` together (a cumulative sum), one pass for the exact :math:`\\log p(x)`.

The same weights define a joint for **every** ordering (the sums above only need a permutation).
*Order-agnostic* training (Uria, Murray and Larochelle 2014) maximises
:math:`\\mathbb E_{o}[\\log p_o(x)]` over uniformly random orderings, so that each :math:`p_o` is a
good model; then conditioning on any observed subset :math:`S` is exact under the ordering that
puts :math:`S` first: :math:`p_o(x_{\\bar S} \\mid x_S) = \\prod_{t > |S|} p(x_{o_t} \\mid x_{o_{<t}})`
(:meth:`NADE.conditional_sample`, inpainting).

The program, one site per variable in the ordering::

    #   +------------------------------------------- data (B) --+
    #   |  x_{o1} --> x_{o2} --> x_{o3} --> ... --> x_{oD}        |
    #   |      \\__________\\___________\\_______^   (all earlier)  |
    #   +--------------------------------------------------------+

References:
    Larochelle and Murray (2011). The neural autoregressive distribution estimator. AISTATS.
    Uria, Murray and Larochelle (2014). A deep and tractable density estimator. ICML
        (order-agnostic training).
    Uria, Cote, Gregor, Murray and Larochelle (2016). Neural autoregressive distribution
        estimation. JMLR.

Example:
    >>> import torch
    >>> from deep.nade import NADE
    >>> nade = NADE(dim=5, hidden=8, seed=0)
    >>> x = nade.sample(4, generator=1)
    >>> mask = torch.tensor([True, True, False, False, False])
    >>> filled = nade.conditional_sample(x, mask, generator=2)
    >>> bool((filled[:, :2] == x[:, :2]).all())
    True
"""

from __future__ import annotations

import contextlib
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from deep.data import check_images
from deep.made import check_evidence, check_order
from inference.errors import DataError, ModelError
from inference.likelihood import seeded
from inference.rng import as_generator

__all__ = ["NADE"]


class NADE(nn.Module):
    """NADE over ``dim`` binary variables with ``hidden`` sigmoid units.

    Args:
        dim: :math:`D`, the number of binary variables.
        hidden: :math:`H`, the width of the shared hidden layer.
        order: the default ordering (a permutation of ``0..D-1``; default the natural one).
        order_agnostic: train on a uniformly random ordering per minibatch (:meth:`loss`).
        seed: an int or ``torch.Generator`` that initialises the weights (without touching the
            caller's random state); None: torch's default initialisation.
        device: where the weights live.

    Parameters (``state_dict``): ``W`` (H, D), ``c`` (H,), ``V`` (D, H), ``b`` (D,).
    """

    def __init__(self, dim: int, hidden: int = 500, *, order=None, order_agnostic: bool = False, seed=None,
                 device="cpu", name: str = "nade"):
        super().__init__()
        for value, what in ((dim, "dim"), (hidden, "hidden")):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ModelError(f"{what} must be a positive integer, got {value!r}")
        self.dim, self.hidden, self.name = int(dim), int(hidden), name
        self.order_agnostic = bool(order_agnostic)
        self.register_buffer("order", torch.arange(self.dim) if order is None else check_order(order, self.dim))
        with seeded(as_generator(seed)) if seed is not None else contextlib.nullcontext():
            scale = 1.0 / math.sqrt(self.dim)
            self.W = nn.Parameter(torch.randn(self.hidden, self.dim) * scale)  # (H, D)
            self.V = nn.Parameter(torch.randn(self.dim, self.hidden) / math.sqrt(self.hidden))  # (D, H)
        self.c = nn.Parameter(torch.zeros(self.hidden))  # (H,)
        self.b = nn.Parameter(torch.zeros(self.dim))  # (D,)
        self.config = {"dim": self.dim, "hidden": self.hidden, "order_agnostic": self.order_agnostic}
        self.to(device)

    # ------------------------------------------------------------------ checks
    def _check(self, x, name: str = "x") -> torch.Tensor:
        return check_images(x, (self.dim,), binary=True, name=name).to(self.W.device, self.W.dtype)  # (B, D)

    def _orders(self, order, batch: int) -> torch.Tensor:
        """An ordering per row, (B, D) long."""
        if order is None:
            return self.order.expand(batch, self.dim)
        o = torch.as_tensor(order, device=self.W.device)
        if o.dim() == 1:
            return check_order(o.cpu(), self.dim).to(self.W.device).expand(batch, self.dim)
        if o.dim() != 2 or o.shape != (batch, self.dim) or o.is_floating_point():
            raise ModelError(f"order: expected a permutation (D,) = ({self.dim},) or one per row "
                             f"({batch}, {self.dim}), got shape {tuple(o.shape)}")
        o = o.long()
        if not torch.equal(torch.sort(o, 1).values, torch.arange(self.dim, device=o.device).expand(batch, -1)):
            bad = int((torch.sort(o, 1).values != torch.arange(self.dim, device=o.device)).any(1).nonzero()[0])
            raise ModelError(f"order: row {bad} is not a permutation of 0..{self.dim - 1}")
        return o

    # ------------------------------------------------------------------ densities
    def conditional_logits(self, x, order=None) -> torch.Tensor:
        """:math:`\\mathrm{logit}\\,p(x_{o_t} = 1 \\mid x_{o_{<t}})` for every step :math:`t`, in the
        ordering's positions, (B, D): one pass (a cumulative sum over the ordering)."""
        x = self._check(x)
        shared = order is None or torch.as_tensor(order).dim() == 1
        orders = self._orders(order, x.shape[0])  # (B, D)
        xs = torch.gather(x, 1, orders)  # (B, D) in ordering positions
        o = orders[0] if shared else orders  # (D,) one ordering for all rows, or (B, D)
        steps = xs[..., None] * self.W.T[o]  # (B, D, H): x_{o_t} W_{:, o_t}
        before = torch.cumsum(steps, 1)[:, :-1]  # (B, D-1, H): the sums over s <= t
        a = self.c + torch.cat([torch.zeros_like(steps[:, :1]), before], 1)  # (B, D, H): a_t, over s < t
        return self.b[o] + (torch.sigmoid(a) * self.V[o]).sum(-1)  # (B, D)

    def log_prob(self, x, order=None) -> torch.Tensor:
        """Exact :math:`\\log p_o(x)` in nats, (B,), in the ordering ``order`` ((D,) or one per row
        (B, D); default the model's)."""
        x = self._check(x)
        logits = self.conditional_logits(x, order)  # (B, D)
        orders = self._orders(order, x.shape[0])
        return -F.binary_cross_entropy_with_logits(logits, torch.gather(x, 1, orders), reduction="none").sum(-1)

    def ensemble_log_prob(self, x, orders) -> torch.Tensor:
        """The uniform mixture over the orderings ``orders`` (M, D):
        :math:`\\log \\frac1M \\sum_m p_{o_m}(x)`, (B,), an exact density (probabilities averaged)."""
        orders = torch.as_tensor(orders)
        if orders.dim() != 2:
            raise ModelError(f"orders: expected shape (M, {self.dim}), got {tuple(orders.shape)}")
        per = torch.stack([self.log_prob(x, o) for o in orders])  # (M, B)
        return torch.logsumexp(per, 0) - math.log(orders.shape[0])

    def random_orders(self, n: int, generator) -> torch.Tensor:
        """``n`` uniformly random orderings (n, D) drawn from ``generator``."""
        generator = as_generator(generator, self.W.device)
        return torch.argsort(torch.rand(int(n), self.dim, generator=generator, device=self.W.device), 1)

    def loss(self, batch, generator: torch.Generator) -> torch.Tensor:
        """Training loss: :math:`-\\frac1B \\sum_b \\log p_o(x_b)`, with one ordering :math:`o` per
        minibatch drawn uniformly from ``generator`` when ``order_agnostic`` (an unbiased estimate
        of :math:`-\\mathbb E_o \\log p_o`), else the model's ordering."""
        x = self._check(batch["x"] if isinstance(batch, dict) else batch)
        order = self.random_orders(1, generator)[0] if self.order_agnostic else None
        return -self.log_prob(x, order).mean()

    # ------------------------------------------------------------------ the program
    def model(self, x=None, n: int | None = None, order=None):
        """The Pyro program: sites ``x_i`` in the ordering, each Bernoulli given all earlier ones;
        ``x`` (B, D) observed through ``obs=``, or ``n`` draws."""
        pyro.module(self.name, self)
        if x is not None:
            x = self._check(x)
        batch = x.shape[0] if x is not None else _count(n)
        o = self._orders(order, 1)[0].tolist()
        a = self.c.expand(batch, self.hidden)  # (B, H)
        values = torch.zeros(batch, self.dim, dtype=self.W.dtype, device=self.W.device)  # (B, D)
        with pyro.plate("data", batch):
            for i in o:
                logit = self.b[i] + torch.sigmoid(a) @ self.V[i]  # (B,)
                value = pyro.sample(f"x_{i}", dist.Bernoulli(logits=logit), obs=None if x is None else x[:, i])
                a = a + value[:, None] * self.W[:, i]  # (B, H)
                values = values.clone()
                values[:, i] = value
        return values

    # ------------------------------------------------------------------ sampling
    def conditional_sample(self, x, mask, generator, order=None) -> torch.Tensor:
        """Fill the unobserved entries of ``x`` (B, D) by exact conditional sampling.

        ``mask`` (B, D) or (D,) is True where ``x`` is observed (the other entries of ``x`` are
        ignored and may be NaN). Each row is scored in the ordering that puts its observed
        variables first (in ``order``'s relative order, default the model's) and its unobserved
        ones after, so the draw is from :math:`p_o(x_{\\bar S} \\mid x_S)` exactly.
        """
        generator = as_generator(generator, self.W.device)
        observed, m = check_evidence(x, mask, self.dim, device=self.W.device, dtype=self.W.dtype)  # (B, D)
        base = self._orders(order, 1)[0]  # (D,)
        # Step 1: per row, the observed variables first (stable sort keeps ``base``'s relative order).
        rank = (~m[:, base]).to(torch.int8)  # (B, D) 0 for observed
        orders = base[torch.sort(rank, dim=1, stable=True).indices]  # (B, D)
        return self._ancestral(orders, observed, m, generator)

    def sample(self, n: int, generator, order=None) -> torch.Tensor:
        """``n`` draws (n, D) of 0/1 by ancestral sampling in the ordering (D steps of O(H))."""
        n = _count(n)
        generator = as_generator(generator, self.W.device)
        orders = self._orders(order, n)
        zeros = torch.zeros(n, self.dim, dtype=self.W.dtype, device=self.W.device)
        return self._ancestral(orders, zeros, torch.zeros_like(zeros, dtype=torch.bool), generator)

    @torch.no_grad()
    def _ancestral(self, orders, observed, mask, generator) -> torch.Tensor:
        # Step 2: walk the ordering: the conditional's logit from a_t, keep or draw, then a_{t+1}.
        batch = orders.shape[0]
        rows = torch.arange(batch, device=orders.device)
        a = self.c.expand(batch, self.hidden).clone()  # (B, H)
        out = observed.clone()  # (B, D)
        for t in range(self.dim):
            idx = orders[:, t]  # (B,)
            logit = self.b[idx] + (torch.sigmoid(a) * self.V[idx]).sum(-1)  # (B,)
            u = torch.rand(batch, generator=generator, device=a.device, dtype=a.dtype)
            draw = (u < torch.sigmoid(logit)).to(out.dtype)
            value = torch.where(mask[rows, idx], out[rows, idx], draw)  # (B,)
            out[rows, idx] = value
            a += value[:, None] * self.W.T[idx]  # (B, H)
        return out


def _count(n) -> int:
    if n is None or isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise DataError(f"give the data x or a number of draws n >= 1 (got n={n!r})")
    return int(n)
