"""The training loop of the deep models: minibatch SVI by epochs, checkpoints, resume.

``train(model, data, seed=...)`` maximises a bound on :math:`\\log p_\\theta(x)` jointly in the
model's parameters :math:`\\theta` and the guide's :math:`\\phi`, where ``model`` is an object (an
``nn.Module``) with the programs ``model.model(**batch)`` and ``model.guide(**batch)``. The
objectives (``objective=``), each a loss per data point, averaged over the minibatch:

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

How a run goes (one function, :func:`train`):

1. Fix the random state: a private torch generator seeded from ``seed`` draws the minibatch
   permutations; Pyro's draws come from torch's default generator, forked for the run (the
   caller's state is restored on exit) and seeded from ``seed``; torch's thread count is set for
   the run and restored.
2. Resume when ``checkpoint`` exists: the checkpoint is verified (magic bytes, SHA-256 of the
   payload, the model class and configuration) before ``torch.load(weights_only=True)``; any
   mismatch raises :class:`~inference.errors.CheckpointError`. It restores the weights, the
   optimiser, both random states, the epoch's permutation and the history.
3. For each step: take the next minibatch (a new permutation each epoch), let the model augment
   it (``model.augment(batch, generator)`` when defined: the CVAE's random masks), compute the
   loss, step Adam. Every ``checkpoint_every`` steps and at the end, write a checkpoint
   atomically (temporary file, fsync, rename).
4. Return a :class:`~inference.result.Result` with the trained model as ``params`` and the loss
   per step as ``history``; ``log_evidence`` is minus the mean loss of the last epoch (a bound:
   ``lower_bound``).

A run killed at any point and started again with the same arguments ends with the same weights,
bit for bit, as a run never interrupted (same thread count).

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

References:
    Tucker, Lawson, Gu and Maddison (2019). Doubly reparameterized gradient estimators for Monte
        Carlo objectives. ICLR.
    Li and Turner (2016). Rényi divergence variational inference. NeurIPS.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import pathlib
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from deep.nets import isolated
from inference.errors import CheckpointError, DataError, ModelError
from inference.io import atomic_write
from inference.likelihood import log_weights
from inference.result import Result

__all__ = ["train", "loss_function", "save_checkpoint", "load_checkpoint", "OBJECTIVES"]

OBJECTIVES = ("elbo", "iwae", "iwae_dreg", "renyi")
COMPILABLE = ("elbo", "iwae", "renyi")
MAGIC = b"GENZOO-DEEP-CKPT-1\n"


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


def _detached(fn):
    """The same distribution with its parameters cut from the graph (Normal / Independent)."""
    import pyro.distributions as dist

    if isinstance(fn, dist.Independent):
        return dist.Independent(_detached(fn.base_dist), fn.reinterpreted_batch_ndims)
    if isinstance(fn, dist.Normal):
        return dist.Normal(fn.loc.detach(), fn.scale.detach())
    if isinstance(fn, dist.MaskedDistribution):
        return _detached(fn.base_dist).mask(fn._mask)
    if isinstance(fn, dist.ExpandedDistribution):
        return _detached(fn.base_dist).expand(fn.batch_shape)
    raise ModelError(f"DReG: cannot hold the parameters of a {type(fn).__name__} guide fixed; use objective='iwae'")


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


# =========================================================================== checkpoints
def _identity(obj) -> dict:
    return {"class": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "config": json.loads(json.dumps(getattr(obj, "config", {}), sort_keys=True))}


def save_checkpoint(path, obj, *, state: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Write ``obj``'s weights (and a training ``state``) to ``path`` atomically.

    Layout: the magic line, the hex SHA-256 of the payload and a newline, then the payload
    (``torch.save`` of plain containers and tensors, loadable with ``weights_only=True``).
    """
    path = pathlib.Path(path)
    payload = {"identity": json.dumps(_identity(obj), sort_keys=True), "model": obj.state_dict(),
               "state": dict(state or {})}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    atomic_write(path, MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    return path


def load_checkpoint(path, obj) -> dict:
    """Load weights saved by :func:`save_checkpoint` into ``obj`` and return the training state.

    Raises :class:`CheckpointError` for a file that is not a genzoo checkpoint, is truncated or
    altered (SHA-256 mismatch), belongs to another model class or configuration, or whose weights
    do not fit ``obj``; nothing is loaded into ``obj`` in those cases.
    """
    path = pathlib.Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({err.strerror})") from None
    if not blob.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a genzoo deep-model checkpoint (bad magic bytes)")
    digest, _, body = blob[len(MAGIC):].partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CheckpointError(f"{path}: corrupted checkpoint (SHA-256 of the payload does not match)")
    try:
        payload = torch.load(io.BytesIO(body), weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"{path}: unreadable checkpoint payload ({err})") from None
    saved, wanted = json.loads(payload["identity"]), _identity(obj)
    if saved["class"] != wanted["class"]:
        raise CheckpointError(f"{path}: a checkpoint of {saved['class']}, not of {wanted['class']}")
    if saved["config"] != wanted["config"]:
        diff = sorted(k for k in set(saved["config"]) | set(wanted["config"])
                      if saved["config"].get(k) != wanted["config"].get(k))
        raise CheckpointError(f"{path}: the checkpoint's model differs in {diff}: "
                              f"{ {k: saved['config'].get(k) for k in diff} } vs { {k: wanted['config'].get(k) for k in diff} }")
    try:
        obj.load_state_dict(payload["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not fit the model ({err})") from None
    return payload["state"]


# =========================================================================== the loop
@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _as_tensors(data: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if not isinstance(data, Mapping) or not data:
        raise DataError("data must be a non-empty dict of arrays (the programs' keyword arguments)")
    out = {}
    for k, v in data.items():
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        if t.is_floating_point():
            t = t.to(torch.float32)
        out[k] = t
    sizes = {k: t.shape[0] for k, t in out.items() if t.dim() > 0}
    if len(set(sizes.values())) != 1:
        raise DataError(f"data arrays must share their leading data axis, got lengths {sizes}")
    return out


def _check_data(model, loss_fn, tensors, augment, chunk: int) -> None:
    """Run the programs once, without gradients, over all the data in chunks of ``chunk`` points so
    that their data checks raise before any compiled step (draws on a forked random state; the
    augmentation draws from a generator of its own)."""
    n = next(t.shape[0] for t in tensors.values() if t.dim() > 0)
    generator = torch.Generator().manual_seed(0)
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


def train(
    model,
    data: Mapping[str, Any],
    *,
    seed: int,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 64,
    objective: str | Callable | None = None,
    num_particles: int | None = None,
    alpha: float = 0.5,
    learning_rate: float = 1e-3,
    checkpoint=None,
    checkpoint_every: int | None = None,
    progress: bool = False,
    num_threads: int | None = None,
    callback: Callable[[int, float], None] | None = None,
    jit: bool = False,
) -> Result:
    """Train ``model`` (its ``model`` and ``guide`` programs and its networks) on ``data``.

    Args:
        model: an ``nn.Module`` with ``model(**batch)`` and ``guide(**batch)`` (VAE, IWAE, CVAE,
            SigmoidBeliefNet, DMM); its weights are updated in place.
        data: the programs' keyword arguments, each an array with a leading data axis.
        seed: the seed of every random choice of the run (an int).
        epochs, steps: the length of the run (one of them): ``steps`` total optimiser steps, or
            ``epochs`` passes over the data (``ceil(N / batch_size)`` steps each).
        batch_size: data points per step (the last batch of an epoch may be smaller).
        objective: ``"elbo"``, ``"iwae"``, ``"iwae_dreg"``, ``"renyi"`` or a callable; default
            ``model.objective`` (``"elbo"`` when absent).
        num_particles: particles per data point (default ``model.num_particles`` or 1).
        alpha: the Rényi order.
        learning_rate: Adam's step size.
        checkpoint: a file to resume from when it exists, written every ``checkpoint_every``
            steps (default: once per epoch) and at the end.
        progress: show a progress bar.
        num_threads: torch threads for the run (restored afterwards); the default keeps torch's.
        callback: called as ``callback(step, loss)`` after every step.
        jit: record the loss's forward pass once per batch shape and replay it (module
            docstring, "Compiled steps"): same estimator, less overhead per step; the programs
            must have static structure. For ``"elbo"``, ``"iwae"`` and ``"renyi"``.

    Returns:
        ``Result(method="train:<objective>", params=model, history=loss per step,
        log_evidence=-mean loss of the last epoch (kind "lower_bound"), diagnostics={"epochs",
        "steps", "resumed_from", "objective", "num_particles", "batch_size"})``.
    """
    start_time = time.perf_counter()
    tensors = _as_tensors(data)
    n = next(t.shape[0] for t in tensors.values() if t.dim() > 0)
    if not 1 <= int(batch_size):
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = min(int(batch_size), n)
    per_epoch = math.ceil(n / batch_size)
    if (epochs is None) == (steps is None):
        raise DataError("give exactly one of epochs and steps")
    total = int(steps) if steps is not None else int(epochs) * per_epoch
    if total < 1:
        raise DataError(f"the run needs at least one step, got {total}")
    objective = objective if objective is not None else getattr(model, "objective", "elbo")
    num_particles = int(num_particles or getattr(model, "num_particles", 1))
    loss_fn = loss_function(objective, num_particles=num_particles, alpha=alpha)
    name = objective if isinstance(objective, str) else getattr(objective, "__name__", "custom")
    if jit and name not in COMPILABLE:
        raise DataError(f"jit=True records the objectives {COMPILABLE}, not {name!r} (DReG's gradient hook and "
                        "a callable's Python arithmetic cannot be recorded); use jit=False")
    every = int(checkpoint_every or per_epoch)
    if every < 1:
        raise DataError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    augment = getattr(model, "augment", None)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(int(seed))
    meta = {"objective": name, "num_particles": num_particles, "batch_size": batch_size,
            "learning_rate": float(learning_rate), "seed": int(seed), "n": n}
    if jit:
        meta["jit"] = True  # recorded graphs may round differently: a run resumes with the same setting

    with _threads(num_threads), isolated(seed):
        # 1-2. fresh start or resume
        step, history, perm = 0, [], None
        if checkpoint is not None and pathlib.Path(checkpoint).exists():
            state = load_checkpoint(checkpoint, model)
            saved_meta = json.loads(state["meta"])
            if saved_meta != meta:
                diff = sorted(k for k in set(meta) | set(saved_meta) if saved_meta.get(k) != meta.get(k))
                raise CheckpointError(f"{checkpoint}: the run settings differ in {diff} "
                                      f"({ {k: saved_meta.get(k) for k in diff} })")
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            step, history, perm = int(state["step"]), state["history"].tolist(), state["perm"]
            if step > total:
                raise CheckpointError(f"{checkpoint}: holds {step} steps, more than the {total} asked for")
        resumed_from = step
        step_loss = loss_fn
        if jit:
            _check_data(model, loss_fn, tensors, augment, 16 * batch_size)
            step_loss = _Compiled(name, loss_fn, model, num_particles, float(alpha))

        def save():
            if checkpoint is None:
                return
            state = {"meta": json.dumps(meta, sort_keys=True), "optimizer": optimizer.state_dict(),
                     "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                     "history": torch.tensor(history, dtype=torch.float64), "perm": perm}
            save_checkpoint(checkpoint, model, state=state)

        # 3. optimise
        model.train()
        with tqdm(total=total, initial=step, disable=not progress, desc=f"train {name}") as bar:
            while step < total:
                position = step % per_epoch
                if position == 0 or perm is None:
                    perm = torch.randperm(n, generator=generator)
                index = perm[position * batch_size:(position + 1) * batch_size]
                batch = {k: (t[index] if t.dim() > 0 else t) for k, t in tensors.items()}
                if augment is not None:
                    batch = augment(batch, generator)
                loss = step_loss(model, batch)
                value = loss.item()
                if not math.isfinite(value):
                    raise ModelError(f"the {name} loss became {value} at step {step + 1}; "
                                     "lower the learning rate or check the data")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                history.append(value)
                if callback is not None:
                    callback(step, value)
                bar.update(1)
                if step % max(1, per_epoch) == 0:
                    bar.set_postfix(loss=f"{history[-1]:.4g}")
                if step % every == 0 and step < total:
                    save()
        save()
        model.eval()
    tail = history[-per_epoch:]
    return Result(
        method=f"train:{name}", params=model, history=np.asarray(history),
        log_evidence=-float(np.mean(tail)) * n, log_evidence_kind="lower_bound",
        seconds=time.perf_counter() - start_time,
        diagnostics={"epochs": step / per_epoch, "steps": step, "resumed_from": resumed_from, "objective": name,
                     "num_particles": num_particles, "batch_size": batch_size, "mean_loss_last_epoch":
                     float(np.mean(tail))},
    )
