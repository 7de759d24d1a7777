"""A package's names that load from its modules on first use (PEP 562).

``inference`` and ``pgm`` export classes from their modules without importing them all: ``import
inference`` must not bring JAX (``genzoo compare`` starts its workers first), ``from pgm.hmm import
HMM`` must not bring every model (the Bayesian network's networkx). Each package names where each of
its names lives, and gets its ``__getattr__`` and ``__dir__`` from :func:`lazy_attributes`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, homes: Mapping[str, str]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for the package named ``package``, whose names ``homes`` maps to
    modules relative to it (``{"HMM": ".hmm"}``: relative, so that a renamed copy of the package,
    :mod:`benchmarks.before_after`'s, imports itself). A name is imported once, then kept in the
    package; any other name raises ``AttributeError``."""

    def __getattr__(name):
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
