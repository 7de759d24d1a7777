"""Discrete factor graphs: the structural view of a model with finitely many states.

A factor graph is a set of discrete variables with named states and a list of factors
:math:`\\phi_f(x_{S_f})`, each stored as a log-table whose axes follow its ``scope``. The
unnormalised joint is

.. math::

    \\log \\tilde p(x) = \\sum_f \\log \\phi_f(x_{S_f}), \\qquad
    \\log Z = \\log \\sum_x \\exp \\log \\tilde p(x).

A Bayesian network's factors are its log-CPTs (then :math:`Z = 1`); a Markov random field's are
its log-potentials. Models that have such a structure expose it as ``model.factor_graph()``;
``inference.exact`` and ``inference.bp`` read it there, and trace plain NumPyro programs into one.

Evidence is a mapping ``variable -> state`` with states given by name or by index;
:meth:`FactorGraph.evidence_indices` checks it and turns it into indices.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from inference.errors import EvidenceError, ModelError


@dataclasses.dataclass(frozen=True)
class Factor:
    """One factor: ``log_table[i_1, ..., i_k] = log phi(scope[0] = i_1, ..., scope[k-1] = i_k)``."""

    scope: tuple[str, ...]
    log_table: np.ndarray

    def __post_init__(self):
        table = np.asarray(self.log_table)
        if table.ndim != len(self.scope):
            raise ModelError(
                f"factor over {self.scope}: table has {table.ndim} axes for {len(self.scope)} variables"
            )
        if len(set(self.scope)) != len(self.scope):
            raise ModelError(f"factor scope {self.scope} names a variable twice")
        object.__setattr__(self, "log_table", table)


@dataclasses.dataclass(frozen=True)
class FactorGraph:
    """Discrete variables with named states and the factors over them.

    Attributes:
        states: variable -> tuple of state names, in the order of the table axes; the
            variables are the keys, in the model's order (topological for a BN).
        factors: the factors; every scope variable must be in ``states``.
        directed: True for a Bayesian network's layout: ``factors[i]`` is the conditional of
            ``variables[i]`` given its parents, ``scope == (*parents, variables[i])``, its table
            normalised over the last axis, and the variables in topological order (so
            :math:`Z = 1` without evidence, and ancestral sampling is possible).
    """

    states: Mapping[str, tuple[str, ...]]
    factors: tuple[Factor, ...]
    directed: bool = False

    def __post_init__(self):
        object.__setattr__(self, "states", {v: tuple(s) for v, s in self.states.items()})
        object.__setattr__(self, "factors", tuple(self.factors))
        for factor in self.factors:
            for axis, var in enumerate(factor.scope):
                if var not in self.states:
                    raise ModelError(f"factor over {factor.scope} names unknown variable {var!r}")
                if factor.log_table.shape[axis] != len(self.states[var]):
                    raise ModelError(
                        f"factor over {factor.scope}: axis {axis} ({var!r}) has size "
                        f"{factor.log_table.shape[axis]}, but {var!r} has {len(self.states[var])} states"
                    )

        if self.directed:
            variables = list(self.states)
            if len(self.factors) != len(variables):
                raise ModelError(
                    f"a directed factor graph needs one factor per variable: "
                    f"{len(self.factors)} factors for {len(variables)} variables"
                )
            for var, factor in zip(variables, self.factors):
                if factor.scope[-1] != var:
                    raise ModelError(f"directed factor graph: the factor of {var!r} has scope {factor.scope}")

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.states)

    @property
    def cardinalities(self) -> dict[str, int]:
        return {v: len(s) for v, s in self.states.items()}

    def signature(self) -> tuple:
        """Hashable structure (scopes and shapes, not values): the key for cached plans."""
        return (
            tuple((v, len(s)) for v, s in self.states.items()),
            tuple(f.scope for f in self.factors),
            self.directed,
        )

    def state_index(self, variable: str, state) -> int:
        """Index of ``state`` (a name or an integer index) of ``variable``; EvidenceError if unknown."""
        if variable not in self.states:
            raise EvidenceError(f"unknown variable {variable!r}; known variables: {_preview(self.states)}")
        names = self.states[variable]
        if isinstance(state, (str, np.str_)):
            try:
                return names.index(str(state))
            except ValueError:
                raise EvidenceError(
                    f"unknown state {state!r} of variable {variable!r}; its states are {list(names)}"
                ) from None
        if isinstance(state, (bool, np.bool_)) or not isinstance(state, (int, np.integer)):
            raise EvidenceError(
                f"state of {variable!r} must be a state name or an integer index, got {state!r}"
            )
        if not 0 <= int(state) < len(names):
            raise EvidenceError(
                f"state index {int(state)} of variable {variable!r} is out of range 0..{len(names) - 1}"
            )
        return int(state)

    def evidence_indices(self, evidence: Mapping | None) -> dict[str, int]:
        """Evidence ``{variable: state name or index}`` -> ``{variable: index}``, checked."""
        if not evidence:
            return {}
        return {var: self.state_index(var, state) for var, state in evidence.items()}


def _preview(names: Sequence[str], k: int = 8) -> str:
    names = list(names)
    head = ", ".join(repr(n) for n in names[:k])
    return head + (f", ... ({len(names)} in all)" if len(names) > k else "")


def as_factor_graph(model, *args, **kwargs) -> FactorGraph:
    """The factor graph of ``model``: ``model.factor_graph()`` when the model has one, a
    :class:`FactorGraph` as is, otherwise the NumPyro program ``model`` traced with every discrete
    latent site enumerated (see :func:`inference.trace.trace_factor_graph`)."""
    if isinstance(model, FactorGraph):
        return model
    method = getattr(model, "factor_graph", None)
    if callable(method):
        return method()
    if callable(model):
        from inference.trace import trace_factor_graph

        return trace_factor_graph(model, *args, **kwargs)
    raise ModelError(
        f"{type(model).__name__} is neither a program nor a model with a factor_graph() method"
    )
