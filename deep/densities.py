"""Two-dimensional densities with a known answer, for measuring every deep family.

Each density offers ``sample(n, generator)`` (a float32 tensor (n, 2)), ``log_prob(x)`` (nats,
closed form: a Gaussian mixture or a uniform on squares), ``entropy()`` (nats) and, for the
mixtures, ``modes`` and ``mode_std`` (the protocol of PacGAN's synthetic experiments). Because the
true log-density is known, a model's test negative log-likelihood gives the exact divergence

.. math::
    \\mathrm{KL}(p \\,\\|\\, q) = \\mathbb E_p[-\\log q(x)] - H(p),

estimated without bias by the mean NLL over fresh samples of :math:`p` (its standard error is the
NLL's standard deviation over :math:`\\sqrt n`).

The densities (names for :func:`get`):

- ``"8gaussians"``: FFJORD's eight Gaussians: centres :math:`4 c_k / \\sqrt 2` for the unit
  vectors :math:`c_k` at angles :math:`k \\pi / 4`, standard deviation :math:`0.5 / \\sqrt 2`
  (FFJORD draws ``(0.5 z + 4 c) / 1.414``; here 1.414 is :math:`\\sqrt 2`). :math:`H = 2.832` nats.
- ``"checkerboard"``: FFJORD's checkerboard: uniform on the 8 squares of side 2 in
  :math:`[-4, 4]^2` whose integer-lattice parity alternates; :math:`H = \\log 32 = 3.466` nats.
- ``"ring"``: PacGAN's ring: 8 Gaussians of standard deviation 0.01 on the unit circle.
- ``"grid"``: PacGAN's grid: 25 Gaussians of standard deviation 0.05 at :math:`\\{-4,-2,0,2,4\\}^2`.
- ``"moons"``: two interleaved half circles with Gaussian noise 0.1 (scikit-learn's ``make_moons``
  construction); samples only, ``log_prob`` raises.

Mixture entropies are computed by quadrature of :math:`-p \\log p` on a grid fine against the
component width (cached); for the well-separated ring and grid they equal
:math:`\\log K + 1 + \\log(2\\pi\\sigma^2)` to float precision.

References:
    Grathwohl, Chen, Bettencourt, Sutskever and Duvenaud (2019). FFJORD. ICLR.
    Lin, Khetan, Fanti and Oh (2018). PacGAN: the power of two samples in generative adversarial
        networks. NeurIPS.

Example:
    >>> from deep.densities import get
    >>> p = get("checkerboard")
    >>> x = p.sample(1000, generator=0)
    >>> round(p.entropy(), 3)
    3.466
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from inference.errors import DataError, ModelError, UnknownNameError
from inference.rng import as_generator

__all__ = ["Density2D", "GaussianMixture2D", "Checkerboard", "Moons", "get", "NAMES"]


def _check_points(x, name: str = "x") -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[-1] != 2:
        raise DataError(f"{name} must have shape (n, 2), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        row = int((~torch.isfinite(x)).any(-1).nonzero()[0])
        raise DataError(f"{name} has a non-finite value in row {row}")
    return x


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer, got {n!r}")
    return int(n)


class Density2D:
    """A density on the plane: ``sample``, ``log_prob``, ``entropy``; see the module docstring."""

    name: str = ""
    modes: np.ndarray | None = None
    mode_std: float | None = None
    box: float = 5.0  # the square [-box, box]^2 holds all but a negligible part of the mass

    def sample(self, n: int, generator) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x) -> torch.Tensor:
        raise NotImplementedError

    def entropy(self) -> float:
        return _quadrature_entropy(self)

    def score(self, x) -> torch.Tensor:
        """:math:`\\nabla_x \\log p(x)` (n, 2) by autograd through :meth:`log_prob`, in ``x``'s precision
        (the true score a Stein discrepancy or a score model is measured against)."""
        x = _check_points(x)
        with torch.enable_grad():
            y = x.detach().float().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(y).sum(), y)
        return grad.to(x.dtype)


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture2D(Density2D):
    """An equal-weight mixture of isotropic Gaussians :math:`\\frac1K \\sum_k N(\\mu_k, \\sigma^2 I)`."""

    name: str
    modes: np.ndarray  # (K, 2)
    mode_std: float
    box: float = 5.0

    def sample(self, n: int, generator) -> torch.Tensor:
        n = _check_n(n)
        gen = as_generator(generator)
        centres = torch.as_tensor(self.modes, dtype=torch.float32)  # (K, 2)
        k = torch.randint(len(centres), (n,), generator=gen)  # (n,)
        return centres[k] + self.mode_std * torch.randn(n, 2, generator=gen)  # (n, 2)

    def log_prob(self, x) -> torch.Tensor:
        x = _check_points(x)
        centres = torch.as_tensor(self.modes, dtype=x.dtype, device=x.device)  # (K, 2)
        d2 = ((x[:, None, :] - centres) ** 2).sum(-1)  # (n, K)
        log_comp = -0.5 * d2 / self.mode_std**2 - math.log(2 * math.pi * self.mode_std**2)
        return torch.logsumexp(log_comp, -1) - math.log(len(centres))  # (n,)


class Checkerboard(Density2D):
    """Uniform on the 8 squares of side 2 in :math:`[-4, 4]^2` with :math:`\\lfloor x_1/2 \\rfloor + \\lfloor x_2/2 \\rfloor` even."""

    name = "checkerboard"
    box = 4.0

    def sample(self, n: int, generator) -> torch.Tensor:
        # FFJORD's construction: x1 uniform on [-2, 2), x2 on one of two unit intervals whose choice
        # follows floor(x1)'s parity; everything scaled by 2.
        n = _check_n(n)
        gen = as_generator(generator)
        x1 = torch.rand(n, generator=gen) * 4 - 2  # (n,)
        x2 = torch.rand(n, generator=gen) - torch.randint(0, 2, (n,), generator=gen).float() * 2
        x2 = x2 + torch.floor(x1) % 2
        return torch.stack([x1, x2], 1) * 2  # (n, 2)

    def log_prob(self, x) -> torch.Tensor:
        x = _check_points(x)
        inside = (x.abs() < 4).all(-1)
        parity = (torch.floor(x[:, 0] / 2) + torch.floor(x[:, 1] / 2)) % 2 == 0
        out = torch.full(x.shape[:1], -math.inf, dtype=x.dtype, device=x.device)
        return out.masked_fill(inside & parity, -math.log(32.0))

    def entropy(self) -> float:
        return math.log(32.0)


class Moons(Density2D):
    """Two interleaved half circles with Gaussian noise (samples only: no closed-form density)."""

    name = "moons"

    def __init__(self, noise: float = 0.1):
        self.noise = noise

    def sample(self, n: int, generator) -> torch.Tensor:
        n = _check_n(n)
        gen = as_generator(generator)
        n_out = n // 2
        t_out = torch.linspace(0, math.pi, n_out)
        t_in = torch.linspace(0, math.pi, n - n_out)
        outer = torch.stack([torch.cos(t_out), torch.sin(t_out)], 1)
        inner = torch.stack([1 - torch.cos(t_in), 1 - torch.sin(t_in) - 0.5], 1)
        x = torch.cat([outer, inner]) + self.noise * torch.randn(n, 2, generator=gen)  # (n, 2)
        return x[torch.randperm(n, generator=gen)]

    def log_prob(self, x) -> torch.Tensor:
        raise ModelError("the two moons have no closed-form density: compare samples (MMD, W2) instead")

    def entropy(self) -> float:
        raise ModelError("the two moons have no closed-form density, hence no closed-form entropy")


@functools.lru_cache(maxsize=None)
def _entropy_by_name(name: str) -> float:
    p = get(name)
    # Midpoint rule on a grid whose cell is at most a tenth of a component's standard deviation:
    # the integrand is smooth on that scale, so the rule's error is far below the 3 decimals quoted.
    cell = min(p.mode_std / 10, 0.01)
    lo = p.box
    edges = np.arange(-lo, lo, cell) + cell / 2
    total = 0.0
    for chunk in np.array_split(edges, max(1, len(edges) // 500)):
        gx, gy = np.meshgrid(chunk, edges, indexing="ij")
        pts = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float64)
        lp = p.log_prob(pts)
        total += float(-(lp.exp() * lp).sum()) * cell * cell
    return total


def _quadrature_entropy(p: Density2D) -> float:
    if isinstance(p, GaussianMixture2D) and p.name in ("ring", "grid"):
        # Components at least 40 standard deviations apart: their overlap is below e^-200, so the
        # entropy is that of K disjoint Gaussians to float precision.
        return math.log(len(p.modes)) + 1.0 + math.log(2 * math.pi * p.mode_std**2)
    return _entropy_by_name(p.name)


def _eight_gaussians() -> GaussianMixture2D:
    angles = np.arange(8) * np.pi / 4
    unit = np.stack([np.cos(angles), np.sin(angles)], 1)
    return GaussianMixture2D("8gaussians", 4 * unit / math.sqrt(2), 0.5 / math.sqrt(2), box=5.0)


def _ring() -> GaussianMixture2D:
    angles = np.arange(8) * 2 * np.pi / 8
    return GaussianMixture2D("ring", np.stack([np.cos(angles), np.sin(angles)], 1), 0.01, box=1.5)


def _grid() -> GaussianMixture2D:
    g = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    gx, gy = np.meshgrid(g, g, indexing="ij")
    return GaussianMixture2D("grid", np.stack([gx.ravel(), gy.ravel()], 1), 0.05, box=5.0)


_FACTORIES = {
    "8gaussians": _eight_gaussians,
    "checkerboard": Checkerboard,
    "ring": _ring,
    "grid": _grid,
    "moons": Moons,
}
NAMES = tuple(_FACTORIES)


def get(name: str) -> Density2D:
    """The density called ``name`` (one of :data:`NAMES`)."""
    if name not in _FACTORIES:
        raise UnknownNameError(f"unknown 2-D density {name!r}; known: {', '.join(NAMES)}")
    return _FACTORIES[name]()
