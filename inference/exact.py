"""Exact inference for discrete models: log-evidence, all marginals, MAP and exact samples.

For factors :math:`\\phi_f` over discrete variables and evidence :math:`e`,

.. math::

    \\log p(e) = \\log \\sum_{x} \\prod_f \\phi_f(x, e), \\qquad
    p(x_v \\mid e) = \\frac{\\partial \\log p(e)}{\\partial \\log \\phi_f(x_{S_f})}
    \\text{ summed over } S_f \\setminus \\{v\\},

    x^\\star = \\arg\\max_x \\prod_f \\phi_f(x, e), \\qquad x^{(i)} \\sim p(x \\mid e).

How a query runs:

1. The model becomes a :class:`~inference.factors.FactorGraph` (a ``BayesNet``'s CPTs, a factor
   graph as is, or a NumPyro program traced by :mod:`inference.trace`); evidence is checked
   against its variables and states (:func:`inference.discrete.prepare`, shared by every
   discrete method).
2. A contraction plan for the graph's *structure* and the *names* of the evidence variables is
   made once and cached (:func:`inference.elimination.plan_contraction`,
   :func:`inference.layout.query_plan`); its largest table is checked against ``memory_budget``
   (bytes, the one memory parameter of every exact method).
3. The plan becomes a :class:`~inference.contract.Program` (precomputed einsum kernels, also
   cached), which takes the tables and the evidence *values* as arguments: new CPTs or new
   evidence values re-use the plan and the kernels. Each table is restricted to the evidence
   by indexing, then the plan runs: sum-product for :math:`\\log p(e)`; the outside pass
   (reverse-mode derivative of the inside pass) for every factor's posterior, from which each
   variable's marginal is read off the tensor holding it nearest the root; max-product then
   backtracking for the MAP; sum-product then backward sampling, vectorised over draws, for
   exact samples.
4. ``log_evidence`` and ``marginals`` run in *linear* space wherever that is exact: all
   tables are gathered at the evidence, divided by their largest entries and exponentiated
   in a few whole-array operations, and each step is then one plain einsum or matmul. Every
   message carries bounds on its largest and smallest non-zero entries and is rescaled only
   where a number could leave the float64 range
   (:meth:`~inference.contract.Program.linear_marginals`); where a message's own entries
   span too wide a range, the log-space passes (a log-sum-exp per step) answer instead.
   ``diagnostics["arithmetic"]`` says which ran. MAP, samples and ``family_posteriors``
   stay in log space.
5. Evidence of probability zero raises :class:`~inference.errors.EvidenceError`; no NaN escapes
   (:func:`inference.discrete.check_evidence`).

Models are routed once, on their declared contract (:mod:`inference.protocols`): a
:class:`~inference.protocols.ChainModel` (an HMM, a model with a ``chain`` method) goes to
:mod:`inference.chain`, with the observations as ``evidence``; everything else runs on its
factor graph.

References:
    Zhang and Poole (1994). A simple approach to Bayesian network computations.
    Darwiche (2003). A differential approach to inference in Bayesian networks.
    Koller and Friedman (2009). Probabilistic Graphical Models, chapters 9, 10 and 13.

Example:
    >>> import numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference import exact
    >>> rain = Factor(("rain",), np.log([0.8, 0.2]))
    >>> wet = Factor(("rain", "wet"), np.log([[0.9, 0.1], [0.2, 0.8]]))
    >>> graph = FactorGraph({"rain": ("no", "yes"), "wet": ("no", "yes")}, [rain, wet], directed=True)
    >>> result = exact.marginals(graph, {"wet": "yes"})
    >>> np.round(result.marginals["rain"], 6)
    array([0.333333, 0.666667])
    >>> round(float(np.exp(result.log_evidence)), 6)
    0.24
"""

from __future__ import annotations

import functools
import inspect
import time

import jax
import numpy as np

from inference.contract import Plan, Program
from inference.discrete import (
    DEFAULT_MEMORY_BUDGET,
    Problem,
    check_budget,
    check_evidence,
    check_tables,
    prepare,
    restrict,
    restrict_rows,
    scatter_rows,
)
from inference.errors import DataError, EvidenceError, ModelError
from inference.factors import FactorGraph
from inference.layout import linear_tables as _linear_tables
from inference.layout import query_layout as _layout
from inference.layout import query_plan as _plan
from inference.protocols import ChainModel, conforms
from inference.result import Result
from inference.rng import as_key

__all__ = ["log_evidence", "marginals", "joint", "marginal_map", "map", "sample", "family_posteriors",
           "DEFAULT_MEMORY_BUDGET"]


# ============================================================================ the one dispatch
def _routed(query):
    """The one place where a query is routed on the model's contract: a
    :class:`~inference.protocols.ChainModel` (a model with a ``chain`` method, ``pgm.HMM``) goes
    to its namesake in :mod:`inference.chain`, with the arguments as given; anything else (a
    :class:`~inference.protocols.FactorGraphModel`, a factor graph, a NumPyro program) runs
    ``query`` on its factor graph. Options only chains take (``lengths=``) are refused for graphs."""
    name = query.__name__
    accepted = frozenset(inspect.signature(query).parameters)

    @functools.wraps(query)
    def entry(model, *args, **kwargs):
        if conforms(model, ChainModel):
            from inference import chain

            return getattr(chain, name)(model, *args, **kwargs)
        extra = set(kwargs) - accepted
        if extra:
            raise TypeError(
                f"exact.{name}() got unexpected keyword arguments {sorted(extra)} "
                f"(extra options such as lengths= are for HMMs, models with a chain() method)"
            )
        return query(model, *args, **kwargs)

    return entry


# ============================================================================ public API
@_routed
def log_evidence(model, evidence=None, *, model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET) -> Result:
    """:math:`\\log p(e)` exactly (``log Z`` of the factor graph with ``e`` clamped).

    For a directed graph (Bayesian network) only the evidence variables and their ancestors
    enter the sum: the other CPTs sum to one.

    Args:
        model: a ``BayesNet``, a :class:`FactorGraph`, a NumPyro program with discrete latent
            sites, or an HMM (then ``evidence`` is the observation sequence).
        evidence: ``{variable: state name or index}``; for a program, ``{site: value}``
            conditions the site and ``{"z[1]": k}`` clamps one unrolled variable.
        model_args, model_kwargs: the program's arguments.
        memory_budget: bytes; a plan needing a larger table raises MemoryBudgetError.
        **options: for a chain model only (e.g. ``lengths``), passed on to ``inference.chain``
            by the one dispatch (:func:`_routed`).

    Returns:
        ``Result(method="exact", log_evidence=..., log_evidence_kind="exact")``.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1")}, [Factor(("a",), np.log([0.25, 0.75]))], directed=True)
        >>> float(np.exp(log_evidence(g, {"a": 1}).log_evidence))
        0.75
    """
    start = time.perf_counter()
    problem, query, plan, layout, program = _setup("log_evidence", model, evidence, model_args, model_kwargs,
                                                   memory_budget, prune=None)
    prune = problem.graph.directed
    relevant = layout.relevant if prune else None
    value = _linear_tables(query.key).log_evidence(problem.graph, query.values, program, relevant)
    arithmetic = "linear"
    if value is None:
        arithmetic = "log"
        tables = query.restricted()
        _, value = program.inside([tables[t] for t in layout.relevant] if prune else tables)
    value = float(value)
    _check_value(value, problem, "log_evidence")
    return Result(
        method="exact",
        log_evidence=value,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={**_plan_diagnostics(plan), "arithmetic": arithmetic},
    )


@_routed
def marginals(model, evidence=None, *, variables=None, virtual_evidence=None, elimination_order=None,
              model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET) -> Result:
    """Posterior marginals :math:`p(x_v \\mid e)` of every unobserved variable, and :math:`\\log p(e)`.

    All marginals come from one forward and one backward pass: the gradient of
    :math:`\\log p(e)` with respect to the log factors is each factor's posterior.

    Args:
        variables: only these marginals (default: every unobserved variable). For a Bayesian
            network the plan is then made for the ancestral closure of the query and evidence
            variables only (:func:`inference.queries.focus`), and the outside pass stops at the
            tensors that hold them: a cheaper plan, the same numbers.
        virtual_evidence: ``{variable: likelihood vector}``, soft evidence
            :math:`\\lambda_v(x_v)` multiplied in (``log_evidence`` then includes it).
        elimination_order: variable names, the order in which to sum the unobserved variables
            out (those left out follow in min-fill order); ``diagnostics["planner"]`` is then
            ``"given"`` and ``diagnostics["order"]`` the order used.

    Returns:
        ``Result(marginals={var: array over model.states[var]}, log_evidence, kind "exact")``.
        For a program, a site inside plates gets one array of shape ``(*plate_shape, K)``
        (when none of its unrolled variables is clamped; else one entry per variable).

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
        ...                 [Factor(("a", "b"), np.log([[1.0, 2.0], [3.0, 4.0]]))])
        >>> marginals(g).marginals["a"]
        array([0.3, 0.7])
        >>> marginals(g, variables=["b"], virtual_evidence={"a": [1.0, 0.0]}).marginals
        {'b': array([0.33333333, 0.66666667])}
    """
    start = time.perf_counter()
    if variables is not None or virtual_evidence is not None:
        from inference import queries

        original, problem, variables, _ = queries._focused_problem(
            model, evidence, variables, virtual_evidence, False, model_args, model_kwargs, "exact.marginals")
        problem = Problem(problem.graph, problem.evidence, original.sites if variables is None else None,
                          problem.shown)
    else:
        problem = prepare(model, evidence, model_args, model_kwargs)
    query = _Query(problem)
    layout = _layout(query.key)
    order = _order_ids(elimination_order, problem, layout)
    plan = _plan(query.key, False, order)
    check_budget(plan.largest, memory_budget, "exact marginals")
    program = _program(query.key, False, False, order)
    if variables is None:  # free_names are the names of free_ids, in that order
        names, ids = layout.free_names, layout.free_ids
    else:
        names = tuple(variables)
        ids = tuple(layout.variables.index(v) for v in names)
    linear = _linear_tables(query.key).marginals(problem.graph, query.values, program, ids)
    if linear is None:
        value, values = program.marginals(query.restricted(), ids)
    else:
        value, values = linear
    value = float(value)
    _check_value(value, problem, "marginals")
    per_var = dict(zip(names, values))
    diagnostics = {**_plan_diagnostics(plan), "arithmetic": "log" if linear is None else "linear"}
    if order is not None:
        given = [layout.variables[i] for i in order]
        diagnostics["order"] = tuple(given + [layout.variables[i] for i in plan.order if layout.variables[i] not in given])
    return Result(
        method="exact",
        marginals=_by_site(per_var, problem, stack=np.stack),
        log_evidence=value,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics=diagnostics,
    )


def joint(model, variables, evidence=None, **options) -> Result:
    """The joint posterior table :math:`p(x_Q \\mid e)`: :func:`inference.queries.joint`."""
    from inference import queries

    return queries.joint(model, variables, evidence, **options)


def marginal_map(model, variables, evidence=None, **options) -> Result:
    """MAP over ``variables`` with the rest summed out: :func:`inference.queries.marginal_map`."""
    from inference import queries

    return queries.marginal_map(model, variables, evidence, **options)


@_routed
def map(model, evidence=None, *, model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET) -> Result:  # noqa: A001
    """The most probable joint assignment of the unobserved variables (MPE) given ``e``.

    Max-product along the contraction plan, then backtracking in reverse plan order.

    Returns:
        ``Result(map={var: state index}, diagnostics={"map_states": {var: state name},
        "log_joint": log p(x*, e)})`` (for an undirected factor graph, the log of the
        unnormalised product at :math:`x^\\star`). Ties go to the lowest state index at each step.

    Example:
        >>> import numpy as np
        >>> from inference import factors
        >>> table = factors.Factor(("a", "b"), np.log([[0.1, 0.2], [0.3, 0.4]]))
        >>> map(factors.FactorGraph({"a": ("off", "on"), "b": ("off", "on")}, [table])).diagnostics["map_states"]
        {'a': 'on', 'b': 'on'}
    """
    start = time.perf_counter()
    problem, query, plan, layout, program = _setup("map", model, evidence, model_args, model_kwargs,
                                                   memory_budget, need=lambda plan: plan.largest_union)
    value, tensors = program.max_product(query.restricted())
    value = float(value)
    _check_value(value, problem, "map")
    decoded = program.backtrack(tensors, 1, lambda k, w: np.argmax(w, axis=1))
    per_var = {v: int(decoded[i][0]) for v, i in zip(layout.free_names, layout.free_ids)}
    states = problem.graph.states
    names = {v: states[v][k] for v, k in per_var.items()}
    return Result(
        method="exact",
        map=_by_site(per_var, problem, stack=lambda xs: np.asarray(xs, dtype=np.int64)),
        seconds=time.perf_counter() - start,
        diagnostics={
            "map_states": _by_site(names, problem, stack=list),
            "log_joint": value,
            **_plan_diagnostics(plan),
        },
    )


@_routed
def sample(model, key, n, evidence=None, *, model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET) -> Result:
    """``n`` independent exact draws from :math:`p(x \\mid e)`.

    Forward-filter backward-sample on the contraction tree: the sum-product pass keeps its
    tables; walking the plan backwards, each step's eliminated variables are drawn from
    their conditional given the variables already drawn, all ``n`` draws side by side (one
    array operation per step, never a loop over draws). The uniforms come from ``key``.

    Args:
        key: a JAX PRNG key (``jax.random.key(0)``) or an integer seed.
        n: the number of draws.

    Returns:
        ``Result(samples={var: (n,) int64 state indices}, log_evidence)``: every variable of the
        graph, evidence variables included (constant at their evidence state). For a program,
        a plated site gets ``(n, *plate_shape)``.

    Example:
        >>> import jax, numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1")}, [Factor(("a",), np.log([0.5, 0.5]))])
        >>> sample(g, jax.random.key(0), 4).samples["a"].shape
        (4,)
    """
    key = as_key(key)
    start = time.perf_counter()
    n = _check_count(n)
    key = _check_key(key)
    problem, query, plan, layout, program = _setup("sample", model, evidence, model_args, model_kwargs,
                                                   memory_budget,
                                                   need=lambda plan: max(plan.largest, n * _largest_elim(plan)))
    tensors, value = program.inside(query.restricted())
    value = float(value)
    _check_value(value, problem, "sample")
    uniforms = np.asarray(jax.random.uniform(key, (max(1, len(plan.steps)), n), dtype=jax.numpy.float64))
    decoded = program.backtrack(tensors, n, lambda k, w: _inverse_cdf(w, uniforms[k]))
    per_var = {v: decoded[i] for v, i in zip(layout.free_names, layout.free_ids)}
    for v, k in problem.evidence.items():
        per_var[v] = np.full(n, k, dtype=np.int64)
    per_var = {v: per_var[v] for v in problem.graph.variables}
    return Result(
        method="exact",
        samples=_by_site(per_var, problem, stack=lambda xs: np.stack(xs, axis=-1), all_vars=True),
        log_evidence=value,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={"num_chains": 1, **_plan_diagnostics(plan)},
    )


def family_posteriors(
    graph: FactorGraph,
    evidence_vars,
    evidence_values,
    *,
    memory_budget=DEFAULT_MEMORY_BUDGET,
    row_labels=None,
    row_unit: str = "row",
    where: str = "",
):
    """Every factor's posterior for a batch of evidence rows: the E-step of EM for a BN.

    .. math::

        \\text{posteriors}[f][b, x_{S_f}] = p(x_{S_f} \\mid e_b), \\qquad
        \\text{log\\_evidence}[b] = \\log p(e_b),

    with the evidence variables' axes kept (one-hot at the observed state). Planned once per
    ``(graph.signature(), evidence_vars)``: new tables or new evidence values re-use the plan.
    All rows go through each contraction step together (a leading batch axis), in chunks
    that fit ``memory_budget``.

    Args:
        graph: the factor graph.
        evidence_vars: the names of the observed variables (the same for every row).
        evidence_values: int array ``(B, E)`` of state indices, column ``j`` for
            ``evidence_vars[j]``.
        memory_budget: bytes for one chunk of rows (rows run in chunks that fit).
        row_labels, row_unit, where: how the zero-probability error names a row (default
            ``"row <index>"``; EM on data says ``"data row <index in the data>"``), see
            :func:`inference.discrete.check_evidence`.

    Returns:
        ``(log_evidence (B,), [array (B, *factor.log_table.shape) per factor of graph])``.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
        ...     [Factor(("a",), np.log([0.5, 0.5])), Factor(("a", "b"), np.log([[0.9, 0.1], [0.2, 0.8]]))],
        ...     directed=True)
        >>> logp, post = family_posteriors(g, ("b",), np.array([[1], [0]]))
        >>> np.round(post[0], 4)
        array([[0.1111, 0.8889],
               [0.8182, 0.1818]])
    """
    if not isinstance(graph, FactorGraph):
        raise ModelError(f"family_posteriors needs a FactorGraph, got {type(graph).__name__}")
    evidence_vars = tuple(evidence_vars)
    values = _check_rows(graph, evidence_vars, evidence_values)
    key = (graph.signature(), evidence_vars)
    layout = _layout(key)
    per_row = _plan(key, False).largest + layout.total  # entries one row needs at least
    check_budget(per_row, memory_budget, "exact family_posteriors")
    rows = values.shape[0]
    chunk = max(1, min(rows, int(memory_budget // (8 * 4 * per_row))))
    tables = check_tables(graph)
    program = _program(key, False, batched=True)
    wanted = tuple(range(len(graph.factors)))
    logp = np.zeros(rows)
    out = [np.zeros((rows,) + f.log_table.shape) for f in graph.factors]
    for lo in range(0, rows, chunk):
        block = values[lo : lo + chunk]
        restricted = restrict_rows(tables, layout.restrict, block) + [np.zeros(layout.sizes[i]) for i in layout.units]
        logp[lo : lo + len(block)], posts = program.posteriors(restricted, wanted)
        for f in wanted:
            scatter_rows(out[f][lo : lo + len(block)], posts[f], block, layout.restrict[f])
    check_evidence(
        logp,
        lambda row: {v: graph.states[v][int(k)] for v, k in zip(evidence_vars, values[row])},
        labels=row_labels,
        unit=row_unit,
        where=where,
    )
    return logp, out


# ============================================================================ helpers
class _Query:
    """A problem's structural key (for plans) and evidence values (for the program)."""

    def __init__(self, problem: Problem):
        self.graph = problem.graph
        self.names = problem.evidence_vars
        self.key = (problem.graph.signature(), self.names)
        self.values = tuple(problem.evidence.values())

    def restricted(self):
        """The log tables with evidence axes indexed away, then the unit tables."""
        return _restrict(check_tables(self.graph), self.values, _layout(self.key))


def _setup(what, model, evidence, model_args, model_kwargs, memory_budget, *, prune=False,
           need=lambda plan: plan.largest):
    """Steps 1-3 of every query: the checked problem, its plan (budget-checked on ``need``),
    layout and program. ``prune=None``: prune to the evidence's ancestors for a directed graph."""
    problem = prepare(model, evidence, model_args, model_kwargs)
    query = _Query(problem)
    if prune is None:
        prune = problem.graph.directed
    plan = _plan(query.key, prune)
    check_budget(need(plan), memory_budget, f"exact {what}")
    return problem, query, plan, _layout(query.key), _program(query.key, prune)


def _order_ids(order, problem: Problem, layout):
    """A chosen elimination order (names) as variable ids, checked; None when not given."""
    if order is None:
        return None
    if isinstance(order, str):
        order = (order,)
    ids = []
    for v in order:
        if v not in problem.graph.states:
            raise DataError(f"elimination_order names unknown variable {v!r}")
        if v in problem.evidence:
            raise DataError(f"elimination_order names observed variable {v!r}: only unobserved ones are summed out")
        ids.append(layout.variables.index(v))
    if len(set(ids)) != len(ids):
        raise DataError(f"elimination_order names a variable twice: {list(order)}")
    return tuple(ids)


def _restrict(tables, values, layout):
    """:func:`inference.discrete.restrict` at ``values``, then the unit tables of ``layout``."""
    return restrict(tables, layout.restrict, values) + [np.zeros(layout.sizes[i]) for i in layout.units]


def _check_value(value: float, problem: Problem, what: str):
    check_evidence(value, problem.shown, where=f"exact {what}")


def _check_count(n) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"argument n (the number of samples) must be a positive integer, got {n!r}")
    return int(n)


def _check_key(key):
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return jax.random.key(int(key))
    try:
        jax.random.split(key, 1)
    except Exception:  # noqa: BLE001
        raise DataError(f"argument key must be a JAX PRNG key (jax.random.key(seed)) or an int, got {key!r}") from None
    return key


def _check_rows(graph, evidence_vars, evidence_values) -> np.ndarray:
    for v in evidence_vars:
        if v not in graph.states:
            raise EvidenceError(f"unknown evidence variable {v!r} in family_posteriors")
    if len(set(evidence_vars)) != len(evidence_vars):
        raise EvidenceError(f"evidence_vars names a variable twice: {evidence_vars}")
    values = np.asarray(evidence_values)
    if values.ndim != 2 or values.shape[1] != len(evidence_vars):
        raise DataError(
            f"evidence_values must have shape (B, {len(evidence_vars)}) for evidence_vars {evidence_vars}, "
            f"got {values.shape}"
        )
    if values.size and not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DataError("evidence_values must hold integer state indices (no NaN: missing values need their own evidence_vars)")
    values = values.astype(np.int64)
    for j, v in enumerate(evidence_vars):
        k = len(graph.states[v])
        bad = np.flatnonzero((values[:, j] < 0) | (values[:, j] >= k))
        if bad.size:
            raise EvidenceError(
                f"evidence_values[{int(bad[0])}, {j}] = {int(values[bad[0], j])} is out of range 0..{k - 1} "
                f"for variable {v!r}"
            )
    return values


def _largest_elim(plan: Plan) -> int:
    """Joint states of the largest group of variables one step eliminates (a sampling slice)."""
    return max((int(np.prod([plan.sizes[v] for v in s.elim])) for s in plan.steps), default=1)


def _inverse_cdf(log_weights, u):
    """One categorical draw per row of ``log_weights`` (n, J) from uniforms ``u`` (n,).

    Picks the first state whose cumulative weight exceeds ``u`` times the total, so a
    state of weight zero is never drawn.
    """
    top = np.max(log_weights, axis=1, keepdims=True)
    cdf = np.cumsum(np.exp(log_weights - top), axis=1)
    index = np.sum(cdf <= u[:, None] * cdf[:, -1:], axis=1)
    return np.minimum(index, log_weights.shape[1] - 1)


def _by_site(per_var: dict, problem: Problem, stack, all_vars=False) -> dict:
    """For a program, gather the unrolled variables of each plated site into one array."""
    if problem.sites is None:
        return per_var
    out = dict(per_var)
    for site, layout in problem.sites.items():
        if not layout.plate_shape or not all(v in per_var for v in layout.variables):
            continue
        values = [per_var[v] for v in layout.variables]
        for v in layout.variables:
            out.pop(v)
        array = stack(values)
        if isinstance(array, np.ndarray):
            if all_vars:  # samples: (n, *plate_shape)
                array = array.reshape(array.shape[:1] + layout.plate_shape)
            else:
                array = array.reshape(layout.plate_shape + array.shape[1:])
        else:
            array = np.asarray(array, dtype=object).reshape(layout.plate_shape).tolist()
        out[site] = array
    return out


def _plan_diagnostics(plan: Plan) -> dict:
    return {
        "planner": plan.method,
        "largest_table": plan.largest,
        "flops": plan.flops,
    }


# ============================================================================ programs
@functools.lru_cache(maxsize=256)
def _program(key, prune: bool, batched: bool = False, order: tuple | None = None) -> Program:
    """The executable plan; ``batched``: the tables holding evidence carry one slice per row."""
    layout = _layout(key)
    flags = None
    if batched:
        flags = [any(c is not None for c in cols) for cols in layout.restrict] + [False] * len(layout.units)
    return Program(_plan(key, prune, order), flags)
