"""Running a NumPyro program as one compiled program, and knowing when that cannot be done.

Run eagerly, every JAX operation of a program is lowered and compiled as a program of its own,
hundreds for a model of a few lines and again in every process; staged under ``jax.jit`` they are
one. Three places stage what NumPyro or the zoo would otherwise run eagerly: the factor-graph trace
(:mod:`inference.trace`), the model check and the chains' start (:mod:`inference.mcmc`) and SVI's
set-up (:mod:`inference.svi`). Each falls back to the eager run where:

- the program needs concrete values (NumPy on a traced argument, Python control flow on a draw):
  tracing raises one of :data:`NEEDS_CONCRETE`;
- what the staged run leaves behind for later eager use (NumPyro's transforms, a guide's replay, a
  potential) holds a traced value: :func:`holds_tracer`.
"""

from __future__ import annotations

import functools

import jax

__all__ = ["NEEDS_CONCRETE", "ONCE", "holds_tracer", "jit_once"]

NEEDS_CONCRETE = (jax.errors.JAXTypeError, jax.errors.JAXIndexError)
"""What tracing a program under ``jax.jit`` raises when it needs concrete values."""

ONCE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
        "xla_cpu_use_fusion_emitters": False}
"""XLA's options for a program that runs once (a set-up, a check): compiled for the least compile
time, not the fastest code. SVI's set-up of the casino HMM, in a fresh process without a cache:
10.2 s of XLA with the defaults, 4.7-4.9 s with these (running it takes milliseconds either way).
The options are part of the persistent cache's key, so a later process finds the program as before."""


def jit_once(fn, **kwargs):
    """``jax.jit(fn)`` compiled with :data:`ONCE`, for a program run once per call of the caller."""
    return jax.jit(fn, compiler_options=ONCE, **kwargs)


def holds_tracer(obj, depth: int = 0) -> bool:
    """Whether a value traced in a finished compiled program is reachable from ``obj`` (through
    containers, partial functions, NumPyro's handlers, transforms, constraints and distributions):
    what the later steps would use of a compiled initialisation's leftovers."""
    from numpyro.distributions import Distribution
    from numpyro.distributions.constraints import Constraint
    from numpyro.distributions.transforms import Transform
    from numpyro.primitives import Messenger

    if isinstance(obj, jax.core.Tracer):
        return True
    if depth > 12:
        return False
    if isinstance(obj, dict):
        inner = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        inner = list(obj)
    elif isinstance(obj, functools.partial):
        inner = [obj.func, list(obj.args), obj.keywords]
    elif isinstance(obj, (Messenger, Transform, Constraint, Distribution)):
        inner = list(vars(obj).values())
    elif callable(obj) and getattr(obj, "__closure__", None):
        inner = [cell.cell_contents for cell in obj.__closure__ if cell.cell_contents is not obj]
    else:
        return False
    return any(holds_tracer(x, depth + 1) for x in inner)
