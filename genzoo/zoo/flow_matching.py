"""Flow matching on the 2-D densities: independent and minibatch-OT couplings, Euler and adaptive sampling.

Each method trains its model (one per coupling) on its first call and keeps it on the problem.
Columns: ``w2`` (exact 2-Wasserstein distance from as many fresh points of the density), ``steps``
(Euler steps, NFE for the adaptive solver), and on the adaptive rows ``nll`` (nats per test point,
the ODE likelihood by the change of variables, kind ``estimate``: exact up to the solver's
tolerance) and ``kl`` = NLL - H(p).

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import sys
import time

from genzoo.registry import Method, ModelEntry, Option

from genzoo.zoo.diffusion import _problem, with_sample_set


def _trained(problem, coupling, config):
    from deep.diffusion.recipes import train

    cache, o = problem.data["trained"], problem.data["options"]
    key = f"fm_{coupling}"
    if key not in cache:
        start = time.perf_counter()
        cache[key] = (train(key, problem.data["train"], seed=config.seed, steps=config.steps or o["train_steps"],
                            hidden=(o["width"],) * 3, progress=config.progress and sys.stderr.isatty()),
                      time.perf_counter() - start)
    return cache[key]


def _fm(coupling, solver):
    def run(problem, config):
        from deep.diffusion.recipes import score_samples, timed, with_nll

        d = problem.data
        model, train_s = _trained(problem, coupling, config)
        n = len(d["truth"])
        extra = {"train_seconds": train_s}
        if solver == "adaptive":
            out, secs = timed(model.sample, n, generator=config.seed, method="dopri5", atol=1e-4, rtol=1e-4)
            result = score_samples(f"{coupling}_adaptive", out.x, d["truth"], seconds=secs, steps=out.nfe, extra=extra)
            lik, s = timed(model.log_prob, d["test"], method="dopri5", atol=1e-4, rtol=1e-4)
            return with_sample_set(with_nll(result, lik.log_prob, d["density"], kind="estimate", seconds=s), problem)
        k = int(solver.split("_")[1])
        out, secs = timed(model.sample, n, generator=config.seed, method="euler", num_steps=k)
        return with_sample_set(score_samples(f"{coupling}_{solver}", out.x, d["truth"], seconds=secs, steps=out.nfe,
                                             extra=extra), problem)

    return run


def _sample(problem, seed, n):
    from deep.diffusion.recipes import train

    o = problem.data["options"]
    model = train("fm_ot", problem.data["train"], seed=seed, steps=o["train_steps"], hidden=(o["width"],) * 3)
    x = model.sample(n, generator=seed).x
    return {"x1": x[:, 0].numpy(), "x2": x[:, 1].numpy()}


def _doc():
    from deep.diffusion.flow_matching import FlowMatching

    return FlowMatching


ENTRY = ModelEntry(
    name="flow_matching",
    family="flow matching / rectified flow",
    description="conditional flow matching (independent and minibatch-OT couplings) on 2-D densities",
    dataset="2-D densities with closed-form log-densities (deep.densities)",
    make_problem=_problem,
    methods=tuple(
        Method(f"{c}_{s}", f"{c} coupling, " + ("Euler, 1 step" if s == "euler_1" else "Euler, 10 steps"
                                                  if s == "euler_10" else "adaptive dopri5 (tolerance 1e-4); NLL by the ODE"),
               _fm(c, s), kind="bound")
        for c in ("independent", "ot") for s in ("euler_1", "euler_10", "adaptive")
    ),
    exact_method=None,
    options={
        "density": Option("8gaussians", "8gaussians, checkerboard, ring, grid or moons"),
        "train_steps": Option(3000, "training steps per model (--steps overrides)", int),
        "width": Option(128, "hidden width of the 3-layer time-conditioned MLP", int),
        "points": Option(2000, "samples for W2 and test points for the NLL", int),
        "train_n": Option(20000, "training points", int),
    },
    sample=_sample,
    doc=_doc,
    quick={"train_steps": 1500, "points": 500, "width": 64},
    order=96,
)
