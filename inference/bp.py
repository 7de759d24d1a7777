"""Belief propagation on discrete factor graphs: the junction tree (exact) and loopy BP.

A factor graph defines :math:`\\tilde p(x) = \\prod_f \\phi_f(x_{S_f})` and
:math:`Z = \\sum_x \\tilde p(x)`. Evidence :math:`e` clamps some variables; what remains is a factor
graph over the unobserved variables whose factors are the slices :math:`\\phi_f(x_{S_f \\setminus E},
e_{S_f \\cap E})`, and its normaliser is :math:`Z(e) = \\sum_x \\tilde p(x, e)` (:math:`p(e)` for a
Bayesian network).

**Junction tree** (exact, :func:`junction_tree`). Message passing is exact on a tree, so we first
build one out of the graph:

1. Moralise: connect every pair of unobserved variables that share a factor.
2. Triangulate by eliminating variables in a greedy min-fill order (ties broken by the smallest
   clique table); each elimination step yields a clique, and the maximal ones are kept.
3. Join the cliques with a maximum-weight spanning tree, weight = separator size; this tree has the
   running-intersection property (Jensen and Jensen, 1994).
4. Assign every factor to a clique that holds its scope; a clique's potential is the sum of its
   log-factors.
5. Collect (leaves to root) then distribute (root to leaves), in log space,

   .. math::

       \\log m_{c \\to d}(x_{S_{cd}}) = \\log\\!\\sum_{x_{C \\setminus S_{cd}}}
           \\exp\\Big(\\log \\psi_c(x_C) + \\sum_{b \\in N(c) \\setminus d} \\log m_{b \\to c}\\Big),

   after which every clique belief is :math:`\\tilde p(x_C, e)`, :math:`\\log Z(e)` is the
   log-sum of any belief, and each variable's marginal comes from the smallest clique holding it.
   With ``mode="max"`` the sum becomes a max and a root-to-leaves trace-back decodes the MAP.

**Loopy BP** (:func:`loopy`). The same local updates on the factor graph itself, iterated until
the messages stop changing, in a flooding (all at once), sequential (one factor after another) or
residual (largest change first) order (:mod:`inference.bp_schedules`):

.. math::

    \\log m_{v \\to f}(x_v) = \\sum_{g \\ni v,\\, g \\neq f} \\log m_{g \\to v}(x_v), \\qquad
    \\log m_{f \\to v}(x_v) = \\log\\!\\sum_{x_{S_f \\setminus v}} \\exp\\Big(\\log \\phi_f(x_{S_f})
        + \\sum_{u \\in S_f \\setminus v} \\log m_{u \\to f}(x_u)\\Big).

It is exact on trees; on graphs with cycles its fixed points are the stationary points of the
Bethe free energy (Yedidia, Freeman and Weiss, 2005), whose value at the fixed point estimates
:math:`\\log Z`:

.. math::

    \\log Z_{\\text{Bethe}} = \\sum_f \\sum_{x_f} b_f(x_f) \\log \\frac{\\phi_f(x_f)}{b_f(x_f)}
        + \\sum_v (d_v - 1) \\sum_{x_v} b_v(x_v) \\log b_v(x_v).

Both are compiled once per (graph structure, evidence variables): factor tables and evidence
values are arguments of the jitted function, so new numbers never recompile.

References:
    Lauritzen and Spiegelhalter (1988). Local computations with probabilities on graphical
    structures and their application to expert systems.
    Jensen and Jensen (1994). Optimal junction trees.
    Kschischang, Frey and Loeliger (2001). Factor graphs and the sum-product algorithm.
    Yedidia, Freeman and Weiss (2005). Constructing free-energy approximations and generalized
    belief propagation algorithms.

Example:
    >>> import numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference import bp
    >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
    ...                 [Factor(("a", "b"), np.log([[4.0, 1.0], [1.0, 4.0]]))])
    >>> r = bp.junction_tree(g, evidence={"a": "1"})
    >>> np.round(r.marginals["b"], 3), round(float(np.exp(r.log_evidence)), 6)
    (array([0.2, 0.8]), 5.0)
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Mapping

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from inference.bp_schedules import SCHEDULES, compiled_loopy, reduce_mode
from inference.discrete import (
    DEFAULT_MEMORY_BUDGET,
    Problem,
    check_budget,
    check_evidence,
    evidence_columns,
    logsumexp,
    prepare,
    restrict,
    structure,
)
from inference.elimination import elimination_cliques
from inference.errors import DataError
from inference.layout import MessageLayout, message_layout, query_layout, query_plan
from inference.result import Result


def _check_evidence_probability(log_z, problem: Problem, what: str):
    check_evidence(log_z, problem.named(), where=what)


def expand(table, scope, target):
    """Transpose / reshape ``table`` over ``scope`` so that it broadcasts against ``target``."""
    scope = tuple(scope)
    if not scope:
        return jnp.reshape(table, (1,) * len(target))
    perm = sorted(range(len(scope)), key=lambda i: target.index(scope[i]))
    table = jnp.transpose(table, perm)
    shape = []
    it = iter(table.shape)
    for var in target:
        shape.append(next(it) if var in scope else 1)
    return jnp.reshape(table, shape)


# =========================================================================== junction tree
@dataclasses.dataclass(frozen=True)
class JunctionTree:
    """The static plan: cliques, the tree over them, and where each factor goes.

    Attributes:
        free: the unobserved variables.
        cliques: the maximal cliques (each a tuple of variables in ``free`` order).
        parent: the parent clique of each clique (-1 for the root, clique 0).
        children: the children of each clique.
        order: cliques in breadth-first order from the root.
        separators: the separator of each clique with its parent (ordered as in the clique).
        assignment: the clique of each factor, -1 for factors with no unobserved variable.
        home: variable -> the smallest clique that holds it.
        width: the largest clique size minus one (the tree-width of this triangulation).
        scopes: the factors' scopes with the evidence variables removed.
    """

    free: tuple
    cliques: tuple
    parent: tuple
    children: tuple
    order: tuple
    separators: tuple
    assignment: tuple
    home: dict
    width: int
    scopes: tuple


@functools.lru_cache(maxsize=64)
def junction_tree_plan(signature: tuple, evidence_vars: tuple) -> JunctionTree:
    """Build the junction tree of a graph structure with the given evidence variables clamped.

    Its cliques come from the elimination order of the contraction plan that exact inference
    uses for the same query (:func:`inference.layout.query_plan`, :attr:`Plan.order`).
    """
    cards, _, _ = structure(signature)
    key = (signature, tuple(evidence_vars))
    query = query_layout(key)
    free = query.free_names
    rank = {v: i for i, v in enumerate(free)}
    name = query.variables
    rscopes = tuple(tuple(name[i] for i in s) for s in query.scopes[: len(query.restrict)])

    # 1-2. moralise and triangulate by eliminating in the plan's order; keep the maximal cliques
    maximal = elimination_cliques(query.scopes, query_plan(key, False).order)
    cliques = tuple(tuple(sorted((name[i] for i in c), key=rank.get)) for c in maximal)

    # 3. maximum-weight spanning tree over separator sizes (empty separators join components)
    tree = nx.Graph()
    tree.add_nodes_from(range(len(cliques)))
    for i in range(len(cliques)):
        for j in range(i + 1, len(cliques)):
            tree.add_edge(i, j, weight=len(set(cliques[i]) & set(cliques[j])))
    tree = nx.maximum_spanning_tree(tree) if len(cliques) > 1 else tree
    parent = [-1] * len(cliques)
    children = [[] for _ in cliques]
    order = [0] if cliques else []
    for u, w in nx.bfs_edges(tree, 0) if cliques else ():
        parent[w] = u
        children[u].append(w)
        order.append(w)
    separators = tuple(
        () if parent[c] < 0 else tuple(v for v in cliques[c] if v in set(cliques[parent[c]]))
        for c in range(len(cliques))
    )

    # 4. assign each factor to the smallest clique that holds its (reduced) scope
    sizes = [int(np.prod([cards[v] for v in c], dtype=np.int64)) for c in cliques]
    assignment = []
    for scope in rscopes:
        if not scope:
            assignment.append(-1)
            continue
        holders = [i for i, c in enumerate(cliques) if set(scope) <= set(c)]
        assignment.append(min(holders, key=lambda i: sizes[i]))
    home = {}
    for v in free:
        holders = [i for i, c in enumerate(cliques) if v in c]
        home[v] = min(holders, key=lambda i: sizes[i])
    return JunctionTree(
        free=free,
        cliques=cliques,
        parent=tuple(parent),
        children=tuple(tuple(c) for c in children),
        order=tuple(order),
        separators=separators,
        assignment=tuple(assignment),
        home=home,
        width=max((len(c) for c in cliques), default=1) - 1,
        scopes=rscopes,
    )


@functools.lru_cache(maxsize=64)
def _compiled_junction_tree(signature: tuple, evidence_vars: tuple, mode: str):
    cards, scopes, _ = structure(signature)
    plan = junction_tree_plan(signature, evidence_vars)
    columns = evidence_columns(scopes, evidence_vars)
    rscopes = plan.scopes
    cliques = plan.cliques

    def message(belief, c):
        """Reduce clique c's log-table onto its separator with the parent (in c's order)."""
        sep = set(plan.separators[c])
        axes = tuple(i for i, v in enumerate(cliques[c]) if v not in sep)
        return reduce_mode(belief, axes, mode)

    def run(tables, evidence_values):
        tables = restrict(tables, columns, evidence_values)
        constant = sum((t for t, a in zip(tables, plan.assignment) if a < 0), jnp.zeros(()))
        # 4. clique potentials
        potential = [jnp.zeros([cards[v] for v in c]) for c in cliques]
        for table, scope, a in zip(tables, rscopes, plan.assignment):
            if a >= 0:
                potential[a] = potential[a] + expand(table, scope, cliques[a])
        # 5a. collect: up[c] is the message from c to its parent, over separators[c]
        up = [None] * len(cliques)
        inner = [None] * len(cliques)  # potential times the messages from the children
        for c in reversed(plan.order):
            inner[c] = potential[c]
            for ch in plan.children[c]:
                inner[c] = inner[c] + expand(up[ch], plan.separators[ch], cliques[c])
            if plan.parent[c] >= 0:
                up[c] = message(inner[c], c)
        if mode == "max":
            return constant, _trace_back(plan, inner)
        # 5b. distribute: down[c] is the message from c's parent to c, over separators[c]
        down = [None] * len(cliques)
        belief = [None] * len(cliques)
        for c in plan.order:
            from_parent = potential[c] if plan.parent[c] < 0 else potential[c] + expand(
                down[c], plan.separators[c], cliques[c]
            )
            belief[c] = from_parent
            for ch in plan.children[c]:
                belief[c] = belief[c] + expand(up[ch], plan.separators[ch], cliques[c])
            for ch in plan.children[c]:
                table = from_parent
                for other in plan.children[c]:
                    if other != ch:
                        table = table + expand(up[other], plan.separators[other], cliques[c])
                sep = set(plan.separators[ch])
                axes = tuple(i for i, v in enumerate(cliques[c]) if v not in sep)
                reduced = reduce_mode(table, axes, mode)
                # reduced is over the separator in c's order; re-order to ch's order
                down[ch] = _reorder(reduced, [v for v in cliques[c] if v in sep], plan.separators[ch])
        log_z_tree = (
            logsumexp(belief[0]) if cliques else jnp.zeros(())
        )
        marginals = []
        for v in plan.free:
            c = plan.home[v]
            axes = tuple(i for i, u in enumerate(cliques[c]) if u != v)
            marginals.append(jnp.exp(logsumexp(belief[c], axis=axes) - log_z_tree))
        calibrated = tuple(jnp.exp(b - log_z_tree) for b in belief)
        return constant, (log_z_tree, tuple(marginals), calibrated)

    return jax.jit(run)


def _reorder(table, scope, target):
    perm = [list(scope).index(v) for v in target]
    return jnp.transpose(table, perm)


def _trace_back(plan: JunctionTree, inner):
    """Max-product decoding: argmax at the root, then each child given its separator values.

    Returns (max log-value of the reduced graph, tuple of state indices in ``plan.free`` order).
    """
    cliques = plan.cliques
    value = {}
    best = jnp.zeros(())
    for c in plan.order:
        table = inner[c]
        sep = plan.separators[c]
        if sep:
            axes = [cliques[c].index(v) for v in sep]
            table = jnp.moveaxis(table, axes, list(range(len(sep))))
            table = table[tuple(value[v] for v in sep)]
        rest = [v for v in cliques[c] if v not in sep]
        if not rest:
            continue
        flat = jnp.ravel(table)
        k = jnp.argmax(flat)
        if c == plan.order[0]:
            best = flat[k]
        for v, idx in zip(rest, jnp.unravel_index(k, table.shape)):
            value[v] = idx
    return best, tuple(value[v] for v in plan.free)


def junction_tree(
    model,
    evidence=None,
    *,
    mode: str = "sum",
    memory_budget=DEFAULT_MEMORY_BUDGET,
    model_args=(),
    model_kwargs=None,
) -> Result:
    """Exact marginals and :math:`\\log Z(e)` (or the MAP) by junction-tree message passing.

    Args:
        model: a :class:`~inference.protocols.FactorGraphModel`, a factor graph or a program.
        evidence: ``{variable: state}``, clamped before the tree is built.
        mode: ``"sum"`` (marginals and log-evidence) or ``"max"`` (the MAP assignment).
        memory_budget: bytes of the largest float64 clique table allowed (the same parameter,
            unit and default as every exact method's); a bigger one raises
            :class:`~inference.errors.MemoryBudgetError` before anything is allocated.

    Returns:
        ``mode="sum"``: ``Result(marginals={v: p(x_v | e)} for every unobserved v,
        log_evidence=log Z(e), log_evidence_kind="exact")``. ``mode="max"``:
        ``Result(map={v: index}, diagnostics={"map_states", "log_joint"})`` where ``log_joint`` is
        :math:`\\log \\tilde p(x^*, e)`. ``diagnostics["cliques"]`` and ``["width"]`` describe the tree,
        ``["parent"]`` gives each clique's parent (-1 at the root) and ``["separators"]`` each
        clique's separator with its parent (variables in the clique's order). With ``mode="sum"``,
        ``["clique_potentials"]`` are the calibrated clique beliefs :math:`p(x_C \\mid e)` (axes in
        the clique's variable order) and ``["separator_potentials"]`` the separator beliefs
        :math:`p(x_S \\mid e)` (None at the root); neighbouring beliefs agree on their separator.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
        ...                 [Factor(("a", "b"), np.log([[1.0, 2.0], [3.0, 4.0]]))])
        >>> junction_tree(g, mode="max").map
        {'a': 1, 'b': 1}
    """
    if mode not in ("sum", "max"):
        raise DataError(f"mode must be 'sum' or 'max', got {mode!r}")
    start = time.perf_counter()
    problem = prepare(model, evidence, model_args, model_kwargs)
    signature = problem.graph.signature()
    plan = junction_tree_plan(signature, problem.evidence_vars)
    cards = problem.graph.cardinalities
    for clique in plan.cliques:
        entries = int(np.prod([cards[v] for v in clique], dtype=np.float64))
        shown = ", ".join(clique[:8]) + (", ..." if len(clique) > 8 else "")
        check_budget(entries, memory_budget, f"the junction tree's clique of {len(clique)} variables ({shown})")
    fn = _compiled_junction_tree(signature, problem.evidence_vars, mode)
    constant, out = fn(problem.tables, jnp.asarray(problem.evidence_values))
    diagnostics = {"cliques": plan.cliques, "width": plan.width, "parent": plan.parent,
                   "separators": plan.separators}
    if mode == "max":
        best, values = out
        log_joint = float(constant + best)
        _check_evidence_probability(log_joint, problem, "junction tree")
        states = {v: int(i) for v, i in zip(plan.free, values)}
        diagnostics |= {
            "map_states": {v: problem.graph.states[v][i] for v, i in states.items()},
            "log_joint": log_joint,
        }
        return Result(
            method="junction_tree_max",
            map=states,
            seconds=time.perf_counter() - start,
            diagnostics=diagnostics,
        )
    log_z = float(constant + out[0])
    _check_evidence_probability(log_z, problem, "junction tree")
    marginals = {v: np.asarray(m) for v, m in zip(plan.free, out[1])}
    potentials = tuple(np.asarray(b) for b in out[2])
    separator_potentials = []
    for c, table in enumerate(potentials):
        sep = plan.separators[c]
        axes = tuple(i for i, v in enumerate(plan.cliques[c]) if v not in sep)
        separator_potentials.append(None if plan.parent[c] < 0 else table.sum(axis=axes))
    diagnostics |= {"clique_potentials": potentials, "separator_potentials": tuple(separator_potentials)}
    return Result(
        method="junction_tree",
        marginals=marginals,
        log_evidence=log_z,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics=diagnostics,
    )


# =========================================================================== loopy BP
def check_loopy_options(mode, damping, max_iter):
    """The options every loopy message-passing schedule shares (this module's :func:`loopy`, the
    lattice BP of the MRF layer): ``mode`` "sum" or "max", ``damping`` in [0, 1), ``max_iter`` >= 1.
    A bad one raises :class:`~inference.errors.DataError` naming it."""
    if mode not in ("sum", "max"):
        raise DataError(f"mode must be 'sum' or 'max', got {mode!r}")
    if not 0.0 <= float(damping) < 1.0:
        raise DataError(f"damping must lie in [0, 1), got {damping!r}")
    if int(max_iter) < 1:
        raise DataError(f"max_iter must be at least 1, got {max_iter!r}")


def loopy(
    model,
    evidence=None,
    *,
    mode: str = "sum",
    damping: float = 0.0,
    max_iter: int = 200,
    tol: float = 1e-8,
    schedule: str = "flooding",
    model_args=(),
    model_kwargs=None,
) -> Result:
    """Loopy belief propagation (sum- or max-product) with a flooding, sequential or residual schedule.

    With ``schedule="flooding"`` every iteration recomputes all variable->factor and then all
    factor->variable messages at once (factors grouped by table shape, one vectorised update per
    group); ``"sequential"`` sweeps the factors in a fixed order, each reading the messages its
    predecessors just sent; ``"residual"`` commits, one factor at a time, the factor whose update
    would change its messages most (Elidan et al. 2006; see :mod:`inference.bp_schedules`). Each
    new message is mixed with the old one in probability space,
    :math:`m \\leftarrow (1 - \\delta) m^{new} + \\delta m^{old}`, and the run stops when no message
    moves by more than ``tol`` (in probability) or after ``max_iter`` iterations.

    Exact on trees (a fixed point is reached after diameter-many iterations). On graphs with
    cycles the marginals and the Bethe :math:`\\log Z` are approximations whose error depends on
    the loops; convergence is not guaranteed: damping helps, and ``diagnostics`` says.

    Args:
        model: a factor graph (or a model or program that has one).
        evidence: ``{variable: state name or index}``, clamped.
        mode: ``"sum"`` (marginals, Bethe log Z) or ``"max"`` (max-marginals and their argmax).
        damping: :math:`\\delta \\in [0, 1)`.
        max_iter: the most iterations (sweeps; for ``"residual"``, rounds of as many single-factor
            updates as there are factors); tol: the convergence threshold on the message change.
        schedule: ``"flooding"``, ``"sequential"`` or ``"residual"``; every schedule has the same
            fixed points (and on a tree the exact answer), not the same convergence.

    Returns:
        ``mode="sum"``: ``Result(marginals, log_evidence=<Bethe estimate>,
        log_evidence_kind="estimate")``. ``mode="max"``: ``Result(map={v: argmax of the
        max-marginal}, marginals=<max-marginals normalised to max 1>)``, ``diagnostics["log_joint"]``
        being :math:`\\log \\tilde p(x^*, e)` of the decoded assignment (ties between MAP
        assignments can make the per-variable argmax inconsistent). ``diagnostics``: ``converged``,
        ``iterations``, ``max_residual`` (one entry per iteration: the largest message change in
        it), ``schedule``, ``messages``: the final
        factor-to-variable messages ``{(factor index, variable): vector}``, normalised; each
        belief is the normalised product of the messages into its variable.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> ring = FactorGraph({v: ("0", "1") for v in "abc"},
        ...     [Factor((u, w), np.log([[2.0, 1.0], [1.0, 2.0]])) for u, w in ("ab", "bc", "ca")])
        >>> r = loopy(ring, evidence={"a": 1}, damping=0.2)  # observing a cuts the loop: exact
        >>> bool(r.diagnostics["converged"]), np.round(r.marginals["b"], 4)  # 4/14, 10/14
        (True, array([0.2857, 0.7143]))
    """
    check_loopy_options(mode, damping, max_iter)
    if schedule not in SCHEDULES:
        raise DataError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {schedule!r}")
    start = time.perf_counter()
    problem = prepare(model, evidence, model_args, model_kwargs)
    signature = problem.graph.signature()
    layout = message_layout(signature, problem.evidence_vars)
    capacity = max(1024, 1 << (int(max_iter) - 1).bit_length())
    fn = compiled_loopy(signature, problem.evidence_vars, mode, capacity, schedule)
    beliefs, log_z, iterations, residual, history, f2v = fn(
        problem.tables,
        jnp.asarray(problem.evidence_values),
        jnp.asarray(float(damping)),
        jnp.asarray(float(tol)),
        jnp.asarray(int(max_iter)),
    )
    beliefs = np.asarray(beliefs)
    iterations = int(iterations)
    if len(layout.free) and not np.all(np.isfinite(beliefs.max(axis=-1))):
        _check_evidence_probability(-np.inf, problem, "loopy BP found a contradiction")
    diagnostics = {
        "converged": bool(float(residual) <= tol),
        "iterations": iterations,
        "max_residual": np.asarray(history)[:iterations],
        "damping": float(damping),
        "schedule": schedule,
        "messages": _messages(layout, np.asarray(f2v)),
    }
    marginals = {v: np.exp(beliefs[i, : layout.cards[i]]) for i, v in enumerate(layout.free)}
    seconds = time.perf_counter() - start
    if mode == "max":
        states = {v: int(np.argmax(m)) for v, m in marginals.items()}
        log_joint = log_joint_of(problem, states)
        _check_evidence_probability(log_joint, problem, "loopy max-product decoded an impossible state")
        diagnostics |= {
            "map_states": {v: problem.graph.states[v][i] for v, i in states.items()},
            "log_joint": log_joint,
        }
        return Result(method="loopy_bp_max", map=states, marginals=marginals, seconds=seconds,
                      diagnostics=diagnostics)
    log_z = float(log_z)
    _check_evidence_probability(log_z, problem, "loopy BP")
    return Result(
        method="loopy_bp",
        marginals=marginals,
        log_evidence=log_z,
        log_evidence_kind="estimate",
        seconds=seconds,
        diagnostics=diagnostics,
    )


def _messages(layout: MessageLayout, f2v) -> dict:
    """The final factor -> variable messages, ``{(factor index, variable): vector}`` normalised to
    sum 1 (``mode="sum"``) or max 1 (``mode="max"``), over the variable's states."""
    out = {}
    for group in layout.groups:
        for i, f in enumerate(group.factors):
            for j, e in enumerate(group.edges[i]):
                v = int(group.variables[i, j])
                out[(int(f), layout.free[v])] = np.exp(f2v[int(e), : int(layout.cards[v])])
    return out


def log_joint_of(problem: Problem, states: Mapping[str, int]) -> float:
    """:math:`\\log \\tilde p(x, e)` of a full assignment of the unobserved variables."""
    full = {**problem.evidence, **states}
    total = 0.0
    for factor, table in zip(problem.graph.factors, problem.tables):
        total += float(np.asarray(table)[tuple(full[v] for v in factor.scope)])
    return total
