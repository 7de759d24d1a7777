"""A flow guide: the posterior of any Pyro program's continuous latent sites as a normalizing flow.

Pyro's automatic guides flatten all latent sites of a program into one unconstrained vector
:math:`\\zeta \\in \\mathbb R^D` (each site through the bijection to its support, whose
log-Jacobian enters the bound) and fit a family :math:`q_\\phi(\\zeta)`. :class:`FlowGuide` takes
Pyro's ``AutoNormalizingFlow`` machinery (the flattening, the constraints, the per-site unpacking)
and puts one of *our* flows in it:

.. math::

    \\zeta = \\mu + \\sigma \\odot f_\\phi(\\epsilon), \\quad \\epsilon \\sim \\mathcal N(0, I_D),

:math:`f_\\phi` a RealNVP, MAF or neural spline flow (identity at initialisation) followed by an
elementwise affine map started at the model's initial point :math:`\\mu` (``init_loc_fn``, the
prior median by default) with scale :math:`\\sigma = 0.1` (``init_scale``), as Pyro's mean-field
``AutoNormal`` starts. The guide is a Pyro program like any other: give it to
:func:`inference.svi.fit` (``guide=FlowGuide(model, ...)``) or to ``pyro.infer.SVI``. Its ELBO
gradient is the reparameterised one; with IWAE, pass ``dreg=False`` (DReG needs a guide whose
parameters can be held fixed, which a flow's network cannot).

References:
    Rezende and Mohamed (2015). Variational inference with normalizing flows. ICML.
    Kingma, Salimans, Jozefowicz, Chen, Sutskever and Welling (2016). Improved variational inference
        with inverse autoregressive flow. NeurIPS.

Example:
    >>> import pyro, pyro.distributions as dist, torch
    >>> from deep.flows.guide import FlowGuide
    >>> def model(y):
    ...     mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...     with pyro.plate("data", y.shape[0]):
    ...         pyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)
    >>> guide = FlowGuide(model, "realnvp", hidden=(8,), num_layers=2, seed=0)
    >>> guide(torch.zeros(3, 2))["mu"].shape
    torch.Size([2])
"""

from __future__ import annotations

import math
from typing import Sequence

import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoContinuous, AutoNormalizingFlow
from pyro.infer.autoguide.initialization import init_to_median
from torch import nn

from deep.flows.base import FlowSequence, FlowTransform
from deep.flows.fit import FLOWS_2D, make_flow
from inference.errors import ModelError, UnknownNameError

__all__ = ["FlowGuide", "ElementwiseAffine", "funnel", "eight_schools"]


class ElementwiseAffine(FlowTransform):
    """:math:`x = \\mu + e^{s} \\odot z` with learned :math:`\\mu, s` (D,); log-det :math:`\\sum s`."""

    def __init__(self, loc: torch.Tensor, scale: float = 1.0):
        super().__init__()
        if not float(scale) > 0:
            raise ModelError(f"init_scale must be positive, got {scale!r}")
        self.loc = nn.Parameter(loc.detach().clone())
        self.log_scale = nn.Parameter(torch.full_like(self.loc, math.log(float(scale))))

    def forward_and_log_det(self, z):
        return self.loc + torch.exp(self.log_scale) * z, self.log_scale.sum().expand(z.shape[:-1])

    def inverse_and_log_det(self, x):
        return (x - self.loc) * torch.exp(-self.log_scale), (-self.log_scale.sum()).expand(x.shape[:-1])


class FlowGuide(AutoNormalizingFlow):
    """A Pyro autoguide whose family is one of our flows (see the module docstring).

    Args:
        model: the Pyro program (its continuous latent sites get the flow posterior).
        flow: ``"nsf"``, ``"realnvp"`` or ``"maf"`` (RealNVP and NSF need at least 2 latent
            dimensions; MAF works from 1).
        hidden, num_layers, bins, bound: the flow's architecture (see :func:`deep.flows.fit.make_flow`).
        init_scale: the initial posterior scale :math:`\\sigma` in unconstrained space.
        init_loc_fn: Pyro's per-site initialisation (the initial :math:`\\mu`).
        seed: an int or ``torch.Generator`` for the flow's initial weights.
    """

    def __init__(self, model, flow: str = "nsf", *, hidden: Sequence[int] = (32, 32), num_layers: int = 4,
                 bins: int = 8, bound: float = 5.0, init_scale: float = 0.1, init_loc_fn=init_to_median, seed):
        if flow not in FLOWS_2D:
            raise UnknownNameError(f"unknown flow {flow!r} for a guide; choose one of {FLOWS_2D}")
        if not float(init_scale) > 0:
            raise ModelError(f"init_scale must be positive, got {init_scale!r}")
        AutoContinuous.__init__(self, model, init_loc_fn=init_loc_fn)  # our init_loc_fn, not init_to_feasible
        self._init_transform_fn = self._make_transform
        self.transform = None
        self.flow_kind, self.init_scale, self.seed = flow, float(init_scale), seed
        self.flow_options = {"hidden": tuple(hidden), "num_layers": num_layers, "bins": bins, "bound": bound}

    def get_base_dist(self):
        ref = next(self.transform.parameters())
        zeros = torch.zeros(self.latent_dim, dtype=ref.dtype, device=ref.device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def get_posterior(self, *args, **kwargs):
        # Pyro's AutoNormalizingFlow.get_posterior keeps a weight of the flow as a "prototype" attribute,
        # which PyroModule registers as a second parameter name for the same tensor (so an optimiser
        # would update it twice per step); here the base distribution reads dtype and device instead.
        if self.transform is None:
            self.transform = self._make_transform(self.latent_dim)
        return dist.TransformedDistribution(self.get_base_dist(), self.transform)

    def _make_transform(self, latent_dim: int) -> FlowTransform:
        if latent_dim < 2 and self.flow_kind != "maf":
            raise ModelError(f"a {self.flow_kind} guide couples at least 2 latent dimensions, the model has "
                             f"{latent_dim}: use flow='maf'")
        inner = make_flow(self.flow_kind, latent_dim, seed=self.seed, **self.flow_options)
        return FlowSequence([inner.transform, ElementwiseAffine(self._init_loc(), self.init_scale)])


#   v ~ N(0, 3^2)
#   |
#   v
#   x[i] ~ N(0, e^v)     i = 1..D
def funnel(dim: int = 9):
    """Neal's funnel, a Pyro program with no data and a hard posterior (the prior itself):
    :math:`v \\sim \\mathcal N(0, 3^2)`, :math:`x_i \\mid v \\sim \\mathcal N(0, e^{v})`. Its
    moments are closed-form: :math:`\\mathrm{sd}(v) = 3`, :math:`\\mathrm{sd}(x_i) = e^{9/4}`
    (:math:`\\mathrm{Var}\\, x_i = \\mathbb E e^{v} = e^{9/2}`), all means 0, and :math:`\\log Z = 0`,
    so a guide's :math:`-\\mathrm{ELBO}` is its :math:`\\mathrm{KL}(q \\| p)`.

    References:
        Neal (2003). Slice sampling. Annals of Statistics (section 8).
    """
    import pyro
    import pyro.distributions as pdist

    v = pyro.sample("v", pdist.Normal(torch.tensor(0.0), 3.0))
    pyro.sample("x", pdist.Normal(torch.zeros(int(dim)), torch.exp(v / 2)).to_event(1))


def eight_schools(sigma, y=None):
    """Rubin's eight schools in the centred form, as a Pyro program: the same model as
    :class:`pgm.conjugate.EightSchools` (``centered=True``), whose funnel between :math:`\\tau` and
    :math:`\\theta` makes a mean-field guide collapse :math:`\\tau`; a flow guide can bend with it.

    .. math::
        \\mu \\sim \\mathcal N(0, 5^2), \\quad \\tau \\sim \\mathrm{HalfCauchy}(5), \\quad
        \\theta_j \\sim \\mathcal N(\\mu, \\tau^2), \\quad y_j \\sim \\mathcal N(\\theta_j, \\sigma_j^2)

    ``sigma`` and ``y`` are (J,) arrays (``pgm.conjugate.EightSchools.data()``).
    """
    import pyro
    import pyro.distributions as pdist

    sigma = torch.as_tensor(sigma, dtype=torch.get_default_dtype())
    y = None if y is None else torch.as_tensor(y, dtype=sigma.dtype)
    mu = pyro.sample("mu", pdist.Normal(torch.tensor(0.0, dtype=sigma.dtype), 5.0))
    tau = pyro.sample("tau", pdist.HalfCauchy(torch.tensor(5.0, dtype=sigma.dtype)))
    with pyro.plate("schools", sigma.shape[0]):
        theta = pyro.sample("theta", pdist.Normal(mu, tau))
        pyro.sample("y", pdist.Normal(theta, sigma), obs=y)
