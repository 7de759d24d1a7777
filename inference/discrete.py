"""The discrete core: one checked problem, one evidence restriction, one set of checks.

Every discrete method (exact contraction, junction tree, loopy BP, Gibbs, likelihood weighting,
mean field, the chain kernels) starts from the same steps, written once here:

1. **The problem** (:func:`prepare`): the model becomes a :class:`~inference.factors.FactorGraph`
   (a :class:`~inference.protocols.FactorGraphModel`'s own, a graph as is, or a NumPyro program
   traced by :mod:`inference.trace`) and the evidence ``{variable: state}`` becomes state indices
   (:class:`~inference.errors.EvidenceError` naming an unknown variable or state).
2. **The tables** (:func:`check_tables`): float64 log-tables; a NaN or :math:`+\\infty` entry (a
   NaN, negative or infinite probability before the log) raises
   :class:`~inference.errors.ModelError` naming the factor.
3. **Evidence restriction** (:func:`restrict`): every axis of an observed variable is indexed at
   its value, :math:`\\phi_f(x_{S_f \\setminus E}, e_{S_f \\cap E})`, for NumPy arrays and for JAX
   arrays inside a jitted function alike (a batch of evidence rows: :func:`restrict_rows`).
4. **The zero-evidence check** (:func:`check_evidence`): :math:`\\log Z(e) = -\\infty` means the
   evidence has probability zero: :class:`~inference.errors.EvidenceError` naming the evidence (or
   the data row, the sequence); NaN means broken tables: ModelError. No NaN escapes a method.
5. **The memory limit** (:func:`check_budget`): one parameter, ``memory_budget``, in bytes of
   float64 tables, for every exact method; a plan over it is refused before anything is allocated.

**Probability space or log space.** One rule for every pass (:data:`LINEAR_RANGE`): a pass runs on
probabilities, with no exp or log per entry, where a bound proves that every number whose loss
would change the answer by more than rounding stays within :math:`[e^{-L}, e^{L}]`,
:math:`L = 650` nats; otherwise it runs in log space (a log-sum-exp per step). Why 650: the
smallest normal float64 is :math:`e^{-708.4}`, so a margin of :math:`e^{-58} \\approx 6 \\cdot
10^{-26}` separates :math:`e^{-L}` from underflow, far below the rounding of any sum of fewer
than :math:`10^{9}` terms (:math:`2^{-52} \\approx 2 \\cdot 10^{-16}` each). The contraction engine
(:meth:`inference.contract.Program.linear_marginals`) bounds every message's largest and smallest
non-zero entry and keeps both within :math:`\\pm L`, rescaling where needed. A chain bounds the
*relative* loss instead: with every transition probability at least :math:`e^{-R}` each step's sum
is at least :math:`e^{-R}`, a term lost to underflow is below :math:`e^{-708} e^{R}` of it, and
later evidence can raise it by at most another :math:`e^{R}`; so :math:`2R \\le L`, i.e.
:math:`R = L / 2 = 325` nats (:data:`inference.chain.SCALED_RANGE`), keeps the relative error below
:math:`T K e^{-58}`.

References:
    Koller and Friedman (2009). Probabilistic Graphical Models, chapters 9 and 10.
    Goldberg (1991). What every computer scientist should know about floating-point arithmetic.

Example:
    >>> import numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference.discrete import prepare, restrict, evidence_columns
    >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
    ...                 [Factor(("a", "b"), np.log([[0.1, 0.9], [0.4, 0.6]]))])
    >>> problem = prepare(g, {"b": "1"})
    >>> problem.evidence, problem.evidence_vars
    ({'b': 1}, ('b',))
    >>> cols = evidence_columns(problem.graph.signature()[1], problem.evidence_vars)
    >>> np.exp(restrict(problem.tables, cols, problem.evidence_values)[0])
    array([0.9, 0.6])
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from inference.errors import DataError, EvidenceError, MemoryBudgetError, ModelError
from inference.factors import FactorGraph, as_factor_graph
from inference.protocols import FactorGraphModel, conforms

LINEAR_RANGE = 650.0
"""Nats: a probability-space pass keeps every number that matters within :math:`[e^{-650},
e^{650}]` (:math:`e^{-650} \\approx 5 \\cdot 10^{-283}`, far inside the normal float64 range, which
ends at :math:`2.2 \\cdot 10^{-308}`); see the module docstring for the rule."""

DEFAULT_MEMORY_BUDGET = 4 * 2**30
"""Bytes an exact query may use for its largest float64 table (4 GiB)."""

__all__ = [
    "LINEAR_RANGE", "DEFAULT_MEMORY_BUDGET", "Problem", "prepare", "structure", "check_tables", "check_log_table",
    "check_budget", "check_evidence", "evidence_columns", "restrict", "restrict_rows",
    "logsumexp", "safe_normalise",
]


# ============================================================================ the problem
@dataclasses.dataclass(frozen=True)
class Problem:
    """A factor graph with checked evidence.

    Attributes:
        graph: the factor graph.
        evidence: variable -> state index, in the graph's variable order.
        sites: for a traced program, site -> :class:`~inference.trace.SiteLayout` (else None).
        shown: the evidence as the caller gave it, for messages.
    """

    graph: FactorGraph
    evidence: dict
    sites: dict | None = None
    shown: dict | None = None

    @property
    def evidence_vars(self) -> tuple:
        """The evidence variables, in the graph's variable order (a compile and plan key)."""
        return tuple(self.evidence)

    @property
    def evidence_values(self) -> np.ndarray:
        """Their state indices, an int array (an argument, not a key)."""
        return np.fromiter(self.evidence.values(), dtype=np.int64, count=len(self.evidence))

    @property
    def free(self) -> tuple:
        """The unobserved variables, in the graph's order."""
        return tuple(v for v in self.graph.variables if v not in self.evidence)

    @functools.cached_property
    def tables(self) -> tuple:
        """The float64 log-tables, checked by :func:`check_tables`."""
        return tuple(check_tables(self.graph))

    def named(self, evidence: Mapping | None = None) -> dict:
        """Evidence ``{variable: state index}`` (default: this problem's) by state names."""
        evidence = self.evidence if evidence is None else evidence
        return {v: self.graph.states[v][int(k)] for v, k in evidence.items()}


def prepare(model, evidence=None, model_args=(), model_kwargs=None) -> Problem:
    """The factor graph of ``model`` with ``evidence`` checked.

    Args:
        model: a :class:`FactorGraph`, a :class:`~inference.protocols.FactorGraphModel` (a
            ``BayesNet``), or a NumPyro program with discrete latent sites.
        evidence: ``{variable: state name or index}``; for a program, ``{site: value}``
            conditions the site and ``{"z[1]": k}`` clamps one unrolled variable.
        model_args, model_kwargs: the program's arguments.
    """
    if evidence is not None and not isinstance(evidence, Mapping):
        raise EvidenceError(f"evidence must be a mapping variable -> state, got {type(evidence).__name__}")
    shown = dict(evidence or {})
    if isinstance(model, FactorGraph) or conforms(model, FactorGraphModel):
        graph, sites = as_factor_graph(model), None
        indices = graph.evidence_indices(shown)
    elif callable(model):
        from inference.trace import trace_program

        traced = trace_program(model, tuple(model_args), dict(model_kwargs or {}), shown)
        graph, sites = traced.graph, traced.sites
        indices = graph.evidence_indices(traced.evidence)
    else:
        graph = as_factor_graph(model)  # raises ModelError naming the type
        sites, indices = None, {}
    if not isinstance(graph, FactorGraph):
        raise ModelError(f"{type(model).__name__}.factor_graph() did not give a FactorGraph")
    ordered = {v: indices[v] for v in graph.variables if v in indices} if len(indices) > 1 else indices
    return Problem(graph, ordered, sites, shown)


def structure(signature: tuple) -> tuple[dict, tuple, bool]:
    """``graph.signature()`` back into (cardinalities, scopes, directed)."""
    cards, scopes, directed = signature
    return dict(cards), scopes, directed


# ============================================================================ checks
def check_log_table(table, name: str) -> np.ndarray:
    """``table`` as float64 log-probabilities; NaN or :math:`+\\infty` (a probability that was
    NaN, negative or infinite before the log) raise ModelError naming ``name``."""
    table = np.asarray(table, dtype=np.float64)
    if not table.max(initial=-np.inf) < np.inf:  # one pass: NaN and +inf both fail
        raise ModelError(f"{name}: its log table holds NaN or +inf (a probability that is NaN, negative or infinite)")
    return table


def check_tables(graph: FactorGraph) -> list[np.ndarray]:
    """The float64 log tables of every factor, each checked by :func:`check_log_table`."""
    tables = [np.asarray(f.log_table, dtype=np.float64) for f in graph.factors]
    flat = np.concatenate([t.ravel() for t in tables]) if tables else np.zeros(0)
    if not flat.max(initial=-np.inf) < np.inf:  # the common case costs one pass over all tables
        for f, t in zip(graph.factors, tables):
            check_log_table(t, f"factor over {f.scope}")
    return tables


def check_budget(elements: int, budget, what: str):
    """Refuse a table of ``elements`` float64 entries over ``budget`` bytes (MemoryBudgetError)."""
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, (int, float, np.integer, np.floating)) \
            or not budget > 0:
        raise DataError(f"memory_budget must be a positive number of bytes, got {budget!r}")
    need = 8 * int(elements)
    if need > budget:
        raise MemoryBudgetError(
            f"{what} needs a table of {int(elements):,} entries ({need / 2**30:.3g} GiB in float64), "
            f"over memory_budget={int(budget):,} bytes ({budget / 2**30:.3g} GiB); use inference.bp.loopy "
            f"or a sampler (inference.importance.likelihood_weighting, inference.gibbs.gibbs), or raise memory_budget"
        )


def check_evidence(log_z, evidence=None, *, labels=None, unit="row", where: str = ""):
    """Raise where :math:`\\log Z(e)` says the evidence is impossible; return nothing otherwise.

    Args:
        log_z: :math:`\\log Z(e)`, a scalar or one value per case (B,).
        evidence: for a scalar, the evidence by state names; for a batch, a function of the case
            index giving that (or None).
        labels: (B,) the cases' names in the caller's terms (data rows), default their index.
        unit: what a case is called ("row", "data row", "sequence").
        where: the method, added to the message.

    Raises:
        ModelError: a NaN (broken tables).
        EvidenceError: a :math:`-\\infty` (evidence of probability zero), naming the first case.
    """
    values = np.asarray(log_z, dtype=np.float64)
    if np.isnan(values).any():
        raise ModelError(f"{where or 'inference'} produced NaN: check the factor tables")
    if values.ndim == 0:
        if np.isfinite(values):
            return
        suffix = f" ({where})" if where else ""
        if evidence:
            raise EvidenceError(f"evidence {evidence} has probability zero under the model{suffix}")
        raise EvidenceError(f"the model gives probability zero to every configuration{suffix}: Z = 0")
    bad = np.flatnonzero(~np.isfinite(values.ravel()))
    if bad.size:
        first = int(bad[0])
        label = first if labels is None else int(np.asarray(labels)[first])
        shown = f": {evidence(first)}" if callable(evidence) else ""
        raise EvidenceError(
            f"evidence has probability zero in {unit} {label} ({bad.size} {unit}s in all){shown}"
            + (f"; {where}" if where else "")
        )


# ============================================================================ evidence restriction
def evidence_columns(scopes, evidence_vars) -> tuple:
    """Per factor, per axis: the column of its variable in ``evidence_vars``, or None."""
    position = {v: k for k, v in enumerate(evidence_vars)}
    return tuple(tuple(position.get(v) for v in scope) for scope in scopes)


def reduced_scopes(scopes, evidence_vars) -> tuple:
    """The scopes left once the evidence variables are indexed away."""
    observed = set(evidence_vars)
    return tuple(tuple(v for v in scope if v not in observed) for scope in scopes)


def restrict(tables, columns, values) -> list:
    """Index every evidence axis at its value: :math:`\\phi_f(x_{S_f \\setminus E}, e)`.

    ``columns`` from :func:`evidence_columns`; ``values`` the evidence state indices (host
    integers, or JAX tracers inside a jitted function). NumPy and JAX tables alike.
    """
    out = []
    for table, cols in zip(tables, columns):
        if any(c is not None for c in cols):
            table = table[tuple(slice(None) if c is None else values[c] for c in cols)]
        out.append(table)
    return out


def _evidence_first(cols):
    """The axis order that puts a factor's evidence axes first (in axis order)."""
    return [a for a, c in enumerate(cols) if c is not None] + [a for a, c in enumerate(cols) if c is None]


def restrict_rows(tables, columns, rows) -> list:
    """Batched :func:`restrict`: ``rows`` (B, E) of evidence values; each factor with evidence
    axes becomes ``(B, *free axes)``, the others stay as they are."""
    out = []
    for table, cols in zip(tables, columns):
        if any(c is not None for c in cols):
            order = _evidence_first(cols)
            table = np.transpose(table, order)[tuple(rows[:, cols[a]] for a in order if cols[a] is not None)]
        out.append(table)
    return out


def scatter_rows(target, posterior, rows, cols):
    """Inverse of :func:`restrict_rows` for one factor: write ``posterior`` (B, *free axes) into
    ``target`` (B, *full shape), one-hot along the evidence axes at each row's values."""
    if not any(c is not None for c in cols):
        target[...] = posterior
        return
    order = _evidence_first(cols)
    view = np.transpose(target, [0] + [a + 1 for a in order])
    index = (np.arange(len(rows)),) + tuple(rows[:, cols[a]] for a in order if cols[a] is not None)
    view[index] = posterior


# ============================================================================ log space (JAX)
def logsumexp(x, axis=None, keepdims=False):
    """:math:`\\log \\sum \\exp x` along ``axis``, stable, ``-inf`` for an all-``-inf`` slice (a lean
    version of ``jax.nn.logsumexp``: fewer operations, so large message-passing plans compile faster)."""
    top = jnp.max(x, axis=axis, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    out = jnp.log(jnp.sum(jnp.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else jnp.squeeze(out, axis=axis)


def safe_normalise(x, axis=-1, mode="sum"):
    """Normalise log-values along ``axis`` (log-sum or max to 0); all-``-inf`` rows stay ``-inf``."""
    if mode == "sum":
        z = logsumexp(x, axis=axis, keepdims=True)
    else:
        z = jnp.max(x, axis=axis, keepdims=True)
    return jnp.where(jnp.isfinite(z), x - z, x)
