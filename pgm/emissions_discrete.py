"""Discrete emission families of the hidden Markov models, and the checks every family shares.

- :class:`CategoricalEmission`: one symbol per step, :math:`p(x_t = m \\mid z_t = k) = B_{km}` over
  ``M`` symbols;
- :class:`MultinomialEmission`: a vector of ``M`` counts per step summing to :math:`n` trials
  (hmmlearn's ``MultinomialHMM``),

  .. math::

      \\log p(x_t \\mid z_t = k) = \\log \\frac{n!}{\\prod_m x_{tm}!} + \\sum_m x_{tm} \\log B_{km},
      \\qquad n = \\sum_m x_{tm};

  a categorical emission is the case :math:`n = 1` written as a symbol instead of a one-hot row.

Both M-steps are the same closed form: the expected symbol counts
:math:`c_{km} = \\sum_{n,t} \\gamma_{ntk}\\, x_{ntm}` (one-hot :math:`x` for the categorical),
normalised row by row after adding a Dirichlet pseudo-count.

The helpers above the families (probability-table checks, Dirichlet priors, batching and padding of
observations) serve every family, the Gaussian ones of :mod:`pgm.emissions` too; import the
families from :mod:`pgm.emissions`, which re-exports them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import gammaln, xlogy

from inference.errors import DataError, ModelError


# ----------------------------------------------------------------------------- checks


def _probability_table(value, name, shape=None):
    """A float64 array whose last axis holds distributions; ModelError naming ``name`` otherwise."""
    table = np.asarray(value, dtype=np.float64)
    if shape is not None and table.shape != shape:
        raise ModelError(f"{name} must have shape {shape}, got {table.shape}")
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ModelError(f"{name} must hold finite non-negative probabilities")
    sums = np.atleast_1d(table.sum(axis=-1))
    bad = np.argwhere(np.abs(sums - 1.0) > 1e-6)
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        label = f"{name}" if table.ndim == 1 else f"{name} row {where if len(where) > 1 else where[0]}"
        raise ModelError(f"{label} sums to {float(sums[where]):.9g}, not 1")
    if table.ndim == 0:
        raise ModelError(f"{name} must be an array of probabilities, got a scalar")
    return table / table.sum(axis=-1, keepdims=True)


def _dirichlet_log_density(probs, pseudo_count):
    """:math:`\\sum_{rows} \\log \\mathrm{Dir}(p \\mid 1 + c)`; 0 for ``c = 0`` (the flat prior)."""
    if pseudo_count == 0:
        return 0.0
    alpha = 1.0 + pseudo_count
    n = probs.shape[-1]
    rows = probs.reshape(-1, n)
    norm = gammaln(n * alpha) - n * gammaln(alpha)
    with np.errstate(divide="ignore"):
        return float(np.sum(norm + pseudo_count * np.sum(np.log(rows), axis=-1)))


def _normalise_counts(counts, pseudo_count, previous):
    """MAP of a Dirichlet(1 + c) row given expected counts; rows with no mass keep ``previous``."""
    counts = np.asarray(counts, dtype=np.float64) + pseudo_count
    totals = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = counts / totals
    return np.where(totals > 0, rows, previous)


# ----------------------------------------------------------------------------- observations


def _as_batch(x, event_ndim, lengths, float_data):
    """(x padded (N, T, *event), lengths (N,), batched) from one sequence, a batch or a list."""
    dtype = np.float64 if float_data else None
    if isinstance(x, (list, tuple)) and len(x) and not np.isscalar(x[0]) and np.ndim(x[0]) >= 1:
        seqs = [np.asarray(s, dtype=dtype) for s in x]
        if float_data and event_ndim == 1:
            seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
        for i, s in enumerate(seqs):
            if s.ndim != 1 + event_ndim or s.shape[0] == 0:
                raise DataError(f"x[{i}] must be a non-empty sequence of shape (T,{' D' if event_ndim else ''}), got {s.shape}")
        if lengths is not None:
            raise DataError("lengths must not be given with a list of sequences (their lengths are used)")
        lengths = np.array([len(s) for s in seqs])
        T = int(lengths.max())
        fill = np.nan if float_data else 0
        # discrete data keep their own dtype (float counts are checked, not truncated, by the family)
        dtype = np.float64 if float_data else np.result_type(np.int64, *seqs)
        out = np.full((len(seqs), T) + seqs[0].shape[1:], fill, dtype=dtype)
        for i, s in enumerate(seqs):
            if s.shape[1:] != seqs[0].shape[1:]:
                raise DataError(f"x[{i}] has event shape {s.shape[1:]}, x[0] has {seqs[0].shape[1:]}")
            out[i, : len(s)] = s
        return out, lengths, True
    x = np.asarray(x, dtype=dtype)
    if float_data and event_ndim == 1 and x.ndim == 1:
        x = x[:, None]
    if x.ndim == 1 + event_ndim:
        batched, x = False, x[None]
    elif x.ndim == 2 + event_ndim:
        batched = True
    else:
        want = "(T,) or (N, T)" if event_ndim == 0 else "(T, D) or (N, T, D)"
        raise DataError(f"x must have shape {want}, got {x.shape}")
    N, T = x.shape[:2]
    if T == 0:
        raise DataError("x has no time steps")
    if lengths is None:
        lengths = np.full(N, T)
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
            raise DataError(f"lengths must be {N} integers (one per sequence), got {lengths!r}")
        if np.any(lengths < 1) or np.any(lengths > T):
            raise DataError(f"lengths must lie in 1..{T} (the padded length), got {lengths.tolist()}")
    return x, lengths.astype(np.int64), batched


def _valid_mask(lengths, T):
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


# ----------------------------------------------------------------------------- emission families


class CategoricalEmission:
    """:math:`p(x_t = m \\mid z_t = k) = B_{km}` over ``M`` symbols ``0..M-1``."""

    family = "categorical"
    event_ndim = 0

    def __init__(self, emission_probs, num_states):
        self.probs = _probability_table(emission_probs, "emission_probs")
        if self.probs.ndim != 2 or self.probs.shape[0] != num_states:
            raise ModelError(
                f"emission_probs must have shape (K={num_states}, M), got {self.probs.shape}"
            )
        self.num_symbols = self.probs.shape[1]

    def params(self):
        return {"emission_probs": self.probs}

    def prepare(self, x, lengths):
        x, lengths, batched = _as_batch(x, 0, lengths, float_data=False)
        if np.issubdtype(x.dtype, np.floating):
            if np.any(np.isnan(x[_valid_mask(lengths, x.shape[1])])):
                raise DataError("x holds NaN: categorical observations cannot be missing")
            if np.any(x != np.round(x)):
                raise DataError("x must hold integer symbols for a categorical HMM")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise DataError(f"x must hold integer symbols, got dtype {x.dtype}")
        full = bool(np.all(lengths == x.shape[1]))
        valid = None if full else _valid_mask(lengths, x.shape[1])
        observed = x if full else x[valid]
        if observed.min() < 0 or observed.max() >= self.num_symbols:
            outside = (x < 0) | (x >= self.num_symbols)
            n, t = (int(i) for i in np.argwhere(outside if full else valid & outside)[0])
            raise DataError(
                f"x[{n}, {t}] = {x[n, t]} is not a symbol of the emission_probs (0..{self.num_symbols - 1})"
            )
        return (x if full else np.where(valid, x, 0)).astype(np.int32, copy=False), lengths, batched

    def log_likelihoods(self, x):
        return _categorical_loglik(jnp.log(self.probs), x)

    def distribution(self, probs, z):
        return dist.Categorical(probs=probs[z])

    def expected_stats(self, x, gamma):
        return {"counts": _categorical_counts(x, gamma, self.num_symbols)}

    def from_stats(self, stats, pseudo_count=0.0, **_):
        probs = _normalise_counts(stats["counts"], pseudo_count, self.probs)
        return CategoricalEmission(probs, self.probs.shape[0])

    def log_prior(self, pseudo_count=0.0, **_):
        return _dirichlet_log_density(self.probs, pseudo_count)


@jax.jit
def _categorical_loglik(log_probs, x):
    return jnp.take(log_probs.T, x, axis=0)  # (N, T, K)


@jax.jit
def _categorical_counts_jit(x, gamma, onehot_eye):
    return jnp.einsum("ntk,ntm->km", gamma, onehot_eye[x])


def _categorical_counts(x, gamma, M):
    return _categorical_counts_jit(x, gamma, jnp.eye(M))


class MultinomialEmission:
    """:math:`x_t \\mid z_t = k \\sim \\mathrm{Mult}(n, B_k)`: ``M`` non-negative integer counts per
    step that sum to :math:`n` (hmmlearn >= 0.3's ``MultinomialHMM``).

    ``n_trials``: the number of trials :math:`n` every step must sum to (a positive int), or None
    to take each step's own total :math:`\\sum_m x_{tm}` (hmmlearn's ``n_trials=None`` when
    fitting); simulating needs an int.

    .. math::

        \\log p(x_t \\mid z_t = k) = \\log\\Gamma(n + 1) - \\sum_m \\log\\Gamma(x_{tm} + 1)
        + \\sum_m x_{tm} \\log B_{km}.

    M-step: :math:`B_{km} \\propto c + \\sum_{n,t} \\gamma_{ntk} x_{ntm}` (the MAP under a
    Dirichlet(1 + c) row prior, ``pseudo_count`` c; hmmlearn's for c = 0).
    """

    family = "multinomial"
    event_ndim = 1

    def __init__(self, emission_probs, num_states, n_trials=None):
        self.probs = _probability_table(emission_probs, "emission_probs")
        if self.probs.ndim != 2 or self.probs.shape[0] != num_states:
            raise ModelError(
                f"emission_probs must have shape (K={num_states}, M), got {self.probs.shape}"
            )
        if n_trials is not None and (
            isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1
        ):
            raise ModelError(f"n_trials must be a positive integer or None, got {n_trials!r}")
        self.n_trials = None if n_trials is None else int(n_trials)
        self.num_symbols = self.probs.shape[1]

    def params(self):
        return {"emission_probs": self.probs}

    def prepare(self, x, lengths):
        x, lengths, batched = _as_batch(x, 1, lengths, float_data=False)
        M = self.num_symbols
        if x.shape[-1] != M:
            raise DataError(f"x has {x.shape[-1]} counts per step, the emission_probs have M = {M} symbols")
        valid = _valid_mask(lengths, x.shape[1])
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise DataError(f"x must hold integer counts, got dtype {x.dtype}")
        bad = valid[..., None] & ~(np.isfinite(x) & (x >= 0) & (x == np.round(x)))
        if bad.any():
            n, t, m = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"x[{n}, {t}, {m}] = {x[n, t, m]} is not a non-negative integer count")
        x = np.where(valid[..., None], x, 0).astype(np.int64, copy=False)
        if self.n_trials is not None:
            off = valid & (x.sum(-1) != self.n_trials)
            if off.any():
                n, t = (int(i) for i in np.argwhere(off)[0])
                raise DataError(f"x[{n}, {t}] sums to {int(x[n, t].sum())}, not n_trials = {self.n_trials}")
        return x, lengths, batched

    def log_likelihoods(self, x):
        return _multinomial_loglik(jnp.asarray(self.probs), jnp.asarray(x))

    def distribution(self, probs, z):
        return _Counts(probs[z], self.n_trials)

    def expected_stats(self, x, gamma):
        return {"counts": _multinomial_counts(jnp.asarray(x, dtype=gamma.dtype), gamma)}

    def from_stats(self, stats, pseudo_count=0.0, **_):
        probs = _normalise_counts(stats["counts"], pseudo_count, self.probs)
        return MultinomialEmission(probs, self.probs.shape[0], self.n_trials)

    def log_prior(self, pseudo_count=0.0, **_):
        return _dirichlet_log_density(self.probs, pseudo_count)


@jax.jit
def _multinomial_loglik(probs, x):
    """(N, T, K) from counts x (N, T, M): the program's site scoring every step under every state."""
    return _Counts(probs).log_prob(x[..., None, :])


@jax.jit
def _multinomial_counts(x, gamma):
    return jnp.einsum("ntk,ntm->km", gamma, x)  # (K, M)


class _Counts(dist.Distribution):
    """:math:`\\mathrm{Mult}(n, p)` scored with :math:`n = \\sum_m x_m` read off the value, so that one
    site scores steps of any total (and padding rows of zero counts) without a per-step parameter;
    ``n_trials`` (static) is only used to simulate.

    NumPyro's ``Multinomial`` takes the total as a parameter: as a function of the observed step it
    is a traced value that ``scan`` cannot carry out of the step, and a masked ``Multinomial`` fails
    to broadcast its total over the enumerated states.
    """

    arg_constraints = {"probs": dist.constraints.simplex}
    support = dist.constraints.independent(dist.constraints.nonnegative_integer, 1)
    pytree_data_fields = ("probs",)
    pytree_aux_fields = ("n_trials",)

    def __init__(self, probs, n_trials=None, *, validate_args=None):
        self.probs, self.n_trials = probs, n_trials
        super().__init__(batch_shape=jnp.shape(probs)[:-1], event_shape=jnp.shape(probs)[-1:],
                         validate_args=validate_args)

    def log_prob(self, value):
        value = jnp.asarray(value, dtype=jnp.result_type(self.probs, float))
        coefficient = gammaln(jnp.sum(value, -1) + 1) - jnp.sum(gammaln(value + 1), -1)
        return coefficient + jnp.sum(xlogy(value, self.probs), -1)

    def sample(self, key, sample_shape=()):
        if self.n_trials is None:
            raise ModelError("simulating a multinomial HMM needs n_trials (it is None)")
        shape = sample_shape + self.batch_shape
        symbols = jax.random.categorical(key, jnp.log(self.probs), shape=(self.n_trials,) + shape)
        return jnp.sum(jax.nn.one_hot(symbols, self.event_shape[0], dtype=jnp.int32), axis=0)  # (..., M)
