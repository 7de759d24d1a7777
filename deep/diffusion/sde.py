"""Score-based generative models through SDEs (Song et al. 2021): VE, VP and sub-VP.

A scheduler (:mod:`~deep.diffusion.schedules`) fixes the noising SDE; in Song et al.'s time
:math:`s = 1 - t` it reads :math:`dx = f_s x\\,ds + g_s\\,dW`
(:func:`~deep.diffusion.schedules.sde_coefficients`). A network predicts the noise
:math:`\\hat\\epsilon_\\theta(x, t)`, trained by denoising score matching in its noise form
(:math:`\\lambda(t) = \\sigma_t^2`), which gives the score :math:`s_\\theta = -\\hat\\epsilon_\\theta/\\sigma_t`.
Three ways back from noise to data, all in this package's time (noise at 0, data at ``t_max``):

- **reverse SDE**, Euler-Maruyama (Anderson 1982): with step :math:`h`,
  :math:`x \\leftarrow x + (g^2 s_\\theta - f x) h + g\\sqrt h\\, z` (no noise on the last step);
- **predictor-corrector**: that predictor, then ``corrector_steps`` Langevin moves on
  :math:`p_t` from :func:`inference.langevin.ula_torch` with Song et al.'s step
  :math:`\\epsilon = 2 (r \\|z\\| / \\|s_\\theta\\|)^2` (``snr`` :math:`= r`);
- **probability-flow ODE** :math:`\\dot x = u_t(x)`, the velocity of the same path
  (:meth:`~deep.diffusion.paths.AffineProbPath.epsilon_to_velocity`), solved by
  :class:`~deep.diffusion.ode.ODESolver`; it also gives the exact log-likelihood of the ODE model
  (:meth:`ScoreSDE.log_prob`) by the instantaneous change of variables.

The noise end is :math:`N(0, \\sigma_0^2 I)` (:math:`\\sigma_0 = 1` for VP and sub-VP up to
:math:`e^{-10}`; :math:`\\sigma_{\\max}` for VE).

References:
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon and Poole (2021). Score-based generative modeling
        through stochastic differential equations. ICLR.
    Anderson (1982). Reverse-time diffusion equation models. Stochastic Processes and their Applications.
    Vincent (2011). A connection between score matching and denoising autoencoders. Neural Computation.

Example (how to use it in a training loop):
    >>> import torch
    >>> from deep.densities import get
    >>> from deep.diffusion.schedules import VPScheduler
    >>> sde = ScoreSDE(2, VPScheduler(), hidden=(32, 32))
    >>> result = fit(sde, {"x": get("8gaussians").sample(256, generator=0)}, seed=0, steps=10, batch_size=64)
    >>> sde.reverse_sde_sample(8, generator=1, num_steps=20).shape
    torch.Size([8, 2])
    >>> out = sde.log_prob(torch.zeros(3, 2), method="rk4", num_steps=10)
    >>> out.log_prob.shape, out.nfe
    (torch.Size([3]), 40)
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from deep.diffusion.nets import TimeMLP
from deep.diffusion.ode import LikelihoodOutput, ODESolver, SolveOutput
from deep.diffusion.paths import AffineProbPath
from deep.diffusion.schedules import Scheduler, VPScheduler, sde_coefficients
from inference.errors import DataError, ModelError
from inference.rng import as_generator

__all__ = ["ScoreSDE", "score_matching_loss", "fit"]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}")
    return value


class ScoreSDE(nn.Module):
    """A score model on the path of ``scheduler`` (VP, sub-VP or VE), its network predicting noise.

    Args:
        dim: data dimension D.
        scheduler: a :class:`~deep.diffusion.schedules.VPScheduler`, ``SubVPScheduler`` or ``VEScheduler``.
        hidden: hidden widths of the default :class:`~deep.diffusion.nets.TimeMLP`.
        net: ``net(x (B, D), t (B,)) -> (B, D)``, the noise prediction, in place of the default.
    """

    def __init__(self, dim: int, scheduler: Scheduler, hidden=(128, 128, 128), *, net: nn.Module | None = None,
                 frequencies: int = 4):
        super().__init__()
        if scheduler.name not in ("vp", "subvp", "ve"):
            raise ModelError(f"a score SDE needs a VP, sub-VP or VE scheduler, got {scheduler.name!r}")
        self.dim, self.scheduler = _positive_int(dim, "dim"), scheduler
        self.path = AffineProbPath(scheduler)
        self.t_max = scheduler.t_max
        self.net = net if net is not None else TimeMLP(dim, hidden, frequencies=frequencies)

    @classmethod
    def from_ddpm(cls, ddpm, beta_min: float = 0.1, beta_max: float = 20.0) -> "ScoreSDE":
        """The VP score model sharing ``ddpm``'s network, for a DDPM whose schedule is
        ``vp_betas(T, beta_min, beta_max)`` (its step :math:`i` is time :math:`1 - i/T`)."""
        vp = VPScheduler(beta_min, beta_max, t_max=1 - 1 / ddpm.T)
        s = torch.arange(1, ddpm.T + 1, dtype=torch.float64) / ddpm.T
        if not torch.allclose(ddpm.schedule.alphas_cumprod, torch.exp(vp.log_abar(s)), rtol=1e-8, atol=0):
            raise ModelError("the DDPM's schedule is not vp_betas(T, beta_min, beta_max): its network is not a VP score model")
        return cls(ddpm.dim, vp, net=ddpm.net)

    # ------------------------------------------------------------------ the network
    def epsilon(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.net(x, t)

    def forward(self, x, t):
        return self.epsilon(x, t)

    def score(self, x: torch.Tensor, t) -> torch.Tensor:
        """:math:`s_\\theta(x, t) = -\\hat\\epsilon_\\theta(x, t) / \\sigma_t`, (B, D)."""
        return self.path.epsilon_to_score(self.epsilon(x, t), x, t)

    def velocity(self, x: torch.Tensor, t) -> torch.Tensor:
        """The probability-flow ODE's drift :math:`u_t(x)` (noise at 0, data at 1), (B, D)."""
        return self.path.epsilon_to_velocity(self.epsilon(x, t), x, t)

    def loss(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Denoising score matching, noise form: :math:`E\\|\\hat\\epsilon_\\theta(x_t, t) - x_0\\|^2`,
        :math:`t \\sim U(0, t_{\\max})`; every draw from ``generator``."""
        x_1 = batch["x"]
        if x_1.ndim != 2 or x_1.shape[1] != self.dim:
            raise DataError(f"batch['x'] must have shape (B, {self.dim}), got {tuple(x_1.shape)}")
        dev, dt = x_1.device, x_1.dtype
        t = self.t_max * torch.rand(x_1.shape[0], generator=generator, device=dev, dtype=dt)  # (B,)
        x_0 = torch.randn(x_1.shape, generator=generator, device=dev, dtype=dt)  # (B, D)
        a, s, _, _ = self.scheduler._coefficients(t[:, None])  # (B, 1): t lies in [0, t_max] by construction
        return ((self.epsilon(a * x_1 + s * x_0, t) - x_0) ** 2).sum(-1).mean()

    def config(self) -> dict:
        return {"dim": self.dim, "scheduler": self.scheduler.config()}

    # ------------------------------------------------------------------ the noise end
    @property
    def prior_std(self) -> float:
        return self.scheduler.prior_std

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\log N(z; 0, \\sigma_0^2 I)`, (B,)."""
        s = self.prior_std
        return -0.5 * (z**2).sum(-1) / s**2 - z.shape[-1] * (math.log(s) + 0.5 * math.log(2 * math.pi))

    def _prior_draw(self, n, generator):
        _positive_int(n, "n")
        p = next(self.net.parameters())
        gen = as_generator(generator, p.device)
        return gen, self.prior_std * torch.randn(n, self.dim, generator=gen, device=p.device, dtype=p.dtype)

    def _grid(self, num_steps):
        _positive_int(num_steps, "num_steps")
        return [self.t_max * k / num_steps for k in range(num_steps + 1)]

    def _predictor(self, x, t, h, gen, last):
        tt = torch.tensor(t, dtype=torch.float64)
        f, g2 = (float(v) for v in sde_coefficients(self.scheduler, tt))
        mean = x + (g2 * self.score(x, t) - f * x) * h
        if last:
            return mean
        return mean + math.sqrt(g2 * h) * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)

    # ------------------------------------------------------------------ samplers
    @torch.no_grad()
    def reverse_sde_sample(self, n: int, generator, *, num_steps: int) -> torch.Tensor:
        """Euler-Maruyama on the reverse-time SDE from the noise end to ``t_max`` (module docstring)."""
        grid = self._grid(num_steps)
        gen, x = self._prior_draw(n, generator)
        for k in range(num_steps):
            x = self._predictor(x, grid[k], grid[k + 1] - grid[k], gen, last=k == num_steps - 1)
        return x

    @torch.no_grad()
    def pc_sample(self, n: int, generator, *, num_steps: int, snr: float = 0.16, corrector_steps: int = 1) -> torch.Tensor:
        """Predictor-corrector: an Euler-Maruyama predictor step, then ``corrector_steps`` unadjusted
        Langevin moves (:func:`inference.langevin.ula_torch`) targeting :math:`p_t` at the new time."""
        from inference.langevin import LangevinState, ula_torch

        if not (math.isfinite(snr) and snr > 0):
            raise DataError(f"snr must be positive, got {snr}")
        if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
            raise DataError(f"corrector_steps must be a non-negative integer, got {corrector_steps!r}")
        grid = self._grid(num_steps)
        gen, x = self._prior_draw(n, generator)
        for k in range(num_steps):
            last = k == num_steps - 1
            x = self._predictor(x, grid[k], grid[k + 1] - grid[k], gen, last=last)
            if last:
                break
            t = grid[k + 1]
            for _ in range(corrector_steps):
                score = self.score(x, t)
                z_norm = math.sqrt(self.dim)  # E||z|| for z ~ N(0, I_D), Song et al. use the batch's mean norm
                step = 2 * (snr * z_norm / float(score.norm(dim=-1).mean())) ** 2
                kernel = ula_torch(score_fn=lambda y, t=t: self.score(y, t), step_size=step)
                state = LangevinState(x, torch.full((), float("nan"), dtype=x.dtype), score)  # = kernel.init(x)
                x = kernel.step(gen, state)[0].position
        return x

    def ode_sample(self, n: int, generator, *, method: str = "dopri5", num_steps: int | None = None,
                   atol: float = 1e-5, rtol: float = 1e-5) -> SolveOutput:
        """The probability-flow ODE from the noise end to ``t_max``."""
        _, x = self._prior_draw(n, generator)
        with torch.no_grad():
            return ODESolver(self.velocity).sample(x, t0=0.0, t1=self.t_max, method=method, num_steps=num_steps,
                                                   atol=atol, rtol=rtol)

    def log_prob(self, x: torch.Tensor, *, method: str = "dopri5", num_steps: int | None = None, atol: float = 1e-5,
                 rtol: float = 1e-5, divergence_method: str = "exact", num_probes: int = 1,
                 generator=None) -> LikelihoodOutput:
        """:math:`\\log p(x)` (nats, (B,)) of the probability-flow ODE model at ``t_max``."""
        return ODESolver(self.velocity).log_likelihood(
            x, self.log_prior, t_data=self.t_max, t_noise=0.0, method=method, num_steps=num_steps, atol=atol,
            rtol=rtol, divergence_method=divergence_method, num_probes=num_probes, generator=generator)


def score_matching_loss(module: ScoreSDE, batch, generator) -> torch.Tensor:
    """``loss_fn`` for :class:`inference.train.LossStep`: ``module.loss(batch, generator)``."""
    return module.loss(batch, generator)


def fit(model: ScoreSDE, data, *, seed: int, steps: int, batch_size: int = 256, lr: float = 1e-3, device=None,
        checkpoint=None, checkpoint_every: int | None = None, progress: bool = False):
    """Train ``model`` through the zoo's one loop (:func:`inference.train.fit`); returns its Result."""
    from inference.train import LossStep
    from inference.train import fit as train_fit

    step = LossStep(model, score_matching_loss, lr=lr, name=f"score_{model.scheduler.name}")
    return train_fit(step, data, seed=seed, steps=steps, batch_size=batch_size, device=device,
                     checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                     settings={"model": model.config()})
