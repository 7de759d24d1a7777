"""Annealed importance sampling (AIS) for the partition function of a binary RBM.

Neal (2001): to estimate :math:`Z_B = \\sum_x p^*_B(x)` from a tractable :math:`p_A`, anneal along
:math:`p_k \\propto p_A^{1 - \\beta_k} p_B^{\\beta_k}`, :math:`0 = \\beta_0 < \\dots < \\beta_K = 1`:
draw :math:`x_0 \\sim p_A`, move :math:`x_{k} \\sim T_k(\\cdot \\mid x_{k-1})` with :math:`T_k`
leaving :math:`p_k` invariant, and weight

.. math::

    \\log w = \\sum_{k=1}^{K} \\big[\\log p^*_k(x_{k-1}) - \\log p^*_{k-1}(x_{k-1})\\big],
    \\qquad \\mathbb{E}[w] = Z_B / Z_A.

For an RBM (Salakhutdinov and Murray, 2008) the hidden layer sums out of every intermediate
distribution in closed form,

.. math::

    \\log p^*_k(v) = (1 - \\beta_k)\\, a^\\top v + \\beta_k\\, b^\\top v
        + \\sum_j \\operatorname{softplus}\\big(\\beta_k (c_j + v^\\top W_{:j})\\big),

with the base :math:`p_A`: independent visibles with biases :math:`a` (the data's log-odds, or zero)
and no weights, :math:`\\log Z_A = H \\log 2 + \\sum_i \\operatorname{softplus}(a_i)`. :math:`T_k` is
one block-Gibbs step :math:`v \\to h \\to v` of :math:`p_k`.

The estimate is :math:`\\log \\hat Z = \\log Z_A + \\log \\frac1M \\sum_m w_m`; its reported error is
the delta-method standard error of :math:`\\log \\hat Z`, :math:`\\hat\\sigma_w / (\\bar w \\sqrt M)`,
and Salakhutdinov and Murray's interval :math:`\\log(\\hat Z \\pm 3 \\hat\\sigma_{\\hat Z})`. By Jensen's
inequality :math:`\\mathbb{E}[\\log \\hat Z] \\le \\log Z`: AIS tends to *under*-estimate.

References:
    Neal (2001). Annealed importance sampling. Statistics and Computing.
    Salakhutdinov and Murray (2008). On the quantitative analysis of deep belief networks. ICML.

Example:
    >>> import numpy as np
    >>> from inference.ais import rbm_log_partition
    >>> w = np.zeros((3, 2))   # no weights: p_B = p_A, every weight is Z_B / Z_A exactly
    >>> r = rbm_log_partition(0, w, np.zeros(3), np.zeros(2), num_chains=10, num_betas=10)
    >>> bool(np.isclose(r.log_evidence, 5 * np.log(2)))
    True
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import DataError, ModelError
from inference.result import Result
from inference.rng import as_key

__all__ = ["rbm_log_partition", "default_betas"]


def default_betas(num_betas: int) -> np.ndarray:
    """Salakhutdinov and Murray's schedule shape: spaced uniformly in three stages, more densely
    near :math:`\\beta = 1` where the distributions change most (0-0.5: 10%, 0.5-0.9: 40%, 0.9-1:
    50% of the temperatures)."""
    if int(num_betas) < 2:
        raise DataError(f"num_betas must be at least 2, got {num_betas!r}")
    n = int(num_betas)
    n1, n2 = max(1, n // 10), max(1, (4 * n) // 10)
    n3 = max(1, n - n1 - n2)
    betas = np.concatenate([np.linspace(0, 0.5, n1, endpoint=False), np.linspace(0.5, 0.9, n2, endpoint=False),
                            np.linspace(0.9, 1.0, n3)])
    return np.unique(betas)


def _log_p_star(v, beta, w, b, c, a):
    return (1 - beta) * (v @ a) + beta * (v @ b) + jnp.sum(jax.nn.softplus(beta * (v @ w + c)), axis=-1)


@jax.jit
def _ais(key, w, b, c, a, betas, num_chains):
    d = w.shape[0]
    key0, key_run = jax.random.split(key)
    v = (jax.random.uniform(key0, num_chains.shape + (d,)) < jax.nn.sigmoid(a)).astype(w.dtype)  # (M, D)

    def body(carry, xs):
        v, log_w = carry
        beta_prev, beta, k = xs
        # 1. the weight increment at the current state, 2. a block-Gibbs move leaving p_k invariant
        log_w = log_w + _log_p_star(v, beta, w, b, c, a) - _log_p_star(v, beta_prev, w, b, c, a)
        kh, kv = jax.random.split(k)
        h = (jax.random.uniform(kh, v.shape[:1] + (w.shape[1],)) < jax.nn.sigmoid(beta * (v @ w + c))).astype(w.dtype)
        p_v = jax.nn.sigmoid((1 - beta) * a + beta * (h @ w.T + b))
        v = (jax.random.uniform(kv, v.shape) < p_v).astype(w.dtype)
        return (v, log_w), None

    keys = jax.random.split(key_run, betas.shape[0] - 1)
    (v, log_w), _ = jax.lax.scan(body, (v, jnp.zeros(v.shape[0], w.dtype)), (betas[:-1], betas[1:], keys))
    return log_w, v


def rbm_log_partition(key, weights, visible_bias, hidden_bias, *, num_chains: int = 100, num_betas: int = 1000,
                      betas=None, base_visible_bias=None) -> Result:
    """AIS estimate of an RBM's :math:`\\log Z` (see the module docstring).

    Args:
        key: a JAX key or an int seed.
        weights, visible_bias, hidden_bias: :math:`W (D, H)`, :math:`b (D,)`, :math:`c (H,)`.
        num_chains: :math:`M` independent annealing runs.
        num_betas: the number of temperatures (:func:`default_betas`), unless ``betas`` is given.
        betas: an increasing schedule from 0 to 1.
        base_visible_bias: :math:`a` (D,), e.g. ``log(mean / (1 - mean))`` of the training data
            (Salakhutdinov and Murray's choice); zero when absent.

    Returns:
        ``Result(method="ais", log_evidence=log Z estimate, log_evidence_kind="estimate",
        diagnostics={"stderr": delta-method s.e. of log Z-hat, "lower", "upper": log(Z-hat -/+
        3 s.e.(Z-hat)) (lower is -inf when the interval reaches 0), "log_weights" (M,),
        "log_z_base", "ess": (sum w)^2 / sum w^2, "num_betas"})``.
    """
    start = time.perf_counter()
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or 0 in w.shape:
        raise ModelError(f"weights must have shape (n_visible, n_hidden) with both > 0, got {w.shape}")
    b = np.asarray(visible_bias, dtype=np.float64)
    c = np.asarray(hidden_bias, dtype=np.float64)
    a = np.zeros(w.shape[0]) if base_visible_bias is None else np.asarray(base_visible_bias, dtype=np.float64)
    for name, x, n in (("visible_bias", b, w.shape[0]), ("hidden_bias", c, w.shape[1]), ("base_visible_bias", a, w.shape[0])):
        if x.shape != (n,):
            raise ModelError(f"{name} has shape {x.shape}, expected ({n},) to match weights {w.shape}")
    for name, x in (("weights", w), ("visible_bias", b), ("hidden_bias", c), ("base_visible_bias", a)):
        if not np.all(np.isfinite(x)):
            raise ModelError(f"{name} holds NaN or inf")
    if int(num_chains) < 2:
        raise DataError(f"num_chains must be at least 2 (the error needs a spread), got {num_chains!r}")
    schedule = default_betas(num_betas) if betas is None else np.asarray(betas, dtype=np.float64)
    if schedule.ndim != 1 or len(schedule) < 2 or schedule[0] != 0 or schedule[-1] != 1 or np.any(np.diff(schedule) <= 0):
        raise DataError("betas must increase strictly from 0 to 1")
    log_w, _ = _ais(as_key(key), jnp.asarray(w), jnp.asarray(b), jnp.asarray(c), jnp.asarray(a),
                    jnp.asarray(schedule), jnp.zeros(int(num_chains)))
    log_w = np.asarray(log_w)
    log_z_a = w.shape[1] * np.log(2.0) + np.logaddexp(0.0, a).sum()
    top = log_w.max()
    scaled = np.exp(log_w - top)  # w / max w
    mean = scaled.mean()
    sd = scaled.std(ddof=1)
    m = len(log_w)
    estimate = log_z_a + top + np.log(mean)
    se_z = sd / np.sqrt(m)  # s.e. of Z-hat, in units of max w
    stderr = se_z / mean  # delta method: s.e. of log Z-hat
    lower = log_z_a + top + np.log(mean - 3 * se_z) if mean > 3 * se_z else -np.inf
    upper = log_z_a + top + np.log(mean + 3 * se_z)
    return Result(
        method="ais",
        log_evidence=float(estimate),
        log_evidence_kind="estimate",
        seconds=time.perf_counter() - start,
        diagnostics={"stderr": float(stderr), "lower": float(lower), "upper": float(upper), "log_weights": log_w,
                     "log_z_base": float(log_z_a), "ess": float(scaled.sum() ** 2 / (scaled**2).sum()),
                     "num_betas": int(len(schedule))},
    )
