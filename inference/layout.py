"""The flat layouts of a factor graph: where every table entry sits, once per structure.

Every discrete method reads the same tables through layouts computed from the graph's *structure*
(``graph.signature()``: variables, cardinalities, scopes) and the *names* of the evidence
variables, never from values, so each is built once and cached:

1. :class:`FlatTables` (:func:`flat_layout`): all log-tables raveled into one array; entry
   :math:`x` of factor :math:`f` sits at :math:`o_f + \\sum_j s_{f,j} x_{S_f[j]}`. Gibbs sweeps,
   likelihood weighting and sequential importance sampling gather their conditionals from it
   (:class:`Reads`, :func:`read`).
2. :class:`QueryLayout` (:func:`query_layout`): the same graph with the evidence variables indexed
   away, as integer scopes (plus a unit table for a free variable no factor holds), the free
   variables and, for a Bayesian network, the factors that matter for :math:`p(e)` (the evidence
   and its ancestors). Contraction plans (:func:`query_plan`) and the junction tree are made
   from it.
3. :class:`LinearTables`: the restriction to the evidence and the move to probability space as
   one gather over the flat array (the exact engine's fast path; see the rule in
   :mod:`inference.discrete`).
4. :class:`MessageLayout` (:func:`message_layout`): the restricted factors grouped by padded
   table shape, with the factor-variable edges numbered, for vectorised message passing (loopy
   BP) and coordinate updates (mean field).

References:
    Koller and Friedman (2009). Probabilistic Graphical Models, sections 10.1 and 12.3.

Example:
    >>> import numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference.layout import flat_layout, query_layout
    >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1", "2")},
    ...                 [Factor(("a",), np.zeros(2)), Factor(("a", "b"), np.zeros((2, 3)))])
    >>> flat = flat_layout(g.signature())
    >>> flat.offsets.tolist(), flat.strides
    ([0, 2], ((1,), (3, 1)))
    >>> query_layout((g.signature(), ("a",))).scopes
    ((), (1,))
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from inference.contract import FLOOR
from inference.discrete import LINEAR_RANGE, check_tables, structure
from inference.elimination import Plan, plan_contraction
from inference.factors import FactorGraph

NEG_INF = -np.inf

__all__ = [
    "FlatTables", "flat_layout", "flatten_tables", "Reads", "make_reads", "read", "card_mask",
    "QueryLayout", "query_layout", "query_plan", "LinearTables", "linear_tables",
    "FactorGroup", "MessageLayout", "message_layout", "group_tables", "constant_term", "axis_view", "pad_last",
]


# =========================================================================== flat tables
@dataclasses.dataclass(frozen=True)
class FlatTables:
    """All log-tables raveled (C order) into one array, with the strides to read them.

    Entry ``x`` of factor ``f`` sits at ``offsets[f] + sum_j strides[f][j] * x[scope_j]``. The
    array ends with ``width`` zeros (``offsets`` of a dummy factor is ``size``), so padded reads
    contribute :math:`\\log 1`.
    """

    offsets: np.ndarray
    strides: tuple
    size: int
    width: int


@functools.lru_cache(maxsize=64)
def flat_layout(signature: tuple) -> FlatTables:
    cards, scopes, _ = structure(signature)
    offsets, strides, size = [], [], 0
    for scope in scopes:
        shape = [cards[v] for v in scope]
        stride = [int(np.prod(shape[j + 1 :], dtype=np.int64)) for j in range(len(shape))]
        offsets.append(size)
        strides.append(tuple(stride))
        size += int(np.prod(shape, dtype=np.int64))
    return FlatTables(np.asarray(offsets, dtype=np.int64), tuple(strides), size, max(cards.values(), default=1))


def flatten_tables(tables, layout: FlatTables):
    """The flat array (traced): all raveled tables, then ``width`` zeros."""
    parts = [jnp.ravel(t) for t in tables] + [jnp.zeros(layout.width)]
    return jnp.concatenate(parts)


@dataclasses.dataclass(frozen=True)
class Reads:
    """A batch of reads "factor f as a function of variable v, the rest of its scope fixed".

    Arrays of shape (P,) or (P, A): ``offset``, ``stride`` (of v), ``other`` (indices of the other
    scope variables in the state vector) and ``other_stride`` (0 for padding).
    """

    offset: np.ndarray
    stride: np.ndarray
    other: np.ndarray
    other_stride: np.ndarray


def make_reads(pairs, signature: tuple, depth: int | None = None) -> Reads:
    """Reads for ``pairs = [(variable, factor index or None for a dummy), ...]``."""
    cards, scopes, _ = structure(signature)
    flat = flat_layout(signature)
    index = {v: i for i, v in enumerate(cards)}
    if depth is None:
        depth = max((len(scopes[f]) - 1 for _, f in pairs if f is not None), default=0)
    depth = max(depth, 1)
    p = len(pairs)
    offset = np.full(p, flat.size, dtype=np.int64)
    stride = np.ones(p, dtype=np.int64)
    other = np.zeros((p, depth), dtype=np.int64)
    other_stride = np.zeros((p, depth), dtype=np.int64)
    for k, (var, f) in enumerate(pairs):
        if f is None:
            continue
        offset[k] = flat.offsets[f]
        j = 0
        for u, s in zip(scopes[f], flat.strides[f]):
            if u == var:
                stride[k] = s
            else:
                other[k, j], other_stride[k, j] = index[u], s
                j += 1
    return Reads(offset, stride, other, other_stride)


def read(flat, reads: Reads, x, width: int):
    """Log-factor values along each read's variable: (..., P, width) for states x of shape (..., V)."""
    base = reads.offset + jnp.sum(jnp.take(x, reads.other, axis=-1) * reads.other_stride, axis=-1)
    idx = base[..., None] + reads.stride[:, None] * jnp.arange(width)
    return jnp.take(flat, idx, mode="clip")


def card_mask(cards, width):
    """(V, width): 0 on real states, -inf on padding."""
    cards = np.asarray(cards)
    return np.where(np.arange(width)[None, :] < cards[:, None], 0.0, -np.inf)


# ============================================================================ queries
@dataclasses.dataclass(frozen=True)
class QueryLayout:
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
def query_layout(key) -> QueryLayout:
    """The layout of ``key = (graph.signature(), evidence variable names)``."""
    (var_cards, scopes, directed), ev_names = key
    variables = tuple(v for v, _ in var_cards)
    ids = {v: i for i, v in enumerate(variables)}
    sizes = tuple(k for _, k in var_cards)
    ev_col = {ids[v]: j for j, v in enumerate(ev_names)}
    id_scopes = [tuple(map(ids.__getitem__, s)) for s in scopes]
    total = sum(math.prod(map(sizes.__getitem__, s)) for s in id_scopes)
    if ev_col:
        restrict = tuple(tuple(map(ev_col.get, s)) for s in id_scopes)
        restricted = [tuple(i for i in s if i not in ev_col) for s in id_scopes]
    else:  # (the common case, kept to C-level loops: a 300 x 300 grid has 179,400 factors)
        nothing = {n: (None,) * n for n in set(map(len, id_scopes))}
        restrict = tuple(nothing[len(s)] for s in id_scopes)
        restricted = id_scopes
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
    return QueryLayout(
        variables, sizes, total, restrict, all_scopes, free, tuple(variables[i] for i in free), units, relevant,
    )


@functools.lru_cache(maxsize=256)
def query_plan(key, prune: bool, order: tuple | None = None) -> Plan:
    """The contraction plan of the restricted tables (only the relevant ones when ``prune``);
    ``order``: a chosen elimination order of variable ids (else the cheapest planner's)."""
    layout = query_layout(key)
    tables = layout.relevant if prune else range(len(layout.scopes))
    return plan_contraction([layout.scopes[t] for t in tables], layout.sizes, order=order)


# ============================================================================ linear space
class LinearTables:
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
        (_, scopes, _), ev_names = key
        layout = query_layout(key)
        flat = flat_layout(key[0])
        ids = {v: i for i, v in enumerate(layout.variables)}
        base, strides, slices, starts = [], [], [], []
        restricted = 0
        for f, (scope, cols) in enumerate(zip(scopes, layout.restrict)):
            shape = tuple(layout.sizes[ids[v]] for v in scope)
            size = int(np.prod(shape, dtype=np.int64))
            index = (np.arange(size, dtype=np.int64) + flat.offsets[f]).reshape(shape)
            entries = index[tuple(slice(None) if c is None else 0 for c in cols)].ravel()
            row = np.zeros(len(ev_names), dtype=np.int64)  # entries per evidence state, per column
            for a, c in enumerate(cols):
                if c is not None:
                    row[c] = flat.strides[f][a]
            base.append(entries)
            strides.append(row)
            rshape = tuple(n for n, c in zip(shape, cols) if c is None)
            slices.append((restricted, restricted + entries.size, rshape))
            starts.append(restricted)
            restricted += entries.size
        offset = flat.size
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
        if not flat.max() < np.inf:  # NaN or +inf somewhere: named by check_tables
            check_tables(graph)
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

    def marginals(self, graph: FactorGraph, values, program, variables):
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

    def log_evidence(self, graph: FactorGraph, values, program, relevant):
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
def linear_tables(key) -> LinearTables:
    return LinearTables(key)


# =========================================================================== factor layout
@dataclasses.dataclass(frozen=True)
class FactorGroup:
    """Factors whose reduced tables share one (padded) shape, stacked for vectorised updates.

    Attributes:
        shape: the padded table shape (at least the cardinalities of each member's reduced scope;
            padding entries are ``-inf``).
        factors: indices of the factors in the graph.
        variables: (F, a) indices into ``MessageLayout.free`` of each factor's reduced scope.
        edges: (F, a) edge ids; edge ``edges[i, j]`` joins factor ``factors[i]`` and its j-th variable.
    """

    shape: tuple
    factors: tuple
    variables: np.ndarray
    edges: np.ndarray


@dataclasses.dataclass(frozen=True)
class MessageLayout:
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


def _bucket_shapes(factors: np.ndarray, shapes: np.ndarray, slack: int = 4) -> list[tuple[tuple, np.ndarray]]:
    """Group factors of one arity (``shapes``: (F, arity)) whose shapes pad to a common shape (the
    elementwise max) without any table growing more than ``slack``-fold: fewer, larger groups mean
    fewer vectorised updates and a smaller program to compile.

    Factors are taken largest first (ties by index), each into the first bucket it fits. A run of
    equal shapes in that order all land in the bucket the run's first member chose (joining
    leaves the bucket's padded shape and smallest size as they were for the next equal shape, and
    the buckets before it, which refused the shape, only grow harder to join), so the loop runs
    once per run."""
    sizes = np.prod(shapes, axis=1)
    order = np.lexsort((factors, -sizes))
    shapes, sizes, factors = shapes[order], sizes[order], factors[order]
    starts = np.flatnonzero(np.r_[True, np.any(shapes[1:] != shapes[:-1], axis=1)])
    buckets: list[list] = []  # [padded shape, smallest member size, [runs of factors]]
    for a, b in zip(starts, np.r_[starts[1:], len(factors)]):
        shape, size = tuple(int(n) for n in shapes[a]), int(sizes[a])
        for bucket in buckets:
            merged = tuple(max(m, n) for m, n in zip(bucket[0], shape))
            if math.prod(merged) <= slack * min(bucket[1], size):
                bucket[0], bucket[1] = merged, min(bucket[1], size)
                bucket[2].append(factors[a:b])
                break
        else:
            buckets.append([shape, size, [factors[a:b]]])
    return [(padded, np.sort(np.concatenate(runs))) for padded, _, runs in buckets]


@functools.lru_cache(maxsize=64)
def message_layout(signature: tuple, evidence_vars: tuple) -> MessageLayout:
    """Group the reduced factors by (padded) table shape and number the factor-variable edges
    (array operations throughout: a 300 x 300 grid's layout takes a fraction of a second)."""
    query = query_layout((signature, tuple(evidence_vars)))
    free = query.free_names
    position = np.full(len(query.variables), -1, dtype=np.int64)  # variable id -> position in free
    position[list(query.free_ids)] = np.arange(len(free))
    free_cards = np.asarray(query.sizes, dtype=np.int64)[list(query.free_ids)]
    rscopes = query.scopes[: len(query.restrict)]
    arity = np.fromiter(map(len, rscopes), dtype=np.int64, count=len(rscopes))
    constants = np.flatnonzero(arity == 0).tolist()
    groups, edge_var, next_edge = [], [], 0
    for a in np.unique(arity[arity > 0]):
        factors = np.flatnonzero(arity == a)
        variables = position[np.asarray([rscopes[f] for f in factors], dtype=np.int64)]  # (F, a)
        row = np.empty(len(rscopes), dtype=np.int64)
        row[factors] = np.arange(len(factors))
        for shape, members in _bucket_shapes(factors, free_cards[variables]):
            group_vars = variables[row[members]]
            edges = next_edge + np.arange(group_vars.size, dtype=np.int64).reshape(group_vars.shape)
            next_edge += group_vars.size
            edge_var.append(group_vars.ravel())
            groups.append(FactorGroup(shape, tuple(members.tolist()), group_vars, edges))
    edge_var = np.concatenate(edge_var) if edge_var else np.zeros(0, dtype=np.int64)
    degree = np.bincount(edge_var, minlength=len(free)).astype(np.int64)
    others = _other_edges(edge_var, degree)
    width = int(free_cards.max(initial=1))
    mask = np.where(np.arange(width)[None, :] < free_cards[:, None], 0.0, NEG_INF)
    return MessageLayout(free, free_cards, width, tuple(groups), tuple(constants), edge_var, others, degree, mask)


def _other_edges(edge_var: np.ndarray, degree: np.ndarray) -> np.ndarray:
    """(E, D-1): for each edge, the other edges at its variable in increasing order, padded with E.

    A CSR layout in :math:`O(E \\log E)`: a stable argsort lists each variable's edges in order
    (``order[starts[v] : starts[v] + degree[v]]``); an edge of rank ``r`` there takes the
    entries ``j = c + [c >= r]`` for columns ``c``, skipping itself."""
    n_edges = len(edge_var)
    depth = max(int(degree.max(initial=1)) - 1, 1)
    if n_edges == 0:
        return np.full((0, depth), 0, dtype=np.int64)
    order = np.argsort(edge_var, kind="stable")
    starts = np.concatenate([[0], np.cumsum(degree)[:-1]])
    rank = np.empty(n_edges, dtype=np.int64)
    rank[order] = np.arange(n_edges) - starts[edge_var[order]]
    column = np.arange(depth)[None, :]
    j = column + (column >= rank[:, None])
    valid = j < degree[edge_var][:, None]
    index = np.minimum(starts[edge_var][:, None] + j, n_edges - 1)
    return np.where(valid, order[index], n_edges)


def group_tables(layout: MessageLayout, reduced):
    """Stack the reduced tables of each group, padded with ``-inf`` (probability 0) to the group's
    shape: a list of (F, *shape) arrays.

    The members of a group that share one reduced shape are stacked by one ``jnp.stack`` and padded
    by one ``lax.pad``; a group of several shapes concatenates those blocks and puts the rows back
    in the group's factor order by one gather, so the traced program grows with the number of
    distinct shapes, not of factors."""
    out = []
    for group in layout.groups:
        shapes = layout.cards[group.variables]  # (F, arity): each member's reduced shape
        kinds, which = np.unique(shapes, axis=0, return_inverse=True)
        which = which.reshape(-1)
        blocks, rows = [], []
        for k, shape in enumerate(kinds):
            members = np.flatnonzero(which == k)
            block = jnp.stack([reduced[group.factors[i]] for i in members])
            if tuple(shape) != tuple(group.shape):
                config = [(0, 0, 0)] + [(0, int(n - m), 0) for n, m in zip(group.shape, shape)]
                block = jax.lax.pad(block, jnp.asarray(NEG_INF, block.dtype), config)
            blocks.append(block)
            rows.append(members)
        stacked = blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks)
        if len(blocks) > 1:
            stacked = stacked[np.argsort(np.concatenate(rows))]
        out.append(stacked)
    return out


def constant_term(layout: MessageLayout, reduced):
    """The sum of the factors left with no unobserved variable (log-constants)."""
    return sum((reduced[f] for f in layout.constants), jnp.zeros(()))


def pad_last(x, width, fill):
    """Pad the last axis of ``x`` to ``width`` with ``fill``."""
    extra = width - x.shape[-1]
    if extra == 0:
        return x
    return jnp.concatenate([x, jnp.full(x.shape[:-1] + (extra,), fill, x.dtype)], axis=-1)


def axis_view(x, j, arity):
    """(F, c) -> (F, 1, ..., c, ..., 1): broadcast along axis j of an (F, *shape) table."""
    shape = [x.shape[0]] + [1] * arity
    shape[1 + j] = x.shape[1]
    return jnp.reshape(x, shape)
