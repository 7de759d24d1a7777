"""Normalizing flows (torch / Pyro): exact likelihoods on 2-D densities and on grey-level digits.

Two entries, one question per table:

- ``flows``: RealNVP, MAF and a neural spline flow, each trained by maximum likelihood on draws of
  the 2-D densities of :mod:`deep.densities`; the columns are the test NLL and the exact
  KL(p || q) = NLL - H(p) per density (MMD for the two moons, which have no closed form) and the
  training seconds. ``--densities`` picks the densities, ``--steps`` the Adam steps.
- ``flows_digits``: Glow and RealNVP on scikit-learn's 8 x 8 digits (17 grey levels, dequantised,
  logit transform): bits per dimension of held-out images.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

from typing import Any, Mapping

from genzoo.registry import Method, ModelEntry, Option, Problem

DENSITIES = ("8gaussians", "checkerboard", "ring", "grid", "moons")


def _densities(text: str) -> tuple[str, ...]:
    from inference.errors import UnknownNameError

    names = tuple(n.strip() for n in str(text).split(",") if n.strip())
    unknown = [n for n in names if n not in DENSITIES]
    if unknown or not names:
        raise UnknownNameError(f"--densities: unknown {unknown or text!r}; choose among {', '.join(DENSITIES)}")
    return names


QUICK_2D = {"densities": ",".join(DENSITIES), "steps": 300, "n_train": 5000, "n_test": 5000, "hidden": 32}
QUICK_DIGITS = {"steps": 200, "hidden": 32, "glow_steps": 2}


def _density_problem(options: Mapping[str, Any], seed: int) -> Problem:
    options = {**options, **(QUICK_2D if options["quick"] else {})}
    names = _densities(options["densities"])
    return Problem(model=None, data={"densities": names, "options": dict(options)},
                   description=(f"flows fitted by maximum likelihood to {options['n_train']} draws of "
                                f"{', '.join(names)}; exact KL = test NLL - H(p) on fresh draws"))


def _density_method(kind: str):
    def run(problem, config):
        from deep.flows.fit import train_on_density
        from inference.result import Result

        import torch

        opts = problem.data["options"]
        scores, seconds, flows, sets = {}, 0.0, {}, {}
        for name in problem.data["densities"]:
            r = train_on_density(kind, name, seed=config.seed, steps=config.steps or opts["steps"],
                                 n_train=opts["n_train"], n_test=opts["n_test"], lr=opts["lr"],
                                 hidden=(opts["hidden"],) * 2, num_layers=opts["layers"], progress=config.progress)
            for key, value in r.diagnostics["scores"].items():
                if key != "seconds" and key != "KL se":
                    scores[f"{key} {name}"] = value
            seconds += r.seconds
            flows[name] = r.params
            # 1,000 draws per density for the run report's scatter over the true density
            sets[name] = r.params.sample((1000,), torch.Generator().manual_seed(config.seed + 3)).numpy()
        scores["train seconds"] = seconds
        return Result(method=kind, params=flows, seconds=seconds, diagnostics={"scores": scores, "sample_sets": sets})

    return run


def _digits_problem(options: Mapping[str, Any], seed: int) -> Problem:
    from genzoo.data import digits

    options = {**options, **(QUICK_DIGITS if options["quick"] else {})}
    data = digits()
    return Problem(model=None, data={"images": data["images"], "options": dict(options)},
                   description=(f"flows on {len(data['images'])} 8x8 digits (17 grey levels, 80/20 split), "
                                "dequantised (k + u) / 17, logit transform; bits/dim of held-out digits"))


def _digits_method(kind: str):
    def run(problem, config):
        from deep.flows.digits import fit_digits

        opts = problem.data["options"]
        extra = {"levels": 2, "glow_steps": opts["glow_steps"]} if kind == "glow" else {"num_layers": opts["layers"]}
        import dataclasses

        from deep.zoo_table_digits import to_pixels

        result = fit_digits(kind, problem.data["images"], seed=config.seed, steps=config.steps or opts["steps"],
                            hidden=opts["hidden"], lr=opts["lr"], progress=config.progress, **extra)
        draws = to_pixels(result.params.sample((36,), config.seed), "unit").reshape(36, 8, 8)
        return dataclasses.replace(result, diagnostics={**result.diagnostics, "sample_sets": {"digits": draws}})

    return run


def _funnel_problem(options: Mapping[str, Any], seed: int) -> Problem:
    return Problem(model=None, data={"dim": options["dim"], "options": dict(options)},
                   description=(f"Neal's funnel, v ~ N(0, 9), x_i ~ N(0, e^v), i = 1..{options['dim']}: "
                                "closed-form moments, log Z = 0 (so -ELBO = KL(q || p))"),
                   program_kwargs={"dim": options["dim"]})


def _funnel_exact(problem, config):
    import math

    import numpy as np

    from inference.result import Result

    d = problem.data["dim"]
    return Result(method="closed_form", log_evidence=0.0, log_evidence_kind="exact",
                  diagnostics={"posterior_mean": {"v": np.zeros(()), "x": np.zeros(d)},
                               "posterior_sd": {"v": np.full((), 3.0), "x": np.full(d, math.exp(2.25))}})


def _funnel_svi(guide: str):
    def run(problem, config):
        import dataclasses

        from deep.flows.guide import FlowGuide, funnel
        from inference.svi import fit

        opts, d = problem.data["options"], problem.data["dim"]
        program = lambda: funnel(d)  # noqa: E731 - the program with its size bound
        family = FlowGuide(program, "nsf", hidden=(opts["hidden"],) * 2, num_layers=opts["layers"], init_scale=1.0,
                           seed=config.seed) if guide == "flow" else guide
        result = fit(program, {}, key=config.seed, guide=family, steps=config.steps or opts["steps"],
                     learning_rate=opts["lr"], num_samples=opts["draws"], backend="pyro", progress=config.progress)
        scores = {"KL(q||p) = -ELBO": -result.log_evidence}  # the sd errors: compare's max |d sd|/sd column
        return dataclasses.replace(result, method=f"svi_{guide}", diagnostics={**result.diagnostics, "scores": scores})

    return run


def _doc():
    from deep import flows

    return flows


ENTRIES = (
    ModelEntry(
        name="flows",
        family="normalizing flow",
        description="RealNVP, MAF, neural spline flow on 2-D densities: exact KL(p || q)",
        dataset="simulated 2-D densities with closed-form log-densities (deep.densities)",
        make_problem=_density_problem,
        methods=tuple(Method(kind, f"{label} trained by maximum likelihood", _density_method(kind), kind="bound")
                      for kind, label in (("realnvp", "RealNVP (affine coupling)"),
                                          ("maf", "MAF (MADE conditioners)"),
                                          ("nsf", "neural spline flow (rational-quadratic coupling)"))),
        options={
            "densities": Option(",".join(DENSITIES[:4]), "comma-separated: " + ", ".join(DENSITIES)),
            "steps": Option(2000, "Adam steps per flow and density", int),
            "n_train": Option(20_000, "training draws", int),
            "n_test": Option(20_000, "fresh test draws for the NLL / KL", int),
            "hidden": Option(64, "hidden units of each conditioner layer (two layers)", int),
            "layers": Option(4, "flow layers", int),
            "lr": Option(2e-3, "Adam learning rate", float),
            "quick": Option(0, "1: small sizes (" + ", ".join(f"{k}={v}" for k, v in QUICK_2D.items()) + ")", int),
        },
        doc=_doc,
        quick={"quick": 1},
        order=95,
    ),
    ModelEntry(
        name="flows_digits",
        family="normalizing flow",
        description="Glow and RealNVP on dequantised 8x8 digits: bits per dimension",
        dataset="scikit-learn digits (17 grey levels), 80/20 split",
        make_problem=_digits_problem,
        methods=(Method("glow", "Glow (actnorm, LU 1x1 conv, affine coupling; 2 levels)", _digits_method("glow"),
                        kind="bound"),
                 Method("realnvp", "RealNVP on the 64 flattened pixels", _digits_method("realnvp"), kind="bound")),
        options={
            "steps": Option(2000, "Adam steps", int),
            "hidden": Option(64, "coupling width (Glow: CNN channels; RealNVP: units of two layers)", int),
            "glow_steps": Option(4, "Glow: steps of flow per level", int),
            "layers": Option(6, "RealNVP: coupling layers", int),
            "lr": Option(1e-3, "Adam learning rate", float),
            "quick": Option(0, "1: small sizes (" + ", ".join(f"{k}={v}" for k, v in QUICK_DIGITS.items()) + ")", int),
        },
        doc=_doc,
        quick={"quick": 1},
        order=96,
    ),
    ModelEntry(
        name="funnel",
        family="flow guide / teaching model",
        description="Neal's funnel: SVI with mean-field, full-rank and flow guides against closed-form moments",
        dataset="none (the posterior is the funnel itself)",
        make_problem=_funnel_problem,
        methods=(Method("closed_form", "the exact moments (and log Z = 0)", _funnel_exact, kind="posterior"),
                 Method("svi_normal", "SVI, mean-field Normal guide", _funnel_svi("normal"), kind="posterior"),
                 Method("svi_mvn", "SVI, full-rank Normal guide", _funnel_svi("mvn"), kind="posterior"),
                 Method("svi_flow", "SVI, neural spline flow guide (deep.flows.guide.FlowGuide)", _funnel_svi("flow"),
                        kind="posterior")),
        exact_method="closed_form",
        options={
            "dim": Option(9, "dimension of x", int),
            "steps": Option(3000, "SVI steps", int),
            "lr": Option(5e-3, "Adam learning rate", float),
            "hidden": Option(32, "flow guide: units of each conditioner layer", int),
            "layers": Option(4, "flow guide: coupling layers", int),
            "draws": Option(2000, "guide draws for the moments", int),
        },
        doc=_doc,
        quick={"steps": 500, "draws": 500},
        order=97,
    ),
)
