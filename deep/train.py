"""Training the deep latent-variable models: the one loop with a variational objective.

``train(model, data, seed=...)`` maximises a bound on :math:`\\log p_\\theta(x)` of ``model`` (an
``nn.Module`` with the programs ``model.model(**batch)`` and ``model.guide(**batch)``: VAE, IWAE,
CVAE, the sigmoid belief net, the deep Markov model). It is a convenience over the zoo's one
training loop: the objective is an :class:`inference.objectives.ObjectiveStep` (ELBO, IWAE, IWAE
with DReG gradients, Rényi, or a model's own loss; read that module for the estimators and the
recorded steps), and :func:`inference.train.fit` owns minibatching, the device, the progress bar,
checkpoints, resume and the non-finite guard (read that module for how a run goes).

Recorded steps are the default where they give the same losses: for the objectives Pyro can
record (``"elbo"``, ``"iwae"``, ``"renyi"``) on a model that declares ``recordable = True``
(programs of static structure whose weights reach them through ``pyro.module``: the VAE and
IWAE), ``jit=None`` records the loss once per batch shape and replays
it, at about 1.1-1.2x the time of a plain PyTorch loop per epoch instead of 2x eagerly
(``benchmarks/vae.py``); programs that cannot be recorded run eagerly (``diagnostics["jit"]``
says which ran).

Example:
    >>> import numpy as np
    >>> from deep.vae import VAE
    >>> x = (np.random.default_rng(0).random((32, 4, 4)) > 0.5).astype(np.float32)
    >>> r = train(VAE((4, 4), z_dim=2, hidden=(8,)), {"x": x}, seed=0, steps=5, batch_size=16)
    >>> r.history.shape
    (5,)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from inference.objectives import OBJECTIVES, ObjectiveStep, loss_function
from inference.result import Result
from inference.shards import is_sharded
from inference.train import fit, load_checkpoint, save_checkpoint

__all__ = ["train", "loss_function", "save_checkpoint", "load_checkpoint", "OBJECTIVES"]


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
    jit: bool | None = None,
    device=None,
) -> Result:
    """Train ``model`` (its ``model`` and ``guide`` programs and its networks) on ``data``.

    Args:
        model: an ``nn.Module`` with ``model(**batch)`` and ``guide(**batch)``; its weights are
            updated in place.
        data: the programs' keyword arguments, each an array with a leading data axis, or a
            :class:`~inference.shards.ShardedDataset` (rows on disk, streamed a block at a time).
        seed: the seed of every random choice of the run (an int).
        epochs, steps: the length of the run (one of them).
        batch_size: data points per step (the last batch of an epoch may be smaller).
        objective: ``"elbo"``, ``"iwae"``, ``"iwae_dreg"``, ``"renyi"`` or a callable; default
            ``model.objective`` (``"elbo"`` when absent).
        num_particles: particles per data point (default ``model.num_particles`` or 1).
        alpha: the Rényi order.
        learning_rate: Adam's step size.
        checkpoint, checkpoint_every, progress, num_threads, device: as in :func:`inference.train.fit`.
        callback: called as ``callback(step, loss)`` after every step.
        jit: record the loss once per batch shape (True), run it eagerly (False), or choose the
            fastest correct path (None, the default: recorded where the objective and the model allow).

    Returns:
        ``Result(method="train:<objective>", params=model, history=loss per step,
        log_evidence=-mean loss of the last epoch times N (kind "lower_bound"), diagnostics=
        {"epochs", "steps", "resumed_from", "objective", "num_particles", "batch_size", "jit", ...})``.
    """
    objective = objective if objective is not None else getattr(model, "objective", "elbo")
    num_particles = int(num_particles or getattr(model, "num_particles", 1))
    if jit is None:  # recorded where the model says its programs have a static structure
        jit = "auto" if getattr(model, "recordable", False) else False
    augment = getattr(model, "augment", None)
    step = ObjectiveStep(model, objective, num_particles=num_particles, alpha=alpha, lr=learning_rate, jit=jit,
                         augment=augment, check_chunk=16 * max(1, int(batch_size)) if isinstance(batch_size, int) else 1024)
    result = fit(step, data, seed=seed, steps=steps, epochs=epochs, batch_size=batch_size, device=device,
                 checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                 num_threads=num_threads, augment=augment,
                 callback=None if callback is None else (lambda s, losses: callback(s, losses["loss"])))
    d = result.diagnostics
    n = data.n if is_sharded(data) else next(np.shape(v)[0] for v in data.values() if np.ndim(v) > 0)
    return dataclasses.replace(
        result, log_evidence=-d["mean_loss_last_epoch"] * n, log_evidence_kind="lower_bound",
        diagnostics={**d, "objective": step.objective, "num_particles": num_particles, "jit": step.recorded})
