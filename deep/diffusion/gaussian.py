"""Closed forms for Gaussian data: the optimal denoiser, score and velocity of any affine path.

For data :math:`x_1 \\sim N(\\mu, \\Sigma)` and noise :math:`x_0 \\sim N(0, I)`, the point
:math:`x_t = \\alpha_t x_1 + \\sigma_t x_0` is Gaussian, :math:`p_t = N(m_t, C_t)` with
:math:`m_t = \\alpha_t\\mu`, :math:`C_t = \\alpha_t^2\\Sigma + \\sigma_t^2 I`, and the minimisers of
the denoising, score-matching and flow-matching losses are its conditional expectations:

.. math::
    \\nabla\\log p_t(x) = -C_t^{-1}(x - m_t), \\quad
    \\hat\\epsilon(x, t) = \\sigma_t C_t^{-1}(x - m_t), \\quad
    \\hat x_1(x, t) = \\mu + \\alpha_t\\Sigma C_t^{-1}(x - m_t), \\quad
    u_t(x) = \\dot\\alpha_t\\hat x_1 + \\dot\\sigma_t\\hat\\epsilon.

All are affine in :math:`x`, so the probability-flow ODE's log-likelihood has a closed form
(:math:`\\log N(x; \\mu, \\Sigma)` when the noise end is exactly :math:`N(0, I)`): the oracle the
tests hold the networks, the samplers and the solvers to.

Example:
    >>> import torch
    >>> from deep.diffusion.schedules import CondOTScheduler
    >>> g = GaussianData(torch.zeros(2), torch.eye(2), CondOTScheduler())
    >>> x = torch.ones(3, 2, dtype=torch.float64)
    >>> bool(torch.allclose(g.score(x, 0.0), -x))  # the noise end is N(0, I)
    True
"""

from __future__ import annotations

import math

import torch

from deep.diffusion.paths import expand_time
from deep.diffusion.schedules import Scheduler
from inference.errors import DataError

__all__ = ["GaussianData"]


class GaussianData:
    """:math:`N(\\mu, \\Sigma)` data pushed along ``scheduler``'s path (float64 throughout)."""

    def __init__(self, mean, cov, scheduler: Scheduler):
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        d = self.mean.shape[0]
        if self.mean.ndim != 1 or self.cov.shape != (d, d):
            raise DataError(f"mean must be (D,) and cov (D, D), got {tuple(self.mean.shape)} and {tuple(self.cov.shape)}")
        self.scheduler = scheduler
        self.dim = d

    def sample(self, n: int, generator) -> torch.Tensor:
        from inference.rng import as_generator

        z = torch.randn(n, self.dim, generator=as_generator(generator), dtype=torch.float64)  # (n, D)
        return self.mean + z @ torch.linalg.cholesky(self.cov).T

    def log_prob(self, x) -> torch.Tensor:
        """:math:`\\log N(x; \\mu, \\Sigma)`, (B,)."""
        return torch.distributions.MultivariateNormal(self.mean, self.cov).log_prob(x.to(torch.float64))

    def marginal(self, t):
        """:math:`(m_t, C_t)` at a scalar time."""
        out = self.scheduler(torch.as_tensor(t, dtype=torch.float64))
        a, s = out.alpha_t, out.sigma_t
        return a * self.mean, a**2 * self.cov + s**2 * torch.eye(self.dim, dtype=torch.float64)

    def marginal_log_prob(self, x, t) -> torch.Tensor:
        m, c = self.marginal(t)
        return torch.distributions.MultivariateNormal(m, c).log_prob(x.to(torch.float64))

    def _parts(self, x, t):
        x = x.to(torch.float64)
        tb = expand_time(t, x)  # (B, 1)
        a, s, da, ds = self.scheduler(tb)
        eye = torch.eye(self.dim, dtype=torch.float64)
        c = a[..., None] ** 2 * self.cov + s[..., None] ** 2 * eye  # (B, D, D)
        r = torch.linalg.solve(c, (x - a * self.mean).unsqueeze(-1)).squeeze(-1)  # C_t^{-1}(x - m_t), (B, D)
        return a, s, da, ds, r

    def score(self, x, t) -> torch.Tensor:
        return -self._parts(x, t)[4]

    def epsilon(self, x, t) -> torch.Tensor:
        _, s, _, _, r = self._parts(x, t)
        return s * r

    def denoiser(self, x, t) -> torch.Tensor:
        a, _, _, _, r = self._parts(x, t)
        return self.mean + a * r @ self.cov.T

    def velocity(self, x, t) -> torch.Tensor:
        a, s, da, ds, r = self._parts(x, t)
        return da * (self.mean + a * r @ self.cov.T) + ds * s * r

    def entropy(self) -> float:
        return 0.5 * float(torch.logdet(2 * math.pi * math.e * self.cov))
