"""Langevin samplers as pure kernels, in JAX and in torch.

Each sampler is a pair of pure functions built by a factory (the blackjax style):
``kernel = mala(logdensity_fn, step_size)``, then ``state = kernel.init(position)`` and
``state, info = kernel.step(key, state)``. The torch variants (``*_torch``) take a
``torch.Generator`` in place of the key. :func:`run` (JAX, ``lax.scan``) and :func:`run_torch`
chain steps and return a :class:`~inference.result.Result`.

All four discretise the Langevin diffusion :math:`dX_t = \\nabla \\log p(X_t)\\,dt + \\sqrt2\\,dW_t`,
whose stationary law is :math:`p`. With step :math:`\\epsilon` and
:math:`\\xi \\sim \\mathcal N(0, I)`, side by side:

==================  =========================================================================
ULA                 :math:`x' = x + \\epsilon \\nabla \\log p(x) + \\sqrt{2\\epsilon}\\,\\xi`
                    (biased: its stationary law is :math:`p` only as :math:`\\epsilon \\to 0`)
MALA                the ULA move as a proposal, accepted with probability
                    :math:`\\min\\{1, \\frac{p(x') q(x \\mid x')}{p(x) q(x' \\mid x)}\\}`,
                    :math:`q(x' \\mid x) = \\mathcal N(x'; x + \\epsilon \\nabla\\log p(x), 2\\epsilon I)`
                    (exact stationary law :math:`p`)
SGLD                :math:`\\theta' = \\theta + \\epsilon_t \\widehat{\\nabla \\log p}(\\theta) +
                    \\sqrt{2\\epsilon_t T}\\,\\xi`, an unbiased minibatch estimate
                    :math:`\\widehat{\\nabla\\log p} = \\nabla\\log p(\\theta) + \\frac{N}{n}
                    \\sum_{i \\in B} \\nabla \\log p(x_i \\mid \\theta)` and a decreasing
                    :math:`\\epsilon_t` (or a small constant one)
annealed Langevin   ULA on the score :math:`s(x, \\sigma_i) \\approx \\nabla \\log p_{\\sigma_i}(x)` of
                    the data blurred by noise :math:`\\sigma_1 > \\dots > \\sigma_L`, each level
                    for ``steps_per_level`` steps with :math:`\\alpha_i = \\epsilon\\,
                    \\sigma_i^2 / \\sigma_L^2`: :math:`x' = x + \\alpha_i s(x, \\sigma_i) +
                    \\sqrt{2\\alpha_i}\\,\\xi`
==================  =========================================================================

Conventions: the drift multiplies :math:`\\epsilon`, the noise :math:`\\sqrt{2\\epsilon}`
(Roberts and Tweedie; blackjax). Welling and Teh (2011) and Song and Ermon (2019) write
:math:`\\tfrac{\\epsilon}{2}` drift with :math:`\\sqrt{\\epsilon}` noise: their step is twice ours.

Positions are arrays or pytrees of arrays (JAX) and tensors (torch; a batch of chains is a
leading axis when ``logdensity_fn`` returns one value per row).

Example:
    >>> import jax, jax.numpy as jnp
    >>> kernel = mala(lambda x: -0.5 * jnp.sum(x**2), step_size=0.5)
    >>> state = kernel.init(jnp.zeros(2))
    >>> state, info = kernel.step(jax.random.PRNGKey(0), state)
    >>> result = run(kernel, jax.random.PRNGKey(1), jnp.zeros(2), num_steps=500)
    >>> result.samples["x"].shape
    (500, 2)

References:
    Roberts and Tweedie (1996). Exponential convergence of Langevin distributions and their
    discrete approximations. Bernoulli.
    Welling and Teh (2011). Bayesian learning via stochastic gradient Langevin dynamics. ICML.
    Song and Ermon (2019). Generative modeling by estimating gradients of the data distribution.
    NeurIPS.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import DataError, ModelError
from inference.rng import as_generator, as_key
from inference.result import Result

__all__ = [
    "LangevinState",
    "LangevinInfo",
    "SGLDState",
    "AnnealedState",
    "Kernel",
    "ula",
    "mala",
    "sgld",
    "annealed_langevin",
    "minibatch_gradient",
    "run",
    "ula_torch",
    "mala_torch",
    "sgld_torch",
    "annealed_langevin_torch",
    "run_torch",
]


class LangevinState(NamedTuple):
    """position :math:`x`, its log-density :math:`\\log p(x)` (NaN when only a score is known)
    and the gradient :math:`\\nabla \\log p(x)`."""

    position: Any
    logdensity: Any
    grad: Any


class LangevinInfo(NamedTuple):
    """acceptance_rate: the Metropolis probability :math:`\\alpha` (1 for unadjusted moves);
    is_accepted: whether the proposal was kept."""

    acceptance_rate: Any
    is_accepted: Any


class SGLDState(NamedTuple):
    """position and the step count :math:`t` (for a step-size schedule :math:`\\epsilon_t`)."""

    position: Any
    iteration: Any


class AnnealedState(NamedTuple):
    """position and the step count; the noise level is ``iteration // steps_per_level``."""

    position: Any
    iteration: Any


class Kernel(NamedTuple):
    """A sampler: ``init(position) -> state`` and ``step(key, state) -> (state, info)``."""

    init: Callable
    step: Callable
    name: str


# --------------------------------------------------------------------------- pytree helpers
def _normal_like(key, tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
    )


def _langevin_move(x, grad, noise, step_size):
    """:math:`x + \\epsilon g + \\sqrt{2\\epsilon}\\,\\xi`, leaf by leaf."""
    return jax.tree_util.tree_map(lambda a, g, n: a + step_size * g + jnp.sqrt(2 * step_size) * n, x, grad, noise)


def _tree_sq_norm(tree):
    return sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(tree))


def _log_proposal(to, frm, frm_grad, step_size):
    """:math:`\\log q(\\text{to} \\mid \\text{frm})` up to a constant that cancels in the ratio."""
    diff = jax.tree_util.tree_map(lambda t, f, g: t - f - step_size * g, to, frm, frm_grad)
    return -_tree_sq_norm(diff) / (4 * step_size)


def _check_step(step_size):
    if callable(step_size) or isinstance(step_size, jax.core.Tracer):
        return
    if isinstance(step_size, (str, bytes, bool)) or step_size is None or np.ndim(step_size) != 0:
        raise DataError(f"step_size must be a positive finite number or a schedule, got {step_size!r}")
    value = float(step_size)
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"step_size must be a positive finite number, got {step_size}")


def _check_steps(num_steps, burn_in, num_chains):
    for value, name, low in ((num_steps, "num_steps", 1), (burn_in, "burn_in", 0), (num_chains, "num_chains", 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
    if num_steps <= burn_in:
        raise DataError(f"num_steps ({num_steps}) must exceed burn_in ({burn_in})")


def _check_finite(name, xs):
    for site, v in xs.items():
        bad = ~np.isfinite(v)
        if bad.any():
            chain, draw = np.argwhere(bad.reshape(v.shape[0], v.shape[1], -1).any(-1))[0]
            raise ModelError(f"{name}: the chain left the finite numbers at site {site!r} (chain {chain}, kept draw "
                             f"{draw}): the log-density or its gradient returned NaN or infinity there, or the step "
                             "size is too large")


# --------------------------------------------------------------------------- JAX kernels
def ula(logdensity_fn: Callable | None = None, step_size: float = 1e-2, *, score_fn: Callable | None = None) -> Kernel:
    """Unadjusted Langevin: :math:`x' = x + \\epsilon \\nabla\\log p(x) + \\sqrt{2\\epsilon}\\,\\xi`.

    Give ``logdensity_fn`` (its gradient by autodiff) or ``score_fn(x) = \\nabla \\log p(x)``.
    """
    _check_step(step_size)
    if (logdensity_fn is None) == (score_fn is None):
        raise ModelError("ula needs exactly one of logdensity_fn and score_fn")

    def evaluate(x):
        if score_fn is not None:
            return jnp.nan, score_fn(x)
        return jax.value_and_grad(logdensity_fn)(x)

    def init(position):
        return LangevinState(position, *evaluate(position))

    def step(key, state):
        noise = _normal_like(key, state.position)
        x = _langevin_move(state.position, state.grad, noise, step_size)
        return LangevinState(x, *evaluate(x)), LangevinInfo(jnp.ones(()), jnp.array(True))

    return Kernel(init, step, "ula")


def mala(logdensity_fn: Callable, step_size: float) -> Kernel:
    """Metropolis-adjusted Langevin: the ULA move proposed, then accepted or rejected.

    Steps of ``step``:
    1. propose :math:`x' = x + \\epsilon \\nabla\\log p(x) + \\sqrt{2\\epsilon}\\,\\xi`;
    2. :math:`\\log \\alpha = \\log p(x') - \\log p(x) + \\log q(x \\mid x') - \\log q(x' \\mid x)`;
    3. keep :math:`x'` if :math:`\\log u < \\log\\alpha`, :math:`u \\sim U(0, 1)`, else stay at :math:`x`.
    """
    _check_step(step_size)
    value_and_grad = jax.value_and_grad(logdensity_fn)

    def init(position):
        return LangevinState(position, *value_and_grad(position))

    def step(key, state):
        key_noise, key_accept = jax.random.split(key)
        noise = _normal_like(key_noise, state.position)
        x_new = _langevin_move(state.position, state.grad, noise, step_size)
        lp_new, g_new = value_and_grad(x_new)
        log_ratio = (lp_new - state.logdensity
                     + _log_proposal(state.position, x_new, g_new, step_size)
                     - _log_proposal(x_new, state.position, state.grad, step_size))
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        accept = jnp.log(jax.random.uniform(key_accept)) < log_ratio
        new = LangevinState(x_new, lp_new, g_new)
        kept = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, state)
        return kept, LangevinInfo(jnp.minimum(1.0, jnp.exp(log_ratio)), accept)

    return Kernel(init, step, "mala")


def sgld(grad_estimator: Callable, step_size: float | Callable, *, temperature: float = 1.0) -> Kernel:
    """Stochastic-gradient Langevin: :math:`\\theta' = \\theta + \\epsilon_t \\hat g(\\theta) +
    \\sqrt{2 \\epsilon_t T}\\,\\xi`, no accept step.

    ``grad_estimator(key, position)`` returns an unbiased estimate of :math:`\\nabla\\log p(\\theta
    \\mid x)` (see :func:`minibatch_gradient`); ``step_size`` is a number or a schedule
    ``t -> epsilon_t`` (Welling and Teh use :math:`a (b + t)^{-\\gamma}`).
    """
    _check_step(step_size)
    schedule = step_size if callable(step_size) else (lambda t: step_size)

    def init(position):
        return SGLDState(position, jnp.zeros((), jnp.int32))

    def step(key, state):
        key_grad, key_noise = jax.random.split(key)
        eps = schedule(state.iteration)
        grad = grad_estimator(key_grad, state.position)
        noise = _normal_like(key_noise, state.position)
        x = _langevin_move(state.position, grad, jax.tree_util.tree_map(lambda n: jnp.sqrt(temperature) * n, noise), eps)
        return SGLDState(x, state.iteration + 1), LangevinInfo(jnp.ones(()), jnp.array(True))

    return Kernel(init, step, "sgld")


def minibatch_gradient(log_prior_fn: Callable, log_likelihood_fn: Callable, data, batch_size: int) -> Callable:
    """The unbiased minibatch estimate of :math:`\\nabla_\\theta \\log p(\\theta \\mid x_{1:N})`:

    .. math::
        \\hat g(\\theta) = \\nabla \\log p(\\theta) + \\frac{N}{n} \\sum_{i \\in B} \\nabla \\log p(x_i \\mid \\theta),

    ``B`` drawn uniformly with replacement. ``log_likelihood_fn(position, batch)`` returns the
    per-datum terms (n,), ``data`` is an array or pytree of arrays with a leading data axis N.
    Returns ``grad_estimator(key, position)`` for :func:`sgld`.
    """
    leaves = jax.tree_util.tree_leaves(data)
    sizes = {jnp.shape(x)[0] for x in leaves}
    if len(sizes) != 1:
        raise DataError(f"data arrays must share their leading (data) axis, got lengths {sorted(sizes)}")
    n = sizes.pop()
    if not 0 < batch_size <= n:
        raise DataError(f"batch_size must be in 1..{n}, got {batch_size}")

    def estimate(key, position):
        idx = jax.random.randint(key, (batch_size,), 0, n)
        batch = jax.tree_util.tree_map(lambda a: a[idx], data)

        def objective(p):
            return log_prior_fn(p) + (n / batch_size) * jnp.sum(log_likelihood_fn(p, batch))

        return jax.grad(objective)(position)

    return estimate


def annealed_langevin(score_fn: Callable, sigmas, step_size: float, steps_per_level: int) -> Kernel:
    """Annealed Langevin dynamics: ULA on :math:`s(x, \\sigma_i)` through decreasing noise levels.

    ``score_fn(x, sigma)`` approximates :math:`\\nabla_x \\log p_\\sigma(x)`; ``sigmas`` decrease;
    step ``t`` uses level :math:`i = \\min(\\lfloor t / T \\rfloor, L - 1)` and
    :math:`\\alpha_i = \\epsilon \\sigma_i^2 / \\sigma_L^2`. Run ``L * steps_per_level`` steps.
    """
    _check_step(step_size)
    sigmas = jnp.asarray(sigmas, dtype=float)
    if sigmas.ndim != 1 or sigmas.shape[0] == 0 or not bool(jnp.all(sigmas[:-1] > sigmas[1:])):
        raise DataError(f"sigmas must be a decreasing vector of noise levels, got {sigmas}")
    if steps_per_level < 1:
        raise DataError(f"steps_per_level must be >= 1, got {steps_per_level}")

    def init(position):
        return AnnealedState(position, jnp.zeros((), jnp.int32))

    def step(key, state):
        level = jnp.minimum(state.iteration // steps_per_level, sigmas.shape[0] - 1)
        sigma = sigmas[level]
        alpha = step_size * sigma**2 / sigmas[-1] ** 2
        noise = _normal_like(key, state.position)
        x = _langevin_move(state.position, score_fn(state.position, sigma), noise, alpha)
        return AnnealedState(x, state.iteration + 1), LangevinInfo(jnp.ones(()), jnp.array(True))

    return Kernel(init, step, "annealed_langevin")


# --------------------------------------------------------------------------- driver (JAX)
def _samples_dict(positions):
    if isinstance(positions, dict):
        return dict(positions)
    leaves = jax.tree_util.tree_leaves(positions)
    if len(leaves) == 1:
        return {"x": leaves[0]}
    return {f"x{i}": leaf for i, leaf in enumerate(leaves)}


def run(kernel: Kernel, key, position, num_steps: int, *, num_chains: int = 1, burn_in: int = 0) -> Result:
    """Run ``kernel`` for ``num_steps`` steps (``lax.scan``, chains by ``vmap``) and keep the
    positions after ``burn_in``.

    With ``num_chains > 1`` every leaf of ``position`` carries a leading chain axis. Returns
    ``Result(method=kernel.name, samples={name: (num_chains * kept, ...)} chain-major,
    diagnostics={"acceptance_rate", "num_chains", "ess", "r_hat" (several chains)})``.
    """
    _check_steps(num_steps, burn_in, num_chains)
    key = as_key(key)
    start = time.perf_counter()

    def one_chain(chain_key, x0):
        def body(state, step_key):
            state, info = kernel.step(step_key, state)
            return state, (state.position, info.acceptance_rate)

        _, (xs, acc) = jax.lax.scan(body, kernel.init(x0), jax.random.split(chain_key, num_steps))
        return jax.tree_util.tree_map(lambda a: a[burn_in:], xs), acc

    if num_chains == 1:
        xs, acc = jax.jit(one_chain)(key, position)
        xs = jax.tree_util.tree_map(lambda a: a[None], xs)
        acc = acc[None]
    else:
        xs, acc = jax.jit(jax.vmap(one_chain))(jax.random.split(key, num_chains), position)
    jax.block_until_ready(xs)
    return _chain_result(kernel.name, xs, acc, num_chains, time.perf_counter() - start)


def _chain_result(name, xs, acc, num_chains, seconds):
    from inference.mcmc import convergence

    grouped = {k: np.asarray(v) for k, v in _samples_dict(xs).items()}  # (C, S, ...)
    _check_finite(name, grouped)
    checks = convergence(grouped)
    diagnostics = {"acceptance_rate": float(np.mean(np.asarray(acc))), "num_chains": num_chains,
                   "ess": checks["ess"], "warnings": checks["warnings"]}
    if num_chains > 1:
        diagnostics["r_hat"] = checks["r_hat"]
    samples = {k: v.reshape((-1,) + v.shape[2:]) for k, v in grouped.items()}
    return Result(method=name, samples=samples, seconds=seconds, diagnostics=diagnostics)


# --------------------------------------------------------------------------- torch kernels
def _torch_value_and_grad(fn, x):
    import torch

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = fn(x)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad.detach()


def _torch_randn(generator, like):
    import torch

    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def _row_mask(mask, like):
    """A per-chain mask (shape of the log-density) broadcast over the trailing event dims."""
    return mask.reshape(mask.shape + (1,) * (like.dim() - mask.dim()))


def ula_torch(logdensity_fn: Callable | None = None, step_size: float = 1e-2, *, score_fn: Callable | None = None) -> Kernel:
    """:func:`ula` in torch: ``step(generator, state)``."""
    import torch

    _check_step(step_size)
    if (logdensity_fn is None) == (score_fn is None):
        raise ModelError("ula_torch needs exactly one of logdensity_fn and score_fn")

    def evaluate(x):
        if score_fn is not None:
            with torch.no_grad():
                return torch.full((), float("nan"), dtype=x.dtype), score_fn(x)
        return _torch_value_and_grad(logdensity_fn, x)

    def init(position):
        return LangevinState(position, *evaluate(position))

    noise_scale = (2 * step_size) ** 0.5
    info = LangevinInfo(torch.ones(()), torch.tensor(True))  # every proposal is taken; never mutated

    def step(generator, state):
        # x + eps * grad + sqrt(2 eps) * xi, in two fused operations
        x = torch.add(state.position, state.grad, alpha=step_size).add_(_torch_randn(generator, state.position),
                                                                         alpha=noise_scale)
        return LangevinState(x, *evaluate(x)), info

    return Kernel(init, step, "ula")


def mala_torch(logdensity_fn: Callable, step_size: float) -> Kernel:
    """:func:`mala` in torch. ``logdensity_fn(x)`` may return one value per row of ``x`` (a batch
    of independent chains, each accepted on its own)."""
    import torch

    _check_step(step_size)

    def log_q(to, frm, frm_grad, lp_shape):
        diff = (to - frm - step_size * frm_grad) ** 2
        return -diff.reshape(lp_shape + (-1,)).sum(-1) / (4 * step_size)

    def init(position):
        return LangevinState(position, *_torch_value_and_grad(logdensity_fn, position))

    def step(generator, state):
        x, lp, g = state
        x_new = x + step_size * g + (2 * step_size) ** 0.5 * _torch_randn(generator, x)
        lp_new, g_new = _torch_value_and_grad(logdensity_fn, x_new)
        shape = tuple(lp.shape)
        log_ratio = lp_new - lp + log_q(x, x_new, g_new, shape) - log_q(x_new, x, g, shape)
        log_ratio = torch.nan_to_num(log_ratio, nan=-float("inf"))
        u = torch.rand(shape, generator=generator, dtype=x.dtype, device=x.device)
        accept = torch.log(u) < log_ratio
        m = _row_mask(accept, x)
        new = LangevinState(torch.where(m, x_new, x), torch.where(accept, lp_new, lp), torch.where(m, g_new, g))
        return new, LangevinInfo(torch.clamp(torch.exp(log_ratio), max=1.0), accept)

    return Kernel(init, step, "mala")


def sgld_torch(grad_estimator: Callable, step_size: float | Callable, *, temperature: float = 1.0) -> Kernel:
    """:func:`sgld` in torch: ``grad_estimator(generator, position)`` returns the gradient estimate."""
    import torch

    _check_step(step_size)
    schedule = step_size if callable(step_size) else (lambda t: step_size)

    def init(position):
        return SGLDState(position, 0)

    def step(generator, state):
        eps = schedule(state.iteration)
        grad = grad_estimator(generator, state.position)
        noise = _torch_randn(generator, state.position)
        x = state.position + eps * grad + (2 * eps * temperature) ** 0.5 * noise
        return SGLDState(x.detach(), state.iteration + 1), LangevinInfo(torch.ones(()), torch.tensor(True))

    return Kernel(init, step, "sgld")


def annealed_langevin_torch(score_fn: Callable, sigmas, step_size: float, steps_per_level: int) -> Kernel:
    """:func:`annealed_langevin` in torch, for the deep score models: ``score_fn(x, sigma)``."""
    import torch

    _check_step(step_size)
    sigmas = [float(s) for s in sigmas]
    if not sigmas or any(a <= b for a, b in zip(sigmas, sigmas[1:])):
        raise DataError(f"sigmas must be a decreasing sequence of noise levels, got {sigmas}")
    if steps_per_level < 1:
        raise DataError(f"steps_per_level must be >= 1, got {steps_per_level}")

    def init(position):
        return AnnealedState(position, 0)

    def step(generator, state):
        sigma = sigmas[min(state.iteration // steps_per_level, len(sigmas) - 1)]
        alpha = step_size * sigma**2 / sigmas[-1] ** 2
        with torch.no_grad():
            score = score_fn(state.position, sigma)
        x = state.position + alpha * score + (2 * alpha) ** 0.5 * _torch_randn(generator, state.position)
        return AnnealedState(x, state.iteration + 1), LangevinInfo(torch.ones(()), torch.tensor(True))

    return Kernel(init, step, "annealed_langevin")


def run_torch(kernel: Kernel, generator, position, num_steps: int, *, num_chains: int = 1, burn_in: int = 0) -> Result:
    """Run a torch kernel for ``num_steps`` steps, keeping the positions after ``burn_in``.

    With ``num_chains > 1`` the leading axis of ``position`` is a batch of chains (the
    log-density returns one value per row): ``samples["x"]`` is (num_chains * kept, ...) chain-major.
    """
    import torch

    _check_steps(num_steps, burn_in, num_chains)
    generator = as_generator(generator, getattr(position, "device", "cpu"))
    start = time.perf_counter()
    state = kernel.init(position)
    kept, acc = [], []
    for t in range(num_steps):
        state, info = kernel.step(generator, state)
        if t >= burn_in:
            kept.append(state.position.detach())
            acc.append(info.acceptance_rate.float().mean())
    xs = torch.stack(kept, dim=0)  # (S, ...)
    if num_chains > 1:
        if xs.shape[1] != num_chains:
            raise DataError(f"position's leading axis has {xs.shape[1]} rows, not num_chains={num_chains}")
        xs = xs.transpose(0, 1)  # (C, S, ...)
    else:
        xs = xs[None]  # (1, S, ...)
    return _chain_result(kernel.name, xs.cpu().numpy(), torch.stack(acc).cpu().numpy(), num_chains,
                         time.perf_counter() - start)
