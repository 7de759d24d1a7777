"""Forward-backward kernels for hidden Markov chains, in log space and in probability space.

Array in, array out: ``log_initial`` :math:`\\log \\pi` (K,), ``log_transition`` :math:`\\log A`
(K, K), ``log_likelihoods`` :math:`\\log e_t(k)` (T, K) and ``length`` (the valid steps, or None
for all T). The steps and the two arithmetics are described in :mod:`inference.chain`; the
public, jitted entry points and their named records live there, the max-product kernels in
:mod:`inference.viterbi`.

References:
    Rabiner (1989). A tutorial on hidden Markov models and selected applications in speech recognition.
    Chib (1996). Calculating posterior distributions and modal estimates in Markov mixture models.

Example:
    >>> import numpy as np
    >>> from inference.forward_backward import _filtered
    >>> log_pi = np.log([0.6, 0.4]); log_A = np.log([[0.7, 0.3], [0.4, 0.6]])
    >>> log_e = np.log([[0.5, 0.1], [0.4, 0.3], [0.1, 0.6]])
    >>> log_z, log_alpha = _filtered(log_pi, log_A, log_e, None)
    >>> round(float(np.exp(log_z)), 5)
    0.03628
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from inference.discrete import LINEAR_RANGE

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


SCALED_RANGE = LINEAR_RANGE / 2
"""Nats (325): the linear-space kernels run when every transition probability is at least
:math:`e^{-325}`; otherwise the log-space ones (the rule of :mod:`inference.discrete`, derived
under "Arithmetic" in :mod:`inference.chain`)."""


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
