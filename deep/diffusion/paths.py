"""Probability paths: how noise becomes data, and the conversions between what a network predicts.

An affine path (the flow-matching literature's :class:`AffineProbPath`) joins a noise sample
:math:`x_0 \\sim N(0, I)` (or any source) and a data sample :math:`x_1` by

.. math::
    x_t = \\alpha_t x_1 + \\sigma_t x_0, \\qquad \\dot x_t = \\dot\\alpha_t x_1 + \\dot\\sigma_t x_0,

with :math:`(\\alpha_t, \\sigma_t)` from a :mod:`~deep.diffusion.schedules` scheduler.
:meth:`AffineProbPath.sample` returns a :class:`PathSample`; the conditional velocity
:math:`\\dot x_t` is the flow-matching regression target.

A network may predict any of four quantities at :math:`(x, t)`; for Gaussian noise they are
affine functions of one another (Tweedie: :math:`\\nabla\\log p_t(x) = -\\hat\\epsilon / \\sigma_t`):

.. math::
    \\hat\\epsilon = E[x_0 \\mid x_t = x],\\quad \\hat x_1 = E[x_1 \\mid x_t = x] = \\frac{x - \\sigma_t\\hat\\epsilon}{\\alpha_t},\\quad
    u_t(x) = \\dot\\alpha_t \\hat x_1 + \\dot\\sigma_t \\hat\\epsilon
           = \\frac{\\dot\\alpha_t}{\\alpha_t} x + \\Big(\\dot\\sigma_t - \\sigma_t\\frac{\\dot\\alpha_t}{\\alpha_t}\\Big)\\hat\\epsilon.

The marginal velocity :math:`u_t` is the probability-flow ODE's drift (in this package's time,
noise at 0, data at 1), so a score model and a flow-matching model share one solver.

References:
    Lipman, Chen, Ben-Hamu, Nickel and Le (2023). Flow matching for generative modeling. ICLR.
    Lipman, Havasi, Holderrieth, Shaul, Le, Karrer, Chen, Lopez-Paz, Ben-Hamu and Gat (2024).
        Flow matching guide and code. arXiv:2412.06264.
    Efron (2011). Tweedie's formula and selection bias. JASA.

Example:
    >>> import torch
    >>> from deep.diffusion.schedules import CondOTScheduler
    >>> path = AffineProbPath(CondOTScheduler())
    >>> x0, x1 = torch.zeros(4, 2), torch.ones(4, 2)
    >>> s = path.sample(x0, x1, torch.full((4,), 0.25))
    >>> s.x_t[0].tolist(), s.dx_t[0].tolist()
    ([0.25, 0.25], [1.0, 1.0])
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from deep.diffusion.schedules import CondOTScheduler, Scheduler, check_time
from inference.errors import DataError

__all__ = ["PathSample", "AffineProbPath", "CondOTProbPath", "expand_time", "check_pair"]


class PathSample(NamedTuple):
    """One draw from a path: the endpoints ``x_0`` (noise / source) and ``x_1`` (data), the time ``t``
    (B,), the point ``x_t`` and the conditional velocity ``dx_t`` :math:`= \\dot x_t` (each (B, D))."""

    x_0: torch.Tensor
    x_1: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor
    dx_t: torch.Tensor


def expand_time(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` (scalar or (B,)) checked to lie in [0, 1] and shaped (B, 1, ...) against ``x`` (B, ...)."""
    t = check_time(t).to(dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise DataError(f"t must be a scalar or have shape ({x.shape[0]},) to match x {tuple(x.shape)}, "
                        f"got {tuple(t.shape)}")
    return t.reshape((-1,) + (1,) * (x.ndim - 1))


def check_pair(x_0, x_1):
    if x_0.shape != x_1.shape:
        raise DataError(f"x_0 and x_1 must have the same shape, got {tuple(x_0.shape)} and {tuple(x_1.shape)}")
    if x_0.ndim < 2:
        raise DataError(f"x_0 and x_1 must be batches shaped (B, D...), got {tuple(x_0.shape)}")


class AffineProbPath:
    """The path :math:`x_t = \\alpha_t x_1 + \\sigma_t x_0` of a scheduler, with the conversions
    between noise, data, velocity and score predictions (module docstring). ``t`` is a scalar or
    (B,), ``x`` (B, D...)."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    def coefficients(self, t, x):
        return self.scheduler(expand_time(t, x))

    def sample(self, x_0: torch.Tensor, x_1: torch.Tensor, t) -> PathSample:
        check_pair(x_0, x_1)
        tb = expand_time(t, x_1)
        a, s, da, ds = self.scheduler(tb)
        return PathSample(x_0, x_1, tb.reshape(-1), a * x_1 + s * x_0, da * x_1 + ds * x_0)  # (B, D)

    # ------------------------------------------------------------------ conversions
    def epsilon_to_velocity(self, eps, x, t):
        """:math:`u = (\\dot\\alpha x + (\\alpha\\dot\\sigma - \\sigma\\dot\\alpha)\\hat\\epsilon)/\\alpha`."""
        a, s, da, ds = self.coefficients(t, x)
        return (da * x + (a * ds - s * da) * eps) / a

    def velocity_to_epsilon(self, u, x, t):
        """:math:`\\hat\\epsilon = (\\alpha u - \\dot\\alpha x)/(\\alpha\\dot\\sigma - \\sigma\\dot\\alpha)` (finite at
        :math:`\\alpha = 0` for the CondOT path, whose denominator is -1)."""
        a, s, da, ds = self.coefficients(t, x)
        return (a * u - da * x) / (a * ds - s * da)

    def epsilon_to_score(self, eps, x, t):
        """:math:`\\nabla \\log p_t(x) = -\\hat\\epsilon / \\sigma_t`."""
        return -eps / self.coefficients(t, x).sigma_t

    def score_to_epsilon(self, score, x, t):
        return -score * self.coefficients(t, x).sigma_t

    def score_to_velocity(self, score, x, t):
        return self.epsilon_to_velocity(self.score_to_epsilon(score, x, t), x, t)

    def velocity_to_score(self, u, x, t):
        return self.epsilon_to_score(self.velocity_to_epsilon(u, x, t), x, t)

    def epsilon_to_x1(self, eps, x, t):
        """The denoiser :math:`\\hat x_1 = (x - \\sigma_t\\hat\\epsilon)/\\alpha_t`."""
        a, s, _, _ = self.coefficients(t, x)
        return (x - s * eps) / a

    def x1_to_epsilon(self, x1, x, t):
        a, s, _, _ = self.coefficients(t, x)
        return (x - a * x1) / s

    def x1_to_velocity(self, x1, x, t):
        """:math:`u = \\dot\\alpha\\hat x_1 + \\dot\\sigma (x - \\alpha\\hat x_1)/\\sigma`."""
        a, s, da, ds = self.coefficients(t, x)
        return da * x1 + ds * (x - a * x1) / s


class CondOTProbPath(AffineProbPath):
    """The conditional optimal-transport path :math:`x_t = t x_1 + (1 - t) x_0`, :math:`\\dot x_t = x_1 - x_0`."""

    def __init__(self):
        super().__init__(CondOTScheduler())
