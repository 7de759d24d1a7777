"""Lattice loopy BP and mean field (inference.lattice) against exact answers and the generic engine.

Oracles: exact log Z, marginals and MAP on chains (where BP is exact); the generic factor-graph
loopy BP (inference.bp.loopy) at the same fixed point on a torus; exact log Z as the mean-field
bound. Tolerances: fixed points reached to tol=1e-12 in probability; 1e-9 leaves room for the
residual's effect on the Bethe energy (a first-order change in messages moves it at second order).
"""

import numpy as np
import pytest

from inference import bp, exact
from inference.errors import DataError, ModelError
from inference.lattice import loopy_bp, mean_field
from pgm.ising import Ising, Potts


def test_lattice_bp_is_exact_on_a_chain():
    rng = np.random.default_rng(0)
    chain = Potts((7,), q=3, coupling=0.9, field=rng.normal(0, 1.0, (7, 3)))
    unary, k = chain.potts_form()
    r = loopy_bp(unary, k, periodic=False, tol=1e-12)
    ex = exact.marginals(chain)
    assert r.diagnostics["converged"]
    assert r.log_evidence + chain.log_z_offset == pytest.approx(ex.log_evidence, abs=1e-9)
    np.testing.assert_allclose(r.marginals["x"], chain.to_grid(ex.marginals), atol=1e-9)
    ising = Ising((8,), 0.3, rng.normal(0, 1.5, 8))
    unary, k = ising.potts_form()
    m = loopy_bp(unary, k, periodic=False, mode="max", tol=1e-12)
    best = exact.map(ising).map
    np.testing.assert_array_equal(m.map["x"], [best[n] for n in ising.names])
    assert len(set(m.map["x"].tolist())) == 2  # a MAP with both states: not a trivial check


@pytest.mark.parametrize("schedule", ["flooding", "checkerboard"])
def test_lattice_bp_matches_the_generic_engine_on_a_torus(schedule):
    rng = np.random.default_rng(1)
    model = Ising((4, 4), 0.3, rng.normal(0, 0.3, (4, 4)), periodic=True)
    unary, k = model.potts_form()
    r = loopy_bp(unary, k, periodic=True, schedule=schedule, tol=1e-12, max_iter=500)
    g = bp.loopy(model, tol=1e-12, max_iter=500)
    assert r.diagnostics["converged"] and g.diagnostics["converged"]
    assert r.log_evidence + model.log_z_offset == pytest.approx(g.log_evidence, abs=1e-9)
    np.testing.assert_allclose(r.marginals["x"], model.to_grid(g.marginals), atol=1e-9)
    if schedule == "checkerboard":  # fresh messages within an iteration: fewer iterations
        assert r.diagnostics["iterations"] < g.diagnostics["iterations"]


def test_lattice_bp_reports_non_convergence():
    model = Ising((4, 4), 1.5, 0.0, periodic=True)  # far above J_c, no damping, 3 iterations
    unary, k = model.potts_form()
    unary = unary + np.random.default_rng(2).normal(0, 0.5, unary.shape)
    r = loopy_bp(unary, k, periodic=True, max_iter=3, tol=1e-12)
    assert not r.diagnostics["converged"] and r.diagnostics["iterations"] == 3
    assert len(r.diagnostics["max_residual"]) == 3


def test_lattice_mean_field_is_a_lower_bound_and_monotone():
    rng = np.random.default_rng(3)
    model = Ising((3, 4), 0.5, rng.normal(0, 0.5, (3, 4)))
    unary, k = model.potts_form()
    r = mean_field(unary, k, periodic=False, key=0, steps=30)
    assert r.log_evidence + model.log_z_offset <= exact.log_evidence(model).log_evidence + 1e-12
    assert np.all(np.diff(r.history) >= -1e-10)  # exact coordinate updates never lower the ELBO


def test_lattice_bad_input():
    unary, k = Ising((3, 3), 0.4).potts_form()
    with pytest.raises(DataError, match=r"schedule must be 'flooding' or 'checkerboard'"):
        loopy_bp(unary, k, periodic=False, schedule="random")
    with pytest.raises(DataError, match=r"damping must lie in \[0, 1\)"):
        loopy_bp(unary, k, periodic=False, damping=1.0)
    with pytest.raises(ModelError, match=r"periodic checkerboard needs even sides"):
        loopy_bp(unary, k, periodic=True, schedule="checkerboard")
    with pytest.raises(ModelError, match=r"unary must have shape"):
        mean_field(np.zeros(3), k, periodic=False, key=0)
