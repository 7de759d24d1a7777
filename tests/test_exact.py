"""Exact inference against brute-force enumeration, a closed form and pgmpy.

Oracles: the full joint of small random factor graphs and Bayesian networks enumerated with
NumPy; hand-enumerated NumPyro programs; closed forms; pgmpy's VariableElimination on the
bundled asia / alarm / child networks; binomial tolerances for exact samples.
"""

from __future__ import annotations

import gzip
import itertools
import sys
import types

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import inference  # noqa: F401 - float64
from inference import discrete, exact
from inference import layout as layouts
from inference.errors import DataError, EvidenceError, MemoryBudgetError, ModelError
from inference.factors import Factor, FactorGraph
from inference.trace import trace_factor_graph


# ============================================================================ helpers
def _log(x):
    with np.errstate(divide="ignore"):
        return np.log(x)


def random_factor_graph(rng, n_vars=6, n_factors=7, zeros=0.2):
    """Random variables (1-3 states) and random non-negative factors over 0-3 of them, with zeros."""
    states = {f"v{i}": tuple(f"s{j}" for j in range(rng.integers(1, 4))) for i in range(n_vars)}
    names = list(states)
    factors = []
    for _ in range(n_factors):
        scope = tuple(rng.choice(names, size=rng.integers(0, 4), replace=False))
        shape = tuple(len(states[v]) for v in scope)
        table = rng.uniform(0.05, 3.0, size=shape) * (rng.uniform(size=shape) > zeros)
        factors.append(Factor(scope, _log(table)))
    return FactorGraph(states, factors)


def random_bayes_net(rng, n_vars=7, max_parents=3, zeros=0.25):
    """A random DAG (variables in topological order) with random CPTs, some entries zero."""
    states = {f"x{i}": tuple(f"k{j}" for j in range(rng.integers(2, 4))) for i in range(n_vars)}
    names = list(states)
    factors = []
    for i, v in enumerate(names):
        parents = tuple(rng.choice(names[:i], size=min(i, rng.integers(0, max_parents + 1)), replace=False))
        shape = tuple(len(states[p]) for p in parents) + (len(states[v]),)
        table = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]).reshape(shape)
        table = table * (rng.uniform(size=shape) > zeros)
        table[..., 0] += table.sum(-1) == 0  # keep each row a distribution
        table /= table.sum(-1, keepdims=True)
        factors.append(Factor(parents + (v,), _log(table)))
    return FactorGraph(states, factors, directed=True)


def joint_log_table(graph: FactorGraph) -> np.ndarray:
    """log of the product of all factors over every joint state (axes in graph.variables order)."""
    variables = graph.variables
    letters = {v: chr(ord("a") + i) for i, v in enumerate(variables)}
    shape = tuple(len(graph.states[v]) for v in variables)
    total = np.zeros(shape)
    for f in graph.factors:
        spec = "".join(letters[v] for v in f.scope) + "->" + "".join(letters[v] for v in variables if v in f.scope)
        table = np.einsum(spec, f.log_table) if f.scope else f.log_table
        expand = tuple(shape[i] if v in f.scope else 1 for i, v in enumerate(variables))
        total = total + table.reshape(expand)
    return total


def brute_force(graph: FactorGraph, evidence: dict):
    """log Z(e), every unobserved marginal, max log joint and the set of maximising assignments."""
    variables = graph.variables
    logj = joint_log_table(graph)
    for v, k in evidence.items():
        axis = variables.index(v)
        mask = np.full(logj.shape[axis], -np.inf)
        mask[k] = 0.0
        logj = logj + mask.reshape([-1 if a == axis else 1 for a in range(logj.ndim)])
    top = logj.max()
    if not np.isfinite(top):
        return -np.inf, None, -np.inf, None
    p = np.exp(logj - top)
    z = p.sum()
    marg = {
        v: p.sum(axis=tuple(j for j in range(len(variables)) if j != i)) / z
        for i, v in enumerate(variables)
        if v not in evidence
    }
    best = {tuple(ix) for ix in np.argwhere(np.isclose(logj, top, rtol=0, atol=1e-12))}
    return np.log(z) + top, marg, top, best


def log_joint_at(graph: FactorGraph, assignment: dict) -> float:
    return float(sum(f.log_table[tuple(assignment[v] for v in f.scope)] for f in graph.factors))


def forward_sample(graph: FactorGraph, rng) -> dict:
    """One ancestral draw of a directed graph (so that evidence taken from it has p(e) > 0)."""
    draw = {}
    for v, f in zip(graph.variables, graph.factors):
        probs = np.exp(f.log_table[tuple(draw[p] for p in f.scope[:-1])])
        draw[v] = int(rng.choice(len(probs), p=probs / probs.sum()))
    return draw


def pgmpy_network(name):
    """A bundled network read by pgmpy, and the same network as our FactorGraph.

    The BIF files round some CPT rows (sums like 0.999999); the rows are renormalised in both
    copies, so that both libraries answer for the same proper Bayesian network (pgmpy prunes
    barren nodes, which is exact only when every row sums to one)."""
    from pgmpy.readwrite import BIFReader

    from genzoo.data import bn_network_path

    with gzip.open(bn_network_path(name), "rt") as handle:
        model = BIFReader(string=handle.read()).get_model()
    order = list(nx.topological_sort(model))
    states, factors = {}, []
    for v in order:
        cpd = model.get_cpds(v)
        states[v] = tuple(cpd.state_names[v])
        parents = tuple(cpd.variables[1:])
        values = cpd.get_values() / cpd.get_values().sum(axis=0, keepdims=True)
        cpd.values = values.reshape(cpd.values.shape)
        table = values.reshape((len(states[v]),) + tuple(len(cpd.state_names[p]) for p in parents))
        factors.append(Factor(parents + (v,), _log(np.moveaxis(table, 0, -1))))
    return model, FactorGraph(states, factors, directed=True)


# ============================================================================ brute force
@pytest.mark.parametrize("seed", range(12))
def test_random_factor_graphs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    graph = random_factor_graph(rng)
    for n_evidence in (0, 1, 2):
        chosen = rng.choice(graph.variables, size=n_evidence, replace=False)
        evidence = {v: int(rng.integers(len(graph.states[v]))) for v in chosen}
        log_z, marg, top, best = brute_force(graph, evidence)
        if not np.isfinite(log_z):
            with pytest.raises(EvidenceError, match="probability zero"):
                exact.marginals(graph, evidence)
            continue
        result = exact.marginals(graph, evidence)
        assert result.log_evidence_kind == "exact"
        assert result.log_evidence == pytest.approx(log_z, abs=1e-12)
        assert exact.log_evidence(graph, evidence).log_evidence == pytest.approx(log_z, abs=1e-12)
        assert set(result.marginals) == set(marg)
        for v, m in marg.items():
            np.testing.assert_allclose(result.marginals[v], m, rtol=0, atol=1e-12)
        mpe = exact.map(graph, evidence)
        assert mpe.diagnostics["log_joint"] == pytest.approx(top, abs=1e-12)
        full = {**mpe.map, **evidence}
        assert tuple(full[v] for v in graph.variables) in best
        assert mpe.diagnostics["map_states"] == {v: graph.states[v][k] for v, k in mpe.map.items()}


@pytest.mark.parametrize("seed", range(12))
def test_random_bayes_nets_match_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    graph = random_bayes_net(rng)
    draw = forward_sample(graph, rng)
    for n_evidence in (0, 1, 3):
        chosen = rng.choice(graph.variables, size=n_evidence, replace=False)
        evidence = {v: draw[v] for v in chosen}
        log_z, marg, top, best = brute_force(graph, evidence)
        result = exact.marginals(graph, evidence)
        assert result.log_evidence == pytest.approx(log_z, abs=1e-12)
        # log_evidence prunes to the ancestors of the evidence: still the same number
        assert exact.log_evidence(graph, evidence).log_evidence == pytest.approx(log_z, abs=1e-12)
        for v, m in marg.items():
            np.testing.assert_allclose(result.marginals[v], m, rtol=0, atol=1e-12)
        mpe = exact.map(graph, evidence)
        assert mpe.diagnostics["log_joint"] == pytest.approx(top, abs=1e-12)
        assert log_joint_at(graph, {**mpe.map, **evidence}) == pytest.approx(top, abs=1e-12)
        assert tuple({**mpe.map, **evidence}[v] for v in graph.variables) in best


def test_large_steps_take_the_matmul_path_and_agree_with_brute_force():
    """Five 8-state variables in a ring of pairwise factors: steps of >= 4096 joint states run
    as BLAS matmuls (with a batch axis in family_posteriors); still equal to enumeration."""
    rng = np.random.default_rng(21)
    names = [f"r{i}" for i in range(5)]
    states = {v: tuple(str(k) for k in range(8)) for v in names}
    factors = [Factor((names[i], names[(i + 1) % 5], names[(i + 2) % 5]), _log(rng.uniform(size=(8, 8, 8))))
               for i in range(5)]
    graph = FactorGraph(states, factors)
    evidence = {"r0": 3}
    program = exact._program((graph.signature(), ("r0",)), False)
    assert any(kernel.matmul is not None for kernel in program.forward)
    log_z, marg, top, _ = brute_force(graph, evidence)
    result = exact.marginals(graph, evidence)
    assert result.log_evidence == pytest.approx(log_z, abs=1e-11)
    for v, m in marg.items():
        np.testing.assert_allclose(result.marginals[v], m, rtol=0, atol=1e-12)
    assert exact.map(graph, evidence).diagnostics["log_joint"] == pytest.approx(top, abs=1e-11)
    logp, posts = exact.family_posteriors(graph, ("r0", "r2"), np.array([[3, 1], [5, 7]]))
    for b, (e0, e2) in enumerate([(3, 1), (5, 7)]):
        log_z_b, marg_b, _, _ = brute_force(graph, {"r0": e0, "r2": e2})
        assert logp[b] == pytest.approx(log_z_b, abs=1e-11)
        family = posts[0][b]  # p(r0, r1, r2 | r0 = e0, r2 = e2): one-hot along r0 and r2
        np.testing.assert_allclose(family.sum(axis=(1, 2)), np.eye(8)[e0], atol=1e-12)
        np.testing.assert_allclose(family.sum(axis=(0, 1)), np.eye(8)[e2], atol=1e-12)
        np.testing.assert_allclose(family.sum(axis=(0, 2)), marg_b["r1"], atol=1e-12)
        np.testing.assert_allclose(posts[3][b].sum(axis=(1, 2)), marg_b["r3"], atol=1e-12)


def test_no_underflow_far_below_the_smallest_double():
    """p(e) = 0.1**400 * 0.5**400 ~ 1e-520: far below the float64 range, exact in log space."""
    n = 400
    states = {f"a{i}": ("0", "1") for i in range(n)} | {f"b{i}": ("0", "1") for i in range(n)}
    factors = [Factor((f"a{i}",), np.log([0.9, 0.1])) for i in range(n)]
    factors += [Factor((f"a{i}", f"b{i}"), np.log([[0.5, 0.5], [0.5, 0.5]])) for i in range(n)]
    graph = FactorGraph(states, factors, directed=True)
    evidence = {f"a{i}": 1 for i in range(n)} | {f"b{i}": 0 for i in range(n)}
    expected = n * np.log(0.1) + n * np.log(0.5)
    assert exact.log_evidence(graph, evidence).log_evidence == pytest.approx(expected, rel=1e-14)
    half = {f"a{i}": 1 for i in range(n)}  # b's free: p(b_i) = (0.5, 0.5), log p(e) = n log 0.1
    result = exact.marginals(graph, half)
    assert result.log_evidence == pytest.approx(n * np.log(0.1), rel=1e-14)
    np.testing.assert_allclose(result.marginals["b7"], [0.5, 0.5], rtol=0, atol=1e-14)


# ============================================================================ linear and log space
@pytest.mark.parametrize("name", ["alarm", "win95pts", "andes"])
def test_linear_space_pass_equals_the_log_space_pass(name):
    """The same marginals two ways: the linear-space pass that answers ``marginals`` on these
    networks and the log-space pass on the same plan, for evidence drawn from the network
    (on andes the tables' ranges add up to over 1000 nats: messages get rescaled on the way)."""
    _, graph = pgmpy_network(name)
    rng = np.random.default_rng(3)
    for seed in range(3):
        draw = exact.sample(graph, jax.random.key(seed), 1).samples
        chosen = rng.choice(graph.variables, size=3, replace=False)
        evidence = {str(v): int(draw[v][0]) for v in chosen}
        result = exact.marginals(graph, evidence)
        assert result.diagnostics["arithmetic"] == "linear"
        key = (graph.signature(), tuple(evidence))
        layout = exact._layout(key)
        restricted = exact._restrict(discrete.check_tables(graph), tuple(evidence.values()), layout)
        log_z, reference = exact._program(key, False).marginals(restricted, layout.free_ids)
        assert result.log_evidence == pytest.approx(float(log_z), rel=1e-13, abs=1e-12)
        for v, m in zip(layout.free_names, reference):
            np.testing.assert_allclose(result.marginals[v], m, rtol=0, atol=1e-12)


def test_linear_space_rescales_where_the_bounds_demand_and_stays_exact(monkeypatch):
    """A chain of twelve 3-state variables with log-potentials in [-70, 0]: the tables'
    ranges add up to more than LINEAR_RANGE, so some messages are rescaled on the way; the
    answer still equals enumeration of the 3**12 joint states."""
    from inference import contract

    rescaled = []
    rescale = contract._rescale
    monkeypatch.setattr(contract, "_rescale", lambda *args: rescaled.append(args[4]) or rescale(*args))
    rng = np.random.default_rng(5)
    n = 12
    states = {f"c{i}": ("0", "1", "2") for i in range(n)}
    factors = [Factor((f"c{i}", f"c{i + 1}"), rng.uniform(-70, 0, size=(3, 3))) for i in range(n - 1)]
    factors.append(Factor(("c0",), rng.uniform(-70, 0, size=3)))
    graph = FactorGraph(states, factors)
    assert sum(np.ptp(f.log_table) for f in factors) > contract.LINEAR_RANGE
    for evidence in ({}, {"c5": 1}, {"c0": 2, "c11": 0}):
        result = exact.marginals(graph, evidence)
        assert result.diagnostics["arithmetic"] == "linear"
        log_z, marg, _, _ = brute_force(graph, evidence)
        assert result.log_evidence == pytest.approx(log_z, rel=1e-14)
        for v, m in marg.items():
            np.testing.assert_allclose(result.marginals[v], m, rtol=0, atol=1e-12)
    assert rescaled


def test_wide_dynamic_range_takes_the_log_space_pass():
    """Potentials e^{+-800}: their product is 1 for either state of ``a``, but the tables
    span 1600 nats, so linear tables would underflow to zero. The engine sees the range and
    answers in log space: Z = 2, p(a) = (1/2, 1/2) and p(b | a) as enumerated."""
    states = {"a": ("0", "1"), "b": ("0", "1"), "c": ("0", "1", "2")}  # c: held by no factor
    factors = [
        Factor(("a",), np.array([0.0, -800.0])),
        Factor(("a",), np.array([0.0, 800.0])),
        Factor(("a", "b"), np.log([[0.25, 0.75], [0.5, 0.5]])),
    ]
    graph = FactorGraph(states, factors)
    result = exact.marginals(graph)
    assert result.diagnostics["arithmetic"] == "log"
    log_z, marg, _, _ = brute_force(graph, {})
    assert result.log_evidence == pytest.approx(log_z, abs=1e-12)
    for v, m in marg.items():
        np.testing.assert_allclose(result.marginals[v], m, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.marginals["a"], [0.5, 0.5], rtol=0, atol=1e-15)
    # the same structure within range runs in linear space, the free variable c included
    mild = [Factor(("a",), np.array([0.0, -8.0])), Factor(("a",), np.array([0.0, 9.0])), factors[2]]
    mild = FactorGraph(states, mild)
    result = exact.marginals(mild, {"b": "1"})
    assert result.diagnostics["arithmetic"] == "linear"
    assert exact.log_evidence(mild, {"b": "1"}).diagnostics["arithmetic"] == "linear"
    log_z, marg, _, _ = brute_force(mild, {"b": 1})
    assert result.log_evidence == pytest.approx(log_z, abs=1e-12)
    for v, m in marg.items():
        np.testing.assert_allclose(result.marginals[v], m, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.marginals["c"], np.full(3, 1 / 3), rtol=0, atol=1e-15)
    # each table within range, but any two of them together span 800 nats or more: the linear
    # pass gives up at its first step and log space answers, p(a = 1) = e^-300 / (1 + e^-300)
    wide = FactorGraph({"a": ("0", "1")}, [Factor(("a",), np.array([0.0, -400.0])),
                                           Factor(("a",), np.array([0.0, -400.0])),
                                           Factor(("a",), np.array([-500.0, 0.0]))])
    result = exact.marginals(wide)
    assert result.diagnostics["arithmetic"] == "log"
    assert result.log_evidence == pytest.approx(-500.0 + np.log1p(np.exp(-300.0)), rel=1e-15)
    evidence = exact.log_evidence(wide)
    assert evidence.diagnostics["arithmetic"] == "log"
    assert evidence.log_evidence == pytest.approx(-500.0 + np.log1p(np.exp(-300.0)), rel=1e-15)
    evidence = exact.log_evidence(wide, {"a": 1})  # one entry per table left: nothing to underflow
    assert evidence.diagnostics["arithmetic"] == "linear"
    assert evidence.log_evidence == pytest.approx(-800.0, rel=1e-15)
    np.testing.assert_allclose(result.marginals["a"], [1.0, np.exp(-300.0)], rtol=1e-12, atol=0)


def test_evidence_of_probability_zero_in_linear_space_raises_not_nan():
    """b = 0 forces a = 0 and c = 0 forces a = 1: every restricted table keeps a non-zero
    entry but their product is zero everywhere. Z = 0 exactly: EvidenceError, no NaN."""
    states = {"a": ("0", "1"), "b": ("0", "1"), "c": ("0", "1")}
    factors = [
        Factor(("a",), np.log([0.5, 0.5])),
        Factor(("a", "b"), _log([[1.0, 0.0], [0.0, 1.0]])),
        Factor(("a", "c"), _log([[0.0, 1.0], [1.0, 0.0]])),
    ]
    graph = FactorGraph(states, factors, directed=True)
    assert exact.marginals(graph, {"b": 0}).diagnostics["arithmetic"] == "linear"
    with np.errstate(all="raise"):  # no warning either: a zero is handled, not divided by
        with pytest.raises(EvidenceError, match="probability zero"):
            exact.marginals(graph, {"b": 0, "c": 0})
    assert exact.marginals(graph, {"b": 0, "c": 1}).marginals["a"].tolist() == [1.0, 0.0]


# ============================================================================ programs
def sprinkler(wet=None):
    #   cloudy --> sprinkler --> wet <-- rain <-- cloudy
    cloudy = numpyro.sample("cloudy", dist.Categorical(jnp.array([0.5, 0.5])))
    sprinkler_on = numpyro.sample("sprinkler", dist.Categorical(jnp.array([[0.5, 0.5], [0.9, 0.1]])[cloudy]))
    rain = numpyro.sample("rain", dist.Categorical(jnp.array([[0.8, 0.2], [0.2, 0.8]])[cloudy]))
    p_wet = jnp.array([[0.0, 0.9], [0.9, 0.99]])[sprinkler_on, rain]
    numpyro.sample("wet", dist.Bernoulli(p_wet), obs=wet)


def sprinkler_joint():
    """p(cloudy, sprinkler, rain, wet) enumerated by hand."""
    pc = np.array([0.5, 0.5])
    ps = np.array([[0.5, 0.5], [0.9, 0.1]])
    pr = np.array([[0.8, 0.2], [0.2, 0.8]])
    pw = np.array([[0.0, 0.9], [0.9, 0.99]])
    joint = np.zeros((2, 2, 2, 2))
    for c, s, r, w in itertools.product(range(2), repeat=4):
        joint[c, s, r, w] = pc[c] * ps[c, s] * pr[c, r] * (pw[s, r] if w else 1 - pw[s, r])
    return joint


def test_sprinkler_program_matches_enumeration():
    joint = sprinkler_joint()
    # wet observed through the program's argument
    result = exact.marginals(sprinkler, model_kwargs={"wet": jnp.array(1.0)})
    p_wet = joint[..., 1].sum()
    assert result.log_evidence == pytest.approx(np.log(p_wet), abs=1e-12)
    post = joint[..., 1] / p_wet
    np.testing.assert_allclose(result.marginals["cloudy"], post.sum((1, 2)), atol=1e-12)
    np.testing.assert_allclose(result.marginals["sprinkler"], post.sum((0, 2)), atol=1e-12)
    np.testing.assert_allclose(result.marginals["rain"], post.sum((0, 1)), atol=1e-12)
    # the same through evidence on sites: wet conditioned, and a latent site clamped
    clamped = exact.marginals(sprinkler, {"wet": 1.0, "rain": 1})
    post_r = joint[:, :, 1, 1] / joint[:, :, 1, 1].sum()
    assert clamped.log_evidence == pytest.approx(np.log(joint[:, :, 1, 1].sum()), abs=1e-12)
    np.testing.assert_allclose(clamped.marginals["sprinkler"], post_r.sum(0), atol=1e-12)
    assert set(clamped.marginals) == {"cloudy", "sprinkler"}
    # MAP of (cloudy, sprinkler, rain) given wet
    mpe = exact.map(sprinkler, {"wet": 1.0})
    best = np.unravel_index(np.argmax(joint[..., 1]), (2, 2, 2))
    assert (mpe.map["cloudy"], mpe.map["sprinkler"], mpe.map["rain"]) == tuple(int(b) for b in best)
    assert mpe.diagnostics["log_joint"] == pytest.approx(np.log(joint[..., 1].max()), abs=1e-12)
    # p(wet = 1) by the program alone: log_evidence of the site evidence
    assert exact.log_evidence(sprinkler, {"wet": 1.0}).log_evidence == pytest.approx(np.log(p_wet), abs=1e-12)


def test_sprinkler_trace_structure():
    graph = trace_factor_graph(sprinkler, wet=jnp.array(1.0))
    assert graph.states == {"cloudy": ("0", "1"), "sprinkler": ("0", "1"), "rain": ("0", "1")}
    assert sorted(tuple(sorted(f.scope)) for f in graph.factors) == sorted(
        [("cloudy",), ("cloudy", "sprinkler"), ("cloudy", "rain"), ("rain", "sprinkler")]
    )


COMPONENTS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])  # p(z | c)
EMISSION = np.array([[0.8, 0.2], [0.5, 0.5], [0.05, 0.95]])  # p(x | z)


def mixture(x=None):
    #   c --> z[i] --> x[i]      i in plate "data" (3)
    c = numpyro.sample("c", dist.Categorical(jnp.array([0.4, 0.6])))
    with numpyro.plate("data", 3):
        z = numpyro.sample("z", dist.Categorical(jnp.asarray(COMPONENTS)[c]))
        numpyro.sample("x", dist.Categorical(jnp.asarray(EMISSION)[z]), obs=x)


def mixture_joint(x):
    joint = np.zeros((2, 3, 3, 3))
    for c, z0, z1, z2 in itertools.product(range(2), range(3), range(3), range(3)):
        p = [0.4, 0.6][c]
        for z, xi in zip((z0, z1, z2), x):
            p *= COMPONENTS[c, z] * EMISSION[z, xi]
        joint[c, z0, z1, z2] = p
    return joint


def test_plated_mixture_program_matches_enumeration():
    x = np.array([0, 1, 1])
    joint = mixture_joint(x)
    z_total = joint.sum()
    result = exact.marginals(mixture, model_kwargs={"x": jnp.asarray(x)})
    assert result.log_evidence == pytest.approx(np.log(z_total), abs=1e-12)
    np.testing.assert_allclose(result.marginals["c"], joint.sum((1, 2, 3)) / z_total, atol=1e-12)
    assert result.marginals["z"].shape == (3, 3)
    for i in range(3):
        others = tuple(a for a in (1, 2, 3) if a != i + 1)
        np.testing.assert_allclose(result.marginals["z"][i], joint.sum((0,) + others) / z_total, atol=1e-12)
    mpe = exact.map(mixture, model_kwargs={"x": jnp.asarray(x)})
    best = np.unravel_index(np.argmax(joint), joint.shape)
    assert mpe.map["c"] == best[0]
    assert mpe.map["z"].tolist() == [int(b) for b in best[1:]]
    assert len(mpe.diagnostics["map_states"]["z"]) == 3
    # clamping one unrolled variable keeps the others by name
    clamped = exact.marginals(mixture, {"z[1]": 2}, model_kwargs={"x": jnp.asarray(x)})
    sub = joint[:, :, 2, :]
    np.testing.assert_allclose(clamped.marginals["z[0]"], sub.sum((0, 2)) / sub.sum(), atol=1e-12)
    assert "z" not in clamped.marginals


def test_program_samples_have_plate_shape():
    x = jnp.array([0, 1, 1])
    result = exact.sample(mixture, jax.random.key(3), 50, model_kwargs={"x": x})
    assert result.samples["z"].shape == (50, 3)
    assert result.samples["c"].shape == (50,)
    assert result.samples["z"].dtype == np.int64


def test_program_with_python_control_flow_on_values_runs_eagerly():
    def branchy(p=0.3):
        probs = jnp.array([p, 1 - p]) if p < 0.5 else jnp.array([0.5, 0.5])  # not traceable by jit
        c = numpyro.sample("c", dist.Categorical(probs))
        numpyro.sample("y", dist.Bernoulli(jnp.array([0.9, 0.2])[c]), obs=1.0)

    result = exact.marginals(branchy, model_kwargs={"p": 0.3})
    joint = np.array([0.3 * 0.9, 0.7 * 0.2])
    np.testing.assert_allclose(result.marginals["c"], joint / joint.sum(), atol=1e-12)
    assert result.log_evidence == pytest.approx(np.log(joint.sum()), abs=1e-12)


def test_continuous_latent_site_is_refused():
    def model():
        loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(loc, 1.0), obs=0.3)

    with pytest.raises(ModelError, match="'loc'"):
        exact.marginals(model)
    # observed, the site is no latent any more
    assert exact.log_evidence(model, {"loc": 0.0}).log_evidence == pytest.approx(
        float(dist.Normal(0.0, 1.0).log_prob(0.0) + dist.Normal(0.0, 1.0).log_prob(0.3)), abs=1e-12
    )


@pytest.mark.filterwarnings("ignore:Out-of-support values")  # NumPyro's own warning, before ours
def test_site_evidence_outside_support_is_refused():
    with pytest.raises(EvidenceError, match="'rain'"):
        exact.marginals(sprinkler, {"rain": 5})


# ============================================================================ pgmpy
EVIDENCE_SETS = {
    "asia": [{}, {"xray": "yes"}, {"dysp": "yes", "smoke": "no"}, {"asia": "yes", "xray": "no", "dysp": "yes"}],
    "alarm": [{"HISTORY": "TRUE", "CVP": "HIGH", "EXPCO2": "ZERO", "SAO2": "LOW"}],
    "child": [{"LowerBodyO2": "<5", "RUQO2": "12+"}, {"CO2Report": ">=7.5", "XrayReport": "Oligaemic"}],
}


@pytest.mark.parametrize("name", sorted(EVIDENCE_SETS))
def test_marginals_equal_pgmpy_variable_elimination(name):
    from pgmpy.inference import VariableElimination

    model, graph = pgmpy_network(name)
    peer = VariableElimination(model)
    for evidence in EVIDENCE_SETS[name]:
        ours = exact.marginals(graph, evidence)
        query = [v for v in graph.variables if v not in evidence]
        for v in query:  # one variable at a time: pgmpy's multi-variable query builds the joint
            theirs = peer.query([v], evidence=evidence or None, show_progress=False)
            expected = np.array([theirs.get_value(**{v: s}) for s in graph.states[v]])
            np.testing.assert_allclose(ours.marginals[v], expected, rtol=0, atol=1e-9)
        if evidence:
            p_e = peer.query(list(evidence), joint=True, show_progress=False).get_value(**evidence)
            assert ours.log_evidence == pytest.approx(np.log(p_e), abs=1e-9)


def test_bayesnet_class_gives_the_same_answers():
    from pgm import bayesnet
    from genzoo.data import bn_network_path

    bn = bayesnet.BayesNet.from_bif(bn_network_path("asia"))
    _, graph = pgmpy_network("asia")
    evidence = {"dysp": "yes", "smoke": "no"}
    ours = exact.marginals(bn, evidence)
    reference = exact.marginals(graph, evidence)
    for v in reference.marginals:
        order = [bn.states[v].index(s) for s in graph.states[v]]
        np.testing.assert_allclose(ours.marginals[v][order], reference.marginals[v], atol=1e-12)


# ============================================================================ samples
def test_exact_samples_follow_the_exact_marginals():
    """Frequencies of n draws within 5 binomial standard deviations of the exact marginals
    (a false alarm per state has probability 6e-7), evidence variables constant, no draw
    on a zero of the joint."""
    rng = np.random.default_rng(7)
    graph = random_bayes_net(rng, n_vars=8)
    draw = forward_sample(graph, rng)
    evidence = {graph.variables[-1]: draw[graph.variables[-1]], graph.variables[3]: draw[graph.variables[3]]}
    n = 4000
    result = exact.sample(graph, jax.random.key(11), n, evidence)
    marg = exact.marginals(graph, evidence).marginals
    assert set(result.samples) == set(graph.variables)
    for v, k in evidence.items():
        assert np.all(result.samples[v] == k)
    for v, p in marg.items():
        freq = np.bincount(result.samples[v], minlength=len(p)) / n
        assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (v, freq, p)
    joint = np.stack([result.samples[v] for v in graph.variables], axis=1)
    logs = [log_joint_at(graph, dict(zip(graph.variables, row))) for row in joint[:200]]
    assert np.all(np.isfinite(logs))
    # pairs too: the joint of two free variables, against brute force
    a, b = [v for v in graph.variables if v not in evidence][:2]
    logj = joint_log_table(graph)
    for v, k in evidence.items():
        logj = np.take(logj, [k], axis=graph.variables.index(v))
    p = np.exp(logj - logj.max())
    ia, ib = graph.variables.index(a), graph.variables.index(b)
    pair = p.sum(axis=tuple(i for i in range(p.ndim) if i not in (ia, ib)))
    pair = pair / pair.sum()
    counts = np.zeros_like(pair)
    np.add.at(counts, (result.samples[a], result.samples[b]), 1)
    assert np.all(np.abs(counts / n - pair) <= 5 * np.sqrt(pair * (1 - pair) / n) + 1e-12)


def test_samples_depend_on_the_key_only():
    rng = np.random.default_rng(2)
    graph = random_bayes_net(rng)
    one = exact.sample(graph, jax.random.key(5), 20).samples
    two = exact.sample(graph, jax.random.key(5), 20).samples
    three = exact.sample(graph, jax.random.key(6), 20).samples
    assert all(np.array_equal(one[v], two[v]) for v in graph.variables)
    assert any(not np.array_equal(one[v], three[v]) for v in graph.variables)


# ============================================================================ family posteriors
def test_family_posteriors_match_brute_force():
    rng = np.random.default_rng(4)
    graph = random_bayes_net(rng, n_vars=6)
    ev_vars = (graph.variables[1], graph.variables[4])
    rows = np.array([[forward_sample(graph, rng)[v] for v in ev_vars] for _ in range(5)])
    logp, posts = exact.family_posteriors(graph, ev_vars, rows)
    assert logp.shape == (5,)
    assert [p.shape for p in posts] == [(5,) + f.log_table.shape for f in graph.factors]
    variables = graph.variables
    for b, row in enumerate(rows):
        logj = joint_log_table(graph)
        for v, k in zip(ev_vars, row):
            axis = variables.index(v)
            mask = np.full(logj.shape[axis], -np.inf)
            mask[k] = 0.0
            logj = logj + mask.reshape([-1 if a == axis else 1 for a in range(logj.ndim)])
        top = logj.max()
        p = np.exp(logj - top)
        assert logp[b] == pytest.approx(np.log(p.sum()) + top, abs=1e-12)
        p /= p.sum()
        for f, post in zip(graph.factors, posts):
            axes = [variables.index(v) for v in f.scope]
            expected = p.sum(axis=tuple(a for a in range(p.ndim) if a not in axes))
            expected = np.transpose(expected, np.argsort(np.argsort(axes)))
            np.testing.assert_allclose(post[b], expected, atol=1e-12)


def test_family_posteriors_name_the_zero_probability_row():
    states = {"a": ("0", "1"), "b": ("0", "1")}
    graph = FactorGraph(
        states, [Factor(("a",), np.log([0.5, 0.5])), Factor(("a", "b"), _log([[1.0, 0.0], [1.0, 0.0]]))], directed=True
    )
    with pytest.raises(EvidenceError, match="row 1"):
        exact.family_posteriors(graph, ("b",), np.array([[0], [1], [0]]))
    with pytest.raises(EvidenceError, match="out of range"):
        exact.family_posteriors(graph, ("b",), np.array([[0], [2]]))


# ============================================================================ caching
def test_new_evidence_values_and_new_tables_reuse_the_plan(monkeypatch):
    calls = []
    planner = layouts.plan_contraction
    monkeypatch.setattr(layouts, "plan_contraction", lambda *a, **k: calls.append(a) or planner(*a, **k))
    rng = np.random.default_rng(9)
    graph = random_bayes_net(rng, n_vars=7, max_parents=2)
    a, b = graph.variables[2], graph.variables[5]
    first = exact.marginals(graph, {a: 0, b: 0})
    planned, programs = len(calls), exact._program.cache_info().misses
    for k in range(1, 3):
        exact.marginals(graph, {a: k % len(graph.states[a]), b: k % len(graph.states[b])})
    # new CPT values, same structure
    other = random_bayes_net(np.random.default_rng(9), n_vars=7, max_parents=2, zeros=0.0)
    assert other.signature() == graph.signature()
    second = exact.marginals(other, {a: 0, b: 0})
    assert len(calls) == planned
    assert exact._program.cache_info().misses == programs
    assert not np.allclose(first.marginals[graph.variables[0]], second.marginals[graph.variables[0]])
    # another set of evidence *names* is another plan
    exact.marginals(graph, {a: 0})
    assert len(calls) == planned + 1


# ============================================================================ errors
def small_net():
    states = {"rain": ("no", "yes"), "wet": ("no", "yes")}
    return FactorGraph(
        states,
        [Factor(("rain",), np.log([0.8, 0.2])), Factor(("rain", "wet"), _log([[1.0, 0.0], [0.2, 0.8]]))],
        directed=True,
    )


def test_bad_evidence_raises_typed_errors_naming_the_culprit():
    graph = small_net()
    with pytest.raises(EvidenceError, match="'snow'"):
        exact.marginals(graph, {"snow": "yes"})
    with pytest.raises(EvidenceError, match="'maybe'.*'wet'"):
        exact.marginals(graph, {"wet": "maybe"})
    with pytest.raises(EvidenceError, match="index 2 of variable 'wet'"):
        exact.map(graph, {"wet": 2})
    for query in (exact.marginals, exact.log_evidence, exact.map):
        with pytest.raises(EvidenceError, match="probability zero"):
            query(graph, {"rain": "no", "wet": "yes"})
    with pytest.raises(EvidenceError, match="probability zero"):
        exact.sample(graph, jax.random.key(0), 3, {"rain": "no", "wet": "yes"})


def test_memory_budget_names_the_size_and_the_alternatives():
    rng = np.random.default_rng(1)
    graph = random_bayes_net(rng, n_vars=7)
    with pytest.raises(MemoryBudgetError, match=r"entries.*GiB.*inference\.bp\.loopy"):
        exact.marginals(graph, memory_budget=64)
    with pytest.raises(MemoryBudgetError):
        exact.map(graph, memory_budget=64)
    with pytest.raises(DataError, match="memory_budget"):
        exact.marginals(graph, memory_budget=-1)


def test_bad_tables_and_arguments():
    states = {"a": ("0", "1")}
    with pytest.raises(ModelError, match=r"\('a',\)"):
        exact.marginals(FactorGraph(states, [Factor(("a",), np.array([0.0, np.nan]))]))
    with pytest.raises(DataError, match="argument n"):
        exact.sample(small_net(), jax.random.key(0), 0)
    with pytest.raises(ModelError):
        exact.marginals(object())


# ============================================================================ HMM dispatch
def test_models_with_a_chain_go_to_inference_chain(monkeypatch):
    calls = []
    fake = types.ModuleType("inference.chain")
    for name in ("log_evidence", "marginals", "map", "sample"):
        fake.__dict__[name] = lambda *args, _name=name, **kwargs: calls.append((_name, args, kwargs)) or _name
    monkeypatch.setitem(sys.modules, "inference.chain", fake)
    monkeypatch.setattr(inference, "chain", fake, raising=False)

    class Chain:
        def chain(self, x, lengths=None):
            raise AssertionError("not called here")

    hmm, x = Chain(), np.zeros(5)
    assert exact.log_evidence(hmm, x) == "log_evidence"
    assert exact.marginals(hmm, x, model_kwargs={"lengths": [5]}) == "marginals"
    assert exact.map(hmm, x) == "map"
    assert exact.sample(hmm, 7, 3, x) == "sample"
    assert calls[0] == ("log_evidence", (hmm, x), {})
    assert calls[1] == ("marginals", (hmm, x), {"model_kwargs": {"lengths": [5]}})
    assert calls[3] == ("sample", (hmm, 7, 3, x), {})
    exact.marginals(hmm, x, lengths=[2, 3])
    assert calls[4] == ("marginals", (hmm, x), {"lengths": [2, 3]})
    with pytest.raises(TypeError, match="lengths"):
        exact.marginals(small_net(), lengths=[2])


def test_a_real_hmm_gets_the_chain_answers():
    from pgm import hmm as hmm_module
    from inference import chain

    hmm = hmm_module.HMM.categorical(
        np.array([0.6, 0.4]), np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([[0.9, 0.1], [0.3, 0.7]])
    )
    x = np.array([0, 1, 1, 0])
    ours, theirs = exact.log_evidence(hmm, x), chain.log_evidence(hmm, x)
    assert ours.log_evidence == theirs.log_evidence
    # brute force over the 16 hidden paths
    total = 0.0
    for z in itertools.product(range(2), repeat=4):
        p = [0.6, 0.4][z[0]] * [[0.9, 0.1], [0.3, 0.7]][z[0]][x[0]]
        for t in range(1, 4):
            p *= [[0.7, 0.3], [0.2, 0.8]][z[t - 1]][z[t]] * [[0.9, 0.1], [0.3, 0.7]][z[t]][x[t]]
        total += p
    assert ours.log_evidence == pytest.approx(np.log(total), abs=1e-12)
