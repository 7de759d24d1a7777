"""Exact inference on chains: forward-backward, Viterbi and forward-filter backward-sample.

A hidden Markov chain over :math:`K` states with observations :math:`x_{0:T-1}` has the joint

.. math::

    p(z_{0:T-1}, x_{0:T-1}) = \\pi_{z_0}\\, e_0(z_0) \\prod_{t=1}^{T-1} A_{z_{t-1} z_t}\\, e_t(z_t),
    \\qquad e_t(k) = p(x_t \\mid z_t = k).

Everything below works on three arrays only, in log space, and knows nothing of model classes:
``log_initial`` :math:`\\log \\pi` (K,), ``log_transition`` :math:`\\log A` (K, K) and
``log_likelihoods`` :math:`\\log e_t(k)` (T, K). The kernels are jitted ``lax.scan``\\ s; a batch of
sequences of different lengths is padded to a common ``T`` and run at once with ``vmap`` (steps at
``t >= length`` neither emit nor move). :func:`run_batch` picks, on the host, the variant that
fits a batch: without masks when every sequence fills ``T``, unbatched for one sequence, dot
products in the linear-space steps for many, and the arithmetic below.

1. **Filter** (forward): :math:`\\alpha_t(k) = p(z_t = k \\mid x_{0:t})`, kept normalised, with
   :math:`c_t = p(x_t \\mid x_{0:t-1})` and :math:`\\log p(x) = \\sum_t \\log c_t`.
2. **Backward**: :math:`\\beta_t(k) \\propto p(x_{t+1:T-1} \\mid z_t = k)`, normalised per step.
3. **Smoother**: :math:`\\gamma_t(k) = p(z_t = k \\mid x) \\propto \\alpha_t(k) \\beta_t(k)` and the
   pair marginals :math:`\\xi_t(i, j) \\propto \\alpha_{t-1}(i) A_{ij} e_t(j) \\beta_t(j)`.
4. **Viterbi**: max-product, :math:`\\delta_t(j) = \\max_i \\delta_{t-1}(i) + \\log A_{ij} + \\log e_t(j)`,
   then backtracking through the argmax pointers (always in log space: no exponential is taken).
   One long sequence runs in two passes (:func:`_viterbi_blocked`), a batch in one scan over time
   (:func:`_viterbi_batch`); every variant forms the same sums, so all give the same path.
5. **Sampling**: forward filter, then :math:`z_{T-1} \\sim \\alpha_{T-1}` and
   :math:`z_t \\sim \\alpha_t(\\cdot) A_{\\cdot, z_{t+1}}` backwards.

**Arithmetic.** Forward-backward runs in one of two arithmetics, with the same results:

- *log space*: each log-sum-exp subtracts the maximum of its own terms, so nothing underflows
  whatever the model (:math:`K^2` exponentials a step);
- *linear space*, when every transition probability is at least :math:`a = e^{-R}`,
  :math:`R` = :data:`SCALED_RANGE` = 200: step 0 in log space, then
  :math:`\\alpha_t \\propto (\\alpha_{t-1} A) \\odot \\tilde e_t` with
  :math:`\\tilde e_t = e_t / \\max_k e_t(k)` and one rescaling to sum 1 a step, the scales kept
  in log space (:math:`K` exponentials a step, the products as dot products). The condition
  makes it exact to rounding: every predicted probability :math:`(\\alpha_{t-1} A)_j \\ge a`
  and :math:`\\max_k \\tilde e_t(k) = 1`, so each step's sum is at least :math:`a`; a term lost
  to underflow (below :math:`2.2 \\cdot 10^{-308}`) is then below :math:`10^{-308} e^{R}` of its
  step, and no later evidence can raise it by more than :math:`e^{R}`
  (:math:`p(x_{t+1:} \\mid z_t = i) / p(x_{t+1:} \\mid z_t = j) \\le \\max A / \\min A`):
  a relative error below :math:`T K 10^{-308 + 2R/\\ln 10} \\approx T K \\cdot 10^{-134}`. The
  backward pass is bounded the same way. Transition matrices with smaller entries (exact zeros
  of left-to-right chains, say) take the log-space kernels. Both are tested at
  :math:`T = 10^6` and against each other.

The public entry points ``log_evidence``, ``marginals``, ``map`` and ``sample`` take a model with
a ``chain(x, lengths=None)`` method (``pgm.HMM``) or a :class:`ChainPotentials`, and return a
:class:`~inference.result.Result`, like their namesakes in ``inference.exact`` (which dispatch here).
``memory_budget`` is accepted for that dispatch and unused: a chain needs O(N T K) memory.

References:
    Rabiner (1989). A tutorial on hidden Markov models and selected applications in speech recognition.
    Viterbi (1967). Error bounds for convolutional codes and an asymptotically optimum decoding algorithm.
    Chib (1996). Calculating posterior distributions and modal estimates in Markov mixture models.

Example:
    >>> import numpy as np
    >>> from inference import chain
    >>> log_pi = np.log([0.6, 0.4]); log_A = np.log([[0.7, 0.3], [0.4, 0.6]])
    >>> log_e = np.log([[0.5, 0.1], [0.4, 0.3], [0.1, 0.6]])     # Wikipedia's "healthy / fever"
    >>> path, score = chain.hmm_viterbi(log_pi, log_A, log_e)
    >>> [int(s) for s in path], round(float(np.exp(score)), 5)
    ([0, 0, 1], 0.01512)
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import DataError, EvidenceError, ModelError
from inference.result import Result

# ----------------------------------------------------------------------------- helpers


def _lse(a, axis):
    """log-sum-exp along ``axis``; all ``-inf`` gives ``-inf`` (never NaN)."""
    m = jnp.max(a, axis=axis, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return jnp.squeeze(m, axis) + jnp.log(jnp.sum(jnp.exp(a - m), axis=axis))


def _normalise(a):
    """``a - logsumexp(a)`` over the last axis, and the log normaliser (``-inf`` rows stay ``-inf``)."""
    c = _lse(a, -1)
    safe = jnp.where(jnp.isfinite(c), c, 0.0)
    return a - safe[..., None], c


def _row_sum(u):
    """Sum over the last axis, unrolled for a few states (XLA's CPU reduction over a short minor
    axis is slow)."""
    if u.shape[-1] > 16:
        return jnp.sum(u, axis=-1)
    total = u[..., 0]
    for k in range(1, u.shape[-1]):
        total = total + u[..., k]
    return total


def _rescale(u):
    """``u / sum(u)`` over the last axis and the sum; an all-zero row stays zero (never NaN)."""
    s = _row_sum(u)
    return u / jnp.where(s > 0, s, 1.0)[..., None], s


def _valid(T, length):
    """(T,) bool, or None for a sequence known to fill all T steps (no masking compiled in)."""
    return None if length is None else jnp.arange(T) < length


def _pick(ok, new, old):
    """``new`` on valid steps, ``old`` past the end (``ok`` None: every step is valid)."""
    return new if ok is None else jnp.where(ok, new, old)


def _scan(step, carry, xs, valid, reverse=False):
    """``lax.scan`` over ``xs`` and, when the sequence is masked, its validity flags."""
    if valid is None:
        return jax.lax.scan(lambda c, x: step(c, x, None), carry, xs, reverse=reverse)
    return jax.lax.scan(lambda c, x: step(c, *x), carry, (xs, valid), reverse=reverse)


def _row_times(v, A, dense):
    """:math:`v A` for one (K,) row or vmapped rows: a dot product where rows are many (``dense``),
    a broadcast sum otherwise (XLA's CPU dot has a fixed cost that dominates one small row)."""
    return v @ A if dense else jnp.sum(v[..., :, None] * A, axis=-2)


def _times_column(A, v, dense):
    """:math:`A v` (see :func:`_row_times`)."""
    return v @ A.T if dense else jnp.sum(A * v[..., None, :], axis=-1)


SCALED_RANGE = 200.0
"""Nats: the linear-space kernels run when every transition probability is at least
:math:`e^{-200}`; otherwise the log-space ones (see "Arithmetic" in the module docstring)."""


def _scaled_ok(log_transition):
    return jnp.min(log_transition) >= -SCALED_RANGE


def _emission_scale(log_likelihoods, valid):
    """``m_t = max_k log e_t(k)`` (T,) and :math:`\\tilde e_t(k) = e_t(k) / e^{m_t}` (T, K) in
    [0, 1]; steps past the end get ``m_t = 0``, :math:`\\tilde e_t = 1`."""
    ll = log_likelihoods if valid is None else jnp.where(valid[:, None], log_likelihoods, 0.0)
    m = jnp.max(ll, axis=-1)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m, jnp.exp(ll - m[:, None])


# ----------------------------------------------------------------------------- log-space kernels
# One sequence each: log_initial (K,), log_transition (K, K), log_likelihoods (T, K) and
# length () or None (all T steps valid). Batches are vmapped over log_likelihoods and lengths.


def _log_filter(log_initial, log_transition, log_likelihoods, length):
    """Forward pass: normalised log filtered marginals (T, K) and log c_t (T,)."""
    valid = _valid(log_likelihoods.shape[0], length)

    def step(log_pred, ll, ok):
        log_alpha, log_c = _normalise(log_pred + ll)
        next_pred = _lse(log_alpha[:, None] + log_transition, 0)
        return _pick(ok, next_pred, log_pred), (log_alpha, _pick(ok, log_c, 0.0))

    _, (log_alpha, log_c) = _scan(step, log_initial, log_likelihoods, valid)
    return log_alpha, log_c


def _log_backward(log_transition, log_likelihoods, length):
    """Backward pass: normalised log beta (T, K); beta_t = 1 for t >= length - 1."""
    T, K = log_likelihoods.shape

    def step(log_beta, ll, ok):  # ll of step t; log_beta is beta_t, we return beta_{t-1}
        prev, _ = _normalise(_lse(log_transition + (ll + log_beta)[None, :], 1))
        return _pick(ok, prev, jnp.zeros(K)), log_beta

    _, log_beta = _scan(step, jnp.zeros(K), log_likelihoods, _valid(T, length), reverse=True)
    return log_beta


def _log_expected_transitions(log_alpha, log_transition, log_likelihoods, log_beta, length, block=1024):
    """:math:`\\sum_{t=1}^{L-1} \\xi_t(i, j)`, each :math:`\\xi_t` normalised in log space.

    Summed over time blocks so that no (T, K, K) array is ever held.
    """
    T, K = log_likelihoods.shape
    if T == 1:
        return jnp.zeros((K, K), log_likelihoods.dtype)
    right = log_likelihoods[1:] + log_beta[1:]  # (T-1, K): e_t(j) beta_t(j), t = 1..T-1
    left = log_alpha[:-1]  # alpha_{t-1}(i)
    valid = jnp.ones(T - 1, bool) if length is None else _valid(T, length)[1:]
    n = T - 1
    pad = (-n) % block if n > block else 0
    size = block if n > block else n

    def pad_to(a, value):
        return jnp.concatenate([a, jnp.full((pad,) + a.shape[1:], value, a.dtype)]) if pad else a

    left, right, valid = pad_to(left, 0.0), pad_to(right, 0.0), pad_to(valid, False)

    def one_block(args):
        lb, rb, vb = args
        s = lb[:, :, None] + log_transition[None] + rb[:, None, :]  # (B, K, K)
        s = s - _lse(s.reshape(s.shape[0], -1), -1)[:, None, None]
        return jnp.sum(jnp.where(vb[:, None, None], jnp.exp(s), 0.0), axis=0)

    shape = (-1, size)
    blocks = (left.reshape(shape + (K,)), right.reshape(shape + (K,)), valid.reshape(shape))
    return jnp.sum(jax.lax.map(one_block, blocks), axis=0)


def _log_posteriors(log_initial, log_transition, log_likelihoods, length, pairs):
    """``(log p(x), gamma (T, K) zero past the end, sum_t xi_t (K, K) or zeros)``."""
    T, K = log_likelihoods.shape
    log_alpha, log_c = _log_filter(log_initial, log_transition, log_likelihoods, length)
    log_beta = _log_backward(log_transition, log_likelihoods, length)
    log_gamma, _ = _normalise(log_alpha + log_beta)
    gamma = _pick(None if length is None else _valid(T, length)[:, None], jnp.exp(log_gamma), 0.0)
    if pairs:
        xi = _log_expected_transitions(log_alpha, log_transition, log_likelihoods, log_beta, length)
    else:
        xi = jnp.zeros((K, K), log_likelihoods.dtype)
    return jnp.sum(log_c), gamma, xi


# ----------------------------------------------------------------------------- linear-space kernels


def _scaled_filter(log_initial, log_transition, log_likelihoods, length, keep, dense):
    """Forward pass in linear space: alpha (T, K) (None unless ``keep``), log c_t (T,), the
    scaled emissions and transition matrix for the backward pass, and the step sums
    :math:`s_t = \\sum u` (T-1,) (1 past the end).

    Step 0 runs in log space (``log_initial`` may hold ``-inf``); each later step is
    :math:`u = (\\alpha_{t-1} A) \\odot \\tilde e_t`, :math:`\\alpha_t = u / \\sum u`,
    :math:`\\log c_t = \\log \\sum u + m_t`.
    """
    T = log_likelihoods.shape[0]
    valid = _valid(T, length)
    m, e = _emission_scale(log_likelihoods, valid)
    A = jnp.exp(log_transition)
    log_alpha0, log_c0 = _normalise(log_initial + log_likelihoods[0])
    alpha0 = jnp.exp(log_alpha0)

    def step(alpha, e_t, ok):
        new, s = _rescale(_row_times(alpha, A, dense) * e_t)
        return _pick(ok, new, alpha), (new if keep else None, _pick(ok, s, 1.0))

    _, (alpha, s) = _scan(step, alpha0, e[1:], None if valid is None else valid[1:])
    log_c = jnp.concatenate([log_c0[None], jnp.log(s) + m[1:]])
    if keep:
        alpha = jnp.concatenate([alpha0[None], alpha])
    return alpha, log_c, e, A, s


def _scaled_backward(A, e, valid, dense):
    """Backward pass in linear space: beta (T, K), rescaled to sum 1 at each step; beta_t = 1
    for t >= length - 1."""
    K = A.shape[0]

    def step(beta, e_t, ok):  # e_t of step t; beta is beta_t, we return beta_{t-1}
        prev, _ = _rescale(_times_column(A, e_t * beta, dense))
        return _pick(ok, prev, jnp.ones(K, A.dtype)), beta

    _, beta = _scan(step, jnp.ones(K, A.dtype), e, valid, reverse=True)
    return beta


def _pair_factors(alpha, e, beta, s, g, valid):
    """``(left, right)``, both (T-1, K), with :math:`\\sum_t \\xi_t = A \\odot (\\text{left}^\\top \\text{right})`.

    :math:`\\xi_t(i, j) = \\alpha_{t-1}(i) A_{ij} r_t(j) / n_t` with :math:`r_t = \\tilde e_t \\odot \\beta_t`
    and :math:`n_t = \\sum_j (\\alpha_{t-1} A)_j r_t(j) = s_t \\sum_j \\alpha_t(j) \\beta_t(j)` (``s``
    the forward step sums, ``g`` (T,) the sums of :math:`\\alpha_t \\beta_t`), so that each
    :math:`\\xi_t` sums to one: left is :math:`\\alpha_{t-1}`, right is :math:`r_t / n_t` (zero past
    the end).
    """
    r = e[1:] * beta[1:]
    n = s * g[1:]
    ok = n > 0 if valid is None else valid[1:] & (n > 0)
    w = jnp.where(ok, 1.0 / jnp.where(n > 0, n, 1.0), 0.0)
    return alpha[:-1], r * w[:, None]


def _scaled_posteriors(log_initial, log_transition, log_likelihoods, length, pairs, dense):
    """As :func:`_log_posteriors`, in linear space."""
    T, K = log_likelihoods.shape
    valid = _valid(T, length)
    alpha, log_c, e, A, s = _scaled_filter(log_initial, log_transition, log_likelihoods, length, True, dense)
    beta = _scaled_backward(A, e, valid, dense)
    gamma, g = _rescale(alpha * beta)
    gamma = _pick(None if valid is None else valid[:, None], gamma, 0.0)
    if pairs == "factors":  # the batch E-step contracts them over sequences and steps at once
        return jnp.sum(log_c), gamma, _pair_factors(alpha, e, beta, s, g, valid), jnp.zeros((K, K), A.dtype)
    if pairs:
        left, right = _pair_factors(alpha, e, beta, s, g, valid)
        xi = A * (left.T @ right)
    else:
        xi = jnp.zeros((K, K), log_likelihoods.dtype)
    return jnp.sum(log_c), gamma, xi


# ----------------------------------------------------------------------------- both arithmetics
# ``arithmetic``: "linear" or "log" where the caller has checked log_transition on the host,
# None to decide inside the compiled program (lax.cond).


def _choose(arithmetic, scaled, logspace, log_initial, log_transition, log_likelihoods):
    if arithmetic == "linear":
        return scaled(log_initial, log_transition, log_likelihoods)
    if arithmetic == "log":
        return logspace(log_initial, log_transition, log_likelihoods)
    return jax.lax.cond(_scaled_ok(log_transition), scaled, logspace, log_initial, log_transition, log_likelihoods)


def _log_likelihood(log_initial, log_transition, log_likelihoods, length, dense=False, arithmetic=None):
    """:math:`\\log p(x_{0:L-1})` alone: a forward pass that keeps only the normalisers."""

    def scaled(li, lt, ll):
        return jnp.sum(_scaled_filter(li, lt, ll, length, False, dense)[1])

    def logspace(li, lt, ll):
        return jnp.sum(_log_filter(li, lt, ll, length)[1])

    return _choose(arithmetic, scaled, logspace, log_initial, log_transition, log_likelihoods)


def _filtered(log_initial, log_transition, log_likelihoods, length, dense=False, arithmetic=None):
    """``(log p(x), log alpha (T, K))``."""

    def scaled(li, lt, ll):
        alpha, log_c = _scaled_filter(li, lt, ll, length, True, dense)[:2]
        return jnp.sum(log_c), jnp.log(alpha)

    def logspace(li, lt, ll):
        log_alpha, log_c = _log_filter(li, lt, ll, length)
        return jnp.sum(log_c), log_alpha

    return _choose(arithmetic, scaled, logspace, log_initial, log_transition, log_likelihoods)


def _posteriors(log_initial, log_transition, log_likelihoods, length, pairs, dense=False, arithmetic=None):
    """``(log p(x), gamma (T, K), sum_t xi_t (K, K) if pairs else zeros)``."""

    def scaled(li, lt, ll):
        return _scaled_posteriors(li, lt, ll, length, pairs, dense)

    def logspace(li, lt, ll):
        return _log_posteriors(li, lt, ll, length, pairs)

    return _choose(arithmetic, scaled, logspace, log_initial, log_transition, log_likelihoods)


def _first_argmax(v):
    """Index of the largest entry along the last axis, the lowest one on ties, as K unrolled
    compare-and-selects (faster on CPU than XLA's variadic argmax reduction)."""
    best, index = v[..., 0], jnp.zeros(v.shape[:-1], jnp.int32)
    for i in range(1, v.shape[-1]):
        better = v[..., i] > best
        best, index = jnp.where(better, v[..., i], best), jnp.where(better, i, index)
    return index


def _pointer_dtype(K):
    """Argmax pointers are stored as int8 where the states fit (a quarter of int32's memory traffic)."""
    return jnp.int8 if K <= 127 else jnp.int32


def _max_product_step(delta, log_transition):
    """:math:`\max_i \delta(i) + \log A_{ij}` and its first argmax :math:`i`, for every ``j``
    (``delta`` (..., K)). A pairwise tournament over ``i`` (the lower index wins ties, so the
    winner is the first argmax): half the dependent compare-and-selects of a running maximum."""
    dtype = _pointer_dtype(log_transition.shape[0])
    values = [delta[..., i : i + 1] + log_transition[i] for i in range(log_transition.shape[0])]
    index = [jnp.asarray(i, dtype) for i in range(len(values))]
    while len(values) > 1:
        pairs = range(0, len(values) - 1, 2)
        better = [values[a + 1] > values[a] for a in pairs]
        odd = len(values) % 2
        values, index = (
            [jnp.where(b, values[a + 1], values[a]) for a, b in zip(pairs, better)] + values[len(values) - odd:],
            [jnp.where(b, index[a + 1], index[a]) for a, b in zip(pairs, better)] + index[len(index) - odd:],
        )
    return values[0], jnp.broadcast_to(index[0], values[0].shape)


def _max_product_columns(delta, log_transition, dtype):
    """:func:`_max_product_step` with the states on the first axis: ``delta`` (K, n) holds ``n``
    chains side by side; returns ``best`` (K, n) and ``pointer`` (K, n) of ``dtype``."""
    best = delta[0:1] + log_transition[0][:, None]
    pointer = jnp.zeros(best.shape, dtype)
    for i in range(1, log_transition.shape[0]):
        value = delta[i : i + 1] + log_transition[i][:, None]
        better = value > best
        best, pointer = jnp.where(better, value, best), jnp.where(better, jnp.asarray(i, dtype), pointer)
    return best, pointer


VITERBI_BLOCK = 2048
"""One unmasked sequence of at least twice this many steps is decoded in blocks of this many
steps by :func:`_viterbi_blocked`."""


def _viterbi_blocked(log_initial, log_transition, log_likelihoods, block):
    """The forward pass of :func:`_viterbi` for one unmasked sequence, in two passes.

    Writing a (K,) row of pointers or scores at every step of a sequential loop costs XLA on CPU
    more than the step itself. Pass 1 therefore runs the recursion with nothing but
    :math:`\delta` in the carry and keeps :math:`\delta` at the start of every block of ``block``
    steps; pass 2 recomputes every block from its start, all blocks side by side (states x blocks,
    so each step is one vector operation over the blocks), and keeps the argmax pointers (int8 for
    up to 127 states). The steps left over after the last whole block run as in the plain pass.
    Both passes form the same sums in the same order as the step-by-step pass (a maximum is exact),
    so the scores, pointers and path are identical to it.

    Returns ``(last_delta (K,), pointers (T - 1, K))``.
    """
    T, K = log_likelihoods.shape
    n_blocks = (T - 1) // block
    dtype = _pointer_dtype(K)

    def advance(t, delta):
        return jnp.max(delta[:, None] + log_transition, axis=0) + log_likelihoods[t]

    def run_block(delta, b):
        return jax.lax.fori_loop(1 + b * block, 1 + (b + 1) * block, advance, delta), delta

    middle, starts = jax.lax.scan(run_block, log_initial + log_likelihoods[0], jnp.arange(n_blocks))
    steps = jnp.transpose(log_likelihoods[1 : 1 + n_blocks * block].reshape(n_blocks, block, K), (1, 2, 0))

    def again(delta, ll):  # delta, ll: (K, n_blocks)
        best, pointer = _max_product_columns(delta, log_transition, dtype)
        return best + ll, pointer

    _, pointers = jax.lax.scan(again, starts.T, steps)  # (block, K, n_blocks)

    def rest(delta, ll):
        best, pointer = _max_product_step(delta, log_transition)
        return best + ll, pointer

    last_delta, tail = jax.lax.scan(rest, middle, log_likelihoods[1 + n_blocks * block :])
    pointers = jnp.transpose(pointers, (2, 0, 1)).reshape(n_blocks * block, K)
    return last_delta, jnp.concatenate([pointers, tail])


def _viterbi(log_initial, log_transition, log_likelihoods, length, dense=False, arithmetic=None):
    """Max-product in log space for one sequence; see :func:`hmm_viterbi`.

    The forward pass keeps only :math:`\delta_t` (a fused max-reduction, unrolled four steps a
    loop iteration) and the pointers are computed afterwards for all steps at once from the stored
    :math:`\delta_{t-1}` (the same sums, so the same argmax); a long unmasked sequence goes through
    :func:`_viterbi_blocked`. (Batches: :func:`_viterbi_batch`.)
    """
    T, K = log_likelihoods.shape
    valid = _valid(T, length)
    steps_valid = None if valid is None else valid[1:]
    delta0 = log_initial + log_likelihoods[0]

    if valid is None and T - 1 >= 2 * VITERBI_BLOCK:
        last_delta, pointers = _viterbi_blocked(log_initial, log_transition, log_likelihoods, VITERBI_BLOCK)
    else:

        def step(delta, ll, ok):
            new = _pick(ok, jnp.max(delta[:, None] + log_transition, axis=0) + ll, delta)
            return new, new

        if valid is None:
            last_delta, deltas = jax.lax.scan(lambda c, x: step(c, x, None), delta0, log_likelihoods[1:], unroll=4)
        else:
            last_delta, deltas = jax.lax.scan(lambda c, x: step(c, *x), delta0, (log_likelihoods[1:], steps_valid), unroll=4)
        pointers = jnp.concatenate(  # for steps 1..T-1, from delta_0..delta_{T-2}
            [_max_product_step(delta0[None], log_transition)[1], _max_product_step(deltas[:-1], log_transition)[1]]
        )[: T - 1]
        if steps_valid is not None:  # past the end: z_{t-1} = z_t
            pointers = jnp.where(steps_valid[:, None], pointers, jnp.arange(K, dtype=pointers.dtype))
    last = _first_argmax(last_delta)

    def back(state, pointer, ok):  # pointer of step t; state is z_t
        prev = pointer[state].astype(jnp.int32)
        return prev, prev

    _, path = _scan(back, last, pointers, None, reverse=True)
    path = jnp.concatenate([path, last[None]])
    return _pick(valid, path, -1), last_delta[last]


def _viterbi_batch(log_initial, log_transition, log_likelihoods, lengths):
    """:func:`_viterbi` for a batch ``log_likelihoods`` (N, T, K) written for the batch rather than
    vmapped: the scan runs over time with the (N, K) scores of all sequences in its carry and keeps
    int8 pointers (N, K) a step; backtracking gathers each sequence's pointer. ``lengths`` (N,)
    or None (every sequence fills T). The same sums and first-argmax rule as :func:`_viterbi`, so
    the same path (tested)."""
    N, T, K = log_likelihoods.shape
    steps = jnp.swapaxes(log_likelihoods, 0, 1)  # (T, N, K)
    stay = jnp.arange(K, dtype=_pointer_dtype(K))
    valid = None if lengths is None else jnp.arange(T)[:, None] < lengths[None, :]  # (T, N)

    def step(delta, inputs):
        ll, ok = inputs if valid is not None else (inputs, None)
        best, pointer = _max_product_step(delta, log_transition)
        if ok is None:
            return best + ll, pointer
        return jnp.where(ok[:, None], best + ll, delta), jnp.where(ok[:, None], pointer, stay)

    xs = steps[1:] if valid is None else (steps[1:], valid[1:])
    last_delta, pointers = jax.lax.scan(step, log_initial + steps[0], xs)
    last = _first_argmax(last_delta)

    def back(state, pointer):  # pointer (N, K) of step t; state (N,) is z_t
        prev = jnp.take_along_axis(pointer, state[:, None], axis=1)[:, 0].astype(jnp.int32)
        return prev, prev

    _, path = jax.lax.scan(back, last, pointers, reverse=True)
    path = jnp.concatenate([path, last[None]]).T  # (N, T)
    if valid is not None:
        path = jnp.where(valid.T, path, -1)
    return path, jnp.take_along_axis(last_delta, last[:, None], axis=1)[:, 0]


def _sample(key, log_initial, log_transition, log_likelihoods, length, dense=False):
    """Forward filtering, backward sampling; see :func:`hmm_posterior_sample`."""
    T = log_likelihoods.shape[0]
    valid = _valid(T, length)
    _, log_alpha = _filtered(log_initial, log_transition, log_likelihoods, length, dense)
    keys = jax.random.split(key, T)
    last = jax.random.categorical(keys[T - 1], log_alpha[T - 1])

    def step(z_next, inputs, ok):
        k, la = inputs
        logits = _pick(ok, la + log_transition[:, z_next], la)
        z = jax.random.categorical(k, logits)
        return z, z

    _, path = _scan(step, last, (keys[:-1], log_alpha[:-1]), None if valid is None else valid[1:], reverse=True)
    path = jnp.concatenate([path, last[None]])
    return _pick(valid, path, -1)


def _expected_counts(log_initial, log_transition, log_likelihoods, length, dense=False, arithmetic=None):
    """``(log p(x), gamma (T, K), (left, right) (T-1, K) each, xi (K, K))`` for one sequence:
    :math:`\\sum_t \\xi_t` is ``A * (left.T @ right) + xi`` (linear space: the factors, log space:
    xi itself), so that a batch contracts its factors over sequences and steps in one product."""
    T, K = log_likelihoods.shape

    def scaled(li, lt, ll):
        return _scaled_posteriors(li, lt, ll, length, "factors", dense)

    def logspace(li, lt, ll):
        log_z, gamma, xi = _log_posteriors(li, lt, ll, length, True)
        none = jnp.zeros((T - 1, K), ll.dtype)
        return log_z, gamma, (none, none), xi

    return _choose(arithmetic, scaled, logspace, log_initial, log_transition, log_likelihoods)


def _batch_counts(log_transition, outputs):
    """``(log p(x_n) (N,), gamma (N, T, K), initial counts (K,), transition counts (K, K))``."""
    log_z, gamma, (left, right), xi = outputs
    pairs = jnp.einsum("ntk,ntj->kj", left, right)
    return log_z, gamma, jnp.sum(gamma[:, 0], axis=0), jnp.exp(log_transition) * pairs + jnp.sum(xi, axis=0)


# ----------------------------------------------------------------------------- public kernels


@jax.jit
def hmm_filter(log_initial, log_transition, log_likelihoods, length=None):
    """Forward filtering, :math:`\\alpha_t(k) = p(z_t = k \\mid x_{0:t})`.

    Args:
        log_initial: (K,) :math:`\\log \\pi`.
        log_transition: (K, K) :math:`\\log A`, rows the previous state.
        log_likelihoods: (T, K) :math:`\\log p(x_t \\mid z_t = k)`.
        length: number of valid steps (default T); later steps are ignored.

    Returns:
        ``(log_evidence, log_filtered)``: :math:`\\log p(x_{0:L-1})` and (T, K) normalised
        :math:`\\log \\alpha_t` (rows at ``t >= length`` are meaningless).
    """
    return _filtered(log_initial, log_transition, log_likelihoods, length)


@jax.jit
def hmm_smoother(log_initial, log_transition, log_likelihoods, length=None):
    """Forward-backward smoothing: :math:`\\gamma_t(k) = p(z_t = k \\mid x_{0:T-1})`.

    Returns:
        ``(log_evidence, smoothed)``: :math:`\\log p(x)` and (T, K) probabilities; rows at
        ``t >= length`` are zero.
    """
    log_z, gamma, _ = _posteriors(log_initial, log_transition, log_likelihoods, length, False)
    return log_z, gamma


@jax.jit
def hmm_two_slice(log_initial, log_transition, log_likelihoods, length=None):
    """The E-step of Baum-Welch for one sequence.

    Returns:
        ``(log_evidence, smoothed, expected_transitions)``: :math:`\\log p(x)`, (T, K)
        :math:`\\gamma_t` (zero at ``t >= length``) and (K, K)
        :math:`\\sum_{t \\ge 1} \\xi_t(i, j) = \\sum_t p(z_{t-1} = i, z_t = j \\mid x)`.
    """
    return _posteriors(log_initial, log_transition, log_likelihoods, length, True)


@jax.jit
def hmm_viterbi(log_initial, log_transition, log_likelihoods, length=None):
    """The most probable state path :math:`\\arg\\max_z p(z \\mid x)` (max-product, log space).

    The forward pass keeps the argmax pointers (T - 1, K) and backtracking follows them.
    :math:`\\delta_t` is not shifted per step: it is the log-probability of the best path to each
    state, so near-ties are resolved to the precision of the path scores themselves (as in
    hmmlearn).

    Returns:
        ``(path, log_joint)``: (T,) int states (``-1`` at ``t >= length``) and
        :math:`\\log p(z^*, x)`. Ties go to the lowest state index.
    """
    return _viterbi(log_initial, log_transition, log_likelihoods, length)


@jax.jit
def hmm_posterior_sample(key, log_initial, log_transition, log_likelihoods, length=None):
    """One exact draw of :math:`z \\sim p(z \\mid x)` by forward filtering, backward sampling.

    Returns:
        (T,) int states, ``-1`` at ``t >= length``.
    """
    return _sample(key, log_initial, log_transition, log_likelihoods, length)


# ----------------------------------------------------------------------------- batches
# A batch is (N, T, K) log-likelihoods and (N,) lengths. Sequences that all fill T run without
# masks; one sequence runs unbatched; many run vmapped, with dot products once rows are many.

_KERNELS = {
    "log_likelihood": _log_likelihood,
    "filter": _filtered,
    "smoother": lambda *a, dense, arithmetic: _posteriors(*a, False, dense, arithmetic)[:2],
    "two_slice": functools.partial(_posteriors, pairs=True),
    "expected_counts": _expected_counts,
    "viterbi": _viterbi,
}
DENSE_ROWS = 64
"""Batches of at least this many sequences use dot products in the linear-space steps."""


@functools.lru_cache(maxsize=None)
def _batched(name, masked, single, dense, arithmetic):
    kernel = _KERNELS[name]

    def one(li, lt, ll, length):
        return kernel(li, lt, ll, length if masked else None, dense=dense, arithmetic=arithmetic)

    def run(li, lt, ll, lengths):
        if name == "viterbi" and not single:  # written for the batch: faster than vmapping one sequence's
            return _viterbi_batch(li, lt, ll, lengths if masked else None)
        if single:
            out = jax.tree_util.tree_map(lambda a: a[None], one(li, lt, ll[0], lengths[0]))
        else:
            out = jax.vmap(one, in_axes=(None, None, 0, 0))(li, lt, ll, lengths)
        return _batch_counts(lt, out) if name == "expected_counts" else out

    return jax.jit(run)


def run_batch(name, log_initial, log_transition, log_likelihoods, lengths):
    """Run kernel ``name`` over a padded batch; outputs get a leading (N,) axis.

    ``name``: ``"log_likelihood"``, ``"filter"``, ``"smoother"``, ``"two_slice"``, ``"viterbi"``
    or ``"expected_counts"`` (summed over the batch: see :func:`batch_expected_counts`);
    ``lengths`` (N,) host integers.
    """
    N, T, _ = np.shape(log_likelihoods)
    lengths = np.asarray(lengths)
    try:
        arithmetic = "linear" if np.min(np.asarray(log_transition)) >= -SCALED_RANGE else "log"
    except jax.errors.ConcretizationTypeError:  # traced: decided inside the program
        arithmetic = None
    fn = _batched(name, bool(np.any(lengths != T)), N == 1, N >= DENSE_ROWS, arithmetic)
    return fn(log_initial, log_transition, log_likelihoods, jnp.asarray(lengths, dtype=jnp.int32))


_batch_sample = jax.jit(
    jax.vmap(  # over draws
        jax.vmap(hmm_posterior_sample, in_axes=(0, None, None, 0, 0)),  # over sequences
        in_axes=(0, None, None, None, None),
    )
)


def batch_expected_counts(log_initial, log_transition, log_likelihoods, lengths):
    """Baum-Welch E-step for a padded batch: summed over sequences where that is what EM needs.

    Returns:
        ``(log_evidence (N,), gamma (N, T, K), initial_counts (K,), transition_counts (K, K))``.
    """
    return run_batch("expected_counts", log_initial, log_transition, log_likelihoods, lengths)


# ----------------------------------------------------------------------------- potentials


@dataclasses.dataclass(frozen=True)
class ChainPotentials:
    """A batch of hidden Markov chains with their evidence folded in, all in log space.

    Attributes:
        log_initial: (K,) :math:`\\log p(z_0)`.
        log_transition: (K, K) :math:`\\log p(z_t = j \\mid z_{t-1} = i)` at ``[i, j]``.
        log_likelihoods: (N, T, K) :math:`\\log p(x_{n,t} \\mid z_{n,t} = k)`, padded past each length.
        lengths: (N,) number of valid steps of each sequence (host integers).
        batched: whether the caller gave a batch (results keep the N axis) or one sequence.
    """

    log_initial: Any
    log_transition: Any
    log_likelihoods: Any
    lengths: Any
    batched: bool = True

    def __post_init__(self):
        ll = jnp.asarray(self.log_likelihoods)
        if ll.ndim != 3:
            raise DataError(f"log_likelihoods must have shape (N, T, K), got {tuple(ll.shape)}")
        N, T, K = ll.shape
        if jnp.shape(self.log_initial) != (K,) or jnp.shape(self.log_transition) != (K, K):
            raise ModelError(
                f"log_initial {jnp.shape(self.log_initial)} and log_transition "
                f"{jnp.shape(self.log_transition)} do not match K = {K} states"
            )
        lengths = np.asarray(self.lengths)
        if lengths.shape != (N,) or np.any(lengths < 1) or np.any(lengths > T):
            raise DataError(f"lengths must be N = {N} integers in 1..{T}, got {lengths.tolist()}")
        object.__setattr__(self, "lengths", lengths.astype(np.int64))
        object.__setattr__(self, "log_likelihoods", ll)

    @property
    def num_states(self) -> int:
        return int(self.log_likelihoods.shape[-1])


def _potentials(model, evidence, lengths, model_args, model_kwargs) -> ChainPotentials:
    if isinstance(model, ChainPotentials):
        return model
    if not callable(getattr(model, "chain", None)):
        raise ModelError(f"{type(model).__name__} is not a chain model: it has no chain(x, lengths) method")
    kwargs = dict(model_kwargs or {})
    if lengths is None:
        lengths = kwargs.pop("lengths", None)
    if evidence is None:
        evidence = kwargs.pop("x", None) if "x" in kwargs else (model_args[0] if model_args else None)
    if evidence is None:
        raise DataError("a chain model needs its observations x as the evidence argument")
    return model.chain(evidence, lengths=lengths)


def _run(name, p: ChainPotentials):
    return run_batch(name, p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)


def _check_evidence(log_z):
    log_z = np.asarray(log_z)
    bad = np.flatnonzero(~np.isfinite(log_z))
    if bad.size:
        raise EvidenceError(
            f"evidence has probability zero: sequence {int(bad[0])} (of {log_z.size}) is impossible "
            "under the model"
        )


def _out(p: ChainPotentials, array):
    array = np.asarray(array)
    return array if p.batched else array[0]


def _unbatch_axis1(p: ChainPotentials, array):
    array = np.asarray(array)
    return array if p.batched else array[:, 0]


# ----------------------------------------------------------------------------- entry points


def log_evidence(model, evidence=None, *, lengths=None, model_args=(), model_kwargs=None, memory_budget=None) -> Result:
    """:math:`\\log p(x) = \\sum_n \\log p(x_n)` by the forward algorithm.

    ``diagnostics["log_evidence_per_sequence"]`` holds the (N,) terms for a batch.

    Example:
        >>> import numpy as np
        >>> from pgm.hmm import HMM
        >>> from inference import chain
        >>> hmm = HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.1, 0.9]])
        >>> round(chain.log_evidence(hmm, np.array([0, 1, 1])).log_evidence, 6)
        -2.433263
    """
    start = time.perf_counter()
    p = _potentials(model, evidence, lengths, model_args, model_kwargs)
    log_z = np.asarray(_run("log_likelihood", p))
    _check_evidence(log_z)
    return Result(
        method="forward",
        log_evidence=float(np.sum(log_z)),
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={"log_evidence_per_sequence": _out(p, log_z)},
    )


def marginals(model, evidence=None, *, lengths=None, model_args=(), model_kwargs=None, memory_budget=None) -> Result:
    """Posterior state marginals :math:`p(z_t = k \\mid x)` by forward-backward.

    ``marginals["z"]`` is (T, K), or (N, T, K) for a batch (zero rows past each length).
    """
    start = time.perf_counter()
    p = _potentials(model, evidence, lengths, model_args, model_kwargs)
    log_z, gamma = _run("smoother", p)
    log_z = np.asarray(log_z)
    _check_evidence(log_z)
    return Result(
        method="forward_backward",
        marginals={"z": _out(p, gamma)},
        log_evidence=float(np.sum(log_z)),
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={"log_evidence_per_sequence": _out(p, log_z)},
    )


def map(model, evidence=None, *, lengths=None, model_args=(), model_kwargs=None, memory_budget=None) -> Result:  # noqa: A001
    """The Viterbi path :math:`z^* = \\arg\\max_z p(z \\mid x)` in ``map["z"]`` ((T,) or (N, T), -1 padded).

    ``diagnostics["log_joint"]`` is :math:`\\sum_n \\log p(z_n^*, x_n)` (per sequence in
    ``diagnostics["log_joint_per_sequence"]``).
    """
    start = time.perf_counter()
    p = _potentials(model, evidence, lengths, model_args, model_kwargs)
    path, log_joint = _run("viterbi", p)
    log_joint = np.asarray(log_joint)
    _check_evidence(log_joint)
    return Result(
        method="viterbi",
        map={"z": _out(p, path).astype(np.int64)},
        seconds=time.perf_counter() - start,
        diagnostics={
            "log_joint": float(np.sum(log_joint)),
            "log_joint_per_sequence": _out(p, log_joint),
        },
    )


def sample(model, key, n, evidence=None, *, lengths=None, model_args=(), model_kwargs=None, memory_budget=None) -> Result:
    """``n`` exact posterior draws of the state path (forward-filter backward-sample).

    ``samples["z"]`` is (n, T), or (n, N, T) for a batch, int64 (-1 past each length).
    """
    start = time.perf_counter()
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer number of draws, got {n!r}")
    p = _potentials(model, evidence, lengths, model_args, model_kwargs)
    log_z = np.asarray(_run("log_likelihood", p))
    _check_evidence(log_z)
    N = p.log_likelihoods.shape[0]
    keys = jax.random.split(key, n * N).reshape((n, N) + jax.random.split(key, 1).shape[1:])
    draws = _batch_sample(keys, p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)
    return Result(
        method="ffbs",
        samples={"z": _unbatch_axis1(p, draws).astype(np.int64)},
        log_evidence=float(np.sum(np.asarray(log_z))),
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={"num_chains": 1},
    )


__all__ = [
    "ChainPotentials",
    "hmm_filter",
    "hmm_smoother",
    "hmm_two_slice",
    "hmm_viterbi",
    "hmm_posterior_sample",
    "batch_expected_counts",
    "run_batch",
    "log_evidence",
    "marginals",
    "map",
    "sample",
]
