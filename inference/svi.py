"""Stochastic variational inference for NumPyro and Pyro programs, behind one function.

SVI fits a family :math:`q_\\phi(z)` (the *guide*) to the posterior :math:`p_\\theta(z \\mid x)` of a
program by stochastic gradient ascent on a lower bound of the log-evidence, jointly in the model's
own parameters :math:`\\theta` (``param`` sites) and the guide's :math:`\\phi`:

- **Trace** (``elbo="trace"``): :math:`\\mathcal L = \\mathbb E_{q}[\\log p_\\theta(x, z) -
  \\log q_\\phi(z)] \\le \\log p_\\theta(x)`, estimated with ``num_particles`` reparameterised draws.
- **TraceEnum** (``"trace_enum"``): discrete sites marked ``infer={"enumerate": "parallel"}`` are
  summed out of the model exactly, so :math:`\\log p_\\theta(x, z_c) = \\log \\sum_{z_d} p_\\theta(x, z_c,
  z_d)` enters the bound and the guide covers only the continuous sites :math:`z_c`.
- **IWAE** (``"iwae"``): :math:`\\mathcal L_K = \\mathbb E\\big[\\log \\tfrac1K \\sum_{k} w_k\\big]`,
  :math:`w_k = p_\\theta(x, z_k) / q_\\phi(z_k)`, :math:`z_k \\sim q_\\phi`, tighter as :math:`K` grows
  (Burda et al. 2016). For NumPyro programs its guide gradient is the doubly reparameterised
  (DReG) estimator :math:`\\sum_k \\tilde w_k^2 \\, \\partial_{z_k} \\log w_k \\,
  \\partial_\\phi z_k` (:math:`\\tilde w_k` the normalised weights; Tucker et al. 2019), whose
  variance vanishes where :math:`q` is the posterior; ``dreg=False`` gives the plain estimator.
- **Rényi** (``"renyi"``): :math:`\\mathcal L_\\alpha = \\tfrac{1}{1 - \\alpha} \\log \\mathbb E_q[w^{1-\\alpha}]`
  (Li and Turner 2016); ``alpha=0`` is IWAE.

Automatic guides: ``"normal"`` (mean-field Normal in unconstrained space), ``"mvn"`` (full-rank
multivariate Normal), ``"lowrank"`` (low-rank plus diagonal covariance), ``"delta"`` (a point
mass: MAP estimation; its objective is :math:`\\log p(x, z^*)`, no bound, so ``log_evidence`` is
None), or any guide program.

Minibatches (``batch_size``): every array in ``data`` shares a leading data axis of length
:math:`N`; each step takes :math:`B` rows of it (a permutation per epoch, drawn from the key, sliced
on the host so that ``data`` may be memory-mapped arrays larger than memory) and every sample
site inside the plate named ``batch_plate`` (default ``"data"``) has its log-density scaled by
:math:`N / B`, an unbiased estimate of the full-data bound.

Checkpoints (``checkpoint=path``): the whole optimiser state, the random state and the
objective history are written atomically every ``checkpoint_every`` steps; calling :func:`fit`
again with the same path resumes where it stopped, and the resumed run equals an uninterrupted one.

Example:
    >>> import jax
    >>> from pgm.conjugate import NormalNormal
    >>> m = NormalNormal(0.0, 1.0, 1.0)
    >>> x = jax.numpy.array([0.5, 1.5, 1.0, 2.0])
    >>> r = fit(m.model, {"x": x}, key=jax.random.PRNGKey(0), steps=2000, learning_rate=0.05)
    >>> abs(float(r.params["mu_auto_loc"]) - float(m.posterior(x)["mu"].loc)) < 0.05
    True

Which library runs a program is one rule (:func:`backend_of`): a deep model's bound method or torch
data means Pyro, anything else NumPyro; ``backend=`` says it outright. Pyro programs train through
the zoo's one loop (:mod:`inference.svi_pyro` on :mod:`inference.train`), NumPyro programs in
compiled chunks of steps here.

NumPyro's ``SVI.init`` runs here as one compiled program (:func:`_init_compiled`): eagerly, as
NumPyro runs it, its hundreds of single operations are each lowered and compiled anew in every
process. ``"trace"`` is :class:`TraceELBO`, NumPyro's ``Trace_ELBO`` with its sites in sorted order,
so that the compiled program is the same in every process (and found in JAX's persistent cache).

Private names of NumPyro still read: ``numpyro.infer.util._guess_max_plate_nesting`` (TraceEnum
needs the model's plate depth; NumPyro's own ``TraceEnum_ELBO`` calls the same function and has no
public equivalent); ``numpyro.util._validate_model`` (the plate checks :class:`TraceELBO` runs
as NumPyro's ``Trace_ELBO`` does); an autoguide's ``_postprocess_fn`` (a compiled set-up leaves a traced key in it,
made again as NumPyro makes it: see :func:`_init_compiled`).

References:
    Hoffman, Blei, Wang and Paisley (2013). Stochastic variational inference. JMLR.
    Kingma and Welling (2014). Auto-encoding variational Bayes. ICLR.
    Burda, Grosse and Salakhutdinov (2016). Importance weighted autoencoders. ICLR.
    Li and Turner (2016). Rényi divergence variational inference. NeurIPS.
    Tucker, Lawson, Gu and Maddison (2019). Doubly reparameterized gradient estimators for Monte
    Carlo objectives. ICLR.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import CheckpointError, DataError, ModelError, UnknownNameError
from inference.io import atomic_write
from inference.result import Result
from inference.rng import as_key, int_seed
from inference.shards import is_sharded

__all__ = ["fit", "make_guide", "make_elbo", "TraceELBO", "IWAE", "mean_field", "GUIDES", "ELBOS"]

GUIDES = ("normal", "mvn", "lowrank", "delta")
ELBOS = ("trace", "trace_enum", "iwae", "renyi")
_LARGE = 4096  # data arrays with at least this many entries are passed to compiled code, not baked in


def __getattr__(name):
    # ``mean_field`` is written in inference/meanfield.py; imported on first use.
    if name == "mean_field":
        from inference.meanfield import mean_field

        return mean_field
    raise AttributeError(f"module 'inference.svi' has no attribute {name!r}")


# =========================================================================== backend
def backend_of(model: Callable, data: dict | None = None) -> str:
    """``"numpyro"`` or ``"pyro"``: the library a program is run with, by one documented rule.

    1. A bound method of a ``torch.nn.Module`` (a deep model's ``model`` / ``guide``) is Pyro.
    2. A program given torch tensors as data is Pyro.
    3. Everything else is NumPyro.

    A Pyro program with NumPy data (or none) is named with ``fit(..., backend="pyro")``. Nothing is
    guessed by running the program or reading its code.
    """
    owner = getattr(model, "__self__", None)
    if owner is not None and isinstance(owner, _torch_module_type()):
        return "pyro"
    if data and any(type(v).__module__.split(".")[0] == "torch" for v in data.values()):
        return "pyro"
    return "numpyro"


def _torch_module_type():
    import sys

    torch = sys.modules.get("torch")  # a module object exists only where torch was imported
    return torch.nn.Module if torch is not None else ()


# =========================================================================== guides and ELBOs
def _hide_enumerated(backend):
    if backend == "numpyro":
        return lambda site: site.get("infer", {}).get("enumerate") == "parallel"
    return lambda msg: (msg.get("infer") or {}).get("enumerate") == "parallel"


def make_guide(model: Callable, guide: str | Callable = "normal", *, backend: str = "numpyro", rank: int | None = None):
    """An automatic guide for ``model`` by name (``GUIDES``), or ``guide`` itself if callable.

    Enumerated discrete sites are hidden from the guide (TraceEnum sums them out).
    """
    if callable(guide):
        return guide
    if guide not in GUIDES:
        raise UnknownNameError(f"unknown guide {guide!r}: choose one of {GUIDES} or pass a guide program")
    if backend == "numpyro":
        from numpyro import handlers
        from numpyro.infer import autoguide as ag

        blocked = handlers.block(model, hide_fn=_hide_enumerated(backend))
    else:
        from pyro import poutine
        from pyro.infer import autoguide as ag

        blocked = poutine.block(model, hide_fn=_hide_enumerated(backend))
    if guide == "normal":
        return ag.AutoNormal(blocked)
    if guide == "mvn":
        return ag.AutoMultivariateNormal(blocked)
    if guide == "lowrank":
        return ag.AutoLowRankMultivariateNormal(blocked, **({"rank": rank} if rank else {}))
    return ag.AutoDelta(blocked)


def make_elbo(elbo: str = "trace", num_particles: int = 1, *, backend: str = "numpyro", alpha: float = 0.0,
              dreg: bool = True, max_plate_nesting: int | None = None):
    """The objective by name (``ELBOS``) for the given backend."""
    if elbo not in ELBOS:
        raise UnknownNameError(f"unknown elbo {elbo!r}: choose one of {ELBOS}")
    if num_particles < 1:
        raise DataError(f"num_particles must be >= 1, got {num_particles}")
    if elbo in ("iwae", "renyi") and num_particles < 2:
        raise DataError(f"elbo={elbo!r} needs num_particles >= 2 (the importance samples), got {num_particles}")
    if elbo == "renyi" and alpha == 1.0:
        raise DataError("renyi with alpha=1 is the ordinary ELBO: use elbo='trace'")
    if backend == "numpyro":
        from numpyro import infer

        if elbo == "trace":
            return TraceELBO(num_particles=num_particles)
        if elbo == "trace_enum":
            return EnumELBO(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        if elbo == "iwae":
            return IWAE(num_particles=num_particles, dreg=dreg)
        return infer.RenyiELBO(alpha=alpha, num_particles=num_particles)
    from pyro import infer

    if elbo == "trace":
        return infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=False)
    if elbo == "trace_enum":
        return infer.TraceEnum_ELBO(num_particles=num_particles, max_plate_nesting=max_plate_nesting or float("inf"))
    return infer.RenyiELBO(alpha=0.0 if elbo == "iwae" else alpha, num_particles=num_particles)


# --------------------------------------------------------------------------- TraceEnum (NumPyro)
class _StatelessELBO:
    """A NumPyro ELBO with no mutable state: ``loss_with_mutable_state`` is ``loss``."""

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        return {"loss": self.loss(rng_key, param_map, model, guide, *args, **kwargs), "mutable_state": None}


class TraceELBO(_StatelessELBO):
    """NumPyro's ``Trace_ELBO``, :math:`\mathbb E_q[\log p(x, z) - \log q(z)]` estimated with
    ``num_particles`` draws (vectorised), with the sites taken in sorted order.

    NumPyro's own takes them in the order of a Python set of site names, which follows their hashes,
    salted afresh in every process: the compiled program then differs from process to process, so
    JAX's persistent cache never finds it again, and its last bits change between two runs of one
    seed. The estimator and its random draws are NumPyro's (the key split into the model's and the
    guide's, the program replayed on the guide's trace); programs with ``numpyro.mutable`` state are
    handed to NumPyro's ``Trace_ELBO``, which carries that state.
    """

    can_infer_discrete = False

    def __init__(self, num_particles: int = 1):
        self.num_particles = num_particles

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        from numpyro import handlers, infer
        from numpyro.infer.util import compute_log_probs
        from numpyro.util import _validate_model, check_model_guide_match

        def particle(key):
            model_key, guide_key = jax.random.split(key)
            guide_lp, guide_trace = compute_log_probs(handlers.seed(guide, guide_key), args, kwargs, param_map)
            replayed = handlers.replay(handlers.seed(model, model_key), guide_trace)
            model_lp, model_trace = compute_log_probs(replayed, args, kwargs, param_map)
            if any(site["type"] == "mutable" for site in (*guide_trace.values(), *model_trace.values())):
                return None
            check_model_guide_match(model_trace, guide_trace)  # NumPyro's checks, as its Trace_ELBO runs them
            _validate_model(model_trace, plate_warning="loose")
            elbo = jnp.array(0.0)
            for name in sorted(set(model_lp) | set(guide_lp)):
                elbo = elbo + (model_lp.get(name, 0.0) - guide_lp.get(name, 0.0))
            return elbo

        if self.num_particles == 1:
            elbo = particle(rng_key)
        else:
            elbo = jax.vmap(particle)(jax.random.split(rng_key, self.num_particles))
        if elbo is None:  # mutable state: NumPyro's estimator, which returns it
            return infer.Trace_ELBO(num_particles=self.num_particles).loss_with_mutable_state(
                rng_key, param_map, model, guide, *args, **kwargs)
        return {"loss": -jnp.mean(elbo), "mutable_state": None}

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        return self.loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)["loss"]


class EnumELBO(_StatelessELBO):
    """ELBO with the model's enumerated discrete sites summed out by funsor's contraction, which
    knows ``scan``'s Markov structure: :math:`\\mathcal L = \\mathbb E_q[\\log \\sum_{z_d} p_\\theta(x,
    z_c, z_d) - \\log q_\\phi(z_c)]`, estimated with reparameterised (or point-mass) draws of
    :math:`z_c` from the guide.

    NumPyro's own ``TraceEnum_ELBO`` (0.22) builds its sum-product from the trace's dependency
    graph without the Markov dimensions that ``numpyro.contrib.control_flow.scan`` introduces, and
    returns a wrong value for a hidden Markov chain written with ``scan`` (for a 5-step two-state
    chain, -7.631 against the forward algorithm's -5.606); ``numpyro.contrib.funsor.log_density``
    returns the forward algorithm's value, so the model term is computed with it. Guide-side
    enumeration is not supported: every latent site of the guide must be reparameterised or a
    point mass (a typed error names the site otherwise).
    """

    can_infer_discrete = True

    def __init__(self, num_particles: int = 1, max_plate_nesting: int | None = None):
        self.num_particles = num_particles
        self.max_plate_nesting = max_plate_nesting

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        import numpyro.distributions as dist
        from numpyro import handlers
        from numpyro.contrib.funsor import enum
        from numpyro.contrib.funsor import log_density as enum_log_density
        from numpyro.infer.util import _guess_max_plate_nesting

        def particle(key):
            model_key, guide_key = jax.random.split(key)  # NumPyro's own order: same draws as its ELBOs
            g_tr = handlers.trace(handlers.substitute(handlers.seed(guide, guide_key), data=param_map)).get_trace(
                *args, **kwargs)
            log_q = jnp.zeros(())
            z = {}
            for name, site in g_tr.items():
                if site["type"] != "sample" or site["is_observed"]:
                    continue
                fn = site["fn"]
                if not getattr(fn, "has_rsample", False) and not isinstance(fn, dist.Delta):
                    raise ModelError(f"trace_enum needs a reparameterised guide; guide site {name!r} "
                                     f"({type(fn).__name__}) is not (enumerate it in the model instead)")
                lp = fn.log_prob(site["value"])
                if site["scale"] is not None:
                    lp = lp * site["scale"]
                log_q = log_q + jnp.sum(lp)
                z[name] = site["value"]
            seeded = handlers.seed(model, model_key)
            nesting = self.max_plate_nesting
            if nesting is None:  # guessed once, from one trace, as NumPyro's own ELBOs do
                tr = handlers.trace(handlers.substitute(seeded, data={**param_map, **z})).get_trace(*args, **kwargs)
                nesting = self.max_plate_nesting = _guess_max_plate_nesting(tr)
            with enum(first_available_dim=-nesting - 1):
                log_p, _ = enum_log_density(seeded, args, kwargs, {**param_map, **z})
            return log_p - log_q

        keys = jax.random.split(rng_key, self.num_particles)
        return -jnp.mean(jax.vmap(particle)(keys))


# --------------------------------------------------------------------------- IWAE with DReG
def _indep_dims(trace):
    """Plate dims shared by every sample site of ``trace`` (log-weights stay separate along them)."""
    frames = [set(s["cond_indep_stack"]) for s in trace.values() if s["type"] == "sample"]
    return {f.dim for f in set.intersection(*frames)} if frames else set()


def _log_density(trace, indep_dims, use_scale):
    """Sum of the sample sites' log-densities over every axis but ``indep_dims``."""
    total = jnp.zeros(())
    for site in trace.values():
        if site["type"] != "sample":
            continue
        lp = site["fn"].log_prob(site["value"])
        if use_scale and site["scale"] is not None:
            lp = lp * site["scale"]
        axes = tuple(d for d in range(lp.ndim) if d - lp.ndim not in indep_dims)
        total = total + jnp.sum(lp, axis=axes)
    return total


class IWAE(_StatelessELBO):
    """Importance-weighted bound :math:`\\log \\frac1K \\sum_k w_k` as a NumPyro ELBO, with DReG
    gradients for the guide.

    With :math:`\\log w_k = \\log p_\\theta(x, z_k) - \\log q_\\phi(z_k)`, :math:`z_k = g_\\phi(\\epsilon_k)`,
    and normalised weights :math:`\\tilde w_k`, the surrogate whose gradient is returned is

    .. math::
        \\sum_k \\operatorname{sg}(\\tilde w_k^2) \\big[\\log p_{\\operatorname{sg}\\theta}(x, z_k)
        - \\log q_{\\operatorname{sg}\\phi}(z_k)\\big] + \\sum_k \\operatorname{sg}(\\tilde w_k)
        \\log p_\\theta(x, \\operatorname{sg} z_k)

    (``sg`` = stop-gradient): the first term gives :math:`\\phi` the DReG estimator, the second
    gives :math:`\\theta` the usual IWAE gradient. Sample sites all inside common plates (a VAE's
    data plate) get one bound per plate entry, summed. Requires a reparameterised guide.
    """

    can_infer_discrete = False

    def __init__(self, num_particles: int = 8, dreg: bool = True):
        self.num_particles = num_particles
        self.dreg = dreg

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        from jax.lax import stop_gradient as sg
        from numpyro import handlers

        def particle(key):
            # 1. draw z_k = g_phi(eps_k) from the guide with live parameters
            guide_key, model_key = jax.random.split(key)
            g_tr = handlers.trace(handlers.substitute(handlers.seed(guide, guide_key), data=param_map)).get_trace(*args, **kwargs)
            guide_params = {n for n, s in g_tr.items() if s["type"] == "param"}
            z = {}
            for n, s in g_tr.items():
                if s["type"] == "sample" and not s["is_observed"]:
                    if not getattr(s["fn"], "has_rsample", True):
                        raise ModelError(f"iwae needs a reparameterised guide; site {n!r} ({type(s['fn']).__name__}) is not")
                    z[n] = s["value"]
            model_params = {k for k in param_map if k not in guide_params}
            stop_phi = {k: (sg(v) if k in guide_params and self.dreg else v) for k, v in param_map.items()}
            stop_theta = {k: (sg(v) if k in model_params and self.dreg else v) for k, v in stop_phi.items()}
            # 2. log q(z_k) with phi stopped (only the path through z_k carries phi's gradient)
            q_tr = handlers.trace(handlers.substitute(handlers.substitute(handlers.seed(guide, guide_key), data=z),
                                                      data=stop_phi)).get_trace(*args, **kwargs)
            # 3. log p(x, z_k): theta stopped for the guide's term, z stopped for the model's term
            seeded_model = handlers.seed(model, model_key)
            p_tr = handlers.trace(handlers.substitute(handlers.substitute(seeded_model, data=z), data=stop_theta)).get_trace(*args, **kwargs)
            dims = _indep_dims(p_tr)
            scale = _common_scale(p_tr) if dims else 1.0
            lw_phi = _log_density(p_tr, dims, not dims) - _log_density(q_tr, dims, not dims)
            if self.dreg and model_params:
                z_stop = {k: sg(v) for k, v in z.items()}
                p2 = handlers.trace(handlers.substitute(handlers.substitute(seeded_model, data=z_stop), data=param_map)).get_trace(*args, **kwargs)
                lp_theta = _log_density(p2, dims, not dims)
            else:
                lp_theta = jnp.zeros_like(lw_phi)
            return lw_phi, lp_theta, scale

        keys = jax.random.split(rng_key, self.num_particles)
        lw, lp_theta, scale = jax.vmap(particle)(keys)  # (K, *plates)
        log_norm = jax.scipy.special.logsumexp(lw, axis=0)
        bound = log_norm - jnp.log(self.num_particles)
        if self.dreg:
            w = sg(jnp.exp(lw - log_norm))
            surrogate = jnp.sum(w**2 * lw, 0) + jnp.sum(w * lp_theta, 0)
            objective = sg(bound - surrogate) + surrogate
        else:
            objective = bound
        return -jnp.sum(objective) * scale[0]


def _common_scale(trace):
    scales = {float(s["scale"]) if s["scale"] is not None else 1.0 for s in trace.values() if s["type"] == "sample"}
    if len(scales) > 1:
        raise ModelError(f"iwae: the sample sites carry different scales {sorted(scales)}")
    return scales.pop() if scales else 1.0


# =========================================================================== minibatches
class _ShardBatches:
    """Minibatch ``step`` of a :class:`~inference.shards.ShardedDataset`, read from disk (the epoch's
    order a function of ``seed`` and the epoch; see that module)."""

    def __init__(self, data, batch_size: int, seed: int):
        if not 1 <= batch_size <= data.n:
            raise DataError(f"batch_size must be in 1..{data.n} (the data length), got {batch_size}")
        self.data, self.batch_size, self.seed, self.n = data, batch_size, seed, data.n
        self.per_epoch = data.batches_per_epoch(batch_size)

    @property
    def scale(self) -> float:
        return self.n / self.batch_size

    def __call__(self, step: int) -> dict:
        epoch, position = divmod(step, self.per_epoch)
        return self.data.batch(self.seed, epoch, position, self.batch_size)[1]


class _Batches:
    """Row ``step`` of a per-epoch permutation of the data axis, sliced on the host."""

    def __init__(self, data: dict, batch_size: int, key):
        self.arrays = [k for k, v in data.items() if hasattr(v, "shape") and np.ndim(v) >= 1]
        if not self.arrays:
            raise DataError("batch_size needs array-valued data with a leading data axis")
        lengths = {k: np.shape(data[k])[0] for k in self.arrays}
        if len(set(lengths.values())) != 1:
            raise DataError(f"batch_size: the data arrays must share their leading axis, got lengths {lengths}")
        self.n = next(iter(lengths.values()))
        if not 1 <= batch_size <= self.n:
            raise DataError(f"batch_size must be in 1..{self.n} (the data length), got {batch_size}")
        self.data, self.batch_size, self.key = data, batch_size, key
        self.per_epoch = self.n // batch_size
        self._epoch, self._perm = None, None

    @property
    def scale(self) -> float:
        return self.n / self.batch_size

    def __call__(self, step: int) -> dict:
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            seed = np.asarray(jax.random.key_data(jax.random.fold_in(self.key, epoch))).tolist()
            self._epoch, self._perm = epoch, np.random.default_rng(seed).permutation(self.n)
        idx = np.sort(self._perm[b * self.batch_size:(b + 1) * self.batch_size])
        return {k: (np.asarray(v[idx]) if k in self.arrays else v) for k, v in self.data.items()}


def _numpyro_scaled(fn, plate: str, factor: float, seen: set):
    from numpyro.primitives import Messenger

    class _ScaleInPlate(Messenger):
        def process_message(self, msg):
            if msg["type"] == "sample" and any(f.name == plate for f in msg["cond_indep_stack"]):
                seen.add(msg["name"])
                msg["scale"] = factor if msg.get("scale") is None else msg["scale"] * factor

    return _ScaleInPlate(fn)


# =========================================================================== checkpoints
def _signature(leaves, extra: dict) -> str:
    return json.dumps({"shapes": [list(np.shape(x)) for x in leaves],
                       "dtypes": [str(np.asarray(x).dtype) for x in leaves], **extra}, sort_keys=True)


def _save_numpyro(path, state, step, history, meta):
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["history"] = np.asarray(history, dtype=float)
    arrays["step"] = np.asarray(step)
    arrays["signature"] = np.asarray(_signature(leaves, meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _load_numpyro(path, template, meta):
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable SVI checkpoint ({err})") from err
    leaves, treedef = jax.tree_util.tree_flatten(template)
    expected = _signature(leaves, meta)
    if "signature" not in stored or str(stored["signature"]) != expected:
        raise CheckpointError(f"{path}: the checkpoint belongs to another model, guide or objective "
                              f"(stored {str(stored.get('signature', '?'))[:200]}, expected {expected[:200]})")
    loaded = [jnp.asarray(stored[f"leaf_{i}"], dtype=np.asarray(x).dtype) for i, x in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, loaded), int(stored["step"]), list(stored["history"])


# =========================================================================== fit
def fit(model: Callable, data: dict | None = None, *, key, guide: str | Callable = "normal", elbo: str = "trace",
        num_particles: int = 1, steps: int = 1000, learning_rate: float = 1e-2, optimizer=None,
        batch_size: int | None = None, num_samples: int = 0, progress: bool = False,
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
        batch_plate: str = "data", alpha: float = 0.0, dreg: bool = True, rank: int | None = None,
        max_plate_nesting: int | None = None, backend: str | None = None) -> Result:
    """Fit a guide to ``model(**data)`` by stochastic gradient ascent on an ELBO.

    Args:
        model: a NumPyro or Pyro program (recognised by :func:`backend_of`, or say ``backend``);
            data enter as keyword arguments.
        data: the keyword arguments of ``model`` (and of a guide program).
        key: a JAX PRNG key or an int seed (for a Pyro program, a key is turned into an int seed).
        guide: ``"normal"``, ``"mvn"``, ``"lowrank"`` (``rank``), ``"delta"`` or a guide program.
        elbo: ``"trace"``, ``"trace_enum"``, ``"iwae"`` (DReG unless ``dreg=False``; NumPyro) or
            ``"renyi"`` (order ``alpha``).
        num_particles: samples per step (the :math:`K` of IWAE / Rényi).
        steps: total optimisation steps (a resumed run continues up to this count).
        learning_rate: Adam's step when ``optimizer`` is None.
        optimizer: a NumPyro optimiser / optax transformation, or a ``pyro.optim`` optimiser.
        batch_size: rows of the data per step (see the module docstring); None uses all data. A
            :class:`~inference.shards.ShardedDataset` (rows on disk) is read a minibatch at a time
            and needs ``batch_size``.
        num_samples: draws from the fitted guide to return in ``samples``.
        progress: show a progress bar.
        checkpoint: a file to resume from (when present) and to write every ``checkpoint_every``
            steps (default: a tenth of the run) and at the end.
        batch_plate: the plate whose sites are scaled by ``N / batch_size``.

    Returns:
        ``Result(method="svi", params={name: array} (constrained guide and model parameters),
        history=loss per step (the negative bound, 1..steps), log_evidence=the bound at the final
        parameters (mean of 16 fresh estimates; with minibatches the mean of the last tenth of the
        history), log_evidence_kind="lower_bound", samples=num_samples guide draws)``.
    """
    for value, name, low in ((steps, "steps", 1), (num_particles, "num_particles", 1), (num_samples, "num_samples", 0),
                             (checkpoint_every, "checkpoint_every", 1), (batch_size, "batch_size", 1)):
        if value is None and name in ("checkpoint_every", "batch_size"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
    if optimizer is None and not (isinstance(learning_rate, (int, float)) and np.isfinite(learning_rate)
                                  and learning_rate > 0):
        raise DataError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
    if is_sharded(data) and batch_size is None:
        raise DataError("a sharded dataset is read a minibatch at a time: give batch_size")
    backend = backend or backend_of(model, None if is_sharded(data) else data)
    if backend not in ("numpyro", "pyro"):
        raise UnknownNameError(f"unknown backend {backend!r}: 'numpyro' or 'pyro'")
    options = dict(guide=guide, elbo=elbo, num_particles=num_particles, steps=steps, learning_rate=learning_rate,
                   optimizer=optimizer, batch_size=batch_size, num_samples=num_samples, progress=progress,
                   checkpoint=None if checkpoint is None else os.fspath(checkpoint),
                   checkpoint_every=checkpoint_every, batch_plate=batch_plate, alpha=alpha, dreg=dreg, rank=rank,
                   max_plate_nesting=max_plate_nesting)
    data = data if is_sharded(data) else dict(data or {})
    if backend == "numpyro":
        return _fit_numpyro(model, data, key, **options)
    from inference.svi_pyro import fit_pyro

    return fit_pyro(model, data, key, make_guide=make_guide, make_elbo=make_elbo, **options)


def _chunks(start, steps, progress, checkpoint, checkpoint_every):
    every = checkpoint_every or (max(1, steps // 10) if checkpoint else steps)
    if progress:
        every = min(every, max(1, steps // 100))
    bounds = list(range(start, steps, every)) + [steps]
    return list(zip(bounds[:-1], bounds[1:]))


def _raw_key(key):
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _check_losses(losses, offset, hint):
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
    if bad.size:
        raise ModelError(f"SVI loss became non-finite at step {offset + int(bad[0]) + 1}; {hint}")


def _discrete_latents(trace):
    return [n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"]
            and s["fn"].support.is_discrete]


def _init_compiled(new_svi, key, data):
    """``SVI.init`` as one compiled program, the data as constants.

    NumPyro initialises eagerly: the autoguide's prototype trace, the search for a finite starting
    point (a gradient of the log-density) and the traces of the guide and the program. Each of their
    operations is lowered and compiled as a program of its own, hundreds for a model of a few lines
    (4 s of a 10 s fit of the casino HMM with every program in JAX's persistent cache). Compiled, they
    are one program. The guide and NumPyro keep what they learnt from the first trace (shapes,
    supports, the transforms to constrained space); where that holds a traced value the later steps
    would use (a support whose bounds are computed arrays, a parameter of the program substituted
    into its replay), the guide is set up again eagerly, as NumPyro does; so too for a program that
    needs its data concrete.
    Data arrays of :data:`_LARGE` entries or more enter as arguments, as in the optimisation below.
    Returns ``(guide, svi, state)``.
    """
    from numpyro import handlers

    from inference.staging import NEEDS_CONCRETE, holds_tracer, jit_once

    passed = {k: v for k, v in data.items() if isinstance(v, (np.ndarray, jax.Array)) and np.size(v) >= _LARGE}
    fixed = {k: v for k, v in data.items() if k not in passed}
    guide_fn, svi = new_svi()
    try:
        state = jit_once(lambda k, p: svi.init(k, **fixed, **p))(key, passed)
    except NEEDS_CONCRETE:
        state = None
    post = getattr(guide_fn, "_postprocess_fn", None)
    if state is not None and isinstance(post, handlers.seed) and isinstance(post.rng_key, jax.core.Tracer):
        # an autoguide seeds its replay of the program with the key of seed 0 (it draws nothing that
        # matters): made inside the compiled set-up, that key is a traced value; made again here
        guide_fn._postprocess_fn = handlers.seed(post.fn, rng_seed=0)
    prototype = getattr(guide_fn, "prototype_trace", None) or {}
    kept = [svi.constrain_fn, getattr(guide_fn, "_postprocess_fn", None),
            [site["fn"].support for site in prototype.values() if site["type"] == "sample"]]
    if state is not None and not holds_tracer(kept):
        return guide_fn, svi, state
    guide_fn, svi = new_svi()
    return guide_fn, svi, svi.init(key, **data)




def _fit_numpyro(model, data, key, *, guide, elbo, num_particles, steps, learning_rate, optimizer, batch_size,
                 num_samples, progress, checkpoint, checkpoint_every, batch_plate, alpha, dreg, rank,
                 max_plate_nesting):
    import numpyro.optim
    from numpyro.infer import SVI
    from tqdm.auto import tqdm

    from inference.mcmc import check_model

    start_time = time.perf_counter()
    key = _raw_key(as_key(key))
    check_key, init_key, batch_key, eval_key, sample_key = jax.random.split(key, 5)

    # 1. data, minibatches and the scaled program
    if is_sharded(data):  # rows on disk: minibatches only, nothing reads the whole data
        batches, data = _ShardBatches(data, batch_size, int_seed(batch_key)), {}
    else:
        batches = _Batches(data, batch_size, batch_key) if batch_size is not None else None
    first = batches(0) if batches else data
    prog, guide_fn = model, guide
    scaled_sites: set = set()
    if batches:
        prog = _numpyro_scaled(model, batch_plate, batches.scale, scaled_sites)
    # 2. check the program where NumPyro starts (errors name the site)
    trace = check_model(prog, first, key=check_key, needs_continuous=True)
    if batches and not scaled_sites:
        raise ModelError(f"batch_size: no sample site lies inside a plate named {batch_plate!r}; name the data "
                         f"plate {batch_plate!r} or pass batch_plate=")
    discrete = _discrete_latents(trace)
    if discrete and elbo != "trace_enum":
        raise ModelError(f"sites {discrete} are discrete latents: use elbo='trace_enum' to sum them out")
    loss = make_elbo(elbo, num_particles, backend="numpyro", alpha=alpha, dreg=dreg, max_plate_nesting=max_plate_nesting)
    optim = optimizer if optimizer is not None else numpyro.optim.Adam(learning_rate)

    def new_svi():  # a fresh guide each time: an autoguide keeps the prototype of its first trace
        guide_fn = make_guide(prog, guide, backend="numpyro", rank=rank)
        if batches and callable(guide):
            guide_fn = _numpyro_scaled(guide, batch_plate, batches.scale, set())
        return guide_fn, SVI(prog, guide_fn, optim, loss)

    guide_fn, svi, state = _init_compiled(new_svi, init_key, first)

    # 3. resume from a checkpoint
    meta = {"guide": guide if isinstance(guide, str) else getattr(guide, "__name__", "guide"), "elbo": elbo,
            "num_particles": num_particles, "batch_size": batch_size,
            "params": sorted(svi.optim.get_params(state.optim_state))}  # the names, nothing constrained
    history, done = [], 0
    if checkpoint and os.path.exists(checkpoint):
        state, done, history = _load_numpyro(checkpoint, state, meta)
        if done > steps:
            raise CheckpointError(f"{checkpoint}: holds {done} steps, more than steps={steps}")
    resumed_from = done

    # 4. optimise, in jitted chunks (lax.scan) or one jitted update per host minibatch
    @jax.jit
    def update(st, batch):
        return svi.update(st, **batch)

    # Large arrays of the full data enter the compiled chunk as arguments (as constants XLA would
    # spend seconds folding them); the rest, and everything when the program needs concrete data
    # (it checks its data with NumPy, say), as constants, as in NumPyro's SVI.run.
    large = {k for k, v in data.items() if isinstance(v, (np.ndarray, jax.Array)) and np.size(v) >= _LARGE}

    def run_chunk(st, passed, n):
        fixed = {k: v for k, v in data.items() if k not in passed}
        return jax.lax.scan(lambda s, _: svi.update(s, **fixed, **passed), st, None, length=n)

    run_chunk = jax.jit(run_chunk, static_argnums=2)
    hint = "lower learning_rate or check the model's support and initial values"
    with tqdm(total=steps, initial=done, disable=not progress, desc="svi") as bar:
        for lo, hi in _chunks(done, steps, progress, checkpoint, checkpoint_every):
            if batches:
                chunk = []
                for t in range(lo, hi):
                    state, value = update(state, batches(t))
                    chunk.append(value)
                chunk = np.asarray(jax.device_get(chunk))
            else:
                try:
                    state, chunk = run_chunk(state, {k: data[k] for k in large}, hi - lo)
                except jax.errors.JAXTypeError:  # the program needs these arrays concrete
                    if not large:
                        raise
                    large = set()
                    state, chunk = run_chunk(state, {}, hi - lo)
                chunk = np.asarray(chunk)
            _check_losses(chunk, lo, hint)
            history.extend(chunk.tolist())
            if checkpoint:
                _save_numpyro(checkpoint, state, hi, history, meta)
            bar.update(hi - lo)
            bar.set_postfix(loss=f"{history[-1]:.4g}")

    # 5. the bound at the final parameters, guide draws
    params = _constrained_params(svi, state)
    if batches:
        tail = history[-max(1, len(history) // 10):]
        bound = -float(np.mean(tail))
    else:
        keys = jax.random.split(eval_key, 16)

        def bound_at(keys, passed):
            fixed = {k: v for k, v in data.items() if k not in passed}
            return jnp.mean(jax.vmap(lambda k: loss.loss(k, params, prog, guide_fn, **fixed, **passed))(keys))

        bound = -float(jax.jit(bound_at)(keys, {k: data[k] for k in large}))
    samples = {}
    if num_samples:
        samples = _numpyro_guide_draws(guide_fn, params, sample_key, num_samples, first)
    is_delta = guide == "delta"
    diagnostics = {"guide": meta["guide"], "elbo": elbo, "num_particles": num_particles, "steps": steps,
                   "resumed_from": resumed_from, "backend": "numpyro"}
    if is_delta:
        diagnostics["log_joint"] = bound
    return Result(method="svi", params={k: np.asarray(v) for k, v in params.items()},
                  samples=samples, history=np.asarray(history), log_evidence=None if is_delta else bound,
                  log_evidence_kind=None if is_delta else "lower_bound",
                  seconds=time.perf_counter() - start_time, diagnostics=diagnostics)


def _constrained_params(svi, state):
    """``SVI.get_params``: the parameters in constrained space, as one compiled program (eagerly,
    each of the transforms' operations is lowered and compiled as a program of its own: 30 for the
    casino HMM's delta guide); eagerly where a transform needs concrete values."""
    from inference.staging import NEEDS_CONCRETE

    try:
        return jax.jit(svi.get_params)(state)
    except NEEDS_CONCRETE:
        return svi.get_params(state)


def _numpyro_guide_draws(guide_fn, params, key, n, data):
    from numpyro.infer import Predictive

    if hasattr(guide_fn, "sample_posterior"):
        draws = guide_fn.sample_posterior(key, params, sample_shape=(n,))
    else:
        draws = Predictive(guide_fn, params=params, num_samples=n)(key, **data)
    return {k: np.asarray(v) for k, v in draws.items() if not k.startswith("_")}
