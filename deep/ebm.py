"""Energy-based models: an energy network trained by score matching or contrastive divergence.

An energy :math:`E_\\theta(x)` defines :math:`p_\\theta(x) = e^{-E_\\theta(x)} / Z_\\theta` with an
intractable :math:`Z_\\theta = \\int e^{-E_\\theta}`; its score :math:`s_\\theta(x) = \\nabla_x \\log
p_\\theta(x) = -\\nabla_x E_\\theta(x)` needs no :math:`Z`. Four ways to fit it, each a loss for the one
training loop (:func:`inference.train.fit`):

1. Denoising score matching (Vincent 2011), :func:`dsm_loss`: with :math:`\\tilde x = x + \\sigma
   \\epsilon`, :math:`\\epsilon \\sim N(0, I)`,
   :math:`\\tfrac12 \\mathbb E \\|s_\\theta(\\tilde x) + \\epsilon / \\sigma\\|^2`, whose minimiser is
   the score of the data blurred by :math:`N(0, \\sigma^2 I)`: on Gaussian data
   :math:`N(\\mu, \\Sigma)`, :math:`s^*(\\tilde x) = -(\\Sigma + \\sigma^2 I)^{-1}(\\tilde x - \\mu)`.
2. Sliced score matching (Song et al. 2019), :func:`ssm_loss`: with random directions
   :math:`v \\sim N(0, I)`, :math:`\\mathbb E[v^\\top \\nabla_x s_\\theta(x) v + \\tfrac12 (v^\\top
   s_\\theta(x))^2]` (``variance_reduced``: :math:`\\tfrac12\\|s_\\theta\\|^2` for the second
   term), equal in expectation over :math:`v` to Hyvärinen's (2005) score-matching loss
   :math:`\\mathbb E[\\operatorname{tr}\\nabla_x s_\\theta + \\tfrac12 \\|s_\\theta\\|^2]`
   (:func:`score_matching_loss`, by the full Jacobian) at one Jacobian-vector product per direction.
3. Contrastive divergence (Hinton 2002) and persistent CD (Tieleman 2008), :class:`ContrastiveDivergence`:
   :math:`\\nabla_\\theta [-\\log p_\\theta] = \\mathbb E_{data}[\\nabla_\\theta E] -
   \\mathbb E_{p_\\theta}[\\nabla_\\theta E]`, the model expectation over negatives drawn by
   ``num_steps`` Langevin steps (:func:`inference.langevin.ula_torch` or ``mala_torch``) from the
   data (CD-k) or from persistent chains (PCD, a fraction ``reinit`` restarted from uniform noise
   each step, Du and Mordatch 2019), plus :math:`\\alpha(E(x^+)^2 + E(x^-)^2)` to keep energies small.

Likelihood. In two dimensions :math:`\\log Z` is a quadrature (:func:`log_partition_2d`: the
midpoint rule on a grid over a box holding the mass), which gives the EBM an exact negative
log-likelihood :math:`E(x) + \\log Z` and, against a density with a known entropy, the exact
:math:`\\mathrm{KL}(p \\| p_\\theta) = \\mathbb E_p[E(x)] + \\log Z - H(p)` (:func:`kl_to_density`).
Beyond two dimensions :func:`ais_log_partition` estimates :math:`\\log Z` by annealed importance
sampling with MALA moves, with its standard error. Samples come from Langevin dynamics on :math:`-E` (:func:`langevin_samples`).

References:
    Hyvärinen (2005). Estimation of non-normalized statistical models by score matching. JMLR.
    Vincent (2011). A connection between score matching and denoising autoencoders. Neural Comput.
    Song, Garg, Shi and Ermon (2019). Sliced score matching. UAI.
    Hinton (2002). Training products of experts by minimizing contrastive divergence. Neural Comput.
    Tieleman (2008). Training restricted Boltzmann machines using approximations to the
        likelihood gradient. ICML.
    Du and Mordatch (2019). Implicit generation and generalization in energy-based models. NeurIPS.
    Neal (2001). Annealed importance sampling. Statistics and Computing.

Example (how to use in the training loop):
    >>> import torch
    >>> from deep.densities import get
    >>> from inference.train import LossStep, fit
    >>> data = get("8gaussians").sample(512, generator=0)
    >>> energy = EnergyNet(2, hidden=(32, 32))
    >>> step = LossStep(energy, lambda e, b, g: dsm_loss(e, b["x"], g, sigma=0.3), lr=1e-3)
    >>> result = fit(step, {"x": data}, seed=0, steps=20, batch_size=128)
    >>> stats = kl_to_density(energy, get("8gaussians"), 1000, generator=1, box=6.0, cells=200)
    >>> sorted(stats)
    ['kl', 'kl_se', 'log_z', 'nll']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
from torch import nn

from deep.nets import MLP
from inference.errors import DataError, UnknownNameError
from inference.langevin import mala_torch, ula_torch
from inference.train import TrainStep, adam

__all__ = ["EnergyNet", "QuadraticEnergy", "score", "dsm_loss", "ssm_loss", "score_matching_loss",
           "ContrastiveDivergence", "langevin_samples", "log_partition_2d", "nll_2d", "kl_to_density", "METHODS",
           "train_ebm", "ais_log_partition"]


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise DataError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_points(x: torch.Tensor, dim: int, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != dim:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise DataError(f"{name} must have shape (B, {dim}), got {shape}")
    return x


class EnergyNet(nn.Module):
    """:math:`E_\\theta(x)`: an MLP ``(B, D) -> (B,)`` with smooth (SiLU) activations, so that
    score matching can differentiate its score again."""

    def __init__(self, x_dim: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.x_dim, self.hidden = _check_count(x_dim, "x_dim"), tuple(hidden)
        self.body = MLP((x_dim, *hidden, 1), activation=nn.SiLU)

    def config(self) -> dict:
        return {"x_dim": self.x_dim, "hidden": list(self.hidden)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(_check_points(x, self.x_dim)).squeeze(-1)  # (B,)


class QuadraticEnergy(nn.Module):
    """:math:`E(x) = \\tfrac12 (x - m)^\\top P (x - m)` with :math:`P = L L^\\top`: the Gaussian
    :math:`N(m, P^{-1})`, the exact family for Gaussian data (closed-form checks)."""

    def __init__(self, x_dim: int):
        super().__init__()
        self.x_dim = _check_count(x_dim, "x_dim")
        self.mean = nn.Parameter(torch.zeros(x_dim))
        self.chol = nn.Parameter(torch.eye(x_dim))

    def config(self) -> dict:
        return {"x_dim": self.x_dim}

    @property
    def precision(self) -> torch.Tensor:
        lower = torch.tril(self.chol)
        return lower @ lower.T  # (D, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = _check_points(x, self.x_dim) - self.mean  # (B, D)
        return 0.5 * ((r @ torch.tril(self.chol)) ** 2).sum(-1)  # (B,)


def score(energy: Callable, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """:math:`s(x) = -\\nabla_x E(x)`, (B, D); ``create_graph`` keeps it differentiable in the weights."""
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x, create_graph=create_graph)
    return -grad  # (B, D)


def dsm_loss(energy: Callable, x: torch.Tensor, generator: torch.Generator, *, sigma: float) -> torch.Tensor:
    """Denoising score matching :math:`\\tfrac12 \\mathbb E\\|s(x + \\sigma\\epsilon) + \\epsilon/\\sigma\\|^2`
    on a batch ``x`` (B, D), the noise drawn from ``generator``."""
    sigma = _check_positive(sigma, "sigma")
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)  # (B, D)
    s = score(energy, x + sigma * eps, create_graph=True)  # (B, D)
    return 0.5 * ((s + eps / sigma) ** 2).sum(-1).mean()


def ssm_loss(energy: Callable, x: torch.Tensor, generator: torch.Generator, *, num_projections: int = 1,
             variance_reduced: bool = True) -> torch.Tensor:
    """Sliced score matching with ``num_projections`` Gaussian directions per data point."""
    _check_count(num_projections, "num_projections")
    x = x.detach().requires_grad_(True)
    s = score(energy, x, create_graph=True)  # (B, D)
    v = torch.randn((num_projections,) + tuple(x.shape), generator=generator, device=x.device,
                    dtype=x.dtype)  # (M, B, D)
    sv = (s * v).sum(-1)  # (M, B)
    quad = torch.stack([(torch.autograd.grad(sv[m].sum(), x, create_graph=True)[0] * v[m]).sum(-1)
                        for m in range(num_projections)])  # (M, B): v^T grad_x(s) v
    second = 0.5 * (s**2).sum(-1)[None] if variance_reduced else 0.5 * sv**2  # (1 or M, B)
    return (quad + second).mean()


def score_matching_loss(energy: Callable, x: torch.Tensor) -> torch.Tensor:
    """Hyvärinen's loss :math:`\\mathbb E[\\operatorname{tr}\\nabla_x s + \\tfrac12\\|s\\|^2]` with the
    trace by the full Jacobian (D backward passes: for small D, and as the oracle of :func:`ssm_loss`)."""
    x = x.detach().requires_grad_(True)
    s = score(energy, x, create_graph=True)  # (B, D)
    trace = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))  # (B,)
    return (trace + 0.5 * (s**2).sum(-1)).mean()


class _Chains(nn.Module):
    """The persistent chains of PCD as a buffer, so that a checkpoint holds them."""

    def __init__(self):
        super().__init__()
        self.register_buffer("x", torch.zeros(0))


class ContrastiveDivergence(TrainStep):
    """CD-k / PCD-k with Langevin negatives: one :class:`~inference.train.TrainStep`.

    Args:
        energy: the energy network.
        num_steps: Langevin steps per update (k).
        step_size: the Langevin step :math:`\\epsilon` (drift :math:`\\epsilon s`, noise :math:`\\sqrt{2\\epsilon}`).
        persistent: keep ``buffer_size`` chains across updates (PCD) instead of starting at the data (CD).
        reinit: fraction of the persistent chains restarted from uniform noise on ``[-box, box]^D``.
        box: the half-width of that noise.
        alpha: weight of the energy regulariser :math:`\\alpha(E(x^+)^2 + E(x^-)^2)`.
        kernel: ``"ula"`` or ``"mala"`` (from :mod:`inference.langevin`).
        lr: Adam's learning rate.
    """

    name = "contrastive_divergence"

    def __init__(self, energy: nn.Module, *, num_steps: int = 20, step_size: float = 1e-2, persistent: bool = True,
                 buffer_size: int = 1000, reinit: float = 0.05, box: float = 4.0, alpha: float = 0.1,
                 kernel: str = "ula", lr: float = 1e-3):
        self.energy = energy
        self.num_steps = _check_count(num_steps, "num_steps")
        self.step_size = _check_positive(step_size, "step_size")
        self.buffer_size = _check_count(buffer_size, "buffer_size")
        if not 0 <= reinit <= 1:
            raise DataError(f"reinit must lie in [0, 1], got {reinit}")
        if kernel not in ("ula", "mala"):
            raise UnknownNameError(f"unknown Langevin kernel {kernel!r}; known: ula, mala")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise DataError(f"alpha must be a non-negative number, got {alpha}")
        self.persistent, self.reinit, self.box, self.alpha = bool(persistent), float(reinit), \
            _check_positive(box, "box"), float(alpha)
        self.kernel_name, self.lr = kernel, _check_positive(lr, "lr")
        self.chains = _Chains()
        self.optimizer = adam(energy.parameters(), lr=self.lr)
        self.last_acceptance = float("nan")

    def modules(self):
        return {"energy": self.energy, "chains": self.chains} if self.persistent else {"energy": self.energy}

    def optimizers(self):
        return {"energy": self.optimizer}

    def config(self):
        return {"num_steps": self.num_steps, "step_size": self.step_size, "persistent": self.persistent,
                "buffer_size": self.buffer_size, "reinit": self.reinit, "box": self.box, "alpha": self.alpha,
                "kernel": self.kernel_name, "lr": self.lr}

    def setup(self, data):
        x = data["x"]
        if x.dim() != 2:
            raise DataError(f"data['x'] must have shape (N, D), got {tuple(x.shape)}")
        if self.persistent and self.chains.x.shape != (self.buffer_size, x.shape[1]):
            # Uniform noise drawn from a generator seeded by the data size: the buffer's start is
            # fixed by the run's arguments (a resumed run overwrites it from the checkpoint).
            gen = torch.Generator(device=x.device).manual_seed(x.shape[0])
            self.chains.x = (torch.rand(self.buffer_size, x.shape[1], generator=gen, device=x.device) * 2 - 1) * self.box

    def negatives(self, start: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``num_steps`` Langevin steps on :math:`\\log p = -E` from ``start`` (B, D)."""
        def logdensity(x):
            return -self.energy(x)

        kernel = (ula_torch(logdensity, self.step_size) if self.kernel_name == "ula"
                  else mala_torch(logdensity, self.step_size))
        state = kernel.init(start.detach())
        accepted = torch.zeros((), dtype=start.dtype, device=start.device)
        for _ in range(self.num_steps):
            state, info = kernel.step(generator, state)
            if self.kernel_name == "mala":  # ULA takes every proposal
                accepted = accepted + info.acceptance_rate.mean()
        self.last_acceptance = float(accepted) / self.num_steps if self.kernel_name == "mala" else 1.0
        return state.position.detach()  # (B, D)

    def __call__(self, batch, generator):
        # 1. negatives: from the data (CD) or from the persistent chains, some restarted from noise
        real = batch["x"]  # (B, D)
        if self.persistent:
            idx = torch.randint(self.buffer_size, (real.shape[0],), generator=generator, device=real.device)  # (B,)
            start = self.chains.x[idx]  # (B, D)
            fresh = torch.rand(real.shape[0], 1, generator=generator, device=real.device) < self.reinit  # (B, 1)
            noise = (torch.rand(real.shape, generator=generator, device=real.device, dtype=real.dtype) * 2 - 1) * self.box
            start = torch.where(fresh, noise, start)
        else:
            start = real
        fake = self.negatives(start, generator)  # (B, D)
        if self.persistent:
            self.chains.x[idx] = fake
        # 2. the contrastive loss and one Adam step
        e_real, e_fake = self.energy(real), self.energy(fake)  # (B,), (B,)
        gap = e_real.mean() - e_fake.mean()
        loss = gap + self.alpha * ((e_real**2).mean() + (e_fake**2).mean())
        if torch.isfinite(loss.detach()):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.detach(), "energy_gap": gap.detach(), "acceptance": self.last_acceptance}


def langevin_samples(energy: Callable, n: int, generator, *, num_steps: int = 500, step_size: float = 1e-3,
                     box: float = 4.0, dim: int = 2, kernel: str = "ula", start: torch.Tensor | None = None,
                     device="cpu") -> torch.Tensor:
    """``n`` samples of :math:`e^{-E}` by ``num_steps`` Langevin steps from uniform noise on
    :math:`[-box, box]^{dim}` (or from ``start``), chains side by side."""
    from inference.rng import as_generator

    _check_count(n, "n")
    _check_count(num_steps, "num_steps")
    _check_positive(step_size, "step_size")
    gen = as_generator(generator, device)
    if kernel not in ("ula", "mala"):
        raise UnknownNameError(f"unknown Langevin kernel {kernel!r}; known: ula, mala")
    x = (torch.rand(n, dim, generator=gen, device=device) * 2 - 1) * box if start is None else start  # (n, D)
    k = (ula_torch if kernel == "ula" else mala_torch)(lambda y: -energy(y), step_size)
    state = k.init(x)
    for _ in range(num_steps):
        state, _info = k.step(gen, state)
    return state.position.detach()


@torch.no_grad()
def log_partition_2d(energy: Callable, *, box: float, cells: int = 400, chunk: int = 40_000) -> float:
    """:math:`\\log Z = \\log \\int_{[-b, b]^2} e^{-E}` by the midpoint rule on ``cells`` x ``cells``
    squares, as a log-sum-exp (float64 accumulation). The box must hold the model's mass: mass outside
    is missed and the NLL is then too low."""
    _check_positive(box, "box")
    _check_count(cells, "cells")
    h = 2 * box / cells
    centres = torch.arange(cells, dtype=torch.float64) * h - box + h / 2
    gx, gy = torch.meshgrid(centres, centres, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (cells^2, 2)
    device = next((p.device for p in energy.parameters()), torch.device("cpu")) if isinstance(energy, nn.Module) \
        else torch.device("cpu")
    parts = []
    for block in pts.split(chunk):
        parts.append(-energy(block.to(device=device, dtype=torch.float32)).double().cpu())
    return float(torch.logsumexp(torch.cat(parts), 0)) + 2 * math.log(h)


@torch.no_grad()
def nll_2d(energy: Callable, x: torch.Tensor, log_z: float) -> torch.Tensor:
    """:math:`-\\log p_\\theta(x) = E(x) + \\log Z` per point (nats), (B,)."""
    return energy(x).double() + log_z


def kl_to_density(energy: Callable, density, n: int, generator, *, box: float, cells: int = 400) -> dict:
    """:math:`\\mathrm{KL}(p \\| p_\\theta)` against a density of :mod:`deep.densities`: the mean NLL of
    ``n`` fresh samples of :math:`p` minus :math:`H(p)`, with its standard error; and ``log_z``."""
    log_z = log_partition_2d(energy, box=box, cells=cells)
    x = density.sample(n, generator)  # (n, 2)
    device = next((p.device for p in energy.parameters()), torch.device("cpu")) if isinstance(energy, nn.Module) \
        else torch.device("cpu")
    nll = nll_2d(energy, x.to(device), log_z).cpu()  # (n,)
    return {"kl": float(nll.mean()) - density.entropy(), "kl_se": float(nll.std()) / math.sqrt(n),
            "nll": float(nll.mean()), "log_z": log_z}


METHODS = ("dsm", "ssm", "cd", "pcd")


def train_ebm(data, method: str, *, seed: int, steps: int, batch_size: int = 256, lr: float = 1e-3,
              hidden: Sequence[int] = (64, 64), sigma: float = 0.1, num_steps: int = 20, step_size: float = 1e-2,
              box: float = 4.0, alpha: float = 0.1, device="cpu", progress: bool = False, checkpoint=None):
    """Build an :class:`EnergyNet` for ``data`` (N, D) (initial weights from ``seed``) and train it by
    ``method`` (one of :data:`METHODS`: ``"dsm"`` with noise ``sigma``, ``"ssm"``, ``"cd"`` / ``"pcd"``
    with ``num_steps`` Langevin steps of size ``step_size``) through :func:`inference.train.fit`.
    Returns fit's :class:`~inference.result.Result` with the trained :class:`EnergyNet` as ``params``."""
    from inference.train import LossStep, fit, isolated

    if method not in METHODS:
        raise UnknownNameError(f"unknown EBM training method {method!r}; known: {', '.join(METHODS)}")
    x = torch.as_tensor(data, dtype=torch.float32)
    if x.dim() != 2:
        raise DataError(f"data must have shape (N, D), got {tuple(x.shape)}")
    with isolated(seed):  # the initial weights are a function of the seed, the caller's RNG untouched
        energy = EnergyNet(x.shape[1], hidden)
    if method == "dsm":
        _check_positive(sigma, "sigma")
        step = LossStep(energy, lambda e, b, g: dsm_loss(e, b["x"], g, sigma=sigma), lr=lr, name="dsm")
    elif method == "ssm":
        step = LossStep(energy, lambda e, b, g: ssm_loss(e, b["x"], g), lr=lr, name="ssm")
    else:
        step = ContrastiveDivergence(energy, num_steps=num_steps, step_size=step_size, persistent=method == "pcd",
                                     buffer_size=max(1000, batch_size), box=box, alpha=alpha, lr=lr)
    result = fit(step, {"x": x}, seed=seed, steps=steps, batch_size=batch_size, device=device, progress=progress,
                 checkpoint=checkpoint)
    return dataclasses.replace(result, params=energy)  # the energy network (PCD's chains stay in the step)


def ais_log_partition(energy: Callable, dim: int, generator, *, num_chains: int = 500, num_betas: int = 200,
                      base_scale: float = 3.0, step_size: float = 0.05, device="cpu") -> dict:
    """:math:`\\log Z = \\log \\int e^{-E}` in any dimension by annealed importance sampling (Neal 2001).

    Anneal from the base :math:`p_0 = N(0, s^2 I)` (normalised, ``s = base_scale``) to
    :math:`e^{-E}` along :math:`\\log p^*_k = (1 - \\beta_k) \\log p_0 - \\beta_k E`,
    :math:`\\beta_k = k / K`: draw :math:`x \\sim p_0`, then for each :math:`k` add
    :math:`(\\beta_k - \\beta_{k-1})(-E(x) - \\log p_0(x))` to :math:`\\log w` and move :math:`x` by one
    MALA step (:func:`inference.langevin.mala_torch`) that leaves :math:`p_k` invariant. Then
    :math:`\\mathbb E[w] = Z` and :math:`\\log \\hat Z = \\log \\frac1M \\sum_m w_m`, with the
    delta-method standard error :math:`\\hat\\sigma_w / (\\bar w \\sqrt M)` and the weights' ESS
    :math:`(\\sum w)^2 / \\sum w^2`. By Jensen's inequality the estimate is low on average.

    Returns ``{"log_z", "standard_error", "ess", "acceptance"}``.
    """
    from inference.rng import as_generator

    _check_count(dim, "dim")
    _check_count(num_chains, "num_chains")
    _check_count(num_betas, "num_betas")
    base_scale, step_size = _check_positive(base_scale, "base_scale"), _check_positive(step_size, "step_size")
    gen = as_generator(generator, device)
    log_norm = -0.5 * dim * math.log(2 * math.pi * base_scale**2)

    def log_base(x):
        return log_norm - 0.5 * (x**2).sum(-1) / base_scale**2  # (M,)

    x = base_scale * torch.randn(num_chains, dim, generator=gen, device=device)  # (M, D)
    log_w = torch.zeros(num_chains, dtype=torch.float64, device=device)
    betas = torch.linspace(0.0, 1.0, num_betas + 1).tolist()
    accepted = 0.0
    for prev, beta in zip(betas[:-1], betas[1:]):
        with torch.no_grad():
            log_w += (beta - prev) * (-energy(x) - log_base(x)).double()
        kernel = mala_torch(lambda y, b=beta: (1 - b) * log_base(y) - b * energy(y), step_size)
        state, info = kernel.step(gen, kernel.init(x))
        x = state.position.detach()
        accepted += float(info.acceptance_rate.float().mean())
    log_mean = float(torch.logsumexp(log_w, 0)) - math.log(num_chains)
    w = torch.exp(log_w - log_w.max())  # (M,) scaled weights
    se = float(w.std() / (w.mean() * math.sqrt(num_chains)))
    return {"log_z": log_mean, "standard_error": se, "ess": float(w.sum() ** 2 / (w**2).sum()),
            "acceptance": accepted / num_betas}
