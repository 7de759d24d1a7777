"""Junction tree and loopy belief propagation against brute-force enumeration and pyAgrum.

Oracles: the full joint table of small random factor graphs (every marginal, log Z and the MAP
by enumeration), pyAgrum's lazy propagation on the bundled asia network, and known theory
(BP is exact on trees; on a single loop of binary variables the per-node argmax of the sum-product
beliefs and the max-product assignment are exact, Weiss 2000).
"""

from __future__ import annotations

import gzip

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import inference  # noqa: F401  (float64)
from inference import bp
from inference.errors import EvidenceError, MemoryBudgetError, ModelError
from inference.factors import Factor, FactorGraph


# --------------------------------------------------------------------------- oracles and graphs
def brute_force(graph: FactorGraph, evidence=None):
    """Enumerate the joint: (log Z(e), {unobserved v: p(x_v | e)}, MAP {v: index}, max log p~(x, e))."""
    evidence = graph.evidence_indices(evidence)
    names = graph.variables
    cards = [len(graph.states[v]) for v in names]
    log_joint = np.zeros(cards)
    for factor in graph.factors:
        axes = [names.index(v) for v in factor.scope]
        table = np.transpose(factor.log_table, np.argsort(axes))
        shape = [cards[i] if i in axes else 1 for i in range(len(names))]
        log_joint = log_joint + table.reshape(shape)
    for var, state in evidence.items():
        axis = names.index(var)
        clamp = np.full(cards[axis], -np.inf)
        clamp[state] = 0.0
        log_joint = log_joint + clamp.reshape([cards[axis] if i == axis else 1 for i in range(len(names))])
    log_z = logsumexp(log_joint)
    joint = np.exp(log_joint - log_z)
    marginals = {
        v: joint.sum(axis=tuple(j for j in range(len(names)) if j != i))
        for i, v in enumerate(names)
        if v not in evidence
    }
    best = np.unravel_index(np.argmax(log_joint), log_joint.shape)
    return log_z, marginals, {v: int(best[i]) for i, v in enumerate(names) if v not in evidence}, log_joint.max()


def random_graph(seed, n=7, n_factors=9, max_arity=3, max_card=3):
    """Random log-potentials on random scopes: cycles in the interaction graph, mixed cardinalities."""
    rng = np.random.default_rng(seed)
    states = {f"v{i}": tuple(f"s{k}" for k in range(rng.integers(2, max_card + 1))) for i in range(n)}
    names = list(states)
    factors = []
    for _ in range(n_factors):
        scope = tuple(str(v) for v in rng.choice(names, size=rng.integers(1, max_arity + 1), replace=False))
        factors.append(Factor(scope, rng.normal(size=[len(states[v]) for v in scope])))
    return FactorGraph(states, factors)


def random_dag(seed, n=7, max_parents=2, max_card=3):
    """Random Bayesian network as a directed FactorGraph (Dirichlet CPT rows)."""
    rng = np.random.default_rng(seed)
    states = {f"x{i}": tuple(f"s{k}" for k in range(rng.integers(2, max_card + 1))) for i in range(n)}
    names = list(states)
    factors = []
    for i, var in enumerate(names):
        k = int(min(i, rng.integers(0, max_parents + 1)))
        parents = tuple(str(p) for p in rng.choice(names[:i], size=k, replace=False)) if k else ()
        shape = [len(states[p]) for p in parents] + [len(states[var])]
        cpt = rng.dirichlet(np.ones(shape[-1]), size=tuple(shape[:-1]))
        factors.append(Factor(parents + (var,), np.log(cpt)))
    return FactorGraph(states, factors, directed=True)


def random_tree(seed, n=8):
    """A tree-structured factor graph: pairwise factors on a random tree, a 3-ary factor hanging off
    one node with two fresh variables, and unary factors."""
    rng = np.random.default_rng(seed)
    states = {f"t{i}": tuple(f"s{k}" for k in range(rng.integers(2, 4))) for i in range(n)}
    names = list(states)
    factors = []
    for i in range(1, n):
        parent = names[int(rng.integers(0, i))]
        factors.append(Factor((parent, names[i]), rng.normal(size=(len(states[parent]), len(states[names[i]])))))
    states |= {"w": ("a", "b"), "u": ("a", "b", "c")}
    factors.append(Factor((names[2], "w", "u"), rng.normal(size=(len(states[names[2]]), 2, 3))))
    factors += [Factor((v,), rng.normal(size=len(states[v]))) for v in (names[0], names[5], "u")]
    return FactorGraph(states, factors)


def binary_ring(seed, n=6):
    rng = np.random.default_rng(seed)
    states = {f"r{i}": ("0", "1") for i in range(n)}
    factors = [Factor((f"r{i}",), rng.normal(size=2)) for i in range(n)]
    factors += [Factor((f"r{i}", f"r{(i + 1) % n}"), rng.normal(size=(2, 2))) for i in range(n)]
    return FactorGraph(states, factors)


def max_error(marginals, reference):
    assert set(marginals) == set(reference)
    return max(float(np.abs(np.asarray(marginals[v]) - reference[v]).max()) for v in reference)


# Evidence sets reused across tests so that each (structure, evidence variables) compiles once.
GRAPH_EVIDENCE = [None, {"v0": "s1", "v3": 0}]


# --------------------------------------------------------------------------- junction tree
@pytest.mark.parametrize("evidence", GRAPH_EVIDENCE)
def test_junction_tree_equals_brute_force(evidence):
    graph = random_graph(0)
    log_z, marginals, _, _ = brute_force(graph, evidence)
    result = bp.junction_tree(graph, evidence)
    assert result.log_evidence_kind == "exact"
    assert result.log_evidence == pytest.approx(log_z, abs=1e-10)
    assert max_error(result.marginals, marginals) < 1e-10
    for v, p in result.marginals.items():
        assert p.shape == (len(graph.states[v]),)


def test_junction_tree_new_tables_reuse_the_compiled_plan():
    graph = random_graph(0)
    other = FactorGraph(
        graph.states, [Factor(f.scope, f.log_table[::-1].copy()) for f in graph.factors]
    )
    evidence = GRAPH_EVIDENCE[1]
    bp.junction_tree(graph, evidence)
    misses = bp._compiled_junction_tree.cache_info().misses
    result = bp.junction_tree(other, {"v0": 0, "v3": 0})  # same structure and evidence variables
    assert bp._compiled_junction_tree.cache_info().misses == misses
    log_z, marginals, _, _ = brute_force(other, {"v0": 0, "v3": 0})
    assert result.log_evidence == pytest.approx(log_z, abs=1e-10)
    assert max_error(result.marginals, marginals) < 1e-10


@pytest.mark.parametrize("evidence", GRAPH_EVIDENCE)
def test_junction_tree_max_mode_gives_the_map(evidence):
    graph = random_graph(1)
    _, _, best, best_value = brute_force(graph, evidence)
    result = bp.junction_tree(graph, evidence, mode="max")
    assert result.map == best
    assert result.diagnostics["log_joint"] == pytest.approx(best_value, abs=1e-10)
    assert result.diagnostics["map_states"] == {v: graph.states[v][i] for v, i in best.items()}


def test_junction_tree_on_a_bayes_net_gives_p_of_evidence():
    dag = random_dag(3)
    log_z, marginals, _, _ = brute_force(dag)
    result = bp.junction_tree(dag)
    assert result.log_evidence == pytest.approx(0.0, abs=1e-12)  # Z = 1 for a BN
    assert max_error(result.marginals, marginals) < 1e-10
    evidence = {"x6": "s1", "x3": "s0"}
    log_z, marginals, _, _ = brute_force(dag, evidence)
    result = bp.junction_tree(dag, evidence)
    assert result.log_evidence == pytest.approx(log_z, abs=1e-10)
    assert max_error(result.marginals, marginals) < 1e-10


def test_junction_tree_on_asia_equals_enumeration_and_pyagrum(tmp_path):
    from pgm import bayesnet
    gum = pytest.importorskip("pyagrum")
    from genzoo.data import bn_network_path

    path = bn_network_path("asia")
    net = bayesnet.BayesNet.from_bif(path)
    graph = net.factor_graph()
    evidence = {"xray": "yes", "dysp": "yes", "smoke": "no"}
    log_z, marginals, _, _ = brute_force(graph, evidence)  # 2^8 states: enumeration is the oracle
    result = bp.junction_tree(net, evidence)
    assert result.log_evidence == pytest.approx(log_z, abs=1e-12)
    assert max_error(result.marginals, marginals) < 1e-12

    # the peer: pyAgrum's lazy propagation on the same file. pyAgrum keeps its CPTs in float32
    # (0.9 reads back as 0.89999998): each entry is off by up to 2^-24 relative, a product of the 8
    # CPT entries by up to 8 * 2^-24 ~ 5e-7, so the peer agrees to 1e-6, not to the last digit.
    plain = tmp_path / "asia.bif"
    with gzip.open(path, "rt") as handle:
        plain.write_text(handle.read())
    peer_net = gum.loadBN(str(plain))
    peer = gum.LazyPropagation(peer_net)
    peer.setEvidence(evidence)
    peer.makeInference()
    assert result.log_evidence == pytest.approx(np.log(peer.evidenceProbability()), abs=1e-6)
    for var, p in result.marginals.items():
        labels = list(peer_net.variable(var).labels())
        reference = peer.posterior(var).toarray()[[labels.index(s) for s in graph.states[var]]]
        np.testing.assert_allclose(p, reference, atol=1e-6)


def test_junction_tree_on_a_numpyro_program():
    import numpyro
    import numpyro.distributions as dist

    def coin(flips=None):
        bias = numpyro.sample("bias", dist.Categorical(jnp.array([0.5, 0.5])))
        with numpyro.plate("flips", 3):
            numpyro.sample("flip", dist.Bernoulli(jnp.array([0.3, 0.8])[bias]), obs=flips)

    result = bp.junction_tree(coin, model_kwargs={"flips": jnp.array([1.0, 1.0, 0.0])})
    # closed form: p(bias) ∝ 0.5 * q^2 (1 - q) for q in (0.3, 0.8)
    weights = np.array([0.5 * 0.3**2 * 0.7, 0.5 * 0.8**2 * 0.2])
    np.testing.assert_allclose(result.marginals["bias"], weights / weights.sum(), atol=1e-12)
    assert result.log_evidence == pytest.approx(np.log(weights.sum()), abs=1e-12)


def test_junction_tree_everything_observed():
    dag = random_dag(3)
    evidence = {v: 0 for v in dag.variables}
    result = bp.junction_tree(dag, evidence)
    assert result.marginals == {}
    expected = sum(f.log_table[(0,) * len(f.scope)] for f in dag.factors)
    assert result.log_evidence == pytest.approx(expected, abs=1e-12)


def test_junction_tree_memory_budget():
    with pytest.raises(MemoryBudgetError, match="clique"):
        bp.junction_tree(random_graph(0), memory_budget=8 * 4)  # 4 float64 entries


# --------------------------------------------------------------------------- loopy BP
@pytest.mark.parametrize("evidence", [None, {"t2": 1, "u": "c"}])
def test_loopy_is_exact_on_trees(evidence):
    tree = random_tree(4)
    log_z, marginals, best, best_value = brute_force(tree, evidence)
    result = bp.loopy(tree, evidence)
    assert result.diagnostics["converged"]
    assert result.log_evidence_kind == "estimate"
    assert max_error(result.marginals, marginals) < 1e-8
    assert result.log_evidence == pytest.approx(log_z, abs=1e-8)  # the Bethe free energy is exact
    # damping slows the flooding schedule down but keeps the fixed point
    damped = bp.loopy(tree, evidence, damping=0.5, tol=1e-13, max_iter=500)
    assert damped.diagnostics["converged"]
    assert damped.diagnostics["iterations"] > result.diagnostics["iterations"]
    assert max_error(damped.marginals, marginals) < 1e-8
    assert damped.log_evidence == pytest.approx(log_z, abs=1e-8)
    # max-product on a tree decodes the MAP
    map_result = bp.loopy(tree, evidence, mode="max")
    assert map_result.map == best
    assert map_result.diagnostics["log_joint"] == pytest.approx(best_value, abs=1e-10)


def test_loopy_on_a_single_binary_loop():
    ring = binary_ring(4)
    log_z, marginals, best, _ = brute_force(ring)
    result = bp.loopy(ring, tol=1e-12, max_iter=1000)
    residuals = result.diagnostics["max_residual"]
    assert result.diagnostics["converged"]
    assert len(residuals) == result.diagnostics["iterations"]
    assert residuals[-1] <= 1e-12 < residuals[0]
    # On one loop of binary variables the argmax of each BP belief is the argmax of the true
    # marginal and max-product finds the MAP (Weiss, 2000); the beliefs themselves are not exact.
    for v, p in marginals.items():
        assert np.argmax(result.marginals[v]) == np.argmax(p)
    assert bp.loopy(ring, mode="max", tol=1e-12, max_iter=1000).map == best
    # Weiss (2000) in closed form: with M_i the transfer matrix around the loop from r_i back to
    # r_i (unary and pairwise tables in turn), Z = tr M_i and p_i = diag(M_i) / tr M_i, while BP's
    # fixed point has b_i proportional to u * v (M_i's principal right and left eigenvectors) and
    # Bethe Z = lambda_max. Messages converged to 1e-12 leave beliefs within a few of that: 1e-10.
    unary = {f.scope[0]: np.exp(f.log_table) for f in ring.factors if len(f.scope) == 1}
    pair = {f.scope: np.exp(f.log_table) for f in ring.factors if len(f.scope) == 2}
    n = len(ring.variables)
    for i in range(n):
        transfer = np.eye(2)
        for k in range(n):
            a, b = f"r{(i + k) % n}", f"r{(i + k + 1) % n}"
            transfer = transfer @ np.diag(unary[a]) @ pair[(a, b)]
        values, right = np.linalg.eig(transfer)
        values_left, left = np.linalg.eig(transfer.T)
        belief = right[:, np.argmax(values.real)].real * left[:, np.argmax(values_left.real)].real
        np.testing.assert_allclose(result.marginals[f"r{i}"], belief / belief.sum(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(marginals[f"r{i}"], np.diag(transfer) / np.trace(transfer), rtol=1e-12)
    assert result.log_evidence == pytest.approx(np.log(values.real.max()), abs=1e-10)
    assert log_z == pytest.approx(np.log(np.trace(transfer)), abs=1e-12)
    assert max_error(result.marginals, marginals) > 1e-4  # BP is not exact here (measured 6.6e-4)


def loopy_reference(graph, evidence=None, tol=1e-13, max_iter=5000):
    """Sum-product with a flooding schedule in plain NumPy, written independently of inference.bp:
    factor tables restricted to the evidence, messages normalised, beliefs
    b_v proportional to the product of the messages into v. Loopy BP's fixed point, as a reference."""
    fixed = graph.evidence_indices(evidence)
    tables = []
    for f in graph.factors:
        table = np.exp(np.asarray(f.log_table, dtype=float))
        scope = [v for v in f.scope if v not in fixed]
        table = table[tuple(fixed.get(v, slice(None)) for v in f.scope)]
        if scope:
            tables.append((scope, table))
    free = [v for v in graph.variables if v not in fixed]
    to_factor = {(i, v): np.ones(len(graph.states[v])) / len(graph.states[v])
                 for i, (scope, _) in enumerate(tables) for v in scope}
    to_var = dict(to_factor)
    for _ in range(max_iter):
        new_to_var = {}
        for i, (scope, table) in enumerate(tables):
            for k, v in enumerate(scope):
                product = table
                for j, u in enumerate(scope):
                    if u != v:
                        shape = [1] * len(scope)
                        shape[j] = -1
                        product = product * to_factor[(i, u)].reshape(shape)
                message = product.sum(axis=tuple(j for j in range(len(scope)) if j != k))
                new_to_var[(i, v)] = message / message.sum()
        change = max(np.abs(new_to_var[key] - to_var[key]).max() for key in to_var)
        to_var = new_to_var
        for i, v in to_factor:
            others = [to_var[(j, u)] for (j, u) in to_var if u == v and j != i]
            incoming = np.prod(others, axis=0) if others else np.ones(len(graph.states[v]))
            to_factor[(i, v)] = incoming / incoming.sum()
        if change < tol:
            break
    beliefs = {}
    for v in free:
        b = np.prod([to_var[(j, u)] for (j, u) in to_var if u == v], axis=0)
        beliefs[v] = b / b.sum()
    return beliefs


def test_loopy_on_a_graph_with_cycles_reports_convergence():
    graph = random_graph(1)
    evidence = GRAPH_EVIDENCE[1]
    _, marginals, _, _ = brute_force(graph, evidence)
    plain = bp.loopy(graph, evidence, tol=1e-10, max_iter=500)
    damped = bp.loopy(graph, evidence, damping=0.5, tol=1e-10, max_iter=500)
    for r in (plain, damped):
        assert r.diagnostics["converged"]
        assert r.diagnostics["max_residual"][-1] <= 1e-10
        assert np.isfinite(r.log_evidence)
        for v, p in r.marginals.items():
            assert p.sum() == pytest.approx(1.0, abs=1e-12)
    # damping changes the path, not the fixed point (the same stationary point of the Bethe energy)
    assert max_error(damped.marginals, plain.marginals) < 1e-8
    # the fixed point is loopy BP's, computed independently: both converged to 1e-10 in the
    # messages, so beliefs agree to a few times that (1e-8)
    assert max_error(plain.marginals, loopy_reference(graph, evidence)) < 1e-8
    # and BP is an approximation on this graph: measured error 2.1e-2 against enumeration
    assert max_error(plain.marginals, marginals) > 1e-3


def test_loopy_on_asia_equals_pyagrum_loopy_bp(tmp_path):
    from pgm import bayesnet
    gum = pytest.importorskip("pyagrum")
    from genzoo.data import bn_network_path

    path = bn_network_path("asia")
    net = bayesnet.BayesNet.from_bif(path)
    # smoke -> lung -> either -> dysp <- bronc <- smoke stays a loop with dysp observed
    evidence = {"xray": "yes", "dysp": "yes"}
    _, marginals, _, _ = brute_force(net.factor_graph(), evidence)
    result = bp.loopy(net, evidence, tol=1e-12, max_iter=1000)
    assert result.diagnostics["converged"]
    plain = tmp_path / "asia.bif"
    with gzip.open(path, "rt") as handle:
        plain.write_text(handle.read())
    peer_net = gum.loadBN(str(plain))
    peer = gum.LoopyBeliefPropagation(peer_net)
    peer.setEvidence(evidence)
    peer.setEpsilon(1e-12)
    peer.setMaxIter(1000)
    peer.makeInference()
    # the same fixed point as pyAgrum's loopy BP, to its float32 tables (see the asia test above)
    for var, p in result.marginals.items():
        labels = list(peer_net.variable(var).labels())
        reference = peer.posterior(var).toarray()[[labels.index(s) for s in net.states[var]]]
        np.testing.assert_allclose(p, reference, atol=1e-6)
    # the same fixed point as the independent NumPy sum-product (both converged to 1e-12: 1e-9)
    assert max_error(result.marginals, loopy_reference(net.factor_graph(), evidence)) < 1e-9
    # and it is an approximation here: measured max error 1.6e-2 against enumeration
    assert max_error(result.marginals, marginals) > 1e-3


def test_loopy_without_convergence_says_so():
    graph = random_graph(1)
    result = bp.loopy(graph, GRAPH_EVIDENCE[1], max_iter=2)
    assert not result.diagnostics["converged"]
    assert result.diagnostics["iterations"] == 2
    assert len(result.diagnostics["max_residual"]) == 2


def test_loopy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="damping"):
        bp.loopy(random_tree(4), damping=1.0)
    with pytest.raises(ValueError, match="mode"):
        bp.loopy(random_tree(4), mode="mean")


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("method", [bp.junction_tree, bp.loopy])
def test_bad_evidence_raises_evidence_error(method):
    graph = random_graph(0)
    with pytest.raises(EvidenceError, match="nowhere"):
        method(graph, {"nowhere": 0})
    with pytest.raises(EvidenceError, match="s9"):
        method(graph, {"v0": "s9"})
    with pytest.raises(EvidenceError, match="out of range"):
        method(graph, {"v0": 7})


def _deterministic_or():
    """c = a OR b with b never true: p(a) = (0.5, 0.5), p(b) = (1, 0)."""
    states = {"a": ("0", "1"), "b": ("0", "1"), "c": ("0", "1")}
    or_table = np.zeros((2, 2, 2))
    for a in range(2):
        for b in range(2):
            or_table[a, b, a | b] = 1.0
    with np.errstate(divide="ignore"):
        factors = [
            Factor(("a",), np.log([0.5, 0.5])),
            Factor(("b",), np.log([1.0, 0.0])),
            Factor(("a", "b", "c"), np.log(or_table)),
        ]
    return FactorGraph(states, factors, directed=True)


@pytest.mark.parametrize("method", [bp.junction_tree, bp.loopy])
def test_zero_probability_evidence(method):
    graph = _deterministic_or()
    # a = 0, c = 1 needs b = 1: every factor slice has a possible entry, only their product is 0
    with pytest.raises(EvidenceError, match="probability zero"):
        method(graph, {"a": 0, "c": 1})
    result = method(graph, {"a": 1, "c": "1"})
    np.testing.assert_allclose(result.marginals["b"], [1.0, 0.0], atol=1e-12)
    assert result.log_evidence == pytest.approx(np.log(0.5), abs=1e-12)


def test_nan_tables_are_a_model_error():
    graph = FactorGraph({"a": ("0", "1")}, [Factor(("a",), np.array([0.0, np.nan]))])
    with pytest.raises(ModelError, match="NaN"):
        bp.junction_tree(graph)
