"""Exact inference on chains: forward-backward, Viterbi and forward-filter backward-sample.

A hidden Markov chain over :math:`K` states with observations :math:`x_{0:T-1}` has the joint

.. math::

    p(z_{0:T-1}, x_{0:T-1}) = \\pi_{z_0}\\, e_0(z_0) \\prod_{t=1}^{T-1} A_{z_{t-1} z_t}\\, e_t(z_t),
    \\qquad e_t(k) = p(x_t \\mid z_t = k).

Everything below works on three arrays only, in log space, and knows nothing of model classes:
``log_initial`` :math:`\\log \\pi` (K,), ``log_transition`` :math:`\\log A` (K, K) and
``log_likelihoods`` :math:`\\log e_t(k)` (T, K). The kernels are jitted ``lax.scan``\\ s; a batch of
sequences of different lengths is padded to a common ``T`` and run at once with ``vmap`` (steps at
``t >= length`` neither emit nor move).

1. **Filter** (forward): :math:`\\alpha_t(k) = p(z_t = k \\mid x_{0:t})`, kept normalised, with
   :math:`c_t = p(x_t \\mid x_{0:t-1})` and :math:`\\log p(x) = \\sum_t \\log c_t`.
2. **Backward**: :math:`\\beta_t(k) \\propto p(x_{t+1:T-1} \\mid z_t = k)`, normalised per step.
3. **Smoother**: :math:`\\gamma_t(k) = p(z_t = k \\mid x) \\propto \\alpha_t(k) \\beta_t(k)` and the
   pair marginals :math:`\\xi_t(i, j) \\propto \\alpha_{t-1}(i) A_{ij} e_t(j) \\beta_t(j)`.
4. **Viterbi**: max-product, :math:`\\delta_t(j) = \\max_i \\delta_{t-1}(i) + \\log A_{ij} + \\log e_t(j)`,
   then backtracking through the argmax pointers.
5. **Sampling**: forward filter, then :math:`z_{T-1} \\sim \\alpha_{T-1}` and
   :math:`z_t \\sim \\alpha_t(\\cdot) A_{\\cdot, z_{t+1}}` backwards.

Each log-sum-exp subtracts the maximum of its own terms, so no step underflows however long the
chain (tested at :math:`T = 10^6`).

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


def _valid(T, length):
    return jnp.arange(T) < length


# ----------------------------------------------------------------------------- kernels
# One sequence each: log_initial (K,), log_transition (K, K), log_likelihoods (T, K), length ().
# Batches are vmapped over the leading axis of log_likelihoods and lengths.


def _filter(log_initial, log_transition, log_likelihoods, length):
    """Forward pass: normalised log filtered marginals (T, K) and log c_t (T,)."""
    T = log_likelihoods.shape[0]

    def step(log_pred, inputs):
        ll, valid = inputs
        log_alpha, log_c = _normalise(log_pred + ll)
        next_pred = _lse(log_alpha[:, None] + log_transition, 0)
        log_c = jnp.where(valid, log_c, 0.0)
        return jnp.where(valid, next_pred, log_pred), (log_alpha, log_c)

    _, (log_alpha, log_c) = jax.lax.scan(step, log_initial, (log_likelihoods, _valid(T, length)))
    return log_alpha, log_c


def _backward(log_transition, log_likelihoods, length):
    """Backward pass: normalised log beta (T, K); beta_t = 1 for t >= length - 1."""
    T, K = log_likelihoods.shape

    def step(log_beta, inputs):
        ll, valid = inputs  # of step t; log_beta is beta_t, we return beta_{t-1}
        prev, _ = _normalise(_lse(log_transition + (ll + log_beta)[None, :], 1))
        prev = jnp.where(valid, prev, jnp.zeros(K))
        return prev, log_beta

    _, log_beta = jax.lax.scan(
        step, jnp.zeros(K), (log_likelihoods, _valid(T, length)), reverse=True
    )
    return log_beta


@jax.jit
def hmm_filter(log_initial, log_transition, log_likelihoods, length=None):
    """Forward filtering, :math:`\\alpha_t(k) = p(z_t = k \\mid x_{0:t})`, in log space.

    Args:
        log_initial: (K,) :math:`\\log \\pi`.
        log_transition: (K, K) :math:`\\log A`, rows the previous state.
        log_likelihoods: (T, K) :math:`\\log p(x_t \\mid z_t = k)`.
        length: number of valid steps (default T); later steps are ignored.

    Returns:
        ``(log_evidence, log_filtered)``: :math:`\\log p(x_{0:L-1})` and (T, K) normalised
        :math:`\\log \\alpha_t` (rows at ``t >= length`` are meaningless).
    """
    T = log_likelihoods.shape[0]
    length = T if length is None else length
    log_alpha, log_c = _filter(log_initial, log_transition, log_likelihoods, length)
    return jnp.sum(log_c), log_alpha


def _smoother(log_initial, log_transition, log_likelihoods, length):
    log_alpha, log_c = _filter(log_initial, log_transition, log_likelihoods, length)
    log_beta = _backward(log_transition, log_likelihoods, length)
    log_gamma, _ = _normalise(log_alpha + log_beta)
    return jnp.sum(log_c), log_alpha, log_beta, log_gamma


@jax.jit
def hmm_smoother(log_initial, log_transition, log_likelihoods, length=None):
    """Forward-backward smoothing: :math:`\\gamma_t(k) = p(z_t = k \\mid x_{0:T-1})`.

    Returns:
        ``(log_evidence, smoothed)``: :math:`\\log p(x)` and (T, K) probabilities; rows at
        ``t >= length`` are zero.
    """
    T = log_likelihoods.shape[0]
    length = T if length is None else length
    log_z, _, _, log_gamma = _smoother(log_initial, log_transition, log_likelihoods, length)
    return log_z, jnp.where(_valid(T, length)[:, None], jnp.exp(log_gamma), 0.0)


def _expected_transitions(log_alpha, log_transition, log_likelihoods, log_beta, length, block=1024):
    """:math:`\\sum_{t=1}^{L-1} \\xi_t(i, j)`, each :math:`\\xi_t` normalised in log space.

    Summed over time blocks so that no (T, K, K) array is ever held.
    """
    T, K = log_likelihoods.shape
    right = log_likelihoods[1:] + log_beta[1:]  # (T-1, K): e_t(j) beta_t(j), t = 1..T-1
    left = log_alpha[:-1]  # alpha_{t-1}(i)
    valid = _valid(T, length)[1:]
    n = T - 1
    pad = (-n) % block if n > block else 0
    size = block if n > block else max(n, 1)

    def pad_to(a, value):
        return jnp.concatenate([a, jnp.full((pad,) + a.shape[1:], value, a.dtype)]) if pad else a

    left, right, valid = pad_to(left, 0.0), pad_to(right, 0.0), pad_to(valid, False)

    def one_block(args):
        lb, rb, vb = args
        s = lb[:, :, None] + log_transition[None] + rb[:, None, :]  # (B, K, K)
        s = s - _lse(s.reshape(s.shape[0], -1), -1)[:, None, None]
        return jnp.sum(jnp.where(vb[:, None, None], jnp.exp(s), 0.0), axis=0)

    if n == 0:
        return jnp.zeros((K, K), log_likelihoods.dtype)
    shape = (-1, size)
    blocks = (left.reshape(shape + (K,)), right.reshape(shape + (K,)), valid.reshape(shape))
    return jnp.sum(jax.lax.map(one_block, blocks), axis=0)


@jax.jit
def hmm_two_slice(log_initial, log_transition, log_likelihoods, length=None):
    """The E-step of Baum-Welch for one sequence.

    Returns:
        ``(log_evidence, smoothed, expected_transitions)``: :math:`\\log p(x)`, (T, K)
        :math:`\\gamma_t` (zero at ``t >= length``) and (K, K)
        :math:`\\sum_{t \\ge 1} \\xi_t(i, j) = \\sum_t p(z_{t-1} = i, z_t = j \\mid x)`.
    """
    T = log_likelihoods.shape[0]
    length = T if length is None else length
    log_z, log_alpha, log_beta, log_gamma = _smoother(
        log_initial, log_transition, log_likelihoods, length
    )
    xi = _expected_transitions(log_alpha, log_transition, log_likelihoods, log_beta, length)
    gamma = jnp.where(_valid(T, length)[:, None], jnp.exp(log_gamma), 0.0)
    return log_z, gamma, xi


@jax.jit
def hmm_viterbi(log_initial, log_transition, log_likelihoods, length=None):
    """The most probable state path :math:`\\arg\\max_z p(z \\mid x)` (max-product, log space).

    Returns:
        ``(path, log_joint)``: (T,) int states (``-1`` at ``t >= length``) and
        :math:`\\log p(z^*, x)`. Ties go to the lowest state index.
    """
    T, K = log_likelihoods.shape
    length = T if length is None else length
    valid = _valid(T, length)
    delta0 = log_initial + log_likelihoods[0]
    m0 = jnp.max(delta0)

    def step(delta, inputs):
        ll, ok = inputs
        s = delta[:, None] + log_transition
        pointer = jnp.argmax(s, axis=0)
        new = jnp.max(s, axis=0) + ll
        m = jnp.max(new)
        new = jnp.where(ok, new - m, delta)
        return new, (jnp.where(ok, pointer, jnp.arange(K)), jnp.where(ok, m, 0.0))

    delta, (pointers, offsets) = jax.lax.scan(step, delta0 - m0, (log_likelihoods[1:], valid[1:]))
    last = jnp.argmax(delta)

    def back(state, pointer):
        return pointer[state], state

    first, path = jax.lax.scan(back, last, pointers, reverse=True)
    path = jnp.concatenate([first[None], path])
    log_joint = m0 + jnp.sum(offsets) + delta[last]
    return jnp.where(valid, path, -1), log_joint


@jax.jit
def hmm_posterior_sample(key, log_initial, log_transition, log_likelihoods, length=None):
    """One exact draw of :math:`z \\sim p(z \\mid x)` by forward filtering, backward sampling.

    Returns:
        (T,) int states, ``-1`` at ``t >= length``.
    """
    T = log_likelihoods.shape[0]
    length = T if length is None else length
    valid = _valid(T, length)
    log_alpha, _ = _filter(log_initial, log_transition, log_likelihoods, length)
    keys = jax.random.split(key, T)
    last = jax.random.categorical(keys[T - 1], log_alpha[T - 1])

    def step(z_next, inputs):
        k, la, next_ok = inputs
        logits = jnp.where(next_ok, la + log_transition[:, z_next], la)
        z = jax.random.categorical(k, logits)
        return z, z

    _, path = jax.lax.scan(step, last, (keys[:-1], log_alpha[:-1], valid[1:]), reverse=True)
    path = jnp.concatenate([path, last[None]])
    return jnp.where(valid, path, -1)


# Batched kernels: (N, T, K) log-likelihoods, (N,) lengths.
_batch_filter = jax.jit(jax.vmap(hmm_filter, in_axes=(None, None, 0, 0)))
_batch_smoother = jax.jit(jax.vmap(hmm_smoother, in_axes=(None, None, 0, 0)))
_batch_two_slice = jax.jit(jax.vmap(hmm_two_slice, in_axes=(None, None, 0, 0)))
_batch_viterbi = jax.jit(jax.vmap(hmm_viterbi, in_axes=(None, None, 0, 0)))
_batch_sample = jax.jit(
    jax.vmap(  # over draws
        jax.vmap(hmm_posterior_sample, in_axes=(0, None, None, 0, 0)),  # over sequences
        in_axes=(0, None, None, None, None),
    )
)


@jax.jit
def batch_expected_counts(log_initial, log_transition, log_likelihoods, lengths):
    """Baum-Welch E-step for a padded batch: summed over sequences where that is what EM needs.

    Returns:
        ``(log_evidence (N,), gamma (N, T, K), initial_counts (K,), transition_counts (K, K))``.
    """
    log_z, gamma, xi = jax.vmap(hmm_two_slice, in_axes=(None, None, 0, 0))(
        log_initial, log_transition, log_likelihoods, lengths
    )
    return log_z, gamma, jnp.sum(gamma[:, 0], axis=0), jnp.sum(xi, axis=0)


# ----------------------------------------------------------------------------- potentials


@dataclasses.dataclass(frozen=True)
class ChainPotentials:
    """A batch of hidden Markov chains with their evidence folded in, all in log space.

    Attributes:
        log_initial: (K,) :math:`\\log p(z_0)`.
        log_transition: (K, K) :math:`\\log p(z_t = j \\mid z_{t-1} = i)` at ``[i, j]``.
        log_likelihoods: (N, T, K) :math:`\\log p(x_{n,t} \\mid z_{n,t} = k)`, padded past each length.
        lengths: (N,) number of valid steps of each sequence.
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
        object.__setattr__(self, "lengths", jnp.asarray(lengths, dtype=jnp.int32))
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
    log_z, _ = _batch_filter(p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)
    log_z = np.asarray(log_z)
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
    log_z, gamma = _batch_smoother(p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)
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
    path, log_joint = _batch_viterbi(p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)
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
    log_z, _ = _batch_filter(p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)
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
    "log_evidence",
    "marginals",
    "map",
    "sample",
]
