"""Gibbs sampling on discrete factor graphs: systematic scan, several chains at once.

Gibbs sampling (Geman and Geman, 1984) updates one variable at a time from its full conditional,

.. math::

    p(x_v \\mid x_{-v}, e) \\propto \\exp \\sum_{f \\ni v} \\log \\phi_f(x_v, x_{S_f \\setminus v}),

which needs only the factors that contain :math:`v` (its Markov blanket). A systematic scan visits
every unobserved variable once per sweep; the chain leaves :math:`p(x \\mid e)` invariant and
converges to it when it is irreducible.

Two variables that share no factor have independent conditionals given the rest, so we colour the
interaction graph (variables adjacent when they share a factor) and update a whole colour class
at once: the scan order is "colour by colour", still a systematic scan, and each class costs one
vectorised gather over a flat array of all log-tables. Sweeps run in ``jax.lax.scan``; chains in
``jax.vmap``.

Caveat: deterministic (0/1) CPTs or zero potentials make the chain reducible. With
:math:`C = A \\lor B` deterministic and :math:`C` = true observed, the states (A, B) = (1, 0) and
(0, 1) cannot reach each other one variable at a time: the chain stays in the region it starts in,
and its marginals are wrong however long it runs. Compare chains (``diagnostics["r_hat"]``) and
prefer exact inference or likelihood weighting on such models.

Initial states: each chain starts from a configuration of positive probability, chosen by
importance resampling among sequential draws (:mod:`inference.starts`:
for a Bayesian network, forward samples with the evidence clamped and each evidence CPT folded
into the proposal as soon as its parents are drawn).

References:
    Geman and Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
    restoration of images.
    Gonzalez, Low, Gretton and Guestrin (2011). Parallel Gibbs sampling: from colored fields to
    thin junction trees.

Example:
    >>> import jax, numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference.gibbs import gibbs
    >>> g = FactorGraph({"a": ("0", "1"), "b": ("0", "1")},
    ...                 [Factor(("a", "b"), np.log([[4.0, 1.0], [1.0, 4.0]]))])
    >>> r = gibbs(g, jax.random.key(0), 4000, evidence={"a": "1"}, chains=2)
    >>> r.samples["b"].shape, bool(abs(r.marginals["b"][1] - 0.8) < 0.05)
    ((8000,), True)
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

from inference.discrete import prepare, structure
from inference.elimination import colouring
from inference.layout import card_mask, flat_layout, flatten_tables, make_reads, read
from inference.result import Result
from inference.starts import no_start, pick_starts, sequential_sampler
from inference.rng import as_key


@functools.lru_cache(maxsize=64)
def sweep_plan(signature: tuple, evidence_vars: tuple):
    """Per colour class: (positions of its variables in the state, reads (``depth`` per variable,
    variable-major), depth, mask)."""
    cards, scopes, _ = structure(signature)
    variables = tuple(cards)
    observed = set(evidence_vars)
    free = tuple(v for v in variables if v not in observed)
    touching = {v: [f for f, s in enumerate(scopes) if v in s] for v in free}
    width = flat_layout(signature).width
    plan = []
    for colour in colouring(cards, scopes, free):
        depth = max(max(len(touching[v]) for v in colour), 1)
        pairs = []  # depth reads per variable; dummies (log 1) pad the shorter blankets
        for v in colour:
            pairs.extend([(v, f) for f in touching[v]] + [(v, None)] * (depth - len(touching[v])))
        plan.append(
            (
                np.asarray([variables.index(v) for v in colour], dtype=np.int64),
                make_reads(pairs, signature),
                depth,
                card_mask([cards[v] for v in colour], width),
            )
        )
    return free, tuple(plan)


def sweep(table, plan, width, x, key):
    """One systematic-scan sweep of one chain: each colour class drawn from its conditionals
    (Gumbel-max: :math:`\\arg\\max_k \\text{logit}_k + g_k` with :math:`g_k` standard Gumbel)."""
    size = sum(len(positions) for positions, *_ in plan)
    noise = jax.random.gumbel(key, (max(size, 1), width))
    first = 0
    for positions, reads, depth, mask in plan:
        contributions = read(table, reads, x, width)  # (n_c * depth, K)
        logits = jnp.sum(contributions.reshape(len(positions), depth, width), axis=1) + mask
        drawn = jnp.argmax(logits + noise[first : first + len(positions)], axis=-1)
        x = x.at[positions].set(drawn)
        first += len(positions)
    return x


@functools.lru_cache(maxsize=32)
def _compiled_gibbs(signature: tuple, evidence_vars: tuple, n: int, burn_in: int, thin: int,
                    chains: int, candidates: int):
    variables = tuple(structure(signature)[0])
    free, plan = sweep_plan(signature, evidence_vars)
    flat = flat_layout(signature)
    free_pos = np.asarray([variables.index(v) for v in free], dtype=np.int64)
    steps = burn_in + n * thin
    propose = sequential_sampler(signature, evidence_vars, chains * candidates)

    def chain(table, x0, key):
        # one scan over all sweeps; the burn-in and thinned-out states are dropped afterwards
        def one(x, k):
            x = sweep(table, plan, flat.width, x, k)
            return x, x[free_pos].astype(jnp.int32)

        _, states = jax.lax.scan(one, x0, jax.random.split(key, steps))
        return states[burn_in + thin - 1 :: thin]  # (n, len(free))

    def run(tables, evidence_values, key):
        init_key, pick_key, run_key = jax.random.split(key, 3)
        # 1. initial states: importance resampling among sequential draws, per chain
        x, logw = propose(tables, evidence_values, init_key)
        x0, started = pick_starts(x, logw, pick_key, chains, candidates)
        # 2. the chains, in parallel
        table = flatten_tables(tables, flat)
        draws = jax.vmap(chain, in_axes=(None, 0, 0))(table, x0, jax.random.split(run_key, chains))
        return draws, started

    return jax.jit(run)


def gibbs(
    model,
    key,
    n: int,
    evidence=None,
    *,
    burn_in: int = 200,
    chains: int = 4,
    thin: int = 1,
    candidates: int = 64,
    model_args=(),
    model_kwargs=None,
) -> Result:
    """Systematic-scan Gibbs sampling of :math:`p(x \\mid e)` on any discrete factor graph.

    Args:
        model: any discrete model :func:`inference.discrete.prepare` reads.
        key: a JAX PRNG key.
        n: draws kept per chain (after ``burn_in`` sweeps, one every ``thin`` sweeps).
        evidence: ``{variable: state name or index}``, clamped throughout.
        chains: independent chains, run in parallel (``vmap``).
        candidates: sequential draws per chain among which its initial state is resampled.

    Returns:
        ``Result(samples={v: (chains * n,) int64 state indices, chain-major},
        marginals={v: empirical frequencies})`` for the unobserved variables, with ``diagnostics``:
        ``num_chains`` (so :meth:`Result.to_arviz` splits chains), ``burn_in``, ``thin``,
        ``colours`` (classes updated in parallel), ``ess`` and ``r_hat`` per variable and state
        (of the state indicator :math:`[x_v = k]`; NaN for a state never or always visited).
    """
    key = as_key(key)
    n, burn_in, chains, thin = int(n), int(burn_in), int(chains), int(thin)
    for name, value, low in (("n", n, 1), ("burn_in", burn_in, 0), ("chains", chains, 1), ("thin", thin, 1)):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    start = time.perf_counter()
    problem = prepare(model, evidence, model_args, model_kwargs)
    signature = problem.graph.signature()
    free, plan = sweep_plan(signature, problem.evidence_vars)
    fn = _compiled_gibbs(signature, problem.evidence_vars, n, burn_in, thin, chains, int(candidates))
    draws, started = fn(problem.tables, jnp.asarray(problem.evidence_values), key)
    if not bool(np.all(started)):
        raise no_start(problem, int(candidates))
    draws = np.asarray(draws, dtype=np.int64)
    cards = problem.graph.cardinalities
    samples, marginals, ess, r_hat = {}, {}, {}, {}
    for i, v in enumerate(free):
        chain_draws = draws[:, :, i]  # (chains, n)
        samples[v] = chain_draws.reshape(-1)
        marginals[v] = np.bincount(samples[v], minlength=cards[v]) / samples[v].size
        indicators = (chain_draws[..., None] == np.arange(cards[v])).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ess[v] = np.asarray(effective_sample_size(indicators)) if n >= 4 else np.full(cards[v], np.nan)
            r_hat[v] = np.asarray(split_gelman_rubin(indicators)) if n >= 4 else np.full(cards[v], np.nan)
    return Result(
        method="gibbs",
        samples=samples,
        marginals=marginals,
        seconds=time.perf_counter() - start,
        diagnostics={
            "num_chains": chains,
            "burn_in": burn_in,
            "thin": thin,
            "colours": len(plan),
            "ess": ess,
            "r_hat": r_hat,
        },
    )
