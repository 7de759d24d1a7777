"""Structure learning: family scores against pgmpy, hill climbing on asia and alarm, Chow-Liu trees.

Oracles: pgmpy's BIC / BDeu scorers, its HillClimbSearch (our optimum is a local optimum of its
search, edge for edge) and TreeSearch on the same data, a brute-force search over all
spanning trees with scikit-learn's mutual information, invariants (acyclicity, max_parents, the
reported score equals the graph's score).
"""

import itertools
import warnings

import jax
import networkx as nx
import numpy as np
import pandas as pd
import pytest

import inference  # noqa: F401  (float64)
from genzoo.data import bn_network_path
from inference.errors import DataError, UnknownNameError
from pgm import structure
from pgm.bayesnet import BayesNet

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="module")
def asia():
    return BayesNet.from_bif(bn_network_path("asia"))


@pytest.fixture(scope="module")
def asia_data(asia):
    return asia.sample(jax.random.PRNGKey(11), 5000)


def _frame(states, data):
    rows = structure.encode_complete(data, states)
    return pd.DataFrame({v: [states[v][i] for i in rows[:, j]] for j, v in enumerate(states)})


def _skeleton(graph):
    return {frozenset(e) for e in graph.edges}


# ---------------------------------------------------------------------------- scores
@pytest.mark.parametrize(
    "variable, parents",
    [("asia", ()), ("tub", ("asia",)), ("either", ("lung", "tub")), ("dysp", ("bronc", "either", "smoke"))],
)
def test_family_scores_equal_pgmpy(asia, asia_data, variable, parents):
    from pgmpy.structure_score import BDeu, BIC

    states = {v: list(s) for v, s in asia.states.items()}
    frame = _frame(asia.states, asia_data)
    for ess in (1.0, 10.0):
        ours = structure.local_score(
            asia_data, asia.states, variable, parents, score="bdeu", equivalent_sample_size=ess
        )
        peer = BDeu(frame, equivalent_sample_size=ess, state_names=states).local_score(variable, parents)
        assert ours == pytest.approx(peer, rel=1e-12, abs=1e-9)
    ours = structure.local_score(asia_data, asia.states, variable, parents, score="bic")
    peer = BIC(frame, state_names=states).local_score(variable, parents)
    assert ours == pytest.approx(peer, rel=1e-12, abs=1e-9)


def test_graph_score_equals_pgmpy(asia, asia_data):
    from pgmpy.models import DiscreteBayesianNetwork
    from pgmpy.structure_score import BDeu, BIC

    states = {v: list(s) for v, s in asia.states.items()}
    frame = _frame(asia.states, asia_data)
    model = DiscreteBayesianNetwork(list(asia.graph.edges))
    assert structure.score_graph(asia.graph, asia_data, asia.states, score="bic") == pytest.approx(
        BIC(frame, state_names=states).score(model), rel=1e-12
    )
    assert structure.score_graph(
        asia.graph, asia_data, asia.states, score="bdeu", equivalent_sample_size=5.0
    ) == pytest.approx(BDeu(frame, equivalent_sample_size=5.0, state_names=states).score(model), rel=1e-12)


# ---------------------------------------------------------------------------- hill climbing
# BIC keeps an edge p -> c when its log-likelihood gain, on average n I(c; p | other parents),
# beats the penalty (log n / 2) x (parameters added). By enumeration of asia with n = 5000:
# asia -> tub gains 2.0 against a penalty of 4.3 (asia has a 1% prevalence); every other edge
# gains 112 to 1292 against at most 8.5, with sd about sqrt(2 gain) <= 15: BIC finds exactly 7 of
# the 8 edges, recall 0.875. A non-edge enters when a chi2_1 exceeds log n = 8.5 (chance 0.0035
# for each of the 20 non-adjacent pairs): two spurious edges, precision 7/9 < 0.85, have chance
# 2e-3. Measured: 7 edges, all true. BDeu (ESS 10) has BIC's log n / 2 penalty per parameter
# asymptotically, so the same gains give it the same recall bound. Its precision has no such bound:
# a parent configuration the data never show costs BDeu nothing, and a finer split of the ESS
# sharpens the prior of pure configurations, so BDeu adds parents to the deterministic
# either = tub OR lung and to its child xray beside either (Silander, Kontkanen and Myllymaki 2007;
# measured: asia -> either, tub -> xray, lung -> xray, lung -> asia). What BDeu finds is checked
# instead against pgmpy's search under pgmpy's BDeu, edge for edge (test_hill_climb_against_pgmpy).
@pytest.mark.parametrize("score, min_recall, min_precision", [("bic", 0.85, 0.85), ("bdeu", 0.85, None)])
def test_hill_climb_recovers_asia(asia, asia_data, score, min_recall, min_precision):
    dag = structure.hill_climb(asia_data, asia.states, score=score)
    assert nx.is_directed_acyclic_graph(dag) and set(dag.nodes) == set(asia.variables)
    truth, found = _skeleton(asia.graph), _skeleton(dag)
    assert len(truth & found) / len(truth) >= min_recall
    if min_precision is not None:
        assert len(truth & found) / len(found) >= min_precision
    # the reported total is the graph's score, and it beats the true graph's (a local optimum of the
    # data's score, not of the truth's)
    total = structure.score_graph(dag, asia_data, asia.states, score=score)
    assert dag.graph["score"] == pytest.approx(total, rel=1e-12)
    assert total >= structure.score_graph(asia.graph, asia_data, asia.states, score=score)


def test_hill_climb_against_pgmpy(asia, asia_data):
    from pgmpy.base import DAG
    from pgmpy.estimators import BDeu, BIC, HillClimbSearch

    frame = _frame(asia.states, asia_data)
    states = {v: list(s) for v, s in asia.states.items()}
    # BIC: pgmpy breaks ties between equal-gain moves in an order that follows Python's string
    # hashing, so its local optimum varies from process to process (measured: the same skeleton and
    # score, -11365.7576, in some processes; another optimum in others). Ours is deterministic and
    # must score at least as well as the peer's optimum.
    ours = structure.hill_climb(asia_data, asia.states, score="bic")
    peer = HillClimbSearch(frame, state_names=states).estimate(
        scoring_method=BIC(frame, state_names=states), tabu_length=0, epsilon=1e-8, show_progress=False
    )
    ours_score = structure.score_graph(ours, asia_data, asia.states)
    peer_score = structure.score_graph(nx.DiGraph(peer.edges), asia_data, asia.states)
    assert ours_score >= peer_score - 1e-9 * abs(peer_score)
    if _skeleton(ours) == _skeleton(peer):
        assert ours_score == pytest.approx(peer_score, rel=1e-12)
    # BDeu: different tie-breaking ends in different optima; ours scores higher on this data
    # (measured: -11392.51 against pgmpy's -11392.86)
    ours = structure.hill_climb(asia_data, asia.states, score="bdeu")
    bdeu = BDeu(frame, equivalent_sample_size=10, state_names=states)
    peer = HillClimbSearch(frame, state_names=states).estimate(
        scoring_method=bdeu, tabu_length=0, epsilon=1e-8, show_progress=False,
    )
    assert structure.score_graph(ours, asia_data, asia.states, score="bdeu") >= structure.score_graph(
        nx.DiGraph(peer.edges), asia_data, asia.states, score="bdeu"
    )
    # From our optimum as its start, pgmpy's search under pgmpy's BDeu finds no add, delete or
    # reversal that gains more than 1e-8: the same graph, edge for edge (the extra edges included)
    start = DAG(ours.edges)
    start.add_nodes_from(asia.variables)
    again = HillClimbSearch(frame, state_names=states).estimate(
        scoring_method=bdeu, start_dag=start, tabu_length=0, epsilon=1e-8, show_progress=False,
    )
    assert set(again.edges) == set(ours.edges) and set(again.edges) - set(asia.graph.edges)


@pytest.mark.slow
def test_hill_climb_on_alarm_is_pgmpys_local_optimum():
    """Alarm (37 variables, 46 edges), n = 2000, BIC. The oracle: pgmpy's HillClimbSearch under its
    own BIC, started from our graph, finds no add, delete or reversal that gains more than 1e-8 and
    returns the graph edge for edge (5 s), so the graph is a local optimum of pgmpy's search as well.

    Recall and precision against the true graph get no bound here, because none can be derived for
    a greedy search. The per-edge model of a consistent search (an edge p -> c is kept when the
    statistic 2 n I^(c; p | its other true parents), noncentral chi2 with df (r_c - 1)(r_p - 1)
    q_others and noncentrality 2 n I from the true network's family marginals, exceeds BIC's
    df log n) expects 40.98 true edges, sd 0.16 (a sum of Bernoullis): 41 edges have power > 0.98,
    5 have power < 1e-3. The greedy search departs from it both ways: from key 11 it finds 38 of
    46 (with 8 extra edges), leaving out 4 edges of power 1.0000 (TPR - CATECHOL,
    VENTTUBE - VENTLUNG, INTUBATION - MINVOL, VENTLUNG - MINVOL: a neighbour's edges explain the
    family, e.g. MINVOL - VENTALV, MINVOL - VENTTUBE), and keeping KINKEDTUBE - PRESS, of power
    6e-4 in its true family (df 36), as PRESS -> KINKEDTUBE, where it costs 3 parameters. Its
    optimum scores -22750.34, below the true graph's -22723.47: a local optimum, not the global
    one an exact search would approach. So the expectation minus k sds (40.5 at k = 3) would fail a
    correct greedy search, and the true-family powers bound nothing from above either (the
    KINKEDTUBE - PRESS case). What the search is, is checked against the peer instead.
    """
    from pgmpy.base import DAG
    from pgmpy.estimators import BIC, HillClimbSearch

    alarm = BayesNet.from_bif(bn_network_path("alarm"))
    data = alarm.sample(jax.random.PRNGKey(11), 2000)
    dag = structure.hill_climb(data, alarm.states, score="bic")
    assert nx.is_directed_acyclic_graph(dag) and set(dag.nodes) == set(alarm.variables)
    assert dag.graph["score"] == pytest.approx(structure.score_graph(dag, data, alarm.states), rel=1e-12)
    frame = _frame(alarm.states, data)
    states = {v: list(s) for v, s in alarm.states.items()}
    start = DAG(dag.edges)
    start.add_nodes_from(alarm.variables)
    again = HillClimbSearch(frame, state_names=states).estimate(
        scoring_method=BIC(frame, state_names=states), start_dag=start, tabu_length=0, epsilon=1e-8,
        show_progress=False,
    )
    assert set(again.edges) == set(dag.edges)


def test_hill_climb_max_parents_and_tabu(asia, asia_data):
    for tabu in (0, 10):
        dag = structure.hill_climb(asia_data, asia.states, max_parents=1, tabu_length=tabu)
        assert nx.is_directed_acyclic_graph(dag)
        assert max(d for _, d in dag.in_degree) <= 1
    empty = structure.hill_climb(asia_data, asia.states, max_parents=0)
    assert empty.number_of_edges() == 0


def test_hill_climb_finds_the_optimum_on_two_variables():
    # two strongly dependent variables: one edge (either direction) beats none, by the BIC formula
    rng = np.random.default_rng(12)
    a = rng.integers(0, 2, 400)
    b = np.where(rng.random(400) < 0.9, a, 1 - a)
    states = {"a": ("0", "1"), "b": ("0", "1")}
    dag = structure.hill_climb({"a": a, "b": b}, states)
    assert _skeleton(dag) == {frozenset(("a", "b"))}
    independent = {"a": a, "b": rng.integers(0, 2, 400)}
    assert structure.hill_climb(independent, states).number_of_edges() == 0


# ---------------------------------------------------------------------------- Chow-Liu
def _spanning_trees(nodes):
    """Every labelled spanning tree of the complete graph on ``nodes`` (Pruefer sequences)."""
    n = len(nodes)
    for seq in itertools.product(range(n), repeat=n - 2):
        degree = [1] * n
        for i in seq:
            degree[i] += 1
        edges = []
        for i in seq:
            leaf = min(j for j in range(n) if degree[j] == 1)
            edges.append((leaf, i))
            degree[leaf] -= 1
            degree[i] -= 1
        u, v = [j for j in range(n) if degree[j] == 1]
        edges.append((u, v))
        yield [(nodes[a], nodes[b]) for a, b in edges]


def test_chow_liu_equals_brute_force_maximum_mi_tree():
    from sklearn.metrics import mutual_info_score

    # a random chain-like distribution over 5 variables
    rng = np.random.default_rng(13)
    n = 3000
    cols = {"v0": rng.integers(0, 3, n)}
    for i in range(1, 5):
        parent = cols[f"v{rng.integers(0, i)}"]
        cols[f"v{i}"] = np.where(rng.random(n) < 0.6, parent % 2, rng.integers(0, 2, n))
    states = {"v0": ("a", "b", "c"), **{f"v{i}": ("a", "b") for i in range(1, 5)}}
    mi = {(u, v): mutual_info_score(cols[u], cols[v]) for u in states for v in states}
    trees = list(_spanning_trees(list(states)))
    assert len(trees) == 5 ** 3
    best = max(trees, key=lambda t: sum(mi[e] for e in t))
    tree = structure.chow_liu(cols, states, root="v2")
    assert _skeleton(tree) == {frozenset(e) for e in best}
    assert tree.graph["mutual_information"] == pytest.approx(sum(mi[e] for e in best), rel=1e-10)
    assert nx.is_arborescence(tree) and tree.in_degree("v2") == 0


def test_chow_liu_matches_pgmpy_tree_search(asia, asia_data):
    from pgmpy.estimators import TreeSearch

    tree = structure.chow_liu(asia_data, asia.states, root="smoke")
    peer = TreeSearch(_frame(asia.states, asia_data), root_node="smoke", n_jobs=1).estimate(
        estimator_type="chow-liu", show_progress=False
    )
    assert _skeleton(tree) == _skeleton(peer)
    assert set(tree.edges) == set(peer.edges)


# ---------------------------------------------------------------------------- errors
def test_structure_errors(asia, asia_data):
    rows = structure.encode_complete(asia_data, asia.states)[:50].copy()
    rows[7, 2] = -1
    with pytest.raises(DataError, match="row 7"):
        structure.hill_climb(rows, asia.states)
    with pytest.raises(UnknownNameError, match="'nope'"):  # (AIC became a known score)
        structure.hill_climb(asia_data, asia.states, score="nope")
    with pytest.raises(UnknownNameError, match="'nowhere'"):
        structure.chow_liu(asia_data, asia.states, root="nowhere")
    with pytest.raises(DataError, match="equivalent_sample_size"):
        structure.hill_climb(asia_data, asia.states, score="bdeu", equivalent_sample_size=0.0)
