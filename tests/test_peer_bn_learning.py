"""EM with fixed / started tables and available-case maximum likelihood (issue 20).

Oracles: pgmpy's maximum-likelihood estimator with ``complete_samples_only=False`` on the same
data; hand counts; for EM, brute-force enumeration of :math:`p(x_{\\text{mis}} \\mid x_{\\text{obs}})`
per row (the fixed point of EM: the free tables equal their normalised expected counts) and the
log-likelihood of the data by enumeration. Tolerances: counts are sums of <= 200 terms in
[0, 1], float64 rounding ~1e-13; EM stops at ``tol`` = 1e-12 per row, so the fixed-point
residual is bounded by 1e-6 (the map's contraction makes the table error of that order).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from inference.errors import UnknownNameError
from pgm import bn_learning
from pgm.bayesnet import BayesNet

STATES = {"a": ("0", "1"), "b": ("0", "1", "2"), "c": ("0", "1")}
PARENTS = {"a": (), "b": ("a",), "c": ("b",)}


def network(seed=0):
    rng = np.random.default_rng(seed)
    cpts = {"a": rng.dirichlet([2, 2]), "b": rng.dirichlet([2, 2, 2], size=2), "c": rng.dirichlet([2, 2], size=3)}
    return BayesNet(STATES, PARENTS, cpts)


def rows_with_missing(n=120, seed=1):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    b = np.minimum(a + rng.integers(0, 2, n), 2)
    c = (b > 0).astype(int) ^ (rng.random(n) < 0.2)
    rows = np.stack([a, b, c], axis=1)
    rows[rng.random(n) < 0.3, 1] = -1  # b missing in ~30% of the rows
    rows[rng.random(n) < 0.1, 0] = -1
    return rows


def enumerate_posteriors(bn, rows):
    """Expected family counts and log p(data) by enumerating the missing cells of every row."""
    counts = {v: np.zeros(np.shape(bn.cpt(v))) for v in bn.variables}
    loglik = 0.0
    for row in rows:
        fills, weights = [], []
        for values in itertools.product(*[range(len(STATES[v])) for v in ("a", "b", "c")]):
            if any(row[j] >= 0 and row[j] != values[j] for j in range(3)):
                continue
            x = dict(zip(("a", "b", "c"), values))
            p = bn.cpt("a")[x["a"]] * bn.cpt("b")[x["a"], x["b"]] * bn.cpt("c")[x["b"], x["c"]]
            fills.append(x)
            weights.append(p)
        total = sum(weights)
        loglik += np.log(total)
        for x, w in zip(fills, weights):
            counts["a"][x["a"]] += w / total
            counts["b"][x["a"], x["b"]] += w / total
            counts["c"][x["b"], x["c"]] += w / total
    return counts, loglik


def test_available_case_counts_each_family_on_its_observed_rows():
    bn = network()
    rows = rows_with_missing()
    fitted = bn_learning.available_case_cpts(bn, rows)
    ok = (rows[:, 0] >= 0) & (rows[:, 1] >= 0)
    expected = np.zeros((2, 3))
    np.add.at(expected, (rows[ok, 0], rows[ok, 1]), 1.0)
    np.testing.assert_allclose(fitted.cpt("b"), expected / expected.sum(axis=1, keepdims=True), rtol=1e-13)
    a = rows[rows[:, 0] >= 0, 0]
    np.testing.assert_allclose(fitted.cpt("a"), np.bincount(a, minlength=2) / a.size, rtol=1e-13)


def test_available_case_equals_pgmpy_mle_on_data_with_nan_cells():
    """pgmpy 1.x counts each family on the rows where it has no NaN (its documented
    ``complete_samples_only=False``, now the only behaviour)."""
    pd = pytest.importorskip("pandas")
    models = pytest.importorskip("pgmpy.models")
    estimators = pytest.importorskip("pgmpy.estimators")
    rows = rows_with_missing(seed=2)
    frame = pd.DataFrame({v: [np.nan if k < 0 else STATES[v][k] for k in rows[:, j]] for j, v in enumerate(STATES)})
    model = models.DiscreteBayesianNetwork([("a", "b"), ("b", "c")])
    mle = estimators.MaximumLikelihoodEstimator(model, frame, state_names={v: list(s) for v, s in STATES.items()})
    ours = bn_learning.available_case_cpts(network(), rows)
    for v in STATES:
        cpd = mle.estimate_cpd(v)
        theirs = cpd.get_values().T.reshape(np.shape(ours.cpt(v)))  # (parent configs, child) in C order
        np.testing.assert_allclose(ours.cpt(v), theirs, rtol=1e-8)
    complete = np.all(rows >= 0, axis=1)
    # the rows where b is missing still count for a: not the complete-case estimate
    assert not np.allclose(ours.cpt("a"), bn_learning.available_case_cpts(network(), rows[complete]).cpt("a"))


def test_em_keeps_fixed_tables_and_reaches_the_fixed_point_of_the_free_ones():
    bn = network(3)
    rows = rows_with_missing(seed=4)
    start_b = np.full((2, 3), 1.0 / 3.0) * np.array([[1.2, 1.0, 0.8], [0.7, 1.0, 1.3]])
    start_b /= start_b.sum(axis=1, keepdims=True)
    result = bn_learning.fit_em(bn, rows, start={"b": start_b}, fixed=["c"], max_iter=500, tol=1e-12)
    fitted = result.params
    np.testing.assert_array_equal(fitted.cpt("c"), bn.cpt("c"))  # held, bit for bit
    # history[0]: the log-likelihood at the start (b from start, a and c from bn), by enumeration
    _, start_ll = enumerate_posteriors(bn.with_cpts({"b": start_b}), rows)
    assert result.history[0] == pytest.approx(start_ll, rel=1e-12)
    assert np.all(np.diff(result.history) >= -1e-9 * abs(start_ll))  # EM never decreases (rounding)
    counts, loglik = enumerate_posteriors(fitted, rows)
    for v in ("a", "b"):
        expected = counts[v] / counts[v].sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(fitted.cpt(v), expected, atol=1e-6)
    assert result.log_evidence == pytest.approx(loglik, rel=1e-10)


def test_em_with_complete_data_and_fixed_tables_is_one_closed_form_step():
    bn = network(5)
    rows = np.abs(rows_with_missing(seed=6))
    rows[rows > 2] = 2
    rows[:, 0] = np.minimum(rows[:, 0], 1)
    rows[:, 2] = np.minimum(rows[:, 2], 1)
    result = bn_learning.fit_em(bn, rows, fixed=["a"])
    counts = np.zeros((2, 3))
    np.add.at(counts, (rows[:, 0], rows[:, 1]), 1.0)
    np.testing.assert_allclose(result.params.cpt("b"), counts / counts.sum(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_array_equal(result.params.cpt("a"), bn.cpt("a"))
    with pytest.raises(UnknownNameError, match="zz"):
        bn_learning.fit_em(bn, rows, fixed=["zz"])
