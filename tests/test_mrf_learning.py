"""AIS, pseudo-likelihood, CD / PCD and moment matching against exact answers.

Oracles: exact log Z of an RBM (enumeration of the smaller layer, itself checked against both
layers in test_mrf.py); central finite differences and JAX autodiff of a direct formula for the
pseudo-likelihood gradient; the maximum-likelihood property (no parameter setting, the true one
included, scores the data higher than the MLE); exact factor marginals.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import exact
from inference.ais import rbm_log_partition
from inference.errors import DataError, ModelError
from inference.mrf_learning import (
    fit_pseudo_likelihood,
    ising_pseudo_likelihood,
    moment_matching,
    rbm_contrastive_divergence,
)
from pgm.ising import Ising
from pgm.mrf import MarkovNet
from pgm.rbm import RBM, binary_states


def test_ais_brackets_the_exact_rbm_log_partition():
    rng = np.random.default_rng(0)
    rbm = RBM(rng.normal(0, 0.5, (20, 8)), rng.normal(0, 0.5, 20), rng.normal(0, 0.5, 8))
    truth = rbm.log_partition()
    r = rbm_log_partition(3, rbm.weights, rbm.visible_bias, rbm.hidden_bias, num_chains=100, num_betas=500)
    assert r.log_evidence_kind == "estimate"
    se = r.diagnostics["stderr"]
    assert 0 < se < 0.1  # 100 runs of 500 temperatures: a usable estimate
    assert abs(r.log_evidence - truth) <= 3 * se  # Salakhutdinov and Murray's +-3 s.e. interval
    assert r.diagnostics["lower"] <= truth <= r.diagnostics["upper"]


def test_ais_bad_input():
    with pytest.raises(ModelError, match=r"hidden_bias has shape \(3,\), expected \(2,\)"):
        rbm_log_partition(0, np.zeros((4, 2)), np.zeros(4), np.zeros(3))
    with pytest.raises(DataError, match=r"betas must increase strictly from 0 to 1"):
        rbm_log_partition(0, np.zeros((4, 2)), np.zeros(4), np.zeros(2), betas=[0.0, 0.7, 0.5, 1.0])


def _direct_pseudo_likelihood(j, h, s):
    """The same objective written directly as sum_n sum_i log p(s_i | s_-i), for autodiff."""
    j = 0.5 * (j + j.T) * (1 - jnp.eye(j.shape[0]))
    a = h + s @ j
    return jnp.sum(jax.nn.log_sigmoid(2 * s * a))


def test_pseudo_likelihood_gradient_equals_finite_differences_and_autodiff():
    rng = np.random.default_rng(1)
    v = 5
    j = rng.normal(0, 0.5, (v, v))
    j = np.triu(j, 1) + np.triu(j, 1).T
    h = rng.normal(0, 0.5, v)
    s = rng.choice([-1.0, 1.0], size=(30, v))
    value, (gj, gh) = ising_pseudo_likelihood(j, h, s)
    assert value == pytest.approx(float(_direct_pseudo_likelihood(jnp.asarray(j), jnp.asarray(h), jnp.asarray(s))), abs=1e-10)
    # central differences: truncation eps^2 f''' ~ 1e-10 * 30, rounding 1e-16 |f| / eps ~ 1e-9; 1e-6 is ample
    eps = 1e-5
    for a, b in [(0, 1), (1, 3), (2, 4)]:
        d = np.zeros((v, v))
        d[a, b] = d[b, a] = eps  # the pair parameter J_ab = J_ba
        fd = (ising_pseudo_likelihood(j + d, h, s)[0] - ising_pseudo_likelihood(j - d, h, s)[0]) / (2 * eps)
        assert gj[a, b] == pytest.approx(fd, abs=1e-6)
    for i in range(v):
        d = np.zeros(v)
        d[i] = eps
        fd = (ising_pseudo_likelihood(j, h + d, s)[0] - ising_pseudo_likelihood(j, h - d, s)[0]) / (2 * eps)
        assert gh[i] == pytest.approx(fd, abs=1e-6)
    auto_h = jax.grad(_direct_pseudo_likelihood, argnums=1)(jnp.asarray(j), jnp.asarray(h), jnp.asarray(s))
    np.testing.assert_allclose(gh, auto_h, atol=1e-10)
    auto_j = np.asarray(jax.grad(_direct_pseudo_likelihood)(jnp.asarray(j), jnp.asarray(h), jnp.asarray(s)))
    # autodiff differentiates J_ab and J_ba separately; the pair parameter's derivative is their sum
    np.testing.assert_allclose(gj, (auto_j + auto_j.T) * (1 - np.eye(v)), atol=1e-10)


def test_pseudo_likelihood_fit_recovers_the_couplings():
    model = Ising((3, 3), 0.4, 0.1)
    draws = exact.sample(model, jax.random.key(2), 20000).samples
    spins = 2.0 * np.stack([draws[n] for n in model.names], axis=1) - 1.0  # (N, 9)
    r = fit_pseudo_likelihood(spins, edges=model.edges)
    assert r.diagnostics["converged"]
    coupling = r.params["coupling"][model.edges[:, 0], model.edges[:, 1]]
    # asymptotic s.d. of a PL pair estimate here ~ 1 / sqrt(N * Var(s_i s_j)) <~ 0.01: 0.05 is 5 s.d.
    np.testing.assert_allclose(coupling, 0.4, atol=0.05)
    np.testing.assert_allclose(r.params["field"], 0.1, atol=0.05)


def _rbm_data(rng, n):
    true = RBM(rng.normal(0, 1.5, (6, 3)), rng.normal(0, 0.5, 6), rng.normal(0, 0.5, 3))
    v = binary_states(6)
    p = np.exp(true.log_prob(v))
    return true, v[rng.choice(len(v), size=n, p=p / p.sum())]


@pytest.mark.parametrize("persistent", [True, False])
def test_contrastive_divergence_raises_the_exact_log_likelihood(persistent):
    rng = np.random.default_rng(3)
    true, data = _rbm_data(rng, 2000)
    init = RBM.random(4, 6, 3, scale=0.01)
    r = rbm_contrastive_divergence(5, data, init.params, epochs=20, batch_size=50, learning_rate=0.1,
                                   persistent=persistent)
    fitted = RBM(*r.params)
    before = init.log_prob(data).mean()
    after = fitted.log_prob(data).mean()
    best = true.log_prob(data).mean()
    # the data's own entropy bounds every model: the empirical distribution's log-likelihood
    counts = np.unique(data, axis=0, return_counts=True)[1] / len(data)
    ceiling = np.sum(counts * np.log(counts))
    assert before < best <= ceiling + 1e-12
    # training closes most of the gap between the near-uniform start and the true model
    assert after - before > 0.7 * (best - before), (before, after, best)


def test_moment_matching_is_the_maximum_likelihood_fit():
    rng = np.random.default_rng(6)
    states = {"a": 2, "b": 3, "c": 2, "d": 2}
    scopes = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("a",)]
    true = MarkovNet(states, {s: rng.gamma(2.0, size=tuple(states[v] for v in s)) for s in scopes})
    draws = true.sample(jax.random.key(7), 3000)
    data = np.stack([draws[v] for v in true.variables], axis=1)
    start = MarkovNet(states, {s: np.ones(tuple(states[v] for v in s)) for s in scopes})
    r = moment_matching(start.factor_graph(), data, tol=1e-9)
    assert r.diagnostics["converged"]
    assert np.all(np.diff(r.history) >= -1e-10)  # each IPF update maximises the likelihood in one factor
    fitted = r.params
    log_z = exact.log_evidence(fitted).log_evidence
    fit_ll = np.mean(sum(f.log_table[tuple(data[:, true.variables.index(v)] for v in f.scope)] for f in fitted.factors)) - log_z
    true_ll = np.mean(true.log_prob(data))
    assert fit_ll >= true_ll - 1e-9  # the MLE scores its data at least as well as the truth
    assert r.history[-1] == pytest.approx(fit_ll, abs=1e-9)


def test_learning_bad_input():
    with pytest.raises(DataError, match=r"spins must be -1 or \+1"):
        ising_pseudo_likelihood(np.zeros((2, 2)), np.zeros(2), np.array([[0.0, 1.0]]))
    with pytest.raises(DataError, match=r"coupling has shape \(3, 3\), expected \(2, 2\)"):
        ising_pseudo_likelihood(np.zeros((3, 3)), np.zeros(2), np.ones((1, 2)))
    with pytest.raises(DataError, match=r"binary"):
        rbm_contrastive_divergence(0, np.full((4, 3), 0.5), RBM.random(0, 3, 2).params, epochs=1, batch_size=2)
    with pytest.raises(ModelError, match=r"expected \(3, H\)"):
        rbm_contrastive_divergence(0, np.ones((4, 3)), RBM.random(0, 5, 2).params, epochs=1, batch_size=2)
    g = MarkovNet({"a": 2}, {"a": [1.0, 1.0]}).factor_graph()
    with pytest.raises(DataError, match=r"column 0 \('a'\) must hold integer state indices in 0..1"):
        moment_matching(g, np.array([[2]]))
