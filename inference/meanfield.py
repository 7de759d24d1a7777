"""Naive mean field: the best fully factorised approximation of a discrete posterior.

For a factor graph with evidence :math:`e`, :math:`p(x \\mid e) = \\tilde p(x, e) / Z(e)`. Mean field
chooses :math:`q(x) = \\prod_v q_v(x_v)` over the unobserved variables to maximise the evidence lower
bound

.. math::

    \\mathrm{ELBO}(q) = \\sum_f \\mathbb{E}_q[\\log \\phi_f(x_{S_f}, e)] + \\sum_v H(q_v)
        = \\log Z(e) - \\mathrm{KL}(q \\,\\|\\, p(\\cdot \\mid e)) \\le \\log Z(e).

Each expectation is exact: the contraction of a factor's log-table with the :math:`q_v` of its
scope (a product of :math:`q`'s times the table, summed; entries where the product vanishes count
zero, so :math:`0 \\log 0 = 0`).

Two optimisers:

- ``method="cavi"`` (default): coordinate ascent (Bishop, 2006, section 10.1.1),
  :math:`\\log q_v(x_v) = \\sum_{f \\ni v} \\mathbb{E}_{q_{-v}}[\\log \\phi_f] + \\text{const}`, the exact
  maximiser in :math:`q_v` with the rest fixed, so the ELBO never decreases. Variables that share no
  factor are updated together (one colour class of the interaction graph at a time), which equals
  updating them one by one. One step = one sweep over all classes.
- ``method="adam"``: gradient ascent with Adam on the logits of every :math:`q_v` (jitted
  ``lax.scan`` over steps). It needs every factor strictly positive (a zero makes the ELBO
  :math:`-\\infty` for any :math:`q > 0`).

With zero entries (deterministic CPTs) CAVI starts from a configuration of positive probability
(a point mass) when a random start has ELBO :math:`-\\infty`, and keeps the ELBO finite from there.

References:
    Jordan, Ghahramani, Jaakkola and Saul (1999). An introduction to variational methods for
    graphical models.
    Bishop (2006). Pattern Recognition and Machine Learning, chapter 10.
    Kingma and Ba (2015). Adam: a method for stochastic optimization.

Example:
    >>> import jax, numpy as np
    >>> from inference import factors, meanfield
    >>> coupling = factors.Factor(("a", "b"), np.log([[4.0, 1.0], [1.0, 4.0]]))
    >>> g = factors.FactorGraph({"a": ("0", "1"), "b": ("0", "1")}, [coupling])
    >>> r = meanfield.mean_field(g, key=jax.random.key(0), steps=50)
    >>> bool(r.log_evidence <= np.log(10.0))   # log Z = log 10
    True
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from inference.discrete import evidence_columns, prepare, restrict, safe_normalise, structure
from inference.elimination import colouring
from inference.errors import ModelError
from inference.layout import axis_view, constant_term, group_tables, message_layout
from inference.result import Result
from inference.starts import initial_states
from inference.rng import as_key


def _weighted(w, table):
    """``w * table`` with ``0 * (-inf) = 0``, and no NaN in its gradient (the inner ``where`` keeps
    ``-inf`` out of the branch that is masked away)."""
    positive = w > 0
    return jnp.where(positive, w * jnp.where(positive, table, 0.0), 0.0)


def _expected_messages(layout, tables, q):
    """:math:`\\mathbb{E}_{q_{-v}}[\\log \\phi_f](x_v)` for every factor-variable edge: (E, K)."""
    out = []
    for group, table in zip(layout.groups, tables):
        arity = len(group.shape)
        qs = [axis_view(q[group.variables[:, j], : group.shape[j]], j, arity) for j in range(arity)]
        per_position = []
        for j in range(arity):
            w = jnp.ones((1,) * (arity + 1))
            for i in range(arity):
                if i != j:
                    w = w * qs[i]
            term = _weighted(w, table)
            axes = tuple(1 + i for i in range(arity) if i != j)
            value = jnp.sum(term, axis=axes) if axes else term
            pad = layout.width - group.shape[j]
            per_position.append(jnp.pad(value, ((0, 0), (0, pad))))
        out.append(jnp.stack(per_position, axis=1).reshape(-1, layout.width))
    if not out:
        return jnp.zeros((0, layout.width))
    return jnp.concatenate(out, axis=0)


def elbo(layout, tables, constant, q):
    """:math:`\\sum_f \\mathbb{E}_q[\\log \\phi_f] + \\sum_v H(q_v)` for q of shape (V, K) (zero-padded)."""
    value = constant
    for group, table in zip(layout.groups, tables):
        arity = len(group.shape)
        w = jnp.ones((1,) * (arity + 1))
        for j in range(arity):
            w = w * axis_view(q[group.variables[:, j], : group.shape[j]], j, arity)
        value = value + jnp.sum(_weighted(w, table))
    safe_log = jnp.log(jnp.where(q > 0, q, 1.0))
    return value - jnp.sum(q * safe_log)


@functools.lru_cache(maxsize=32)
def _compiled(signature: tuple, evidence_vars: tuple, method: str, steps: int):
    cards, scopes, _ = structure(signature)
    layout = message_layout(signature, evidence_vars)
    mask = jnp.asarray(layout.mask)
    index = {v: i for i, v in enumerate(layout.free)}
    classes = [np.asarray([index[v] for v in c], dtype=np.int64) for c in colouring(cards, scopes, layout.free)]

    columns = evidence_columns(scopes, evidence_vars)

    def setup(tables, evidence_values):
        reduced = restrict(tables, columns, evidence_values)
        return group_tables(layout, reduced), constant_term(layout, reduced)

    def initial_elbo(tables, evidence_values, q):
        stacked, constant = setup(tables, evidence_values)
        return elbo(layout, stacked, constant, q)

    def cavi(tables, evidence_values, q0, learning_rate):
        stacked, constant = setup(tables, evidence_values)

        def sweep(q, _):
            for members in classes:  # 1. per colour class, 2. the exact coordinate update
                messages = _expected_messages(layout, stacked, q)
                logits = jax.ops.segment_sum(messages, layout.edge_var, num_segments=len(layout.free))
                new = jnp.exp(safe_normalise(logits[members] + mask[members]))
                q = q.at[members].set(new)
            return q, elbo(layout, stacked, constant, q)

        return jax.lax.scan(sweep, q0, None, length=steps)

    def adam(tables, evidence_values, q0, learning_rate):
        stacked, constant = setup(tables, evidence_values)
        beta1, beta2, eps = 0.9, 0.999, 1e-8

        def objective(logits):
            return elbo(layout, stacked, constant, jax.nn.softmax(logits + mask, axis=-1))

        value_and_grad = jax.value_and_grad(objective)

        def step(state, t):
            logits, m, v = state
            value, grad = value_and_grad(logits)
            grad = jnp.where(jnp.isfinite(mask), grad, 0.0)
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad**2
            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
            logits = logits + learning_rate * m_hat / (jnp.sqrt(v_hat) + eps)  # ascent
            return (logits, m, v), value

        logits0 = jnp.where(jnp.isfinite(mask), jnp.log(jnp.where(q0 > 0, q0, 1.0)), 0.0)
        zeros = jnp.zeros_like(logits0)
        (logits, _, _), history = jax.lax.scan(
            step, (logits0, zeros, zeros), jnp.arange(1, steps + 1, dtype=jnp.float64)
        )
        q = jax.nn.softmax(logits + mask, axis=-1)
        # history[t] is the ELBO before step t; report the ELBO after each step instead
        history = jnp.concatenate([history[1:], objective(logits)[None]])
        return q, history

    optimise = cavi if method == "cavi" else adam
    return jax.jit(initial_elbo), jax.jit(optimise)


def mean_field(
    model,
    evidence=None,
    *,
    key,
    steps: int | None = None,
    learning_rate: float = 0.1,
    method: str = "cavi",
    model_args=(),
    model_kwargs=None,
) -> Result:
    """Fit :math:`q(x) = \\prod_v q_v(x_v)` to :math:`p(x \\mid e)` by maximising the exact ELBO.

    Args:
        model: a factor graph, a FactorGraphModel or a program with discrete sites.
        evidence: the observed variables, ``{variable: state}``.
        key: a JAX PRNG key for the random initial logits (standard normal).
        steps: CAVI sweeps (default 100) or Adam steps (default 1000).
        learning_rate: Adam's step size (unused by CAVI).
        method: ``"cavi"`` (coordinate ascent) or ``"adam"`` (gradient ascent on the logits).

    Returns:
        ``Result(marginals={v: q_v}, log_evidence=<final ELBO>, log_evidence_kind="lower_bound",
        history=<ELBO after each step>)``; ``diagnostics``: ``method``, ``initial``
        (``"random"`` or ``"configuration"``), ``last_change`` (ELBO gain of the last step).
    """
    key = as_key(key)
    if method not in ("cavi", "adam"):
        raise ValueError(f"method must be 'cavi' or 'adam', got {method!r}")
    steps = int(steps if steps is not None else (100 if method == "cavi" else 1000))
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    start = time.perf_counter()
    problem = prepare(model, evidence, model_args, model_kwargs)
    signature = problem.graph.signature()
    layout = message_layout(signature, problem.evidence_vars)
    if method == "adam":
        _require_positive(problem, layout)
    initial_elbo, optimise = _compiled(signature, problem.evidence_vars, method, steps)
    evidence_values = jnp.asarray(problem.evidence_values)
    init_key, config_key = jax.random.split(key)
    mask = jnp.asarray(layout.mask)
    q0 = jax.nn.softmax(jax.random.normal(init_key, mask.shape) + mask, axis=-1)
    initial = "random"
    if not np.isfinite(float(initial_elbo(problem.tables, evidence_values, q0))):
        # 1. a point mass on a configuration of positive probability has a finite ELBO
        x = initial_states(problem, config_key, 1, 64)[0]
        positions = [problem.graph.variables.index(v) for v in layout.free]
        q0 = jax.nn.one_hot(x[np.asarray(positions, dtype=np.int64)], layout.width)
        initial = "configuration"
    q, history = optimise(problem.tables, evidence_values, q0, jnp.asarray(float(learning_rate)))
    history = np.asarray(history)
    q = np.asarray(q)
    marginals = {v: q[i, : layout.cards[i]] for i, v in enumerate(layout.free)}
    final = float(history[-1])
    if not np.isfinite(final):
        raise ModelError(f"mean field ended with ELBO {final}: the factors have zeros it cannot avoid")
    return Result(
        method="mean_field",
        marginals=marginals,
        log_evidence=final,
        log_evidence_kind="lower_bound",
        history=history,
        seconds=time.perf_counter() - start,
        diagnostics={
            "method": method,
            "initial": initial,
            "last_change": float(history[-1] - history[-2]) if len(history) > 1 else float("nan"),
        },
    )


def _require_positive(problem, layout):
    free = set(layout.free)
    for factor, table in zip(problem.graph.factors, problem.tables):
        if any(v in free for v in factor.scope) and not bool(jnp.all(jnp.isfinite(table))):
            raise ModelError(
                f"factor over {factor.scope} has zero entries: mean field with method='adam' needs "
                f"strictly positive factors (the ELBO is -inf for every q > 0); use method='cavi'"
            )
