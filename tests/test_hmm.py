"""pgm.HMM: hmmlearn parity (log-likelihood, posteriors, Viterbi, one EM step), brute force,
EM monotonicity for every emission family, missing values, the NumPyro program, bad input."""

import itertools

import jax
import numpy as np
import pytest
import scipy.special
import scipy.stats

import inference  # noqa: F401  (float64)
from inference import chain, em
from inference.errors import DataError, ModelError
from pgm.hmm import HMM

RTOL = 1e-9


def _spd(rng, K, D):
    a = rng.normal(size=(K, D, D))
    return a @ np.swapaxes(a, 1, 2) + D * np.eye(D)


def _models(rng, K=3, M=4, D=2, mix=2):
    pi, A = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K) * 2, K)
    return {
        "categorical": HMM.categorical(pi, A, rng.dirichlet(np.ones(M), K)),
        "diag": HMM.gaussian(pi, A, rng.normal(size=(K, D)) * 2, rng.uniform(0.5, 2, (K, D)), "diag"),
        "full": HMM.gaussian(pi, A, rng.normal(size=(K, D)) * 2, _spd(rng, K, D), "full"),
        "mix_full": HMM.gaussian_mixture(
            pi, A, rng.dirichlet(np.ones(mix), K), rng.normal(size=(K, mix, D)) * 2,
            _spd(rng, K * mix, D).reshape(K, mix, D, D), "full"),
        "mix_diag": HMM.gaussian_mixture(
            pi, A, rng.dirichlet(np.ones(mix), K), rng.normal(size=(K, mix, D)) * 2,
            rng.uniform(0.5, 2, (K, mix, D)), "diag"),
    }


def _peer(hmm):
    # only the hmmlearn comparisons depend on the peer: the rest of the file runs without it
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    p = hmm.params
    K = hmm.num_states
    family = hmm.emission.family
    if family == "categorical":
        peer = hmmlearn.CategoricalHMM(K, init_params="", params="ste", n_iter=1)
        peer.emissionprob_ = p["emission_probs"]
        peer.n_features = p["emission_probs"].shape[1]
    elif family == "gaussian":
        cov_type = hmm.emission.covariance_type
        peer = hmmlearn.GaussianHMM(K, cov_type, init_params="", params="stmc", n_iter=1,
                                    covars_prior=0.0, covars_weight=1.0)
        peer.means_, peer.covars_ = p["means"], p["covariances"]
    else:
        cov_type = hmm.emission.covariance_type
        peer = hmmlearn.GMMHMM(K, p["weights"].shape[1], covariance_type=cov_type, init_params="", params="stmcw", n_iter=1)
        peer.weights_, peer.means_, peer.covars_ = p["weights"], p["means"], p["covariances"]
    peer.startprob_, peer.transmat_ = p["initial_probs"], p["transition_matrix"]
    return peer


@pytest.mark.parametrize("family", ["categorical", "diag", "full", "mix_full", "mix_diag"])
def test_equals_hmmlearn_on_the_same_parameters(family):
    rng = np.random.default_rng(1)
    hmm = _models(rng)[family]
    data = hmm.sample(jax.random.PRNGKey(2), 40, 3)["x"]
    lengths = [40, 25, 11]
    seqs = [data[n, :L] for n, L in enumerate(lengths)]
    X = np.concatenate(seqs)
    X = X[:, None] if X.ndim == 1 else X
    peer = _peer(hmm)

    np.testing.assert_allclose(hmm.log_prob(seqs).sum(), peer.score(X, lengths), rtol=RTOL)
    marg = chain.marginals(hmm, seqs).marginals["z"]
    ours = np.concatenate([marg[n, :L] for n, L in enumerate(lengths)])
    np.testing.assert_allclose(ours, peer.predict_proba(X, lengths), rtol=RTOL, atol=1e-12)
    peer_lj, peer_path = peer.decode(X, lengths, algorithm="viterbi")
    viterbi = chain.map(hmm, seqs)
    np.testing.assert_array_equal(
        np.concatenate([viterbi.map["z"][n, :L] for n, L in enumerate(lengths)]), peer_path)
    np.testing.assert_allclose(viterbi.diagnostics["log_joint"], peer_lj, rtol=RTOL)

    # one EM step: hmmlearn's fit with n_iter=1 from the same parameters
    peer.fit(X, lengths)
    stats, _ = hmm.expected_stats(seqs)
    new = hmm.from_stats(stats)
    np.testing.assert_allclose(new.initial_probs, peer.startprob_, rtol=RTOL, atol=1e-13)
    np.testing.assert_allclose(new.transition_matrix, peer.transmat_, rtol=RTOL, atol=1e-13)
    expected = {"categorical": ["emission_probs"], "diag": ["means", "covariances"],
                "full": ["means", "covariances"]}.get(family, ["weights", "means", "covariances"])
    attr = {"emission_probs": "emissionprob_", "means": "means_", "covariances": "covars_", "weights": "weights_"}
    if family == "diag":  # hmmlearn's GaussianHMM shows diagonal covariances as full matrices
        attr["covariances"] = "_covars_"
    peer_values = {name: getattr(peer, attr[name]) for name in expected}
    if family.startswith("mix"):
        # hmmlearn's GMMHMM centres the scatter on the *previous* means (its _emissions.py,
        # stats['c_n']); the maximum-likelihood covariance, ours, centres on the new ones. The two
        # differ by exactly the mean shift: sum r (x-m0)(x-m0)^T / R - d d^T with d = m1 - m0.
        shift = peer.means_ - hmm.params["means"]
        outer = shift[..., :, None] * shift[..., None, :] if family == "mix_full" else shift**2
        peer_values["covariances"] = peer.covars_ - outer
    for name in expected:
        np.testing.assert_allclose(new.params[name], peer_values[name], rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("family", ["categorical", "full", "mix_diag"])
def test_log_prob_equals_brute_force_enumeration(family):
    rng = np.random.default_rng(4)
    hmm = _models(rng, K=3)[family]
    x = hmm.sample(jax.random.PRNGKey(5), 5)["x"][0]
    joints = [hmm.log_joint(np.array(z), x) for z in itertools.product(range(3), repeat=5)]
    np.testing.assert_allclose(hmm.log_prob(x), np.logaddexp.reduce(joints), rtol=1e-12)


@pytest.mark.parametrize("family", ["categorical", "diag", "full", "mix_full", "mix_diag"])
def test_baum_welch_never_decreases(family):
    rng = np.random.default_rng(6)
    truth = _models(rng)[family]
    data = truth.sample(jax.random.PRNGKey(7), 60, 4)["x"]
    start = _models(np.random.default_rng(8))[family]
    result = em.fit(start, list(data[:, :50]) + [data[0, :20]], max_iter=6, tol=0.0)
    history = result.history
    assert len(history) == 7
    assert np.all(np.diff(history) >= -1e-8 * np.abs(history[:-1]))
    assert history[-1] > history[0]
    if family in ("categorical", "full"):  # with priors the MAP objective is monotone too
        result = em.fit(start, data, max_iter=4, tol=0.0, pseudo_count=0.5, covariance_prior=0.1)
        assert np.all(np.diff(result.history) >= -1e-8 * np.abs(result.history[:-1]))


def test_missing_values_are_marginalised():
    rng = np.random.default_rng(9)
    for family in ("full", "diag"):
        hmm = _models(rng, D=3)[family]
        x = hmm.sample(jax.random.PRNGKey(10), 6)["x"][0]
        assert x.flags.writeable
        x[1, :] = np.nan  # a whole step missing
        x[3, [0, 2]] = np.nan  # part of a step missing
        # oracle: the emission of each step is the Gaussian marginal over its observed entries
        p = hmm.params
        cov = p["covariances"] if family == "full" else np.stack([np.diag(c) for c in p["covariances"]])
        ll = np.zeros((6, 3))
        for t in range(6):
            o = ~np.isnan(x[t])
            if o.any():
                for k in range(3):
                    ll[t, k] = scipy.stats.multivariate_normal(p["means"][k, o], cov[k][np.ix_(o, o)]).logpdf(x[t, o])
        np.testing.assert_allclose(np.asarray(hmm.chain(x).log_likelihoods[0]), ll, rtol=1e-12)
        log_pi, log_a = np.log(p["initial_probs"]), np.log(p["transition_matrix"])
        z, gamma = chain.hmm_smoother(log_pi, log_a, ll)
        np.testing.assert_allclose(hmm.log_prob(x), z, rtol=1e-12)
        np.testing.assert_allclose(chain.marginals(hmm, x).marginals["z"], gamma, rtol=1e-10)
        # EM imputes the missing entries in expectation and stays monotone
        result = em.fit(hmm, x, max_iter=3, tol=0.0, covariance_prior=1.0)
        assert np.all(np.diff(result.history) >= -1e-8 * np.abs(result.history[:-1]))
        assert np.all(np.isfinite(result.params.params["means"]))


@pytest.mark.parametrize("family", ["categorical", "diag", "full", "mix_diag", "mix_full"])
def test_numpyro_enumeration_equals_forward_algorithm(family):
    """Exact log-evidence through the program (states summed out by NumPyro's enumeration, as
    TraceEnum does) equals the chain kernels' on a ragged batch, mixtures included."""
    from numpyro.contrib.funsor import enum, log_density

    rng = np.random.default_rng(11)
    models = _models(rng)
    for _ in (family,):
        hmm = models[family]
        x = hmm.sample(jax.random.PRNGKey(12), 4, 2)["x"]
        lengths = np.array([4, 2])
        value, _ = log_density(enum(hmm.model, first_available_dim=-2), (), {"x": x, "lengths": lengths}, {})
        np.testing.assert_allclose(value, hmm.log_prob(x, lengths).sum(), rtol=1e-10)


def test_bayesian_model_starts_at_given_numpy_values():
    """NUTS can start at a point estimate (init_to_value with NumPy arrays, which the program
    indexes with traced states). Oracle for the log joint there: Dirichlet(1) densities are the
    constants log Gamma(n) per row, plus the forward algorithm's log p(x | theta)."""
    from numpyro.contrib.funsor import enum, log_density
    from numpyro.infer.initialization import init_to_value
    from numpyro.infer.util import initialize_model

    hmm = _models(np.random.default_rng(15))["categorical"]  # K = 3 states, M = 4 symbols
    x = hmm.sample(jax.random.PRNGKey(16), 30)["x"][0]
    values = {name: np.asarray(value) for name, value in hmm.params.items()}
    info = initialize_model(jax.random.PRNGKey(0), hmm.bayesian_model, model_kwargs={"x": x},
                            init_strategy=init_to_value(values=values))[0]
    assert np.isfinite(float(info.potential_energy))
    value, _ = log_density(enum(hmm.bayesian_model, first_available_dim=-2), (), {"x": x}, values)
    log_prior = 4 * scipy.special.gammaln(3) + 3 * scipy.special.gammaln(4)
    np.testing.assert_allclose(value, log_prior + hmm.log_prob(x), rtol=1e-12)


def test_sample_shapes_and_program_sites():
    hmm = _models(np.random.default_rng(13))["full"]
    out = hmm.sample(jax.random.PRNGKey(0), 9, n_sequences=2)
    assert out["z"].shape == (2, 9) and out["x"].shape == (2, 9, 2)
    assert out["z"].dtype == np.int64 and out["z"].min() >= 0 and out["z"].max() < 3
    tr = jax.tree_util.tree_map(lambda a: a, __import__("numpyro").handlers.trace(
        __import__("numpyro").handlers.seed(hmm.model, 0)).get_trace(T=4))
    assert tr["z"]["infer"]["enumerate"] == "parallel" and "x" in tr


def test_bad_input_gets_typed_errors_naming_the_argument():
    with pytest.raises(ModelError, match="transition_matrix row 1"):
        HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.5, 0.4]], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ModelError, match="initial_probs"):
        HMM.categorical([0.5, 0.6], [[0.9, 0.1], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ModelError, match="emission_probs"):
        HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.5, 0.5]], [[0.5, 0.5]])
    with pytest.raises(ModelError, match="positive definite"):
        HMM.gaussian([1.0], [[1.0]], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    hmm = HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.5, 0.5]], [[0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(DataError, match=r"x\[0, 2\] = 2"):
        hmm.log_prob([0, 1, 2])
    with pytest.raises(DataError, match=r"x\[0, 1\] = -1"):
        chain.marginals(hmm, np.array([0, -1]))
    with pytest.raises(DataError, match="NaN"):
        hmm.log_prob(np.array([0.0, np.nan]))
    with pytest.raises(DataError, match="shape"):
        hmm.log_prob(np.zeros((2, 2, 2), int))
    with pytest.raises(DataError, match="lengths"):
        hmm.log_prob(np.zeros((2, 3), int), lengths=[3, 4])
    with pytest.raises(DataError, match=r"z\[0, 1\] = 5"):
        hmm.log_joint([0, 5], [0, 1])
    g = HMM.gaussian([1.0], [[1.0]], [[0.0, 0.0]], [[1.0, 1.0]], "diag")
    with pytest.raises(DataError, match="features"):
        g.log_prob(np.zeros((4, 3)))
    with pytest.raises(DataError, match="infinite"):
        g.log_prob(np.array([[0.0, np.inf]]))
