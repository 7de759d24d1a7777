"""Max-product (Viterbi) kernels for hidden Markov chains, always in log space.

:math:`\\delta_t(j) = \\max_i \\delta_{t-1}(i) + \\log A_{ij} + \\log e_t(j)`, then backtracking
through the argmax pointers. One long sequence runs in two passes (:func:`_viterbi_blocked`), a
batch in one scan over time (:func:`_viterbi_batch`); every variant forms the same sums in the
same order and breaks ties to the lowest state index, so all give the same path (tested). The
public entry point is :func:`inference.chain.hmm_viterbi`.

References:
    Viterbi (1967). Error bounds for convolutional codes and an asymptotically optimum decoding algorithm.

Example:
    >>> import numpy as np
    >>> from inference import viterbi
    >>> healthy_fever = (np.log([0.6, 0.4]), np.log([[0.7, 0.3], [0.4, 0.6]]),
    ...                  np.log([[0.5, 0.1], [0.4, 0.3], [0.1, 0.6]]))   # Wikipedia's example
    >>> path, score = viterbi._viterbi(*healthy_fever, None)
    >>> path.tolist(), round(float(np.exp(score)), 5)
    ([0, 0, 1], 0.01512)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from inference.forward_backward import _pick, _scan, _valid


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
