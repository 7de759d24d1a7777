"""genzoo's inference layer: learning and inference for any model.

Functions, not frameworks: each takes a model (or a program) and data and returns a
:class:`~inference.result.Result`. Modules: ``exact`` (enumeration / variable elimination),
``bp`` (belief propagation, junction tree), ``em``, ``svi``, ``mcmc``, ``langevin``, ``evaluate``.

JAX runs in float64 here (exact answers are compared to the last digit); set the environment
variable ``GENZOO_X64=0`` before import to keep JAX's float32 default.
"""

import os

import jax

if os.environ.get("GENZOO_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)

from inference.errors import (  # noqa: E402
    DataError,
    EvidenceError,
    GenzooError,
    MemoryBudgetError,
    ModelError,
    ParseError,
)
from inference.factors import Factor, FactorGraph  # noqa: E402
from inference.result import Result  # noqa: E402

__all__ = [
    "Result",
    "Factor",
    "FactorGraph",
    "GenzooError",
    "ModelError",
    "EvidenceError",
    "DataError",
    "ParseError",
    "MemoryBudgetError",
]
