"""Variational objectives of Pyro programs as training steps of the one loop (:mod:`inference.train`).

:class:`ObjectiveStep` maximises a bound on :math:`\\log p_\\theta(x)` jointly in the model's
parameters :math:`\\theta` and the guide's :math:`\\phi`, where ``model`` is an object (an
``nn.Module``) with the programs ``model.model(**batch)`` and ``model.guide(**batch)`` (the
:class:`~inference.protocols.PyroModelWithGuide` contract). The objectives (``objective=``), each a
loss per data point, averaged over the minibatch:

- ``"elbo"``: Pyro's ``Trace_ELBO`` (reparameterised sites by the path gradient, others by the
  score function), :math:`-\\mathcal L`;
- ``"iwae"``: :math:`-\\log \\frac1K \\sum_k w_k` on the weights of
  :func:`inference.likelihood.log_weights` (reparameterised guides only);
- ``"iwae_dreg"``: the same value with the doubly reparameterised gradients (below);
- ``"renyi"``: :math:`-\\frac{1}{1-\\alpha} \\log \\frac1K \\sum_k w_k^{1 - \\alpha}` (Li and Turner 2016);
- a callable ``loss(model, batch) -> tensor``: a model's own objective (for example the sigmoid
  belief net's ELBO computed exactly by enumeration).

DReG (Tucker et al. 2019). With normalised weights :math:`\\tilde w_k`, the IWAE gradient in the
model's parameters is :math:`\\sum_k \\tilde w_k \\nabla_\\theta \\log w_k`, and the encoder gradient
is replaced by :math:`\\sum_k \\tilde w_k^2 \\, \\partial_{z_k} \\log w_k \\, \\partial_\\phi z_k`, where
:math:`\\log q` is evaluated with :math:`\\phi` held fixed. One backward pass gives both: the
surrogate :math:`-\\sum_k \\mathrm{sg}(\\tilde w_k) \\log w_k` with :math:`q`'s parameters detached,
and a gradient hook that multiplies the gradient reaching each :math:`z_k` by
:math:`\\tilde w_k`. It applies to guides with one reparameterised latent site per datum.

Compiled steps (``jit=True``). With small networks most of a step's time goes to Pyro's
bookkeeping (tracing the guide and the model through the poutine messengers, parameter-store
look-ups, building the loss), not to arithmetic. ``jit=True`` records the loss's forward pass
once per batch shape with ``torch.jit.trace`` (through Pyro: ``JitTrace_ELBO`` for ``"elbo"``,
:func:`pyro.ops.jit.trace` for the tensor expressions of ``"iwae"`` and ``"renyi"``) and
replays the recorded graph at every later step: the same estimator on the same random draws
from torch's generator (equal to the eager loss up to float32 rounding), without the
bookkeeping. Three things keep the loop's guarantees:

- the programs' checks of the data (shape, range, NaN) run in Python and cannot run inside a
  recorded graph, so they run once on the whole data set (augmented where the model augments)
  before the first step, and a bad batch still raises its typed error;
- recording draws random numbers; it runs on a forked random state, so a compiled run depends
  on ``seed`` alone (the graphs are recorded again on resume, on the forked state);
- a weight the recorded graph does not take as an input would be frozen into it as a
  constant; every trainable weight of ``model`` must reach the programs through
  ``pyro.module`` / ``pyro.param``, otherwise :class:`~inference.errors.ModelError`.

It needs programs of static structure (no branch on the values of the data; the VAE and IWAE
programs qualify) and cannot record DReG's gradient hook (``"iwae_dreg"``) or a callable
objective.

The IWAE bound of a whole Pyro program (:class:`DRegIWAE`, used by :func:`inference.svi.fit`):
the same DReG construction on the program's joint weight :math:`w_k = p_\\theta(x, z_k) /
q_\\phi(z_k)` over all of its sites, with a hook on every reparameterised draw of the guide.

Reads of Pyro's private attributes, kept because no public route exists: ``MaskedDistribution._mask``
(to rebuild a masked guide site with its parameters held fixed) and, for recorded steps,
``JitTrace_ELBO._loss_and_surrogate_loss`` and the recorded graph's ``_param_names`` (to find
weights a recording would freeze as constants and name them).

References:
    Tucker, Lawson, Gu and Maddison (2019). Doubly reparameterized gradient estimators for Monte
        Carlo objectives. ICLR.
    Li and Turner (2016). Rényi divergence variational inference. NeurIPS.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from inference.errors import DataError, ModelError
from inference.likelihood import log_weights
from inference.train import LossStep

__all__ = ["ObjectiveStep", "DRegIWAE", "loss_function", "OBJECTIVES", "COMPILABLE"]

OBJECTIVES = ("elbo", "iwae", "iwae_dreg", "renyi")
COMPILABLE = ("elbo", "iwae", "renyi")


# =========================================================================== objectives
def _elbo_loss(obj, batch, num_particles, alpha):
    from pyro.infer import Trace_ELBO

    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                      max_plate_nesting=1)
    return elbo.differentiable_loss(obj.model, obj.guide, **batch) / _batch_len(batch)


def _iwae_loss(obj, batch, num_particles, alpha):
    lw = log_weights(obj.model, obj.guide, num_particles, require_rsample=True, max_plate_nesting=1, **batch)
    bound = torch.logsumexp(lw, 0) - math.log(num_particles)  # (B,)
    return -bound.mean()


def _renyi_loss(obj, batch, num_particles, alpha):
    if alpha == 1.0:
        return _elbo_loss(obj, batch, num_particles, alpha)
    lw = log_weights(obj.model, obj.guide, num_particles, require_rsample=True, max_plate_nesting=1, **batch)
    bound = (torch.logsumexp((1 - alpha) * lw, 0) - math.log(num_particles)) / (1 - alpha)
    return -bound.mean()


def _dreg_loss(obj, batch, num_particles, alpha):
    """IWAE value, DReG gradients (see the module docstring)."""
    from pyro import plate, poutine

    from inference.likelihood import _per_datum, _sample_sites

    k = int(num_particles)
    with plate("_particles", k, dim=-2):
        guide_trace = poutine.trace(obj.guide).get_trace(**batch)
    latents = [n for n, s in _sample_sites(guide_trace) if not s["is_observed"]]
    if len(latents) != 1 or not guide_trace.nodes[latents[0]]["fn"].has_rsample:
        raise ModelError(f"DReG needs one reparameterised latent site in the guide, found {latents}; "
                         "use objective='iwae'")
    site = guide_trace.nodes[latents[0]]
    weights: dict[str, torch.Tensor] = {}
    z = site["value"]  # (K, B, ...)
    if z.requires_grad:
        z.register_hook(lambda g: g * weights["w"].reshape(weights["w"].shape + (1,) * (g.dim() - 2)))
    site["fn"] = _detached(site["fn"])  # log q with phi fixed
    with plate("_particles", k, dim=-2):
        model_trace = poutine.trace(poutine.replay(obj.model, trace=guide_trace)).get_trace(**batch)
    lw = _per_datum(model_trace, "data", k, 1, "model") - _per_datum(guide_trace, "data", k, 1, "guide")  # (K, B)
    w = torch.softmax(lw.detach(), 0)
    weights["w"] = w
    surrogate = -(w * lw).sum(0).mean()
    bound = -(torch.logsumexp(lw.detach(), 0) - math.log(k)).mean()
    return surrogate - surrogate.detach() + bound


_LOSSES = {"elbo": _elbo_loss, "iwae": _iwae_loss, "iwae_dreg": _dreg_loss, "renyi": _renyi_loss}


def loss_function(objective: str | Callable = "elbo", *, num_particles: int = 1, alpha: float = 0.5) -> Callable:
    """``loss(model, batch) -> scalar tensor``: the negative bound per data point of ``objective``."""
    if callable(objective):
        return objective
    if objective not in _LOSSES:
        raise DataError(f"unknown objective {objective!r}; choose one of {OBJECTIVES} or pass a callable")
    if int(num_particles) < 1:
        raise DataError(f"num_particles must be >= 1, got {num_particles}")
    fn = _LOSSES[objective]
    return lambda obj, batch: fn(obj, batch, int(num_particles), float(alpha))


def _batch_len(batch: Mapping[str, Any]) -> int:
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return v.shape[0]
    raise DataError("a batch needs at least one tensor with a leading data axis")


class _Compiled:
    """The loss recorded once per batch signature (keys, shapes, dtypes) and replayed afterwards
    (see "Compiled steps" above).

    ``"elbo"`` (and ``"renyi"`` at :math:`\\alpha = 1`) goes through Pyro's ``JitTrace_ELBO``, which
    keeps the ELBO's value and its surrogate as tensors: ``Trace_ELBO.differentiable_loss`` adds
    Python floats (``.item()`` of the site sums) that a recording would freeze at their first
    values. ``"iwae"`` and ``"renyi"`` are tensor expressions of :func:`log_weights`, recorded with
    :func:`pyro.ops.jit.trace`. The programs receive the batch positionally, as the recorder
    requires, through a wrapper that names the arguments again.
    """

    def __init__(self, objective: str, loss: Callable, obj, num_particles: int, alpha: float):
        self.obj, self.loss, self.num_particles, self.graphs = obj, loss, num_particles, {}
        self.elbo = objective == "elbo" or (objective == "renyi" and alpha == 1.0)

    def _record(self, keys: tuple[str, ...]):
        import pyro.ops.jit

        obj = self.obj
        if not self.elbo:
            loss = self.loss
            graph = pyro.ops.jit.trace(lambda *vals: loss(obj, dict(zip(keys, vals))), ignore_warnings=True)
            return graph, graph
        from pyro.infer import JitTrace_ELBO

        k = self.num_particles
        elbo = JitTrace_ELBO(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=1, ignore_jit_warnings=True)

        def model(*vals):
            return obj.model(**dict(zip(keys, vals)))

        def guide(*vals):
            return obj.guide(**dict(zip(keys, vals)))

        def run(*vals):
            return elbo.differentiable_loss(model, guide, *vals) / _batch_len(dict(zip(keys, vals)))

        return run, elbo

    def __call__(self, obj, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        keys = tuple(sorted(batch))
        values = tuple(batch[k] for k in keys)
        signature = tuple((k, tuple(v.shape), v.dtype) for k, v in zip(keys, values))
        run = self.graphs.get(signature)
        if run is None:
            import pyro

            run, owner = self._record(keys)
            try:
                with torch.random.fork_rng(devices=[]):
                    run(*values)  # records the graph; its draws leave the run's random state alone
            except RuntimeError:
                # torch refuses a weight that would become a constant: name it if that is the cause
                self._check_inputs([name for name, _ in pyro.get_param_store().named_parameters()])
                raise
            graph = owner._loss_and_surrogate_loss if self.elbo else owner
            self._check_inputs(graph._param_names)
            self.graphs[signature] = run
        return run(*values)

    def _check_inputs(self, param_names) -> None:
        import pyro

        inputs = {id(pyro.param(name).unconstrained()) for name in param_names}
        frozen = [name for name, p in self.obj.named_parameters() if p.requires_grad and id(p) not in inputs]
        if frozen:
            raise ModelError(f"jit=True: the weights {frozen} do not reach the programs through pyro.module or "
                             "pyro.param, so a recorded graph would hold them fixed; register them or use jit=False")




def _check_data(model, loss_fn, tensors, augment, chunk: int) -> None:
    """Run the programs once, without gradients, over all the data in chunks of ``chunk`` points so
    that their data checks raise before any recorded step (draws on a forked random state; the
    augmentation draws from a generator of its own)."""
    n = next(t.shape[0] for t in tensors.values() if t.dim() > 0)
    generator = torch.Generator(device=next(iter(tensors.values())).device).manual_seed(0)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        for start in range(0, n, chunk):
            batch = {k: (t[start:start + chunk] if t.dim() > 0 else t) for k, t in tensors.items()}
            if augment is not None:
                batch = augment(batch, generator)
            try:
                loss_fn(model, batch)
            except DataError as err:
                first = str(err).splitlines()[0]
                raise DataError(f"{first} (counting from data point {start} of the training data)") from None


class ObjectiveStep(LossStep):
    """One Adam step on a variational objective of ``model``'s programs (module docstring).

    Args:
        model: an ``nn.Module`` with ``model(**batch)`` and ``guide(**batch)`` programs.
        objective: ``"elbo"``, ``"iwae"``, ``"iwae_dreg"``, ``"renyi"`` or a callable
            ``loss(model, batch) -> tensor`` (a model's own objective).
        num_particles: particles per data point.
        alpha: the Rényi order.
        lr: Adam's step size.
        jit: record the loss once per batch shape and replay it ("Compiled steps" above).
        augment: the model's ``augment(batch, generator)``, when it has one (for the data check
            of recorded steps, which covers the augmented data).
        check_chunk: data points per program run of that data check.
    """

    def __init__(self, model, objective: str | Callable = "elbo", *, num_particles: int = 1, alpha: float = 0.5,
                 lr: float = 1e-3, jit: bool | str = False, augment: Callable | None = None,
                 check_chunk: int = 1024):
        loss = loss_function(objective, num_particles=num_particles, alpha=alpha)
        name = objective if isinstance(objective, str) else getattr(objective, "__name__", "custom")
        if jit not in (True, False, "auto"):
            raise DataError(f"jit must be True, False or 'auto', got {jit!r}")
        if jit == "auto":  # recorded where it can be: a recordable objective and programs that record
            jit = "auto" if name in COMPILABLE else False
        elif jit and name not in COMPILABLE:
            raise DataError(f"jit=True records the objectives {COMPILABLE}, not {name!r} (DReG's gradient hook and "
                            "a callable's Python arithmetic cannot be recorded); use jit=False")
        self.objective, self.num_particles, self.alpha, self.jit = name, int(num_particles), float(alpha), jit
        self._loss, self._augment, self._chunk = loss, augment, int(check_chunk)
        self._run = _Compiled(name, loss, model, self.num_particles, self.alpha) if jit else loss
        super().__init__(model, self._step_loss, lr=lr, name=name)

    def _step_loss(self, module, batch, generator):
        if self.jit != "auto":
            return self._run(module, batch)
        try:
            return self._run(module, batch)
        except ModelError:
            # jit="auto": programs whose weights bypass pyro.module cannot be recorded; the eager
            # loss is the same estimator, so the run goes on eagerly (said in ``recorded``).
            self._run, self.jit = self._loss, False
            return self._run(module, batch)

    @property
    def recorded(self) -> bool:
        """Whether the steps run recorded graphs."""
        return bool(self.jit)

    def config(self):
        out = {"objective": self.objective, "num_particles": self.num_particles, "alpha": self.alpha, "lr": self.lr}
        if self.jit:
            out["jit"] = self.jit  # recorded graphs may round differently: a run resumes with the same setting
        return out

    def setup(self, data):
        if self.jit:
            _check_data(self.module, self._loss, data, self._augment, self._chunk)


# =========================================================================== IWAE with DReG on a whole program
def _detached(fn):
    """The same guide distribution with its parameters cut from the graph (DReG's log q)."""
    import pyro.distributions as dist

    if isinstance(fn, dist.Delta):  # a point mass: its log-density is a function of the draw only
        return fn
    if isinstance(fn, dist.Independent):
        return dist.Independent(_detached(fn.base_dist), fn.reinterpreted_batch_ndims)
    if isinstance(fn, dist.MaskedDistribution):
        return _detached(fn.base_dist).mask(fn._mask)
    if isinstance(fn, dist.ExpandedDistribution):
        return _detached(fn.base_dist).expand(fn.batch_shape)
    if isinstance(fn, dist.Normal):
        return dist.Normal(fn.loc.detach(), fn.scale.detach())
    if isinstance(fn, dist.LowRankMultivariateNormal):
        return dist.LowRankMultivariateNormal(fn.loc.detach(), fn.cov_factor.detach(), fn.cov_diag.detach())
    if isinstance(fn, dist.MultivariateNormal):
        return dist.MultivariateNormal(fn.loc.detach(), scale_tril=fn.scale_tril.detach())
    raise ModelError(f"DReG cannot hold the parameters of a {type(fn).__name__} guide site fixed; "
                     "pass dreg=False for the plain IWAE gradient")


def _log_density(trace) -> torch.Tensor:
    total = torch.zeros(())
    for site in trace.nodes.values():
        if site["type"] == "sample":
            lp = site["fn"].log_prob(site["value"])
            if site["scale"] is not None:
                lp = lp * site["scale"]
            total = total + lp.sum()
    return total


class DRegIWAE:
    """The IWAE bound of a Pyro program's joint weight with DReG guide gradients (module docstring).

    A callable ``loss(model, guide, **kwargs) -> tensor`` in the form ``pyro.infer.SVI`` takes:
    the value is :math:`-\\mathcal L_K`, the gradient DReG's.
    """

    def __init__(self, num_particles: int):
        self.num_particles = int(num_particles)

    def __call__(self, model, guide, *args, **kwargs) -> torch.Tensor:
        import pyro.distributions as dist
        from pyro import poutine

        weights: dict[str, torch.Tensor] = {}
        log_w = []
        for k in range(self.num_particles):
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            for name, site in guide_trace.nodes.items():
                if site["type"] != "sample" or site["is_observed"]:
                    continue
                if not site["fn"].has_rsample:
                    raise ModelError(f"iwae needs a reparameterised guide; site {name!r} "
                                     f"({type(site['fn']).__name__}) is not")
                site["fn"] = _detached(site["fn"])  # log q with phi held fixed
                z = site["value"]
                if z.requires_grad and not isinstance(site["fn"], dist.Delta):
                    z.register_hook(lambda g, k=k: g * weights["w"][k])
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
            log_w.append(_log_density(model_trace) - _log_density(guide_trace))
        lw = torch.stack(log_w)  # (K,)
        w = torch.softmax(lw.detach(), 0)
        weights["w"] = w
        surrogate = -(w * lw).sum()
        bound = -(torch.logsumexp(lw.detach(), 0) - math.log(self.num_particles))
        return surrogate - surrogate.detach() + bound
