"""GAN objectives: the non-saturating GAN, f-GAN's five f-divergences, WGAN-GP, and packing.

Every objective is a pair of losses on the critic's outputs, the critic's (minimised by the critic)
and the generator's (minimised by the generator), built by :func:`make_loss`. Packing (PacGAN) is
an option of every one: the critic then sees ``pack`` samples at a time, concatenated.

f-GAN (Nowozin et al. 2016). For a convex :math:`f` with :math:`f(1) = 0`, the f-divergence of the
data :math:`P` from the model :math:`Q` has the variational lower bound (Nguyen et al. 2010)

.. math::
    D_f(P \\,\\|\\, Q) = \\int q\\, f\\!\\left(\\frac pq\\right) dx
      \\;\\ge\\; \\sup_T\\; \\mathbb E_P[T(x)] - \\mathbb E_Q[f^*(T(x))],

with the convex conjugate :math:`f^*(t) = \\sup_u\\, ut - f(u)`; equality holds at
:math:`T^*(x) = f'(p(x)/q(x))`, so the optimal critic recovers the density ratio
:math:`p/q = (f')^{-1}(T^*)`. The critic's raw output :math:`V` passes through an output activation
:math:`T = g_f(V)` that keeps :math:`T` in the domain of :math:`f^*`:

================  ==============================  ====================  ==============================
name              :math:`f(u)`                    :math:`g_f(v)`        :math:`f^*(t)`
================  ==============================  ====================  ==============================
``kl``            :math:`u \\log u`                :math:`v`             :math:`e^{t-1}`
``reverse_kl``    :math:`-\\log u`                 :math:`-e^{-v}`       :math:`-1 - \\log(-t)`
``js``            :math:`u\\log u - (u+1)\\log\\frac{u+1}2`  :math:`\\log 2 - \\log(1 + e^{-v})`  :math:`-\\log(2 - e^t)`
``pearson``       :math:`(u-1)^2`                 :math:`v`             :math:`t^2/4 + t`
``hellinger``     :math:`(\\sqrt u - 1)^2`         :math:`1 - e^{-v}`    :math:`t / (1 - t)`
================  ==============================  ====================  ==============================

The critic minimises :math:`-(\\mathbb E_P[g_f(V)] - \\mathbb E_Q[f^*(g_f(V))])`; the generator
minimises the saddle objective's :math:`-\\mathbb E_Q[f^*(g_f(V))]` (``generator="saddle"``) or,
Nowozin et al.'s practical choice, :math:`-\\mathbb E_Q[g_f(V)]` (``generator="nonsaturating"``,
the default).

Non-saturating GAN (Goodfellow et al. 2014), ``"gan"``: critic logits :math:`V`, critic loss
:math:`\\mathbb E_P[\\mathrm{softplus}(-V)] + \\mathbb E_Q[\\mathrm{softplus}(V)]`, generator loss
:math:`\\mathbb E_Q[\\mathrm{softplus}(-V)] = -\\mathbb E_Q \\log \\sigma(V)`. The f-GAN ``"js"``
losses differ from these by the constants :math:`2 \\log 2` (critic) and :math:`\\log 2` (generator,
non-saturating form): the same gradients, hence the same training run.

WGAN-GP (Gulrajani et al. 2017), ``"wgan_gp"``: critic loss
:math:`\\mathbb E_Q[V] - \\mathbb E_P[V] + \\lambda\\, \\mathbb E_{\\hat x}[(\\|\\nabla_{\\hat x} V(\\hat x)\\|_2 - 1)^2]`
on :math:`\\hat x = \\epsilon x + (1 - \\epsilon)\\tilde x`, :math:`\\epsilon \\sim U[0, 1]` per pair,
:math:`\\lambda = 10`; generator loss :math:`-\\mathbb E_Q[V]`; five critic steps per generator step.

Packing (Lin et al. 2018): with ``pack = m`` the critic reads :math:`m` samples concatenated,
``(B, D) -> (B / m, m D)``, all real or all fake; the batch size must be a multiple of ``m``.

R1 (Mescheder, Geiger and Nowozin 2018), an option of every loss (``r1 = gamma > 0``): the critic's
loss gains the zero-centred penalty :math:`\frac\gamma2\, \mathbb E_P \|\nabla_x V(x)\|_2^2` on
the data (packed inputs where the loss packs). At an equilibrium where the model matches the data the
optimal critic is constant on the data's support, so the penalty is zero there and the equilibrium is
kept; away from it the penalty damps the rotation of the simultaneous gradient field, which otherwise
circles the equilibrium or spirals away from it. Their Theorem 4.1 proves local convergence for
objectives :math:`\mathbb E_Q[h(V)] + \mathbb E_P[h(-V)]` with :math:`h'(0) \ne 0`,
:math:`h''(0) < 0`, the GAN's among them; for the other f-GANs here its benefit is measured
(``benchmarks/gan_ebm.py --protocol``), not proved: without it their critics drive :math:`e^{\pm V}`
into overflow. The penalty is computed on the critic's raw output :math:`V`, before the output activation.

References:
    Goodfellow et al. (2014). Generative adversarial nets. NeurIPS.
    Nguyen, Wainwright and Jordan (2010). Estimating divergence functionals and the likelihood
        ratio by convex risk minimization. IEEE Trans. Inf. Theory.
    Nowozin, Cseke and Tomioka (2016). f-GAN: training generative neural samplers using
        variational divergence minimization. NeurIPS.
    Gulrajani, Ahmed, Arjovsky, Dumoulin and Courville (2017). Improved training of Wasserstein
        GANs. NeurIPS.
    Lin, Khetan, Fanti and Oh (2018). PacGAN: the power of two samples in generative adversarial
        networks. NeurIPS.
    Mescheder, Geiger and Nowozin (2018). Which training methods for GANs do actually converge? ICML.

Example:
    >>> import torch
    >>> loss = make_loss("js", pack=2)
    >>> critic = torch.nn.Linear(4, 1)                  # reads 2 packed 2-D samples
    >>> real, fake = torch.randn(8, 2), torch.randn(8, 2)
    >>> loss.critic_loss(critic, real, fake, torch.Generator().manual_seed(0)).shape
    torch.Size([])
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch.nn import functional as F

from inference.errors import DataError, UnknownNameError

__all__ = ["FDivergence", "F_DIVERGENCES", "LOSSES", "GANLoss", "make_loss", "pack", "gradient_penalty",
           "r1_penalty", "f_divergence_bound"]


@dataclasses.dataclass(frozen=True)
class FDivergence:
    """One f-divergence of f-GAN: ``f(u)``, the output activation ``g_f(v)``, the conjugate
    ``f*(t)``, and ``ratio(t) = (f')^{-1}(t)``, the density ratio p/q an optimal critic output t implies.

    ``conjugate_of_activation(v)`` is :math:`f^*(g_f(v))` written in ``v`` directly where that removes
    a cancellation: reverse KL :math:`v - 1` (the composition takes the log of :math:`e^{-v}`),
    Jensen-Shannon :math:`\\mathrm{softplus}(v) - \\log 2`, squared Hellinger :math:`e^v - 1` (the
    composition divides by :math:`1 - t` with :math:`t = g_f(v) = 1 - e^{-v}`, and t rounds to 1 in
    float32 once :math:`e^{-v}` is below half the spacing of floats under 1, from v = 17.33 on, where
    the term is infinite and :math:`e^v - 1` is 3.4e7). None: the composition itself."""

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    activation: Callable[[torch.Tensor], torch.Tensor]
    conjugate: Callable[[torch.Tensor], torch.Tensor]
    ratio: Callable[[torch.Tensor], torch.Tensor]
    conjugate_of_activation: Callable[[torch.Tensor], torch.Tensor] | None = None

    def fake_term(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`f^*(g_f(v))`, the bound's term on model samples, in its stable form."""
        if self.conjugate_of_activation is not None:
            return self.conjugate_of_activation(v)
        return self.conjugate(self.activation(v))


_LOG2 = math.log(2.0)

F_DIVERGENCES: dict[str, FDivergence] = {
    "kl": FDivergence(
        "kl", f=lambda u: torch.xlogy(u, u), activation=lambda v: v,
        conjugate=lambda t: torch.exp(t - 1), ratio=lambda t: torch.exp(t - 1)),
    "reverse_kl": FDivergence(
        "reverse_kl", f=lambda u: -torch.log(u), activation=lambda v: -torch.exp(-v),
        conjugate=lambda t: -1 - torch.log(-t), ratio=lambda t: -1 / t,
        conjugate_of_activation=lambda v: v - 1),
    "js": FDivergence(
        # f'(u) = log(2u / (1 + u)), so u = e^t / (2 - e^t); with t = g(v), e^t = 2 sigmoid(v) and
        # f*(g(v)) = -log(2 sigmoid(-v)) = softplus(v) - log 2 (conjugate_of_activation).
        "js", f=lambda u: torch.xlogy(u, u) - (u + 1) * torch.log((u + 1) / 2),
        activation=lambda v: _LOG2 - F.softplus(-v),
        conjugate=lambda t: -torch.log(2 - torch.exp(t)), ratio=lambda t: torch.exp(t) / (2 - torch.exp(t)),
        conjugate_of_activation=lambda v: F.softplus(v) - _LOG2),
    "pearson": FDivergence(
        "pearson", f=lambda u: (u - 1) ** 2, activation=lambda v: v,
        conjugate=lambda t: t * t / 4 + t, ratio=lambda t: t / 2 + 1),
    "hellinger": FDivergence(
        "hellinger", f=lambda u: (torch.sqrt(u) - 1) ** 2, activation=lambda v: 1 - torch.exp(-v),
        conjugate=lambda t: t / (1 - t), ratio=lambda t: 1 / (1 - t) ** 2,
        conjugate_of_activation=torch.expm1),
}

LOSSES = ("gan", *F_DIVERGENCES, "wgan_gp")


def _f_divergence(name: str) -> FDivergence:
    if name not in F_DIVERGENCES:
        raise UnknownNameError(f"unknown f-divergence {name!r}; known: {', '.join(F_DIVERGENCES)}")
    return F_DIVERGENCES[name]


def pack(x: torch.Tensor, m: int, name: str = "batch") -> torch.Tensor:
    """PacGAN's packing: ``(B, D) -> (B / m, m D)``, consecutive rows side by side."""
    if x.dim() != 2:
        raise DataError(f"{name} must have shape (B, D), got {tuple(x.shape)}")
    if x.shape[0] % m:
        raise DataError(f"{name} has {x.shape[0]} rows, not a multiple of pack={m}")
    return x.reshape(x.shape[0] // m, m * x.shape[1])  # (B/m, mD)


def gradient_penalty(critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """:math:`\\mathbb E[(\\|\\nabla_{\\hat x} V(\\hat x)\\|_2 - 1)^2]` on :math:`\\hat x = \\epsilon x +
    (1-\\epsilon)\\tilde x`, one :math:`\\epsilon \\sim U[0, 1]` per row (rows already packed)."""
    eps = torch.rand(real.shape[0], 1, generator=generator, device=real.device, dtype=real.dtype)  # (B, 1)
    mixed = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)  # (B, D)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)  # (B, D)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def r1_penalty(critic: torch.nn.Module, real: torch.Tensor) -> torch.Tensor:
    """:math:`\mathbb E_P \|\nabla_x V(x)\|_2^2` on the data rows ``real`` (already packed), with
    the graph kept for the critic's backward pass (R1 is this times :math:`\gamma / 2`)."""
    x = real.detach().requires_grad_(True)  # (B, D)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)  # (B, D)
    return grad.pow(2).sum(dim=1).mean()


@dataclasses.dataclass(frozen=True)
class GANLoss:
    """The critic's and the generator's losses of one objective (see the module docstring).

    Attributes:
        name: one of :data:`LOSSES`.
        pack: samples per critic input (1: no packing).
        generator_form: ``"nonsaturating"`` or ``"saddle"`` (f-GAN only).
        penalty: :math:`\\lambda` of WGAN-GP.
        critic_steps: critic updates per generator update (5 for WGAN-GP, else 1).
        r1: :math:`\gamma` of the R1 penalty on the data (0: none).
    """

    name: str
    pack: int = 1
    generator_form: str = "nonsaturating"
    penalty: float = 10.0
    critic_steps: int = 1
    r1: float = 0.0

    def _critic(self, critic, x, which):
        return critic(pack(x, self.pack, which)).squeeze(-1)  # (B/m,)

    def critic_loss(self, critic, real, fake, generator: torch.Generator) -> torch.Tensor:
        """The critic's loss on a real and a fake batch (both (B, D)); ``generator`` draws WGAN-GP's mixing."""
        loss = self._critic_objective(critic, real, fake, generator)
        if self.r1:
            loss = loss + 0.5 * self.r1 * r1_penalty(critic, pack(real, self.pack, "real batch"))
        return loss

    def _critic_objective(self, critic, real, fake, generator):
        v_real, v_fake = self._critic(critic, real, "real batch"), self._critic(critic, fake, "fake batch")
        if self.name == "gan":
            return F.softplus(-v_real).mean() + F.softplus(v_fake).mean()
        if self.name == "wgan_gp":
            gp = gradient_penalty(critic, pack(real, self.pack), pack(fake, self.pack), generator)
            return v_fake.mean() - v_real.mean() + self.penalty * gp
        return -f_divergence_bound(self.name, v_real, v_fake)

    def generator_loss(self, critic, fake) -> torch.Tensor:
        """The generator's loss on a fake batch (B, D) that carries the generator's graph."""
        v = self._critic(critic, fake, "fake batch")
        if self.name == "gan":
            return F.softplus(-v).mean()
        if self.name == "wgan_gp":
            return -v.mean()
        div = F_DIVERGENCES[self.name]
        if self.generator_form == "saddle":
            return -div.fake_term(v).mean()
        return -div.activation(v).mean()


def f_divergence_bound(name: str, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
    """The variational bound :math:`\\mathbb E_P[g_f(V)] - \\mathbb E_Q[f^*(g_f(V))]` from raw critic
    outputs on data (``v_real``) and model samples (``v_fake``); at most :math:`D_f(P \\| Q)` in expectation."""
    div = _f_divergence(name)
    return div.activation(v_real).mean() - div.fake_term(v_fake).mean()


def make_loss(name: str, *, pack: int = 1, generator_form: str = "nonsaturating", penalty: float = 10.0,
              critic_steps: int | None = None, r1: float = 0.0) -> GANLoss:
    """The objective ``name`` (one of :data:`LOSSES`), packed ``pack`` samples to a critic input,
    with the R1 penalty of weight ``r1`` on the critic (0: none).

    ``critic_steps`` defaults to 5 for WGAN-GP (Gulrajani et al.) and 1 otherwise.
    """
    if name not in LOSSES:
        raise UnknownNameError(f"unknown GAN loss {name!r}; known: {', '.join(LOSSES)}")
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise DataError(f"pack must be a positive integer, got {pack!r}")
    if generator_form not in ("nonsaturating", "saddle"):
        raise UnknownNameError(f"generator_form must be 'nonsaturating' or 'saddle', got {generator_form!r}")
    if not (math.isfinite(penalty) and penalty >= 0):
        raise DataError(f"penalty must be a non-negative number, got {penalty}")
    if isinstance(r1, bool) or not isinstance(r1, (int, float)) or not (math.isfinite(r1) and r1 >= 0):
        raise DataError(f"r1 must be a non-negative number, got {r1!r}")
    steps = (5 if name == "wgan_gp" else 1) if critic_steps is None else critic_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DataError(f"critic_steps must be a positive integer, got {critic_steps!r}")
    return GANLoss(name, pack, generator_form, float(penalty), steps, float(r1))
