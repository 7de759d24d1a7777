"""inference.layout's message layout and table grouping against their earlier direct versions.

The oracles are the previous implementations, kept here verbatim in spirit: ``others`` by a scan
over every variable (O(V E)), and the tables padded one factor at a time. The new versions must
give identical arrays (integers exactly; tables exactly, -inf padding included).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference.discrete import evidence_columns, restrict, structure
from inference.layout import NEG_INF, FactorGroup, MessageLayout, group_tables, message_layout, query_layout


def _old_bucket_shapes(shapes, slack=4):
    buckets = []
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


def _old_message_layout(signature, evidence_vars):
    """The previous message_layout: per-factor Python, ``others`` by a scan per variable (O(V E))."""
    cards, _, _ = structure(signature)
    query = query_layout((signature, tuple(evidence_vars)))
    free = query.free_names
    index = {v: i for i, v in enumerate(query.free_ids)}
    rscopes = tuple(tuple(free[index[i]] for i in s) for s in query.scopes[: len(query.restrict)])
    index = {v: i for i, v in enumerate(free)}
    shapes = {f: tuple(cards[v] for v in scope) for f, scope in enumerate(rscopes) if scope}
    constants = [f for f, scope in enumerate(rscopes) if not scope]
    groups, edge_var, next_edge = [], [], 0
    for shape, factors in _old_bucket_shapes(shapes):
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
    return MessageLayout(free, free_cards, width, tuple(groups), tuple(constants), edge_var, others, degree, mask)


def _assert_same_layout(new, old):
    assert (new.free, new.width, new.constants) == (old.free, old.width, old.constants)
    assert len(new.groups) == len(old.groups)
    for g, h in zip(new.groups, old.groups):
        assert g.shape == h.shape and g.factors == h.factors
        assert all(type(n) is int for n in g.shape + g.factors)
        for a, b in ((g.variables, h.variables), (g.edges, h.edges)):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype and a.shape == b.shape
    for name in ("cards", "edge_var", "others", "degree", "mask"):
        a, b = getattr(new, name), getattr(old, name)
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and a.shape == b.shape, name


def _old_group_tables(layout, reduced):
    out = []
    for group in layout.groups:
        tables = []
        for f in group.factors:
            pad = [(0, n - m) for n, m in zip(group.shape, reduced[f].shape)]
            tables.append(jnp.pad(reduced[f], pad, constant_values=NEG_INF) if any(p for _, p in pad) else reduced[f])
        out.append(jnp.stack(tables))
    return out


def _random_graph(seed, n_vars=9, n_factors=14):
    """A signature with mixed cardinalities (2..4), arities (0..3) and a variable no factor holds,
    plus random log tables of the right shapes."""
    rng = np.random.default_rng(seed)
    cards = tuple((f"v{i}", int(rng.integers(2, 5))) for i in range(n_vars))
    scopes = []
    for _ in range(n_factors):
        arity = int(rng.integers(1, 4))
        scopes.append(tuple(f"v{i}" for i in rng.choice(n_vars - 1, size=arity, replace=False)))  # v{n-1}: unheld
    signature = (cards, tuple(scopes), False)
    card = dict(cards)
    tables = [rng.normal(size=tuple(card[v] for v in s)) for s in scopes]
    return signature, tables


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("evidence", [(), ("v0", "v3")])
def test_message_layout_equals_the_direct_version(seed, evidence):
    signature, _ = _random_graph(seed)
    _assert_same_layout(message_layout(signature, evidence), _old_message_layout(signature, evidence))


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("evidence", [(), ("v0", "v3")])
def test_group_tables_equal_the_one_factor_at_a_time_version(seed, evidence):
    signature, tables = _random_graph(seed)
    layout = message_layout(signature, evidence)
    assert any(len({tuple(layout.cards[row]) for row in g.variables}) > 1 for g in layout.groups), "no mixed group"
    _, scopes, _ = structure(signature)
    reduced = restrict(tables, evidence_columns(scopes, evidence), [1] * len(evidence))
    expected = _old_group_tables(layout, reduced)
    for new, old in zip(group_tables(layout, reduced), expected):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    traced = jax.jit(lambda t: group_tables(layout, t))(reduced)  # and inside a jitted function
    for new, old in zip(traced, expected):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))


def test_message_layout_of_a_300_by_300_grid():
    """90,000 variables, 179,400 pairwise factors: every row of ``others`` holds exactly the
    other edges at its edge's variable (the defining property, checked in whole-array form), and
    a 20 x 20 grid's layout equals the direct version's. (Old version: minutes here; see the
    report, no wall-clock assertion.)"""
    def grid(n):
        names = [f"x{i}_{j}" for i in range(n) for j in range(n)]
        pairs = [(f"x{i}_{j}", f"x{i}_{j + 1}") for i in range(n) for j in range(n - 1)]
        pairs += [(f"x{i}_{j}", f"x{i + 1}_{j}") for i in range(n - 1) for j in range(n)]
        return (tuple((v, 2) for v in names), tuple(pairs), False)

    _assert_same_layout(message_layout(grid(20), ()), _old_message_layout(grid(20), ()))
    start = time.perf_counter()
    layout = message_layout(grid(300), ())
    seconds = time.perf_counter() - start
    e = len(layout.edge_var)
    assert e == 2 * 2 * 300 * 299 and layout.others.shape == (e, 3)
    np.testing.assert_array_equal(layout.degree, np.bincount(layout.edge_var))
    valid = layout.others < e
    np.testing.assert_array_equal(valid.sum(axis=1), layout.degree[layout.edge_var] - 1)
    rows = np.broadcast_to(np.arange(e)[:, None], valid.shape)
    assert np.all(layout.edge_var[layout.others[valid]] == layout.edge_var[rows[valid]])  # same variable
    assert not np.any(layout.others[valid] == rows[valid])  # never the edge itself
    assert np.all(valid[:, 1:] <= valid[:, :-1])  # padding last
    assert np.all((np.diff(layout.others, axis=1) > 0) | ~valid[:, 1:])  # edges in increasing order
    print(f"300 x 300 grid: message_layout {seconds:.2f} s")


def test_group_tables_traces_per_shape_not_per_factor():
    """A grid of alternating 2- and 3-state variables (pairwise tables of four shapes in one padded
    group, unary tables of two in another): the traced program of group_tables has as many
    equations for 6 x 6 as for 12 x 12 (the previous version: about one per factor)."""
    def mixed_grid(n):
        names = [f"x{i}_{j}" for i in range(n) for j in range(n)]
        card = {v: 2 + (k % 2) for k, v in enumerate(names)}
        pairs = [(f"x{i}_{j}", f"x{i}_{j + 1}") for i in range(n) for j in range(n - 1)]
        pairs += [(f"x{i}_{j}", f"x{i + 1}_{j}") for i in range(n - 1) for j in range(n)]
        scopes = tuple(pairs) + tuple((v,) for v in names)
        rng = np.random.default_rng(n)
        tables = [rng.normal(size=tuple(card[v] for v in s)) for s in scopes]
        return message_layout((tuple((v, card[v]) for v in names), scopes, False), ()), tables

    counts = []
    for n in (6, 12):
        layout, tables = mixed_grid(n)
        jaxpr = jax.make_jaxpr(lambda t: group_tables(layout, t))(tables)
        counts.append(len(jaxpr.jaxpr.eqns))
    assert counts[0] == counts[1], counts
    for new, old in zip(group_tables(layout, tables), _old_group_tables(layout, tables)):  # (the 12 x 12 grid)
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
