"""Denoising diffusion probabilistic models (Ho et al. 2020) as a Pyro program, with DDIM sampling.

The forward chain adds Gaussian noise in :math:`T` steps, :math:`q(x_i \\mid x_{i-1}) =
N(\\sqrt{1 - \\beta_i}\\,x_{i-1}, \\beta_i I)`, so that :math:`q(x_i \\mid x_0) = N(\\sqrt{\\bar a_i}\\,x_0,
(1 - \\bar a_i) I)`; the model runs it backwards with a network :math:`\\epsilon_\\theta` that predicts
the noise:

.. math::
    p(x_T) = N(0, I), \\qquad p_\\theta(x_{i-1} \\mid x_i) = N\\Big(\\tfrac{1}{\\sqrt{a_i}}\\big(x_i -
    \\tfrac{\\beta_i}{\\sqrt{1 - \\bar a_i}}\\,\\epsilon_\\theta(x_i, i)\\big),\\; \\sigma_i^2 I\\Big),

with :math:`\\sigma_i^2 = \\tilde\\beta_i` (the forward posterior's variance; ``variance="posterior"``)
or :math:`\\beta_i` (``"beta"``); the last step :math:`p(x_0 \\mid x_1)` has variance :math:`\\beta_1`
(a Gaussian decoder for continuous data). The program and its guide, the fixed forward chain::

    model:  x_T --> x_{T-1} --> ... --> x_1 --> x_0 (observed)      [plate over data points]
    guide:  x_0 --> x_1 --> ... --> x_T                                q(x_{1:T} | x_0), no parameters

so the ELBO of the program (:func:`inference.likelihood.elbo`, Pyro's ``Trace_ELBO``) is the DDPM
variational bound, in nats:

.. math::
    \\log p(x_0) \\ge E_q\\Big[\\log p(x_0 \\mid x_1) - \\sum_{i=2}^T \\mathrm{KL}(q(x_{i-1} \\mid x_i, x_0)
    \\,\\|\\, p(x_{i-1} \\mid x_i))\\Big] - \\mathrm{KL}(q(x_T \\mid x_0) \\,\\|\\, p(x_T)).

:meth:`DDPM.bound` evaluates that right-hand side with the KL terms in closed form (each term's
expectation over :math:`x_i \\sim q(x_i \\mid x_0)` by one draw), all :math:`T` terms or an unbiased
random subset of them; a test holds it equal to the program's ELBO.

Training minimises Ho et al.'s simplified loss :math:`E_{i, \\epsilon}\\|\\epsilon -
\\epsilon_\\theta(\\sqrt{\\bar a_i}x_0 + \\sqrt{1 - \\bar a_i}\\epsilon, i)\\|^2` through the zoo's one loop.
The network is given the time :math:`t_i = 1 - i/T` (this package's convention: noise at 0, data at
1), so that with :func:`~deep.diffusion.schedules.vp_betas` the same network is a VP score model
(:meth:`deep.diffusion.sde.ScoreSDE.from_ddpm`).

Sampling: :meth:`DDPM.sample` is the program's ancestral pass (the last step returns its mean, as Ho
et al.); :meth:`DDPM.ddim_sample` follows Song, Meng and Ermon's DDIM on a subsequence
:math:`\\tau_1 < \\dots < \\tau_S = T` of the steps with

.. math::
    x_{\\tau_{k-1}} = \\sqrt{\\bar a_{\\tau_{k-1}}}\\,\\hat x_0 + \\sqrt{1 - \\bar a_{\\tau_{k-1}} - s_k^2}\\,\\hat\\epsilon
    + s_k z, \\qquad s_k = \\eta\\sqrt{\\tfrac{1 - \\bar a_{\\tau_{k-1}}}{1 - \\bar a_{\\tau_k}}}
    \\sqrt{1 - \\tfrac{\\bar a_{\\tau_k}}{\\bar a_{\\tau_{k-1}}}},

deterministic at :math:`\\eta = 0`, the ancestral sampler at :math:`\\eta = 1` with every step.

References:
    Ho, Jain and Abbeel (2020). Denoising diffusion probabilistic models. NeurIPS.
    Song, Meng and Ermon (2021). Denoising diffusion implicit models. ICLR.
    Sohl-Dickstein, Weiss, Maheswaranathan and Ganguli (2015). Deep unsupervised learning using
        nonequilibrium thermodynamics. ICML.

Example (how to use it in a training loop):
    >>> import torch
    >>> from deep.densities import get
    >>> from deep.diffusion.schedules import vp_betas
    >>> model = DDPM(2, betas=vp_betas(50), hidden=(32, 32))
    >>> result = fit(model, {"x": get("8gaussians").sample(256, generator=0)}, seed=0, steps=10, batch_size=64)
    >>> model.sample(8, generator=1).shape, model.ddim_sample(8, generator=1, num_steps=10, eta=0.0).shape
    (torch.Size([8, 2]), torch.Size([8, 2]))
    >>> model.bound(torch.zeros(3, 2), generator=0).shape  # a lower bound on log p(x) per point
    torch.Size([3])
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from deep.diffusion.nets import TimeMLP
from deep.diffusion.schedules import DiscreteSchedule, vp_betas
from inference.errors import DataError
from inference.rng import as_generator

__all__ = ["DDPM", "ddpm_loss", "fit", "ddim_timesteps", "VARIANCES"]

VARIANCES = ("posterior", "beta")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}")
    return value


def ddim_timesteps(T: int, num_steps: int) -> list[int]:
    """The subsequence :math:`0 = \\tau_0 < \\tau_1 < \\dots < \\tau_S = T`, evenly spaced (rounded)."""
    _positive_int(num_steps, "num_steps")
    if num_steps > T:
        raise DataError(f"num_steps ({num_steps}) cannot exceed the model's T = {T}")
    return [round(k * T / num_steps) for k in range(num_steps + 1)]


class DDPM(nn.Module):
    """A DDPM on vectors of size ``dim`` (module docstring).

    Args:
        dim: data dimension D.
        betas: the schedule :math:`\\beta_1..\\beta_T` (default ``vp_betas(1000)``, Ho's linear schedule
            as the VP SDE's grid).
        hidden: hidden widths of the default :class:`~deep.diffusion.nets.TimeMLP`.
        net: a module ``net(x (B, D), t (B,)) -> (B, D)`` predicting the noise, in place of the default.
        variance: ``"posterior"`` (:math:`\\tilde\\beta_i`) or ``"beta"`` (:math:`\\beta_i`).
    """

    def __init__(self, dim: int, betas=None, hidden=(128, 128, 128), *, net: nn.Module | None = None,
                 variance: str = "posterior", frequencies: int = 4):
        super().__init__()
        if variance not in VARIANCES:
            raise DataError(f"variance must be one of {VARIANCES}, got {variance!r}")
        self.dim, self.variance = _positive_int(dim, "dim"), variance
        self.schedule = DiscreteSchedule(vp_betas(1000) if betas is None else betas)
        self.T = self.schedule.T
        self.net = net if net is not None else TimeMLP(dim, hidden, frequencies=frequencies)
        var = self.schedule.posterior_variance.clone() if variance == "posterior" else self.schedule.betas.clone()
        var[0] = self.schedule.betas[0]  # p(x_0 | x_1): the decoder's variance beta_1
        self.model_std = var.sqrt()  # (T,) float64
        s = self.schedule  # per-step constants as Python floats for the samplers' loops
        self._eps_coef = (s.betas / (1 - s.alphas_cumprod).sqrt()).tolist()
        self._inv_sqrt_alpha = (1 / s.alphas.sqrt()).tolist()
        self._std = self.model_std.tolist()

    # ------------------------------------------------------------------ the network
    def _coef(self, values: torch.Tensor, i, like: torch.Tensor) -> torch.Tensor:
        """``values[i - 1]`` for integer steps ``i`` (scalar or (B,)), shaped (B, 1) in ``like``'s dtype."""
        i = torch.as_tensor(i, device=values.device)
        out = values.to(like.device)[i - 1].to(like.dtype)
        return out.reshape(-1, 1) if out.ndim else out

    def epsilon(self, x: torch.Tensor, i) -> torch.Tensor:
        """:math:`\\epsilon_\\theta(x_i, i)` for a step ``i`` in 1..T (int or (B,) long), (B, D)."""
        if isinstance(i, int) and not isinstance(i, bool):  # one step for the whole batch (the samplers)
            if not 1 <= i <= self.T:
                raise DataError(f"steps i must be integers in 1..{self.T}, got {i}")
            return self.net(x, 1 - i / self.T) if x.ndim == 2 else self.epsilon(x, torch.tensor(i))
        i = torch.as_tensor(i, device=x.device)
        if i.dtype.is_floating_point or (i < 1).any() or (i > self.T).any():
            raise DataError(f"steps i must be integers in 1..{self.T}, got {i.flatten()[:3].tolist()}")
        t = 1 - i.to(x.dtype) / self.T
        if x.ndim > 2:  # particle axes of the Pyro program: (..., B, D)
            flat = x.reshape(-1, x.shape[-1])
            t = t.expand(x.shape[:-1]).reshape(-1) if t.ndim else t
            return self.net(flat, t).reshape(x.shape)
        return self.net(x, t)

    def forward(self, x, i):
        return self.epsilon(x, i)

    def p_mean_std(self, x: torch.Tensor, i: int):
        """Mean (B, D) and standard deviation (scalar) of :math:`p_\\theta(x_{i-1} \\mid x_i)`."""
        eps = self.epsilon(x, i)
        mean = (x - self._eps_coef[i - 1] * eps) * self._inv_sqrt_alpha[i - 1]  # (B, D)
        return mean, self._std[i - 1]

    # ------------------------------------------------------------------ training
    def loss(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Ho et al.'s simplified loss on one minibatch; every draw from ``generator``."""
        x = _check_batch(batch["x"], self.dim, "batch['x']")
        i = torch.randint(1, self.T + 1, (x.shape[0],), generator=generator, device=x.device)  # (B,)
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)  # (B, D)
        ab = self._coef(self.schedule.alphas_cumprod, i, x)  # (B, 1)
        x_i = ab.sqrt() * x + (1 - ab).sqrt() * eps
        return ((self.epsilon(x_i, i) - eps) ** 2).sum(-1).mean()

    def config(self) -> dict:
        return {"dim": self.dim, "variance": self.variance, **self.schedule.config()}

    # ------------------------------------------------------------------ the Pyro program
    def model(self, x: torch.Tensor | None = None, n: int | None = None):
        """:math:`p(x_T) \\prod_i p_\\theta(x_{i-1} \\mid x_i)`; sites ``x_T`` ... ``x_0`` (``x_0`` observed
        when ``x`` (B, D) is given, else ``n`` points are simulated)."""
        import pyro
        import pyro.distributions as dist

        pyro.module("ddpm_net", self.net)
        if x is not None:
            x = _check_batch(x, self.dim, "x")
            n = x.shape[0]
        elif n is None:
            raise DataError("model needs data x or a number of points n")
        p = next(self.net.parameters())
        dtype = x.dtype if x is not None else p.dtype
        with pyro.plate("data", n):
            zeros = torch.zeros(n, self.dim, dtype=dtype, device=p.device)
            x_i = pyro.sample(f"x_{self.T}", dist.Normal(zeros, 1.0).to_event(1))
            for i in range(self.T, 0, -1):
                mean, std = self.p_mean_std(x_i, i)
                x_i = pyro.sample(f"x_{i - 1}", dist.Normal(mean, std).to_event(1), obs=x if i == 1 else None)
        return x_i

    def guide(self, x: torch.Tensor, n: int | None = None):
        """The forward chain :math:`q(x_{1:T} \\mid x_0) = \\prod_i q(x_i \\mid x_{i-1})` (no parameters)."""
        import pyro
        import pyro.distributions as dist

        x = _check_batch(x, self.dim, "x")
        s = self.schedule
        x_i = x
        with pyro.plate("data", x.shape[0]):
            for i in range(1, self.T + 1):
                scale = math.sqrt(s.betas[i - 1].item())
                x_i = pyro.sample(f"x_{i}", dist.Normal(math.sqrt(s.alphas[i - 1].item()) * x_i, scale).to_event(1))

    # ------------------------------------------------------------------ the bound in closed form
    def bound(self, x: torch.Tensor, generator, *, num_terms: int | None = None, chunk: int = 64) -> torch.Tensor:
        """The variational bound (module docstring) per data point, nats, (B,): a lower bound on
        :math:`\\log p(x)` in expectation. KL terms in closed form; each expectation over
        :math:`x_i \\sim q(x_i \\mid x_0)` by one draw from ``generator``. ``num_terms=None`` sums all
        :math:`T - 1` middle terms; an int ``K`` estimates their sum without bias by
        :math:`(T - 1)/K` times ``K`` terms drawn uniformly with replacement."""
        x = _check_batch(x, self.dim, "x")
        gen = as_generator(generator, x.device)
        s, D, B = self.schedule, self.dim, x.shape[0]
        dt = x.dtype
        ab_T = s.alphas_cumprod[-1].item()
        kl_T = 0.5 * ((1 - ab_T) + ab_T * x**2 - 1 - math.log(1 - ab_T)).sum(-1)  # (B,)
        with torch.no_grad():
            # decoder term log p(x_0 | x_1), x_1 ~ q(x_1 | x_0)
            x_1 = math.sqrt(s.alphas_cumprod[0].item()) * x + math.sqrt(1 - s.alphas_cumprod[0].item()) * torch.randn(
                x.shape, generator=gen, dtype=dt, device=x.device)
            mean, std = self.p_mean_std(x_1, 1)
            decoder = (-0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
            if self.T == 1:
                return decoder - kl_T
            if num_terms is None:
                steps = torch.arange(2, self.T + 1, device=x.device).repeat(B, 1)  # (B, T-1)
                weight = 1.0
            else:
                _positive_int(num_terms, "num_terms")
                steps = torch.randint(2, self.T + 1, (B, num_terms), generator=gen, device=x.device)  # (B, K)
                weight = (self.T - 1) / num_terms
            total = torch.zeros(B, dtype=dt, device=x.device)
            for start in range(0, steps.shape[1], chunk):
                i = steps[:, start:start + chunk]  # (B, c)
                total = total + self._kl_terms(x, i, gen).sum(-1)
        return decoder - weight * total - kl_T

    def _kl_terms(self, x, i, gen):
        """KL(q(x_{i-1} | x_i, x_0) || p(x_{i-1} | x_i)) at x_i ~ q(x_i | x_0), (B, c)."""
        s = self.schedule
        B, c = i.shape
        dev, dt = x.device, x.dtype

        def take(v):
            return v.to(dev)[i - 1].to(dt)[..., None]  # (B, c, 1)

        ab, beta, alpha = take(s.alphas_cumprod), take(s.betas), take(s.alphas)
        x0 = x[:, None, :].expand(B, c, self.dim)  # (B, c, D)
        x_i = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=gen, dtype=dt, device=dev)
        q_mean = take(s.coef_data) * x0 + take(s.coef_xt) * x_i
        q_var = take(s.posterior_variance)
        t = (1 - i.to(dt) / self.T).reshape(-1)
        eps = self.net(x_i.reshape(-1, self.dim), t).reshape(B, c, self.dim)
        p_mean = (x_i - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
        p_var = take(self.model_std) ** 2
        return 0.5 * (q_var / p_var + (q_mean - p_mean) ** 2 / p_var - 1 + torch.log(p_var / q_var)).sum(-1)

    # ------------------------------------------------------------------ sampling
    def _start(self, n, generator):
        _positive_int(n, "n")
        p = next(self.net.parameters())
        gen = as_generator(generator, p.device)
        return gen, torch.randn(n, self.dim, generator=gen, device=p.device, dtype=p.dtype)  # x_T, (n, D)

    @torch.no_grad()
    def sample(self, n: int, generator) -> torch.Tensor:
        """The ancestral pass of :meth:`model` (T network calls); the last step returns its mean."""
        gen, x = self._start(n, generator)
        for i in range(self.T, 0, -1):
            mean, std = self.p_mean_std(x, i)
            x = mean + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) if i > 1 else mean
        return x

    @torch.no_grad()
    def ddim_sample(self, n: int, generator, *, num_steps: int, eta: float = 0.0) -> torch.Tensor:
        """DDIM on ``num_steps`` evenly spaced steps (module docstring); ``eta`` in [0, 1]."""
        if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):
            raise DataError(f"eta must lie in [0, 1], got {eta!r}")
        taus = ddim_timesteps(self.T, num_steps)
        gen, x = self._start(n, generator)
        abar = torch.cat([torch.ones(1, dtype=torch.float64), self.schedule.alphas_cumprod])  # abar[0] = 1
        for k in range(num_steps, 0, -1):
            i, j = taus[k], taus[k - 1]
            a_i, a_j = abar[i].item(), abar[j].item()
            eps = self.epsilon(x, i)
            x0 = (x - math.sqrt(1 - a_i) * eps) / math.sqrt(a_i)
            sd = eta * math.sqrt((1 - a_j) / (1 - a_i) * (1 - a_i / a_j))
            x = math.sqrt(a_j) * x0 + math.sqrt(max(1 - a_j - sd**2, 0.0)) * eps
            if j > 0:
                x = x + sd * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        return x


def _check_batch(x, dim, name):
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != dim:
        raise DataError(f"{name} must be a (B, {dim}) tensor, got shape {tuple(getattr(x, 'shape', ()))}")
    return x


def ddpm_loss(module: DDPM, batch, generator) -> torch.Tensor:
    """``loss_fn`` for :class:`inference.train.LossStep`: ``module.loss(batch, generator)``."""
    return module.loss(batch, generator)


def fit(model: DDPM, data, *, seed: int, steps: int, batch_size: int = 256, lr: float = 1e-3, device=None,
        checkpoint=None, checkpoint_every: int | None = None, progress: bool = False):
    """Train ``model`` through the zoo's one loop (:func:`inference.train.fit`); returns its Result."""
    from inference.train import LossStep
    from inference.train import fit as train_fit

    step = LossStep(model, ddpm_loss, lr=lr, name="ddpm")
    return train_fit(step, data, seed=seed, steps=steps, batch_size=batch_size, device=device,
                     checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                     settings={"model": model.config()})
