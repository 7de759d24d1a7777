"""Lattice samplers (inference.checkerboard, inference.cluster) against exact marginals.

Every sampler tolerance is derived from ArviZ's effective sample size: a frequency estimate
:math:`\\hat p` of a marginal :math:`p` has standard error :math:`\\sqrt{p(1-p)/\\mathrm{ESS}}`; we
allow 5 standard errors (a two-sided 5-sigma event has probability 6e-7 per comparison, so the
~100 comparisons below fail by chance with probability < 1e-4).
"""

import jax
import networkx as nx
import numpy as np
import pytest

from inference import exact
from inference.checkerboard import checkerboard_gibbs, icm, integrated_autocorrelation_time, run
from inference.cluster import cluster_labels, swendsen_wang
from inference.errors import DataError, ModelError
from pgm.ising import Ising, Potts


def _assert_marginals_within_ess(estimate, truth, ess):
    """estimate, truth: (*shape, q); ess: (*shape,) effective sample size per site."""
    se = np.sqrt(truth * (1 - truth) / np.maximum(ess, 1.0)[..., None])
    assert np.all(ess > 100), f"too few effective draws for a check: {ess.min()}"
    bad = np.abs(estimate - truth) > 5 * se + 1e-12
    assert not bad.any(), f"max |error| / se = {np.max(np.abs(estimate - truth) / (se + 1e-300)):.2f}"


def _start(key, shape, q, chains):
    return np.asarray(jax.random.randint(jax.random.key(key), (chains,) + shape, 0, q), dtype=np.int32)


def test_checkerboard_gibbs_ising_marginals():
    # a periodic antiferromagnet with a field: the sign of K and the wrap-around both matter
    rng = np.random.default_rng(0)
    model = Ising((4, 4), -0.3, rng.normal(0, 0.4, size=(4, 4)), periodic=True)
    truth = model.to_grid(exact.marginals(model).marginals)
    unary, k = model.potts_form()
    r = run(checkerboard_gibbs(unary, k, periodic=True), 1, _start(2, (4, 4), 2, 4), 3000,
            burn_in=200, num_chains=4, num_states=2)
    _assert_marginals_within_ess(r.marginals["x"], truth, r.diagnostics["ess"])


def test_checkerboard_gibbs_potts_marginals():
    # an open lattice (sites on the border have fewer neighbours) with q = 3 colours
    rng = np.random.default_rng(1)
    model = Potts((3, 3), q=3, coupling=0.8, field=rng.normal(0, 0.5, size=(3, 3, 3)))
    truth = model.to_grid(exact.marginals(model).marginals)
    unary, k = model.potts_form()
    r = run(checkerboard_gibbs(unary, k, periodic=False), 3, _start(4, (3, 3), 3, 4), 3000, burn_in=200,
            num_chains=4, num_states=3)
    _assert_marginals_within_ess(r.marginals["x"], truth, r.diagnostics["ess"])


@pytest.mark.parametrize("model", [
    Ising((4, 4), 0.44, 0.0, periodic=True),  # the critical coupling of the infinite lattice
    Potts((3, 3), q=3, coupling=1.0, field=np.random.default_rng(2).normal(0, 0.5, (3, 3, 3))),
])
def test_swendsen_wang_marginals(model):
    truth = model.to_grid(exact.marginals(model).marginals).reshape(model.num_nodes, model.q)
    unary, k = model.potts_form()
    kernel = swendsen_wang(unary.reshape(model.num_nodes, model.q), model.edges, k)
    r = run(kernel, 5, _start(6, (model.num_nodes,), model.q, 4), 2500, burn_in=100, num_chains=4,
            num_states=model.q)
    _assert_marginals_within_ess(r.marginals["x"], truth, r.diagnostics["ess"])


def test_cluster_labels_equal_connected_components():
    rng = np.random.default_rng(3)
    g = nx.gnm_random_graph(60, 80, seed=4)
    edges = np.asarray(g.edges(), dtype=np.int32)
    bonded = rng.random(len(edges)) < 0.7
    labels, rounds = jax.jit(cluster_labels, static_argnums=2)(bonded, edges, 60)
    labels = np.asarray(labels)
    h = nx.Graph()
    h.add_nodes_from(range(60))
    h.add_edges_from(edges[bonded].tolist())
    for component in nx.connected_components(h):
        members = sorted(component)
        assert len(set(labels[members])) == 1 and labels[members[0]] in component
    assert len(set(labels.tolist())) == nx.number_connected_components(h)


def test_swendsen_wang_decorrelates_faster_than_gibbs_near_critical():
    # 12 x 12 torus at J = 0.44: |m| of SW decorrelates in a few steps, Gibbs in tens of sweeps
    model = Ising((12, 12), 0.44, periodic=True)
    unary, k = model.potts_form()
    x0 = np.zeros((2, 12, 12), dtype=np.int32)
    absm = lambda x: jax.numpy.abs(jax.numpy.mean(2.0 * x - 1.0))  # noqa: E731
    g = run(checkerboard_gibbs(unary, k, periodic=True), 7, x0, 500, burn_in=50, num_chains=2, statistic=absm)
    sw = run(swendsen_wang(unary.reshape(-1, 2), model.edges, k), 8, x0.reshape(2, -1), 500, burn_in=50,
             num_chains=2, statistic=lambda x: absm(x))
    tau_g = integrated_autocorrelation_time(g.samples["statistic"].reshape(2, -1))
    tau_sw = integrated_autocorrelation_time(sw.samples["statistic"].reshape(2, -1))
    assert tau_sw < tau_g / 2, (tau_sw, tau_g)  # see the measured values printed by the Onsager example


def test_icm_reaches_a_local_maximum_and_the_map_with_a_strong_field():
    rng = np.random.default_rng(9)
    model = Ising((3, 4), 0.5, rng.normal(0, 1.5, size=(3, 4)))
    unary, k = model.potts_form()
    r = icm(unary, k, np.zeros((3, 4), dtype=np.int32), periodic=False)
    x = r.map["x"]
    assert r.diagnostics["converged"]
    assert np.all(np.diff(r.history) >= -1e-12)  # each conditional argmax cannot lower log p~
    best = model.log_potential(x)
    for i in range(3):
        for j in range(4):  # no single flip improves: a local maximum
            y = x.copy()
            y[i, j] = 1 - y[i, j]
            assert model.log_potential(y) <= best + 1e-12
    strong = Ising((3, 4), 0.2, 3.0 * np.sign(rng.normal(size=(3, 4))))
    unary, k = strong.potts_form()
    x = icm(unary, k, np.zeros((3, 4), dtype=np.int32), periodic=False).map["x"]
    m = exact.map(strong).map
    np.testing.assert_array_equal(x.ravel(), [m[n] for n in strong.names])


def test_sampler_bad_input():
    unary, k = Ising((3, 3), 0.4, periodic=True).potts_form()
    with pytest.raises(ModelError, match=r"periodic checkerboard needs even sides \(side 0 is 3\)"):
        checkerboard_gibbs(unary, k, periodic=True)
    with pytest.raises(ModelError, match=r"K >= 0"):
        swendsen_wang(unary.reshape(9, 2), Ising((3, 3), 0.4).edges, -1.0)
    with pytest.raises(ModelError, match=r"unary entry \(0, 0, 1\) is nan"):
        bad = unary.copy()
        bad[0, 0, 1] = np.nan
        checkerboard_gibbs(bad, k, periodic=False)
    kernel = checkerboard_gibbs(unary, k, periodic=False)
    with pytest.raises(DataError, match=r"initial state must have shape \(3, 3\)"):
        kernel.init(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(DataError, match=r"state indices in 0..1"):
        kernel.init(np.full((3, 3), 2, dtype=np.int32))
    with pytest.raises(DataError, match=r"must exceed burn_in"):
        run(kernel, 0, np.zeros((3, 3), dtype=np.int32), 10, burn_in=10)


def test_uniform_bits_are_threefry_with_both_words():
    """The oracle is JAX itself: its pre-partitionable threefry scheme draws the same words."""
    from inference.checkerboard import uniform_bits

    for key in (jax.random.key(5), jax.random.PRNGKey(5)):
        for shape in ((4, 6), (3, 5)):  # an even and an odd number of words
            with jax.threefry_partitionable(False):
                expected = jax.random.bits(key, shape, dtype=np.uint32)
            np.testing.assert_array_equal(np.asarray(uniform_bits(key, shape)), np.asarray(expected))
    rbg = jax.random.key(5, impl="rbg")  # another key type: its own generator
    expected = jax.random.bits(rbg, (3, 5), dtype=np.uint32)
    np.testing.assert_array_equal(np.asarray(uniform_bits(rbg, (3, 5))), np.asarray(expected))


@pytest.mark.parametrize("periodic", [False, True])
def test_checkerboard_sweep_equals_a_numpy_sweep_on_the_same_uniforms(periodic):
    """One Ising sweep (black sites, then white sites given the new black ones) recomputed in
    float64 NumPy from the same 23-bit uniforms: the states agree site for site. (They could
    differ only where a uniform lies within float32 rounding, ~1e-7, of its probability: about
    60 * 1e-7 chance for this fixed key, and the key is fixed.)"""
    from inference.checkerboard import checkerboard_step, uniform_bits

    shape = (4, 6) if periodic else (5, 6)
    field = np.linspace(-0.5, 0.7, np.prod(shape)).reshape(shape)
    unary, k = Ising(shape, 0.35, field=field, periodic=periodic).potts_form()
    kernel = checkerboard_gibbs(unary, k, periodic=periodic)
    x0 = _start(9, shape, 2, 1)[0]
    key = jax.random.key(11)
    new, info = jax.jit(kernel.step)(key, kernel.init(x0))
    u = (np.asarray(uniform_bits(key, shape)) >> 9) * 2.0**-23
    x = x0.copy()
    black = np.indices(shape).sum(axis=0) % 2 == 1  # odd sites first, as inference.checkerboard.colours
    for colour in (black, ~black):
        s = np.pad(2.0 * x - 1.0, 1, mode="wrap" if periodic else "constant")  # outside an open grid: 0
        nb = s[:-2, 1:-1] + s[2:, 1:-1] + s[1:-1, :-2] + s[1:-1, 2:]
        logit = unary[..., 1] - unary[..., 0] + k * nb  # K = 2J in the Potts form: K (n_up - n_down)
        x = np.where(colour, (u < 1.0 / (1.0 + np.exp(-logit))).astype(np.int32), x)
    np.testing.assert_array_equal(np.asarray(new.x), x)
    assert float(info.changed) == np.mean(x != x0)
    assert checkerboard_step is kernel.step.func
