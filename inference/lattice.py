"""Loopy BP and mean field on lattices, vectorised over the grid (for images and large grids).

``inference.bp.loopy`` and ``inference.meanfield`` run on any factor graph, tracing one table per
factor: right for networks of hundreds of variables, too slow to compile for an image of 10^5
pixels. On a lattice in the Potts form of ``inference.checkerboard``,
:math:`\\log \\tilde p(x) = \\sum_i u_i(x_i) + K \\sum_{i \\sim j} [x_i = x_j]`, every message in one
direction is one array, and an update is a handful of whole-array operations.

**Loopy BP.** With :math:`m^{d\\pm}_i(x_i)` the message arriving at site :math:`i` from its
neighbour :math:`i \\pm e_d`, and :math:`\\mathrm{pre}_{j \\to i} = u_j + \\sum_{\\text{dirs}}
m_j - m_{j \\leftarrow i}` (everything :math:`j` knows except what :math:`i` told it),

.. math::

    m_{j \\to i}(x_i) = \\log \\sum_{x_j} e^{\\mathrm{pre}_{j \\to i}(x_j) + K [x_i = x_j]}
        = \\log\\big(\\textstyle\\sum_{x_j} e^{\\mathrm{pre}(x_j)} + (e^K - 1) e^{\\mathrm{pre}(x_i)}\\big)

(sum-product; max-product takes :math:`\\max(\\max_{x_j} \\mathrm{pre}(x_j), K + \\mathrm{pre}(x_i))`),
an :math:`O(q)` update per message. Schedules: ``"flooding"`` (every message from the old ones) or
``"checkerboard"`` (messages out of black sites, then out of white sites using the fresh ones, which
often converges in about half the iterations). Damping mixes old and new messages in probability
space; the largest change of any message is the residual, and ``diagnostics["converged"]`` is
True only when it fell below ``tol``. The Bethe free energy at the final messages estimates
:math:`\\log Z` (sum-product).

**Mean field.** Coordinate ascent by colour: :math:`q_i(k) \\propto \\exp(u_i(k) + K \\sum_{j \\sim i}
q_j(k))` for all sites of one colour at once (exact coordinate updates, so the ELBO never
decreases),

.. math::

    \\mathrm{ELBO}(q) = \\sum_i \\sum_k q_i(k) u_i(k) + K \\sum_{i \\sim j} \\sum_k q_i(k) q_j(k)
        + \\sum_i H(q_i) \\le \\log Z.

Both return :math:`\\log Z` of the Potts form; an Ising model's is that plus
``model.log_z_offset`` (:math:`-J` per edge, since :math:`J s_i s_j = 2J [s_i = s_j] - J`).

References:
    Yedidia, Freeman and Weiss (2005). Constructing free-energy approximations and generalized
    belief propagation algorithms.
    Felzenszwalb and Huttenlocher (2006). Efficient belief propagation for early vision.
    Wainwright and Jordan (2008). Graphical models, exponential families, and variational inference.

Example:
    >>> import numpy as np
    >>> from pgm.ising import Ising
    >>> from inference import exact
    >>> chain = Ising((6,), coupling=0.7, field=0.2)             # a chain: BP is exact
    >>> unary, k = chain.potts_form()
    >>> r = loopy_bp(unary, k, periodic=False)
    >>> bool(np.isclose(r.log_evidence + chain.log_z_offset, exact.log_evidence(chain).log_evidence))
    True
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from inference.bp import check_loopy_options
from inference.checkerboard import _shift, check_lattice, colours, neighbour_counts
from inference.errors import DataError
from inference.result import Result
from inference.rng import as_key

__all__ = ["loopy_bp", "mean_field"]


def _directions(shape):
    return [(axis, step) for axis in range(len(shape)) if shape[axis] > 1 for step in (1, -1)]


def _has_neighbour(shape, axis, step, periodic):
    """(*shape) bool: site i has a neighbour at i + step e_axis."""
    if periodic:
        return np.ones(shape, dtype=bool)
    index = np.indices(shape)[axis]
    return index < shape[axis] - 1 if step > 0 else index > 0


def _normalise(m, mode):
    return m - (jax.scipy.special.logsumexp(m, axis=-1, keepdims=True) if mode == "sum" else jnp.max(m, -1, keepdims=True))


def _message(pre, k, mode):
    """m(x_i) from pre(x_j) over the pair K [x_i = x_j]: (..., q) -> (..., q)."""
    if mode == "sum":
        total = jax.scipy.special.logsumexp(pre, axis=-1, keepdims=True)
        # log(sum_j e^pre_j + (e^K - 1) e^pre_i), written stably for either sign of K
        return _sum_message(pre, total, k)
    return jnp.maximum(jnp.max(pre, axis=-1, keepdims=True), k + pre)


def _sum_message(pre, total, k):
    # log(S + (e^K - 1) e^{p}) = log S + log(1 + (e^K - 1) e^{p - log S}); e^{p - log S} <= 1
    ratio = jnp.exp(pre - total)
    return total + jnp.log1p(jnp.expm1(k) * ratio)


@functools.partial(jax.jit, static_argnames=("periodic", "mode", "schedule", "capacity"))
def _loopy(u, k, damping, tol, max_iter, *, periodic, mode, schedule, capacity):
    """``capacity`` (a power of two >= max_iter) sizes the residual history, so that different
    ``max_iter`` values share one compiled function."""
    shape, q = u.shape[:-1], u.shape[-1]
    dirs = _directions(shape)
    present = [jnp.asarray(_has_neighbour(shape, a, s, periodic))[..., None] for a, s in dirs]
    black = jnp.asarray(colours(shape, periodic))[..., None] if schedule == "checkerboard" else None
    opposite = {d: dirs.index((d[0], -d[1])) for d in dirs}

    def outgoing(msgs):
        """new[d][i]: the message arriving at i from i + d, computed at the sender j = i + d."""
        belief = u + sum(msgs)
        new = []
        for n, (axis, step) in enumerate(dirs):
            pre = belief - msgs[opposite[(axis, step)]]  # at j: all but what came from j - d = i
            sent = _normalise(_message(pre, k, mode), mode)  # computed at j, addressed to j - d
            arrived = _shift(sent, axis, -step, periodic)
            new.append(jnp.where(present[n], arrived, 0.0))
        return new, belief

    def body(state):
        it, msgs, _, history = state
        if schedule == "flooding":
            new, _ = outgoing(msgs)
        else:  # messages sent by black sites first, then by white sites with the fresh ones
            fresh, _ = outgoing(msgs)
            sent_by_black = [jnp.where(_sender_colour(black, a, s, periodic), f, m)
                             for f, m, (a, s) in zip(fresh, msgs, dirs)]
            fresh, _ = outgoing(sent_by_black)
            new = [jnp.where(_sender_colour(black, a, s, periodic), b, f)
                   for f, b, (a, s) in zip(fresh, sent_by_black, dirs)]
        mixed = [_normalise(jnp.logaddexp(jnp.log1p(-damping) + n, jnp.log(damping) + m), mode)
                 for n, m in zip(new, msgs)]
        mixed = [jnp.where(damping > 0, x, n) for x, n in zip(mixed, new)]
        mixed = [jnp.where(p, x, 0.0) for x, p in zip(mixed, present)]
        residual = jnp.max(jnp.stack([jnp.max(jnp.abs(jnp.exp(a) - jnp.exp(b))) for a, b in zip(mixed, msgs)]))
        return it + 1, mixed, residual, history.at[it].set(residual)

    def cond(state):
        it, _, residual, _ = state
        return (it < max_iter) & (residual > tol)

    zero = [jnp.zeros(u.shape, u.dtype) for _ in dirs]
    init = (jnp.asarray(0), zero, jnp.asarray(jnp.inf), jnp.full((capacity,), jnp.nan))
    it, msgs, residual, history = jax.lax.while_loop(cond, body, init)
    _, belief = outgoing(msgs)
    log_b = _normalise(belief, mode)
    log_z = _bethe(u, k, msgs, log_b, dirs, present, opposite, periodic) if mode == "sum" else jnp.nan
    return log_b, log_z, it, residual, history


def _sender_colour(black, axis, step, periodic):
    """(*shape, 1): the message arriving at i from j = i + d was sent by a black site j."""
    return _shift(black.astype(jnp.int32), axis, -step, periodic).astype(bool)


def _bethe(u, k, msgs, log_b, dirs, present, opposite, periodic):
    """log Z_Bethe = sum_f sum b_f (log phi_f - log b_f) + sum_i (d_i - 1) sum b_i log b_i, with the
    unary factors counted among the d_i factors of each site."""
    belief = u + sum(msgs)
    b = jnp.exp(log_b)
    entropy_i = -jnp.sum(jnp.where(b > 0, b * log_b, 0.0), axis=-1)  # H(b_i)
    degree = sum(p[..., 0].astype(u.dtype) for p in present)
    # unary factors: sum b_i (u_i - log b_i) = E[u] + H; their own (d_i - 1) term: degree * (-H)
    value = jnp.sum(jnp.sum(jnp.where(b > 0, b * u, 0.0), -1) + entropy_i - degree * entropy_i)
    for n, (axis, step) in enumerate(dirs):
        if step < 0:
            continue  # each edge once: (i, i + e_axis)
        # pair belief over (x_i, x_j), j = i + e_axis: pre_i (without m from j) + pre_j (without m from i) + K delta
        pre_i = belief - msgs[n]  # msgs[n]: arrived at i from i + e_axis
        pre_j_at_j = belief - msgs[opposite[(axis, step)]]  # at j: all but what came from j - e_axis = i
        pre_j = _shift(pre_j_at_j, axis, -1, periodic)
        table = pre_i[..., :, None] + pre_j[..., None, :] + k * jnp.eye(u.shape[-1], dtype=u.dtype)
        log_pair = table - jax.scipy.special.logsumexp(table, axis=(-2, -1), keepdims=True)
        pair = jnp.exp(log_pair)
        term = jnp.sum(jnp.where(pair > 0, pair * (k * jnp.eye(u.shape[-1], dtype=u.dtype) - log_pair), 0.0), axis=(-2, -1))
        value = value + jnp.sum(jnp.where(present[n][..., 0], term, 0.0))
    return value


def loopy_bp(unary, coupling: float, *, periodic: bool, mode: str = "sum", schedule: str = "flooding",
             damping: float = 0.0, max_iter: int = 200, tol: float = 1e-8) -> Result:
    """Loopy BP on a lattice (see the module docstring).

    Args:
        unary, coupling, periodic: the Potts form (``model.potts_form()``, ``model.periodic``).
        mode: ``"sum"`` (marginals and the Bethe log Z) or ``"max"`` (max-marginals and their argmax).
        schedule: ``"flooding"`` or ``"checkerboard"`` (needs a 2-colourable lattice).
        damping: :math:`\\delta \\in [0, 1)`; max_iter, tol: the stopping rule on the residual.

    Returns:
        ``Result(method="lattice_bp" | "lattice_bp_max", marginals={"x": (*shape, q)} (max-marginals
        scaled to max 1 for ``"max"``), log_evidence=<Bethe log Z of the Potts form> ("estimate";
        sum mode only), map={"x": argmax per site} (max mode), diagnostics={"converged",
        "iterations", "max_residual" per iteration, "schedule", "damping"})``.
    """
    check_loopy_options(mode, damping, max_iter)
    if schedule not in ("flooding", "checkerboard"):
        raise DataError(f"schedule must be 'flooding' or 'checkerboard', got {schedule!r}")
    start = time.perf_counter()
    u, k = check_lattice(unary, coupling)
    if schedule == "checkerboard":
        colours(tuple(u.shape[:-1]), periodic)
    capacity = max(1024, 1 << (int(max_iter) - 1).bit_length())
    log_b, log_z, it, residual, history = _loopy(u, jnp.asarray(k, u.dtype), jnp.asarray(float(damping)),
                                                 jnp.asarray(float(tol)), jnp.asarray(int(max_iter)),
                                                 periodic=bool(periodic), mode=mode, schedule=schedule, capacity=capacity)
    it = int(it)
    diagnostics = {"converged": bool(float(residual) <= tol), "iterations": it,
                   "max_residual": np.asarray(history)[:it], "schedule": schedule, "damping": float(damping)}
    marginals = {"x": np.exp(np.asarray(log_b))}
    seconds = time.perf_counter() - start
    if mode == "max":
        return Result(method="lattice_bp_max", marginals=marginals, map={"x": np.argmax(marginals["x"], -1)},
                      seconds=seconds, diagnostics=diagnostics)
    return Result(method="lattice_bp", marginals=marginals, log_evidence=float(log_z), log_evidence_kind="estimate",
                  seconds=seconds, diagnostics=diagnostics)


@functools.partial(jax.jit, static_argnames=("periodic", "steps"))
def _mean_field(u, k, q0, *, periodic, steps):
    black = jnp.asarray(colours(u.shape[:-1], periodic))[..., None]

    def elbo(q):
        log_q = jnp.log(jnp.where(q > 0, q, 1.0))
        return jnp.sum(jnp.where(q > 0, q * jnp.where(q > 0, u, 0.0), 0.0)) + 0.5 * k * jnp.sum(q * neighbour_counts(q, periodic)) - jnp.sum(q * log_q)

    def sweep(q, _):
        for colour in (black, ~black):  # the exact coordinate update of every site of one colour
            q = jnp.where(colour, jax.nn.softmax(u + k * neighbour_counts(q, periodic), axis=-1), q)
        return q, elbo(q)

    return jax.lax.scan(sweep, q0, None, length=steps)


def mean_field(unary, coupling: float, *, periodic: bool, key, steps: int = 50) -> Result:
    """Naive mean field on a lattice by coordinate ascent, one colour at a time (module docstring).

    Args:
        unary, coupling, periodic: the Potts form.
        key: a JAX key or an int seed for the random initial :math:`q` (softmax of standard normals).
        steps: sweeps (both colours each).

    Returns:
        ``Result(method="lattice_mean_field", marginals={"x": q (*shape, q)}, log_evidence=<final
        ELBO of the Potts form>, log_evidence_kind="lower_bound", history=<ELBO after each sweep>)``.
    """
    if int(steps) < 1:
        raise DataError(f"steps must be at least 1, got {steps!r}")
    start = time.perf_counter()
    u, k = check_lattice(unary, coupling)
    q0 = jax.nn.softmax(jax.random.normal(as_key(key), u.shape, dtype=u.dtype) + jnp.where(jnp.isfinite(u), 0.0, -jnp.inf), -1)
    q, history = _mean_field(u, jnp.asarray(k, u.dtype), q0, periodic=bool(periodic), steps=int(steps))
    history = np.asarray(history)
    return Result(method="lattice_mean_field", marginals={"x": np.asarray(q)}, log_evidence=float(history[-1]),
                  log_evidence_kind="lower_bound", history=history, seconds=time.perf_counter() - start,
                  diagnostics={"last_change": float(history[-1] - history[-2]) if len(history) > 1 else float("nan")})
