"""genzoo's inference layer: learning and inference for any model.

Functions, not frameworks: each takes a model (or a program) and data and returns a
:class:`~inference.result.Result`. Modules: ``exact`` (enumeration / variable elimination),
``bp`` (belief propagation, junction tree), ``em``, ``svi``, ``mcmc``, ``langevin``, ``evaluate``.

JAX runs in float64 here (exact answers are compared to the last digit); set the environment
variable ``GENZOO_X64=0`` before import to keep JAX's float32 default.

Compiled programs are kept across processes in JAX's persistent compilation cache, in
``$GENZOO_CACHE`` if set, else ``$XDG_CACHE_HOME/genzoo/jax``, else ``~/.cache/genzoo/jax``: a second
``genzoo compare`` skips most of the first one's compilation. ``GENZOO_CACHE=off`` disables it.

Importing this package does not import JAX (1.4 s): the errors and the catalogue load without it,
so ``genzoo compare`` starts its worker processes before its own JAX import. Where JAX is not
imported yet, the settings above go to the environment variables JAX reads when it is
(``JAX_ENABLE_X64``, ``JAX_COMPILATION_CACHE_DIR``, ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``);
where it is, they go to ``jax.config``. A process started from this one inherits the variables, as
``genzoo compare``'s workers do; ``GENZOO_JAX_ENV`` names those set here, so that a child importing
this package derives them again from its own ``GENZOO_X64`` / ``GENZOO_CACHE``, while a variable the
user set is left alone. The package's classes (``Result``, ``Factor``, ...) load on first use.
"""

import os
import sys

from inference.lazy import lazy_attributes


def _cache_dir() -> str | None:
    from inference.io import cache_root

    root = cache_root()
    if root is None:
        return None
    return str(root if os.environ.get("GENZOO_CACHE") is not None else root / "jax")


_SET_HERE = "GENZOO_JAX_ENV"


def _configure_jax() -> None:
    """Float64 and the persistent compilation cache, through ``jax.config`` where JAX is imported,
    else through the environment variables it reads on import."""
    x64 = os.environ.get("GENZOO_X64", "1") != "0"
    cache = _cache_dir()
    jax = sys.modules.get("jax")
    if jax is None:
        for name in filter(None, os.environ.pop(_SET_HERE, "").split(",")):  # a parent's, derived again
            os.environ.pop(name, None)
        mine = {}
        if x64:
            mine["JAX_ENABLE_X64"] = "1"
        if cache is not None and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            mine["JAX_COMPILATION_CACHE_DIR"] = cache
            mine["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # every program: see below
        os.environ.update(mine)
        if mine:
            os.environ[_SET_HERE] = ",".join(mine)
        return
    if x64:
        jax.config.update("jax_enable_x64", True)
    if cache is not None and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", cache)
        # every program, however small: the eager operations a model's first trace dispatches compile
        # one small program each (~50 ms), and hundreds of them are much of a first call; read back,
        # each costs ~3 ms. Measured on SVI for the Bayesian mixture, second process: 15-21 s with a
        # 0.1 s threshold, 8-10 s with none.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_configure_jax()

_HOMES = {
    "Result": ".result",
    "Factor": ".factors",
    "FactorGraph": ".factors",
    "GenzooError": ".errors",
    "ModelError": ".errors",
    "EvidenceError": ".errors",
    "DataError": ".errors",
    "ParseError": ".errors",
    "MemoryBudgetError": ".errors",
}

__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
