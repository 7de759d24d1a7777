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

**Loopy BP** (:func:`loopy`). The same local updates on the factor graph itself, iterated with a
flooding schedule until the messages stop changing:

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

from inference.errors import EvidenceError, MemoryBudgetError, ModelError
from inference.factors import FactorGraph, as_factor_graph
from inference.result import Result

NEG_INF = -np.inf


# =========================================================================== shared helpers
# Used by bp, importance, gibbs and meanfield: checked inputs, evidence slicing, factor layout.
@dataclasses.dataclass(frozen=True)
class Problem:
    """A factor graph with checked evidence, ready for the jitted kernels.

    Attributes:
        graph: the factor graph.
        evidence: variable -> state index, in the graph's variable order.
        evidence_vars: the evidence variables, in the graph's variable order (a compile key).
        evidence_values: their state indices, an int array (an argument, not a compile key).
        tables: the log-tables as float64 JAX arrays, one per factor.
    """

    graph: FactorGraph
    evidence: dict
    evidence_vars: tuple
    evidence_values: np.ndarray
    tables: tuple

    @property
    def free(self) -> tuple:
        """The unobserved variables, in the graph's order."""
        return tuple(v for v in self.graph.variables if v not in self.evidence)


def prepare(model, evidence=None, model_args=(), model_kwargs=None) -> Problem:
    """The factor graph of ``model`` with ``evidence`` checked (EvidenceError) and tables checked
    (ModelError on NaN or :math:`+\\infty` log-entries)."""
    graph = as_factor_graph(model, *model_args, **(model_kwargs or {}))
    if not isinstance(graph, FactorGraph):
        raise ModelError(f"{type(model).__name__} did not give a FactorGraph")
    if evidence is not None and not isinstance(evidence, Mapping):
        raise EvidenceError(f"evidence must be a mapping variable -> state, got {type(evidence).__name__}")
    indices = graph.evidence_indices(evidence)
    ev_vars = tuple(v for v in graph.variables if v in indices)
    tables = []
    for factor in graph.factors:
        table = np.asarray(factor.log_table, dtype=np.float64)
        if np.isnan(table).any() or np.isposinf(table).any():
            raise ModelError(f"factor over {factor.scope} has NaN or +inf log-entries")
        tables.append(jnp.asarray(table))
    return Problem(
        graph=graph,
        evidence={v: indices[v] for v in ev_vars},
        evidence_vars=ev_vars,
        evidence_values=np.asarray([indices[v] for v in ev_vars], dtype=np.int64),
        tables=tuple(tables),
    )


def structure(signature: tuple) -> tuple[dict, tuple, bool]:
    """``graph.signature()`` back into (cardinalities, scopes, directed)."""
    cards, scopes, directed = signature
    return dict(cards), scopes, directed


def reduce_tables(tables, scopes, evidence_vars, evidence_values):
    """Slice every table at the evidence: axes of evidence variables are indexed away.

    Traced-friendly (the evidence values may be JAX tracers). Returns the reduced tables; their
    scopes are :func:`reduced_scopes`.
    """
    position = {v: k for k, v in enumerate(evidence_vars)}
    out = []
    for table, scope in zip(tables, scopes):
        for axis in reversed(range(len(scope))):
            if scope[axis] in position:
                index = evidence_values[position[scope[axis]]]
                table = jax.lax.dynamic_index_in_dim(table, index, axis, keepdims=False)
        out.append(table)
    return out


def reduced_scopes(scopes, evidence_vars) -> tuple:
    observed = set(evidence_vars)
    return tuple(tuple(v for v in scope if v not in observed) for scope in scopes)


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


def interaction_graph(cards: Mapping[str, int], scopes) -> nx.Graph:
    """Variables as nodes, an edge between every two that share a scope (the moral graph of a BN)."""
    graph = nx.Graph()
    graph.add_nodes_from(cards)
    for scope in scopes:
        for i, u in enumerate(scope):
            for w in scope[i + 1 :]:
                graph.add_edge(u, w)
    return graph


def colouring(cards: Mapping[str, int], scopes, variables) -> tuple[tuple[str, ...], ...]:
    """Colour classes of ``variables`` on the interaction graph: two variables of one class share
    no factor, so their conditionals given the rest are independent (chromatic Gibbs, CAVI)."""
    graph = interaction_graph(cards, scopes).subgraph(variables)
    colour = nx.coloring.greedy_color(graph, strategy="largest_first")
    order = {v: i for i, v in enumerate(variables)}
    classes = {}
    for var in variables:
        classes.setdefault(colour.get(var, 0), []).append(var)
    return tuple(tuple(sorted(vs, key=order.get)) for _, vs in sorted(classes.items()))


def _check_evidence_probability(log_z, problem: Problem, what: str):
    if not np.isfinite(log_z):
        if problem.evidence:
            named = {v: problem.graph.states[v][i] for v, i in problem.evidence.items()}
            raise EvidenceError(f"evidence {named} has probability zero under the model ({what})")
        raise ModelError(f"the model gives probability zero to every configuration ({what})")


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


def min_fill_order(graph: nx.Graph, cards: Mapping[str, int]) -> tuple[list, list]:
    """Greedy min-fill elimination order (ties: smallest clique table, then variable order).

    Returns the order and the clique created by each elimination step.
    """
    graph = graph.copy()
    rank = {v: i for i, v in enumerate(graph.nodes)}
    order, cliques = [], []
    while graph.number_of_nodes():
        best, best_key = None, None
        for var in graph.nodes:
            nbrs = list(graph.neighbors(var))
            fill = sum(
                1 for i, a in enumerate(nbrs) for b in nbrs[i + 1 :] if not graph.has_edge(a, b)
            )
            size = float(np.prod([cards[u] for u in nbrs + [var]], dtype=np.float64))
            key = (fill, size, rank[var])
            if best_key is None or key < best_key:
                best, best_key = var, key
        nbrs = list(graph.neighbors(best))
        cliques.append(frozenset(nbrs + [best]))
        for i, a in enumerate(nbrs):
            for b in nbrs[i + 1 :]:
                graph.add_edge(a, b)
        graph.remove_node(best)
        order.append(best)
    return order, cliques


@functools.lru_cache(maxsize=64)
def junction_tree_plan(signature: tuple, evidence_vars: tuple) -> JunctionTree:
    """Build the junction tree of a graph structure with the given evidence variables clamped."""
    cards, scopes, _ = structure(signature)
    observed = set(evidence_vars)
    free = tuple(v for v in cards if v not in observed)
    rank = {v: i for i, v in enumerate(free)}
    rscopes = reduced_scopes(scopes, evidence_vars)
    free_cards = {v: cards[v] for v in free}

    # 1-2. moralise, triangulate (min-fill), keep the maximal elimination cliques
    _, raw = min_fill_order(interaction_graph(free_cards, rscopes), free_cards)
    raw = sorted(set(raw), key=len, reverse=True)
    maximal = [c for i, c in enumerate(raw) if not any(c < d for d in raw[:i])]
    cliques = tuple(tuple(sorted(c, key=rank.get)) for c in maximal)

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
    )


def _reduce(x, axes, mode):
    if not axes:
        return x
    return logsumexp(x, axis=axes) if mode == "sum" else jnp.max(x, axis=axes)


@functools.lru_cache(maxsize=64)
def _compiled_junction_tree(signature: tuple, evidence_vars: tuple, mode: str):
    cards, scopes, _ = structure(signature)
    plan = junction_tree_plan(signature, evidence_vars)
    rscopes = reduced_scopes(scopes, evidence_vars)
    cliques = plan.cliques

    def message(belief, c):
        """Reduce clique c's log-table onto its separator with the parent (in c's order)."""
        sep = set(plan.separators[c])
        axes = tuple(i for i, v in enumerate(cliques[c]) if v not in sep)
        return _reduce(belief, axes, mode)

    def run(tables, evidence_values):
        tables = reduce_tables(tables, scopes, evidence_vars, evidence_values)
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
                reduced = _reduce(table, axes, mode)
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
        return constant, (log_z_tree, tuple(marginals))

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
    max_table_entries: int = 2**25,
    model_args=(),
    model_kwargs=None,
) -> Result:
    """Exact marginals and :math:`\\log Z(e)` (or the MAP) by junction-tree message passing.

    Args:
        model: anything :func:`inference.factors.as_factor_graph` accepts.
        evidence: ``{variable: state name or index}``.
        mode: ``"sum"`` (marginals and log-evidence) or ``"max"`` (the MAP assignment).
        max_table_entries: the largest clique table allowed; a bigger one raises
            :class:`MemoryBudgetError` before anything is allocated.

    Returns:
        ``mode="sum"``: ``Result(marginals={v: p(x_v | e)} for every unobserved v,
        log_evidence=log Z(e), log_evidence_kind="exact")``. ``mode="max"``:
        ``Result(map={v: index}, diagnostics={"map_states", "log_joint"})`` where ``log_joint`` is
        :math:`\\log \\tilde p(x^*, e)`. ``diagnostics["cliques"]`` and ``["width"]`` describe the tree.

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
        ...                 [Factor(("a", "b"), np.log([[1.0, 2.0], [3.0, 4.0]]))])
        >>> junction_tree(g, mode="max").map
        {'a': 1, 'b': 1}
    """
    if mode not in ("sum", "max"):
        raise ValueError(f"mode must be 'sum' or 'max', got {mode!r}")
    start = time.perf_counter()
    problem = prepare(model, evidence, model_args, model_kwargs)
    signature = problem.graph.signature()
    plan = junction_tree_plan(signature, problem.evidence_vars)
    cards = problem.graph.cardinalities
    for clique in plan.cliques:
        entries = int(np.prod([cards[v] for v in clique], dtype=np.float64))
        if entries > max_table_entries:
            raise MemoryBudgetError(
                f"the junction tree has a clique of {len(clique)} variables ({', '.join(clique[:8])}"
                f"{', ...' if len(clique) > 8 else ''}) with {entries} table entries, more than "
                f"max_table_entries={max_table_entries}; use loopy BP or sampling"
            )
    fn = _compiled_junction_tree(signature, problem.evidence_vars, mode)
    constant, out = fn(problem.tables, jnp.asarray(problem.evidence_values))
    diagnostics = {"cliques": plan.cliques, "width": plan.width}
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
    return Result(
        method="junction_tree",
        marginals=marginals,
        log_evidence=log_z,
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics=diagnostics,
    )


# =========================================================================== factor layout
@dataclasses.dataclass(frozen=True)
class FactorGroup:
    """Factors whose reduced tables share one (padded) shape, stacked for vectorised updates.

    Attributes:
        shape: the padded table shape (at least the cardinalities of each member's reduced scope;
            padding entries are ``-inf``).
        factors: indices of the factors in the graph.
        variables: (F, a) indices into ``Layout.free`` of each factor's reduced scope.
        edges: (F, a) edge ids; edge ``edges[i, j]`` joins factor ``factors[i]`` and its j-th variable.
    """

    shape: tuple
    factors: tuple
    variables: np.ndarray
    edges: np.ndarray


@dataclasses.dataclass(frozen=True)
class Layout:
    """Static layout of a reduced factor graph for vectorised message passing.

    Attributes:
        free: unobserved variables; ``cards`` their cardinalities; ``width`` the largest one (K).
        groups: the factor groups (by reduced table shape).
        constants: factors left with no unobserved variable.
        edge_var: (E,) the variable of each edge.
        others: (E, D-1) for each edge the other edges at its variable, padded with E.
        degree: (V,) number of factors at each variable.
        mask: (V, K) 0 for a real state, -inf for padding.
    """

    free: tuple
    cards: np.ndarray
    width: int
    groups: tuple
    constants: tuple
    edge_var: np.ndarray
    others: np.ndarray
    degree: np.ndarray
    mask: np.ndarray


def _bucket_shapes(shapes: Mapping[int, tuple], slack: int = 4) -> list[tuple[tuple, list[int]]]:
    """Group factors of one arity whose shapes pad to a common shape (the elementwise max) without
    any table growing more than ``slack``-fold: fewer, larger groups mean fewer vectorised updates
    and a smaller program to compile."""
    buckets: list[tuple[tuple, int, list[int]]] = []  # (padded shape, smallest member size, factors)
    for f in sorted(shapes, key=lambda f: (len(shapes[f]), -int(np.prod(shapes[f])), f)):
        shape, size = shapes[f], int(np.prod(shapes[f]))
        for k, (padded, smallest, members) in enumerate(buckets):
            if len(padded) != len(shape):
                continue
            merged = tuple(max(a, b) for a, b in zip(padded, shape))
            if int(np.prod(merged)) <= slack * min(smallest, size):
                buckets[k] = (merged, min(smallest, size), members + [f])
                break
        else:
            buckets.append((shape, size, [f]))
    return [(padded, sorted(members)) for padded, _, members in buckets]


@functools.lru_cache(maxsize=64)
def factor_layout(signature: tuple, evidence_vars: tuple) -> Layout:
    """Group the reduced factors by (padded) table shape and number the factor-variable edges."""
    cards, scopes, _ = structure(signature)
    observed = set(evidence_vars)
    free = tuple(v for v in cards if v not in observed)
    index = {v: i for i, v in enumerate(free)}
    rscopes = reduced_scopes(scopes, evidence_vars)
    shapes = {f: tuple(cards[v] for v in scope) for f, scope in enumerate(rscopes) if scope}
    constants = [f for f, scope in enumerate(rscopes) if not scope]
    buckets = _bucket_shapes(shapes)
    groups, edge_var, next_edge = [], [], 0
    for shape, factors in buckets:
        variables = np.asarray([[index[v] for v in rscopes[f]] for f in factors], dtype=np.int64)
        edges = next_edge + np.arange(variables.size, dtype=np.int64).reshape(variables.shape)
        next_edge += variables.size
        edge_var.extend(variables.ravel().tolist())
        groups.append(FactorGroup(shape, tuple(factors), variables, edges))
    edge_var = np.asarray(edge_var, dtype=np.int64)
    n_edges = len(edge_var)
    at_var = [np.flatnonzero(edge_var == i) for i in range(len(free))]
    degree = np.asarray([len(e) for e in at_var], dtype=np.int64)
    depth = max(int(degree.max(initial=1)) - 1, 1)
    others = np.full((n_edges, depth), n_edges, dtype=np.int64)
    for edges in at_var:
        for e in edges:
            rest = edges[edges != e]
            others[e, : len(rest)] = rest
    free_cards = np.asarray([cards[v] for v in free], dtype=np.int64)
    width = int(free_cards.max(initial=1))
    mask = np.where(np.arange(width)[None, :] < free_cards[:, None], 0.0, NEG_INF)
    return Layout(free, free_cards, width, tuple(groups), tuple(constants), edge_var, others, degree, mask)


def group_tables(layout: Layout, reduced):
    """Stack the reduced tables of each group, padded with ``-inf`` (probability 0) to the group's
    shape: a list of (F, *shape) arrays."""
    out = []
    for group in layout.groups:
        tables = []
        for f in group.factors:
            pad = [(0, n - m) for n, m in zip(group.shape, reduced[f].shape)]
            tables.append(jnp.pad(reduced[f], pad, constant_values=NEG_INF) if any(p for _, p in pad) else reduced[f])
        out.append(jnp.stack(tables))
    return out


def constant_term(layout: Layout, reduced):
    return sum((reduced[f] for f in layout.constants), jnp.zeros(()))


def _pad(x, width, fill):
    """Pad the last axis of ``x`` to ``width`` with ``fill``."""
    extra = width - x.shape[-1]
    if extra == 0:
        return x
    return jnp.concatenate([x, jnp.full(x.shape[:-1] + (extra,), fill, x.dtype)], axis=-1)


def _axis_view(x, j, arity):
    """(F, c) -> (F, 1, ..., c, ..., 1): broadcast along axis j of an (F, *shape) table."""
    shape = [x.shape[0]] + [1] * arity
    shape[1 + j] = x.shape[1]
    return jnp.reshape(x, shape)


# =========================================================================== loopy BP
def _factor_to_variable(layout: Layout, tables, v2f, mode):
    """All factor -> variable messages from the variable -> factor ones: (E, K), unnormalised."""
    out = []
    for group, table in zip(layout.groups, tables):
        arity = len(group.shape)
        incoming = [
            _axis_view(v2f[group.edges[:, j], : group.shape[j]], j, arity) for j in range(arity)
        ]
        per_position = []
        for j in range(arity):
            acc = table
            for i in range(arity):
                if i != j:
                    acc = acc + incoming[i]
            axes = tuple(1 + i for i in range(arity) if i != j)
            per_position.append(_pad(_reduce(acc, axes, mode), layout.width, NEG_INF))
        out.append(jnp.stack(per_position, axis=1).reshape(-1, layout.width))
    return jnp.concatenate(out, axis=0)


def _variable_to_factor(layout: Layout, f2v):
    """All variable -> factor messages: the product of the other incoming messages, (E, K)."""
    padded = jnp.concatenate([f2v, jnp.zeros((1, layout.width))], axis=0)
    mask = jnp.asarray(layout.mask)[layout.edge_var]
    return mask + jnp.sum(padded[layout.others], axis=1)


def _variable_beliefs(layout: Layout, f2v, mode):
    total = jax.ops.segment_sum(f2v, layout.edge_var, num_segments=len(layout.free))
    return safe_normalise(total + jnp.asarray(layout.mask), mode=mode)


def _bethe(layout: Layout, tables, f2v, constant):
    """The Bethe estimate of log Z at the current messages."""
    v2f = safe_normalise(_variable_to_factor(layout, f2v))
    value = constant
    for group, table in zip(layout.groups, tables):
        arity = len(group.shape)
        log_b = table
        for j in range(arity):
            log_b = log_b + _axis_view(v2f[group.edges[:, j], : group.shape[j]], j, arity)
        axes = tuple(range(1, arity + 1))
        log_b = safe_normalise(log_b, axis=axes)
        b = jnp.exp(log_b)
        value = value + jnp.sum(jnp.where(b > 0, b * (table - log_b), 0.0))
    log_bv = _variable_beliefs(layout, f2v, "sum")
    bv = jnp.exp(log_bv)
    neg_entropy = jnp.sum(jnp.where(bv > 0, bv * log_bv, 0.0), axis=-1)
    return value + jnp.sum((layout.degree - 1) * neg_entropy)


@functools.lru_cache(maxsize=64)
def _compiled_loopy(signature: tuple, evidence_vars: tuple, mode: str, capacity: int):
    """``capacity`` sizes the residual history (a power of two >= max_iter, so that different
    ``max_iter`` values share one compiled function); max_iter itself is an argument."""
    _, scopes, _ = structure(signature)
    layout = factor_layout(signature, evidence_vars)
    n_edges = len(layout.edge_var)
    mask = jnp.asarray(layout.mask)

    def run(tables, evidence_values, damping, tol, max_iter):
        reduced = reduce_tables(tables, scopes, evidence_vars, evidence_values)
        stacked = group_tables(layout, reduced)
        constant = constant_term(layout, reduced)
        f2v0 = safe_normalise(mask[layout.edge_var] if n_edges else jnp.zeros((0, layout.width)), mode=mode)

        def body(state):
            it, f2v, _, history = state
            # 1. variable -> factor, 2. factor -> variable (flooding), 3. damping in probability space
            v2f = safe_normalise(_variable_to_factor(layout, f2v), mode=mode)
            new = safe_normalise(_factor_to_variable(layout, stacked, v2f, mode), mode=mode)
            mixed = jnp.logaddexp(jnp.log1p(-damping) + new, jnp.log(damping) + f2v)
            new = jnp.where(damping > 0, safe_normalise(mixed, mode=mode), new)
            # 4. residual: the largest change of a message, in probability
            residual = jnp.max(jnp.abs(jnp.exp(new) - jnp.exp(f2v)), initial=0.0)
            return it + 1, new, residual, history.at[it].set(residual)

        def cond(state):
            it, _, residual, _ = state
            return (it < max_iter) & (residual > tol)

        init = (jnp.asarray(0), f2v0, jnp.asarray(jnp.inf), jnp.full((capacity,), jnp.nan))
        if n_edges:
            it, f2v, residual, history = jax.lax.while_loop(cond, body, init)
        else:
            it, f2v, residual, history = 0, f2v0, jnp.zeros(()), init[3]
        beliefs = _variable_beliefs(layout, f2v, mode)
        log_z = _bethe(layout, stacked, f2v, constant) if mode == "sum" else constant
        return beliefs, log_z, it, residual, history

    return jax.jit(run)


def loopy(
    model,
    evidence=None,
    *,
    mode: str = "sum",
    damping: float = 0.0,
    max_iter: int = 200,
    tol: float = 1e-8,
    model_args=(),
    model_kwargs=None,
) -> Result:
    """Loopy belief propagation (sum- or max-product) with a flooding schedule.

    Every iteration recomputes all variable->factor and then all factor->variable messages at
    once (factors grouped by table shape, one vectorised update per group), mixes the new
    messages with the old ones in probability space,
    :math:`m \\leftarrow (1 - \\delta) m^{new} + \\delta m^{old}`, and stops when no message
    moves by more than ``tol`` (in probability) or after ``max_iter`` iterations.

    Exact on trees (a fixed point is reached after diameter-many iterations). On graphs with
    cycles the marginals and the Bethe :math:`\\log Z` are approximations whose error depends on
    the loops; convergence is not guaranteed: damping helps, and ``diagnostics`` says.

    Args:
        model: anything :func:`inference.factors.as_factor_graph` accepts.
        evidence: ``{variable: state name or index}``.
        mode: ``"sum"`` (marginals, Bethe log Z) or ``"max"`` (max-marginals and their argmax).
        damping: :math:`\\delta \\in [0, 1)`.
        max_iter: the most iterations; tol: the convergence threshold on the message change.

    Returns:
        ``mode="sum"``: ``Result(marginals, log_evidence=<Bethe estimate>,
        log_evidence_kind="estimate")``. ``mode="max"``: ``Result(map={v: argmax of the
        max-marginal}, marginals=<max-marginals normalised to max 1>)``, ``diagnostics["log_joint"]``
        being :math:`\\log \\tilde p(x^*, e)` of the decoded assignment (ties between MAP
        assignments can make the per-variable argmax inconsistent). ``diagnostics``: ``converged``,
        ``iterations``, ``max_residual`` (one entry per iteration).

    Example:
        >>> import numpy as np
        >>> from inference.factors import Factor, FactorGraph
        >>> ring = FactorGraph({v: ("0", "1") for v in "abc"},
        ...     [Factor((u, w), np.log([[2.0, 1.0], [1.0, 2.0]])) for u, w in ("ab", "bc", "ca")])
        >>> r = loopy(ring, evidence={"a": 1}, damping=0.2)  # observing a cuts the loop: exact
        >>> bool(r.diagnostics["converged"]), np.round(r.marginals["b"], 4)  # 4/14, 10/14
        (True, array([0.2857, 0.7143]))
    """
    if mode not in ("sum", "max"):
        raise ValueError(f"mode must be 'sum' or 'max', got {mode!r}")
    if not 0.0 <= float(damping) < 1.0:
        raise ValueError(f"damping must lie in [0, 1), got {damping!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter!r}")
    start = time.perf_counter()
    problem = prepare(model, evidence, model_args, model_kwargs)
    signature = problem.graph.signature()
    layout = factor_layout(signature, problem.evidence_vars)
    capacity = max(1024, 1 << (int(max_iter) - 1).bit_length())
    fn = _compiled_loopy(signature, problem.evidence_vars, mode, capacity)
    beliefs, log_z, iterations, residual, history = fn(
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


def log_joint_of(problem: Problem, states: Mapping[str, int]) -> float:
    """:math:`\\log \\tilde p(x, e)` of a full assignment of the unobserved variables."""
    full = {**problem.evidence, **states}
    total = 0.0
    for factor, table in zip(problem.graph.factors, problem.tables):
        total += float(np.asarray(table)[tuple(full[v] for v in factor.scope)])
    return total
