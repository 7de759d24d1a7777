"""Diffusion, score-based and flow-matching models (torch), split as the flow-matching literature does.

What a model *is* apart from how it is *sampled or scored*:

==========================  ================================================================
``schedules``               noise schedules: continuous (CondOT, VP, sub-VP, VE) as
                            :math:`(\\alpha_t, \\sigma_t)` and their SDE coefficients; discrete
                            DDPM betas (linear, cosine, the VP grid)
``paths``                   probability paths :math:`x_t = \\alpha_t x_1 + \\sigma_t x_0` and the
                            conversions noise <-> data <-> score <-> velocity
``ode``                     the solver layer on torchdiffeq: sampling and log-likelihood by the
                            instantaneous change of variables (exact divergence or Hutchinson), NFE
``ddpm``                    DDPM as a Pyro program (its ELBO is the DDPM bound), DDIM
``sde``                     score SDEs: reverse-SDE Euler-Maruyama, predictor-corrector with
                            :mod:`inference.langevin` correctors, the probability-flow ODE
``flow_matching``           conditional flow matching, independent and minibatch-OT couplings
``nets``                    the time-conditioned MLP
``gaussian``                closed forms for Gaussian data (optimal denoiser, score, velocity)
``recipes``                 training and scoring on the 2-D densities (the catalogue's entries)
==========================  ================================================================

One time convention holds everywhere: :math:`t = 0` is noise, :math:`t = 1` is data (DDPM step
:math:`i` of :math:`T` is :math:`t = 1 - i/T`; the score-SDE papers' time is :math:`s = 1 - t`).
Every model trains through the zoo's one loop, :func:`inference.train.fit`.
"""

from deep.diffusion.ddpm import DDPM
from deep.diffusion.flow_matching import FlowMatching
from deep.diffusion.ode import ODESolver
from deep.diffusion.paths import AffineProbPath, CondOTProbPath, PathSample
from deep.diffusion.schedules import (CondOTScheduler, DiscreteSchedule, SchedulerOutput, SubVPScheduler,
                                      VEScheduler, VPScheduler, cosine_betas, linear_betas, vp_betas)
from deep.diffusion.sde import ScoreSDE

__all__ = ["DDPM", "ScoreSDE", "FlowMatching", "ODESolver", "AffineProbPath", "CondOTProbPath", "PathSample",
           "SchedulerOutput", "CondOTScheduler", "VPScheduler", "SubVPScheduler", "VEScheduler", "DiscreteSchedule",
           "linear_betas", "cosine_betas", "vp_betas"]
