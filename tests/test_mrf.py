"""Markov random fields (pgm.mrf, pgm.ising, pgm.rbm) through the existing exact engine.

Oracles: brute-force enumeration of the whole joint; a transfer-matrix computation of log Z for a
torus and a strip; closed forms for chains and disconnected pieces; junction tree and loopy BP on
trees. Tolerances: the exact engine and the oracles both sum at most 2^16 positive terms in float64
(relative rounding ~1e-16 per operation), so 1e-9 leaves a wide margin.
"""

import itertools

import jax
import networkx as nx
import numpy as np
import pytest
from numpyro.infer.util import log_density

from inference import bp, exact
from inference.errors import DataError, EvidenceError, ModelError
from inference.meanfield import mean_field
from pgm.ising import Ising, Potts
from pgm.mrf import MarkovNet
from pgm.rbm import RBM, binary_states

TOL = 1e-9  # float64 sums of <= 2^16 terms: rounding ~1e-13 at worst


def brute_force(log_potential, cards):
    """log Z and single-site marginals by enumerating every joint state."""
    states = np.array(list(itertools.product(*(range(k) for k in cards))), dtype=np.int64)  # (S, V)
    logp = log_potential(states)  # (S,)
    top = logp.max()
    w = np.exp(logp - top)
    log_z = top + np.log(w.sum())
    p = w / w.sum()
    marg = [np.array([p[states[:, v] == k].sum() for k in range(c)]) for v, c in enumerate(cards)]
    return log_z, marg


def transfer_matrix_log_z(coupling, field, rows, cols, periodic):
    """log Z of an Ising model on a rows x cols grid by a transfer matrix over one row's 2^cols
    configurations: Z = trace(T^rows) on a torus, 1' D (T)^{rows-1} 1 with D the row weight otherwise."""
    s = 2 * binary_states(cols) - 1  # (R, cols) spins
    within = s[:, :-1] * s[:, 1:]
    row_energy = coupling * within.sum(1) + field * s.sum(1)
    if periodic and cols > 2:
        row_energy += coupling * s[:, -1] * s[:, 0]
    elif periodic and cols == 2:
        row_energy += coupling * s[:, 1] * s[:, 0]
    between = coupling * s @ s.T  # (R, R) vertical bonds
    half = np.exp(0.5 * row_energy)
    t = half[:, None] * np.exp(between) * half[None, :]  # symmetric transfer matrix
    eig = np.linalg.eigvalsh(t)
    if periodic:
        top = eig.max()
        return rows * np.log(top) + np.log(np.sum((eig / top) ** rows))
    vec = half.copy()  # open: Z = h' T^{rows-1} h with h = exp(row_energy / 2)
    log_scale = 0.0
    for _ in range(rows - 1):
        vec = t @ vec
        m = vec.max()
        vec /= m
        log_scale += np.log(m)
    return log_scale + np.log(half @ vec)


# ============================================================================ MarkovNet
def _random_net(rng):
    states = {"a": 2, "b": 3, "c": 2, "d": ("x", "y", "z"), "e": 2}
    pots = {
        ("a", "b"): rng.gamma(1.0, size=(2, 3)),
        ("b", "c"): rng.gamma(1.0, size=(3, 2)),
        ("c", "a"): rng.gamma(1.0, size=(2, 2)),  # a loop a-b-c
        ("a", "d", "e"): rng.gamma(1.0, size=(2, 3, 2)),
        "d": rng.gamma(1.0, size=3),
    }
    pots[("a", "b")][1, 2] = 0.0  # a zero potential
    return MarkovNet(states, pots)


def test_markov_net_exact_equals_enumeration():
    net = _random_net(np.random.default_rng(0))
    cards = [len(net.states[v]) for v in net.variables]
    log_z, marg = brute_force(net.log_potential, cards)
    r = exact.marginals(net)
    assert r.log_evidence == pytest.approx(log_z, abs=TOL)
    assert exact.log_evidence(net).log_evidence == pytest.approx(log_z, abs=TOL)
    for v, m in zip(net.variables, marg):
        np.testing.assert_allclose(r.marginals[v], m, atol=TOL)
    jt = bp.junction_tree(net)
    assert jt.log_evidence == pytest.approx(log_z, abs=TOL)


def test_markov_net_program_scores_like_log_potential():
    net = _random_net(np.random.default_rng(1))
    data = np.array([[0, 1, 1, 2, 0], [1, 0, 0, 0, 1]])
    value, _ = log_density(net.model, (data,), {}, {})
    uniform = sum(np.log(len(s)) for s in net.states.values())  # the uniform sites' constant
    assert float(value) == pytest.approx(net.log_potential(data).sum() - 2 * uniform, abs=1e-9)


def test_markov_net_exact_samples_match_marginals():
    net = _random_net(np.random.default_rng(2))
    n = 20000
    draws = net.sample(jax.random.key(0), n)
    m = exact.marginals(net).marginals
    for v in net.variables:
        freq = np.bincount(draws[v], minlength=len(net.states[v])) / n
        # independent draws: standard error sqrt(p(1-p)/n) <= 0.0036; 5 standard errors
        np.testing.assert_allclose(freq, m[v], atol=5 * 0.5 / np.sqrt(n))


def test_markov_net_bad_input_names_the_culprit():
    with pytest.raises(ModelError, match=r"unknown variable 'z'"):
        MarkovNet({"a": 2}, {("a", "z"): np.ones((2, 2))})
    with pytest.raises(ModelError, match=r"shape \(2, 3\), expected \(2, 2\)"):
        MarkovNet({"a": 2, "b": 2}, {("a", "b"): np.ones((2, 3))})
    with pytest.raises(ModelError, match=r"\('a', 'b'\).*entry \(0, 1\) is -1.0"):
        MarkovNet({"a": 2, "b": 2}, {("a", "b"): [[1.0, -1.0], [1.0, 1.0]]})
    with pytest.raises(ModelError, match=r"entry \(1,\) is nan"):
        MarkovNet({"a": 2}, {"a": [1.0, np.nan]})
    with pytest.raises(ModelError, match=r"entry \(0,\) is inf"):
        MarkovNet({"a": 2}, {"a": [np.inf, 0.0]}, log=True)
    with pytest.raises(ModelError, match=r"'a' must have at least one state"):
        MarkovNet({"a": 0}, {})
    net = MarkovNet({"a": 2, "b": 2}, {("a", "b"): np.ones((2, 2))})
    with pytest.raises(EvidenceError, match=r"unknown variable 'c'"):
        exact.marginals(net, {"c": 0})
    with pytest.raises(DataError, match=r"'b' must be integer state indices"):
        net.log_potential({"a": 0, "b": 5})


def test_markov_net_from_graph_equals_ising():
    # e^{J s s'} on every edge of a networkx graph is the Ising model on it
    g = nx.petersen_graph()
    j = 0.3
    net = MarkovNet.from_graph(g, 2, np.exp([[j, -j], [-j, j]]))
    assert exact.log_evidence(net).log_evidence == pytest.approx(exact.log_evidence(Ising(g, j)).log_evidence, abs=TOL)
    with pytest.raises(ModelError, match=r"self-loop"):
        MarkovNet.from_graph(nx.Graph([(0, 0)]), 2, np.ones((2, 2)))


def test_disconnected_markov_net_and_free_variable():
    # two independent pieces and a variable in no potential: Z = Z_1 * Z_2 * 3
    net = MarkovNet({"a": 2, "b": 2, "c": 2, "d": 3}, {("a", "b"): [[1.0, 2.0], [3.0, 4.0]], "c": [1.0, 5.0]})
    assert exact.log_evidence(net).log_evidence == pytest.approx(np.log(10.0 * 6.0 * 3.0), abs=TOL)
    m = exact.marginals(net).marginals
    np.testing.assert_allclose(m["a"], [0.3, 0.7], atol=TOL)
    np.testing.assert_allclose(m["c"], [1 / 6, 5 / 6], atol=TOL)
    np.testing.assert_allclose(m["d"], np.full(3, 1 / 3), atol=TOL)


# ============================================================================ Ising / Potts
@pytest.mark.parametrize("coupling, field", [(0.3, 0.0), (0.44, 0.1), (1.0, -0.2), (-0.5, 0.3)])
def test_ising_torus_log_z_equals_transfer_matrix(coupling, field):
    model = Ising((6, 6), coupling, field, periodic=True)
    expected = transfer_matrix_log_z(coupling, field, 6, 6, periodic=True)
    # 64 x 64 eigenvalues: relative error ~1e-14 of log Z ~ 50
    assert exact.log_evidence(model).log_evidence == pytest.approx(expected, abs=1e-9)


def test_ising_strip_log_z_equals_transfer_matrix():
    model = Ising((40, 4), 0.6, 0.05, periodic=False)
    expected = transfer_matrix_log_z(0.6, 0.05, 40, 4, periodic=False)
    assert exact.log_evidence(model).log_evidence == pytest.approx(expected, abs=1e-9)


def test_ising_exact_marginals_equal_enumeration():
    rng = np.random.default_rng(3)
    for periodic, shape in ((False, (3, 3)), (True, (2, 4))):
        field = rng.normal(0, 0.5, size=shape)
        model = Ising(shape, 0.7, field, periodic=periodic)
        log_z, marg = brute_force(lambda x: model.log_potential(x.reshape((-1,) + shape)), [2] * model.num_nodes)
        r = exact.marginals(model)
        assert r.log_evidence == pytest.approx(log_z, abs=TOL)
        np.testing.assert_allclose(model.to_grid(r.marginals), np.stack(marg).reshape(shape + (2,)), atol=TOL)
        np.testing.assert_allclose(model.magnetisation(r.marginals), model.to_grid(r.marginals) @ [-1, 1], atol=TOL)


def test_ising_closed_form_chain_and_program():
    j = 0.8
    model = Ising((5,), j)  # open chain, no field: Z = 2 (2 cosh J)^4
    assert exact.log_evidence(model).log_evidence == pytest.approx(np.log(2) + 4 * np.log(2 * np.cosh(j)), abs=TOL)
    x = np.array([1, 1, 0, 1, 0])
    value, _ = log_density(model.model, (x,), {}, {})
    assert float(value) == pytest.approx(model.log_potential(x) - 5 * np.log(2), abs=1e-12)
    assert float(model.log_potential(x)) == pytest.approx(j * (1 - 1 - 1 - 1), abs=1e-12)


def test_potts_equals_enumeration_and_ising_at_q2():
    rng = np.random.default_rng(4)
    field = rng.normal(size=(2, 3, 3))
    model = Potts((2, 3), q=3, coupling=0.9, field=field)
    log_z, marg = brute_force(lambda x: model.log_potential(x.reshape(-1, 2, 3)), [3] * 6)
    r = exact.marginals(model)
    assert r.log_evidence == pytest.approx(log_z, abs=TOL)
    np.testing.assert_allclose(model.to_grid(r.marginals), np.stack(marg).reshape(2, 3, 3), atol=TOL)
    # q = 2 Potts with coupling 2J is the Ising model up to the constant J per edge
    ising, potts = Ising((3, 3), 0.4, periodic=True), Potts((3, 3), q=2, coupling=0.8, periodic=True)
    diff = exact.log_evidence(potts).log_evidence - exact.log_evidence(ising).log_evidence
    assert diff == pytest.approx(0.4 * len(ising.edges), abs=TOL)


def test_ising_on_disconnected_graph():
    # an edge (a, b), a triangle (c, d, e), an isolated node f with a field
    g = nx.Graph([("a", "b"), ("c", "d"), ("d", "e"), ("e", "c")])
    g.add_node("f")
    field = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.5])
    model = Ising(g, 0.5, field)
    edge = np.log(2 * 2 * np.cosh(0.5))  # sum over two spins of e^{J s_a s_b}
    triangle = np.log(2 * (np.exp(1.5) + 3 * np.exp(-0.5)))  # all equal: 3J; one odd out: -J (x3)
    lone = np.log(2 * np.cosh(0.5))
    r = exact.marginals(model)
    assert r.log_evidence == pytest.approx(edge + triangle + lone, abs=TOL)
    np.testing.assert_allclose(r.marginals["s[f]"], [np.exp(-0.5), np.exp(0.5)] / (2 * np.cosh(0.5)), atol=TOL)
    lbp = bp.loopy(model)  # the triangle is a loop: only the pieces without loops are exact
    np.testing.assert_allclose(lbp.marginals["s[a]"], [0.5, 0.5], atol=1e-12)


def test_loopy_bp_is_exact_on_trees():
    rng = np.random.default_rng(5)
    tree = nx.balanced_tree(2, 3)  # 15 nodes
    model = Ising(tree, 0.9, rng.normal(0, 0.7, size=tree.number_of_nodes()))
    ex = exact.marginals(model)
    lbp = bp.loopy(model, max_iter=100, tol=1e-12)
    assert lbp.diagnostics["converged"]
    assert lbp.log_evidence == pytest.approx(ex.log_evidence, abs=1e-9)  # Bethe = exact on a tree
    for v in model.names:
        np.testing.assert_allclose(lbp.marginals[v], ex.marginals[v], atol=1e-9)
    potts = Potts(nx.path_graph(6), q=3, coupling=-0.7, field=rng.normal(size=(6, 3)))
    ex, lbp = exact.marginals(potts), bp.loopy(potts, tol=1e-12)
    assert lbp.log_evidence == pytest.approx(ex.log_evidence, abs=1e-9)
    for v in potts.names:
        np.testing.assert_allclose(lbp.marginals[v], ex.marginals[v], atol=1e-9)


@pytest.mark.parametrize("coupling", [0.2, 0.44, 0.8])
def test_mean_field_log_z_is_below_exact(coupling):
    model = Ising((4, 4), coupling, 0.05, periodic=True)
    exact_log_z = exact.log_evidence(model).log_evidence
    mf = mean_field(model, key=jax.random.key(0), steps=50)
    assert mf.log_evidence_kind == "lower_bound"
    assert mf.log_evidence <= exact_log_z + 1e-12  # ELBO = log Z - KL <= log Z, up to rounding
    assert np.all(np.diff(mf.history) >= -1e-10)  # CAVI never lowers the ELBO


def test_ising_potts_bad_input():
    with pytest.raises(ModelError, match=r"shape \(3, 0\): side 1 is 0"):
        Ising((3, 0), 0.5)
    with pytest.raises(ModelError, match=r"q \(the number of Potts states\) must be a positive int, got 0"):
        Potts((2, 2), q=0, coupling=1.0)
    with pytest.raises(ModelError, match=r"q .* got -2"):
        Potts((2, 2), q=-2, coupling=1.0)
    with pytest.raises(ModelError, match=r"field has shape \(3,\), expected a scalar or \(2, 2\)"):
        Ising((2, 2), 0.5, field=np.zeros(3))
    with pytest.raises(ModelError, match=r"field entry \(1, 0\) is nan"):
        Ising((2, 2), 0.5, field=np.array([[0.0, 0.0], [np.nan, 0.0]]))
    with pytest.raises(ModelError, match=r"coupling must be finite"):
        Ising((2, 2), np.inf)
    with pytest.raises(ModelError, match=r"field has shape \(2, 2\), expected \(2, 2, 3\)"):
        Potts((2, 2), q=3, coupling=1.0, field=np.zeros((2, 2)))
    with pytest.raises(ModelError, match=r"side 0 is 1"):
        Ising((1, 4), 0.5, periodic=True)
    with pytest.raises(EvidenceError, match=r"unknown variable 's\[9,9\]'"):
        exact.marginals(Ising((2, 2), 0.5), {"s[9,9]": 1})
    with pytest.raises(DataError, match=r"shape \(\.\.\., 2, 2\)"):
        Ising((2, 2), 0.5).log_potential(np.zeros((3, 2), dtype=int))


# ============================================================================ RBM
@pytest.mark.parametrize("n_visible, n_hidden", [(4, 3), (2, 5)])
def test_rbm_log_z_equals_enumeration_of_both_layers(n_visible, n_hidden):
    rng = np.random.default_rng(6)
    rbm = RBM(rng.normal(0, 1.0, (n_visible, n_hidden)), rng.normal(size=n_visible), rng.normal(size=n_hidden))
    v, h = binary_states(n_visible), binary_states(n_hidden)
    neg_e = -rbm.energy(v[:, None, :], h[None, :, :])  # (2^D, 2^H)
    top = neg_e.max()
    log_z = top + np.log(np.exp(neg_e - top).sum())
    assert rbm.log_partition() == pytest.approx(log_z, abs=TOL)
    assert rbm.log_partition(chunk=2) == pytest.approx(log_z, abs=TOL)  # several blocks
    assert exact.log_evidence(rbm).log_evidence == pytest.approx(log_z, abs=TOL)  # the engine
    p = np.exp(neg_e - log_z)
    m = rbm.marginals()
    np.testing.assert_allclose(m["visible"], p.sum(1) @ v, atol=TOL)
    np.testing.assert_allclose(m["hidden"], p.sum(0) @ h, atol=TOL)
    ex = exact.marginals(rbm).marginals
    np.testing.assert_allclose([ex[n][1] for n in rbm.visible_names], m["visible"], atol=TOL)
    assert np.exp(rbm.log_prob(v)).sum() == pytest.approx(1.0, abs=1e-12)
    # the program's log density with h enumerated by hand equals -F(v) + constants
    value, _ = log_density(rbm.model, (v[3],), {}, {"h": h[1]})
    assert float(value) == pytest.approx(-rbm.energy(v[3], h[1]) - (n_visible + n_hidden) * np.log(2), abs=1e-12)


def test_rbm_bad_input():
    with pytest.raises(ModelError, match=r"visible_bias has shape \(3,\), expected \(4,\)"):
        RBM(np.zeros((4, 2)), np.zeros(3), np.zeros(2))
    with pytest.raises(ModelError, match=r"hidden_bias has shape \(3,\), expected \(2,\)"):
        RBM(np.zeros((4, 2)), np.zeros(4), np.zeros(3))
    with pytest.raises(ModelError, match=r"weights has shape \(4, 0\)"):
        RBM(np.zeros((4, 0)), np.zeros(4), np.zeros(0))
    with pytest.raises(ModelError, match=r"weights entry \(1, 1\) is nan"):
        RBM(np.array([[0.0, 0.0], [0.0, np.nan]]), np.zeros(2), np.zeros(2))
    rbm = RBM(np.zeros((3, 2)), np.zeros(3), np.zeros(2))
    with pytest.raises(DataError, match=r"shape \(\.\.\., 3\)"):
        rbm.free_energy(np.zeros((2, 4)))
    with pytest.raises(DataError, match=r"binary"):
        rbm.free_energy(np.full((2, 3), 0.5))
