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

**Arithmetic.** Forward-backward runs in one of two arithmetics, with the same results, chosen by
the one rule of :mod:`inference.discrete` (probability space where a bound proves that nothing
that matters leaves :math:`[e^{-L}, e^{L}]`, :math:`L` = :data:`~inference.discrete.LINEAR_RANGE`
= 650 nats):

- *log space*: each log-sum-exp subtracts the maximum of its own terms, so nothing underflows
  whatever the model (:math:`K^2` exponentials a step);
- *linear space*, when every transition probability is at least :math:`a = e^{-R}`,
  :math:`R` = :data:`SCALED_RANGE` = :math:`L / 2` = 325: step 0 in log space, then
  :math:`\\alpha_t \\propto (\\alpha_{t-1} A) \\odot \\tilde e_t` with
  :math:`\\tilde e_t = e_t / \\max_k e_t(k)` and one rescaling to sum 1 a step, the scales kept
  in log space (:math:`K` exponentials a step, the products as dot products). The condition
  makes it exact to rounding: every predicted probability :math:`(\\alpha_{t-1} A)_j \\ge a`
  and :math:`\\max_k \\tilde e_t(k) = 1`, so each step's sum is at least :math:`a`; a term lost
  to underflow (below :math:`e^{-708}`) is then below :math:`e^{-708} e^{R}` of its step, and no
  later evidence can raise it by more than :math:`e^{R}`
  (:math:`p(x_{t+1:} \\mid z_t = i) / p(x_{t+1:} \\mid z_t = j) \\le \\max A / \\min A`):
  a relative error below :math:`T K e^{-708 + 2R} = T K e^{-58} \\approx T K \\cdot 10^{-25}`,
  under rounding for any :math:`T K < 10^{9}`. The backward pass is bounded the same way.
  Transition matrices with smaller entries (exact zeros of left-to-right chains, say) take the
  log-space kernels. Both are tested at :math:`T = 10^6` and against each other.

The kernels live in :mod:`inference.forward_backward` (sum-product) and :mod:`inference.viterbi`
(max-product); this module holds their jitted entry points, which return named records
(:class:`HMMFiltered`, :class:`HMMSmoothed`, :class:`HMMTwoSlice`, :class:`HMMViterbi`,
:class:`HMMExpectedCounts`: tuples whose field names say their space and whose docs hold the
math, as dynamax's ``HMMPosterior`` does), the batch runner, and the model-level queries.

The public entry points ``log_evidence``, ``marginals``, ``map`` and ``sample`` take a model with
a ``chain(x, lengths=None)`` method (a :class:`~inference.protocols.ChainModel`, ``pgm.HMM``) or a :class:`ChainPotentials`, and return a
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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference.discrete import check_evidence, check_log_table
from inference.errors import DataError, ModelError
from inference.forward_backward import (
    SCALED_RANGE,
    _batch_counts,
    _expected_counts,
    _filtered,
    _log_likelihood,
    _posteriors,
    _sample,
)
from inference.protocols import ChainModel
from inference.result import Result
from inference.viterbi import _viterbi, _viterbi_batch
from inference.rng import as_key


# ----------------------------------------------------------------------------- named records
class HMMFiltered(NamedTuple):
    """Forward filtering of one sequence (or a batch: a leading (N,) axis on every field)."""

    log_evidence: Any
    """:math:`\\log p(x_{0:L-1}) = \\sum_t \\log c_t`, :math:`c_t = p(x_t \\mid x_{0:t-1})`."""
    log_filtered: Any
    """(T, K) :math:`\\log \\alpha_t(k) = \\log p(z_t = k \\mid x_{0:t})`, normalised (rows at
    ``t >= length`` are meaningless)."""


class HMMSmoothed(NamedTuple):
    """Forward-backward smoothing."""

    log_evidence: Any
    """:math:`\\log p(x_{0:L-1})`."""
    smoothed_probs: Any
    """(T, K) probabilities :math:`\\gamma_t(k) = p(z_t = k \\mid x) \\propto \\alpha_t(k) \\beta_t(k)`,
    zero at ``t >= length``."""


class HMMTwoSlice(NamedTuple):
    """The E-step of Baum-Welch."""

    log_evidence: Any
    """:math:`\\log p(x_{0:L-1})`."""
    smoothed_probs: Any
    """(T, K) :math:`\\gamma_t(k) = p(z_t = k \\mid x)` (zero at ``t >= length``)."""
    expected_transitions: Any
    """(K, K) probabilities summed over steps, :math:`\\sum_{t \\ge 1} \\xi_t(i, j) =
    \\sum_t p(z_{t-1} = i, z_t = j \\mid x)`."""


class HMMViterbi(NamedTuple):
    """The most probable state path."""

    path: Any
    """(T,) int :math:`z^\\star = \\arg\\max_z p(z \\mid x)`, ``-1`` at ``t >= length``."""
    log_joint: Any
    """:math:`\\log p(z^\\star, x) = \\max_k \\delta_{L-1}(k)`."""


class HMMExpectedCounts(NamedTuple):
    """The Baum-Welch E-step of a batch, summed over sequences where EM needs sums."""

    log_evidence: Any
    """(N,) :math:`\\log p(x_n)`."""
    smoothed_probs: Any
    """(N, T, K) :math:`\\gamma_{n,t}(k) = p(z_{n,t} = k \\mid x_n)` (zero past each length)."""
    initial_counts: Any
    """(K,) :math:`\\sum_n \\gamma_{n,0}(k)`."""
    transition_counts: Any
    """(K, K) :math:`\\sum_n \\sum_{t \\ge 1} \\xi_{n,t}(i, j)`."""


_RECORDS = {
    "filter": HMMFiltered,
    "smoother": HMMSmoothed,
    "two_slice": HMMTwoSlice,
    "viterbi": HMMViterbi,
    "expected_counts": HMMExpectedCounts,
}


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
        :class:`HMMFiltered` ``(log_evidence, log_filtered)``: :math:`\\log p(x_{0:L-1})` and
        (T, K) normalised :math:`\\log \\alpha_t` (rows at ``t >= length`` are meaningless).
    """
    return HMMFiltered(*_filtered(log_initial, log_transition, log_likelihoods, length))


@jax.jit
def hmm_smoother(log_initial, log_transition, log_likelihoods, length=None):
    """Forward-backward smoothing: :math:`\\gamma_t(k) = p(z_t = k \\mid x_{0:T-1})`.

    Returns:
        :class:`HMMSmoothed` ``(log_evidence, smoothed_probs)``: :math:`\\log p(x)` and (T, K)
        probabilities; rows at ``t >= length`` are zero.
    """
    log_z, gamma, _ = _posteriors(log_initial, log_transition, log_likelihoods, length, False)
    return HMMSmoothed(log_z, gamma)


@jax.jit
def hmm_two_slice(log_initial, log_transition, log_likelihoods, length=None):
    """The E-step of Baum-Welch for one sequence.

    Returns:
        :class:`HMMTwoSlice` ``(log_evidence, smoothed_probs, expected_transitions)``:
        :math:`\\log p(x)`, (T, K) :math:`\\gamma_t` (zero at ``t >= length``) and (K, K)
        :math:`\\sum_{t \\ge 1} \\xi_t(i, j) = \\sum_t p(z_{t-1} = i, z_t = j \\mid x)`.
    """
    return HMMTwoSlice(*_posteriors(log_initial, log_transition, log_likelihoods, length, True))


@jax.jit
def hmm_viterbi(log_initial, log_transition, log_likelihoods, length=None):
    """The most probable state path :math:`\\arg\\max_z p(z \\mid x)` (max-product, log space).

    The forward pass keeps the argmax pointers (T - 1, K) and backtracking follows them.
    :math:`\\delta_t` is not shifted per step: it is the log-probability of the best path to each
    state, so near-ties are resolved to the precision of the path scores themselves (as in
    hmmlearn).

    Returns:
        :class:`HMMViterbi` ``(path, log_joint)``: (T,) int states (``-1`` at ``t >= length``)
        and :math:`\\log p(z^*, x)`. Ties go to the lowest state index.
    """
    return HMMViterbi(*_viterbi(log_initial, log_transition, log_likelihoods, length))


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


def arithmetic_of(log_transition) -> str | None:
    """The arithmetic of a pass over this transition table, by the module's rule: ``"linear"``
    (scaled probabilities) when every entry of :math:`\\log A` is at least ``-SCALED_RANGE``, else
    ``"log"``; None for a traced table (inside a program the choice is made in the compiled code)."""
    if isinstance(log_transition, jax.core.Tracer):
        return None
    return "linear" if np.min(np.asarray(log_transition)) >= -SCALED_RANGE else "log"


def run_batch(name, log_initial, log_transition, log_likelihoods, lengths):
    """Run kernel ``name`` over a padded batch; outputs get a leading (N,) axis.

    ``name``: ``"log_likelihood"``, ``"filter"``, ``"smoother"``, ``"two_slice"``, ``"viterbi"``
    or ``"expected_counts"`` (summed over the batch: see :func:`batch_expected_counts`);
    ``lengths`` (N,) host integers. Returns the kernel's named record (:class:`HMMFiltered`,
    :class:`HMMSmoothed`, :class:`HMMTwoSlice`, :class:`HMMViterbi`, :class:`HMMExpectedCounts`)
    or, for ``"log_likelihood"``, the (N,) array of :math:`\\log p(x_n)`.
    """
    N, T, _ = np.shape(log_likelihoods)
    lengths = np.asarray(lengths)
    arithmetic = arithmetic_of(log_transition)
    fn = _batched(name, bool(np.any(lengths != T)), N == 1, N >= DENSE_ROWS, arithmetic)
    out = fn(log_initial, log_transition, log_likelihoods, jnp.asarray(lengths, dtype=jnp.int32))
    record = _RECORDS.get(name)
    return out if record is None else record(*out)


_batch_sample = jax.jit(
    jax.vmap(  # over draws
        jax.vmap(hmm_posterior_sample, in_axes=(0, None, None, 0, 0)),  # over sequences
        in_axes=(0, None, None, None, None),
    )
)


def batch_expected_counts(log_initial, log_transition, log_likelihoods, lengths):
    """Baum-Welch E-step for a padded batch: summed over sequences where that is what EM needs.

    Returns:
        :class:`HMMExpectedCounts` ``(log_evidence (N,), smoothed_probs (N, T, K),
        initial_counts (K,), transition_counts (K, K))``.
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
        for name in ("log_initial", "log_transition"):  # NaN / +inf: the shared table check
            table = getattr(self, name)
            if not isinstance(table, jax.core.Tracer):
                check_log_table(table, name)
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
    if not isinstance(model, ChainModel):
        raise ModelError(f"{type(model).__name__} is not a chain model: it has no chain(x, lengths) method")
    kwargs = dict(model_kwargs or {})
    if lengths is None:
        lengths = kwargs.pop("lengths", None)
    if evidence is None:
        evidence = kwargs.pop("x", None) if "x" in kwargs else (model_args[0] if model_args else None)
    if evidence is None:
        raise DataError("a chain model needs its observations x as the evidence argument")
    return model.chain(evidence, lengths=lengths)


def _answer(name, model, evidence, lengths, model_args, model_kwargs):
    """``(potentials, kernel output, its (N,) log-probabilities)`` of batch kernel ``name``, the
    latter checked by the shared zero-evidence check (a sequence of probability zero raises)."""
    p = _potentials(model, evidence, lengths, model_args, model_kwargs)
    out = run_batch(name, p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)
    log_p = np.asarray(out if name == "log_likelihood" else out[-1] if name == "viterbi" else out[0])
    check_evidence(log_p, unit="sequence", where="the sequence is impossible under the model")
    return p, out, log_p


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
    p, _, log_z = _answer("log_likelihood", model, evidence, lengths, model_args, model_kwargs)
    return Result(
        method="forward",
        log_evidence=float(np.sum(log_z)),
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={"log_evidence_per_sequence": _out(p, log_z), "arithmetic": arithmetic_of(p.log_transition)},
    )


def marginals(model, evidence=None, *, lengths=None, model_args=(), model_kwargs=None, memory_budget=None) -> Result:
    """Posterior state marginals :math:`p(z_t = k \\mid x)` by forward-backward.

    ``marginals["z"]`` is (T, K), or (N, T, K) for a batch (zero rows past each length).
    """
    start = time.perf_counter()
    p, smoothed, log_z = _answer("smoother", model, evidence, lengths, model_args, model_kwargs)
    return Result(
        method="forward_backward",
        marginals={"z": _out(p, smoothed.smoothed_probs)},
        log_evidence=float(np.sum(log_z)),
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={"log_evidence_per_sequence": _out(p, log_z), "arithmetic": arithmetic_of(p.log_transition)},
    )


def map(model, evidence=None, *, lengths=None, model_args=(), model_kwargs=None, memory_budget=None) -> Result:  # noqa: A001
    """The Viterbi path :math:`z^* = \\arg\\max_z p(z \\mid x)` in ``map["z"]`` ((T,) or (N, T), -1 padded).

    ``diagnostics["log_joint"]`` is :math:`\\sum_n \\log p(z_n^*, x_n)` (per sequence in
    ``diagnostics["log_joint_per_sequence"]``).
    """
    start = time.perf_counter()
    p, best, log_joint = _answer("viterbi", model, evidence, lengths, model_args, model_kwargs)
    return Result(
        method="viterbi",
        map={"z": _out(p, best.path).astype(np.int64)},
        seconds=time.perf_counter() - start,
        diagnostics={
            "log_joint": float(np.sum(log_joint)),
            "log_joint_per_sequence": _out(p, log_joint),
            "arithmetic": arithmetic_of(p.log_transition),
        },
    )


def sample(model, key, n, evidence=None, *, lengths=None, model_args=(), model_kwargs=None, memory_budget=None) -> Result:
    """``n`` exact posterior draws of the state path (forward-filter backward-sample).

    ``samples["z"]`` is (n, T), or (n, N, T) for a batch, int64 (-1 past each length).
    """
    key = as_key(key)
    start = time.perf_counter()
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer number of draws, got {n!r}")
    p, _, log_z = _answer("log_likelihood", model, evidence, lengths, model_args, model_kwargs)
    N = p.log_likelihoods.shape[0]
    keys = jax.random.split(key, n * N).reshape((n, N) + jax.random.split(key, 1).shape[1:])
    draws = _batch_sample(keys, p.log_initial, p.log_transition, p.log_likelihoods, p.lengths)
    return Result(
        method="ffbs",
        samples={"z": _unbatch_axis1(p, draws).astype(np.int64)},
        log_evidence=float(np.sum(np.asarray(log_z))),
        log_evidence_kind="exact",
        seconds=time.perf_counter() - start,
        diagnostics={"num_chains": 1, "arithmetic": arithmetic_of(p.log_transition)},
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
    "arithmetic_of",
    "log_evidence",
    "marginals",
    "map",
    "sample",
]
