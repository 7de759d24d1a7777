"""genzoo's inference layer: learning and inference for any model.

Functions, not frameworks: each takes a model (or a program) and data and returns a
:class:`~inference.result.Result`. Modules: ``exact`` (enumeration / variable elimination),
``bp`` (belief propagation, junction tree), ``em``, ``svi``, ``mcmc``, ``langevin``, ``evaluate``.

JAX runs in float64 here (exact answers are compared to the last digit); set the environment
variable ``GENZOO_X64=0`` before import to keep JAX's float32 default.

Compiled programs are kept across processes in JAX's persistent compilation cache, in
``$GENZOO_CACHE`` if set, else ``$XDG_CACHE_HOME/genzoo/jax``, else ``~/.cache/genzoo/jax``: a second
``genzoo compare`` skips most of the first one's compilation. ``GENZOO_CACHE=off`` disables it.
"""

import os

import jax

if os.environ.get("GENZOO_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)


def _cache_dir() -> str | None:
    from inference.io import cache_root

    root = cache_root()
    if root is None:
        return None
    return str(root if os.environ.get("GENZOO_CACHE") is not None else root / "jax")


if _cache_dir() is not None and jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", _cache_dir())
    # every program, however small: the eager operations a model's first trace dispatches compile one
    # small program each (~50 ms), and hundreds of them are much of a first call; read back, each costs
    # ~3 ms. Measured on SVI for the Bayesian mixture, second process: 15-21 s with a 0.1 s threshold,
    # 8-10 s with none.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

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
