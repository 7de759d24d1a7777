"""Focused exact queries (issue 20), each against brute-force enumeration or pgmpy on the same input.

Oracles: the full joint table :math:`\\prod_f \\phi_f` enumerated by one ``einsum`` over every
variable (tiny graphs), summed / maximised by hand; pgmpy's ``VariableElimination`` for joint
queries, marginal MAP and virtual evidence. Tolerances: every quantity is a sum of at most a few
hundred float64 products, so 1e-12 relative (a few hundred ulps) bounds the rounding; against
pgmpy (float64, a different summation order) the issue's 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference import bp, exact, queries
from inference.errors import DataError, EvidenceError
from inference.factors import Factor, FactorGraph

TIGHT = 1e-12  # float64 sums of <= 1e3 products: rounding <= 1e3 * 2.2e-16


# ---------------------------------------------------------------------------- helpers
def random_bn(seed=0):
    """A 7-variable Bayesian network: v0 -> v1 -> v2, v0 -> v3, (v1, v3) -> v4, v4 -> v5, v5 -> v6."""
    rng = np.random.default_rng(seed)
    cards = {"v0": 2, "v1": 3, "v2": 2, "v3": 2, "v4": 3, "v5": 2, "v6": 2}
    parents = {"v0": (), "v1": ("v0",), "v2": ("v1",), "v3": ("v0",), "v4": ("v1", "v3"), "v5": ("v4",),
               "v6": ("v5",)}
    states = {v: tuple(f"s{k}" for k in range(c)) for v, c in cards.items()}
    factors = []
    for v, ps in parents.items():
        shape = tuple(cards[p] for p in ps) + (cards[v],)
        factors.append(Factor(ps + (v,), np.log(rng.dirichlet(np.ones(cards[v]), size=shape[:-1]).reshape(shape))))
    return FactorGraph(states, factors, directed=True), parents


def loopy_mrf(seed=1):
    """An undirected 2x3 grid with unary terms (cycles: not a tree)."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d", "e", "f"]
    states = {v: ("0", "1", "2") if v in "ce" else ("0", "1") for v in names}
    edges = [("a", "b"), ("b", "c"), ("d", "e"), ("e", "f"), ("a", "d"), ("b", "e"), ("c", "f")]
    factors = [Factor((v,), rng.normal(size=len(states[v]))) for v in names]
    factors += [Factor((u, w), rng.normal(size=(len(states[u]), len(states[w])))) for u, w in edges]
    return FactorGraph(states, factors)


def enumerate_joint(graph: FactorGraph) -> np.ndarray:
    """The unnormalised joint over ``graph.variables`` (axes in that order)."""
    letters = {v: chr(97 + i) for i, v in enumerate(graph.variables)}
    spec = ",".join("".join(letters[v] for v in f.scope) for f in graph.factors)
    out = "".join(letters[v] for v in graph.variables)
    return np.einsum(f"{spec}->{out}", *[np.exp(f.log_table) for f in graph.factors])


def clamp(graph, table, evidence, soft=None):
    """Multiply in hard evidence (an indicator) and soft evidence (a likelihood) along each axis."""
    table = table.copy()
    for v, k in (evidence or {}).items():
        axis = graph.variables.index(v)
        mask = np.zeros(table.shape[axis])
        mask[k] = 1.0
        table = table * mask.reshape([-1 if a == axis else 1 for a in range(table.ndim)])
    for v, lik in (soft or {}).items():
        axis = graph.variables.index(v)
        table = table * np.asarray(lik).reshape([-1 if a == axis else 1 for a in range(table.ndim)])
    return table


def marginal_of(graph, table, variables):
    """Sum ``table`` onto ``variables`` (axes in the order given)."""
    axes = tuple(i for i, v in enumerate(graph.variables) if v not in variables)
    kept = [v for v in graph.variables if v in variables]
    summed = table.sum(axis=axes)
    return np.transpose(summed, [kept.index(v) for v in variables])


# ---------------------------------------------------------------------------- subsets and joints
def test_marginals_of_a_subset_equal_the_full_query_on_a_cheaper_plan():
    graph, _ = random_bn()
    evidence = {"v2": 1}
    full = exact.marginals(graph, evidence)
    some = exact.marginals(graph, evidence, variables=["v0", "v1"])
    assert set(some.marginals) == {"v0", "v1"}
    for v in ("v0", "v1"):
        np.testing.assert_allclose(some.marginals[v], full.marginals[v], rtol=TIGHT, atol=TIGHT)
    np.testing.assert_allclose(some.log_evidence, full.log_evidence, rtol=TIGHT)
    # v3..v6 are barren (neither queried, observed nor ancestors of either): pruned from the plan
    pruned, _ = queries.focus(graph, {"v2": 1}, ["v0", "v1"])
    assert pruned.variables == ("v0", "v1", "v2") and pruned.directed
    assert some.diagnostics["flops"] < full.diagnostics["flops"]
    assert some.diagnostics["largest_table"] <= full.diagnostics["largest_table"]
    # against enumeration
    table = clamp(graph, enumerate_joint(graph), {"v2": 1})
    np.testing.assert_allclose(some.marginals["v1"], marginal_of(graph, table, ["v1"]) / table.sum(), rtol=TIGHT)


def test_marginals_of_a_subset_on_an_undirected_graph():
    graph = loopy_mrf()
    some = exact.marginals(graph, {"a": 1}, variables=["f", "c"])
    table = clamp(graph, enumerate_joint(graph), {"a": 1})
    for v in ("f", "c"):
        np.testing.assert_allclose(some.marginals[v], marginal_of(graph, table, [v]) / table.sum(), rtol=TIGHT)
    np.testing.assert_allclose(some.log_evidence, np.log(table.sum()), rtol=TIGHT)


@pytest.mark.parametrize("which", ["bn", "mrf"])
def test_joint_equals_enumeration(which):
    if which == "bn":
        graph, _ = random_bn(3)
        evidence, query = {"v5": 0}, ["v4", "v0", "v2"]
    else:
        graph = loopy_mrf(4)
        evidence, query = {"b": 0}, ["f", "a"]
    result = exact.joint(graph, query, evidence)
    table = clamp(graph, enumerate_joint(graph), evidence)
    expected = marginal_of(graph, table, query)
    np.testing.assert_allclose(result.diagnostics["joint"], expected / expected.sum(), rtol=TIGHT, atol=1e-15)
    np.testing.assert_allclose(result.log_evidence, np.log(table.sum()), rtol=TIGHT)
    assert result.diagnostics["variables"] == tuple(query)


def test_marginal_map_equals_enumeration_and_differs_from_the_mpe():
    # p(a, b): the MPE is (0, 0) with 0.35, but a = 1 has total mass 0.6 > 0.4
    graph = FactorGraph({"a": ("0", "1"), "b": ("0", "1", "2")},
                        [Factor(("a", "b"), np.log([[0.35, 0.02, 0.03], [0.2, 0.2, 0.2]]))])
    mm = exact.marginal_map(graph, ["a"])
    assert mm.map == {"a": 1}
    np.testing.assert_allclose(mm.diagnostics["log_probability"], np.log(0.6), rtol=TIGHT)
    assert exact.map(graph).map == {"a": 0, "b": 0}
    graph, _ = random_bn(5)
    for query, evidence in ((["v1", "v4"], {"v6": 1}), (["v0"], {"v2": 0, "v5": 1})):
        res = exact.marginal_map(graph, query, evidence)
        table = marginal_of(graph, clamp(graph, enumerate_joint(graph), evidence), query)
        best = np.unravel_index(np.argmax(table), table.shape)
        assert tuple(res.map[v] for v in query) == tuple(int(k) for k in best)
        np.testing.assert_allclose(res.diagnostics["log_probability"], np.log(table[best] / table.sum()), rtol=TIGHT)
        np.testing.assert_allclose(res.diagnostics["log_joint"], np.log(table[best]), rtol=TIGHT)


def test_virtual_evidence_equals_enumeration():
    graph, _ = random_bn(6)
    soft = {"v4": [0.2, 0.7, 0.1], "v0": [1.0, 0.5]}
    res = exact.marginals(graph, {"v6": 0}, virtual_evidence=soft)
    table = clamp(graph, enumerate_joint(graph), {"v6": 0}, soft)
    for v in graph.variables:
        if v == "v6":
            continue
        np.testing.assert_allclose(res.marginals[v], marginal_of(graph, table, [v]) / table.sum(), rtol=TIGHT)
    np.testing.assert_allclose(res.log_evidence, np.log(table.sum()), rtol=TIGHT)
    both = exact.joint(graph, ["v1", "v3"], {"v6": 0}, virtual_evidence=soft)
    expected = marginal_of(graph, table, ["v1", "v3"])
    np.testing.assert_allclose(both.diagnostics["joint"], expected / expected.sum(), rtol=TIGHT)


# ---------------------------------------------------------------------------- against pgmpy
def _to_pgmpy(graph, parents):
    pgmpy_models = pytest.importorskip("pgmpy.models")
    from pgmpy.factors.discrete import TabularCPD

    model = pgmpy_models.DiscreteBayesianNetwork([(p, v) for v, ps in parents.items() for p in ps])
    for v, f in zip(graph.variables, graph.factors):
        ps = parents[v]
        k = len(graph.states[v])
        values = np.exp(f.log_table).reshape(-1, k).T  # pgmpy: (child, parent configs) in C order
        model.add_cpds(TabularCPD(v, k, values, evidence=list(ps) or None,
                                  evidence_card=[len(graph.states[p]) for p in ps] or None,
                                  state_names={u: list(graph.states[u]) for u in (*ps, v)}))
    assert model.check_model()
    return model


def test_joint_marginal_map_and_virtual_evidence_against_pgmpy():
    inference = pytest.importorskip("pgmpy.inference")
    from pgmpy.factors.discrete import TabularCPD

    graph, parents = random_bn(7)
    model = _to_pgmpy(graph, parents)
    ve = inference.VariableElimination(model)
    evidence = {"v6": "s1"}
    peer = ve.query(["v1", "v4"], evidence=evidence, joint=True, show_progress=False)
    peer = peer.copy()
    peer.normalize()
    ours = exact.joint(graph, ["v1", "v4"], evidence).diagnostics["joint"]
    order = [peer.variables.index(v) for v in ("v1", "v4")]
    np.testing.assert_allclose(ours, np.transpose(peer.values, order), rtol=1e-8, atol=1e-12)
    peer_map = ve.map_query(["v1", "v3"], evidence=evidence, show_progress=False)
    assert exact.marginal_map(graph, ["v1", "v3"], evidence).diagnostics["map_states"] == peer_map
    soft = [0.3, 0.6, 0.1]
    cpd = TabularCPD("v4", 3, [[x] for x in soft], state_names={"v4": list(graph.states["v4"])})
    peer_soft = ve.query(["v0"], evidence=evidence, virtual_evidence=[cpd], show_progress=False)
    ours_soft = exact.marginals(graph, evidence, variables=["v0"], virtual_evidence={"v4": soft})
    np.testing.assert_allclose(ours_soft.marginals["v0"], peer_soft.values, rtol=1e-8)


# ---------------------------------------------------------------------------- orders, trees, messages
def test_a_chosen_elimination_order_is_used_and_changes_nothing_else():
    graph, _ = random_bn(8)
    default = exact.marginals(graph, {"v2": 0})
    order = ["v6", "v5", "v4", "v3", "v1", "v0"]
    chosen = exact.marginals(graph, {"v2": 0}, elimination_order=order)
    assert chosen.diagnostics["planner"] == "given"
    assert chosen.diagnostics["order"] == tuple(order)
    # the plan's steps sum the variables out in that order (several may go in one step)
    plan = exact._plan(exact._Query(exact.prepare(graph, {"v2": 0})).key, False,
                       tuple(graph.variables.index(v) for v in order))
    step_of = {v: k for k, step in enumerate(plan.steps) for v in step.elim}
    assert [step_of[graph.variables.index(v)] for v in order] == sorted(step_of[graph.variables.index(v)] for v in order)
    for v in default.marginals:
        np.testing.assert_allclose(chosen.marginals[v], default.marginals[v], rtol=TIGHT, atol=TIGHT)
    partial = exact.marginals(graph, {"v2": 0}, elimination_order=["v0"])  # the rest by min-fill
    assert partial.diagnostics["order"][0] == "v0" and len(partial.diagnostics["order"]) == 6
    np.testing.assert_allclose(partial.log_evidence, default.log_evidence, rtol=TIGHT)
    with pytest.raises(DataError, match="v2"):
        exact.marginals(graph, {"v2": 0}, elimination_order=["v2"])
    with pytest.raises(DataError, match="nope"):
        exact.marginals(graph, elimination_order=["nope"])


def test_junction_tree_exposes_calibrated_cliques_and_separators():
    graph = loopy_mrf(9)
    evidence = {"d": 1}
    res = bp.junction_tree(graph, evidence)
    table = clamp(graph, enumerate_joint(graph), evidence)
    table = table / table.sum()
    d = res.diagnostics
    cliques, parent, seps = d["cliques"], d["parent"], d["separators"]
    assert len(d["clique_potentials"]) == len(cliques)
    for c, clique in enumerate(cliques):
        np.testing.assert_allclose(d["clique_potentials"][c], marginal_of(graph, table, list(clique)), rtol=1e-10,
                                   atol=1e-14)  # log-space passes: a few log-sum-exps of O(1) terms
        if parent[c] < 0:
            assert d["separator_potentials"][c] is None
            continue
        assert set(seps[c]) == set(clique) & set(cliques[parent[c]])
        np.testing.assert_allclose(d["separator_potentials"][c], marginal_of(graph, table, list(seps[c])),
                                   rtol=1e-10, atol=1e-14)
    # running intersection: the cliques holding each variable form a connected subtree
    for v in graph.variables:
        if v in evidence:
            continue
        holders = {c for c, clique in enumerate(cliques) if v in clique}
        roots = [c for c in holders if parent[c] not in holders]
        assert len(roots) == 1, v


def test_loopy_messages_are_returned_and_closed_form_on_a_tree():
    psi = np.array([0.3, 0.7])
    phi = np.array([[0.9, 0.1, 0.5], [0.2, 0.6, 0.4]])
    graph = FactorGraph({"a": ("0", "1"), "b": ("0", "1", "2")},
                        [Factor(("a",), np.log(psi)), Factor(("a", "b"), np.log(phi))])
    res = bp.loopy(graph)
    msgs = res.diagnostics["messages"]
    assert set(msgs) == {(0, "a"), (1, "a"), (1, "b")}
    expected = psi @ phi  # m_{phi -> b}(b) = sum_a psi(a) phi(a, b), normalised
    np.testing.assert_allclose(msgs[(1, "b")], expected / expected.sum(), rtol=TIGHT)
    np.testing.assert_allclose(msgs[(0, "a")], psi, rtol=TIGHT)
    # on a loopy graph: every belief is the normalised product of the messages into it
    grid = loopy_mrf(10)
    res = bp.loopy(grid, damping=0.3)
    for v, belief in res.marginals.items():
        product = np.prod([m for (f, u), m in res.diagnostics["messages"].items() if u == v], axis=0)
        np.testing.assert_allclose(belief, product / product.sum(), rtol=1e-10)  # one normalisation apart


# ---------------------------------------------------------------------------- bad input
def test_bad_focused_queries_raise_typed_errors_naming_the_culprit():
    graph, _ = random_bn()
    with pytest.raises(EvidenceError, match="v2"):
        exact.joint(graph, ["v2"], {"v2": 0})
    with pytest.raises(EvidenceError, match="zz"):
        exact.marginals(graph, variables=["zz"])
    with pytest.raises(DataError, match="twice"):
        exact.joint(graph, ["v1", "v1"])
    with pytest.raises(DataError, match="empty"):
        exact.marginal_map(graph, [])
    with pytest.raises(EvidenceError, match="v1"):
        exact.marginals(graph, virtual_evidence={"v1": [1.0, 0.0]})  # v1 has 3 states
    with pytest.raises(EvidenceError, match="v0"):
        exact.marginals(graph, virtual_evidence={"v0": [0.0, 0.0]})
    with pytest.raises(EvidenceError):  # hard and soft evidence of probability zero together
        exact.marginals(FactorGraph({"a": ("0", "1")}, [Factor(("a",), np.array([0.0, -np.inf]))]),
                        virtual_evidence={"a": [0.0, 1.0]})


def test_enumeration_helper_is_a_distribution():
    graph, _ = random_bn()
    np.testing.assert_allclose(enumerate_joint(graph).sum(), 1.0, rtol=TIGHT)
