"""The shared discrete layer: elimination orders and cliques, restriction, checks, the one memory
parameter, the probability/log-space rule, the declared contracts and the chain records.

Oracles: brute-force enumeration of the joint, networkx's chordality test and clique enumeration,
the same quantity through two paths (NumPy and JAX restriction, exact contraction and junction
tree), and the invariants that define a triangulation.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import inference  # noqa: F401  (float64)
from inference import bp, chain, discrete, elimination, exact, forward_backward
from inference.errors import EvidenceError, MemoryBudgetError, ModelError
from inference.factors import Factor, FactorGraph
from inference.layout import query_layout, query_plan
from inference.protocols import ChainModel, EMModel, FactorGraphModel, PyroModelWithGuide


def random_graph(seed, n=8, n_factors=10, max_arity=3, max_card=3):
    rng = np.random.default_rng(seed)
    states = {f"v{i}": tuple(str(k) for k in range(int(rng.integers(2, max_card + 1)))) for i in range(n)}
    names = list(states)
    factors = []
    for _ in range(n_factors):
        scope = tuple(rng.choice(names, size=int(rng.integers(1, max_arity + 1)), replace=False))
        shape = tuple(len(states[v]) for v in scope)
        factors.append(Factor(scope, np.log(rng.uniform(0.1, 1.0, size=shape))))
    return FactorGraph(states, factors)


def brute_force_log_z(graph, evidence):
    variables = graph.variables
    total = -np.inf
    for x in itertools.product(*(range(len(graph.states[v])) for v in variables)):
        point = dict(zip(variables, x))
        if any(point[v] != k for v, k in evidence.items()):
            continue
        total = np.logaddexp(total, sum(f.log_table[tuple(point[v] for v in f.scope)] for f in graph.factors))
    return total


# ============================================================================ elimination
@pytest.mark.parametrize("seed", range(4))
def test_plan_order_triangulates_and_the_junction_tree_uses_it(seed):
    """The plan's order eliminates every variable once; eliminating it on the interaction graph
    gives a chordal graph whose maximal cliques (networkx's enumeration, the oracle) are exactly
    the junction tree's cliques."""
    graph = random_graph(seed)
    evidence = {"v0": 1}
    key = (graph.signature(), ("v0",))
    query = query_layout(key)
    order = query_plan(key, False).order
    assert sorted(order) == sorted(query.free_ids)  # each free variable summed out once
    cliques = elimination.elimination_cliques(query.scopes, order)
    filled = nx.Graph()
    filled.add_nodes_from(query.free_ids)
    for c in cliques:
        filled.add_edges_from(itertools.combinations(c, 2))
    assert nx.is_chordal(filled)
    for s in query.scopes:  # every restricted factor fits in one clique
        assert any(set(s) <= c for c in cliques)
    assert {frozenset(c) for c in nx.chordal_graph_cliques(filled)} == set(cliques)
    tree = bp.junction_tree_plan(graph.signature(), ("v0",))
    names = query.variables
    assert {frozenset(c) for c in tree.cliques} == {frozenset(names[i] for i in c) for c in cliques}
    # both exact methods then agree with enumeration (log Z to float64 rounding of ~10^3 terms)
    log_z = brute_force_log_z(graph, evidence)
    assert bp.junction_tree(graph, evidence).log_evidence == pytest.approx(log_z, abs=1e-11)
    assert exact.log_evidence(graph, evidence).log_evidence == pytest.approx(log_z, abs=1e-11)


def test_one_elimination_heuristic_min_fill_on_a_cycle():
    """A 4-cycle a-b-c-d-a: every vertex needs one fill edge, min-fill picks the lowest id, and
    the two triangles it leaves are the cliques."""
    scopes = [(0, 1), (1, 2), (2, 3), (3, 0)]
    order = elimination.elimination_order(scopes, [2, 2, 2, 2], "min_fill")
    assert order[0] == 0
    cliques = elimination.elimination_cliques(scopes, order)
    assert sorted(sorted(c) for c in cliques) == [[0, 1, 3], [1, 2, 3]]


# ============================================================================ restriction and checks
def test_restriction_is_the_same_in_numpy_and_in_a_jitted_jax_function():
    graph = random_graph(7)
    problem = discrete.prepare(graph, {"v2": 1, "v5": 0})
    cols = discrete.evidence_columns(graph.signature()[1], problem.evidence_vars)
    host = discrete.restrict(problem.tables, cols, problem.evidence_values)
    traced = jax.jit(lambda t, e: discrete.restrict(t, cols, e))(
        [jnp.asarray(t) for t in problem.tables], jnp.asarray(problem.evidence_values)
    )
    for a, b in zip(host, traced):
        np.testing.assert_array_equal(a, np.asarray(b))  # the same entries, gathered two ways
    for f, t in zip(graph.factors, host):  # oracle: index by hand
        index = tuple(problem.evidence.get(v, slice(None)) for v in f.scope)
        np.testing.assert_array_equal(t, f.log_table[index])


def test_the_zero_evidence_check_names_the_case():
    with pytest.raises(EvidenceError, match=r"evidence \{'a': 'on'\} has probability zero.*\(here\)"):
        discrete.check_evidence(-np.inf, {"a": "on"}, where="here")
    with pytest.raises(EvidenceError, match="probability zero to every configuration"):
        discrete.check_evidence(-np.inf)
    with pytest.raises(EvidenceError, match=r"in data row 12 \(2 data rows in all\): \{'x': 1\}"):
        discrete.check_evidence([0.0, -np.inf, -np.inf], lambda i: {"x": i}, labels=[10, 12, 14], unit="data row")
    with pytest.raises(ModelError, match="NaN"):
        discrete.check_evidence(np.array([0.0, np.nan]))
    discrete.check_evidence(np.array([-3.0, 0.0]))  # finite: nothing raised


def test_table_checks_name_the_factor_and_the_chain_array():
    bad = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
                      [Factor(("a",), np.log([0.5, 0.5])), Factor(("a", "b"), np.array([[0.0, np.inf], [0.0, 0.0]]))])
    with pytest.raises(ModelError, match=r"factor over \('a', 'b'\)"):
        discrete.check_tables(bad)
    with pytest.raises(ModelError, match="log_transition"):
        chain.ChainPotentials(np.log([0.5, 0.5]), np.array([[0.0, np.nan], [0.0, 0.0]]), np.zeros((1, 3, 2)), [3])


def test_one_memory_parameter_for_every_exact_method():
    """The same budget (bytes of float64) refuses the same plan in exact contraction and in the
    junction tree: a pairwise chain of 3 variables with 8 states has 64-entry tables; 63 entries'
    worth of bytes is too little for both, 64 is enough for exact marginals."""
    states = {v: tuple(str(k) for k in range(8)) for v in "abc"}
    rng = np.random.default_rng(0)
    graph = FactorGraph(states, [Factor(("a", "b"), rng.normal(size=(8, 8))), Factor(("b", "c"), rng.normal(size=(8, 8)))])
    for method in (exact.marginals, bp.junction_tree):
        with pytest.raises(MemoryBudgetError, match="memory_budget=504 bytes"):
            method(graph, memory_budget=8 * 63)
    assert exact.marginals(graph, memory_budget=8 * 64).marginals["b"].shape == (8,)
    assert exact.DEFAULT_MEMORY_BUDGET == discrete.DEFAULT_MEMORY_BUDGET


# ============================================================================ the arithmetic rule
def test_the_chain_range_is_half_the_linear_range_and_both_arithmetics_agree_inside_it():
    """R = L / 2 (the rule of inference.discrete). A transition of e^-300 is inside the chain's
    range: the linear-space pass runs and equals the log-space one to rounding (rtol 1e-12: a
    relative error bound of T K e^-58 plus ~T float64 roundings)."""
    assert chain.SCALED_RANGE == discrete.LINEAR_RANGE / 2
    log_a = np.log(np.array([[1.0, np.exp(-300.0)], [0.5, 0.5]]))
    log_a = log_a - np.logaddexp.reduce(log_a, axis=1, keepdims=True)
    assert -log_a.min() < chain.SCALED_RANGE
    ll = np.log(np.random.default_rng(1).uniform(0.01, 1.0, size=(50, 2)))
    log_pi = np.log([0.5, 0.5])
    lin = forward_backward._posteriors(log_pi, log_a, ll, None, True, arithmetic="linear")
    log = forward_backward._posteriors(log_pi, log_a, ll, None, True, arithmetic="log")
    for a, b in zip(lin, log):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-300)


# ============================================================================ contracts and records
def test_the_declared_contracts_recognise_the_models():
    from pgm.bayesnet import BayesNet
    from pgm.hmm import HMM

    from genzoo.data import bn_network_path

    hmm = HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.1, 0.9]])
    assert isinstance(hmm, ChainModel) and isinstance(hmm, EMModel)
    assert not isinstance(hmm, FactorGraphModel)
    asia = BayesNet.from_bif(bn_network_path("asia"))
    assert isinstance(asia, FactorGraphModel) and not isinstance(asia, ChainModel)

    class Amortised:
        def model(self, x):
            return x

        def guide(self, x):
            return x

    assert isinstance(Amortised(), PyroModelWithGuide)
    assert not isinstance(object(), (ChainModel, FactorGraphModel, EMModel, PyroModelWithGuide))


def test_chain_kernels_return_named_records_that_match_enumeration():
    """Three steps, two states: every path enumerated (the oracle) gives p(x), the smoothed
    marginals and the best path; the records carry them under names that say their space."""
    log_pi = np.log([0.6, 0.4])
    log_a = np.log([[0.7, 0.3], [0.4, 0.6]])
    ll = np.log([[0.5, 0.1], [0.4, 0.3], [0.1, 0.6]])
    paths = list(itertools.product(range(2), repeat=3))
    joint = np.array([log_pi[z[0]] + ll[0, z[0]] + sum(log_a[z[t - 1], z[t]] + ll[t, z[t]] for t in (1, 2))
                      for z in paths])
    log_z = np.logaddexp.reduce(joint)
    post = np.exp(joint - log_z)
    gamma = np.array([[post[[z[t] == k for z in paths]].sum() for k in range(2)] for t in range(3)])
    smoothed = chain.hmm_smoother(log_pi, log_a, ll)
    assert isinstance(smoothed, chain.HMMSmoothed)
    assert float(smoothed.log_evidence) == pytest.approx(log_z, abs=1e-13)  # 8 terms: rounding
    np.testing.assert_allclose(smoothed.smoothed_probs, gamma, atol=1e-13)
    filtered = chain.hmm_filter(log_pi, log_a, ll)
    np.testing.assert_allclose(np.exp(filtered.log_filtered).sum(axis=1), 1.0, atol=1e-13)
    best = chain.hmm_viterbi(log_pi, log_a, ll)
    assert tuple(int(s) for s in best.path) == paths[int(np.argmax(joint))]
    assert float(best.log_joint) == pytest.approx(joint.max(), abs=1e-13)
    two = chain.hmm_two_slice(log_pi, log_a, ll)
    assert float(np.sum(two.expected_transitions)) == pytest.approx(2.0, abs=1e-12)  # T - 1 pair marginals
    counts = chain.batch_expected_counts(log_pi, log_a, ll[None], np.array([3]))
    np.testing.assert_allclose(counts.initial_counts, gamma[0], atol=1e-13)
    np.testing.assert_allclose(counts.transition_counts, two.expected_transitions, atol=1e-12)
