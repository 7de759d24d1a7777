"""inference.align: the Hungarian assignment against brute force over every permutation."""

import itertools

import numpy as np
import pytest

from inference.align import align, match_labels
from inference.errors import DataError


def _brute_force(cost):
    """The least total cost over every injective map from reference labels to estimated labels."""
    k_est, k_ref = cost.shape
    return min(sum(cost[p[k], k] for k in range(k_ref)) for p in itertools.permutations(range(k_est), k_ref))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (5, 5), (6, 4), (7, 7)])
def test_match_labels_reaches_the_brute_force_optimum(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.random(shape)
        perm = match_labels(cost)
        assert perm.shape == (shape[1],) and len(set(perm.tolist())) == shape[1]
        # the optimum is a sum of K <= 7 numbers in [0, 1): both sides round alike to ~1e-15
        assert sum(cost[perm[k], k] for k in range(shape[1])) == pytest.approx(_brute_force(cost), abs=1e-12)


def test_a_permuted_copy_is_recovered_exactly():
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(6), size=5)  # (K, D) distinct rows
    shuffle = rng.permutation(5)
    estimated = reference[shuffle]
    for metric in ("tv", "l1", "euclidean"):
        perm, distance = align(estimated, reference, metric)
        np.testing.assert_array_equal(estimated[perm], reference)  # relabelled into the reference's order
        np.testing.assert_array_equal(shuffle[perm], np.arange(5))
        assert np.all(distance == 0.0)


def test_align_distances_are_the_named_metrics():
    reference = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    estimated = np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    perm, tv = align(estimated, reference, "tv")
    assert perm.tolist() == [1, 0]
    # by hand: 0.5 * (0.3 + 0.2 + 0.1) and 0.5 * (0.1 + 0.2 + 0.1); float rounding only
    np.testing.assert_allclose(tv, [0.3, 0.2], atol=1e-15)
    np.testing.assert_allclose(align(estimated, reference, "l1")[1], [0.6, 0.4], atol=1e-15)
    np.testing.assert_allclose(align(estimated, reference, "euclidean")[1],
                               [np.sqrt(0.09 + 0.04 + 0.01), np.sqrt(0.01 + 0.04 + 0.01)], atol=1e-15)


def test_a_batch_is_aligned_draw_by_draw():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(4, 2)) * 5
    draws, truth = [], []
    for _ in range(6):
        p = rng.permutation(4)
        draws.append(reference[p] + 0.01 * rng.normal(size=(4, 2)))
        truth.append(np.argsort(p))  # estimated label argsort(p)[k] holds reference row k
    perm, distance = align(np.stack(draws).reshape(2, 3, 4, 2), reference, "euclidean")
    assert perm.shape == distance.shape == (2, 3, 4)
    np.testing.assert_array_equal(perm.reshape(6, 4), np.stack(truth))
    assert distance.max() < 0.1  # noise 0.01 per coordinate: a distance of 0.1 is 7 sd in 2-D


@pytest.mark.parametrize("call, message", [
    (lambda: match_labels(np.zeros(3)), r"cost must be a \(K_est, K_ref\) matrix"),
    (lambda: match_labels(np.zeros((2, 3))), "fewer estimated labels"),
    (lambda: match_labels([[np.nan]]), "NaN"),
    (lambda: align(np.zeros((2, 3)), np.zeros((2, 4))), r"estimated must be \(\.\.\., K_est, 4\)"),
    (lambda: align(np.zeros((2, 3)), np.zeros(3)), r"reference must be \(K_ref, D\)"),
    (lambda: align(np.zeros((2, 3)), np.zeros((2, 3)), "cosine"), "metric must be one of"),
])
def test_bad_input_is_a_data_error_naming_it(call, message):
    with pytest.raises(DataError, match=message):
        call()
