"""Loopy belief propagation's message updates and the schedules that order them.

The updates of :func:`inference.bp.loopy` on the reduced factor graph (see ``inference.layout``'s
:class:`~inference.layout.MessageLayout`; messages are log-vectors, one row per factor-variable
edge, padded to the widest variable with :math:`-\\infty`):

.. math::

    \\log m_{v \\to f}(x_v) = \\sum_{g \\ni v,\\, g \\neq f} \\log m_{g \\to v}(x_v), \\qquad
    \\log m_{f \\to v}(x_v) = \\log\\!\\sum_{x_{S_f \\setminus v}} \\exp\\Big(\\log \\phi_f(x_{S_f})
        + \\sum_{u \\in S_f \\setminus v} \\log m_{u \\to f}(x_u)\\Big)

(a max instead of the sum for max-product), each new message mixed with the old one in
probability space, :math:`m \\leftarrow (1 - \\delta) m^{new} + \\delta m^{old}`. A *schedule* says
which messages are recomputed from which:

- ``"flooding"``: every message at once from the previous iteration's (one vectorised update per
  group of same-shaped factors). Cheapest per iteration; on some loopy graphs it oscillates.
- ``"sequential"``: one sweep visits the factors in a fixed order (the layout's groups, factors by
  index within each) and replaces each factor's outgoing messages at once, so later factors read
  the fresh ones (a ``lax.scan`` over each group's factors: serial, :math:`O(E)` work per sweep).
- ``"residual"`` (Elidan, McGraw and Koller 2006): each update recomputes every factor's pending
  messages, measures each factor's residual (the largest change, in probability, its update
  would make) and commits the factor with the largest one. An iteration is as many updates as
  there are factors. Every update recomputes all pending messages (:math:`O(E)`) rather than
  keeping the priority queue of the paper, so an iteration costs :math:`O(F E)`: a schedule for
  graphs of up to a few thousand edges, where its convergence matters more than its speed.

Every schedule stops once no message moves (flooding, sequential: moved during the last
iteration; residual: would move) by more than ``tol``, or after ``max_iter`` iterations;
``converged`` is reported as it is. The fixed points are the same for every schedule (those of
the Bethe free energy); which one is reached, and whether, depends on the schedule.

Example:
    >>> import itertools, numpy as np
    >>> from inference import bp
    >>> from inference.factors import Factor, FactorGraph
    >>> spin = np.array([-1.0, 1.0])  # an antiferromagnetic Ising model on K4: frustrated on every triangle
    >>> g = FactorGraph({f"s{i}": ("-", "+") for i in range(4)},
    ...     [Factor((f"s{i}",), h * spin) for i, h in enumerate([-0.2, 0.16, 0.41, -0.33])]
    ...     + [Factor((f"s{i}", f"s{j}"), -0.6 * np.outer(spin, spin)) for i, j in itertools.combinations(range(4), 2)])
    >>> [bool(bp.loopy(g, schedule=s, max_iter=300).diagnostics["converged"]) for s in SCHEDULES]
    [False, True, True]

References:
    Elidan, McGraw and Koller (2006). Residual belief propagation: informed scheduling for
    asynchronous message passing.
    Kschischang, Frey and Loeliger (2001). Factor graphs and the sum-product algorithm.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from inference.discrete import evidence_columns, logsumexp, restrict, safe_normalise, structure
from inference.layout import (
    NEG_INF,
    MessageLayout,
    axis_view,
    constant_term,
    group_tables,
    message_layout,
    pad_last,
)

SCHEDULES = ("flooding", "sequential", "residual")

__all__ = ["SCHEDULES", "compiled_loopy", "factor_messages", "reduce_mode"]


def reduce_mode(x, axes, mode):
    """Log-sum (``mode="sum"``) or max of ``x`` over ``axes``."""
    if not axes:
        return x
    return logsumexp(x, axis=axes) if mode == "sum" else jnp.max(x, axis=axes)


def factor_messages(table, incoming, width: int, mode: str):
    """Factor -> variable messages of a batch of same-shaped factors, unnormalised.

    Args:
        table: (B, *shape) log-tables; incoming: per position j, (B, shape[j]) log variable ->
            factor messages.

    Returns:
        (B, arity, width): the message to each position's variable, padded with -inf.
    """
    arity = table.ndim - 1
    views = [axis_view(m, j, arity) for j, m in enumerate(incoming)]
    out = []
    for j in range(arity):
        acc = table
        for i in range(arity):
            if i != j:
                acc = acc + views[i]
        axes = tuple(1 + i for i in range(arity) if i != j)
        out.append(pad_last(reduce_mode(acc, axes, mode), width, NEG_INF))
    return jnp.stack(out, axis=1)


def _factor_to_variable(layout: MessageLayout, tables, v2f, mode):
    """All factor -> variable messages from the variable -> factor ones: (E, K), unnormalised."""
    out = []
    for group, table in zip(layout.groups, tables):
        incoming = [v2f[group.edges[:, j], : group.shape[j]] for j in range(len(group.shape))]
        out.append(factor_messages(table, incoming, layout.width, mode).reshape(-1, layout.width))
    return jnp.concatenate(out, axis=0)


def _variable_to_factor(layout: MessageLayout, f2v):
    """All variable -> factor messages: the product of the other incoming messages, (E, K)."""
    padded = jnp.concatenate([f2v, jnp.zeros((1, layout.width))], axis=0)
    mask = jnp.asarray(layout.mask)[layout.edge_var]
    return mask + jnp.sum(padded[layout.others], axis=1)


def variable_beliefs(layout: MessageLayout, f2v, mode):
    """(V, K) normalised log-beliefs: the product of each variable's incoming messages."""
    total = jax.ops.segment_sum(f2v, layout.edge_var, num_segments=len(layout.free))
    return safe_normalise(total + jnp.asarray(layout.mask), mode=mode)


def bethe(layout: MessageLayout, tables, f2v, constant):
    """The Bethe estimate of log Z at the current messages."""
    v2f = safe_normalise(_variable_to_factor(layout, f2v))
    value = constant
    for group, table in zip(layout.groups, tables):
        arity = len(group.shape)
        log_b = table
        for j in range(arity):
            log_b = log_b + axis_view(v2f[group.edges[:, j], : group.shape[j]], j, arity)
        axes = tuple(range(1, arity + 1))
        log_b = safe_normalise(log_b, axis=axes)
        b = jnp.exp(log_b)
        value = value + jnp.sum(jnp.where(b > 0, b * (table - log_b), 0.0))
    log_bv = variable_beliefs(layout, f2v, "sum")
    bv = jnp.exp(log_bv)
    neg_entropy = jnp.sum(jnp.where(bv > 0, bv * log_bv, 0.0), axis=-1)
    return value + jnp.sum((layout.degree - 1) * neg_entropy)


def _damp(new, old, damping, mode):
    """:math:`(1 - \\delta) m^{new} + \\delta m^{old}` in probability space, normalised (``new`` when
    :math:`\\delta = 0`)."""
    mixed = jnp.logaddexp(jnp.log1p(-damping) + new, jnp.log(damping) + old)
    return jnp.where(damping > 0, safe_normalise(mixed, mode=mode), new)


def _change(new, old, axis=None):
    """The largest change of a message entry, in probability."""
    return jnp.max(jnp.abs(jnp.exp(new) - jnp.exp(old)), axis=axis, initial=0.0)


def _flooding(layout, stacked, f2v, damping, mode):
    """Every message from the previous ones: (new messages, largest change)."""
    v2f = safe_normalise(_variable_to_factor(layout, f2v), mode=mode)
    new = safe_normalise(_factor_to_variable(layout, stacked, v2f, mode), mode=mode)
    new = _damp(new, f2v, damping, mode)
    return new, _change(new, f2v)


def _sequential(layout, stacked, f2v, damping, mode):
    """One sweep: each factor in turn replaces its outgoing messages, read by the factors after it."""
    mask = jnp.asarray(layout.mask)[layout.edge_var]
    others = jnp.asarray(layout.others)
    residual = jnp.zeros(())
    for group, table in zip(layout.groups, stacked):

        def update(carry, inputs, shape=group.shape):
            f2v, residual = carry
            edges, factor = inputs  # (arity,), (*shape)
            rest = jnp.take(f2v, others[edges], axis=0, mode="fill", fill_value=0.0)  # padding E reads 0
            v2f = safe_normalise(mask[edges] + jnp.sum(rest, axis=1), mode=mode)  # (arity, K)
            incoming = [v2f[None, j, : shape[j]] for j in range(len(shape))]
            new = safe_normalise(factor_messages(factor[None], incoming, layout.width, mode)[0], mode=mode)
            old = f2v[edges]
            new = _damp(new, old, damping, mode)
            return (f2v.at[edges].set(new), jnp.maximum(residual, _change(new, old))), None

        (f2v, residual), _ = jax.lax.scan(update, (f2v, residual), (jnp.asarray(group.edges), table))
    return f2v, residual


@functools.lru_cache(maxsize=64)
def compiled_loopy(signature: tuple, evidence_vars: tuple, mode: str, capacity: int, schedule: str = "flooding"):
    """The jitted loopy BP of one (structure, evidence variables, mode, schedule):
    ``run(tables, evidence values, damping, tol, max_iter) -> (log-beliefs (V, K), log Z or the
    constant, iterations, final residual, residual history (capacity,), messages (E, K))``.

    ``capacity`` sizes the residual history (a power of two >= max_iter, so that different
    ``max_iter`` values share one compiled function); max_iter itself is an argument."""
    _, scopes, _ = structure(signature)
    columns = evidence_columns(scopes, evidence_vars)
    layout = message_layout(signature, evidence_vars)
    n_edges = len(layout.edge_var)
    edge_factor, n_factors = [np.zeros(0, dtype=np.int64)], 0  # the factor (row over all groups) of each edge
    for group in layout.groups:
        edge_factor.append(np.repeat(np.arange(n_factors, n_factors + len(group.factors)), len(group.shape)))
        n_factors += len(group.factors)
    edge_factor = np.concatenate(edge_factor)
    mask = jnp.asarray(layout.mask)

    def run(tables, evidence_values, damping, tol, max_iter):
        reduced = restrict(tables, columns, evidence_values)
        stacked = group_tables(layout, reduced)
        constant = constant_term(layout, reduced)
        f2v0 = safe_normalise(mask[layout.edge_var] if n_edges else jnp.zeros((0, layout.width)), mode=mode)

        if schedule == "residual":
            def body(state):
                u, f2v, _, history = state
                # 1. every factor's pending (damped) messages, 2. each factor's residual: the largest
                # change its messages would make, 3. commit the factor with the largest residual
                pending, _ = _flooding(layout, stacked, f2v, damping, mode)
                per_factor = jax.ops.segment_max(_change(pending, f2v, axis=1), edge_factor, num_segments=n_factors)
                best = jnp.argmax(per_factor)
                f2v = jnp.where((edge_factor == best)[:, None], pending, f2v)
                residual = per_factor[best]
                it = u // n_factors
                return u + 1, f2v, residual, history.at[it].set(jnp.fmax(history[it], residual))

            def cond(state):
                u, _, residual, _ = state
                return (u < max_iter * n_factors) & (residual > tol)
        else:
            sweep = _flooding if schedule == "flooding" else _sequential

            def body(state):
                it, f2v, _, history = state
                f2v, residual = sweep(layout, stacked, f2v, damping, mode)
                return it + 1, f2v, residual, history.at[it].set(residual)

            def cond(state):
                it, _, residual, _ = state
                return (it < max_iter) & (residual > tol)

        init = (jnp.asarray(0), f2v0, jnp.asarray(jnp.inf), jnp.full((capacity,), jnp.nan))
        if n_edges:
            it, f2v, residual, history = jax.lax.while_loop(cond, body, init)
            if schedule == "residual":
                it = (it + n_factors - 1) // n_factors  # updates -> iterations of n_factors updates
        else:
            it, f2v, residual, history = 0, f2v0, jnp.zeros(()), init[3]
        beliefs = variable_beliefs(layout, f2v, mode)
        log_z = bethe(layout, stacked, f2v, constant) if mode == "sum" else constant
        return beliefs, log_z, it, residual, history, f2v

    return jax.jit(run)
