"""Typed errors shared by the whole zoo.

Every error names its culprit: the site, variable, state, argument or file line at fault.
They subclass the built-in exception a caller would expect (``ValueError``, ``LookupError``,
``MemoryError``, ``ImportError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


def _rebuilt(cls, args, state):
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class GenzooError(Exception):
    """Base class of every error genzoo raises on purpose.

    An error pickles with its message and attributes as they are, without calling ``__init__``
    again (whose arguments may differ from the message), so that one raised in a worker process
    (``genzoo compare --jobs``, Ray) arrives whole."""

    def __reduce__(self):
        return _rebuilt, (type(self), self.args, dict(self.__dict__))


class ModelError(GenzooError, ValueError):
    """A model is ill-specified: a CPT row that does not sum to one, a cycle, a missing parent."""


class EvidenceError(GenzooError, ValueError):
    """Evidence names an unknown variable or state, or has probability zero under the model."""


class DataError(GenzooError, ValueError):
    """Data of the wrong shape, range or dtype, or NaN where no missing values are allowed."""


class ParseError(GenzooError, ValueError):
    """A malformed file. ``path`` and ``line`` (1-based, or None) locate the fault."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class MemoryBudgetError(GenzooError, MemoryError):
    """An exact computation would need more memory than the budget allows."""


class UnknownNameError(GenzooError, LookupError):
    """An unknown model, method, dataset or option was asked for."""

    def __str__(self) -> str:  # LookupError quotes its message otherwise
        return str(self.args[0]) if self.args else ""


class MissingPackageError(GenzooError, ImportError):
    """An optional package that carries data or a peer is not installed."""

    def __init__(self, package: str, purpose: str):
        super().__init__(
            f"{purpose} needs the package '{package}', which is not installed: "
            f"pip install {package}"
        )
        self.package = package


class CheckpointError(GenzooError, ValueError):
    """A checkpoint is corrupted or belongs to another model."""


class MonotonicityError(GenzooError, ArithmeticError):
    """An algorithm that must never decrease its objective (EM) decreased it."""


class TrainingError(GenzooError, ArithmeticError):
    """A training run produced a non-finite loss. ``step`` (1-based) and ``rows`` (the minibatch's
    rows of the training data) locate it; the last good checkpoint, if any, is kept."""

    def __init__(self, message: str, step: int | None = None, rows: list | None = None):
        super().__init__(message)
        self.step = step
        self.rows = rows


class SweepError(GenzooError, RuntimeError):
    """Cells of a sweep failed (their worker died more often than ``max_retries``, or the method
    raised); the finished cells are kept and a new call with the same folder runs the others."""
