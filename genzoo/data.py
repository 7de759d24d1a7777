"""Offline datasets and readers for the formats users bring.

Nothing is downloaded: the default datasets ship inside installed packages (scikit-learn's
digits, the Bayesian networks bundled in the pgmpy wheel, gensim's test corpora) and are found
with :mod:`importlib`. Each loader returns arrays plus metadata; a data package that is not
installed raises :class:`~inference.errors.MissingPackageError` naming it.
"""

from __future__ import annotations

import gzip
import importlib.util
import pathlib
import struct
from typing import Any

import numpy as np

from inference.errors import DataError, MissingPackageError, ParseError, UnknownNameError


def _package_dir(package: str, purpose: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(package, purpose)
    return pathlib.Path(list(spec.submodule_search_locations)[0])


# --------------------------------------------------------------------------- Bayesian networks
def bn_networks() -> list[str]:
    """Names of the bnlearn networks shipped inside the pgmpy wheel (``asia``, ``alarm``, ...)."""
    folder = _package_dir("pgmpy", "the bundled Bayesian networks") / "utils" / "example_models"
    return sorted(p.name[: -len(".bif.gz")] for p in folder.glob("*.bif.gz"))


def bn_network_path(name: str) -> pathlib.Path:
    """Path of the ``.bif.gz`` file of the bnlearn network ``name`` inside the pgmpy wheel."""
    folder = _package_dir("pgmpy", "the bundled Bayesian networks") / "utils" / "example_models"
    path = folder / f"{name}.bif.gz"
    if not path.exists():
        raise UnknownNameError(f"unknown network {name!r}; available: {', '.join(bn_networks())}")
    return path
