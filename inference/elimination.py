"""Elimination orders and contraction plans: the structural half of every exact discrete method.

A discrete model with factors :math:`\\phi_f` over scopes :math:`S_f` has the normaliser
:math:`Z = \\sum_x \\prod_f \\phi_f(x_{S_f})`. Variable elimination computes it as a sequence of
pairwise contractions, each summing out the variables no other remaining table needs; the order
decides the cost. This module plans that order once per structure (pure Python, no values):

1. The *interaction graph* joins two variables that share a factor (the moral graph of a Bayesian
   network): :func:`interaction_graph`; its colour classes (:func:`colouring`) are the variables
   that Gibbs sampling and mean field may update together.
2. Greedy *elimination orders* on it (:func:`elimination_order`): ``"min_fill"`` (fewest fill
   edges) and ``"min_weight"`` (smallest clique table), the one implementation every method uses.
3. *Contraction plans* (:func:`plan_contraction`): the orders, and opt_einsum's greedy and optimal
   paths, become pairwise steps; the cheapest candidate (operations, then largest table) wins.
   :attr:`Plan.order` is the order in which a plan's steps sum the variables out.
4. *Elimination cliques* (:func:`elimination_cliques`): eliminating the variables in a plan's order
   on the interaction graph triangulates it; the maximal cliques are the junction tree's
   (:func:`inference.bp.junction_tree`), so the junction tree and the contraction engine
   (:mod:`inference.contract`) share one order.

References:
    Zhang and Poole (1994). A simple approach to Bayesian network computations.
    Dechter (1999). Bucket elimination: a unifying framework for reasoning.
    Kjaerulff (1990). Triangulation of graphs: algorithms giving small total state space.
    Smith and Gray (2018). opt_einsum: a Python package for optimizing contraction order for einsum-like expressions.

Example:
    >>> from inference.elimination import elimination_cliques, plan_contraction
    >>> plan = plan_contraction([(0, 1), (1, 2), (2, 3)], sizes=[2, 2, 2, 2])
    >>> sorted(plan.order), plan.flops
    ([0, 1, 2, 3], 24)
    >>> sorted(sorted(c) for c in elimination_cliques([(0, 1), (1, 2), (2, 3)], plan.order))
    [[0, 1], [1, 2], [2, 3]]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import networkx as nx
import opt_einsum as oe

__all__ = [
    "Plan", "Step", "plan_contraction", "elimination_order", "elimination_cliques",
    "interaction_graph", "colouring",
]


# ============================================================================ plans
@dataclasses.dataclass(frozen=True)
class Step:
    """One contraction: ``operands`` (tensor ids) -> a new tensor over ``out``, summing (or
    maximising) out ``elim``. Tensor ids ``0..F-1`` are the inputs; step ``s`` creates id ``F + s``."""

    operands: tuple[int, ...]
    out: tuple[int, ...]
    elim: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A pairwise contraction of tables over integer variables down to a scalar.

    Attributes:
        scopes: the input tables' variables (empty scopes are allowed: constants).
        sizes: the cardinality of each variable id.
        steps: the pairwise (or single-operand) contractions, in execution order.
        flops: :math:`\\sum_s |\\text{union of step } s|`, the number of joint entries visited.
        largest: elements of the largest table a step reads or writes (a sum-product step never
            builds its union; see ``largest_union``).
        largest_union: elements of the largest union of two operands (what max-product and
            backtracking materialise).
        method: which planner produced the steps.
    """

    scopes: tuple[tuple[int, ...], ...]
    sizes: tuple[int, ...]
    steps: tuple[Step, ...]
    flops: int
    largest: int
    largest_union: int
    method: str

    @property
    def order(self) -> tuple[int, ...]:
        """The variables in the order the steps sum them out (an elimination order)."""
        return tuple(v for step in self.steps for v in step.elim)

    def scope_of(self, tensor: int) -> tuple[int, ...]:
        """Variables of tensor ``tensor`` (an input or a step's output)."""
        n = len(self.scopes)
        return self.scopes[tensor] if tensor < n else self.steps[tensor - n].out


def _numel(vars_, sizes) -> int:
    return math.prod(sizes[v] for v in vars_)


def _steps_from_path(scopes, sizes, path) -> list[Step]:
    """Replay an opt_einsum-style path (positions into a shrinking list, result appended) as steps.

    Each step keeps the variables some other live table still holds and eliminates the rest.
    """
    live = list(range(len(scopes)))
    scope = {i: tuple(s) for i, s in enumerate(scopes)}
    steps = []
    for positions in path:
        ids = [live[p] for p in positions]
        for p in sorted(positions, reverse=True):
            live.pop(p)
        union = list(dict.fromkeys(v for i in ids for v in scope[i]))
        elsewhere = {v for i in live for v in scope[i]}
        out = tuple(v for v in union if v in elsewhere)
        elim = tuple(v for v in union if v not in elsewhere)
        new = len(scopes) + len(steps)
        steps.append(Step(tuple(ids), out, elim))
        scope[new] = out
        live.append(new)
    return steps


def elimination_order(scopes, sizes, heuristic: str) -> list[int]:
    """Greedy elimination order on the interaction graph.

    ``"min_fill"`` picks the variable whose elimination adds the fewest edges (ties: smallest
    clique), ``"min_weight"`` the one whose clique (the variable and its neighbours) has the fewest
    joint states (ties: fewest fill edges). Scores are recomputed only around the eliminated vertex.
    """
    variables = sorted({v for s in scopes for v in s})
    nbrs = {v: set() for v in variables}
    for s in scopes:
        for v in s:
            nbrs[v].update(u for u in s if u != v)
    logsize = {v: math.log2(sizes[v]) for v in variables}

    def score(v):
        ns = list(nbrs[v])
        fill = sum(1 for i, a in enumerate(ns) for b in ns[i + 1 :] if b not in nbrs[a])
        weight = logsize[v] + sum(logsize[u] for u in ns)
        return (fill, weight, v) if heuristic == "min_fill" else (weight, fill, v)

    scores = {v: score(v) for v in variables}
    order = []
    while scores:
        v = min(scores, key=scores.__getitem__)
        order.append(v)
        ns = nbrs.pop(v)
        del scores[v]
        for a in ns:
            nbrs[a].discard(v)
            nbrs[a].update(u for u in ns if u != a)
        touched = set(ns)
        for a in ns:
            touched.update(nbrs[a])
        for u in touched:
            scores[u] = score(u)
    return order


def _path_from_order(scopes, sizes, order) -> list[tuple[int, ...]]:
    """Bucket elimination as an opt_einsum-style path: for each variable in ``order``, contract the
    live tables that hold it, cheapest pair first (by the size of the pair's result)."""
    live = [frozenset(s) for s in scopes]
    path = []

    def pair_out(i, j):
        union = live[i] | live[j]
        others = set().union(*(live[k] for k in range(len(live)) if k not in (i, j)))
        return union & others

    # constants and tables of variables no one else holds get folded in as they come
    for v in order:
        holders = [i for i, s in enumerate(live) if v in s]
        if not holders:
            continue
        while len(holders) > 1:
            best = min(
                ((i, j) for a, i in enumerate(holders) for j in holders[a + 1 :]),
                key=lambda ij: _numel(pair_out(*ij), sizes),
            )
            out = pair_out(*best)
            for k in sorted(best, reverse=True):
                live.pop(k)
            live.append(frozenset(out))
            path.append(best)
            holders = [i for i, s in enumerate(live) if v in s]
        if not holders:  # the last pair summed v out
            continue
        # v is held by one table only: no step of its own; the next step that reads the
        # table sums v out on the way (it is held nowhere else)
        (i,) = holders
        live[i] = live[i] - {v}
    while len(live) > 1:  # the tables left (constants, disconnected parts) multiplied together
        path.append((len(live) - 2, len(live) - 1))
        live = live[:-2] + [frozenset()]
    if not path and scopes and scopes[0]:  # a single table: sum it out alone
        path.append((0,))
    return path


def _cost(steps, scopes, sizes) -> tuple[int, int, int]:
    scope = {i: s for i, s in enumerate(scopes)}
    flops = largest = union_max = 0
    for k, step in enumerate(steps):
        union = {v for i in step.operands for v in scope[i]}
        u = _numel(union, sizes)
        flops += u * len(step.operands)
        union_max = max(union_max, u)
        largest = max(largest, _numel(step.out, sizes), *(_numel(scope[i], sizes) for i in step.operands))
        scope[len(scopes) + k] = step.out
    for s in scopes:
        largest = max(largest, _numel(s, sizes))
    return flops, largest, union_max


def plan_contraction(scopes: Sequence[Sequence[int]], sizes: Sequence[int], *, methods=None, order=None) -> Plan:
    """Plan the contraction of tables with the given scopes down to a scalar.

    Args:
        scopes: each table's variables (integer ids indexing ``sizes``); empty scopes allowed.
        sizes: the number of states of each variable id.
        methods: candidate planners to try, among ``"min_fill"``, ``"min_weight"``,
            ``"greedy"`` (opt_einsum), ``"optimal"`` (opt_einsum, at most 8 tables); default all
            that apply. The cheapest (flops, then largest intermediate) wins.
        order: a chosen elimination order (variable ids): then it is the only candidate
            (``method="given"``); variables of ``scopes`` it leaves out follow in min-fill order.

    Returns:
        a :class:`Plan` whose last step leaves one scalar (no step when there are < 2 tables
        and nothing to sum).
    """
    scopes = tuple(tuple(int(v) for v in s) for s in scopes)
    sizes = tuple(int(k) for k in sizes)
    if order is not None:
        order = [int(v) for v in order]
        rest = [v for v in elimination_order(scopes, sizes, "min_fill") if v not in set(order)]
        steps = _steps_from_path(scopes, sizes, _path_from_order(scopes, sizes, order + rest) if scopes else [])
        flops, largest, union_max = _cost(steps, scopes, sizes)
        return Plan(scopes, sizes, tuple(steps), flops, largest, union_max, "given")
    if methods is None:
        methods = ("min_fill", "min_weight", "greedy") + (("optimal",) if len(scopes) <= 8 else ())
    candidates = []
    for method in methods:
        if len(scopes) == 0:
            path = []
        elif method in ("min_fill", "min_weight"):
            path = _path_from_order(scopes, sizes, elimination_order(scopes, sizes, method))
        else:
            path = _opt_einsum_path(scopes, sizes, method)
        steps = _steps_from_path(scopes, sizes, path)
        candidates.append((_cost(steps, scopes, sizes), method, steps))
    (flops, largest, union_max), method, steps = min(candidates, key=lambda c: (c[0][0], c[0][1]))
    return Plan(scopes, sizes, tuple(steps), flops, largest, union_max, method)


def _opt_einsum_path(scopes, sizes, method):
    symbols = {v: oe.get_symbol(v) for s in scopes for v in s}
    inputs = [frozenset(symbols[v] for v in s) for s in scopes]
    size_dict = {symbols[v]: sizes[v] for v in symbols}
    if len(scopes) == 1:
        return [(0,)]
    if method == "optimal":
        return oe.paths.optimal(inputs, frozenset(), size_dict)
    if method == "greedy":
        return oe.paths.greedy(inputs, frozenset(), size_dict)
    raise ValueError(f"unknown planner {method!r}; use min_fill, min_weight, greedy or optimal")


# ============================================================================ interaction graph
def interaction_graph(cards: Mapping, scopes) -> nx.Graph:
    """Variables as nodes, an edge between every two that share a scope (the moral graph of a BN)."""
    graph = nx.Graph()
    graph.add_nodes_from(cards)
    for scope in scopes:
        for i, u in enumerate(scope):
            for w in scope[i + 1 :]:
                graph.add_edge(u, w)
    return graph


def colouring(cards: Mapping, scopes, variables) -> tuple[tuple, ...]:
    """Colour classes of ``variables`` on the interaction graph: two variables of one class share
    no factor, so their conditionals given the rest are independent (chromatic Gibbs, CAVI)."""
    graph = interaction_graph(cards, scopes).subgraph(variables)
    colour = nx.coloring.greedy_color(graph, strategy="largest_first")
    order = {v: i for i, v in enumerate(variables)}
    classes = {}
    for var in variables:
        classes.setdefault(colour.get(var, 0), []).append(var)
    return tuple(tuple(sorted(vs, key=order.get)) for _, vs in sorted(classes.items()))


def elimination_cliques(scopes, order) -> list[frozenset]:
    """The maximal cliques of the triangulation that eliminating ``order`` on the interaction
    graph of ``scopes`` produces (each step's clique: the variable and its neighbours then),
    largest first. Variables of ``scopes`` missing from ``order`` are eliminated last."""
    nbrs = {}
    for s in scopes:
        for v in s:
            nbrs.setdefault(v, set()).update(u for u in s if u != v)
    order = list(dict.fromkeys(list(order) + list(nbrs)))
    raw = []
    for v in order:
        if v not in nbrs:
            continue
        ns = nbrs.pop(v)
        raw.append(frozenset(ns | {v}))
        for a in ns:
            nbrs[a].discard(v)
            nbrs[a].update(u for u in ns if u != a)
    raw = sorted(set(raw), key=len, reverse=True)
    return [c for i, c in enumerate(raw) if not any(c < d for d in raw[:i])]
