"""Likelihood weighting, Gibbs sampling and mean field against brute-force enumeration.

Tolerances for the samplers come from their own sample sizes, never guessed:

- a marginal estimated from samples with effective size ESS has standard error
  :math:`\\sqrt{p(1 - p) / \\mathrm{ESS}}` (for Gibbs, the ESS of the indicator :math:`[x_v = k]`
  across chains, from ``diagnostics["ess"]``; for self-normalised likelihood weighting, Kong's
  ESS :math:`(\\sum w)^2 / \\sum w^2`); we accept 5 standard errors, so with the ~40 checks below a
  correct sampler fails with probability about 40 * 6e-7 (and the seeds are fixed);
- :math:`\\log \\hat p(e)` from likelihood weighting has delta-method standard error
  :math:`\\sqrt{1/\\mathrm{ESS} - 1/n}`; again 5 of them.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import inference  # noqa: F401  (float64)
from inference.errors import EvidenceError, ModelError
from inference.factors import Factor, FactorGraph
from inference.gibbs import gibbs
from inference.importance import likelihood_weighting
from inference.meanfield import mean_field

# helpers shared with the belief-propagation tests (pytest puts tests/ on sys.path)
from test_bp import GRAPH_EVIDENCE, brute_force, random_dag, random_graph

DAG_EVIDENCE = {"x6": "s1", "x3": "s0"}
Z_MAX = 5.0


def assert_within_standard_errors(estimate, exact, ess):
    for v, p in exact.items():
        se = np.sqrt(p * (1.0 - p) / np.asarray(ess[v] if isinstance(ess, dict) else ess))
        error = np.abs(np.asarray(estimate[v]) - p)
        assert np.all(error <= Z_MAX * se + 1e-12), (v, error, se)


# --------------------------------------------------------------------------- likelihood weighting
def test_likelihood_weighting_marginals_and_evidence():
    dag = random_dag(3)
    log_z, marginals, _, _ = brute_force(dag, DAG_EVIDENCE)
    n = 40_000
    result = likelihood_weighting(dag, jax.random.key(0), n, DAG_EVIDENCE, chunk=15_000)  # 3 chunks
    ess = result.diagnostics["ess"]
    assert 0 < ess < n
    assert result.log_evidence_kind == "estimate"
    assert_within_standard_errors(result.marginals, marginals, ess)
    se = result.diagnostics["log_evidence_se"]
    assert se == pytest.approx(np.sqrt(1 / ess - 1 / n))
    assert abs(result.log_evidence - log_z) <= Z_MAX * se
    # the key decides everything
    again = likelihood_weighting(dag, jax.random.key(0), n, DAG_EVIDENCE, chunk=15_000)
    other = likelihood_weighting(dag, jax.random.key(1), n, DAG_EVIDENCE, chunk=15_000)
    assert again.log_evidence == result.log_evidence
    assert other.log_evidence != result.log_evidence


def test_likelihood_weighting_without_evidence_is_forward_sampling():
    dag = random_dag(3)
    _, marginals, _, _ = brute_force(dag)
    n = 20_000
    result = likelihood_weighting(dag, jax.random.key(3), n)
    assert result.log_evidence == 0.0  # every weight is 1
    assert result.diagnostics["ess"] == pytest.approx(n)
    assert_within_standard_errors(result.marginals, marginals, n)


def test_likelihood_weighting_needs_a_directed_graph():
    with pytest.raises(ModelError, match="directed"):
        likelihood_weighting(random_graph(0), jax.random.key(0), 10)


def test_likelihood_weighting_zero_probability_evidence():
    with pytest.raises(EvidenceError, match="weight zero"):
        likelihood_weighting(_xor_net(p_a=(1.0, 0.0), p_b=(1.0, 0.0)), jax.random.key(0), 100, {"c": 1})


# --------------------------------------------------------------------------- Gibbs
def test_gibbs_on_a_bayes_net_with_evidence():
    dag = random_dag(3)
    _, marginals, _, _ = brute_force(dag, DAG_EVIDENCE)
    result = gibbs(dag, jax.random.key(0), 2000, DAG_EVIDENCE, chains=4, burn_in=100)
    assert set(result.samples) == set(marginals)
    for v, draws in result.samples.items():
        assert draws.shape == (4 * 2000,) and draws.dtype == np.int64
        assert draws.min() >= 0 and draws.max() < len(dag.states[v])
        assert np.all(result.diagnostics["r_hat"][v] < 1.05)
    assert_within_standard_errors(result.marginals, marginals, result.diagnostics["ess"])
    posterior = result.to_arviz().posterior
    assert posterior["x0"].shape == (4, 2000)
    # same key, same chains
    again = gibbs(dag, jax.random.key(0), 2000, DAG_EVIDENCE, chains=4, burn_in=100)
    np.testing.assert_array_equal(again.samples["x0"], result.samples["x0"])


def test_gibbs_on_an_undirected_graph_with_cycles():
    graph = random_graph(0)
    evidence = GRAPH_EVIDENCE[1]
    _, marginals, _, _ = brute_force(graph, evidence)
    result = gibbs(graph, jax.random.key(1), 1500, evidence, chains=4, burn_in=100, thin=2)
    assert result.diagnostics["num_chains"] == 4 and result.diagnostics["thin"] == 2
    assert result.diagnostics["colours"] >= 2  # the interaction graph has edges
    assert_within_standard_errors(result.marginals, marginals, result.diagnostics["ess"])


def test_gibbs_starts_from_a_possible_state_with_deterministic_factors():
    # c = a XOR b observed: Gibbs must start with a XOR b == c, and each single-site move then keeps
    # it (the chain is reducible: it never leaves its start, see the module docstring)
    result = gibbs(_xor_net(), jax.random.key(2), 50, {"c": 1}, chains=3, burn_in=5)
    np.testing.assert_array_equal(result.samples["a"] ^ result.samples["b"], 1)
    # a and b never true: c = 1 is impossible, and no start state exists
    with pytest.raises(EvidenceError, match="probability zero"):
        gibbs(_xor_net(p_a=(1.0, 0.0), p_b=(1.0, 0.0)), jax.random.key(0), 50, {"c": 1}, chains=3, burn_in=5)


# --------------------------------------------------------------------------- mean field
@pytest.mark.parametrize("evidence", GRAPH_EVIDENCE)
def test_mean_field_elbo_is_a_lower_bound(evidence):
    graph = random_graph(0)
    log_z, marginals, _, _ = brute_force(graph, evidence)
    result = mean_field(graph, evidence, key=jax.random.key(0), steps=60)
    assert result.log_evidence_kind == "lower_bound"
    assert result.log_evidence <= log_z
    history = result.history
    assert len(history) == 60 and history[-1] == result.log_evidence
    assert np.all(np.diff(history) >= -1e-10)  # coordinate ascent never lowers the ELBO
    assert set(result.marginals) == set(marginals)
    for v, q in result.marginals.items():
        assert q.sum() == pytest.approx(1.0, abs=1e-12) and np.all(q >= 0)
    # the ELBO of q recomputed independently by enumeration: E_q[log p~(x, e)] + H(q)
    assert result.log_evidence == pytest.approx(_elbo_by_enumeration(graph, evidence, result.marginals), abs=1e-10)


def _elbo_by_enumeration(graph, evidence, q):
    evidence = graph.evidence_indices(evidence)
    names = [v for v in graph.variables if v not in evidence]
    total = 0.0
    for states in np.ndindex(*[len(graph.states[v]) for v in names]):
        x = dict(zip(names, states)) | evidence
        weight = np.prod([q[v][x[v]] for v in names])
        log_joint = sum(f.log_table[tuple(x[v] for v in f.scope)] for f in graph.factors)
        total += weight * (log_joint - np.sum([np.log(q[v][x[v]]) for v in names]))
    return total


def test_mean_field_is_exact_on_a_fully_factorised_model():
    rng = np.random.default_rng(5)
    states = {f"u{i}": tuple("abc"[: rng.integers(2, 4)]) for i in range(4)}
    graph = FactorGraph(states, [Factor((v,), rng.normal(size=len(s))) for v, s in states.items()]
                        + [Factor(("u0",), rng.normal(size=len(states["u0"])))])
    log_z, marginals, _, _ = brute_force(graph)
    for method in ("cavi", "adam"):
        result = mean_field(graph, key=jax.random.key(1), method=method, steps=3 if method == "cavi" else 1500)
        assert result.log_evidence == pytest.approx(log_z, abs=1e-10 if method == "cavi" else 1e-6)
        tol = 1e-12 if method == "cavi" else 1e-4
        for v, q in result.marginals.items():
            np.testing.assert_allclose(q, marginals[v], atol=tol)


def _cavi_update_by_enumeration(graph, evidence, q):
    """The mean-field fixed-point map computed over the whole joint: for each variable,
    q_v(x_v) proportional to exp E_{q_-v}[sum of the log-factors that hold v]."""
    evidence = graph.evidence_indices(evidence)
    names = [v for v in graph.variables if v not in evidence]
    updated = {}
    for v in names:
        logits = np.zeros(len(graph.states[v]))
        for states in np.ndindex(*[len(graph.states[u]) for u in names]):
            x = dict(zip(names, states)) | evidence
            weight = np.prod([q[u][x[u]] for u in names if u != v])
            logits[x[v]] += weight * sum(f.log_table[tuple(x[u] for u in f.scope)] for f in graph.factors
                                         if v in f.scope)
        updated[v] = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return updated


def test_mean_field_adam_agrees_with_cavi_and_rejects_zeros():
    dag = random_dag(3)
    log_z, _, _, _ = brute_force(dag, DAG_EVIDENCE)
    # the same key gives both optimisers the same random start, so they climb to the same optimum
    adam = mean_field(dag, DAG_EVIDENCE, key=jax.random.key(0), method="adam", steps=800, learning_rate=0.1)
    cavi = mean_field(dag, DAG_EVIDENCE, key=jax.random.key(0), method="cavi", steps=100)
    assert (adam.diagnostics["method"], cavi.diagnostics["method"]) == ("adam", "cavi")
    assert adam.log_evidence <= log_z
    # Both are fixed points of the CAVI map computed by enumeration, and the same one. Adam
    # converges linearly: measured distance to CAVI's optimum 4e-10 after 400 steps, 2e-16 (one
    # ulp of a probability) after 800; 1e-12 allows rounding in the contractions, and the ELBO,
    # flat at the optimum (second order in q), then agrees to the same 1e-12.
    for result in (adam, cavi):
        fixed = _cavi_update_by_enumeration(dag, DAG_EVIDENCE, result.marginals)
        for v, q in result.marginals.items():
            np.testing.assert_allclose(q, fixed[v], rtol=0, atol=1e-12)
            np.testing.assert_allclose(q, cavi.marginals[v], rtol=0, atol=1e-12)
    assert adam.log_evidence == pytest.approx(cavi.log_evidence, abs=1e-12)
    with pytest.raises(ModelError, match="zero entries"):
        mean_field(_xor_net(), key=jax.random.key(0), method="adam")


def _xor_net(p_a=(0.3, 0.7), p_b=(0.6, 0.4)):
    """c = a XOR b, a deterministic CPT."""
    states = {v: ("0", "1") for v in "abc"}
    xor = np.zeros((2, 2, 2))
    for a in range(2):
        for b in range(2):
            xor[a, b, a ^ b] = 1.0
    with np.errstate(divide="ignore"):
        factors = [Factor(("a",), np.log(p_a)), Factor(("b",), np.log(p_b)), Factor(("a", "b", "c"), np.log(xor))]
    return FactorGraph(states, factors, directed=True)


def test_mean_field_with_deterministic_factors_starts_from_a_configuration():
    graph = _xor_net()
    log_z, _, _, _ = brute_force(graph, {"c": 1})
    result = mean_field(graph, {"c": 1}, key=jax.random.key(0), steps=10)
    assert result.diagnostics["initial"] == "configuration"
    assert np.isfinite(result.log_evidence) and result.log_evidence <= log_z
    # from a point mass on a possible (a, b) CAVI cannot move (the other value of either variable
    # has probability zero given the other's point mass): q stays a point mass, ELBO = log p(a, b, c)
    a, b = (int(np.argmax(result.marginals[v])) for v in "ab")
    assert a ^ b == 1
    np.testing.assert_array_equal(result.marginals["a"], np.eye(2)[a])
    assert result.log_evidence == pytest.approx(np.log([0.3, 0.7][a] * [0.6, 0.4][b]), abs=1e-12)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("method", ["lw", "gibbs", "mean_field"])
def test_bad_evidence_raises_evidence_error(method):
    dag = random_dag(3)
    call = {
        "lw": lambda e: likelihood_weighting(dag, jax.random.key(0), 10, e),
        "gibbs": lambda e: gibbs(dag, jax.random.key(0), 10, e),
        "mean_field": lambda e: mean_field(dag, e, key=jax.random.key(0)),
    }[method]
    with pytest.raises(EvidenceError, match="nowhere"):
        call({"nowhere": 0})
    with pytest.raises(EvidenceError, match="s7"):
        call({"x0": "s7"})
    with pytest.raises(EvidenceError, match="out of range"):
        call({"x0": -1})
