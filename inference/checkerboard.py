"""Checkerboard Gibbs sampling and ICM for Potts / Ising models on lattices, vectorised over the grid.

The lattice models here are given in the *Potts form* (see ``pgm.ising``): a unary log-table
:math:`u_i(k)` per site and a coupling :math:`K` on nearest-neighbour pairs,

.. math::

    \\log \\tilde p(x) = \\sum_i u_i(x_i) + K \\sum_{(i, j)} [x_i = x_j],

(an Ising model :math:`J \\sum s_i s_j + \\sum h_i s_i` is :math:`q = 2`, :math:`K = 2J`,
:math:`u_i = (-h_i, h_i)`). Site :math:`i`'s full conditional needs only its neighbours:

.. math::

    p(x_i = k \\mid x_{-i}) \\propto \\exp\\big(u_i(k) + K\\, n_i(k)\\big), \\qquad
    n_i(k) = \\#\\{j \\sim i : x_j = k\\}.

On a bipartite lattice (any open grid; a torus with even sides) the sites split into two colours
by the parity of :math:`\\sum_d i_d`, and no two sites of one colour are neighbours, so all sites
of a colour are drawn *at once* from their conditionals: one sweep is two whole-array updates
(neighbour counts by shifting the one-hot grid along each axis). This is a systematic-scan Gibbs
sampler and leaves :math:`p` invariant. **ICM** (iterated conditional modes, Besag 1986) replaces
the draw by the argmax: a greedy ascent of :math:`\\log \\tilde p` to a local maximum.

**Random numbers and precision (q = 2).** A sweep of an Ising lattice costs little more than its
uniforms, so they are drawn the cheap honest way: one uint32 word per site per sweep, serving both
colours (each site is drawn once), from Threefry-2x32-20 keyed by the step's key and run in
counter mode using both output words of each block (:func:`uniform_bits`). JAX's default scheme
(``jax_threefry_partitionable``) hashes one block per word and XORs its two outputs: twice the
hashes, for the ability to shard the draw across devices, which one lattice on one device does
not need (measured on a 256 x 256 torus: sweeps 1.04-1.18x faster in CPU time). The trade-off:
the draws differ from ``jax.random.uniform``'s for the same key (they are ``jax.random.bits``
under ``jax.threefry_partitionable(False)``, a test checks it); the same key and shape still give
the same bits on every backend. (``jax.random.key(seed, impl="rbg")`` was measured slower on CPU:
its XLA Philox generator took about three times the CPU time of these hashes.) The update
runs in float32: spins are :math:`\\pm 1` and the neighbour sums small integers (exact), the
uniform has 23 random bits, and the float32 sigmoid of the logit errs by about
:math:`10^{-7}` relative, so each draw's probability is off by at most about :math:`2 \\cdot
10^{-7}`, invisible below :math:`10^{13}` draws of one site. Potts models (q > 2) draw with
``jax.random.categorical`` in the unary tables' dtype.

Kernels follow the house sampler style (``inference.langevin``): ``kernel = checkerboard_gibbs(unary,
coupling, periodic=...)``, ``state = kernel.init(x)``, ``state, info = kernel.step(key, state)``;
:func:`run` chains steps (``lax.scan``, chains by ``vmap``) and returns marginal frequencies with
ArviZ effective sample sizes.

References:
    Geman and Geman (1984). Stochastic relaxation, Gibbs distributions, and the Bayesian
    restoration of images.
    Besag (1986). On the statistical analysis of dirty pictures.
    Gonzalez, Low, Gretton and Guestrin (2011). Parallel Gibbs sampling: from colored fields to
    thin junction trees.

Example:
    >>> import jax, numpy as np
    >>> from pgm.ising import Ising
    >>> model = Ising((4, 4), coupling=0.3)
    >>> unary, k = model.potts_form()
    >>> kernel = checkerboard_gibbs(unary, k, periodic=False)
    >>> r = run(kernel, jax.random.key(0), np.zeros((4, 4), dtype=np.int32), num_steps=200, burn_in=50)
    >>> r.marginals["x"].shape
    (4, 4, 2)
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from inference.errors import DataError, ModelError
from inference.langevin import Kernel
from inference.result import Result
from inference.rng import as_key

__all__ = ["LatticeState", "LatticeInfo", "checkerboard_gibbs", "checkerboard_step", "icm", "run", "neighbour_counts", "colours",
           "uniform_bits", "ess", "integrated_autocorrelation_time"]


class LatticeState(NamedTuple):
    """x: state indices, ``(*shape)`` int32 (a flat ``(N,)`` for graph kernels)."""

    x: Any


class LatticeInfo(NamedTuple):
    """changed: the fraction of sites whose state changed in the step; clusters: the number of
    clusters (Swendsen-Wang; the number of sites for single-site kernels); acceptance_rate: 1
    (Gibbs moves are always accepted; kept for the shared ``run`` helpers)."""

    changed: Any
    clusters: Any
    acceptance_rate: Any


def check_lattice(unary, coupling) -> tuple[jnp.ndarray, float]:
    """Unary log-tables ``(*shape, q)`` and a finite coupling, checked (ModelError naming them)."""
    u = np.asarray(unary, dtype=np.float64)
    if u.ndim < 2 or 0 in u.shape:
        raise ModelError(f"unary must have shape (*grid_shape, q) with no zero side, got {u.shape}")
    bad = np.isnan(u) | np.isposinf(u)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ModelError(f"unary entry {where} is {float(u[where])!r}; log-potentials must be < +inf and not NaN")
    if np.isneginf(u).all(axis=-1).any():
        where = tuple(int(i) for i in np.argwhere(np.isneginf(u).all(axis=-1))[0])
        raise ModelError(f"site {where} has every state at potential zero")
    coupling = float(coupling)
    if not np.isfinite(coupling):
        raise ModelError(f"coupling must be finite, got {coupling!r}")
    return jnp.asarray(u), coupling


def colours(shape: tuple[int, ...], periodic: bool) -> np.ndarray:
    """The checkerboard colouring: parity of :math:`\\sum_d i_d`, a bool array of ``shape``.
    A periodic lattice must have even sides (an odd ring is not 2-colourable)."""
    if periodic:
        odd = [d for d, n in enumerate(shape) if n % 2]
        if odd:
            raise ModelError(
                f"shape {shape}: a periodic checkerboard needs even sides (side {odd[0]} is {shape[odd[0]]}); "
                f"use inference.gibbs.gibbs or inference.cluster.swendsen_wang"
            )
    return (np.indices(shape).sum(axis=0) % 2).astype(bool)


def _shift(a, axis: int, step: int, periodic: bool):
    """``a`` moved by ``step`` (+1 or -1) along ``axis``; outside an open lattice reads zero."""
    if periodic:
        return jnp.roll(a, step, axis=axis)
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    if step > 0:
        pad[axis] = (1, 0)
        return jnp.pad(jax.lax.slice_in_dim(a, 0, n - 1, axis=axis), pad)
    pad[axis] = (0, 1)
    return jnp.pad(jax.lax.slice_in_dim(a, 1, n, axis=axis), pad)


def neighbour_counts(onehot, periodic: bool):
    """:math:`n_i(k)`: for a one-hot lattice ``(*shape, q)``, the number of neighbours in each state."""
    total = jnp.zeros_like(onehot)
    for axis in range(onehot.ndim - 1):
        if onehot.shape[axis] == 1:
            continue
        total = total + _shift(onehot, axis, 1, periodic) + _shift(onehot, axis, -1, periodic)
    return total


def _conditional_logits(u, coupling, x, periodic):
    onehot = jax.nn.one_hot(x, u.shape[-1], dtype=u.dtype)  # (*shape, q)
    return u + coupling * neighbour_counts(onehot, periodic)


def _check_start(x, shape, q) -> jnp.ndarray:
    x = np.asarray(x)
    if x.shape != tuple(shape):
        raise DataError(f"initial state must have shape {tuple(shape)}, got {x.shape}")
    if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() >= q)):
        raise DataError(f"initial state must hold integer state indices in 0..{q - 1}")
    return jnp.asarray(x, dtype=jnp.int32)


def checkerboard_gibbs(unary, coupling: float, *, periodic: bool) -> Kernel:
    """Checkerboard Gibbs sampler for a lattice Potts / Ising model (see the module docstring).

    Args:
        unary: :math:`u`, ``(*shape, q)`` log-tables (``model.potts_form()[0]``).
        coupling: :math:`K` (any real: :math:`K < 0` is antiferromagnetic).
        periodic: whether the lattice wraps (then every side must be even).

    Returns:
        ``Kernel(init, step, "checkerboard_gibbs")``: ``init(x)`` takes state indices ``(*shape)``;
        one ``step`` is one sweep (both colours).
    """
    u, k = check_lattice(unary, coupling)
    shape, q = tuple(u.shape[:-1]), int(u.shape[-1])
    colours(shape, periodic)  # an odd periodic side fails here, named

    def init(x):
        return LatticeState(_check_start(x, shape, q))

    # a partial of a module-level function: ``run`` compiles it once per (shape, q, periodic) and
    # takes the tables and the coupling as arguments, so new couplings never recompile
    step = functools.partial(checkerboard_step, (bool(periodic),), (u, jnp.asarray(k, dtype=u.dtype)))
    return Kernel(init, step, "checkerboard_gibbs")


def checkerboard_step(static, arrays, key, state):
    """One checkerboard sweep: ``static = (periodic,)``, ``arrays = (unary, coupling)``.

    Each site is drawn once per sweep, so one array of uniforms serves both colours. For q = 2
    the draw compares a float32 uniform (:func:`uniform_bits`, 23 random bits) with the float32
    conditional probability of state 1 (see the module docstring for the precision)."""
    (periodic,), (u, k) = static, arrays
    shape = u.shape[:-1]
    black = jnp.asarray(colours(shape, periodic))
    x = old = state.x
    if u.shape[-1] == 2:
        mantissa = (uniform_bits(key, shape) >> 9) | np.uint32(0x3F800000)  # a float32 in [1, 2)
        uniforms = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0
        bias = (u[..., 1] - u[..., 0]).astype(jnp.float32)
        degree = _degree(shape, periodic).astype(jnp.float32)
        kf = k.astype(jnp.float32)
        for colour in (black, ~black):  # 1. the logit of state 1 from one neighbour sum, 2. a Bernoulli draw
            up = _neighbour_sum(x.astype(jnp.float32), periodic)
            new = (uniforms < jax.nn.sigmoid(bias + kf * (2.0 * up - degree))).astype(jnp.int32)
            x = jnp.where(colour, new, x)
    else:
        for colour, sub in zip((black, ~black), jax.random.split(key, 2)):  # 1. all q logits, 2. a draw per site
            new = jax.random.categorical(sub, _conditional_logits(u, k, x, periodic), axis=-1).astype(jnp.int32)
            x = jnp.where(colour, new, x)
    n = float(np.prod(shape))
    return LatticeState(x), LatticeInfo(jnp.sum(x != old) / n, jnp.asarray(n), jnp.asarray(1.0))


def uniform_bits(key, shape):
    """``shape`` random uint32 words from ``key``: for a threefry key, Threefry-2x32-20 in counter mode
    over counters ``0 .. N-1`` using *both* output words of each block (JAX's own scheme before
    ``jax_threefry_partitionable``; equal to ``jax.random.bits`` under
    ``jax.threefry_partitionable(False)``), half the hashes of the default scheme, which XORs the
    two words into one; any other key type, and a lattice of 2^32 sites or more (beyond a uint32
    counter), goes through ``jax.random.bits``."""
    n = int(np.prod(shape, dtype=np.int64))
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if n >= 2**32 or (typed and str(jax.random.key_impl(key)) != "threefry2x32"):
        return jax.random.bits(key, shape, dtype=jnp.uint32)
    data = jax.random.key_data(key) if typed else key
    return threefry_2x32(data, jnp.arange(n, dtype=jnp.uint32)).reshape(shape)


def _neighbour_sum(a, periodic):
    total = jnp.zeros_like(a)
    for axis in range(a.ndim):
        if a.shape[axis] > 1:
            total = total + _shift(a, axis, 1, periodic) + _shift(a, axis, -1, periodic)
    return total


def _degree(shape, periodic) -> np.ndarray:
    """The number of neighbours of each site (a constant array: 2 per axis inside, fewer on an open border)."""
    ones = np.ones(shape)
    total = np.zeros(shape)
    for axis, n in enumerate(shape):
        if n == 1:
            continue
        if periodic:
            total += 2
        else:
            edge = np.ones(shape) * 2
            idx = [slice(None)] * len(shape)
            idx[axis] = 0
            edge[tuple(idx)] -= 1
            idx[axis] = n - 1
            edge[tuple(idx)] -= 1
            total += edge
    del ones
    return total


def icm(unary, coupling: float, x0, *, periodic: bool, max_sweeps: int = 100) -> Result:
    """Iterated conditional modes: each colour set in turn to its conditional argmax
    :math:`\\arg\\max_k u_i(k) + K n_i(k)`, until a sweep changes nothing (a local maximum of
    :math:`\\log \\tilde p`: no single-site change improves it) or ``max_sweeps``.

    Args:
        unary, coupling, periodic: as for :func:`checkerboard_gibbs`.
        x0: the starting state ``(*shape)`` (for denoising: the noisy image itself).

    Returns:
        ``Result(method="icm", map={"x": (*shape) int}, history=<log p~ after each sweep, up to a
        constant>, diagnostics={"sweeps", "converged"})``. Ties go to the lowest state.

    Example:
        >>> import numpy as np
        >>> unary = np.zeros((3, 3, 2)); unary[..., 1] = 0.1
        >>> int(icm(unary, 1.0, np.eye(3, dtype=int), periodic=False).map["x"].sum())   # all up
        9
    """
    start = time.perf_counter()
    u, k = check_lattice(unary, coupling)
    shape = u.shape[:-1]
    x = _check_start(x0, shape, u.shape[-1])
    if int(max_sweeps) < 1:
        raise DataError(f"max_sweeps must be at least 1, got {max_sweeps!r}")
    black = jnp.asarray(colours(shape, periodic))

    @jax.jit
    def sweep(x):
        for colour in (black, ~black):
            x = jnp.where(colour, jnp.argmax(_conditional_logits(u, k, x, periodic), axis=-1).astype(jnp.int32), x)
        onehot = jax.nn.one_hot(x, u.shape[-1], dtype=u.dtype)
        score = jnp.sum(u * onehot) + 0.5 * k * jnp.sum(onehot * neighbour_counts(onehot, periodic))
        return x, score

    history, converged = [], False
    for _ in range(int(max_sweeps)):
        new, score = sweep(x)
        history.append(float(score))
        if bool(jnp.all(new == x)):
            converged = True
            break
        x = new
    return Result(method="icm", map={"x": np.asarray(x)}, history=np.asarray(history),
                  seconds=time.perf_counter() - start,
                  diagnostics={"sweeps": len(history), "converged": converged})


def run(kernel: Kernel, key, x0, num_steps: int, *, burn_in: int = 0, num_chains: int = 1,
        statistic: Callable | None = None, num_states: int | None = None, diagnose: bool = True) -> Result:
    """Run a lattice kernel (``lax.scan`` over steps, ``vmap`` over chains) and summarise.

    Args:
        kernel: from :func:`checkerboard_gibbs` or ``inference.cluster.swendsen_wang``.
        key: a JAX key or an int seed.
        x0: the start, ``(*shape)``, or ``(num_chains, *shape)`` for several chains.
        num_steps, burn_in: steps in all, and how many to drop first.
        statistic: ``x -> array``, what to record per kept step (default: the state itself, which
            also gives ``marginals``); e.g. the magnetisation on a large lattice.
        num_states: q (inferred from the kernel's first state's maximum + 1 when absent: pass it).
        diagnose: compute ArviZ's ESS (per recorded entry: slow for an image's every pixel).

    Returns:
        ``Result(samples={"x" or "statistic": (num_chains * kept, ...)} chain-major,
        marginals={"x": (*shape, q) state frequencies} when the states are recorded,
        diagnostics={"ess": ArviZ bulk ESS of each recorded scalar (per site: of the indicator of
        the last state), "num_chains", "mean_changed", "mean_clusters"})``.
    """
    if int(num_steps) <= int(burn_in) or int(burn_in) < 0:
        raise DataError(f"num_steps ({num_steps}) must exceed burn_in ({burn_in}) >= 0")
    if int(num_chains) < 1:
        raise DataError(f"num_chains must be at least 1, got {num_chains!r}")
    start = time.perf_counter()
    key = as_key(key)
    x0 = np.asarray(x0)
    if num_chains == 1 and x0.ndim and x0.shape[0] != 1:
        x0 = x0[None]
    if x0.shape[0] != num_chains:
        raise DataError(f"x0 must have a leading axis of num_chains={num_chains}, got shape {x0.shape}")
    states = jnp.stack([kernel.init(x).x for x in x0])
    record = statistic if statistic is not None else _identity

    keys = jax.random.split(key, num_chains)
    step = kernel.step
    if isinstance(step, functools.partial) and not step.keywords and len(step.args) == 2:
        traced, changed, clusters = _chains(keys, states, step.args[1], step_fn=step.func, static=step.args[0],
                                            record=record, num_steps=int(num_steps))
    else:
        traced, changed, clusters = _chains(keys, states, (), step_fn=_Plain(step), static=(), record=record,
                                            num_steps=int(num_steps))
    traced = np.asarray(traced)[:, int(burn_in):]  # (C, S, ...)
    name = "x" if statistic is None else "statistic"
    diagnostics = {
        "num_chains": int(num_chains),
        "mean_changed": float(np.mean(np.asarray(changed)[:, int(burn_in):])),
        "mean_clusters": float(np.mean(np.asarray(clusters)[:, int(burn_in):])),
    }
    marginals = {}
    if statistic is None:
        q = int(num_states) if num_states is not None else int(traced.max()) + 1
        marginals["x"] = np.stack([(traced == j).mean(axis=(0, 1)) for j in range(q)], axis=-1)  # (*shape, q)
        if diagnose:
            diagnostics["ess"] = ess(traced == q - 1)
    elif diagnose:
        diagnostics["ess"] = ess(traced.astype(np.float64))
    samples = {name: traced.reshape((-1,) + traced.shape[2:])}
    return Result(method=kernel.name, samples=samples, marginals=marginals,
                  seconds=time.perf_counter() - start, diagnostics=diagnostics)


def _identity(x):
    return x


class _Plain:
    """A kernel's own step (not a partial) in the ``step_fn(static, arrays, key, state)`` form."""

    def __init__(self, step):
        self.step = step

    def __call__(self, static, arrays, key, state):
        return self.step(key, state)


@functools.partial(jax.jit, static_argnames=("step_fn", "static", "record", "num_steps"))
def _chains(keys, states, arrays, *, step_fn, static, record, num_steps):
    """All chains (``vmap``) for ``num_steps`` steps (``lax.scan``), recording ``record(x)``."""

    def one_chain(chain_key, x):
        def body(state, step_key):
            state, info = step_fn(static, arrays, step_key, state)
            return state, (record(state.x), info.changed, info.clusters)

        _, out = jax.lax.scan(body, LatticeState(x), jax.random.split(chain_key, num_steps))
        return out

    return jax.vmap(one_chain)(keys, states)


def ess(draws) -> np.ndarray:
    """ArviZ's bulk effective sample size of ``draws`` ``(chains, draws, ...)``, per trailing entry
    (a constant series, whose ESS is undefined, reports the number of draws)."""
    from inference._arviz import arviz

    az = arviz()

    draws = np.asarray(draws, dtype=np.float64)
    flat = draws.reshape(draws.shape[:2] + (-1,))
    out = np.asarray(az.ess(az.convert_to_dataset({"v": flat}))["v"].values, dtype=np.float64)
    constant = np.ptp(flat, axis=(0, 1)) == 0
    out = np.where(constant | ~np.isfinite(out), flat.shape[0] * flat.shape[1], out)
    return out.reshape(draws.shape[2:])


def integrated_autocorrelation_time(series) -> float:
    """:math:`\\tau_{int} = N / \\mathrm{ESS}` of a scalar series ``(chains, draws)`` (ArviZ's ESS):
    the number of steps per effectively independent draw."""
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[None]
    return float(series.size / ess(series))
