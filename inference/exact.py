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
   against its variables and states.
2. A contraction plan for the graph's *structure* and the *names* of the evidence variables is
   made once and cached (:func:`inference.contract.plan_contraction`); its largest table is
   checked against ``memory_budget``.
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
5. Evidence of probability zero raises :class:`~inference.errors.EvidenceError`; no NaN escapes.

An HMM (a model with a ``chain`` method) goes to :mod:`inference.chain` instead, with the
observations as ``evidence``.

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

import dataclasses
import functools
import time

import jax
import networkx as nx
import numpy as np

from inference.contract import FLOOR, LINEAR_RANGE, Plan, Program, plan_contraction
from inference.errors import DataError, EvidenceError, MemoryBudgetError, ModelError
from inference.factors import FactorGraph, as_factor_graph
from inference.result import Result

DEFAULT_MEMORY_BUDGET = 4 * 2**30
"""Bytes an exact query may use for its largest table (4 GiB)."""

__all__ = ["log_evidence", "marginals", "map", "sample", "family_posteriors", "DEFAULT_MEMORY_BUDGET"]


# ============================================================================ public API
def log_evidence(model, evidence=None, *, model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET, **chain_options) -> Result:
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
        chain_options: for an HMM only, passed on to ``inference.chain`` (e.g. ``lengths``).

    Returns:
        ``Result(method="exact", log_evidence=..., log_evidence_kind="exact")``.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1")}, [Factor(("a",), np.log([0.25, 0.75]))], directed=True)
        >>> float(np.exp(log_evidence(g, {"a": 1}).log_evidence))
        0.75
    """
    if _is_chain(model):
        return _chain("log_evidence", model, evidence, model_args, model_kwargs, memory_budget, **chain_options)
    _no_options("log_evidence", chain_options)
    start = time.perf_counter()
    problem = _problem(model, evidence, model_args, model_kwargs)
    query = _Query(problem.graph, problem.evidence)
    prune = problem.graph.directed
    plan = _plan(query.key, prune)
    _check_budget(plan.largest, memory_budget, "log_evidence")
    layout = _layout(query.key)
    program = _program(query.key, prune)
    relevant = layout.relevant if prune else None
    value = _linear_tables(query.key).log_evidence(problem.graph, query.values, program, relevant)
    arithmetic = "linear"
    if value is None:
        arithmetic = "log"
        tables = query.restricted()
        _, value = program.inside([tables[t] for t in layout.relevant] if prune else tables)
    value = float(value)
    _check_value(value, problem)
    return Result(
        method="exact",
        log_evidence=value,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={**_plan_diagnostics(plan), "arithmetic": arithmetic},
    )


def marginals(model, evidence=None, *, model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET, **chain_options) -> Result:
    """Posterior marginals :math:`p(x_v \\mid e)` of every unobserved variable, and :math:`\\log p(e)`.

    All marginals come from one forward and one backward pass: the gradient of
    :math:`\\log p(e)` with respect to the log factors is each factor's posterior.

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
    """
    if _is_chain(model):
        return _chain("marginals", model, evidence, model_args, model_kwargs, memory_budget, **chain_options)
    _no_options("marginals", chain_options)
    start = time.perf_counter()
    problem = _problem(model, evidence, model_args, model_kwargs)
    query = _Query(problem.graph, problem.evidence)
    plan = _plan(query.key, False)
    _check_budget(plan.largest, memory_budget, "marginals")
    layout = _layout(query.key)
    program = _program(query.key, False)
    linear = _linear_tables(query.key).marginals(problem.graph, query.values, program, layout.free_ids)
    if linear is None:
        value, values = program.marginals(query.restricted(), layout.free_ids)
    else:
        value, values = linear
    value = float(value)
    _check_value(value, problem)
    per_var = dict(zip(layout.free_names, values))
    return Result(
        method="exact",
        marginals=_by_site(per_var, problem, stack=np.stack),
        log_evidence=value,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={**_plan_diagnostics(plan), "arithmetic": "log" if linear is None else "linear"},
    )


def map(model, evidence=None, *, model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET, **chain_options) -> Result:  # noqa: A001
    """The most probable joint assignment of the unobserved variables (MPE) given ``e``.

    Max-product along the contraction plan, then backtracking in reverse plan order.

    Returns:
        ``Result(map={var: state index}, diagnostics={"map_states": {var: state name},
        "log_joint": log p(x*, e)})`` (for an undirected factor graph, the log of the
        unnormalised product at :math:`x^\\star`). Ties go to the lowest state index at each step.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("off", "on"), "b": ("off", "on")},
        ...                 [Factor(("a", "b"), np.log([[0.1, 0.2], [0.3, 0.4]]))])
        >>> map(g).diagnostics["map_states"]
        {'a': 'on', 'b': 'on'}
    """
    if _is_chain(model):
        return _chain("map", model, evidence, model_args, model_kwargs, memory_budget, **chain_options)
    _no_options("map", chain_options)
    start = time.perf_counter()
    problem = _problem(model, evidence, model_args, model_kwargs)
    query = _Query(problem.graph, problem.evidence)
    plan = _plan(query.key, False)
    _check_budget(plan.largest_union, memory_budget, "map")
    layout = _layout(query.key)
    program = _program(query.key, False)
    value, tensors = program.max_product(query.restricted())
    value = float(value)
    _check_value(value, problem)
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


def sample(model, key, n, evidence=None, *, model_args=(), model_kwargs=None, memory_budget=DEFAULT_MEMORY_BUDGET, **chain_options) -> Result:
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
    if _is_chain(model):
        return _chain("sample", model, evidence, model_args, model_kwargs, memory_budget, key=key, n=n, **chain_options)
    _no_options("sample", chain_options)
    start = time.perf_counter()
    n = _check_count(n)
    key = _check_key(key)
    problem = _problem(model, evidence, model_args, model_kwargs)
    query = _Query(problem.graph, problem.evidence)
    plan = _plan(query.key, False)
    _check_budget(max(plan.largest, n * _largest_elim(plan)), memory_budget, "sample")
    layout = _layout(query.key)
    program = _program(query.key, False)
    tensors, value = program.inside(query.restricted())
    value = float(value)
    _check_value(value, problem)
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


def family_posteriors(graph: FactorGraph, evidence_vars, evidence_values, *, memory_budget=DEFAULT_MEMORY_BUDGET):
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
    _check_budget(per_row, memory_budget, "family_posteriors")
    rows = values.shape[0]
    chunk = max(1, min(rows, int(memory_budget // (8 * 4 * per_row))))
    tables = _tables(graph)
    program = _program(key, False, batched=True)
    wanted = tuple(range(len(graph.factors)))
    logp = np.zeros(rows)
    out = [np.zeros((rows,) + f.log_table.shape) for f in graph.factors]
    for lo in range(0, rows, chunk):
        block = values[lo : lo + chunk]
        restricted = _restrict_rows(tables, block, layout)
        logp[lo : lo + len(block)], posts = program.posteriors(restricted, wanted)
        for f in wanted:
            _scatter(out[f][lo : lo + len(block)], posts[f], block, layout.restrict[f])
    bad = np.flatnonzero(~np.isfinite(logp))
    if bad.size:
        row = int(bad[0])
        shown = {v: graph.states[v][int(k)] for v, k in zip(evidence_vars, values[row])}
        raise EvidenceError(f"evidence has probability zero in row {row} ({bad.size} rows in all): {shown}")
    return logp, out


# ============================================================================ HMM dispatch
def _is_chain(model) -> bool:
    return callable(getattr(model, "chain", None))


def _chain(name, model, evidence, model_args, model_kwargs, memory_budget, key=None, n=None, **options):
    """Hand the query to ``inference.chain`` with the arguments the caller gave (``options``
    such as ``lengths`` go through as they are)."""
    from inference import chain

    kwargs = dict(options)
    if name == "sample":
        kwargs.update(key=key, n=n)
    if model_args != ():
        kwargs["model_args"] = model_args
    if model_kwargs is not None:
        kwargs["model_kwargs"] = model_kwargs
    if memory_budget != DEFAULT_MEMORY_BUDGET:
        kwargs["memory_budget"] = memory_budget
    if name == "sample":
        return chain.sample(model, kwargs.pop("key"), kwargs.pop("n"), evidence, **kwargs)
    return getattr(chain, name)(model, evidence, **kwargs)


def _no_options(name, options):
    if options:
        raise TypeError(
            f"exact.{name}() got unexpected keyword arguments {sorted(options)} "
            f"(extra options such as lengths= are for HMMs, models with a chain() method)"
        )


# ============================================================================ problems
@dataclasses.dataclass(frozen=True)
class _Problem:
    graph: FactorGraph
    evidence: dict  # variable -> state index, checked
    sites: dict | None  # program site -> SiteLayout (None for a graph or a BayesNet)
    shown: dict  # the evidence as the caller gave it, for messages


def _problem(model, evidence, model_args, model_kwargs) -> _Problem:
    evidence = dict(evidence or {})
    if isinstance(model, FactorGraph) or callable(getattr(model, "factor_graph", None)):
        graph = as_factor_graph(model)
        return _Problem(graph, graph.evidence_indices(evidence), None, evidence)
    if callable(model):
        from inference.trace import trace_program

        traced = trace_program(model, tuple(model_args), dict(model_kwargs or {}), evidence)
        graph = traced.graph
        return _Problem(graph, graph.evidence_indices(traced.evidence), traced.sites, evidence)
    return _Problem(as_factor_graph(model), {}, None, evidence)  # raises ModelError


class _Query:
    """A graph with evidence: the structural key (for plans) and the values (for the program)."""

    def __init__(self, graph: FactorGraph, evidence: dict):
        self.graph = graph
        self.names = tuple(evidence)
        self.key = (graph.signature(), self.names)
        self.values = tuple(evidence[v] for v in self.names)

    def restricted(self):
        """The log tables with evidence axes indexed away, then the unit tables."""
        return _restrict(_tables(self.graph), self.values, _layout(self.key))


def _tables(graph: FactorGraph) -> list[np.ndarray]:
    """The float64 log tables; NaN or +inf raise ModelError naming the factor."""
    tables = [np.asarray(f.log_table, dtype=np.float64) for f in graph.factors]
    flat = np.concatenate([t.ravel() for t in tables]) if tables else np.zeros(0)
    if np.isnan(flat).any() or np.isposinf(flat).any():
        for f, t in zip(graph.factors, tables):
            if np.isnan(t).any() or np.isposinf(t).any():
                raise ModelError(f"factor over {f.scope}: its log table holds NaN or +inf")
    return tables


def _check_value(value: float, problem: _Problem):
    if np.isnan(value):
        raise ModelError("exact inference produced NaN: check the factor tables")
    if not np.isfinite(value):
        raise EvidenceError(f"evidence has probability zero under the model: {problem.shown}")


def _check_budget(elements: int, budget, what: str):
    if not isinstance(budget, (int, float, np.integer, np.floating)) or not budget > 0:
        raise DataError(f"memory_budget must be a positive number of bytes, got {budget!r}")
    need = 8 * int(elements)
    if need > budget:
        raise MemoryBudgetError(
            f"exact {what} needs a table of {int(elements):,} entries ({need / 2**30:.3g} GiB in float64), "
            f"over memory_budget={int(budget):,} bytes ({budget / 2**30:.3g} GiB); use inference.bp.loopy "
            f"or a sampler (inference.importance.likelihood_weighting, inference.gibbs.gibbs), or raise memory_budget"
        )


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


def _by_site(per_var: dict, problem: _Problem, stack, all_vars=False) -> dict:
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


# ============================================================================ structure and plans
@dataclasses.dataclass(frozen=True)
class _Layout:
    """Everything about a (graph structure, evidence names) pair that does not depend on values."""

    variables: tuple[str, ...]
    sizes: tuple[int, ...]
    total: int  # entries of all factor tables
    restrict: tuple[tuple[int | None, ...], ...]  # per factor, per axis: evidence column or None
    scopes: tuple[tuple[int, ...], ...]  # restricted scopes (variable ids) of the factors, then unit tables
    free_ids: tuple[int, ...]  # unobserved variables
    free_names: tuple[str, ...]
    units: tuple[int, ...]  # unobserved variables no factor holds: a table of zeros each
    relevant: tuple[int, ...]  # factors that matter for log p(e) in a directed graph


@functools.lru_cache(maxsize=256)
def _layout(key) -> _Layout:
    (var_cards, scopes, directed), ev_names = key
    variables = tuple(v for v, _ in var_cards)
    ids = {v: i for i, v in enumerate(variables)}
    sizes = tuple(k for _, k in var_cards)
    ev_col = {ids[v]: j for j, v in enumerate(ev_names)}
    total = sum(int(np.prod([sizes[ids[v]] for v in s], dtype=np.int64)) for s in scopes)
    restrict = tuple(tuple(ev_col.get(ids[v]) for v in s) for s in scopes)
    restricted = [tuple(ids[v] for v in s if ids[v] not in ev_col) for s in scopes]
    free = tuple(i for i in range(len(variables)) if i not in ev_col)
    held = {v for s in restricted for v in s}
    units = tuple(i for i in free if i not in held)
    all_scopes = tuple(restricted) + tuple((i,) for i in units)
    relevant = tuple(range(len(all_scopes)))
    if directed:
        dag = nx.DiGraph()
        dag.add_nodes_from(range(len(variables)))
        dag.add_edges_from((ids[p], ids[s[-1]]) for s in scopes for p in s[:-1])
        keep = set(ev_col)
        for v in ev_col:
            keep |= nx.ancestors(dag, v)
        relevant = tuple(f for f, s in enumerate(scopes) if ids[s[-1]] in keep)
    return _Layout(
        variables, sizes, total, restrict, all_scopes, free, tuple(variables[i] for i in free), units, relevant,
    )


@functools.lru_cache(maxsize=256)
def _plan(key, prune: bool) -> Plan:
    """The contraction plan of the restricted tables (only the relevant ones when ``prune``)."""
    layout = _layout(key)
    tables = layout.relevant if prune else range(len(layout.scopes))
    return plan_contraction([layout.scopes[t] for t in tables], layout.sizes)


@functools.lru_cache(maxsize=256)
def _program(key, prune: bool, batched: bool = False) -> Program:
    """The executable plan; ``batched``: the tables holding evidence carry one slice per row."""
    layout = _layout(key)
    flags = None
    if batched:
        flags = [any(c is not None for c in cols) for cols in layout.restrict] + [False] * len(layout.units)
    return Program(_plan(key, prune), flags)


# ============================================================================ linear space
class _LinearTables:
    """Evidence restriction and the move to linear space for one (structure, evidence names),
    as a few whole-array operations over the concatenation of every log table.

    Every table is restricted by one gather, shifted by its largest remaining entry
    (:math:`\\tilde\\phi_f = \\phi_f / \\max \\phi_f \\le 1`; the shifts add up to the log scale
    of :math:`Z`) and exponentiated; the log of its smallest non-zero entry is its lower bound.
    :meth:`inference.contract.Program.linear_marginals` then runs the passes on these tables,
    rescaling only where its bounds say a number could leave the float64 range, and declines
    (log space runs instead) where a table's own entries span too wide a range.
    """

    def __init__(self, key):
        (var_cards, scopes, _), ev_names = key
        layout = _layout(key)
        ids = {v: i for i, v in enumerate(layout.variables)}
        ev_col = {v: j for j, v in enumerate(ev_names)}
        base, strides, slices, starts = [], [], [], []
        offset = restricted = 0
        for scope, cols in zip(scopes, layout.restrict):
            shape = tuple(layout.sizes[ids[v]] for v in scope)
            size = int(np.prod(shape, dtype=np.int64))
            index = (np.arange(size, dtype=np.int64) + offset).reshape(shape)
            axis_strides = index.strides  # bytes; turned into entries below
            free = tuple(slice(None) if c is None else 0 for c in cols)
            entries = index[free].ravel()
            row = np.zeros(len(ev_names), dtype=np.int64)  # entries per evidence state, per column
            for a, c in enumerate(cols):
                if c is not None:
                    row[c] = axis_strides[a] // index.itemsize
            base.append(entries)
            strides.append(row)
            rshape = tuple(n for n, c in zip(shape, cols) if c is None)
            slices.append((restricted, restricted + entries.size, rshape))
            starts.append(restricted)
            restricted += entries.size
            offset += size
        self.ok = all(b > a for a, b, _ in slices)  # (a variable without states: log space)
        self.base = np.concatenate(base) if base else np.zeros(0, dtype=np.int64)
        self.strides = np.stack(strides) if strides else np.zeros((0, len(ev_names)), dtype=np.int64)
        self.identity = not ev_names and np.array_equal(self.base, np.arange(offset))
        self.slices = tuple(slices)
        self.starts = np.asarray(starts, dtype=np.intp)
        self.spread = np.repeat(np.arange(len(slices)), [b - a for a, b, _ in slices])
        units = []
        for i in layout.units:
            unit = np.ones(layout.sizes[i])
            unit.setflags(write=False)
            units.append(unit)
        self.units = units
        self.unit_lows = [0.0] * len(units)

    def tables(self, graph: FactorGraph, values):
        """``(linear tables, log lower bounds, log scale)``: the restricted tables (then the
        unit tables) divided by their largest entries, the logs of their smallest non-zero
        entries, and the sum of the logs of the divisors; None where a table's own entries
        span more than LINEAR_RANGE (or cannot be read as float64)."""
        if not self.ok or not self.slices:
            return None
        try:
            flat = np.concatenate([f.log_table for f in graph.factors], axis=None, dtype=np.float64)
        except TypeError:
            return None
        if not flat.max() < np.inf:  # NaN or +inf somewhere: named by _tables
            _tables(graph)
        if self.identity:
            log_tables = flat
        elif values:
            log_tables = flat[self.base + (self.strides @ np.asarray(values, dtype=np.int64))[self.spread]]
        else:
            log_tables = flat[self.base]
        tops = np.maximum.reduceat(log_tables, self.starts)
        lows = np.minimum.reduceat(np.where(log_tables > -np.inf, log_tables, np.inf), self.starts)
        lows = np.where(tops > -np.inf, lows - tops, 0.0)  # an all-zero table: no bound needed
        if lows.min() < -LINEAR_RANGE:  # a table whose own entries would underflow
            return None
        tops = np.maximum(tops, FLOOR)  # an all-zero table: shifted by FLOOR, stays zero
        linear = np.exp(log_tables - tops[self.spread])
        tables = [linear[a:b].reshape(shape) for a, b, shape in self.slices]
        return tables + self.units, lows.tolist() + self.unit_lows, tops

    def marginals(self, graph: FactorGraph, values, program: Program, variables):
        """``(log Z, [p(x_v | e) for v in variables])``, or None where the linear-space pass
        declines (then the caller runs the log-space one)."""
        prepared = self.tables(graph, values)
        if prepared is None:
            return None
        tables, lows, tops = prepared
        out = program.linear_marginals(tables, variables, lows)
        if out is None:
            return None
        log_z, marg, bounds = out
        return log_z + float(np.sum(tops)), [marg[a:b] for a, b in bounds]

    def log_evidence(self, graph: FactorGraph, values, program: Program, relevant):
        """``log Z`` of the tables ``relevant`` (all when None) by the inside pass, or None."""
        prepared = self.tables(graph, values)
        if prepared is None:
            return None
        tables, lows, tops = prepared
        if relevant is not None:
            tables, lows, tops = [tables[t] for t in relevant], [lows[t] for t in relevant], tops[list(relevant)]
        inside = program.linear_inside(tables, lows)
        return None if inside is None else inside[0] + float(np.sum(tops))


@functools.lru_cache(maxsize=256)
def _linear_tables(key) -> _LinearTables:
    return _LinearTables(key)


# ============================================================================ evidence on tables
def _restrict(tables, values, layout: _Layout):
    """Index every evidence axis at its evidence value; append the unit tables."""
    out = []
    for table, cols in zip(tables, layout.restrict):
        if any(c is not None for c in cols):
            table = table[tuple(slice(None) if c is None else values[c] for c in cols)]
        out.append(table)
    out += [np.zeros(layout.sizes[i]) for i in layout.units]
    return out


def _evidence_first(cols):
    """The axis order that puts a factor's evidence axes first (in axis order)."""
    return [a for a, c in enumerate(cols) if c is not None] + [a for a, c in enumerate(cols) if c is None]


def _restrict_rows(tables, rows, layout: _Layout):
    """Batched :func:`_restrict`: each factor with evidence axes becomes ``(B, *free axes)``."""
    out = []
    for table, cols in zip(tables, layout.restrict):
        if any(c is not None for c in cols):
            order = _evidence_first(cols)
            table = np.transpose(table, order)[tuple(rows[:, cols[a]] for a in order if cols[a] is not None)]
        out.append(table)
    out += [np.zeros(layout.sizes[i]) for i in layout.units]
    return out


def _scatter(target, posterior, rows, cols):
    """Write the posterior over a factor's free axes into ``target`` (B, *full shape), one-hot
    along the evidence axes at each row's values."""
    if not any(c is not None for c in cols):
        target[...] = posterior
        return
    order = _evidence_first(cols)
    view = np.transpose(target, [0] + [a + 1 for a in order])
    index = (np.arange(len(rows)),) + tuple(rows[:, cols[a]] for a in order if cols[a] is not None)
    view[index] = posterior
