"""Markov chain Monte Carlo for any NumPyro program: NUTS and HMC, several chains, diagnostics.

Hamiltonian Monte Carlo samples the continuous latents :math:`z` of a program from
:math:`p(z \\mid x) \\propto p(x, z)` by simulating Hamiltonian dynamics with potential
:math:`U(z) = -\\log p(x, z)` (in unconstrained coordinates) and momentum
:math:`r \\sim \\mathcal N(0, M)`, with a Metropolis correction for the leapfrog error:

1. draw a momentum :math:`r`;
2. run ``num_steps`` leapfrog steps of size :math:`\\epsilon`:
   :math:`r \\leftarrow r - \\tfrac\\epsilon2 \\nabla U(z)`, :math:`z \\leftarrow z + \\epsilon M^{-1} r`,
   :math:`r \\leftarrow r - \\tfrac\\epsilon2 \\nabla U(z)`;
3. accept the end point with probability :math:`\\min(1, e^{H(z, r) - H(z', r')})`,
   :math:`H = U + \\tfrac12 r^\\top M^{-1} r`.

NUTS (Hoffman and Gelman 2014) chooses the trajectory length itself by doubling until the path
turns back. Discrete latents marked ``infer={"enumerate": "parallel"}`` are summed out of
:math:`p(x, z)` exactly (NumPyro's enumeration), so only continuous sites are sampled; a
discrete site that is not marked, or that has no finite support, is refused with a
:class:`~inference.errors.ModelError` that names it. :func:`gibbs` (discrete models) lives in
``inference.gibbs`` and is re-exported here.

Before sampling, :func:`check_model` runs the program once at NumPyro's initial point and names
the site at fault for: a latent discrete site NUTS cannot handle, a non-finite log-density, NaN
in observed data, or an observed value whose shape disagrees with its distribution (plates
included).

The check and the chains' starting points (NumPyro's ``initialize_model``) each run as one compiled
program, the data as constants; the sampler then runs on the potential NumPyro built, and the draws
are constrained (deterministic sites added) afterwards. Run eagerly, as NumPyro's ``MCMC`` runs it,
the start evaluates the log-density and its gradient one operation at a time, and each operation is
lowered and compiled anew in every process: 4-5 s of a short NUTS run on the casino HMM with every
program in JAX's persistent cache. A program that needs concrete values, or whose potential would
keep a traced value (a parameter site substituted into it), starts eagerly as NumPyro starts it.
Without a progress bar, NumPyro's run itself (the sampler's set-up, warm-up and draws; sequential
chains one after another inside it) and the constraining of the draws are one compiled program too
(:func:`_staged_run`); with a progress bar NumPyro runs them as it does, with the same draws to
rounding.

Example:
    >>> import jax
    >>> from pgm.conjugate import EightSchools
    >>> r = nuts(EightSchools(centered=False).model, EightSchools.data(), key=jax.random.PRNGKey(0),
    ...          num_samples=200, num_warmup=200, num_chains=2)
    >>> r.samples["mu"].shape, sorted(r.diagnostics)[:3]
    ((400,), ['accept_prob', 'divergences', 'ess'])

References:
    Neal (2011). MCMC using Hamiltonian dynamics. Handbook of Markov Chain Monte Carlo.
    Hoffman and Gelman (2014). The No-U-Turn sampler. JMLR.
    Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021). Rank-normalization, folding, and
    localization: an improved R-hat. Bayesian Analysis.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import DataError, ModelError
from inference.result import Result
from inference.rng import as_key
from inference.staging import NEEDS_CONCRETE, holds_tracer, jit_once

__all__ = ["nuts", "hmc", "check_model", "gibbs", "convergence", "RHAT_LIMIT", "ESS_LIMIT"]

RHAT_LIMIT = 1.01  # Vehtari et al. (2021): chains mixed when the rank-normalised R-hat is below it
ESS_LIMIT = 100  # and the bulk effective sample size above it (per site, over all chains)


def __getattr__(name):
    # ``gibbs`` is written in inference/gibbs.py; imported on first use so that this module
    # imports on its own.
    if name == "gibbs":
        from inference.gibbs import gibbs

        return gibbs
    raise AttributeError(f"module 'inference.mcmc' has no attribute {name!r}")


# --------------------------------------------------------------------------- model checks
class _LastSite:
    """Remembers the last site a program reached, to say where a failure happened."""

    def __init__(self):
        self.name = None


def _trace_at_init(model, data, key, init_strategy):
    from numpyro import handlers
    from numpyro.primitives import Messenger

    last = _LastSite()

    class _Record(Messenger):
        def process_message(self, msg):
            if msg["type"] in ("sample", "param", "deterministic", "plate"):
                last.name = msg["name"]

    program = handlers.substitute(handlers.seed(model, key), substitute_fn=init_strategy)
    try:
        with _Record():
            return handlers.trace(program).get_trace(**data)
    except (DataError, ModelError, *NEEDS_CONCRETE):
        raise
    except Exception as err:  # a failure inside the user's program: say where
        empty = [k for k, v in data.items() if np.ndim(v) > 0 and np.shape(v)[0] == 0]
        if empty:  # the likely cause (a plate of size 0, a mean of nothing): name the argument
            raise DataError(f"data {empty[0]!r} is empty (shape {np.shape(data[empty[0]])}); the program "
                            f"failed on it: {type(err).__name__}: {err}") from err
        where = f"after site {last.name!r}" if last.name else "before its first site"
        raise ModelError(f"the program failed {where}: {type(err).__name__}: {err}") from err


def _plates(site):
    return ", ".join(f"plate {f.name!r} (size {f.size}, dim {f.dim})" for f in site["cond_indep_stack"]) or "no plate"


def _site_figures(site, needs_continuous):
    """The numbers the checks of one sample site need (traceable): whether its observed value is
    finite, and the size of its log-density and how many entries are not finite. None where the
    log-density could not be computed: :func:`check_model` then checks the program eagerly, where
    :func:`_check_site` names the problem."""
    fn, value = site["fn"], site["value"]
    figures = {}
    if site["is_observed"] and jnp.issubdtype(jnp.result_type(value), jnp.floating):
        figures["finite_data"] = jnp.all(jnp.isfinite(value))
    if not site["is_observed"] and needs_continuous and fn.support.is_discrete:
        return figures
    try:
        log_prob = fn.log_prob(value)
    except Exception:  # noqa: BLE001 - a shape the host check names, or a failure it reports eagerly
        return None
    figures["size"] = jnp.asarray(jnp.size(log_prob))
    figures["not_finite"] = jnp.size(log_prob) - jnp.sum(jnp.isfinite(log_prob))
    return figures


def _check_site(name, site, needs_continuous, figures=None):
    fn, value = site["fn"], site["value"]
    shape = tuple(jnp.shape(value))
    expected = tuple(fn.shape())
    figures = figures or {}
    if site["is_observed"]:
        finite = figures.get("finite_data")
        if finite is None and jnp.issubdtype(jnp.result_type(value), jnp.floating):
            finite = jnp.all(jnp.isfinite(value))
        if finite is not None and not bool(finite):
            raise DataError(f"observed data at site {name!r} hold NaN or infinite values")
        try:
            joint = tuple(jnp.broadcast_shapes(shape, expected))
        except ValueError:
            joint = None
        if joint != shape:
            raise DataError(
                f"site {name!r}: observed value of shape {shape} does not match the distribution's "
                f"shape {expected} (batch {tuple(fn.batch_shape)}, event {tuple(fn.event_shape)}; "
                f"{_plates(site)})"
            )
    elif needs_continuous and fn.support.is_discrete:
        kind = type(fn).__name__
        if not fn.has_enumerate_support:
            raise ModelError(
                f"site {name!r} is a discrete latent ({kind}) without finite support: NUTS/HMC cannot "
                f"enumerate it; marginalise it by hand or use a discrete sampler (inference.mcmc.gibbs)"
            )
        if site["infer"].get("enumerate") != "parallel":
            raise ModelError(
                f"site {name!r} is a discrete latent ({kind}) not marked for enumeration: give it "
                f"infer={{'enumerate': 'parallel'}} so that NUTS/HMC sum it out"
            )
        return  # enumerated later: its log-density at one draw says nothing
    if "not_finite" in figures:
        bad, size = int(figures["not_finite"]), int(figures["size"])
    else:
        log_prob = fn.log_prob(value)
        bad, size = int(jnp.size(log_prob) - jnp.sum(jnp.isfinite(log_prob))), int(jnp.size(log_prob))
    if bad:
        what = "observed value" if site["is_observed"] else "initial value"
        support = str(fn.support)
        if "Traced" in support:  # bounds computed in the compiled check: name the constraint only
            support = type(fn.support).__name__.lstrip("_")
        raise ModelError(
            f"site {name!r}: the log-density is not finite at its {what} ({bad} of {size} "
            f"entries; {type(fn).__name__} with support {support}); check its parameters and data"
        )


def _traced_once(model, data, key, init_strategy, needs_continuous):
    """The program's trace at its initial point and every site's check figures, computed in one
    compiled program (the data enter as constants): run eagerly, each operation of the program
    would be lowered and compiled on its own, hundreds of small programs in a model of a few lines.
    Returns ``(trace with concrete values, {site: figures})``, or None where a site's log-density
    could not be computed in the compiled program."""
    captured = {}

    def run(key):
        trace = _trace_at_init(model, data, key, init_strategy)
        captured["trace"] = trace
        values = {n: s["value"] for n, s in trace.items() if s["type"] in ("sample", "param", "deterministic")}
        figures = {n: _site_figures(s, needs_continuous) for n, s in trace.items() if s["type"] == "sample"}
        return values, figures

    values, figures = jax.device_get(jit_once(run)(key))
    if any(f is None for f in figures.values()):
        return None
    trace = {name: (dict(site, value=values[name]) if name in values else site)
             for name, site in captured["trace"].items()}
    return trace, figures


def check_model(model: Callable, data: dict | None = None, *, key, init_strategy=None,
                needs_continuous: bool = True) -> dict:
    """Run ``model(**data)`` once at the initial point and check every sample site.

    Raises :class:`ModelError` / :class:`DataError` naming the site when a latent discrete site
    cannot be enumerated (with ``needs_continuous``), a log-density is not finite, observed data
    hold NaN, or an observed value's shape disagrees with its distribution's batch and event shape.
    The program runs as one compiled program where it can (data as constants), else eagerly.

    Returns the trace (site name -> NumPyro message) with concrete values; run compiled, a message's
    distribution is the traced one: its type, shapes and support are those of the run, its
    parameters are not for evaluation.
    """
    from numpyro.infer.initialization import init_to_uniform

    data, init_strategy = dict(data or {}), init_strategy or init_to_uniform
    try:
        checked = _traced_once(model, data, key, init_strategy, needs_continuous)
    except NEEDS_CONCRETE:
        checked = None
    trace, figures = checked or (_trace_at_init(model, data, key, init_strategy), {})
    for name, site in trace.items():
        if site["type"] == "sample":
            _check_site(name, site, needs_continuous, figures.get(name))
    return trace


# --------------------------------------------------------------------------- samplers
def _chain_method(num_chains, chain_method):
    if chain_method is not None:
        return chain_method
    if num_chains > 1 and jax.local_device_count() < num_chains:
        return "vectorized"
    return "parallel"


def _in_one_program(chain_fn):
    """NumPyro's ``chain_method`` as a callable, for :func:`_staged_run`: the chains one after
    another (``lax.map`` over the chains' keys and starting points), each with its own trajectories,
    as ``"sequential"`` runs them. NumPyro's ``"sequential"`` builds a new loop for every chain, so
    each chain traces and lowers the sampler again (and finds it in the compilation cache, or
    compiles it in a first process): 4 chains of 2,000 iterations on the casino HMM took 22.3 s with
    every program cached, 14.1 s as one program (its draws the same as NumPyro's bit for bit while
    only the chains were compiled together; to rounding now that the whole run is one program)."""
    return lambda chains: jax.lax.map(chain_fn, chains)


def _staged_run(mcmc, key, init_params, fields, data, postprocess):
    """``mcmc.run`` as one compiled program: ``(samples, extra fields)``, grouped by chain, the
    samples constrained by ``postprocess`` where given.

    Run eagerly, NumPyro sets the sampler up one operation at a time (the first step size's search,
    the mass matrix, the adaptation's state), and each operation is lowered and compiled as a program
    of its own, in every process. One chain of 200 warm-up and 200 kept draws on the casino HMM:
    5.85 s eagerly with every program in the persistent cache, 1.53 s as one program (7.65 s and
    4.47 s in a fresh process). The draws are NumPyro's to rounding: compiled, the operations fuse,
    so the last bits differ, and the chains drift apart as any two trajectories do. The ``mcmc``
    object is left holding traced values: read only what this returns."""

    def run(key, init_params):
        mcmc.run(key, init_params=init_params, extra_fields=fields, **data)
        samples = mcmc.get_samples(group_by_chain=True)
        if postprocess is not None:
            samples = jax.vmap(jax.vmap(postprocess))(samples)
        return samples, mcmc.get_extra_fields(group_by_chain=True)

    return jax.jit(run)(key, init_params)


def _compiled_start(model, data, keys, init_strategy):
    """NumPyro's ``initialize_model`` for every chain as one compiled program (data as constants).

    Run eagerly, as ``MCMC`` does, the search for a starting point evaluates the log-density and its
    gradient operation by operation: each operation is lowered and compiled as a program of its own,
    hundreds for a model of a few lines, again in every process (JAX's persistent cache keeps the
    compiled programs, not their lowering). Returns ``(ParamInfo with a leading chain axis,
    potential_fn, postprocess_fn)``; None where the program needs concrete values or where the
    functions NumPyro built would hold traced values (supports with computed bounds, say): the
    sampler then starts as NumPyro starts it.
    """
    from numpyro.infer.util import initialize_model

    captured = {}

    def run(keys):
        info = initialize_model(keys, model, init_strategy=init_strategy, model_kwargs=data)
        captured["info"] = info
        return info.param_info

    try:
        param_info = jax.device_get(jit_once(run)(keys))
    except NEEDS_CONCRETE:
        return None
    info = captured["info"]
    if holds_tracer([info.potential_fn, info.postprocess_fn]):
        return None
    return param_info, info.potential_fn, info.postprocess_fn


def _run(make_kernel, name, model, data, key, num_samples, num_warmup, num_chains, progress, chain_method,
         thinning, check, init_strategy):
    from numpyro.infer import MCMC
    from numpyro.infer.initialization import init_to_uniform

    data = dict(data or {})
    for value, arg, low in ((num_samples, "num_samples", 1), (num_warmup, "num_warmup", 0),
                            (num_chains, "num_chains", 1), (thinning, "thinning", 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{arg} must be an integer >= {low}, got {value!r}")
    key = as_key(key)
    start = time.perf_counter()
    check_key, run_key, init_key = jax.random.split(key, 3)
    if check:
        check_model(model, data, key=check_key, init_strategy=init_strategy)
    compiled = _compiled_start(model, data, jax.random.split(init_key, num_chains), init_strategy or init_to_uniform)
    init_params, postprocess = None, None
    if compiled is not None:
        param_info, potential_fn, postprocess = compiled
        grads = [np.reshape(g, (num_chains, -1)) for g in jax.tree_util.tree_leaves(param_info.z_grad)]
        grads = np.hstack([np.zeros((num_chains, 0)), *grads])  # (chains, every gradient entry)
        valid = np.isfinite(param_info.potential_energy) & np.isfinite(grads).all(axis=1)
        if not np.all(valid):
            raise ModelError(f"{name}: no initial point with a finite log-density and gradient was found in 100 "
                             f"draws from the initial strategy (chain {int(np.flatnonzero(~valid)[0])})")
        init_params = param_info if num_chains > 1 else jax.tree_util.tree_map(lambda v: v[0], param_info)
        kernel = make_kernel(potential_fn=potential_fn)
    else:
        kernel = make_kernel(model=model)
    method = _chain_method(num_chains, chain_method)
    fields = ("diverging", "accept_prob")
    # staged: NumPyro's run (the sampler's start, warm-up and draws) and the constraining of the draws
    # as one compiled program, where the start was compiled (so the potential holds no traced value)
    staged = compiled is not None and not progress and (num_chains == 1 or method in ("sequential", "vectorized"))

    def sampler(kernel, staged):
        chains = _in_one_program if staged and method == "sequential" and num_chains > 1 else method
        return MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    chain_method=chains, progress_bar=progress, thinning=thinning)

    try:
        if staged:
            try:
                samples, extra = _staged_run(sampler(kernel, True), run_key, init_params, fields, data, postprocess)
            except NEEDS_CONCRETE:  # a sampler that reads values while it sets up: run as NumPyro runs it,
                staged, kernel = False, make_kernel(potential_fn=potential_fn)  # with a kernel untouched by the trace
        if not staged:
            mcmc = sampler(kernel, False)
            mcmc.run(run_key, init_params=init_params, extra_fields=fields, **data)
            samples, extra = mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)
            if postprocess is not None:  # the draws are unconstrained: constrain them, add deterministic sites
                samples = jax.jit(jax.vmap(jax.vmap(postprocess)))(samples)
    except RuntimeError as err:
        if "valid initial parameters" in str(err):
            raise ModelError(f"{name}: no initial point with a finite log-density and gradient was found "
                             f"(NumPyro: {err})") from err
        raise
    grouped = {k: np.asarray(v) for k, v in samples.items()}
    seconds = time.perf_counter() - start
    return Result(method=name, samples={k: v.reshape((-1,) + v.shape[2:]) for k, v in grouped.items()},
                  seconds=seconds, diagnostics=_diagnostics(grouped, extra, num_chains))


def convergence(grouped: dict) -> dict:
    """Rank-normalised split R-hat and bulk ESS per site (ArviZ; Vehtari et al. 2021) of draws
    ``{site: (chains, draws, ...)}``, and the warnings a person should read before trusting them.

    Returns ``{"r_hat": {site: array} (sites with two or more chains), "ess": {site: array},
    "warnings": [str]}``: a warning names
    every site whose largest R-hat exceeds :data:`RHAT_LIMIT` (only with two or more chains) or
    whose smallest ESS is below :data:`ESS_LIMIT`. Sites with fewer than 4 draws per chain are left out.
    """
    from inference._arviz import arviz

    az = arviz()

    floats = {k: np.asarray(v, dtype=float) for k, v in grouped.items() if np.shape(v)[1] >= 4}
    if not floats:
        return {"r_hat": {}, "ess": {}, "warnings": []}
    # one dataset per site: sites may differ in their number of chains
    ess = {k: np.asarray(az.ess(az.convert_to_dataset({k: v}), method="bulk")[k]) for k, v in floats.items()}
    r_hat = {k: np.asarray(az.rhat(az.convert_to_dataset({k: v}))[k])  # R-hat compares chains: two at least
             for k, v in floats.items() if v.shape[0] > 1}
    warnings = []
    for k in floats:
        if k in r_hat and np.nanmax(r_hat[k]) > RHAT_LIMIT:
            warnings.append(f"{k}: R-hat {np.nanmax(r_hat[k]):.3f} > {RHAT_LIMIT} (the chains have not mixed)")
        if np.nanmin(ess[k]) < ESS_LIMIT:
            warnings.append(f"{k}: ESS {np.nanmin(ess[k]):.0f} < {ESS_LIMIT} (too few effective draws)")
    return {"r_hat": r_hat, "ess": ess, "warnings": warnings}


def _diagnostics(grouped, extra, num_chains):
    return {
        "num_chains": num_chains,
        **convergence(grouped),
        "divergences": int(np.sum(np.asarray(extra["diverging"]))),
        "accept_prob": float(np.mean(np.asarray(extra["accept_prob"]))),
    }


def nuts(model: Callable, data: dict | None = None, *, key, num_samples: int = 1000, num_warmup: int = 500,
         num_chains: int = 1, progress: bool = False, chain_method: str | None = None,
         target_accept_prob: float = 0.8, max_tree_depth: int = 10, dense_mass: bool = False,
         init_strategy=None, thinning: int = 1, check: bool = True) -> Result:
    """The No-U-Turn sampler on ``model(**data)`` (NumPyro), discrete enumerable sites summed out.

    Args:
        model: a NumPyro program; data enter as keyword arguments.
        data: the keyword arguments (observations, covariates).
        key: a JAX PRNG key or an int seed.
        num_samples, num_warmup: draws kept and adaptation steps, per chain.
        num_chains: independent chains; ``chain_method`` defaults to ``"parallel"`` when there
            are enough devices, else ``"vectorized"`` (in lockstep: every iteration waits for the
            chain with the deepest tree). ``"sequential"`` runs them one after another in one
            compiled program (without a progress bar; with one, NumPyro's loop per chain, traced again
            for every chain).
        target_accept_prob, max_tree_depth, dense_mass: NUTS settings (step size and mass
            matrix are adapted during warm-up).
        init_strategy: a NumPyro init strategy (default ``init_to_uniform``).
        check: run :func:`check_model` first (errors that name the site).

    Returns:
        ``Result(method="nuts", samples={site: (num_chains * num_samples, ...)} chain-major,
        diagnostics={"r_hat", "ess" (per site, rank-normalised, ArviZ), "warnings" (sites whose chains
        have not mixed: see :func:`convergence`), "num_chains", "divergences", "accept_prob"})``.
    """
    from numpyro.infer import NUTS
    from numpyro.infer.initialization import init_to_uniform

    def make_kernel(model=None, potential_fn=None):
        return NUTS(model, potential_fn=potential_fn, target_accept_prob=target_accept_prob,
                    max_tree_depth=max_tree_depth, dense_mass=dense_mass, init_strategy=init_strategy or init_to_uniform)

    return _run(make_kernel, "nuts", model, data, key, num_samples, num_warmup, num_chains, progress, chain_method,
                thinning, check, init_strategy)


def hmc(model: Callable, data: dict | None = None, *, key, num_samples: int = 1000, num_warmup: int = 500,
        num_chains: int = 1, progress: bool = False, chain_method: str | None = None, step_size: float = 1.0,
        num_steps: int | None = None, trajectory_length: float | None = None, adapt_step_size: bool = True,
        target_accept_prob: float = 0.8, dense_mass: bool = False, init_strategy=None, thinning: int = 1,
        check: bool = True) -> Result:
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps (``num_steps``) or a fixed
    ``trajectory_length`` (default :math:`2\\pi` when ``num_steps`` is None), the step size
    adapted during warm-up unless ``adapt_step_size=False``. Other arguments and the Result as :func:`nuts`.
    """
    from numpyro.infer import HMC
    from numpyro.infer.initialization import init_to_uniform

    if num_steps is not None and num_steps < 1:
        raise DataError(f"num_steps must be >= 1, got {num_steps}")
    if not (isinstance(step_size, (int, float)) and np.isfinite(step_size) and step_size > 0):
        raise DataError(f"step_size must be a positive finite number, got {step_size!r}")
    if trajectory_length is not None and not (np.isfinite(trajectory_length) and trajectory_length > 0):
        raise DataError(f"trajectory_length must be a positive finite number, got {trajectory_length!r}")
    def make_kernel(model=None, potential_fn=None):
        return HMC(model, potential_fn=potential_fn, step_size=step_size, num_steps=num_steps,
                   trajectory_length=trajectory_length if trajectory_length is not None or num_steps else 2 * np.pi,
                   adapt_step_size=adapt_step_size, target_accept_prob=target_accept_prob,
                   dense_mass=dense_mass, init_strategy=init_strategy or init_to_uniform)

    return _run(make_kernel, "hmc", model, data, key, num_samples, num_warmup, num_chains, progress, chain_method,
                thinning, check, init_strategy)
