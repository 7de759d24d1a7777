"""Normalizing flows as Pyro distributions: RealNVP, MAF, neural spline flows and Glow.

Each flow offers ``log_prob(x)`` (exact, nats), ``sample((n,), generator)``, ``transform`` (a
torch / Pyro ``Transform`` base -> data with ``.inv`` and ``log_abs_det_jacobian``) and ``dist()``
(a Pyro ``TransformedDistribution`` over a standard Normal base), so that
``pyro.sample("x", flow.dist(), obs=x)`` works in any program. See :mod:`deep.flows.base`.
"""

from deep.flows.base import Flow, FlowSequence, FlowTransform
from deep.flows.glow import Glow
from deep.flows.guide import FlowGuide
from deep.flows.maf import MAF
from deep.flows.nsf import NSF
from deep.flows.realnvp import RealNVP

__all__ = ["Flow", "FlowTransform", "FlowSequence", "RealNVP", "NSF", "MAF", "Glow", "FlowGuide"]
