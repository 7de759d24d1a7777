"""Posterior averages over relabelled draws (HMM state marginals, mixture responsibilities) against
brute force: every state path enumerated, Bayes' rule by hand."""

import itertools

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from inference.errors import DataError
from pgm.hmm import averaged_state_marginals
from pgm.mixture import GaussianMixture, averaged_responsibilities


def _brute_marginals(pi, a, b, x):
    """p(z_t | x) by enumerating all K^T state paths."""
    k, t = len(pi), len(x)
    out = np.zeros((t, k))
    for path in itertools.product(range(k), repeat=t):
        p = pi[path[0]] * b[path[0], x[0]]
        for i in range(1, t):
            p *= a[path[i - 1], path[i]] * b[path[i], x[i]]
        out[np.arange(t), path] += p
    return out / out.sum(1, keepdims=True)


def _draw(rng, k, m):
    return rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k), size=k), rng.dirichlet(np.ones(m), size=k)


def test_hmm_state_marginals_average_relabelled_draws_as_brute_force_does():
    rng = np.random.default_rng(0)
    k, m, x = 3, 4, np.array([0, 3, 3, 1, 2])
    reference = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    draws = []
    for _ in range(4):
        pi, a, b = _draw(rng, k, m)
        b = 0.2 * b + 0.8 * reference  # near the reference, so its labelling is unambiguous
        draws.append((pi, a, b))
    oracle = np.mean([_brute_marginals(*d, x) for d in draws], axis=0)
    # every draw given with its states permuted: the alignment must undo each permutation
    shuffled = []
    for pi, a, b in draws:
        p = rng.permutation(k)
        shuffled.append((pi[p], a[np.ix_(p, p)], b[p]))
    samples = {name: np.stack([d[i] for d in shuffled])
               for i, name in enumerate(("initial_probs", "transition_matrix", "emission_probs"))}
    got = averaged_state_marginals(samples, x, reference)
    # forward-backward in float64 against a sum over 3^5 paths: rounding only
    np.testing.assert_allclose(got, oracle, atol=1e-12)


@pytest.mark.parametrize("blocks", [(1,), (2, 3)])
def test_hmm_averaging_over_several_blocks_of_draws(blocks):
    """Draws are smoothed a block of ``_DRAW_BLOCK`` at a time, the last block padded: any number
    of draws averages as brute force does (the padding weighs nothing)."""
    from pgm import hmm

    rng = np.random.default_rng(1)
    k, m, x = 2, 3, np.array([0, 2, 2, 1, 0])
    reference = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    n = hmm._DRAW_BLOCK * (len(blocks) - 1) + blocks[-1]  # 1 draw (one padded block); a whole block and 3 more (two)
    draws = [_draw(rng, k, m) for _ in range(n)]
    draws = [(pi, a, 0.2 * b + 0.8 * reference) for pi, a, b in draws]
    oracle = np.mean([_brute_marginals(*d, x) for d in draws], axis=0)
    samples = {name: np.stack([d[i] for d in draws])
               for i, name in enumerate(("initial_probs", "transition_matrix", "emission_probs"))}
    # float64 sums of n terms against brute force over 2^5 paths: rounding only
    np.testing.assert_allclose(averaged_state_marginals(samples, x, reference), oracle, atol=1e-12)


def test_hmm_averaging_rejects_malformed_draws():
    s = {"initial_probs": np.full((2, 2), 0.5), "transition_matrix": np.full((2, 2, 2), 0.5),
         "emission_probs": np.full((2, 2, 3), 1 / 3)}
    with pytest.raises(DataError, match="lack the sites"):
        averaged_state_marginals({"initial_probs": s["initial_probs"]}, np.array([0]), np.full((2, 3), 1 / 3))
    with pytest.raises(DataError, match=r"symbols in \[0, 3\)"):
        averaged_state_marginals(s, np.array([0, 3]), np.full((2, 3), 1 / 3))
    with pytest.raises(DataError, match=r"no draws \(S = 0\)"):
        averaged_state_marginals({k: v[:0] for k, v in s.items()}, np.array([0]), np.full((2, 3), 1 / 3))
    with pytest.raises(DataError, match=r"emission_probs must be draws of shape \(S, K, M\), got \(2, 3\)"):
        averaged_state_marginals({**s, "emission_probs": np.full((2, 3), 1 / 3)}, np.array([0]), np.full((2, 3), 1 / 3))
    with pytest.raises(DataError, match="disagree in shape"):
        averaged_state_marginals({**s, "initial_probs": np.full((2, 3), 1 / 3)}, np.array([0]), np.full((2, 3), 1 / 3))


def test_mixture_responsibilities_average_relabelled_mixtures_by_bayes_rule():
    x = np.array([[0.0, 0.0], [2.5, 0.5], [-1.0, 3.0]])
    means = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    covs = [np.eye(2), np.array([[1.0, 0.5], [0.5, 1.0]]), 0.5 * np.eye(2)]
    w = np.array([0.5, 0.3, 0.2])
    first = GaussianMixture(w, means, covs)
    p = [2, 0, 1]
    second = GaussianMixture(w[p], means[p] + 0.1, [covs[i] for i in p])  # permuted, means moved a little

    def bayes(weights, mus, sigmas):
        joint = np.stack([wk * multivariate_normal(mu, s).pdf(x) for wk, mu, s in zip(weights, mus, sigmas)], 1)
        return joint / joint.sum(1, keepdims=True)

    oracle = 0.5 * (bayes(w, means, covs) + bayes(w, means + 0.1, covs))  # second, relabelled by hand
    got = averaged_responsibilities([first, second], x, means)
    # Cholesky-based log densities against scipy's pdf in float64: rounding only
    np.testing.assert_allclose(got, oracle, atol=1e-10)
    with pytest.raises(DataError, match="mixtures is empty"):
        averaged_responsibilities([], x, means)
