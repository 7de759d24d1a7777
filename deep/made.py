"""MADE: masked autoencoders for distribution estimation, and the masked network under MAF.

An autoregressive model factorises a joint over :math:`D` variables in an ordering :math:`o`,

.. math::

    p(x) = \\prod_{t=1}^{D} p(x_{o_t} \\mid x_{o_{<t}}),

and MADE computes every conditional's parameters in **one** pass of a feed-forward network whose
weights are multiplied by 0/1 masks so that output :math:`o_t` sees only inputs :math:`o_{<t}`.
The masks come from *degrees* (Germain et al. 2015, section 4):

1. each input :math:`i` gets the degree :math:`m_0(i) = ` its position in :math:`o` (1..D);
2. each hidden unit :math:`k` of layer :math:`l` gets a degree
   :math:`m_l(k) \\in [\\min m_{l-1}, D - 1]` (a spread that cycles, or random draws:
   *connectivity-agnostic* training);
3. a hidden weight :math:`j \\to k` is kept iff :math:`m_l(k) \\ge m_{l-1}(j)`; an output weight
   :math:`j \\to` (output of input :math:`i`) iff :math:`m_0(i) > m_L(j)` (strict).

So unit :math:`k` depends on inputs of degree :math:`\\le m_l(k)` only and output :math:`i` on inputs
of degree :math:`< m_0(i)`: the Jacobian :math:`\\partial\\,\\mathrm{out}_i / \\partial x_j` is strictly
triangular in the ordering. With ``out_per_dim`` :math:`P` outputs per variable (logits; or shift
and log-scale for MAF) each output unit copies its variable's degree. A context vector (for a
conditional flow) enters the first hidden layer unmasked.

:class:`MADE` is the binary density on this network: :math:`p(x_i = 1 \\mid x_{<i}) =
\\sigma(\\mathrm{out}_i)`. With ``num_masks`` :math:`K > 1` it holds :math:`K` orderings and
connectivities over the same weights; training draws one per minibatch (order- and
connectivity-agnostic training) and the test-time density is the uniform **mixture**

.. math::

    p(x) = \\frac1K \\sum_{k=1}^K p_k(x), \\qquad
    \\log p(x) = \\operatorname{logsumexp}_k \\log p_k(x) - \\log K,

an average of probabilities (a mean of log-probabilities would not normalise).

Inpainting (:meth:`MADE.conditional_sample`) draws the unobserved variables :math:`x_U` given the
observed :math:`x_O` exactly, from the mixture's :math:`p(x_U \mid x_O) = \sum_k w_k\, p_k(x_U \mid
x_O)` with :math:`w_k \propto p_k(x_O)`, or from one set's :math:`p_k(x_U \mid x_O)`. Unlike NADE's,
a MADE's orderings are fixed when it is built, so :math:`p_k(x_O)` and the ancestral walk are one
pass only for a set whose ordering puts :math:`O` first; otherwise the :math:`2^{|U|}` completions
are enumerated (a few unobserved variables), or the sampler refuses.

References:
    Germain, Gregor, Murray and Larochelle (2015). MADE: Masked autoencoder for distribution
        estimation. ICML.
    Papamakarios, Pavlakou and Murray (2017). Masked autoregressive flow for density estimation.
        NeurIPS (MADE with Gaussian conditionals as a flow layer).

Example:
    >>> import torch
    >>> from deep.made import MADE
    >>> made = MADE(dim=4, hidden=(16,), num_masks=3, seed=0)
    >>> x = made.sample(5, generator=1)
    >>> made.log_prob(x).shape
    torch.Size([5])
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from deep.data import check_images
from inference.errors import DataError, ModelError
from inference.likelihood import seeded
from inference.rng import as_generator

__all__ = ["MaskedLinear", "made_masks", "check_order", "check_evidence", "MADENet", "MADE"]


class MaskedLinear(nn.Linear):
    """:math:`y = (W \\odot M) x + b` with a fixed 0/1 mask :math:`M` (out, in), kept as a buffer
    (in ``state_dict``, moved with the module, never trained)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != (out_features, in_features):
            raise ModelError(f"mask: expected shape ({out_features}, {in_features}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def set_mask(self, mask: torch.Tensor) -> None:
        if tuple(mask.shape) != tuple(self.mask.shape):
            raise ModelError(f"mask: expected shape {tuple(self.mask.shape)}, got {tuple(mask.shape)}")
        self.mask.copy_(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)  # (..., out)


def check_order(order, dim: int, name: str = "order") -> torch.Tensor:
    """``order`` as a long tensor holding a permutation of ``0..dim-1`` (ModelError otherwise)."""
    o = torch.as_tensor(order)
    if o.dim() != 1 or o.numel() != dim or o.is_floating_point():
        raise ModelError(f"{name}: expected {dim} integers (a permutation of 0..{dim - 1}), got shape "
                         f"{tuple(o.shape)} and dtype {o.dtype}")
    o = o.long()
    if not torch.equal(torch.sort(o).values, torch.arange(dim)):
        raise ModelError(f"{name}: {o.tolist()} is not a permutation of 0..{dim - 1}")
    return o


def check_evidence(x, mask, dim: int, *, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The evidence of a conditional sampler: ``(observed, m)``, both (B, D).

    ``x`` is (B, D); ``mask`` (B, D) or (D,) is boolean, True where ``x`` is observed. The
    unobserved entries of ``x`` are ignored (they may be NaN) and set to 0 in ``observed``; the
    observed ones must be 0 or 1 (DataError naming the first bad entry otherwise).
    """
    m = torch.as_tensor(mask, device=device)
    if m.dtype != torch.bool:
        raise DataError(f"mask: expected a boolean tensor (True = observed), got dtype {m.dtype}")
    x = torch.as_tensor(x)
    if x.dim() != 2 or x.shape[1] != dim:
        raise DataError(f"x: expected shape (B, {dim}), got {tuple(x.shape)}")
    x = x.to(device, dtype)
    if m.shape == (dim,):
        m = m.expand(x.shape[0], dim)
    if m.shape != x.shape:
        raise DataError(f"mask: expected shape ({dim},) or {tuple(x.shape)}, got {tuple(m.shape)}")
    observed = torch.where(m, x, torch.zeros_like(x))  # (B, D)
    bad = m & (observed != 0) & (observed != 1)
    if bad.any():
        row, col = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"x: observed entry ({row}, {col}) is {float(x[row, col])}, not 0 or 1")
    return observed, m


def made_masks(degrees_in: torch.Tensor, hidden_sizes: Sequence[int], out_multiplier: int = 1,
               generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """The masks of a MADE network from the input degrees (1..D, one per input).

    Hidden degrees cycle through :math:`[\\min m_{l-1}, D - 1]` (``generator=None``) or are drawn
    uniformly from that range (connectivity-agnostic). Returns one (out, in) float mask per layer,
    the last of shape ``(D * out_multiplier, H_L)``; output unit ``i * out_multiplier + p`` belongs
    to input ``i``.
    """
    degrees_in = torch.as_tensor(degrees_in).long()
    d = degrees_in.numel()
    masks, prev = [], degrees_in
    for size in hidden_sizes:
        low = min(int(prev.min()), d - 1)
        span = d - 1 - low + 1
        if generator is None:
            deg = low + torch.arange(int(size)) % span  # (H,)
        else:
            deg = torch.randint(low, d, (int(size),), generator=generator)  # (H,)
        masks.append((deg[:, None] >= prev[None, :]).float())  # (H, H_prev)
        prev = deg
    out_deg = degrees_in.repeat_interleave(int(out_multiplier))  # (D P,)
    masks.append((out_deg[:, None] > prev[None, :]).float())  # (D P, H_L)
    return masks


class MADENet(nn.Module):
    """An autoregressive network: ``(B, dim) -> (B, dim, out_per_dim)`` where output ``[:, i, :]``
    depends only on ``x[:, j]`` for ``j`` before ``i`` in ``order`` (and on ``context``).

    Args:
        dim: the number of variables :math:`D`.
        hidden_sizes: widths of the masked hidden layers, or one int for one layer (``()``: a
            masked linear map, the fully visible sigmoid belief net when used for logits).
        out_per_dim: outputs per variable (1 for Bernoulli logits; 2 for MAF's shift and log-scale).
        order: a permutation of ``0..dim-1`` (default: ``0, 1, ..., dim-1``).
        context_dim: size of an optional context vector fed, unmasked, to the first layer.
        num_masks: mask sets kept (orderings / connectivities over the same weights); switch with
            :meth:`use_mask`. Sets after the first draw their ordering (when ``order_agnostic``)
            and hidden degrees (when ``connectivity_agnostic``) from ``seed``.
        seed: an int or ``torch.Generator``: initialises the weights (without touching the
            caller's random state) and draws the extra mask sets; None keeps torch's default
            initialisation and allows only deterministic masks.
        activation: the hidden nonlinearity (a module class).
        device: where the weights live.
    """

    def __init__(self, dim: int, hidden_sizes: Sequence[int], out_per_dim: int = 1, order=None,
                 context_dim: int = 0, *, num_masks: int = 1, order_agnostic: bool = True,
                 connectivity_agnostic: bool = True, seed=None, activation=nn.ReLU, device="cpu"):
        super().__init__()
        self.dim, self.out_per_dim, self.context_dim = _positive_int(dim, "dim"), \
            _positive_int(out_per_dim, "out_per_dim"), int(context_dim)
        if isinstance(hidden_sizes, int):
            hidden_sizes = (hidden_sizes,)  # one hidden layer
        self.hidden_sizes = tuple(_positive_int(h, "hidden_sizes entry") for h in hidden_sizes)
        self.num_masks = _positive_int(num_masks, "num_masks")
        if self.context_dim < 0:
            raise ModelError(f"context_dim must be >= 0, got {context_dim}")
        first = torch.arange(self.dim) if order is None else check_order(order, self.dim)
        generator = None if seed is None else as_generator(seed)
        if self.num_masks > 1 and generator is None and (order_agnostic or connectivity_agnostic):
            raise ModelError("num_masks > 1 draws orderings / connectivities at random: give seed")
        orders, mask_sets = [], []
        for k in range(self.num_masks):
            o = first if k == 0 or not order_agnostic else torch.randperm(self.dim, generator=generator)
            g = generator if (k > 0 and connectivity_agnostic) else None
            orders.append(o)
            mask_sets.append(made_masks(_degrees(o), self.hidden_sizes, self.out_per_dim, g))
        self.register_buffer("orders", torch.stack(orders))  # (K, D)
        for layer in range(len(self.hidden_sizes) + 1):
            self.register_buffer(f"mask_set_{layer}", torch.stack([m[layer] for m in mask_sets]))  # (K, out, in)
        sizes = (self.dim, *self.hidden_sizes, self.dim * self.out_per_dim)
        with seeded(generator) if generator is not None else contextlib.nullcontext():
            self.layers = nn.ModuleList(MaskedLinear(a, b, mask_sets[0][i])
                                        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))
            self.context = nn.Linear(self.context_dim, sizes[1], bias=False) if self.context_dim else None
        self.activation = activation()
        self.register_buffer("active", torch.zeros((), dtype=torch.long))  # the mask set in the layers
        self.to(device)

    @property
    def mask_index(self) -> int:
        """The mask set in use (a buffer, so a loaded ``state_dict`` says which masks its layers hold)."""
        return int(self.active)

    @property
    def order(self) -> torch.Tensor:
        """The ordering of the mask set in use, (D,)."""
        return self.orders[self.mask_index]

    def use_mask(self, k: int) -> None:
        """Switch every layer to mask set ``k`` (an ordering and a connectivity)."""
        k = int(k)
        if not 0 <= k < self.num_masks:
            raise ModelError(f"mask index must be in [0, {self.num_masks}), got {k}")
        if k != self.mask_index:
            for i, layer in enumerate(self.layers):
                layer.set_mask(getattr(self, f"mask_set_{i}")[k])
            self.active.fill_(k)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-1] != self.dim:
            raise DataError(f"x: expected shape (B, {self.dim}), got {tuple(x.shape)}")
        if self.context_dim and (context is None or context.shape[-1] != self.context_dim):
            got = None if context is None else tuple(context.shape)
            raise DataError(f"context: expected shape (B, {self.context_dim}), got {got}")
        if not self.context_dim and context is not None:
            raise DataError("context: this network was built with context_dim=0")
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)  # (B, H_i) or (B, D P)
            if i == 0 and self.context is not None:
                h = h + self.context(context)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h.reshape(*x.shape[:-1], self.dim, self.out_per_dim)  # (B, D, P)


class MADE(nn.Module):
    """A binary MADE density: :math:`p(x_i = 1 \\mid x_{<i}) = \\sigma(\\text{net}(x)_i)`, a uniform
    mixture over ``num_masks`` orderings / connectivities.

    Args:
        dim: the number of binary variables.
        hidden: hidden widths of the masked network.
        num_masks: :math:`K` mask sets; :math:`K > 1` needs ``seed``.
        order_agnostic / connectivity_agnostic: what the extra mask sets vary.
        seed: initialises the weights and draws the mask sets (int or generator).
        device: where the weights live.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (500,), num_masks: int = 1, *, order=None,
                 order_agnostic: bool = True, connectivity_agnostic: bool = True, seed=None,
                 device="cpu", name: str = "made"):
        super().__init__()
        self.net = MADENet(dim, hidden, 1, order, num_masks=num_masks, order_agnostic=order_agnostic,
                           connectivity_agnostic=connectivity_agnostic, seed=seed, device=device)
        self.dim, self.num_masks, self.name = self.net.dim, self.net.num_masks, name
        self.config = {"dim": self.dim, "hidden": list(self.net.hidden_sizes), "num_masks": self.num_masks,
                       "order_agnostic": order_agnostic, "connectivity_agnostic": connectivity_agnostic}

    def _check(self, x) -> torch.Tensor:
        dtype = self.net.layers[0].weight.dtype
        device = self.net.layers[0].weight.device
        return check_images(x, (self.dim,), binary=True, name="x").to(device=device, dtype=dtype)  # (B, D)

    def logits(self, x: torch.Tensor, k: int = 0) -> torch.Tensor:
        """:math:`\\mathrm{logit}\\, p_k(x_i = 1 \\mid x_{o<i})` for every i in one pass, (B, D)."""
        self.net.use_mask(k)
        return self.net(x)[..., 0]  # (B, D)

    def log_prob_mask(self, x, k: int = 0) -> torch.Tensor:
        """:math:`\\log p_k(x)` under mask set ``k`` alone, (B,)."""
        x = self._check(x)
        return -F.binary_cross_entropy_with_logits(self.logits(x, k), x, reduction="none").sum(-1)  # (B,)

    def log_prob(self, x) -> torch.Tensor:
        """Exact :math:`\\log p(x)` in nats, (B,): the log of the mixture over the mask sets."""
        x = self._check(x)
        per_mask = torch.stack([self.log_prob_mask(x, k) for k in range(self.num_masks)])  # (K, B)
        return torch.logsumexp(per_mask, 0) - math.log(self.num_masks)

    def loss(self, batch, generator: torch.Generator) -> torch.Tensor:
        """Training loss: :math:`-\\frac1B \\sum_b \\log p_k(x_b)` for one mask set ``k`` drawn from
        ``generator`` (order- and connectivity-agnostic training when :math:`K > 1`)."""
        x = batch["x"] if isinstance(batch, dict) else batch
        k = int(torch.randint(0, self.num_masks, (1,), generator=generator, device=generator.device)) \
            if self.num_masks > 1 else 0
        return -self.log_prob_mask(x, k).mean()

    # ------------------------------------------------------------------ the program
    def model(self, x=None, n: int | None = None, mask_index: int = 0):
        """The Pyro program of mask set ``mask_index``: one Bernoulli site ``x_i`` per variable, in
        the set's ordering; ``x`` (B, D) is observed through ``obs=``, or ``n`` vectors are drawn::

            #   +----------------------------------- data (B) --+
            #   |  x_{o1} -> x_{o2} -> ... -> x_{oD}              |   (each x_{ot} sees all before it)
            #   +------------------------------------------------+
        """
        pyro.module(self.name, self)
        if x is not None:
            x = self._check(x)
        batch = x.shape[0] if x is not None else _positive_int(n, "n", DataError)
        self.net.use_mask(mask_index)
        order = self.net.order.tolist()
        weight = self.net.layers[0].weight
        current = torch.zeros(batch, self.dim, dtype=weight.dtype, device=weight.device)  # (B, D)
        with pyro.plate("data", batch):
            for i in order:
                logit = self.net(current)[:, i, 0]  # (B,)
                value = pyro.sample(f"x_{i}", dist.Bernoulli(logits=logit), obs=None if x is None else x[:, i])
                current = current.clone()
                current[:, i] = value
        return current

    def sample(self, n: int, generator) -> torch.Tensor:
        """``n`` draws (n, D) of 0/1 by ancestral sampling from the mixture: a mask set per draw,
        then :math:`D` passes of the network, one per variable in that set's ordering."""
        n = _positive_int(n, "n", DataError)
        weight = self.net.layers[0].weight
        generator = as_generator(generator, weight.device)
        which = torch.randint(0, self.num_masks, (n,), generator=generator, device=weight.device)  # (n,)
        out = torch.zeros(n, self.dim, dtype=weight.dtype, device=weight.device)  # (n, D)
        free = torch.ones(self.dim, dtype=torch.bool, device=weight.device)  # (D,) every variable drawn
        return self._ancestral(which, out, free, generator)

    # ------------------------------------------------------------------ inpainting
    def observed_first(self, mask) -> torch.Tensor:
        """Which mask sets' orderings put every observed variable (``mask`` (D,), True = observed)
        before every unobserved one, (K,) bool: the sets whose conditional
        :math:`p_k(x_U \mid x_O)` is an ancestral walk (and whose :math:`p_k(x_O)` is one pass)."""
        m = torch.as_tensor(mask, device=self.net.orders.device)
        if m.dtype != torch.bool or m.shape != (self.dim,):
            raise DataError(f"mask: expected a boolean tensor of shape ({self.dim},), got {m.dtype} {tuple(m.shape)}")
        position = torch.argsort(self.net.orders, 1)  # (K, D): position[k, i] = t with o_k[t] = i
        last_observed = torch.where(m, position, -1).amax(1)  # (K,)
        first_free = torch.where(m, self.dim, position).amin(1)  # (K,)
        return last_observed < first_free

    def conditional_sample(self, x, mask, generator, *, mask_index: int | None = None,
                           max_enumerate: int = 12) -> torch.Tensor:
        """Fill the unobserved entries of ``x`` (B, D) by exact conditional sampling.

        ``mask`` (B, D) or (D,) is True where ``x`` is observed (the other entries of ``x`` are
        ignored and may be NaN). Per row, with :math:`O` its observed and :math:`U` its unobserved
        variables, the draw is from

        - ``mask_index=None``: the conditional of the model's density, the mixture
          :math:`p = \frac1K \sum_k p_k`:

          .. math::

              p(x_U \mid x_O) = \sum_k w_k(x_O)\, p_k(x_U \mid x_O), \qquad
              w_k(x_O) = \frac{p_k(x_O)}{\sum_j p_j(x_O)};

        - ``mask_index=k``: the conditional :math:`p_k(x_U \mid x_O)` of mask set ``k`` alone.

        A MADE's orderings are fixed per mask set (unlike NADE's, chosen at test time), so two
        exact routes exist:

        1. every set used puts :math:`O` before :math:`U` in its ordering (:meth:`observed_first`):
           :math:`\log p_k(x_O)` is the sum of the first :math:`|O|` conditionals of one pass, a set
           is drawn by :math:`w_k`, then :math:`|U|` ancestral passes in its ordering;
        2. otherwise, when :math:`|U| \le` ``max_enumerate``: all :math:`2^{|U|}` completions are
           scored by the (mixture) joint and one is drawn from their normalised probabilities.

        Else ModelError (name the row, what is observed and the sets that put it first).

        Example:
            >>> made = MADE(dim=6, hidden=(16,), num_masks=3, seed=0)
            >>> x = made.sample(4, generator=1)
            >>> mask = torch.tensor([True, False, True, False, False, True])
            >>> filled = made.conditional_sample(x, mask, generator=2)
            >>> bool((filled[:, mask] == x[:, mask]).all())
            True
        """
        weight = self.net.layers[0].weight
        generator = as_generator(generator, weight.device)
        if isinstance(max_enumerate, bool) or int(max_enumerate) != max_enumerate or max_enumerate < 0:
            raise ModelError(f"max_enumerate must be a non-negative integer, got {max_enumerate!r}")
        observed, m = check_evidence(x, mask, self.dim, device=weight.device, dtype=weight.dtype)  # (B, D)
        if mask_index is None:
            sets = torch.arange(self.num_masks, device=weight.device)
        elif isinstance(mask_index, bool) or int(mask_index) != mask_index or not 0 <= int(mask_index) < self.num_masks:
            raise ModelError(f"mask_index must be None (the mixture) or in [0, {self.num_masks}), got {mask_index!r}")
        else:
            sets = torch.tensor([int(mask_index)], device=weight.device)
        out = observed.clone()
        patterns, which = torch.unique(m, dim=0, return_inverse=True)  # (P, D), (B,)
        with torch.no_grad():
            for p, pattern in enumerate(patterns):
                rows = (which == p).nonzero().flatten()
                free = ~pattern  # (D,)
                if not free.any():
                    continue
                first = self.observed_first(pattern)  # (K,)
                if bool(first[sets].all()):
                    out[rows] = self._observed_first_draw(observed[rows], free, sets, generator)
                elif int(free.sum()) <= max_enumerate:
                    out[rows] = self._enumerated_draw(observed[rows], free, sets, generator)
                else:
                    raise ModelError(self._no_route(int(rows[0]), pattern, sets, first, max_enumerate))
        return out

    def _observed_first_draw(self, x, free, sets, generator) -> torch.Tensor:
        # Route 1: w_k from one pass per set (p_k(x_O): the observed conditionals come first), a set
        # per row drawn from w, then the ancestral walk over the free variables only.
        if sets.numel() == 1:
            which = sets.expand(x.shape[0])
        else:
            log_w = torch.stack([(-F.binary_cross_entropy_with_logits(self.logits(x, int(k)), x, reduction="none")
                                  * ~free).sum(-1) for k in sets])  # (S, n): log p_k(x_O)
            which = sets[torch.multinomial(torch.softmax(log_w, 0).T, 1, generator=generator)[:, 0]]  # (n,)
        return self._ancestral(which, x, free, generator)

    def _enumerated_draw(self, x, free, sets, generator, budget: int = 1 << 16) -> torch.Tensor:
        # Route 2: every completion of the free variables, scored by the (mixture) joint; the 1/K of
        # the mixture cancels in the normalisation.
        u = int(free.sum())
        codes = torch.arange(1 << u, device=x.device)
        table = ((codes[:, None] >> torch.arange(u, device=x.device)) & 1).to(x.dtype)  # (2^u, u)
        out = x.clone()
        chunk = max(1, budget >> u)
        for start in range(0, x.shape[0], chunk):
            part = x[start:start + chunk]  # (c, D)
            full = part[:, None, :].repeat(1, 1 << u, 1)  # (c, 2^u, D)
            full[:, :, free] = table
            flat = full.reshape(-1, self.dim)  # (c 2^u, D)
            joint = torch.logsumexp(torch.stack([self.log_prob_mask(flat, int(k)) for k in sets]), 0)
            pick = torch.multinomial(torch.softmax(joint.reshape(part.shape[0], 1 << u), 1), 1,
                                     generator=generator)[:, 0]  # (c,)
            out[start:start + chunk] = full[torch.arange(part.shape[0], device=x.device), pick]
        return out

    @torch.no_grad()
    def _ancestral(self, which, x, free, generator) -> torch.Tensor:
        """Rows of ``x`` (n, D) completed by ancestral sampling in the ordering of mask set
        ``which[row]``, drawing the ``free`` (D,) variables and keeping the others."""
        out = x.clone()
        for k in range(self.num_masks):
            rows = (which == k).nonzero().flatten()
            if rows.numel() == 0:
                continue
            self.net.use_mask(k)
            part = out[rows]  # (n_k, D)
            drawn = free.tolist()
            for i in self.net.order.tolist():
                if not drawn[i]:
                    continue
                p = torch.sigmoid(self.net(part)[:, i, 0])  # (n_k,)
                part[:, i] = (torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype) < p).to(part.dtype)
            out[rows] = part
        return out

    def _no_route(self, row: int, pattern, sets, first, max_enumerate: int) -> str:
        observed = pattern.nonzero().flatten().tolist()
        late = [int(k) for k in sets if not first[k]]
        fits = [k for k in range(self.num_masks) if first[k]]
        hint = (f"pass mask_index={fits[0]} to draw from that set's own conditional p_k(x_U | x_O) (mask sets "
                f"{fits} put them first), " if fits else "")
        return (f"mask of row {row} (observed variables {observed}): no exact conditional of "
                f"{'the mixture' if sets.numel() > 1 else f'mask set {int(sets[0])}'}: mask set(s) {late} order an "
                f"unobserved variable before an observed one, and {int((~pattern).sum())} unobserved variables are "
                f"more than max_enumerate={max_enumerate} to enumerate; {hint}or raise max_enumerate "
                f"(2^|U| completions), or train more mask sets, or use deep.NADE (any ordering at test time)")


def _degrees(order: torch.Tensor) -> torch.Tensor:
    """Input degrees: ``degrees[order[t]] = t + 1``."""
    degrees = torch.empty_like(order)
    degrees[order] = torch.arange(1, order.numel() + 1)
    return degrees


def _positive_int(value, name: str, error=ModelError) -> int:
    if value is None or isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)
