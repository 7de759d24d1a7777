"""Starting configurations of positive probability for the discrete samplers and mean field.

Gibbs sampling must start where :math:`\\tilde p(x, e) > 0` (a chain started at probability zero
never leaves it with deterministic factors), and mean field needs a point mass of finite ELBO where
a random start has none. Both get it here, by sequential importance sampling: the unobserved
variables are drawn in the graph's order, variable :math:`v` proportionally to the product of the
factors whose last unobserved variable is :math:`v` (evaluated at the values already drawn and the
evidence), and the log-weight is the sum of the log normalisers plus the log-values of the factors
over evidence variables only (:math:`F_e`; without them evidence of probability zero could start),

.. math::

    \\log w = \\sum_{f \\in F_e} \\log \\phi_f(e_{S_f})
        + \\sum_v \\log \\sum_{x_v} \\prod_{f:\\ \\mathrm{last}(f) = v} \\phi_f(x_{S_f}),

so a finite weight means a configuration of positive probability. For a Bayesian network these are
forward samples with each evidence CPT folded in as soon as its parents are drawn. Among
``candidates`` draws per chain, one is resampled in proportion to :math:`w` (importance resampling).

References:
    Kong, Liu and Wong (1994). Sequential imputations and Bayesian missing data problems.
    Koller and Friedman (2009). Probabilistic Graphical Models, section 12.2.

Example:
    >>> import jax, numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference.discrete import prepare
    >>> from inference.starts import initial_states
    >>> xor = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
    ...                   [Factor(("a", "b"), np.array([[-np.inf, 0.0], [0.0, -np.inf]]))])
    >>> x = initial_states(prepare(xor), jax.random.key(0), chains=3, candidates=8)
    >>> [int(a) ^ int(b) for a, b in np.asarray(x)]
    [1, 1, 1]
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from inference.discrete import Problem, structure
from inference.errors import EvidenceError
from inference.layout import Reads, card_mask, flat_layout, flatten_tables, make_reads, read

__all__ = ["sequential_sampler", "sequential_samples", "pick_starts", "initial_states", "no_start"]


# =========================================================================== sequential importance
@functools.lru_cache(maxsize=64)
def sequential_sampler(signature: tuple, evidence_vars: tuple, n: int):
    """Sequential importance sampling on any factor graph (the Gibbs initialiser): a traceable
    function ``(tables, evidence_values, key) -> (x (n, V), logw (n,))``.

    The unobserved variables are drawn in the graph's order; variable v is drawn proportionally to
    the product of the factors whose last unobserved variable is v, evaluated at the values already
    drawn and the evidence. The log-weight is the sum of the log normalisers, so a finite weight
    means a configuration of positive probability.
    """
    cards, scopes, _ = structure(signature)
    variables = tuple(cards)
    observed = set(evidence_vars)
    free = [v for v in variables if v not in observed]
    rank = {v: i for i, v in enumerate(free)}
    flat = flat_layout(signature)
    width = flat.width
    activated: dict[str, list[int]] = {v: [] for v in free}
    clamped = []  # factors over evidence only: a constant term of log w (zero evidence -> -inf)
    for f, scope in enumerate(scopes):
        mine = [v for v in scope if v not in observed]
        if mine:
            activated[max(mine, key=rank.get)].append(f)
        else:
            clamped.append((f, tuple(list(evidence_vars).index(v) for v in scope)))
    depth = max((len(a) for a in activated.values()), default=1) or 1
    pairs = []
    for v in free:
        pairs.extend([(v, f) for f in activated[v]] + [(v, None)] * (depth - len(activated[v])))
    reads = make_reads(pairs, signature)
    shape = (len(free), depth)
    step_reads = Reads(*(a.reshape(shape + a.shape[1:]) for a in dataclasses.astuple(reads)))
    free_pos = np.asarray([variables.index(v) for v in free], dtype=np.int64)
    ev_pos = np.asarray([variables.index(v) for v in evidence_vars], dtype=np.int64)
    mask = jnp.asarray(card_mask([cards[v] for v in free], width))

    def run(tables, evidence_values, key):
        table = flatten_tables(tables, flat)
        x0 = jnp.zeros((n, len(variables)), dtype=jnp.int64).at[:, ev_pos].set(evidence_values)
        logw0 = jnp.zeros(n) + sum((tables[f][tuple(evidence_values[i] for i in cols)] for f, cols in clamped), 0.0)
        if not free:
            return x0, logw0

        def step(carry, xs):
            x, logw = carry
            pos, offset, stride, other, other_stride, m, k = xs
            logits = jnp.sum(read(table, Reads(offset, stride, other, other_stride), x, width), axis=-2) + m
            norm = jax.nn.logsumexp(logits, axis=-1)
            drawn = jax.random.categorical(k, logits, axis=-1)
            return (x.at[:, pos].set(drawn), logw + norm), None

        xs = (jnp.asarray(free_pos), *dataclasses.astuple(step_reads), mask,
              jax.random.split(key, len(free)))
        (x, logw), _ = jax.lax.scan(step, (x0, logw0), xs)
        return x, logw

    return run


@functools.lru_cache(maxsize=64)
def _compiled_sequential(signature: tuple, evidence_vars: tuple, n: int):
    return jax.jit(sequential_sampler(signature, evidence_vars, n))


def sequential_samples(problem: Problem, key, n: int):
    """``n`` sequential-importance draws of full states (evidence clamped) and their log-weights.

    Returns ``(x, logw)``: x of shape (n, len(variables)) int, logw of shape (n,); ``logw`` is
    finite exactly when the drawn configuration has positive probability.
    """
    fn = _compiled_sequential(problem.graph.signature(), problem.evidence_vars, int(n))
    return fn(problem.tables, jnp.asarray(problem.evidence_values), key)


def no_start(problem, candidates: int) -> EvidenceError:
    named = problem.named()
    return EvidenceError(
        f"no configuration of positive probability found in {candidates} draws for a chain: "
        f"evidence {named} has probability zero or is too unlikely to start Gibbs from"
    )


def initial_states(problem, key, chains: int, candidates: int):
    """One state of positive probability per chain: importance resampling among sequential draws
    (the same as the first step of :func:`gibbs`, for other methods that need a start)."""
    draw_key, pick_key = jax.random.split(key)
    x, logw = sequential_samples(problem, draw_key, chains * candidates)
    x0, started = pick_starts(x, logw, pick_key, chains, candidates)
    if not bool(jnp.all(started)):
        raise no_start(problem, candidates)
    return x0


def pick_starts(x, logw, key, chains: int, candidates: int):
    """Importance resampling (traceable): ``x`` (chains * candidates, V) sequential draws with
    log-weights ``logw``; one draw per chain, chosen with probability proportional to its weight.
    Returns ``(x0 (chains, V), started (chains,))``, ``started`` False where every candidate of a
    chain has weight zero."""
    logw = jnp.reshape(logw, (chains, candidates))
    pick = jax.random.categorical(key, logw, axis=-1)
    x0 = jnp.reshape(x, (chains, candidates, -1))[jnp.arange(chains), pick]
    return x0, jnp.any(jnp.isfinite(logw), axis=1)
