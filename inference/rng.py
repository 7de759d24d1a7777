"""Randomness as an explicit argument: one place that turns a seed into a key or a generator.

Every function of the zoo that draws random numbers takes its randomness as an argument: a JAX
key (``jax.random.key`` or ``jax.random.PRNGKey``) for JAX code, a ``torch.Generator`` for torch
code, and in both cases a plain non-negative ``int`` seed as a convenience. There is never a
default seed and never a read of a global random state.

- :func:`as_key` ``(seed_or_key) -> key``: an int becomes ``jax.random.PRNGKey(seed)``; a key
  passes through unchanged; anything else is a :class:`~inference.errors.DataError` naming the
  argument (instead of JAX's own ``TypeError`` from deep inside a traced function).
- :func:`as_generator` ``(seed_or_generator, device) -> torch.Generator``: the torch counterpart.
- :func:`int_seed` ``(seed_or_key) -> int``: a reproducible int drawn from a key, for libraries
  that only take ints (Pyro's ``set_rng_seed``, NumPy's ``default_rng``).

Example:
    >>> import jax
    >>> from inference.rng import as_key
    >>> bool((as_key(0) == jax.random.PRNGKey(0)).all())
    True
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from inference.errors import DataError

__all__ = ["as_key", "as_generator", "int_seed", "check_seed"]

_MAX_SEED = 2**63 - 1


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as a Python int in [0, 2^63), or a :class:`DataError` naming ``name``."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise DataError(f"{name} must be a non-negative integer, got {seed!r} of type {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise DataError(f"{name} must be an integer in [0, 2**63 - 1], got {seed}")
    return seed


def _is_key(x) -> bool:
    import jax
    import jax.numpy as jnp

    if not isinstance(x, (jax.Array, np.ndarray)):
        return False
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):  # a typed key (jax.random.key)
        return x.shape == ()
    return x.shape == (2,) and x.dtype == np.uint32  # a raw key (jax.random.PRNGKey)


def as_key(seed_or_key: Any, name: str = "key"):
    """A JAX PRNG key from an int seed or a key (returned unchanged)."""
    import jax

    if _is_key(seed_or_key):
        return seed_or_key
    if isinstance(seed_or_key, numbers.Integral) and not isinstance(seed_or_key, (bool, np.bool_)):
        return jax.random.PRNGKey(check_seed(seed_or_key, name))
    raise DataError(
        f"{name} must be a JAX PRNG key (jax.random.PRNGKey(seed)) or a non-negative int seed, "
        f"got {type(seed_or_key).__name__}"
        + (f" of shape {tuple(seed_or_key.shape)} and dtype {seed_or_key.dtype}" if hasattr(seed_or_key, "shape") else "")
    )


def int_seed(seed_or_key: Any, name: str = "key") -> int:
    """A reproducible int seed in [0, 2^31) from an int (returned as is) or a JAX key."""
    if isinstance(seed_or_key, numbers.Integral) and not isinstance(seed_or_key, (bool, np.bool_)):
        return check_seed(seed_or_key, name)
    import jax

    key = as_key(seed_or_key, name)
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def as_generator(seed_or_generator: Any, device: Any = "cpu", name: str = "generator"):
    """A ``torch.Generator`` on ``device`` from an int seed or a generator (returned unchanged)."""
    import torch

    if isinstance(seed_or_generator, torch.Generator):
        return seed_or_generator
    if isinstance(seed_or_generator, numbers.Integral) and not isinstance(seed_or_generator, (bool, np.bool_)):
        gen = torch.Generator(device=device)
        gen.manual_seed(check_seed(seed_or_generator, name))
        return gen
    raise DataError(
        f"{name} must be a torch.Generator or a non-negative int seed, got {type(seed_or_generator).__name__}"
    )
