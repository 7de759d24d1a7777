"""inference.chain kernels against brute-force enumeration, Wikipedia's Viterbi example, ragged
batches run one by one, and a million-step chain."""

import itertools

import jax
import numpy as np
import pytest
import scipy.stats

import inference  # noqa: F401  (float64)
from inference import chain, forward_backward, viterbi
from inference.chain import ChainPotentials
from inference.errors import DataError, EvidenceError, ModelError


def _random_chain(rng, K, T, sparse=False):
    log_pi = np.log(rng.dirichlet(np.ones(K)))
    A = rng.dirichlet(np.ones(K), K)
    if sparse:  # zeros in the transition matrix: -inf log-potentials must not give NaN
        A[0, 1:] = 0.0
        A[0, 0] = 1.0
    with np.errstate(divide="ignore"):
        log_a = np.log(A)
    return log_pi, log_a, rng.normal(size=(T, K)) * 3.0


def _brute(log_pi, log_a, ll):
    """log p(z, x) for every path z: the whole joint."""
    T, K = ll.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    score = log_pi[paths[:, 0]] + ll[np.arange(T), paths].sum(1)
    score = score + log_a[paths[:, :-1], paths[:, 1:]].sum(1)
    return paths, score


@pytest.mark.parametrize("K,T,sparse", [(2, 1, False), (3, 6, True), (4, 5, False)])
def test_kernels_equal_brute_force(K, T, sparse):
    rng = np.random.default_rng(K * 10 + T)
    log_pi, log_a, ll = _random_chain(rng, K, T, sparse)
    paths, score = _brute(log_pi, log_a, ll)
    log_z = np.logaddexp.reduce(score)
    post = np.exp(score - log_z)
    marg = np.stack([np.bincount(paths[:, t], weights=post, minlength=K) for t in range(T)])
    pairs = np.zeros((K, K))
    for t in range(1, T):
        np.add.at(pairs, (paths[:, t - 1], paths[:, t]), post)

    z, alpha = chain.hmm_filter(log_pi, log_a, ll)
    np.testing.assert_allclose(z, log_z, rtol=1e-12)
    # the last filtered marginal is the last smoothed one
    np.testing.assert_allclose(np.exp(alpha[-1]), marg[-1], rtol=1e-10, atol=1e-14)
    z2, gamma = chain.hmm_smoother(log_pi, log_a, ll)
    np.testing.assert_allclose(z2, log_z, rtol=1e-12)
    np.testing.assert_allclose(gamma, marg, rtol=1e-10, atol=1e-14)
    _, gamma3, xi = chain.hmm_two_slice(log_pi, log_a, ll)
    np.testing.assert_allclose(gamma3, marg, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(xi, pairs, rtol=1e-10, atol=1e-14)
    path, log_joint = chain.hmm_viterbi(log_pi, log_a, ll)
    best = int(np.argmax(score))
    np.testing.assert_array_equal(path, paths[best])
    np.testing.assert_allclose(log_joint, score[best], rtol=1e-12)


def test_posterior_samples_follow_the_enumerated_posterior():
    rng = np.random.default_rng(3)
    K, T, n = 3, 4, 8000
    log_pi, log_a, ll = _random_chain(rng, K, T)
    paths, score = _brute(log_pi, log_a, ll)
    post = np.exp(score - np.logaddexp.reduce(score))
    p = ChainPotentials(log_pi, log_a, ll[None], np.array([T]), batched=False)
    draws = chain.sample(p, jax.random.PRNGKey(0), n).samples["z"]
    assert draws.shape == (n, T) and draws.dtype == np.int64
    codes = (draws * K ** np.arange(T)[::-1]).sum(1)
    freq = np.bincount(codes, minlength=K**T) / n
    # Pearson chi-square of the path counts against the enumerated posterior (paths expected fewer
    # than 5 times pooled), at a 1e-6 false-alarm rate
    expected = post * n
    big = expected >= 5
    observed = np.append(freq[big] * n, freq[~big].sum() * n)
    expected = np.append(expected[big], expected[~big].sum())
    statistic = np.sum((observed - expected) ** 2 / expected)
    assert statistic < scipy.stats.chi2.ppf(1 - 1e-6, df=len(expected) - 1)


def test_wikipedia_viterbi_example():
    """https://en.wikipedia.org/wiki/Viterbi_algorithm: Healthy/Fever, observations normal, cold, dizzy."""
    log_pi = np.log([0.6, 0.4])
    log_a = np.log([[0.7, 0.3], [0.4, 0.6]])
    emit = np.array([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]])  # normal, cold, dizzy
    ll = np.log(emit[:, [0, 1, 2]].T)
    path, log_joint = chain.hmm_viterbi(log_pi, log_a, ll)
    assert list(np.asarray(path)) == [0, 0, 1]  # Healthy, Healthy, Fever
    np.testing.assert_allclose(np.exp(log_joint), 0.01512, rtol=1e-12)


def test_ragged_batch_equals_sequences_one_by_one():
    rng = np.random.default_rng(5)
    K, lengths = 3, np.array([7, 2, 7, 2])
    log_pi, log_a, _ = _random_chain(rng, K, 1)
    ll = rng.normal(size=(len(lengths), 7, K))
    ll[1, 1:] = 1e6  # padding must be ignored whatever it holds
    p = ChainPotentials(log_pi, log_a, ll, lengths)
    marg = chain.marginals(p).marginals["z"]
    viterbi = chain.map(p)
    evidence = chain.log_evidence(p)
    for n, L in enumerate(lengths):
        z, gamma = chain.hmm_smoother(log_pi, log_a, ll[n, :L])
        path, lj = chain.hmm_viterbi(log_pi, log_a, ll[n, :L])
        np.testing.assert_allclose(evidence.diagnostics["log_evidence_per_sequence"][n], z, rtol=1e-13)
        np.testing.assert_allclose(marg[n, :L], gamma, rtol=1e-12, atol=1e-15)
        assert np.all(marg[n, L:] == 0)
        np.testing.assert_array_equal(viterbi.map["z"][n, :L], path)
        assert np.all(viterbi.map["z"][n, L:] == -1)
        np.testing.assert_allclose(viterbi.diagnostics["log_joint_per_sequence"][n], lj, rtol=1e-13)
    np.testing.assert_allclose(evidence.log_evidence, evidence.diagnostics["log_evidence_per_sequence"].sum())
    draws = chain.sample(p, jax.random.PRNGKey(1), 5).samples["z"]
    assert draws.shape == (5, 4, 7)
    assert np.all((draws >= 0) == (np.arange(7) < lengths[:, None]))


def test_million_steps_do_not_underflow():
    rng = np.random.default_rng(7)
    K, T = 2, 1_000_000
    log_pi, log_a, _ = _random_chain(rng, K, 1)
    ll = rng.normal(size=(T, K)) * 5 - 40.0  # every step ~1e-17: the plain product underflows at once
    z, gamma = chain.hmm_smoother(log_pi, log_a, ll)
    # log p(z*, x) <= log p(x) <= sum_t max_k log e_t(k)
    path, lj = chain.hmm_viterbi(log_pi, log_a, ll)
    assert np.isfinite(z) and lj <= z <= ll.max(1).sum()
    assert np.all(np.asarray(path) >= 0)
    assert np.all(np.isfinite(gamma))
    np.testing.assert_allclose(np.asarray(gamma).sum(1), 1.0, rtol=1e-12)
    z_filter, _ = chain.hmm_filter(log_pi, log_a, ll)
    np.testing.assert_allclose(z_filter, z, rtol=1e-12)
    # the positive transition matrix took the linear-space kernels; the log-space ones agree
    z_log, gamma_log, _ = forward_backward._posteriors(log_pi, log_a, ll, None, False, arithmetic="log")
    np.testing.assert_allclose(z_log, z, rtol=1e-12)
    np.testing.assert_allclose(gamma_log, gamma, rtol=1e-9, atol=1e-14)


def test_far_apart_likelihoods_stay_exact():
    """A state reachable only from one whose filtered weight is below e^-1000 (scaled forward
    algorithms lose it; log space must not)."""
    log_pi = np.log([0.5, 0.5])
    with np.errstate(divide="ignore"):
        log_a = np.log([[0.5, 0.5], [0.0, 1.0]])
    ll = np.array([[-2000.0, 0.0], [0.0, -5000.0]])
    paths, score = _brute(log_pi, log_a, ll)
    z, gamma = chain.hmm_smoother(log_pi, log_a, ll)
    np.testing.assert_allclose(z, np.logaddexp.reduce(score), rtol=1e-14)
    np.testing.assert_allclose(gamma, [[1, 0], [1, 0]], atol=1e-300)


def test_zero_probability_evidence_and_bad_potentials():
    with np.errstate(divide="ignore"):
        log_a = np.log(np.eye(2))
    ll = np.array([[0.0, -np.inf], [-np.inf, 0.0]])[None]  # needs a 0 -> 1 move
    p = ChainPotentials(np.log([0.5, 0.5]), log_a, ll, np.array([2]))
    for fn in (chain.log_evidence, chain.marginals, chain.map):
        with pytest.raises(EvidenceError, match="probability zero"):
            fn(p)
    with pytest.raises(ModelError, match="log_transition"):
        ChainPotentials(np.zeros(2), np.zeros((3, 3)), np.zeros((1, 4, 2)), np.array([4]))
    with pytest.raises(DataError, match="lengths"):
        ChainPotentials(np.zeros(2), np.zeros((2, 2)), np.zeros((1, 4, 2)), np.array([5]))
    with pytest.raises(ModelError, match="chain"):
        chain.marginals(object(), np.zeros(3))


@pytest.mark.parametrize("masked", [False, True])
def test_linear_and_log_arithmetic_agree(masked):
    """The linear-space kernels (every transition probability >= e^-200) and the log-space ones
    compute the same numbers, with zero initial probabilities, impossible emissions, emissions
    thousands of nats apart, and padding."""
    rng = np.random.default_rng(11)
    K, T = 4, 60
    with np.errstate(divide="ignore"):
        log_pi = np.log([0.0, 0.5, 0.3, 0.2])
    log_a = np.log(rng.dirichlet(np.ones(K), K))
    ll = rng.normal(size=(T, K)) * 3.0
    ll[5] = [-3000.0, 0.0, -1500.0, -np.inf]
    ll[6, 1] = -np.inf
    length = 41 if masked else None
    assert chain.SCALED_RANGE >= -log_a.min()
    for pairs in (False, True):
        linear = forward_backward._posteriors(log_pi, log_a, ll, length, pairs, arithmetic="linear")
        log = forward_backward._posteriors(log_pi, log_a, ll, length, pairs, arithmetic="log")
        for a, b in zip(linear, log):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(forward_backward._log_likelihood(log_pi, log_a, ll, length, arithmetic="linear"),
                               forward_backward._log_likelihood(log_pi, log_a, ll, length, arithmetic="log"), rtol=1e-13)
    lin_f = forward_backward._filtered(log_pi, log_a, ll, length, arithmetic="linear")
    log_f = forward_backward._filtered(log_pi, log_a, ll, length, arithmetic="log")
    upto = T if length is None else length
    np.testing.assert_allclose(np.exp(lin_f[1][:upto]), np.exp(log_f[1][:upto]), rtol=1e-11, atol=1e-14)


def test_linear_arithmetic_with_far_apart_likelihoods():
    """Emissions 2,000 and 5,000 nats apart under a transition matrix whose smallest entry is
    e^-150 (the linear-space kernels run): brute force agrees."""
    log_pi = np.log([0.5, 0.5])
    log_a = np.log([[0.5, 0.5], [np.exp(-150.0), 1 - np.exp(-150.0)]])
    ll = np.array([[-2000.0, 0.0], [0.0, -5000.0]])
    paths, score = _brute(log_pi, log_a, ll)
    z, gamma = chain.hmm_smoother(log_pi, log_a, ll)
    np.testing.assert_allclose(z, np.logaddexp.reduce(score), rtol=1e-14)
    post = np.exp(score - np.logaddexp.reduce(score))
    np.testing.assert_allclose(gamma, [[post[paths[:, 0] == 0].sum(), post[paths[:, 0] == 1].sum()],
                                       [post[paths[:, 1] == 0].sum(), post[paths[:, 1] == 1].sum()]], atol=1e-300)


@pytest.mark.parametrize("block,T,K,sparse,ties", [(7, 53, 4, False, False), (5, 40, 4, True, False),
                                                   (4, 33, 4, False, True), (3, 29, 5, False, True)])
def test_blocked_viterbi_equals_the_step_by_step_pass(block, T, K, sparse, ties, monkeypatch):
    """Two-pass Viterbi (scores at block starts, pointers recomputed per block): the same deltas and
    pointers (ties to the lowest state) as the plain recursion in NumPy, and the same path and score
    as the one-pass kernel and the batch kernel (pointers kept at every step); the path also beats
    every single-state change (the brute-force check of a long chain)."""
    rng = np.random.default_rng(block + T)
    log_pi, log_a, ll = _random_chain(rng, K, T, sparse)
    if ties:  # integer scores: many exact ties between paths
        log_pi, ll = np.round(log_pi), np.round(ll)
        log_a = np.where(np.isfinite(log_a), np.round(log_a), -np.inf)
    last, pointers = jax.jit(viterbi._viterbi_blocked, static_argnums=3)(log_pi, log_a, ll, block)
    path, score = jax.jit(lambda a, b, c: viterbi._viterbi(a, b, c, None))(log_pi, log_a, ll)
    batch_path, batch_score = jax.jit(viterbi._viterbi_batch, static_argnums=3)(log_pi, log_a, np.stack([ll, ll]), None)
    np.testing.assert_array_equal(batch_path, [path, path])
    assert float(batch_score[0]) == float(score)

    def forward(log_pi, log_a, ll):  # the plain recursion in NumPy, first argmax on ties
        delta, ptrs = log_pi + ll[0], []
        for t in range(1, len(ll)):
            s = delta[:, None] + log_a
            ptrs.append(np.argmax(s, axis=0))
            delta = s.max(0) + ll[t]
        return delta, np.array(ptrs)

    ref_last, ref_ptrs = forward(log_pi, log_a, ll)
    np.testing.assert_array_equal(np.asarray(last), ref_last)
    np.testing.assert_array_equal(np.asarray(pointers), ref_ptrs)
    # the public single-sequence kernel takes the blocked pass above 2 * VITERBI_BLOCK steps
    monkeypatch.setattr(viterbi, "VITERBI_BLOCK", block)
    blocked_path, blocked_score = jax.jit(lambda a, b, c: viterbi._viterbi(a, b, c, None))(log_pi, log_a, ll)
    np.testing.assert_array_equal(blocked_path, path)
    assert float(blocked_score) == float(score)
    joint = lambda z: log_pi[z[0]] + ll[np.arange(T), z].sum() + log_a[z[:-1], z[1:]].sum()
    assert joint(np.asarray(path)) == pytest.approx(float(score), rel=1e-12)
    for t in range(T):
        for k in range(K):
            other = np.array(path)
            other[t] = k
            assert joint(other) <= float(score) + 1e-9
