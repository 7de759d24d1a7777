"""Flows on images: uniform dequantisation, the logit transform with its Jacobian, bits per dimension.

A density cannot be fitted to discrete pixels directly (it would pile infinite density on the grey
levels). With :math:`L` grey levels :math:`k \\in \\{0, \\dots, L-1\\}` (the 8 x 8 digits: :math:`L = 17`)

1. **dequantise**: :math:`v = (k + u) / L`, :math:`u \\sim U[0, 1)^D`, so :math:`v \\in [0, 1)^D`;
   for any density :math:`p_v` on :math:`[0, 1)^D`, Jensen's inequality gives the bound on the
   discrete likelihood :math:`\\log P(k) \\ge \\mathbb E_u[\\log p_v(v)] - D \\log L`
   (Theis et al. 2016);
2. **logit**: a flow on :math:`\\mathbb R^D` models :math:`y = \\mathrm{logit}(\\alpha + (1 - 2\\alpha) v)`
   (RealNVP's :math:`\\alpha = 0.05` keeps :math:`y` away from :math:`\\pm\\infty`), and the change of
   variables adds its log-Jacobian,
   :math:`\\log p_v(v) = \\log p_y(y) + \\sum_i [\\log(1 - 2\\alpha) - \\log s_i - \\log(1 - s_i)]`,
   :math:`s = \\alpha + (1 - 2\\alpha) v`.

:class:`LogitTransform` is step 2 as a :class:`~deep.flows.base.FlowTransform` (real -> unit cube),
and :class:`LogitFlow` appends it to any flow, so its ``log_prob(v)`` is the density of the
dequantised pixels with the Jacobian included; :func:`bits_per_dim` then adds :math:`D \\log L` and
converts to bits: :math:`\\mathrm{bpd} = (-\\log p_v(v) + D \\log L) / (D \\log 2)`.

References:
    Dinh, Sohl-Dickstein and Bengio (2017). Density estimation using Real NVP. ICLR (section 4.1).
    Theis, van den Oord and Bethge (2016). A note on the evaluation of generative models. ICLR.

Example:
    >>> import torch
    >>> from deep.flows import RealNVP
    >>> from deep.flows.digits import LogitFlow, dequantize_levels
    >>> flow = LogitFlow(RealNVP(4, hidden=(8,), num_layers=2, seed=0))
    >>> v = dequantize_levels(torch.tensor([[0, 5, 16, 8]]), levels=17, generator=0)
    >>> flow.log_prob(v).shape
    torch.Size([1])
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from deep.flows.base import Flow, FlowSequence, FlowTransform
from inference.errors import DataError, ModelError
from inference.rng import as_generator

__all__ = ["LogitTransform", "LogitFlow", "dequantize_levels", "bits_per_dim", "make_image_flow", "fit_digits"]


class LogitTransform(FlowTransform):
    """:math:`v = (\\sigma(y) - \\alpha) / (1 - 2\\alpha)` (real -> :math:`(0, 1)`), inverse
    :math:`y = \\mathrm{logit}(\\alpha + (1 - 2\\alpha) v)` (see the module docstring)."""

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0.0 <= float(alpha) < 0.5:
            raise ModelError(f"alpha must be in [0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)
        self.log_range = math.log1p(-2.0 * self.alpha)

    def forward_and_log_det(self, y):
        v = (torch.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha)
        # log sigma'(y) = log sigma(y) + log sigma(-y)
        ladj = (F.logsigmoid(y) + F.logsigmoid(-y) - self.log_range).sum(-1)
        return v, ladj

    def inverse_and_log_det(self, v):
        s = self.alpha + (1.0 - 2.0 * self.alpha) * v
        y = torch.log(s) - torch.log1p(-s)
        ladj = (self.log_range - torch.log(s) - torch.log1p(-s)).sum(-1)
        return y, ladj


class LogitFlow(Flow):
    """A flow on the unit cube: ``flow`` (on :math:`\\mathbb R^D`) followed by :class:`LogitTransform`."""

    def __init__(self, flow: Flow, alpha: float = 0.05):
        super().__init__()
        self.inner, self.dim = flow, flow.dim
        self.config = {"flow": "logit", "alpha": float(alpha), "inner": getattr(flow, "config", {})}
        self.transform = FlowSequence([flow.transform, LogitTransform(alpha)])

    def check(self, x, name: str = "x") -> torch.Tensor:
        x = self.inner.check(x, name)  # the inner flow's shape rules (images may come as (B, C, H, W))
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(f"{name}: dequantised pixels must lie in [0, 1], got min {float(x.min()):g} "
                            f"and max {float(x.max()):g} (dequantise with dequantize_levels)")
        return x


def dequantize_levels(levels_data, levels: int, generator) -> torch.Tensor:
    """:math:`v = (k + u) / L` for integer grey levels :math:`k \\in [0, L-1]`, :math:`u \\sim U[0,1)`
    drawn from ``generator``; float32 of the input's shape."""
    k = torch.as_tensor(levels_data)
    if k.is_floating_point() and not bool((k == k.round()).all()):
        raise DataError("levels_data must hold integer grey levels (multiply [0, 1] images by L - 1 first)")
    if k.numel() and (int(k.min()) < 0 or int(k.max()) > levels - 1):
        raise DataError(f"levels_data must lie in [0, {levels - 1}], got min {int(k.min())} and max {int(k.max())}")
    u = torch.rand(k.shape, generator=as_generator(generator), dtype=torch.float64)
    return ((k.double() + u) / levels).to(torch.float32)


def bits_per_dim(log_prob_v, num_dims: int, levels: int) -> float:
    """:math:`(-\\overline{\\log p_v(v)} + D \\log L) / (D \\log 2)`, the bound on the discrete
    data's bits per dimension (by :func:`inference.likelihood.bits_per_dim`)."""
    from inference.likelihood import bits_per_dim as _bpd

    ll = log_prob_v.detach().cpu().double().numpy() if isinstance(log_prob_v, torch.Tensor) else log_prob_v
    return _bpd(ll, num_dims, levels=levels)


def make_image_flow(kind: str, shape=(1, 8, 8), *, hidden: int = 64, num_layers: int = 6, levels: int = 2,
                    glow_steps: int = 4, alpha: float = 0.05, seed) -> LogitFlow:
    """``"glow"`` (Glow on ``shape``: ``levels`` levels of ``glow_steps`` steps), or ``"realnvp"``,
    ``"maf"`` or ``"nsf"`` (:func:`deep.flows.fit.make_flow` on the flattened pixels, ``num_layers``
    layers whose conditioners have two hidden layers of ``hidden`` units), each followed by the logit
    transform."""
    import math as _math

    from deep.flows.fit import make_flow
    from deep.flows.glow import Glow
    from inference.errors import UnknownNameError

    if kind == "glow":
        return LogitFlow(Glow(shape, hidden, levels, glow_steps, seed=seed), alpha)
    if kind in ("realnvp", "maf", "nsf"):
        return LogitFlow(make_flow(kind, _math.prod(shape), hidden=(hidden, hidden), num_layers=num_layers,
                                   seed=seed), alpha)
    raise UnknownNameError(f"unknown image flow {kind!r}; choose 'glow', 'realnvp', 'maf' or 'nsf'")


def fit_digits(kind: str, images, *, seed: int, steps: int, grey_levels: int = 17, batch_size: int = 128,
               lr: float = 1e-3, hidden: int = 64, progress: bool = False, **options):
    """Train an image flow on grey-level digits (N, 8, 8) in [0, 1] (``grey_levels`` values :math:`L`), an 80/20
    split, with a fresh dequantisation of every minibatch; score the held-out images.

    Returns ``Result(params=flow, history=loss per step, diagnostics={"scores": {"bits/dim",
    "test NLL (nats)", "seconds"}})``: bits per dimension and the NLL bound of the *discrete* test
    images, :math:`-\\log P(k) \\le -\\log p_v(v) + D \\log L` (one dequantisation draw per image).
    """
    import time

    import numpy as np

    from deep.data import split
    from inference.result import Result
    from inference.train import LossStep, fit

    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise DataError(f"images: expected shape (N, H, W), got {images.shape}")
    parts = split(images, seed=seed)
    shape = (1, *images.shape[1:])
    d = int(np.prod(shape))
    train_k = torch.as_tensor(np.round(parts["train"] * (grey_levels - 1)), dtype=torch.float32).reshape(-1, d)
    test_k = torch.as_tensor(np.round(parts["test"] * (grey_levels - 1)), dtype=torch.float32).reshape(-1, d)
    generator = as_generator(seed)
    flow = make_image_flow(kind, shape, hidden=hidden, seed=generator, **options)

    def dequantise(batch, gen):  # v = (k + u) / L, a fresh u for every minibatch
        u = torch.rand(batch["x"].shape, generator=gen, device=batch["x"].device)
        return {"x": (batch["x"] + u) / grey_levels}

    start = time.perf_counter()
    run = fit(LossStep(flow, lambda m, b, g: m.loss(b), lr=lr, name="nll"), {"x": train_k}, seed=seed, steps=steps,
              batch_size=batch_size, augment=dequantise, progress=progress)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        v = dequantize_levels(test_k.long(), grey_levels, generator)  # (N_test, D)
        lp = flow.log_prob(v).double()
    nll = float(-lp.mean()) + d * math.log(grey_levels)
    scores = {"bits/dim": bits_per_dim(lp, d, grey_levels), "test NLL (nats)": nll, "seconds": seconds}
    return Result(method=kind, params=flow, history=run.history, seconds=seconds,
                  diagnostics={"scores": scores, "steps": steps, "n_train": len(train_k), "n_test": len(test_k)})
