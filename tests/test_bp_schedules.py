"""Loopy BP's schedules (inference.bp_schedules through inference.bp.loopy).

Oracles: enumeration on trees (every schedule is exact there), flooding's own fixed point on
loopy graphs (every schedule's fixed points are the Bethe stationary points), and a checked
period-2 oscillation of flooding on a frustrated graph where the other schedules converge.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import inference  # noqa: F401  (float64)
from inference import bp
from inference.errors import DataError
from inference.factors import Factor, FactorGraph
from test_bp import GRAPH_EVIDENCE, brute_force, max_error, random_graph, random_tree

SCHEDULES = ("flooding", "sequential", "residual")


def ising(edges, couplings, fields):
    """p(s) ∝ exp(sum_k J_k s_i s_j + sum_i h_i s_i) over spins s in {-1, +1}."""
    n = len(fields)
    spin = np.array([-1.0, 1.0])
    factors = [Factor((f"s{i}",), h * spin) for i, h in enumerate(fields)]
    factors += [Factor((f"s{i}", f"s{j}"), J * np.outer(spin, spin)) for (i, j), J in zip(edges, couplings)]
    return FactorGraph({f"s{i}": ("-", "+") for i in range(n)}, factors)


@pytest.mark.parametrize("evidence", [None, {"t2": 1, "u": "c"}])
def test_every_schedule_is_exact_on_trees(evidence):
    """On a tree the messages reach their exact values after finitely many updates, so once a
    schedule stops the beliefs are exact up to float64 rounding (measured 1e-15; 1e-12 allows
    a thousand roundings)."""
    tree = random_tree(4)
    log_z, marginals, best, best_value = brute_force(tree, evidence)
    for schedule in SCHEDULES:
        result = bp.loopy(tree, evidence, schedule=schedule)
        assert result.diagnostics["converged"] and result.diagnostics["schedule"] == schedule
        assert len(result.diagnostics["max_residual"]) == result.diagnostics["iterations"]
        assert max_error(result.marginals, marginals) < 1e-12
        assert result.log_evidence == pytest.approx(log_z, abs=1e-12)
        decoded = bp.loopy(tree, evidence, mode="max", schedule=schedule)
        assert decoded.map == best
        assert decoded.diagnostics["log_joint"] == pytest.approx(best_value, abs=1e-12)


def test_every_schedule_reaches_flooding_fixed_point_on_a_loopy_graph():
    """Undamped and damped, every schedule converges here to flooding's fixed point.

    Tolerance: each run stops once no message moves (residual: would move) by more than
    tol = 1e-12; with successive residuals shrinking by a factor rho (asserted below to be
    <= 0.95), the messages are within tol / (1 - rho) <= 2e-11 of the fixed point; a belief is a
    normalised product of at most five messages here, so two runs' beliefs differ by at most
    about 2 * 5 * 2e-11 = 2e-10, and the Bethe log Z (a sum over factors and variables of
    bounded terms) likewise within 1e-9."""
    graph, evidence = random_graph(1), GRAPH_EVIDENCE[1]
    reference = bp.loopy(graph, evidence, tol=1e-12, max_iter=1000)
    assert reference.diagnostics["converged"]
    for schedule, damping in itertools.product(SCHEDULES, (0.0, 0.5)):
        result = bp.loopy(graph, evidence, schedule=schedule, damping=damping, tol=1e-12, max_iter=1000)
        history = result.diagnostics["max_residual"]
        assert result.diagnostics["converged"]
        if schedule != "residual":  # (a residual round's entry is its largest pending change, not its last)
            assert history[-1] <= 1e-12
        rho = np.max(history[-4:][1:] / history[-4:][:-1])
        assert rho <= 0.95, (schedule, damping, rho)
        assert max_error(result.marginals, reference.marginals) < 2e-10
        assert result.log_evidence == pytest.approx(reference.log_evidence, abs=1e-9)


def test_sequential_and_residual_converge_where_flooding_oscillates():
    """An antiferromagnetic Ising model on K4 (frustrated: every triangle), J = -0.6, small fields.
    Flooding falls into a period-2 oscillation (checked: the beliefs after n and n + 2
    iterations agree to rounding, after n and n + 1 they differ by 0.37); sequential and
    residual updates converge, and damped flooding converges, all to one fixed point
    (tolerance as in the test above)."""
    edges = list(itertools.combinations(range(4), 2))
    graph = ising(edges, [-0.6] * len(edges), [-0.2, 0.16, 0.41, -0.33])
    flooding = bp.loopy(graph, tol=1e-12, max_iter=300)
    assert not flooding.diagnostics["converged"] and flooding.diagnostics["iterations"] == 300
    assert np.min(flooding.diagnostics["max_residual"][-50:]) > 0.1  # it is not just slow
    # measured: after 1000 iterations the orbit is a 2-cycle to rounding (1e-14 between n and n + 2),
    # its two points 0.37 apart
    a, b, c = (bp.loopy(graph, tol=0.0, max_iter=n) for n in (1000, 1001, 1002))
    assert max_error(a.marginals, c.marginals) < 1e-12 and max_error(a.marginals, b.marginals) > 0.3
    damped = bp.loopy(graph, tol=1e-12, max_iter=1000, damping=0.5)
    assert damped.diagnostics["converged"]
    for schedule in ("sequential", "residual"):
        result = bp.loopy(graph, tol=1e-12, max_iter=1000, schedule=schedule)
        assert result.diagnostics["converged"], schedule
        assert max_error(result.marginals, damped.marginals) < 2e-10
        assert result.log_evidence == pytest.approx(damped.log_evidence, abs=1e-9)


@pytest.mark.parametrize("schedule", ["sequential", "residual"])
def test_schedule_without_convergence_says_so(schedule):
    result = bp.loopy(random_graph(1), GRAPH_EVIDENCE[1], max_iter=1, schedule=schedule)
    assert not result.diagnostics["converged"]
    assert result.diagnostics["iterations"] == 1 and len(result.diagnostics["max_residual"]) == 1
    assert result.diagnostics["max_residual"][0] > 1e-8


def test_unknown_schedule_is_a_data_error():
    with pytest.raises(DataError, match=r"schedule must be one of 'flooding', 'sequential', 'residual'; got 'random'"):
        bp.loopy(random_tree(4), schedule="random")
