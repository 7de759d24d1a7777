"""Energy-based models (torch) on 2-D densities with a known answer: exact NLL and KL by quadrature
of log Z, and the kernel Stein discrepancy of their Langevin samples against the true score.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

from typing import Any, Mapping

from genzoo.registry import Method, ModelEntry, Option, Problem

_DESCRIPTIONS = {
    "dsm": "denoising score matching (noise --sigma)",
    "ssm": "sliced score matching (one Gaussian direction per point)",
    "cd": "contrastive divergence, --langevin_steps ULA steps from the data",
    "pcd": "persistent CD, ULA chains kept across updates (5% restarted from noise)",
}


def _problem(options: Mapping[str, Any], seed: int) -> Problem:
    from deep.densities import get

    density = get(options["density"])
    density.entropy()  # a density without a closed form (moons) fails here, naming itself
    data = density.sample(options["train_size"], seed)
    return Problem(model=density, data={"x": data, "options": dict(options)},
                   description=(f"{options['train_size']} samples of {density.name}; KL(p || p_E) by quadrature of log Z, "
                                f"KSD of {options['samples']} Langevin samples against the true score"))


def _method(name: str):
    def run(problem, config):
        from deep.ebm import kl_to_density, langevin_samples, train_ebm
        from inference.result import Result
        from inference.stein import ksd

        options, density = problem.data["options"], problem.model
        box = float(density.box) + 1.0
        result = train_ebm(problem.data["x"], name, seed=config.seed, steps=config.steps or options["steps"],
                           batch_size=options["batch_size"], lr=options["lr"], sigma=options["sigma"],
                           num_steps=options["langevin_steps"], step_size=options["step_size"], box=box,
                           progress=config.progress)
        energy = result.params
        stats = kl_to_density(energy, density, 5000, config.seed + 1, box=box, cells=300)
        samples = langevin_samples(energy, options["samples"], config.seed + 2, num_steps=options["sample_steps"],
                                   step_size=options["sample_step_size"], box=box)
        scores = {"kl": stats["kl"], "kl_se": stats["kl_se"], "nll": stats["nll"]}
        if density.modes is not None:  # a smooth log-density: its score is defined everywhere
            scores["ksd"] = ksd(samples, density.score).ksd2
        samples = samples.numpy()
        return Result(method=name, params=energy, samples={"x": samples}, history=result.history,
                      seconds=result.seconds, diagnostics={**result.diagnostics, "scores": scores,
                                                           "log_z": stats["log_z"],
                                                           "sample_sets": {density.name: samples}})

    return run


def _doc():
    from deep.ebm import EnergyNet

    return EnergyNet


ENTRY = ModelEntry(
    name="ebm",
    family="energy-based model",
    description="an energy network trained by DSM, sliced SM, CD and persistent CD with Langevin negatives",
    dataset="FFJORD's 8 Gaussians or checkerboard (closed-form log-densities), simulated",
    make_problem=_problem,
    methods=tuple(Method(name, text, _method(name), kind="bound") for name, text in _DESCRIPTIONS.items()),
    exact_method=None,
    options={
        "density": Option("8gaussians", "8gaussians, checkerboard, ring or grid"),
        "train_size": Option(10000, "training samples", int),
        "steps": Option(2000, "updates", int),
        "batch_size": Option(256, "minibatch size", int),
        "lr": Option(3e-3, "Adam's learning rate", float),
        "sigma": Option(0.1, "DSM noise level", float),
        "langevin_steps": Option(20, "Langevin steps per CD / PCD update", int),
        "step_size": Option(1e-2, "Langevin step size of CD / PCD", float),
        "samples": Option(1000, "Langevin samples drawn from the trained energy", int),
        "sample_steps": Option(300, "Langevin steps for those samples", int),
        "sample_step_size": Option(5e-3, "Langevin step size for those samples", float),
    },
    doc=_doc,
    quick={"steps": 300},
    order=96,
)
