"""Recipes for measuring diffusion and flow-matching models on the 2-D densities.

What ``genzoo compare diffusion`` / ``flow_matching`` and ``examples/diffusion_2d.py`` share:
training a model of a given kind on a density's samples (through each model's ``fit``, i.e. the
zoo's one loop) and scoring a method's samples and log-likelihoods:

- ``w2``: the exact 2-Wasserstein distance between the generated points and as many fresh points
  of the density (:func:`inference.evaluate.wasserstein2`);
- ``nll``: the test negative log-likelihood in nats per point (the variational bound for DDPM, the
  probability-flow ODE's likelihood for the score SDEs and flow matching), and
  ``kl`` :math:`= \\mathrm{NLL} - H(p)`, an unbiased estimate of :math:`\\mathrm{KL}(p \\,\\|\\, q)`
  (with the bound, an upper bound on it) when the density has a closed-form entropy;
- ``steps``: sampling steps (network calls for fixed-step samplers, NFE for adaptive ones).

Example:
    >>> r = score_samples("toy", torch.zeros(50, 2), torch.zeros(50, 2), seconds=0.1, steps=1)
    >>> r.diagnostics["scores"]["w2"]
    0.0
"""

from __future__ import annotations

import math
import time

import torch

from inference.result import Result

__all__ = ["KINDS", "training_data", "train", "score_samples", "with_nll"]

KINDS = ("ddpm", "vp", "subvp", "ve", "fm_independent", "fm_ot")


def training_data(density, n: int, seed: int) -> torch.Tensor:
    """``n`` training points of ``density`` (from its generator seeded by ``seed``)."""
    return density.sample(n, generator=seed)


def train(kind: str, x: torch.Tensor, *, seed: int, steps: int, batch_size: int = 256, hidden=(128, 128, 128),
          lr: float = 1e-3, T: int = 1000, progress: bool = False):
    """A model of ``kind`` (one of :data:`KINDS`) fitted to ``x`` (N, D) through the one loop.
    ``"ddpm"`` uses ``vp_betas(T)`` so that :meth:`ScoreSDE.from_ddpm` reads it as the VP model."""
    from deep.diffusion import ddpm as ddpm_mod
    from deep.diffusion import flow_matching as fm_mod
    from deep.diffusion import sde as sde_mod
    from deep.diffusion.schedules import SubVPScheduler, VEScheduler, vp_betas
    from inference.errors import UnknownNameError

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the initial weights
        if kind == "ddpm":
            model = ddpm_mod.DDPM(x.shape[1], betas=vp_betas(T), hidden=hidden)
            fitter = ddpm_mod.fit
        elif kind in ("vp", "subvp", "ve"):
            if kind == "vp":
                return sde_mod.ScoreSDE.from_ddpm(train("ddpm", x, seed=seed, steps=steps, batch_size=batch_size,
                                                        hidden=hidden, lr=lr, T=T, progress=progress))
            spread = float(torch.cdist(x[:500], x[:500]).max())  # Song and Ermon's sigma_max: the data's diameter
            sch = SubVPScheduler() if kind == "subvp" else VEScheduler(sigma_min=0.01, sigma_max=max(spread, 1.0))
            model, fitter = sde_mod.ScoreSDE(x.shape[1], sch, hidden=hidden), sde_mod.fit
        elif kind in ("fm_independent", "fm_ot"):
            model = fm_mod.FlowMatching(x.shape[1], hidden=hidden, coupling=kind[3:])
            fitter = fm_mod.fit
        else:
            raise UnknownNameError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    fitter(model, {"x": x}, seed=seed, steps=steps, batch_size=batch_size, lr=lr, progress=progress)
    return model


def score_samples(method: str, samples: torch.Tensor, truth: torch.Tensor, *, seconds: float, steps: int,
                  extra: dict | None = None) -> Result:
    """A Result holding ``samples`` and their scores: ``w2`` against ``truth`` (same size), ``steps``."""
    from inference.evaluate import wasserstein2

    samples = samples.detach().double().cpu()
    finite = torch.isfinite(samples).all(-1)
    w2 = wasserstein2(samples[finite].numpy(), truth.double()[finite].numpy()) if finite.all() else math.inf
    scores = {"w2": w2, "steps": float(steps), "sample_s": seconds}
    return Result(method=method, samples={"x": samples.numpy()}, seconds=seconds,
                  diagnostics={"scores": scores, **(extra or {})})


def with_nll(result: Result, log_probs: torch.Tensor, density, *, kind: str, seconds: float) -> Result:
    """``result`` with the test NLL (nats per point), ``kl`` = NLL - H(p) where the density has an
    entropy, and the summed log-likelihood as its log-evidence of ``kind`` (``"lower_bound"`` or
    ``"estimate"``)."""
    import dataclasses

    from inference.errors import ModelError

    lp = log_probs.detach().double().cpu()
    nll = float(-lp.mean())
    scores = dict(result.diagnostics["scores"])
    scores["nll"] = nll
    scores["nll_se"] = float(lp.std() / math.sqrt(len(lp)))
    try:
        scores["kl"] = nll - density.entropy()
    except ModelError:
        pass
    scores["nll_s"] = seconds
    return dataclasses.replace(result, log_evidence=float(lp.sum()), log_evidence_kind=kind,
                               diagnostics={**result.diagnostics, "scores": scores})


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
