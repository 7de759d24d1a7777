"""Diffusion models on the 2-D densities: DDPM (ancestral, DDIM) and score SDEs (VP, sub-VP, VE).

Each method trains the model it needs on its first call and keeps it on the problem (DDPM and the
VP SDE share one network), so the timed second call only samples and scores. Columns: ``w2`` (exact
2-Wasserstein distance from as many fresh points of the density), ``nll`` (nats per test point: the
variational bound for DDPM, kind ``lower_bound``; the probability-flow ODE's likelihood for the
SDEs, kind ``estimate``, exact up to the solver's tolerance), ``kl`` = NLL - H(p), ``steps``
(network calls, NFE for the adaptive solver), ``sample_s`` and ``nll_s`` (seconds).

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping

from genzoo.registry import Method, ModelEntry, Option, Problem


def _problem(options: Mapping[str, Any], seed: int) -> Problem:
    import torch

    from deep.densities import get
    from inference.errors import DataError

    density = get(options["density"])
    if options["points"] < 2 or options["train_n"] < 2:
        raise DataError(f"--points and --train_n must be at least 2, got {options['points']} and {options['train_n']}")
    gen = torch.Generator().manual_seed(seed)
    data = {"train": density.sample(options["train_n"], gen), "truth": density.sample(options["points"], gen),
            "test": density.sample(options["points"], gen), "density": density, "options": dict(options), "trained": {}}
    return Problem(model=None, data=data, description=(
        f"{options['density']}: models trained on {options['train_n']} points; W2 of "
        f"{options['points']} samples against {options['points']} true points; NLL of {options['points']} test points (nats)"))


def _trained(problem, kind, config):
    from deep.diffusion.recipes import train

    cache, o = problem.data["trained"], problem.data["options"]
    key = "ddpm" if kind == "vp" else kind
    if key not in cache:
        start = time.perf_counter()
        cache[key] = (train(key, problem.data["train"], seed=config.seed, steps=config.steps or o["train_steps"],
                            hidden=(o["width"],) * 3, T=o["T"], progress=config.progress and sys.stderr.isatty()),
                      time.perf_counter() - start)
    model, seconds = cache[key]
    if kind == "vp":
        from deep.diffusion.sde import ScoreSDE

        model = ScoreSDE.from_ddpm(model)
    return model, seconds


def with_sample_set(result, problem):
    """``result`` with its samples as ``diagnostics["sample_sets"]`` under the density's name (the
    run report draws them over the true density)."""
    import dataclasses

    sets = {problem.data["density"].name: result.samples["x"]}
    return dataclasses.replace(result, diagnostics={**result.diagnostics, "sample_sets": sets})


def _ddpm(num_steps):
    def run(problem, config):
        from deep.diffusion.recipes import score_samples, timed, with_nll

        d = problem.data
        model, train_s = _trained(problem, "ddpm", config)
        n = len(d["truth"])
        if num_steps is None:
            x, secs = timed(model.sample, n, generator=config.seed)
            name, steps = f"ddpm_{model.T}", model.T
        else:
            x, secs = timed(model.ddim_sample, n, generator=config.seed, num_steps=num_steps, eta=0.0)
            name, steps = f"ddim_{num_steps}", num_steps
        result = score_samples(name, x, d["truth"], seconds=secs, steps=steps, extra={"train_seconds": train_s})
        if num_steps is None:  # the bound belongs to the model; reported once, on the ancestral row
            terms = None if model.T <= 100 else 50
            lp, s = timed(model.bound, d["test"], generator=config.seed + 1, num_terms=terms)
            result = with_nll(result, lp, d["density"], kind="lower_bound", seconds=s)
        return with_sample_set(result, problem)

    return run


def _sde(kind, sampler):
    def run(problem, config):
        from deep.diffusion.recipes import score_samples, timed, with_nll

        d = problem.data
        model, train_s = _trained(problem, kind, config)
        n = len(d["truth"])
        extra = {"train_seconds": train_s}
        if sampler == "sde":
            x, secs = timed(model.reverse_sde_sample, n, generator=config.seed, num_steps=250)
            return with_sample_set(score_samples(f"{kind}_sde", x, d["truth"], seconds=secs, steps=250, extra=extra),
                                   problem)
        if sampler == "pc":
            x, secs = timed(model.pc_sample, n, generator=config.seed, num_steps=100, corrector_steps=1)
            return with_sample_set(score_samples(f"{kind}_pc", x, d["truth"], seconds=secs, steps=200, extra=extra),
                                   problem)
        out, secs = timed(model.ode_sample, n, generator=config.seed, method="dopri5", atol=1e-4, rtol=1e-4)
        result = score_samples(f"{kind}_ode", out.x, d["truth"], seconds=secs, steps=out.nfe, extra=extra)
        lik, s = timed(model.log_prob, d["test"], method="dopri5", atol=1e-4, rtol=1e-4)
        return with_sample_set(with_nll(result, lik.log_prob, d["density"], kind="estimate", seconds=s), problem)

    return run


def _sample(problem, seed, n):
    from deep.diffusion.recipes import train

    model = train("ddpm", problem.data["train"], seed=seed, steps=problem.data["options"]["train_steps"],
                  hidden=(problem.data["options"]["width"],) * 3, T=problem.data["options"]["T"])
    x = model.sample(n, generator=seed)
    return {"x1": x[:, 0].numpy(), "x2": x[:, 1].numpy()}


def _doc():
    from deep.diffusion.ddpm import DDPM

    return DDPM


_METHODS = (
    Method("ddpm", "DDPM, T-step ancestral sampling; NLL = the variational bound (analytic KL terms)", _ddpm(None),
           kind="bound"),
    Method("ddim_50", "DDIM, 50 deterministic steps (eta = 0), same network", _ddpm(50), kind="bound"),
    Method("ddim_20", "DDIM, 20 steps", _ddpm(20), kind="bound"),
    Method("ddim_10", "DDIM, 10 steps", _ddpm(10), kind="bound"),
) + tuple(
    Method(f"{kind}_{sampler}", desc.format(kind=kind.upper() if kind != "subvp" else "sub-VP"), _sde(kind, sampler),
           kind="bound")
    for kind in ("vp", "subvp", "ve")
    for sampler, desc in (("sde", "{kind} SDE, reverse-SDE Euler-Maruyama, 250 steps"),
                          ("pc", "{kind} SDE, predictor-corrector (Langevin corrector), 100 + 100 steps"),
                          ("ode", "{kind} probability-flow ODE (dopri5, tolerance 1e-4); NLL by the change of variables"))
)

ENTRY = ModelEntry(
    name="diffusion",
    family="diffusion / score-based model",
    description="DDPM (Pyro program, DDIM) and score SDEs (VP, sub-VP, VE) on 2-D densities",
    dataset="2-D densities with closed-form log-densities (deep.densities)",
    make_problem=_problem,
    methods=_METHODS,
    exact_method=None,
    options={
        "density": Option("8gaussians", "8gaussians, checkerboard, ring, grid or moons"),
        "train_steps": Option(3000, "training steps per model (--steps overrides)", int),
        "width": Option(128, "hidden width of the 3-layer time-conditioned MLP", int),
        "T": Option(1000, "DDPM steps", int),
        "points": Option(2000, "samples for W2 and test points for the NLL", int),
        "train_n": Option(20000, "training points", int),
    },
    sample=_sample,
    doc=_doc,
    quick={"train_steps": 1500, "points": 500, "width": 64},
    order=95,
)
