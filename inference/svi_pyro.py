"""SVI on Pyro programs, as one kind of step of the one training loop (:mod:`inference.train`).

:func:`inference.svi.fit` sends a Pyro program here. The program's parameters live in Pyro's
parameter store (a private scope per run); :class:`PyroSVIStep` makes them the loop's "module"
(their unconstrained tensors by name) and Pyro's optimiser its optimiser, so that minibatching,
the progress bar, checkpoints (atomic, hashed, ``weights_only=True``, resumed bit for bit) and the
non-finite guard are the loop's, as for every torch model of the zoo.

Objectives: Pyro's ``Trace_ELBO``, ``TraceEnum_ELBO`` and ``RenyiELBO``, and the IWAE bound of the
program's joint weight with DReG gradients for the guide unless ``dreg=False``
(:class:`inference.objectives.DRegIWAE`; a guide it cannot serve raises, DReG is never dropped
silently).

Minibatches: every sample site inside the plate named ``batch_plate`` has its log-density scaled
by :math:`N / B` for a minibatch of :math:`B` of the :math:`N` rows (an unbiased estimate of the
full-data bound).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from inference.errors import DataError, ModelError
from inference.objectives import DRegIWAE
from inference.likelihood import seeded
from inference.result import Result
from inference.rng import int_seed
from inference.shards import is_sharded
from inference.train import TrainStep, fit as train_fit

__all__ = ["fit_pyro", "PyroSVIStep"]


def _scaled(fn, plate: str, factor: dict, seen: set):
    """``fn`` with every sample site inside ``plate`` scaled by ``factor["value"]`` (read at run time)."""
    from pyro.poutine.messenger import Messenger

    class _ScaleInPlate(Messenger):
        def _process_message(self, msg):
            if msg["type"] == "sample" and any(f.name == plate for f in msg["cond_indep_stack"]):
                seen.add(msg["name"])
                msg["scale"] = factor["value"] * msg["scale"]

    def scaled(*args, **kwargs):
        with _ScaleInPlate():
            return fn(*args, **kwargs)

    return scaled


# =========================================================================== the step
class _StoreWeights:
    """Pyro's parameter store as the loop's module: the unconstrained tensors by name."""

    def __init__(self, store):
        self.store = store

    def parameters(self):
        return [p for _, p in self.store.named_parameters()]

    def config(self):
        return {"params": {n: list(p.shape) for n, p in sorted(self.store.named_parameters())}}

    def state_dict(self):
        return {n: p.detach().clone() for n, p in self.store.named_parameters()}

    def load_state_dict(self, state):
        names = sorted(n for n, _ in self.store.named_parameters())
        if sorted(state) != names:
            raise KeyError(f"parameters {sorted(state)} saved, {names} expected")
        with torch.no_grad():
            for name, p in self.store.named_parameters():
                p.copy_(state[name])

    def to(self, device):
        if torch.device(device).type != "cpu":
            raise DataError("SVI on a Pyro program keeps its parameters where the program makes them; "
                            "pass device=None")
        return self

    def train(self, mode: bool = True):
        return self

    def eval(self):
        return self


class _OptimState:
    """A ``pyro.optim`` optimiser with the ``state_dict`` / ``load_state_dict`` pair the loop uses."""

    def __init__(self, optim):
        self.optim = optim

    def state_dict(self):
        return self.optim.get_state()

    def load_state_dict(self, state):
        self.optim.set_state(state)


class PyroSVIStep(TrainStep):
    """One ``pyro.infer.SVI`` step of ``model`` / ``guide`` on a minibatch (static keyword
    arguments of the program in ``static``); sites inside ``batch_plate`` are scaled by N / B."""

    name = "svi"

    def __init__(self, model: Callable, guide: Callable, loss, optim, *, static: dict, n: int,
                 batch_plate: str | None, scale_guide: bool, config: dict):
        import pyro

        self.factor, self.seen = {"value": 1.0}, set()
        self.minibatch = batch_plate is not None
        if self.minibatch:
            model = _scaled(model, batch_plate, self.factor, self.seen)
            if scale_guide:  # a guide program's local sites; an automatic guide's are global
                guide = _scaled(guide, batch_plate, self.factor, set())
        self.model, self.guide, self.static, self.n, self.plate = model, guide, static, n, batch_plate
        self.optim, self._config = optim, config
        self.svi = pyro.infer.SVI(model, guide, optim, loss)
        self._weights = None

    def kwargs(self, batch) -> dict:
        batch = {k: v for k, v in batch.items() if k != "_row"}
        if self.minibatch:
            self.factor["value"] = self.n / len(next(iter(batch.values())))
        return {**self.static, **batch}

    def setup(self, data):
        import pyro

        self.svi.evaluate_loss(**self.kwargs(data))  # builds the parameters
        if self.minibatch and not self.seen:
            raise ModelError(f"batch_size: no sample site lies inside a plate named {self.plate!r}")
        self._weights = _StoreWeights(pyro.get_param_store())

    def modules(self):
        if self._weights is None:  # before setup: nothing built yet
            import pyro

            return {"params": _StoreWeights(pyro.get_param_store())}
        return {"params": self._weights}

    def optimizers(self):
        return {"optim": _OptimState(self.optim)}

    def config(self):
        return self._config

    def __call__(self, batch, generator):
        return {"loss": self.svi.step(**self.kwargs(batch))}


# =========================================================================== fit
def _split(data: dict) -> tuple[dict, dict]:
    arrays, static = {}, {}
    for k, v in data.items():
        if isinstance(v, torch.Tensor) or (hasattr(v, "shape") and np.ndim(v) >= 1):
            t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
            if not isinstance(v, torch.Tensor) and t.dtype == torch.float64 and torch.get_default_dtype() == torch.float32:
                t = t.float()  # NumPy's float64 default read in torch's default precision; tensors as given
            (arrays if t.dim() >= 1 else static)[k] = t
        else:
            static[k] = v
    return arrays, static


def _guide_draws(guide_fn, n, data):
    from pyro import poutine

    draws = {}
    for _ in range(n):
        tr = poutine.trace(guide_fn).get_trace(**data)
        for name, site in tr.nodes.items():
            if site["type"] == "sample" and not site["is_observed"] and not name.startswith("_"):
                draws.setdefault(name, []).append(site["value"].detach().cpu().numpy())
    return {k: np.stack(v) for k, v in draws.items()}


def fit_pyro(model, data, key, *, guide, elbo, num_particles, steps, learning_rate, optimizer, batch_size,
             num_samples, progress, checkpoint, checkpoint_every, batch_plate, alpha, dreg, rank,
             max_plate_nesting, make_guide, make_elbo) -> Result:
    """The Pyro path of :func:`inference.svi.fit` (see there for the arguments)."""
    import pyro

    start_time = time.perf_counter()
    seed = int_seed(key)
    sharded = is_sharded(data)
    arrays, static = ({}, {}) if sharded else _split(data)
    n = data.n if sharded else (len(next(iter(arrays.values()))) if arrays else 1)
    if batch_size is not None:
        if not arrays and not sharded:
            raise DataError("batch_size needs array-valued data with a leading data axis")
        if not 1 <= int(batch_size) <= n:
            raise DataError(f"batch_size must be in 1..{n} (the data length), got {batch_size}")
    use_dreg = elbo == "iwae" and dreg
    loss = DRegIWAE(num_particles) if use_dreg else make_elbo(
        elbo, num_particles, backend="pyro", alpha=alpha, max_plate_nesting=max_plate_nesting)
    loop_data = data if sharded else (arrays or {"_row": torch.zeros(1)})  # no array data: one pseudo-row
    every = checkpoint_every or (max(1, steps // 10) if checkpoint else None)
    with pyro.get_param_store().scope():
        guide_fn = make_guide(model, guide, backend="pyro", rank=rank)
        optim = optimizer if optimizer is not None else pyro.optim.Adam({"lr": learning_rate})
        guide_name = guide if isinstance(guide, str) else getattr(guide, "__name__", "guide")
        step = PyroSVIStep(model, guide_fn, loss, optim, static=static, n=n,
                           batch_plate=batch_plate if batch_size is not None else None, scale_guide=callable(guide),
                           config={"guide": guide_name, "elbo": elbo, "dreg": use_dreg,
                                   "num_particles": int(num_particles)})
        run = train_fit(step, loop_data, seed=seed, steps=steps, batch_size=batch_size or n, checkpoint=checkpoint,
                        checkpoint_every=every, progress=progress, isolate=False)
        history = run.history
        # the bound at the final parameters, and draws from the guide
        with seeded(seed), torch.no_grad():
            full = step.kwargs(loop_data) if batch_size is None else None
            if full is None:
                bound = -float(np.mean(history[-max(1, len(history) // 10):]))
            else:
                bound = -float(np.mean([step.svi.evaluate_loss(**full) for _ in range(16)]))
            store = pyro.get_param_store()
            params = {name: pyro.param(name).detach().cpu().numpy().copy() for name in store.keys()}
            if sharded:  # the guide's draws given the first minibatch: nothing reads the whole data
                arrays = {k: torch.as_tensor(v) for k, v in data.batch(seed, 0, 0, batch_size)[1].items()}
            everything = {**static, **arrays}
            samples = _guide_draws(guide_fn, num_samples, everything) if num_samples else {}
    is_delta = guide == "delta"
    diagnostics = {"guide": guide_name, "elbo": elbo, "num_particles": num_particles, "steps": steps,
                   "resumed_from": run.diagnostics["resumed_from"], "backend": "pyro"}
    if elbo == "iwae":
        diagnostics["dreg"] = use_dreg
    if is_delta:
        diagnostics["log_joint"] = bound
    return Result(method="svi", params=params, samples=samples, history=history,
                  log_evidence=None if is_delta else bound, log_evidence_kind=None if is_delta else "lower_bound",
                  seconds=time.perf_counter() - start_time, diagnostics=diagnostics)
