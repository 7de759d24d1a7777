"""The one training loop of every torch model: any step function, minibatches, checkpoints, resume.

Every torch model of the zoo trains here, whatever its objective: SVI on a Pyro program (an ELBO,
IWAE with DReG, Rényi), maximum likelihood for flows and autoregressive models, a GAN's
alternating critic / generator updates, score matching, flow matching. The loop knows nothing of
the objective; a *step* does:

- :class:`TrainStep` (the contract): ``modules()`` (everything trainable), ``optimizers()``,
  ``config()`` (JSON-able hyperparameters, checked on resume) and ``__call__(batch, generator)``,
  which performs the update(s) on one minibatch and returns its scalar losses (the key ``"loss"``
  is the one in the history).
- :class:`LossStep`: the common case, one scalar loss and one optimiser,
  ``loss_fn(module, batch, generator) -> tensor``.

How a run goes (:func:`fit`):

1. Fix the random state: two private ``torch.Generator`` s seeded with ``seed``. One, on the CPU,
   draws the minibatch permutations: for data in memory, epoch ``e``'s order is the ``e``-th
   ``torch.randperm(N)`` drawn from it, cut into consecutive minibatches (so another loop can read
   the same minibatches in the same order). The other, on the run's device, is handed to the step
   for its own draws (noise levels, latent codes, times);
   torch's global generator (which Pyro's samplers read) is forked for the run, seeded from
   ``seed``, and restored on exit; Pyro's parameter store is a private scope.
2. Resume when ``checkpoint`` exists: the file is verified (magic bytes, SHA-256 of the payload,
   the step's class and configuration, the run settings) before
   ``torch.load(weights_only=True)``; any mismatch is a :class:`~inference.errors.CheckpointError`
   and nothing is loaded. It restores the weights, the optimisers, both random states, the
   epoch's permutation and the history.
3. For each step: take the next minibatch (a fresh permutation each epoch), check that its
   floating-point entries are finite (unless the step takes NaN as missing; data held in memory
   are checked once, row by row, before the first step, and the run stops at the step whose
   minibatch holds a bad row, as if each were checked), call the step, and
   check that every loss it returns is finite. Every ``checkpoint_every`` steps and at the end,
   write a checkpoint atomically (temporary file, fsync, rename).
4. Return a :class:`~inference.result.Result`: the trained module(s) as ``params``, the loss per
   step as ``history`` and every returned loss per step in ``diagnostics["losses"]``.

A run killed at any point (even by SIGKILL) and started again with the same arguments ends with
the same weights, bit for bit, as a run never interrupted (same thread count and device). A
non-finite batch or loss stops the run with a typed error naming the step and the data rows; the
checkpoint on disk is then the last good one (nothing is written after the bad step).

Example (maximum likelihood of a Gaussian's mean):
    >>> import torch
    >>> from inference.train import LossStep, fit
    >>> class Mean(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.mu = torch.nn.Parameter(torch.zeros(1))
    >>> step = LossStep(Mean(), lambda m, b, g: ((b["x"] - m.mu) ** 2).mean(), lr=0.1)
    >>> r = fit(step, {"x": torch.full((64, 1), 3.0)}, seed=0, steps=200, batch_size=16)
    >>> round(float(r.params.mu), 2)
    3.0
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

from inference.errors import CheckpointError, DataError, TrainingError
from inference.io import atomic_write
from inference.likelihood import seeded
from inference.result import Result
from inference.rng import check_seed
from inference.shards import is_sharded

__all__ = ["TrainStep", "LossStep", "fit", "threads", "save_checkpoint", "load_checkpoint", "checkpoint_state", "isolated"]

MAGIC = b"GENZOO-DEEP-CKPT-1\n"


# =========================================================================== steps
class TrainStep:
    """One update on one minibatch; subclass it for objectives with several optimisers.

    A subclass sets ``name`` (for the history and the progress bar) and implements the four
    methods below. ``takes_missing = True`` lets NaN entries of the data through to the step (for
    models that treat them as missing values).
    """

    name: str = "step"
    takes_missing: bool = False

    def modules(self) -> dict[str, torch.nn.Module]:
        """Everything trainable, by name: checkpointed, and moved to the run's device."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, Any]:
        """The optimisers by name (anything with ``state_dict`` / ``load_state_dict``): checkpointed."""
        raise NotImplementedError

    def config(self) -> dict:
        """JSON-able hyperparameters; a checkpoint of another configuration is refused."""
        return {}

    def setup(self, data: Mapping[str, torch.Tensor]) -> None:
        """Called once with the whole training data (on the run's device) before the first update and
        before any resume: to build lazily made weights, or to check the data up front."""

    def __call__(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mapping[str, Any]:
        raise NotImplementedError


def _fused(cls, params, lr, kwargs):
    """``cls(params, fused=True)`` where the parameters' device and dtype have torch's fused kernel,
    else ``cls``'s default implementation."""
    params = list(params)
    try:
        return cls(params, lr=lr, fused=True, **kwargs)
    except RuntimeError:  # torch refuses fused=True for devices / dtypes it has no kernel for
        return cls(params, lr=lr, **kwargs)


def adam(params, *, lr: float = 1e-3, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` with torch's fused kernel where the parameters' device has one.

    The fused kernel performs the same update as the default per-tensor loop (equal to float
    rounding) in one call over all tensors: on the CPU it took a 3 x 64 MLP's whole training step
    from 2.1 to 1.65 ms (``benchmarks/diffusion_fm.py``'s flow-matching step). Where fusion is
    refused (a device or a dtype without the kernel), the default implementation is used.
    """
    return _fused(torch.optim.Adam, params, lr, kwargs)


def adamw(params, *, lr: float = 1e-3, **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW``, fused where possible (as :func:`adam`)."""
    return _fused(torch.optim.AdamW, params, lr, kwargs)


class LossStep(TrainStep):
    """Minimise one scalar loss with one optimiser (Adam by default, fused: :func:`adam`) over ``module``'s parameters.

    Args:
        module: the model (an ``nn.Module``).
        loss_fn: ``loss_fn(module, batch, generator) -> scalar tensor``.
        lr: the learning rate.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, or a factory ``params -> torch.optim.Optimizer``.
        clip: clip the gradients' global norm to this value (None: no clipping).
        name: the objective's name, for the history and the progress bar.
    """

    def __init__(self, module: torch.nn.Module, loss_fn: Callable, *, lr: float = 1e-3,
                 optimizer: str | Callable = "adam", clip: float | None = None, name: str = "loss"):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise DataError(f"lr must be a positive finite number, got {lr!r}")
        if clip is not None and not (math.isfinite(clip) and clip > 0):
            raise DataError(f"clip must be a positive finite number or None, got {clip!r}")
        self.module, self.loss_fn, self.lr, self.clip, self.name = module, loss_fn, float(lr), clip, name
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise DataError(f"{type(module).__name__} has no trainable parameters")
        factories = {"adam": adam, "adamw": adamw, "sgd": torch.optim.SGD}
        if callable(optimizer):
            self.optimizer, self._optimizer_name = optimizer(params), getattr(optimizer, "__name__", "custom")
        elif optimizer in factories:
            self.optimizer, self._optimizer_name = factories[optimizer](params, lr=self.lr), optimizer
        else:
            raise DataError(f"unknown optimizer {optimizer!r}; choose one of {sorted(factories)} or pass a factory")

    def modules(self):
        return {"module": self.module}

    def optimizers(self):
        return {"optimizer": self.optimizer}

    def config(self):
        return {"lr": self.lr, "optimizer": self._optimizer_name, "clip": self.clip, "name": self.name,
                "module": _identity(self.module)}

    def __call__(self, batch, generator):
        loss = self.loss_fn(self.module, batch, generator)
        value = loss.item()  # the one synchronisation of the step
        if not math.isfinite(value):  # before the update: the weights stay the last good ones
            return {"loss": value}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip)
        self.optimizer.step()
        return {"loss": value}


# =========================================================================== checkpoints
def _identity(obj) -> dict:
    config = obj.config() if callable(getattr(obj, "config", None)) else getattr(obj, "config", {})
    return {"class": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "config": json.loads(json.dumps(config, sort_keys=True, default=str))}


def save_checkpoint(path, obj, *, state: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Write ``obj``'s weights (and a training ``state``) to ``path`` atomically.

    ``obj`` is anything with ``state_dict()`` (a module, or a step's bundle of modules). Layout: the
    magic line, the hex SHA-256 of the payload and a newline, then the payload (``torch.save`` of
    plain containers and tensors, loadable with ``weights_only=True``).
    """
    path = pathlib.Path(path)
    payload = {"identity": json.dumps(_identity(obj), sort_keys=True), "model": obj.state_dict(),
               "state": dict(state or {})}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    atomic_write(path, MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    return path


def _read(path) -> dict:
    path = pathlib.Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({err.strerror})") from None
    if not blob.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a genzoo checkpoint (bad magic bytes)")
    digest, _, body = blob[len(MAGIC):].partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CheckpointError(f"{path}: corrupted checkpoint (SHA-256 of the payload does not match)")
    try:
        return torch.load(io.BytesIO(body), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"{path}: unreadable checkpoint payload ({err})") from None


def checkpoint_state(path) -> dict:
    """The training state stored in a checkpoint (``step``, ``history``...), verified but without
    loading any weights: for watching a run's progress from another process."""
    return _read(path)["state"]


def load_checkpoint(path, obj) -> dict:
    """Load weights saved by :func:`save_checkpoint` into ``obj`` and return the training state.

    Raises :class:`CheckpointError` for a file that is not a genzoo checkpoint, is truncated or
    altered (SHA-256 mismatch), belongs to another class or configuration, or whose weights do
    not fit ``obj``; nothing is loaded into ``obj`` in those cases.
    """
    payload = _read(path)
    saved, wanted = json.loads(payload["identity"]), _identity(obj)
    if saved["class"] != wanted["class"]:
        raise CheckpointError(f"{path}: a checkpoint of {saved['class']}, not of {wanted['class']}")
    if saved["config"] != wanted["config"]:
        diff = sorted(k for k in set(saved["config"]) | set(wanted["config"])
                      if saved["config"].get(k) != wanted["config"].get(k))
        raise CheckpointError(f"{path}: the checkpoint's model differs in {diff}: "
                              f"{ {k: saved['config'].get(k) for k in diff} } vs { {k: wanted['config'].get(k) for k in diff} }")
    try:
        obj.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: the weights do not fit the model ({err})") from None
    return payload["state"]


class _Weights:
    """A step's weights as one checkpointable object: its module itself when it has one, else all
    of them by name (the identity is then the step's class and configuration)."""

    def __init__(self, step: TrainStep):
        self.step, self.mods = step, step.modules()
        if not self.mods:
            raise DataError(f"{type(step).__name__}.modules() returned nothing to train")

    @property
    def target(self):
        return next(iter(self.mods.values())) if len(self.mods) == 1 else self

    def config(self):
        return {"step": _identity(self.step), "modules": {k: _identity(m) for k, m in self.mods.items()}}

    def state_dict(self):
        return {k: m.state_dict() for k, m in self.mods.items()}

    def load_state_dict(self, state):
        if sorted(state) != sorted(self.mods):
            raise KeyError(f"modules {sorted(state)} saved, {sorted(self.mods)} expected")
        for k, m in self.mods.items():
            m.load_state_dict(state[k])


# =========================================================================== random state
@contextlib.contextmanager
def isolated(seed: int | None = None):
    """A private Pyro parameter store (and, with ``seed``, a private torch random state) for a block.

    Pyro programs that call ``pyro.module`` add their networks to Pyro's parameter store; inside
    this scope that store is a fresh one, discarded on exit, so two models never share names and
    nothing global is left behind. The networks' weights stay in their modules.
    """
    import pyro

    with pyro.get_param_store().scope():
        if seed is None:
            yield
        else:
            with seeded(seed):
                yield


@contextlib.contextmanager
def threads(n: int | None):
    """Run a block with ``n`` torch threads (None: leave the count alone), restoring the count after."""
    if n is None:
        yield
        return
    if int(n) < 1:
        raise DataError(f"num_threads must be >= 1, got {n}")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)



_threads = threads  # the former private name


# =========================================================================== the loop
def as_tensors(data) -> dict[str, torch.Tensor]:
    """``data`` (one array, or a dict of arrays sharing a leading axis) as a dict of tensors, or a
    :class:`DataError` naming the fault (floating point is put in the model's precision by :func:`fit`)."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        data = {"x": data}
    if not isinstance(data, Mapping) or not data:
        raise DataError("data must be an array or a non-empty dict of arrays with a leading data axis")
    out = {}
    for k, v in data.items():
        try:
            t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        except (TypeError, ValueError) as err:
            raise DataError(f"data[{k!r}] is not an array ({err})") from None
        out[k] = t
    sizes = {k: t.shape[0] for k, t in out.items() if t.dim() > 0}
    if not sizes:
        raise DataError("data needs at least one array with a leading data axis")
    if len(set(sizes.values())) != 1:
        raise DataError(f"data arrays must share their leading data axis, got lengths {sizes}")
    if next(iter(sizes.values())) == 0:
        raise DataError("data is empty (a leading axis of length 0)")
    return out


def _bad_rows(tensors: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """A (N,) boolean CPU tensor marking the rows with a NaN or infinite floating-point entry, or
    None when every row is finite: the data are checked once, not each minibatch again."""
    floats = [t for t in tensors.values() if t.is_floating_point() and t.dim() > 0]
    if all(bool(torch.isfinite(t).all()) for t in floats):  # the usual case: one reduction per array
        return None
    flags = [~torch.isfinite(t.reshape(t.shape[0], -1)).all(1) for t in floats]
    if not flags:
        return None
    bad = torch.stack(flags).any(0).cpu()
    return bad if bool(bad.any()) else None


def _check_finite(batch: Mapping[str, torch.Tensor], index: torch.Tensor, step: int) -> None:
    for k, t in batch.items():
        if t.is_floating_point() and t.dim() > 0 and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t.reshape(t.shape[0], -1))).any(1).nonzero()[:, 0]
            rows = index[bad.cpu()].tolist()
            raise DataError(f"data[{k!r}] has NaN or infinite values in rows {rows[:10]}"
                            f"{' ...' if len(rows) > 10 else ''} (the minibatch of step {step})")


def _sharded_batch(data, seed: int, epoch: int, position: int, batch_size: int, device, dtype=torch.float32):
    """Minibatch ``position`` of epoch ``epoch`` of a :class:`~inference.shards.ShardedDataset` as
    ``(row indices, dict of tensors on device)``, floating point in ``dtype``."""
    rows, arrays = data.batch(seed, epoch, position, batch_size)
    batch = {}
    for k, v in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        batch[k] = t.to(device, dtype) if t.is_floating_point() and dtype is not None else t.to(device)
    return torch.from_numpy(rows), batch


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def fit(
    step: TrainStep,
    data,
    *,
    seed: int,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    progress: bool = False,
    num_threads: int | None = None,
    callback: Callable[[int, Mapping[str, float]], None] | None = None,
    augment: Callable | None = None,
    settings: Mapping[str, Any] | None = None,
    isolate: bool = True,
) -> Result:
    """Train ``step``'s modules on ``data`` (module docstring: how a run goes).

    Args:
        step: a :class:`TrainStep` (its modules are updated in place).
        data: an array, or a dict of arrays sharing a leading data axis (the batch's keys), or a
            :class:`~inference.shards.ShardedDataset` (rows on disk, read a block at a time; the
            epoch's order is then the dataset's two-level permutation drawn from ``seed``, and
            ``step.setup`` receives the first minibatch instead of the whole data).
        seed: the seed of every random choice of the run (a non-negative int).
        steps, epochs: the length of the run (exactly one): ``steps`` updates in all, or ``epochs``
            passes over the data (``ceil(N / batch_size)`` updates each).
        batch_size: data points per update (the last batch of an epoch may be smaller).
        device: where the modules and batches live (``"cpu"``, ``"cuda"``...); None keeps the
            modules where they are.
        checkpoint: a file to resume from when it exists, written every ``checkpoint_every``
            steps (default: once per epoch) and at the end.
        progress: show a progress bar.
        num_threads: torch threads for the run (restored afterwards).
        callback: ``callback(step_number, losses)`` after every update.
        augment: ``augment(batch, generator) -> batch`` applied to each minibatch (random masks...).
        settings: extra run settings stored with the checkpoint and checked on resume.
        isolate: run in a private scope of Pyro's parameter store (False: the caller holds one,
            to use the parameters after the run, as SVI on a Pyro program does).

    Returns:
        ``Result(method="train:<step.name>", params=<the module, or a dict of modules>,
        history=<"loss" per step>, diagnostics={"losses", "steps", "epochs", "resumed_from",
        "batch_size", "mean_loss_last_epoch", "device"})``.
    """
    start_time = time.perf_counter()
    seed = check_seed(seed)
    sharded = is_sharded(data)
    if sharded:  # rows stay on disk; minibatches are read block by block (inference.shards)
        tensors, n = None, data.n
    else:
        tensors = as_tensors(data)
        n = next(t.shape[0] for t in tensors.values() if t.dim() > 0)
    batch_size = min(_positive_int(batch_size, "batch_size"), n)
    per_epoch = math.ceil(n / batch_size)
    if (epochs is None) == (steps is None):
        raise DataError("give exactly one of epochs and steps")
    total = _positive_int(steps, "steps") if steps is not None else _positive_int(epochs, "epochs") * per_epoch
    every = _positive_int(checkpoint_every, "checkpoint_every") if checkpoint_every is not None else per_epoch
    weights = _Weights(step)
    if device is not None:
        device = torch.device(device)
        for module in weights.mods.values():
            module.to(device)
    params = [p for m in weights.mods.values() for p in m.parameters()]
    run_device = device or next((p.device for p in params), torch.device("cpu"))
    # floating-point data in the modules' precision (float32 unless the model was made float64)
    # (a step whose weights are made on its first call, as Pyro's parameter store, keeps the data's own)
    dtype = next((p.dtype for p in params if p.is_floating_point()), None)
    if not sharded:
        tensors = {k: (t.to(run_device, dtype) if t.is_floating_point() and dtype is not None else t.to(run_device))
                   for k, t in tensors.items()}
    generator = torch.Generator(device=run_device).manual_seed(seed)
    index_generator = torch.Generator().manual_seed(seed)
    meta = {"seed": seed, "batch_size": batch_size, "n": n, "step": _identity(step), **dict(settings or {})}
    if sharded:
        meta["data"] = "sharded"  # another order of the rows than a permutation of arrays in memory
    meta = json.loads(json.dumps(meta, sort_keys=True, default=str))

    with threads(num_threads), (isolated(seed) if isolate else seeded(seed)):
        # 1-2. fresh start or resume
        done, history, perm = 0, {}, None
        step.setup(tensors if not sharded else _sharded_batch(data, seed, 0, 0, batch_size, run_device, dtype)[1])
        if checkpoint is not None and pathlib.Path(checkpoint).exists():
            state = load_checkpoint(checkpoint, weights.target)
            saved_meta = json.loads(state["meta"])
            if saved_meta != meta:
                diff = sorted(k for k in set(meta) | set(saved_meta) if saved_meta.get(k) != meta.get(k))
                raise CheckpointError(f"{checkpoint}: the run settings differ in {diff} "
                                      f"({ {k: saved_meta.get(k) for k in diff} })")
            for name, opt in step.optimizers().items():
                opt.load_state_dict(state["optimizers"][name])
            generator.set_state(state["generator"])
            index_generator.set_state(state["index_generator"])
            torch.set_rng_state(state["torch_rng"])
            done, perm = int(state["step"]), state["perm"]
            history = {k: v.tolist() for k, v in state["history"].items()}
            if done > total:
                raise CheckpointError(f"{checkpoint}: holds {done} steps, more than the {total} asked for")
        resumed_from = done
        last_saved = [done if checkpoint is not None and pathlib.Path(checkpoint).exists() else None]

        def save():
            if checkpoint is None:
                return
            last_saved[0] = done
            state = {"meta": json.dumps(meta, sort_keys=True),
                     "optimizers": {k: o.state_dict() for k, o in step.optimizers().items()},
                     "generator": generator.get_state(), "index_generator": index_generator.get_state(),
                     "torch_rng": torch.get_rng_state(), "step": done, "perm": perm,
                     "history": {k: torch.tensor(v, dtype=torch.float64) for k, v in history.items()}}
            save_checkpoint(checkpoint, weights.target, state=state)

        # 3. optimise. In-memory data are checked for NaN / inf once, here: a minibatch is checked
        # again only when it holds a bad row (to stop at that step, naming it), or when its rows are
        # read from disk or changed by ``augment`` (then every minibatch is checked).
        check_batches = not step.takes_missing and (sharded or augment is not None)
        bad_rows = None if step.takes_missing or check_batches else _bad_rows(tensors)
        for module in weights.mods.values():
            module.train()
        with tqdm(total=total, initial=done, disable=not progress, desc=f"train {step.name}") as bar:
            while done < total:
                position = done % per_epoch
                if sharded:  # the epoch's order is a function of (seed, epoch): nothing to save
                    index, batch = _sharded_batch(data, seed, done // per_epoch, position, batch_size, run_device, dtype)
                else:
                    if position == 0 or perm is None:
                        perm = torch.randperm(n, generator=index_generator)
                    index = perm[position * batch_size:(position + 1) * batch_size]
                    device_index = index.to(run_device)
                    batch = {k: (t.index_select(0, device_index) if t.dim() > 0 else t) for k, t in tensors.items()}
                if augment is not None:
                    batch = augment(batch, generator)
                if check_batches or (bad_rows is not None and bool(bad_rows[index].any())):
                    _check_finite(batch, index, done + 1)
                losses = {k: float(v) for k, v in step(batch, generator).items()}
                bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                if bad:
                    raise TrainingError(
                        f"{step.name}: the loss {', '.join(f'{k}={v}' for k, v in bad.items())} at step {done + 1} "
                        f"(data rows {index[:10].tolist()}{' ...' if len(index) > 10 else ''}); "
                        + (f"the last good checkpoint ({checkpoint}, step {last_saved[0]}) is kept; "
                           if last_saved[0] is not None else "")
                        + "lower the learning rate or check the data", step=done + 1, rows=index.tolist())
                done += 1
                for k, v in losses.items():
                    history.setdefault(k, []).append(v)
                if callback is not None:
                    callback(done, losses)
                bar.update(1)
                if done % per_epoch == 0 and "loss" in losses:
                    bar.set_postfix(loss=f"{losses['loss']:.4g}")
                if done % every == 0 and done < total:
                    save()
        save()
        for module in weights.mods.values():
            module.eval()
    loss = np.asarray(history.get("loss", []))
    params = weights.target if len(weights.mods) == 1 else dict(weights.mods)
    return Result(
        method=f"train:{step.name}", params=params, history=loss, seconds=time.perf_counter() - start_time,
        diagnostics={"losses": {k: np.asarray(v) for k, v in history.items()}, "steps": done,
                     "epochs": done / per_epoch, "resumed_from": resumed_from, "batch_size": batch_size,
                     "mean_loss_last_epoch": float(np.mean(loss[-per_epoch:])) if len(loss) else None,
                     "device": str(run_device)},
    )
