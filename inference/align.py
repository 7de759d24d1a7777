"""Label alignment: mixtures, HMMs and topic models are identified only up to a relabelling.

A fitted model with :math:`K` components (topics, hidden states) describes the same distribution
under any permutation of its labels, so comparing it with a reference (the truth, another fit,
another posterior draw) first pairs each reference label :math:`k` with an estimated label
:math:`\\pi(k)`, the one assignment that minimises the total cost

.. math::
    \\pi^\\star = \\arg\\min_{\\pi\\ \\text{injective}} \\sum_{k=1}^{K_\\text{ref}} C_{\\pi(k), k},

a linear assignment problem solved exactly in :math:`O(K^3)` by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``, Crouse 2016) instead of enumerating the :math:`K!`
permutations.

- :func:`match_labels` ``(cost) -> perm``: the assignment for a cost matrix ``(K_est, K_ref)``.
- :func:`align` ``(estimated, reference, metric) -> (perm, distance)``: the cost from per-label
  vectors (topic-word rows, component means, emission rows) under a named metric, for one
  estimate or a batch of them (posterior draws).

The convention throughout: estimated label ``perm[k]`` is matched to reference label ``k``, so
``estimated[perm]`` is the estimate relabelled into the reference's order.

References:
    Kuhn (1955). The Hungarian method for the assignment problem. Naval Research Logistics Quarterly.
    Crouse (2016). On implementing 2D rectangular assignment algorithms. IEEE Trans. Aerospace
    and Electronic Systems.
    Stephens (2000). Dealing with label switching in mixture models. JRSS B.

Example:
    >>> import numpy as np
    >>> from inference.align import align
    >>> truth = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> perm, tv = align(truth[::-1], truth)  # the estimate has its labels swapped
    >>> perm.tolist(), tv.round(12).tolist()
    ([1, 0], [0.0, 0.0])
"""

from __future__ import annotations

import numpy as np

from inference.errors import DataError

__all__ = ["match_labels", "align", "METRICS"]

METRICS = ("tv", "l1", "euclidean")


def match_labels(cost) -> np.ndarray:
    """The assignment ``perm`` (shape ``(K_ref,)``) minimising :math:`\\sum_k C_{\\mathrm{perm}[k], k}`.

    Args:
        cost: ``(K_est, K_ref)`` with ``K_est >= K_ref``: ``cost[j, k]`` is the cost of matching
            estimated label ``j`` with reference label ``k``. Finite values.

    Returns:
        ``perm`` of distinct estimated labels; ``perm[k]`` is matched to reference label ``k``.

    Example:
        >>> match_labels([[5.0, 0.0], [0.0, 5.0]]).tolist()
        [1, 0]
    """
    from scipy.optimize import linear_sum_assignment

    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise DataError(f"cost must be a (K_est, K_ref) matrix, got shape {c.shape}")
    if c.shape[0] < c.shape[1]:
        raise DataError(f"cost has fewer estimated labels ({c.shape[0]}) than reference labels ({c.shape[1]}); "
                        "every reference label needs its own match")
    if not np.all(np.isfinite(c)):
        raise DataError("cost holds NaN or infinite values")
    rows, cols = linear_sum_assignment(c.T)  # rows: reference labels 0..K_ref-1 in order
    return cols[np.argsort(rows)]


def _pairwise(estimated, reference, metric):
    diff = estimated[..., :, None, :] - reference[None, :, :]  # (..., K_est, K_ref, D)
    if metric == "tv":
        return 0.5 * np.abs(diff).sum(-1)
    if metric == "l1":
        return np.abs(diff).sum(-1)
    return np.sqrt((diff**2).sum(-1))


def align(estimated, reference, metric: str = "tv") -> tuple[np.ndarray, np.ndarray]:
    """Match the labels of ``estimated`` to those of ``reference`` by the Hungarian algorithm.

    The cost of pairing estimated label :math:`j` with reference label :math:`k` is a distance
    between their vectors: ``"tv"`` :math:`\\tfrac12 \\sum_d |e_{jd} - r_{kd}|` (rows that are
    distributions: topics, emission rows), ``"l1"`` :math:`\\sum_d |e_{jd} - r_{kd}|`,
    ``"euclidean"`` :math:`\\lVert e_j - r_k \\rVert_2` (component means).

    Args:
        estimated: ``(K_est, D)``, or ``(..., K_est, D)`` for a batch (e.g. posterior draws
            ``(S, K, D)``), each element aligned on its own.
        reference: ``(K_ref, D)`` with ``K_ref <= K_est``.
        metric: one of :data:`METRICS`.

    Returns:
        ``(perm, distance)``, both ``(..., K_ref)``: estimated label ``perm[..., k]`` is matched to
        reference label ``k`` at ``distance[..., k]``.

    Example:
        >>> import numpy as np
        >>> draws = np.array([[[0.0], [3.0]], [[3.1], [0.1]]])  # (S=2, K=2, D=1), the second swapped
        >>> align(draws, np.array([[0.0], [3.0]]), "euclidean")[0].tolist()
        [[0, 1], [1, 0]]
    """
    if metric not in METRICS:
        raise DataError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    est = np.asarray(estimated, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2:
        raise DataError(f"reference must be (K_ref, D), got shape {ref.shape}")
    if est.ndim < 2 or est.shape[-1] != ref.shape[1]:
        raise DataError(f"estimated must be (..., K_est, {ref.shape[1]}) to match reference {ref.shape}, "
                        f"got shape {est.shape}")
    cost = _pairwise(est, ref, metric)  # (..., K_est, K_ref)
    batch = cost.shape[:-2]
    flat = cost.reshape((-1,) + cost.shape[-2:])
    perms = np.stack([match_labels(c) for c in flat])  # (B, K_ref)
    dist = np.take_along_axis(flat, perms[:, None, :], axis=1)[:, 0, :]  # (B, K_ref)
    return perms.reshape(batch + perms.shape[-1:]), dist.reshape(batch + dist.shape[-1:])
