"""Importance-sampled log-likelihood, IWAE and ELBO estimates for Pyro programs with per-datum latents.

A Pyro program ``model(**data)`` with latents :math:`z_b` and observations :math:`x_b` inside a
plate over data points, and a guide ``guide(**data)`` proposing :math:`q(z_b \\mid x_b)`, give
importance weights per particle :math:`k` and datum :math:`b`

.. math::

    \\log w_{kb} = \\log p(x_b, z_{kb}) - \\log q(z_{kb} \\mid x_b),
    \\qquad z_{kb} \\sim q(\\cdot \\mid x_b),

and three estimates of :math:`\\log p(x_b)`:

- the ELBO, :math:`\\frac1K \\sum_k \\log w_{kb}`: a lower bound of
  :math:`\\log p(x_b)` in expectation, short by :math:`\\mathrm{KL}(q \\,\\|\\, p(z \\mid x_b))`;
- the importance-weighted bound (IWAE, Burda et al. 2016),
  :math:`\\mathcal L_K = \\log \\frac1K \\sum_k w_{kb}`: also a lower bound in expectation,
  non-decreasing in :math:`K`, and :math:`\\mathcal L_K \\to \\log p(x_b)` as :math:`K \\to \\infty`,
  with bias :math:`\\log p(x_b) - \\mathbb E[\\mathcal L_K] \\approx \\chi^2(p \\,\\|\\, q) / 2K`
  (Maddison et al. 2017);
- the importance-sampling estimate of the test log-likelihood: :math:`\\mathcal L_K` with
  :math:`K` in the thousands (5,000 in Burda et al.), computed here in chunks of particles with a
  running log-sum-exp, so that memory does not grow with :math:`K`.

How a weight is computed (:func:`log_weights`):

1. Find the program's plate nesting from one trace; put a particle plate of size :math:`K` to the
   left of every plate of the program (vectorised particles).
2. Trace the guide inside it: every latent gets a leading particle axis.
3. Replay the model on the guide's values and score both traces (masks and scales applied).
4. Per site, sum the log-densities over every axis but the particle and data-plate axes, then
   :math:`\\log w = \\sum_{\\text{model sites}} - \\sum_{\\text{guide sites}}`, shaped (K, B).
   A latent outside the data plate (a global latent) has no per-datum weight: ModelError.

Bits per dimension convert nats per datum: :math:`-\\log_2 p(x) / D`; for data on a grid of
``levels`` values scaled to :math:`[0, 1)` and uniformly dequantised, the discrete likelihood
satisfies :math:`\\log P(x) \\ge \\mathbb E_u[\\log p((x + u) / L)] - D \\log L` (Theis et al. 2016).

References:
    Burda, Grosse and Salakhutdinov (2016). Importance weighted autoencoders. ICLR.
    Maddison, Lawson, Tucker, Heess, Norouzi, Mnih, Doucet and Teh (2017). Filtering variational
        objectives. NeurIPS (the :math:`1/K` bias of the IWAE bound).
    Theis, van den Oord and Bethge (2016). A note on the evaluation of generative models. ICLR.

Example:
    >>> import torch, pyro, pyro.distributions as dist
    >>> zero = torch.tensor(0.0, dtype=torch.float64)
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(zero, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):  # the exact posterior N(x/2, 1/2): every weight equals p(x)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5 ** 0.5))
    >>> x = torch.tensor([0.3, -1.2], dtype=torch.float64)
    >>> result = importance_log_likelihood(model, guide, {"x": x}, num_particles=10, seed=0)
    >>> exact = dist.Normal(zero, 2.0 ** 0.5).log_prob(x).sum()
    >>> abs(result.log_evidence - float(exact)) < 1e-12
    True
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch

from inference.errors import DataError, ModelError
from inference.evaluate import bits_per_dim  # the one definition, re-exported here
from inference.result import Result

__all__ = [
    "log_weights",
    "trace_log_joint",
    "elbo",
    "iwae_bound",
    "importance_log_likelihood",
    "bits_per_dim",
]

PARTICLE_PLATE = "_particles"


# --------------------------------------------------------------------------- randomness
@contextlib.contextmanager
def seeded(seed):
    """Run a block with torch's default generator seeded from ``seed`` (an int or a
    ``torch.Generator``) and restore the caller's generator state afterwards.

    Pyro's distributions draw from torch's default generator; this scope makes a block of Pyro
    code a pure function of ``seed`` without touching the caller's random state.
    """
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed))
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise DataError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    with torch.random.fork_rng(devices=[]):
        if torch.cuda.is_available():
            torch.manual_seed(int(seed))
        else:  # the same seeding without queueing lazy CUDA calls (each records a stack trace: ms per call)
            torch.default_generator.manual_seed(int(seed))
        yield


# --------------------------------------------------------------------------- traces
def _plate_nesting(trace) -> int:
    """The number of batch dimensions the program's plates use."""
    dims = [
        -frame.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return max(dims, default=0)


def _sample_sites(trace):
    from pyro.poutine.util import site_is_subsample

    return [(name, site) for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)]


def _per_datum(trace, plate: str, num_particles: int, nesting: int, sign: str) -> torch.Tensor:
    """Sum of the sites' log-densities of a particle-vectorised trace, shaped (K, B)."""
    trace.compute_log_prob()
    total = None
    size = None
    for name, site in _sample_sites(trace):
        frames = {f.name: f for f in site["cond_indep_stack"] if f.vectorized}
        if plate not in frames:
            raise ModelError(
                f"{sign} site {name!r} is outside the plate {plate!r}: per-datum importance weights "
                f"need every sample site inside the data plate"
            )
        data_frame = frames[plate]
        if size is None:
            size = data_frame.size
        lp = site["log_prob"]
        lp = lp.reshape((1,) * (nesting + 1 - lp.dim()) + lp.shape)  # (K?, ..., B?, ...)
        particle_axis = 0  # the particle plate is the leftmost batch axis
        data_axis = nesting + 1 + data_frame.dim
        keep = {particle_axis, data_axis}
        other = tuple(a for a in range(lp.dim()) if a not in keep)
        if other:
            lp = lp.sum(other, keepdim=True)
        lp = lp.reshape(lp.shape[particle_axis], lp.shape[data_axis])
        lp = lp.expand(num_particles, data_frame.size)
        total = lp if total is None else total + lp
    if total is None:
        raise ModelError(f"the {sign} has no sample site")
    return total


def _nesting_of(program, args, kwargs) -> tuple[int, Any]:
    from pyro import poutine

    trace = poutine.trace(program).get_trace(*args, **kwargs)
    return _plate_nesting(trace), trace


def log_weights(
    model: Callable,
    guide: Callable,
    num_particles: int,
    *args,
    plate: str = "data",
    require_rsample: bool = False,
    max_plate_nesting: int | None = None,
    **kwargs,
) -> torch.Tensor:
    """Importance log-weights :math:`\\log p(x_b, z_{kb}) - \\log q(z_{kb} \\mid x_b)`, shaped (K, B).

    Differentiable: with reparameterised guide sites the weights carry gradients to both the
    model's and the guide's parameters (``require_rsample=True`` checks that every guide site is
    reparameterised and raises :class:`ModelError` naming one that is not).

    Args:
        model, guide: Pyro programs taking ``*args, **kwargs``, each sample site inside the plate
            named ``plate`` (the data plate).
        num_particles: :math:`K`, the number of particles per datum.
        plate: the name of the data plate.
        max_plate_nesting: the number of batch dimensions the programs' plates use; found by
            tracing both programs once when None (pass it to save those two runs in a loop).
    """
    from pyro import plate as pyro_plate
    from pyro import poutine

    if int(num_particles) < 1:
        raise DataError(f"num_particles must be >= 1, got {num_particles}")
    nesting = max_plate_nesting
    if nesting is None:
        nesting = max(_nesting_of(guide, args, kwargs)[0], _nesting_of(model, args, kwargs)[0])
    particles = pyro_plate(PARTICLE_PLATE, int(num_particles), dim=-(nesting + 1))
    with particles:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    if require_rsample:
        for name, site in _sample_sites(guide_trace):
            if not site["is_observed"] and not site["fn"].has_rsample:
                raise ModelError(
                    f"guide site {name!r} ({type(site['fn']).__name__}) is not reparameterised: "
                    "importance-weighted gradients need rsample; use the ELBO (score function) instead"
                )
    with particles:
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    log_p = _per_datum(model_trace, plate, int(num_particles), nesting, "model")
    log_q = _per_datum(guide_trace, plate, int(num_particles), nesting, "guide")
    if log_p.shape != log_q.shape:
        raise ModelError(f"model and guide disagree on the size of plate {plate!r}: {log_p.shape} vs {log_q.shape}")
    return log_p - log_q


def trace_log_joint(program: Callable, values: Mapping[str, torch.Tensor], num_configs: int, *args,
                    plate: str = "data", **kwargs) -> torch.Tensor:
    """:math:`\\log p(x_b, z = v_c)` for ``num_configs`` assignments :math:`v_c` of the latents, (C, B).

    ``values[site]`` holds the values of each latent site with a leading axis of size C
    (broadcast against the data plate); the program runs once, vectorised over the C
    configurations by a plate to the left of its own. This is how a model with few discrete
    latents is scored exactly, by enumerating every configuration through the program itself.
    """
    from pyro import plate as pyro_plate
    from pyro import poutine

    nesting = _nesting_of(program, args, kwargs)[0]
    conditioned = poutine.condition(program, data=dict(values))
    with pyro_plate(PARTICLE_PLATE, int(num_configs), dim=-(nesting + 1)):
        trace = poutine.trace(conditioned).get_trace(*args, **kwargs)
    return _per_datum(trace, plate, int(num_configs), nesting, "program")


# --------------------------------------------------------------------------- estimates
def _data_size(data: Mapping[str, Any]) -> int:
    sizes = {k: v.shape[0] for k, v in data.items() if isinstance(v, torch.Tensor) and v.dim() > 0}
    if not sizes:
        raise DataError("data must hold at least one tensor with a leading data axis")
    if len(set(sizes.values())) != 1:
        raise DataError(f"data tensors disagree on the number of data points: {sizes}")
    return next(iter(sizes.values()))


def _batches(data: Mapping[str, Any], batch_size: int | None):
    n = _data_size(data)
    step = n if batch_size is None else int(batch_size)
    for start in range(0, n, step):
        yield {k: (v[start:start + step] if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
               for k, v in data.items()}


def _chunks(total: int, chunk: int):
    done = 0
    while done < total:
        k = min(chunk, total - done)
        yield k
        done += k


def _streamed(model, guide, data, num_particles, chunk_size, batch_size, plate, seed):
    """Per datum: logsumexp_k log w, logsumexp_k 2 log w, sum_k log w (streamed over chunks)."""
    lse, lse2, total = [], [], []
    with seeded(seed), torch.no_grad():
        for batch in _batches(data, batch_size):
            acc = acc2 = mean = None
            for k in _chunks(int(num_particles), int(chunk_size)):
                lw = log_weights(model, guide, k, plate=plate, **batch).to(torch.float64)  # (k, B)
                if not torch.all(torch.isfinite(lw) | (lw == -math.inf)):
                    raise DataError("a log-weight is NaN or +inf: check the data and the networks' outputs")
                parts = (torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0), lw.sum(0))
                if acc is None:
                    acc, acc2, mean = parts
                else:
                    acc = torch.logaddexp(acc, parts[0])
                    acc2 = torch.logaddexp(acc2, parts[1])
                    mean = mean + parts[2]
            lse.append(acc)
            lse2.append(acc2)
            total.append(mean)
    return torch.cat(lse).numpy(), torch.cat(lse2).numpy(), torch.cat(total).numpy()


def _result(method, per_datum, kind, seconds, num_dims, levels, extra) -> Result:
    per_datum = np.asarray(per_datum, dtype=np.float64)
    if np.any(np.isnan(per_datum)):
        raise DataError(f"{method}: the estimate is NaN for data points {np.flatnonzero(np.isnan(per_datum))[:5]}")
    diagnostics = {"per_datum": per_datum, "mean": float(per_datum.mean()), "num_data": int(per_datum.size)}
    if num_dims is not None:
        diagnostics["bits_per_dim"] = bits_per_dim(per_datum, num_dims, levels=levels)
    diagnostics.update(extra)
    return Result(method=method, log_evidence=float(per_datum.sum()), log_evidence_kind=kind,
                  seconds=seconds, diagnostics=diagnostics)


def importance_log_likelihood(
    model: Callable,
    guide: Callable,
    data: Mapping[str, Any],
    *,
    num_particles: int = 5000,
    seed,
    chunk_size: int = 500,
    batch_size: int | None = 100,
    plate: str = "data",
    num_dims: int | None = None,
    levels: int | None = None,
    method: str = "importance_sampling",
    kind: str = "estimate",
) -> Result:
    """Importance-sampling estimate :math:`\\log \\frac1K \\sum_k w_{kb}` of each :math:`\\log p(x_b)`.

    The guide is the proposal; particles are drawn ``chunk_size`` at a time and merged with a
    running log-sum-exp, data ``batch_size`` points at a time, so ``num_particles=5000`` runs in
    bounded memory. ``Result.log_evidence`` is :math:`\\sum_b` (the log-likelihood of the data
    set), ``diagnostics["per_datum"]`` each term, ``diagnostics["mean"]`` nats per datum,
    ``diagnostics["ess"]`` the effective sample size :math:`(\\sum_k w)^2 / \\sum_k w^2` per datum,
    and ``diagnostics["bits_per_dim"]`` when ``num_dims`` is given.

    Its expectation is a lower bound of :math:`\\log p(x)` (Jensen) that tightens as
    :math:`K` grows; with thousands of particles it is the usual test log-likelihood estimate, so
    its kind is ``"estimate"``.

    Example:
        See the module docstring.
    """
    start = time.perf_counter()
    lse, lse2, _ = _streamed(model, guide, data, num_particles, chunk_size, batch_size, plate, seed)
    per_datum = lse - math.log(num_particles)
    ess = np.exp(2 * lse - lse2)
    return _result(method, per_datum, kind, time.perf_counter() - start, num_dims, levels,
                   {"num_particles": int(num_particles), "ess": ess, "ess_mean": float(ess.mean())})


def iwae_bound(model, guide, data, *, num_particles: int, seed, chunk_size: int = 500,
               batch_size: int | None = 100, plate: str = "data", num_dims=None, levels=None) -> Result:
    """One draw of the importance-weighted bound :math:`\\mathcal L_K` per datum (kind ``lower_bound``:
    its expectation bounds :math:`\\log p(x)` from below)."""
    return importance_log_likelihood(model, guide, data, num_particles=num_particles, seed=seed,
                                     chunk_size=chunk_size, batch_size=batch_size, plate=plate,
                                     num_dims=num_dims, levels=levels, method=f"iwae_{num_particles}",
                                     kind="lower_bound")


def elbo(model, guide, data, *, num_particles: int = 1, seed, chunk_size: int = 500,
         batch_size: int | None = 100, plate: str = "data", num_dims=None, levels=None) -> Result:
    """The ELBO :math:`\\frac1K \\sum_k \\log w_{kb}` per datum, averaged over ``num_particles`` draws
    (kind ``lower_bound``). ``diagnostics["std_error"]`` is the Monte Carlo standard error of the
    data-set total when ``num_particles > 1``."""
    start = time.perf_counter()
    values = []
    with seeded(seed), torch.no_grad():
        for batch in _batches(data, batch_size):
            rows = [log_weights(model, guide, k, plate=plate, **batch).to(torch.float64)
                    for k in _chunks(int(num_particles), int(chunk_size))]
            values.append(torch.cat(rows, 0))  # (K, B)
    lw = torch.cat(values, 1).numpy()
    if np.any(np.isnan(lw)):
        raise DataError("a log-weight is NaN: check the data and the networks' outputs")
    extra = {"num_particles": int(num_particles)}
    if num_particles > 1:
        extra["std_error"] = float(lw.sum(1).std(ddof=1) / math.sqrt(num_particles))
    return _result("elbo", lw.mean(0), "lower_bound", time.perf_counter() - start, num_dims, levels, extra)
