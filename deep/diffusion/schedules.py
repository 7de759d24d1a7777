"""Noise schedules: what the model is, apart from how it is sampled.

One convention holds in the whole package (the flow-matching one): time :math:`t \\in [0, 1]` runs
from **noise** (:math:`t = 0`) to **data** (:math:`t = 1`), and a continuous schedule gives the
coefficients of the affine path

.. math::
    x_t = \\alpha_t\\, x_1 + \\sigma_t\\, x_0, \\qquad x_1 \\sim p_{\\text{data}},\\; x_0 \\sim N(0, I),

as a :class:`SchedulerOutput` ``(alpha_t, sigma_t, d_alpha_t, d_sigma_t)`` (values and
:math:`d/dt`). The score-SDE papers run time the other way: their :math:`s = 1 - t`.

=============  ====================================================  ============================
scheduler      :math:`(\\alpha_t, \\sigma_t)`                          Song et al.'s SDE (in s)
=============  ====================================================  ============================
CondOT         :math:`(t, 1 - t)`                                    (rectified flow, no SDE)
VP             :math:`(\\sqrt{\\bar a_s}, \\sqrt{1 - \\bar a_s})`         :math:`dx = -\\frac12\\beta_s x\\,ds + \\sqrt{\\beta_s}\\,dW`
sub-VP         :math:`(\\sqrt{\\bar a_s}, 1 - \\bar a_s)`                :math:`dx = -\\frac12\\beta_s x\\,ds + \\sqrt{\\beta_s(1 - \\bar a_s^2)}\\,dW`
VE             :math:`(1, \\sigma_{\\min}(\\sigma_{\\max}/\\sigma_{\\min})^s)`  :math:`dx = \\sqrt{d\\sigma_s^2/ds}\\,dW`
=============  ====================================================  ============================

with :math:`\\beta_s = \\beta_{\\min} + s(\\beta_{\\max} - \\beta_{\\min})` and
:math:`\\bar a_s = \\exp(-\\int_0^s \\beta) = \\exp(-\\beta_{\\min}s - \\frac12(\\beta_{\\max}-\\beta_{\\min})s^2)`.
Every affine schedule defines such an SDE (:func:`sde_coefficients`): drift
:math:`f_s = d\\log\\alpha/ds`, diffusion :math:`g_s^2 = d\\sigma^2/ds - 2 f_s \\sigma^2`.

Discrete DDPM schedules are vectors :math:`\\beta_1, \\dots, \\beta_T` in (0, 1)
(:class:`DiscreteSchedule`): Ho et al.'s linear one, Nichol and Dhariwal's cosine one, and
:func:`vp_betas`, the VP SDE read at :math:`s_i = i/T` (so that one network serves DDPM and the
VP SDE: DDPM step :math:`i` is time :math:`t = 1 - i/T`).

References:
    Ho, Jain and Abbeel (2020). Denoising diffusion probabilistic models. NeurIPS.
    Nichol and Dhariwal (2021). Improved denoising diffusion probabilistic models. ICML.
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon and Poole (2021). Score-based generative modeling
        through stochastic differential equations. ICLR.
    Lipman, Chen, Ben-Hamu, Nickel and Le (2023). Flow matching for generative modeling. ICLR.

Example:
    >>> import torch
    >>> out = VPScheduler()(torch.tensor([0.5]))
    >>> bool(torch.allclose(out.alpha_t**2 + out.sigma_t**2, torch.ones(1)))
    True
    >>> DiscreteSchedule(linear_betas(1000)).alphas_cumprod.shape
    torch.Size([1000])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from inference.errors import DataError

__all__ = [
    "SchedulerOutput",
    "Scheduler",
    "CondOTScheduler",
    "VPScheduler",
    "SubVPScheduler",
    "VEScheduler",
    "check_time",
    "sde_coefficients",
    "linear_betas",
    "cosine_betas",
    "vp_betas",
    "DiscreteSchedule",
]


class SchedulerOutput(NamedTuple):
    """:math:`\\alpha_t` (data coefficient), :math:`\\sigma_t` (noise coefficient) and their time
    derivatives :math:`\\dot\\alpha_t, \\dot\\sigma_t`, each shaped like ``t``."""

    alpha_t: torch.Tensor
    sigma_t: torch.Tensor
    d_alpha_t: torch.Tensor
    d_sigma_t: torch.Tensor


def check_time(t, name: str = "t") -> torch.Tensor:
    """``t`` as a tensor, or a :class:`DataError` when a value leaves [0, 1] or is not finite."""
    t = t if isinstance(t, torch.Tensor) else torch.as_tensor(t, dtype=torch.float64)  # Python floats are doubles
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        bad = t[~(torch.isfinite(t) & (t >= 0) & (t <= 1))].flatten()[:3].tolist()
        raise DataError(f"{name} must lie in [0, 1] (0 = noise, 1 = data), got values {bad}")
    return t


class Scheduler:
    """A continuous schedule: ``scheduler(t) -> SchedulerOutput``. ``prior_std`` is the standard
    deviation of the noise end :math:`x_{t=0} \\approx \\sigma_0 x_0`; ``t_max`` is the last time a
    sampler may reach (below 1 where :math:`\\sigma_t \\to 0` makes the score singular)."""

    name: str = ""
    t_max: float = 1.0

    def __call__(self, t) -> SchedulerOutput:
        return self._coefficients(check_time(t))

    def _coefficients(self, t: torch.Tensor) -> SchedulerOutput:
        raise NotImplementedError

    @property
    def prior_std(self) -> float:
        return float(self._coefficients(torch.zeros((), dtype=torch.float64)).sigma_t)

    def config(self) -> dict:
        return {"name": self.name}


class CondOTScheduler(Scheduler):
    """The conditional optimal-transport (rectified-flow) schedule :math:`\\alpha_t = t`,
    :math:`\\sigma_t = 1 - t`: straight lines from noise to data."""

    name = "condot"

    def _coefficients(self, t):
        return SchedulerOutput(t, 1 - t, torch.ones_like(t), -torch.ones_like(t))


def _check_positive(**values):
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise DataError(f"{name} must be positive and finite, got {value}")


class VPScheduler(Scheduler):
    """Variance preserving (DDPM in continuous time): :math:`\\alpha = \\sqrt{\\bar a_s}`,
    :math:`\\sigma = \\sqrt{1 - \\bar a_s}`, :math:`s = 1 - t` (module docstring)."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_max: float = 1 - 1e-3):
        _check_positive(beta_min=beta_min, beta_max=beta_max)
        if beta_max < beta_min:
            raise DataError(f"beta_max ({beta_max}) must be at least beta_min ({beta_min})")
        self.beta_min, self.beta_max, self.t_max = float(beta_min), float(beta_max), float(t_max)

    def beta(self, s):
        return self.beta_min + s * (self.beta_max - self.beta_min)

    def log_abar(self, s):
        """:math:`\\log \\bar a_s = -\\int_0^s \\beta`."""
        return -(self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2)

    def _coefficients(self, t):
        s = 1 - t
        abar = torch.exp(self.log_abar(s))
        alpha = abar.sqrt()
        sigma = (-torch.expm1(self.log_abar(s))).sqrt()  # sqrt(1 - abar), accurate near s = 0
        beta = self.beta(s)
        # d/dt = -d/ds; d alpha/ds = -beta alpha / 2, d sigma/ds = beta abar / (2 sigma)
        return SchedulerOutput(alpha, sigma, 0.5 * beta * alpha, -0.5 * beta * abar / sigma)

    def config(self):
        return {"name": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max, "t_max": self.t_max}


class SubVPScheduler(VPScheduler):
    """Song et al.'s sub-VP: the VP mean with the smaller variance :math:`(1 - \\bar a_s)^2`."""

    name = "subvp"

    def _coefficients(self, t):
        s = 1 - t
        abar = torch.exp(self.log_abar(s))
        beta = self.beta(s)
        # d sigma/ds = beta abar
        return SchedulerOutput(abar.sqrt(), -torch.expm1(self.log_abar(s)), 0.5 * beta * abar.sqrt(), -beta * abar)


class VEScheduler(Scheduler):
    """Variance exploding (NCSN in continuous time): :math:`\\alpha = 1`,
    :math:`\\sigma = \\sigma_{\\min} (\\sigma_{\\max} / \\sigma_{\\min})^{s}`. The noise end is
    :math:`N(0, \\sigma_{\\max}^2 I)` up to the data's own spread, so :math:`\\sigma_{\\max}`
    should exceed the largest distance between data points (Song and Ermon 2020)."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 10.0, t_max: float = 1.0):
        _check_positive(sigma_min=sigma_min, sigma_max=sigma_max)
        if sigma_max <= sigma_min:
            raise DataError(f"sigma_max ({sigma_max}) must exceed sigma_min ({sigma_min})")
        self.sigma_min, self.sigma_max, self.t_max = float(sigma_min), float(sigma_max), float(t_max)

    def _coefficients(self, t):
        log_ratio = math.log(self.sigma_max / self.sigma_min)
        sigma = self.sigma_min * torch.exp((1 - t) * log_ratio)
        return SchedulerOutput(torch.ones_like(t), sigma, torch.zeros_like(t), -sigma * log_ratio)

    def config(self):
        return {"name": self.name, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "t_max": self.t_max}


def sde_coefficients(scheduler: Scheduler, t) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward SDE :math:`dx = f_s x\\,ds + g_s\\,dW` (noising, :math:`s = 1 - t`) whose marginals
    given :math:`x_1` are the schedule's: :math:`f_s = d\\log\\alpha/ds = -\\dot\\alpha_t/\\alpha_t`,
    :math:`g_s^2 = d\\sigma^2/ds - 2 f_s\\sigma^2 = 2\\sigma_t(\\sigma_t\\dot\\alpha_t/\\alpha_t - \\dot\\sigma_t)`.
    Returns ``(f, g2)`` shaped like ``t``."""
    out = scheduler(t)
    ratio = out.d_alpha_t / out.alpha_t
    return -ratio, 2 * out.sigma_t * (out.sigma_t * ratio - out.d_sigma_t)


# --------------------------------------------------------------------------- discrete (DDPM)
def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise DataError(f"the number of diffusion steps T must be a positive integer, got {T!r}")
    return T


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """Ho et al.'s linear schedule :math:`\\beta_i` from ``beta_1`` to ``beta_T`` (float64, (T,))."""
    T = _check_T(T)
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64) if T > 1 else torch.tensor([beta_1], dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol and Dhariwal's cosine schedule: :math:`\\bar a_i = f(i)/f(0)`,
    :math:`f(i) = \\cos^2(\\frac{i/T + s}{1 + s}\\frac\\pi2)`, :math:`\\beta_i = \\min(1 - \\bar a_i / \\bar a_{i-1}, 0.999)`."""
    T = _check_T(T)
    i = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((i / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return torch.clamp(1 - abar[1:] / abar[:-1], max=max_beta)


def vp_betas(T: int, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """The VP SDE read on the grid :math:`s_i = i/T`: :math:`\\bar a_i = \\bar a(s_i)` exactly, so
    :math:`\\beta_i = 1 - \\bar a(s_i)/\\bar a(s_{i-1}) \\approx \\beta(s_i)/T` (Ho's linear schedule
    for T = 1000 and the defaults)."""
    T = _check_T(T)
    vp = VPScheduler(beta_min, beta_max)
    s = torch.arange(T + 1, dtype=torch.float64) / T
    log_abar = vp.log_abar(s)
    return -torch.expm1(log_abar[1:] - log_abar[:-1])


class DiscreteSchedule:
    """A DDPM schedule :math:`\\beta_1..\\beta_T`, each in (0, 1), with what the sampler and the bound use
    (all float64, index ``i - 1`` for step ``i``):

    - ``alphas`` :math:`a_i = 1 - \\beta_i`, ``alphas_cumprod`` :math:`\\bar a_i = \\prod_{j \\le i} a_j`;
    - ``posterior_variance`` :math:`\\tilde\\beta_i = \\beta_i (1 - \\bar a_{i-1}) / (1 - \\bar a_i)`
      (:math:`\\bar a_0 = 1`, so :math:`\\tilde\\beta_1 = 0`), the variance of
      :math:`q(x_{i-1} \\mid x_i, x_{\\text{data}})`, whose mean is
      ``coef_data`` :math:`\\cdot x_{\\text{data}} +` ``coef_xt`` :math:`\\cdot x_i` with
      :math:`\\frac{\\sqrt{\\bar a_{i-1}}\\beta_i}{1 - \\bar a_i}` and :math:`\\frac{\\sqrt{a_i}(1 - \\bar a_{i-1})}{1 - \\bar a_i}`;
    - ``times`` :math:`t_i = 1 - i/T`, the time the network is given at step :math:`i`.
    """

    def __init__(self, betas):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() == 0:
            raise DataError(f"betas must be a non-empty vector, got shape {tuple(betas.shape)}")
        bad = ~((betas > 0) & (betas < 1))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise DataError(f"a schedule must keep every beta in (0, 1): beta_{i + 1} = {float(betas[i])}")
        self.betas = betas
        self.T = len(betas)
        self.alphas = 1 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.alphas_cumprod_prev = prev
        self.posterior_variance = betas * (1 - prev) / (1 - self.alphas_cumprod)
        self.coef_data = prev.sqrt() * betas / (1 - self.alphas_cumprod)
        self.coef_xt = self.alphas.sqrt() * (1 - prev) / (1 - self.alphas_cumprod)
        self.times = 1 - torch.arange(1, self.T + 1, dtype=torch.float64) / self.T

    def config(self) -> dict:
        return {"T": self.T, "betas_sum": float(self.betas.sum()), "betas_first": float(self.betas[0]),
                "betas_last": float(self.betas[-1])}
