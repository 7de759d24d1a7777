"""Focused exact queries: a subset of marginals, joint tables, marginal MAP and soft evidence.

All of them run on the one exact engine (:mod:`inference.exact`); this module only changes the
factor graph the engine sees, in three ways:

1. **Barren-node pruning** (Bayesian networks). For query variables :math:`Q`, hard evidence
   :math:`E` and soft-evidence variables :math:`V`, only the ancestral closure
   :math:`A = \\mathrm{an}(Q \\cup E \\cup V)` matters: every other CPT sums to one,

   .. math::

       p(x_Q, e) = \\sum_{x_{A \\setminus (Q \\cup E)}} \\prod_{v \\in A} p(x_v \\mid x_{\\mathrm{pa}(v)}),

   so the plan is made for the sub-network over :math:`A` (cheaper, never dearer).
2. **Virtual (soft, likelihood) evidence** :math:`\\lambda_v(x_v) \\ge 0` multiplies a unit
   factor into the graph: :math:`p(x \\mid e, \\lambda) \\propto p(x, e) \\prod_v \\lambda_v(x_v)`
   (Pearl, 1988), and ``log_evidence`` becomes :math:`\\log \\sum_x p(x, e)\\prod_v \\lambda_v(x_v)`.
3. **Joint tables**: a factor of zeros (log 1) over :math:`Q` is added; its posterior, which the
   engine's outside pass computes like every factor's, is :math:`p(x_Q \\mid e)`. Marginal MAP is
   the arg max of that table, :math:`\\hat x_Q = \\arg\\max_{x_Q} \\sum_{x_R} p(x_Q, x_R \\mid e)`,
   exact (its cost is the joint table's size, checked against ``memory_budget``).

References:
    Pearl (1988). Probabilistic Reasoning in Intelligent Systems, section 2.2.2 (virtual evidence).
    Shachter (1986). Evaluating influence diagrams (barren nodes).
    Park and Darwiche (2004). Complexity results and approximation strategies for MAP explanations.

Example:
    >>> import numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference import queries
    >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
    ...     [Factor(("a",), np.log([0.6, 0.4])), Factor(("a", "b"), np.log([[0.9, 0.1], [0.2, 0.8]]))],
    ...     directed=True)
    >>> np.round(queries.joint(g, ["a", "b"]).diagnostics["joint"], 2)
    array([[0.54, 0.06],
           [0.08, 0.32]])
"""

from __future__ import annotations

import time
from typing import Mapping

import networkx as nx
import numpy as np

from inference import exact
from inference.discrete import DEFAULT_MEMORY_BUDGET, Problem, check_budget, check_evidence, prepare
from inference.errors import DataError, EvidenceError
from inference.factors import Factor, FactorGraph
from inference.result import Result

__all__ = ["focus", "joint", "marginal_map", "check_variables"]

_JOINT = "__joint__"


def check_variables(graph: FactorGraph, variables, evidence: Mapping, what: str) -> tuple[str, ...]:
    """``variables`` as a tuple of distinct unobserved variable names of ``graph``, or a typed error."""
    if isinstance(variables, str):
        variables = (variables,)
    try:
        variables = tuple(variables)
    except TypeError:
        raise DataError(f"argument variables of {what} must be a list of variable names, got {variables!r}") from None
    if not variables:
        raise DataError(f"argument variables of {what} is empty: name at least one variable")
    for v in variables:
        if v not in graph.states:
            raise EvidenceError(f"{what}: unknown query variable {v!r}; known variables: {list(graph.states)[:8]}")
        if v in evidence:
            raise EvidenceError(f"{what}: variable {v!r} is both queried and observed (evidence)")
    if len(set(variables)) != len(variables):
        raise DataError(f"{what}: argument variables names a variable twice: {list(variables)}")
    return variables


def _virtual_factors(graph: FactorGraph, virtual) -> list[Factor]:
    """Unit log-factors :math:`\\log \\lambda_v` for ``{variable: likelihood vector}``."""
    if virtual is None:
        return []
    if not isinstance(virtual, Mapping):
        raise EvidenceError(f"virtual_evidence must map variable -> likelihood vector, got {type(virtual).__name__}")
    out = []
    for v, lik in virtual.items():
        if v not in graph.states:
            raise EvidenceError(f"virtual_evidence names unknown variable {v!r}")
        lik = np.asarray(lik, dtype=np.float64)
        k = len(graph.states[v])
        if lik.shape != (k,):
            raise EvidenceError(f"virtual_evidence[{v!r}] must have shape ({k},) (one weight per state), got {lik.shape}")
        if not np.all(np.isfinite(lik)) or np.any(lik < 0) or not lik.max() > 0:
            raise EvidenceError(f"virtual_evidence[{v!r}] must be finite, non-negative and not all zero, got {lik}")
        with np.errstate(divide="ignore"):
            out.append(Factor((v,), np.log(lik)))
    return out


def focus(graph: FactorGraph, evidence: Mapping, variables=None, virtual=None, joint=False) -> tuple[FactorGraph, int | None]:
    """The graph the engine needs for a focused query, and the index of the joint factor (or None).

    For a directed graph only the ancestral closure of the query, evidence and soft-evidence
    variables is kept (a Bayesian network again, in topological order). Soft evidence and a joint
    factor make the result undirected (its normaliser is still :math:`p(e)` times the soft
    weights, since the kept CPTs stay normalised).
    """
    soft = _virtual_factors(graph, virtual)
    factors, states = list(graph.factors), dict(graph.states)
    if graph.directed and variables is not None:
        dag = nx.DiGraph()
        dag.add_nodes_from(graph.variables)
        dag.add_edges_from((p, f.scope[-1]) for f in graph.factors for p in f.scope[:-1])
        keep = set(variables) | set(evidence) | {f.scope[0] for f in soft}
        for v in list(keep):
            keep |= nx.ancestors(dag, v)
        kept = [(v, f) for v, f in zip(graph.variables, graph.factors) if v in keep]
        states = {v: graph.states[v] for v, _ in kept}
        factors = [f for _, f in kept]
    where = None
    extra = soft
    if joint:
        where = len(factors) + len(soft)
        extra = soft + [Factor(tuple(variables), np.zeros([len(states[v]) for v in variables]))]
    directed = graph.directed and not extra
    return FactorGraph(states, factors + extra, directed=directed), where


def _focused_problem(model, evidence, variables, virtual, joint, model_args, model_kwargs, what):
    problem = prepare(model, evidence, model_args, model_kwargs)
    if variables is not None:
        variables = check_variables(problem.graph, variables, problem.evidence, what)
    graph, where = focus(problem.graph, problem.evidence, variables, virtual, joint)
    return problem, Problem(graph, dict(problem.evidence), None, problem.shown), variables, where


def joint(model, variables, evidence=None, *, virtual_evidence=None, model_args=(), model_kwargs=None,
          memory_budget=DEFAULT_MEMORY_BUDGET) -> Result:
    """The joint posterior table :math:`p(x_Q \\mid e)` of the query variables ``variables``.

    Args:
        model: a ``BayesNet``, a :class:`FactorGraph` or a NumPyro program with discrete sites.
        variables: the query variables (unobserved), in the order of the table's axes.
        evidence: ``{variable: state}`` (hard evidence).
        virtual_evidence: ``{variable: likelihood vector}`` (soft evidence), see the module.
        memory_budget: bytes; the joint table and the plan's largest table are checked.

    Returns:
        ``Result(log_evidence=log p(e) (times the soft weights), diagnostics={"joint": array
        of shape (K_q1, ..., K_qm), "variables": the query variables, "states": their state
        names})``.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
        ...                 [Factor(("a", "b"), np.log([[1.0, 2.0], [3.0, 4.0]]))])
        >>> joint(g, ["b", "a"]).diagnostics["joint"]
        array([[0.1, 0.3],
               [0.2, 0.4]])
    """
    start = time.perf_counter()
    problem, focused, variables, where = _focused_problem(model, evidence, variables, virtual_evidence, True,
                                                          model_args, model_kwargs, "exact.joint")
    sizes = [len(focused.graph.states[v]) for v in variables]
    check_budget(int(np.prod(sizes, dtype=np.int64)), memory_budget, f"the joint table of {list(variables)}")
    query = exact._Query(focused)
    plan = exact._plan(query.key, False)
    check_budget(plan.largest, memory_budget, "exact joint")
    program = exact._program(query.key, False)
    log_z, posts = program.posteriors(query.restricted(), (where,))
    log_z = float(log_z)
    check_evidence(log_z, problem.shown, where="exact joint")
    table = posts[where]
    table = table / table.sum()
    return Result(
        method="exact",
        log_evidence=log_z,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={
            "joint": table,
            "variables": variables,
            "states": {v: focused.graph.states[v] for v in variables},
            **exact._plan_diagnostics(plan),
        },
    )


def marginal_map(model, variables, evidence=None, *, virtual_evidence=None, model_args=(), model_kwargs=None,
                 memory_budget=DEFAULT_MEMORY_BUDGET) -> Result:
    """Marginal MAP: :math:`\\hat x_Q = \\arg\\max_{x_Q} \\sum_{x_R} p(x_Q, x_R \\mid e)`, the other
    unobserved variables :math:`R` summed out (pgmpy's ``map_query(variables=...)``).

    Exact: the arg max of :func:`joint`'s table (ties go to the first in C order). With every
    unobserved variable in ``variables`` it is the MPE of :func:`inference.exact.map`.

    Returns:
        ``Result(map={v: state index}, diagnostics={"map_states": {v: state name},
        "log_probability": log p(x_Q* | e), "log_joint": log p(x_Q*, e)})``.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
        ...                 [Factor(("a", "b"), np.log([[0.3, 0.1], [0.2, 0.25]]))])
        >>> marginal_map(g, ["a"]).map, exact.map(g).map  # a=1 has 0.45 in all, but (0, 0) wins jointly
        ({'a': 1}, {'a': 0, 'b': 0})
    """
    start = time.perf_counter()
    result = joint(model, variables, evidence, virtual_evidence=virtual_evidence, model_args=model_args,
                   model_kwargs=model_kwargs, memory_budget=memory_budget)
    table = result.diagnostics["joint"]
    variables = result.diagnostics["variables"]
    best = np.unravel_index(int(np.argmax(table)), table.shape)
    states = {v: int(k) for v, k in zip(variables, best)}
    log_p = float(np.log(table[best]))
    return Result(
        method="exact",
        map=states,
        seconds=time.perf_counter() - start,
        diagnostics={
            "map_states": {v: result.diagnostics["states"][v][k] for v, k in states.items()},
            "log_probability": log_p,
            "log_joint": log_p + result.log_evidence,
        },
    )

