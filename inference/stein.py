"""Kernel Stein discrepancy: how far are samples from a density known only through its score?

For a density :math:`p` with score :math:`s_p = \\nabla \\log p` (no normalising constant needed)
and a kernel :math:`k`, the Stein kernel

.. math::
    u_p(x, y) = s_p(x)^\\top s_p(y)\\, k(x, y) + s_p(x)^\\top \\nabla_y k(x, y)
      + \\nabla_x k(x, y)^\\top s_p(y) + \\operatorname{tr} \\nabla_x \\nabla_y^\\top k(x, y)

has :math:`\\mathbb E_{x \\sim p}[u_p(x, y)] = 0` for every :math:`y` (Stein's identity), and the
kernel Stein discrepancy :math:`\\mathrm{KSD}^2(q, p) = \\mathbb E_{x, y \\sim q}[u_p(x, y)]` is zero
exactly when :math:`q = p`. From samples :math:`x_1, \\dots, x_n` of any sampler it is estimated
without bias by the U-statistic

.. math::
    \\widehat{\\mathrm{KSD}^2} = \\frac{1}{n(n-1)} \\sum_{i \\ne j} u_p(x_i, x_j).

Kernel: the inverse multiquadric (IMQ) :math:`k(x, y) = (c^2 + \\|x - y\\|^2)^\\beta`,
:math:`\\beta \\in (-1, 0)`, default :math:`c = 1, \\beta = -1/2`: with it the KSD detects
non-convergence (Gorham and Mackey 2017), where Gaussian kernels can miss escaping mass. With
:math:`r = x - y`, :math:`q = c^2 + \\|r\\|^2` and dimension :math:`d`:
:math:`\\nabla_x k = 2\\beta q^{\\beta - 1} r = -\\nabla_y k` and
:math:`\\operatorname{tr}\\nabla_x\\nabla_y^\\top k = -2\\beta d\\, q^{\\beta-1} - 4\\beta(\\beta-1) q^{\\beta-2} \\|r\\|^2`.

Standard error. The U-statistic's variance is (Hoeffding)
:math:`\\frac{4(n-2)}{n(n-1)} \\zeta_1 + \\frac{2}{n(n-1)} \\zeta_2` with
:math:`\\zeta_1 = \\operatorname{Var}_x \\mathbb E_y[u_p(x, y)]` and
:math:`\\zeta_2 = \\operatorname{Var}\\, u_p(x, y)`; both are estimated from the same matrix
(:math:`\\zeta_1` by the variance of the row means, which adds about :math:`\\zeta_2 / n` and so
errs on the large side). When :math:`q = p` the statistic is degenerate (:math:`\\zeta_1 = 0`) and
the stated error is then conservative by a factor of about :math:`\\sqrt 3`.

References:
    Liu, Lee and Jordan (2016). A kernelized Stein discrepancy for goodness-of-fit tests. ICML.
    Chwialkowski, Strathmann and Gretton (2016). A kernel test of goodness of fit. ICML.
    Gorham and Mackey (2017). Measuring sample quality with kernels. ICML.
    Hoeffding (1948). A class of statistics with asymptotically normal distribution. Ann. Math. Stat.

Example:
    >>> import torch
    >>> x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> out = ksd(x, lambda x: -x)                  # samples of N(0, I) against N(0, I)'s score
    >>> abs(out.ksd2) < 4 * out.standard_error
    True
    >>> ksd(x + 1.0, lambda x: -x).ksd2 > 0.1      # shifted samples are far
    True
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch

from inference.errors import DataError

__all__ = ["KSDResult", "imq_kernel", "stein_kernel_matrix", "ksd"]


class KSDResult(NamedTuple):
    """ksd2: the U-statistic :math:`\\widehat{\\mathrm{KSD}^2}` (may be slightly negative);
    standard_error: its estimated standard deviation; n: the number of samples."""

    ksd2: float
    standard_error: float
    n: int


def _as_points(x, name: str) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    t = t.to(torch.float64)
    if t.dim() != 2:
        raise DataError(f"{name} must have shape (n, d), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        row = int((~torch.isfinite(t)).any(1).nonzero()[0])
        raise DataError(f"{name} has a NaN or infinite value in row {row}")
    return t


def _check_kernel(c: float, beta: float) -> None:
    if not (math.isfinite(c) and c > 0):
        raise DataError(f"c must be positive, got {c}")
    if not -1 < beta < 0:
        raise DataError(f"beta must lie in (-1, 0), got {beta}")


def imq_kernel(x, y, c: float = 1.0, beta: float = -0.5) -> torch.Tensor:
    """The IMQ kernel matrix :math:`(c^2 + \\|x_i - y_j\\|^2)^\\beta`, (n, m), float64."""
    _check_kernel(c, beta)
    x, y = _as_points(x, "x"), _as_points(y, "y")
    return (c * c + torch.cdist(x, y) ** 2) ** beta  # (n, m)


def stein_kernel_matrix(x, scores, c: float = 1.0, beta: float = -0.5) -> torch.Tensor:
    """:math:`u_p(x_i, x_j)` for all pairs, (n, n), from the points ``x`` (n, d) and their scores (n, d)."""
    _check_kernel(c, beta)
    x, s = _as_points(x, "samples"), _as_points(scores, "scores")
    if s.shape != x.shape:
        raise DataError(f"scores must have the samples' shape {tuple(x.shape)}, got {tuple(s.shape)}")
    d = x.shape[1]
    sq = (x * x).sum(1)  # (n,)
    r2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)  # (n, n) ||x_i - x_j||^2
    q = c * c + r2  # (n, n)
    ss = s @ s.T  # (n, n) s_i . s_j
    sx = s @ x.T  # (n, n) s_i . x_j
    s_dot_r_i = sx.diagonal()[:, None] - sx  # (n, n) s_i . (x_i - x_j)
    s_dot_r_j = sx.T - sx.diagonal()[None, :]  # (n, n) s_j . (x_i - x_j)
    qb1 = q ** (beta - 1)
    return (ss * q**beta  # s_i . s_j k
            - 2 * beta * qb1 * s_dot_r_i  # s_i . grad_y k
            + 2 * beta * qb1 * s_dot_r_j  # grad_x k . s_j
            - 2 * beta * d * qb1 - 4 * beta * (beta - 1) * q ** (beta - 2) * r2)  # trace term


def ksd(samples, score: Callable | torch.Tensor | np.ndarray, *, c: float = 1.0, beta: float = -0.5) -> KSDResult:
    """The kernel Stein discrepancy of ``samples`` (n, d) against the density whose score is ``score``.

    ``score`` is a function ``x -> grad log p(x)`` on a (n, d) float64 tensor, or the scores of the
    samples already computed (n, d). Returns the U-statistic with its standard error (module docstring).
    """
    x = _as_points(samples, "samples")
    n = x.shape[0]
    if n < 3:
        raise DataError(f"samples must hold at least 3 points for a U-statistic and its error, got {n}")
    if callable(score):
        with torch.no_grad():
            s = score(x)
    else:
        s = score
    u = stein_kernel_matrix(x, s, c, beta)  # (n, n)
    off = u - torch.diag(u.diagonal())
    ksd2 = float(off.sum()) / (n * (n - 1))
    row_means = off.sum(1) / (n - 1)  # (n,)
    zeta1 = float(row_means.var())
    zeta2 = max(float((off**2).sum()) / (n * (n - 1)) - ksd2**2, 0.0)
    var = 4 * (n - 2) / (n * (n - 1)) * zeta1 + 2 / (n * (n - 1)) * zeta2
    return KSDResult(ksd2, math.sqrt(var), n)
