"""GANs (torch, the generator a Pyro program) on PacGAN's ring and grid: modes captured, sample
quality and reverse KL for every loss, unpacked and packed; with ``--density digits`` a conditional
GAN on the 8 x 8 digits, scored by a scikit-learn classifier trained on real digits.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

from typing import Any, Mapping

from genzoo.registry import Method, ModelEntry, Option, Problem

_LOSSES = ("gan", "kl", "reverse_kl", "js", "pearson", "hellinger", "wgan_gp")


def _problem(options: Mapping[str, Any], seed: int) -> Problem:
    from deep.densities import get

    if options["density"] == "digits":
        from deep.gan_steps import digit_classifier, digits_data

        data = digits_data(seed)
        classifier = digit_classifier(data["train"], data["train_labels"])
        return Problem(model="digits", data={**data, "classifier": classifier, "options": dict(options)},
                       description=(f"conditional GAN on {len(data['train'])} 8x8 digits; 100 samples per class "
                                    "scored by a logistic regression trained on real digits"))
    density = get(options["density"])
    if density.modes is None:
        from inference.errors import UnknownNameError

        raise UnknownNameError(f"--density must be a Gaussian mixture (ring, grid, 8gaussians), got {density.name!r}")
    data = density.sample(options["train_size"], seed)
    return Problem(model=density, data={"x": data, "options": dict(options)},
                   description=(f"{options['train_size']} samples of PacGAN's {density.name}; {options['eval']} "
                                f"generated samples scored against its {len(density.modes)} modes"))


def _method(loss: str, packed: bool):
    def run(problem, config):
        from deep.gan_steps import mode_scores, train_gan
        from inference.result import Result

        options = problem.data["options"]
        if problem.model == "digits":
            return _digits(problem, config, loss, options["pack"] if packed else 1)
        result = train_gan(problem.data["x"], seed=config.seed, steps=config.steps or options["steps"], loss=loss,
                           pack=options["pack"] if packed else 1, batch_size=options["batch_size"],
                           lr=options["lr"], r1=0.0 if loss == "wgan_gp" else options["r1"],
                           progress=config.progress)
        scores = mode_scores(result.params, problem.model, config.seed + 1, options["eval"])
        samples = result.params.sample(config.seed + 2, options["eval"])
        return Result(method=f"{loss}{'_pack' if packed else ''}", params=result.params, samples={"x": samples},
                      history=result.history, seconds=result.seconds,
                      diagnostics={**result.diagnostics, "scores": scores,
                                   "sample_sets": {problem.model.name: samples}})  # drawn by the run report

    return run


def _digits(problem, config, loss, pack):
    import numpy as np

    from deep.gan_steps import conditional_digit_scores, train_conditional_digits
    from inference.result import Result

    options = problem.data["options"]
    result = train_conditional_digits(problem.data, seed=config.seed, steps=config.steps or options["steps"],
                                      loss=loss, pack=pack, progress=config.progress)
    scores = conditional_digit_scores(result.params, problem.data["classifier"], config.seed + 1)
    labels = np.arange(36) % 10  # digits 0-9 in turn, for the run report's image grid
    images = result.params.sample(config.seed + 2, len(labels), y=labels).reshape(-1, 8, 8)
    images = (images + 1) / 2  # pixels in [-1, 1] (digits_data) -> [0, 1]
    return Result(method=f"{loss}{'_pack' if pack > 1 else ''}", params=result.params, history=result.history,
                  seconds=result.seconds, diagnostics={**result.diagnostics, "scores": scores,
                                                       "sample_sets": {"digits": images}})


def _sample(problem, seed, n):
    from deep.gan_steps import train_gan

    options = problem.data["options"]
    if problem.model == "digits":
        from inference.errors import UnknownNameError

        raise UnknownNameError("genzoo sample gan draws 2-D points; for digits use genzoo compare gan --density digits")
    gan = train_gan(problem.data["x"], seed=seed, steps=options["steps"], loss="gan", pack=options["pack"],
                    batch_size=options["batch_size"], lr=options["lr"], r1=options["r1"]).params
    x = gan.sample(seed, n)
    return {"x1": x[:, 0], "x2": x[:, 1]}


def _doc():
    from deep.gan import GAN

    return GAN


_METHODS = tuple(
    Method(f"{loss}{'_pack' if packed else ''}",
           f"{loss} loss{', critic reads --pack samples (PacGAN)' if packed else ''}; modes / quality / reverse KL",
           _method(loss, packed), kind="bound")
    for loss in _LOSSES for packed in (False, True)
)

ENTRY = ModelEntry(
    name="gan",
    family="generative adversarial network",
    description="GAN, f-GAN (KL, reverse KL, JS, Pearson, Hellinger), WGAN-GP, each unpacked and packed (PacGAN)",
    dataset="PacGAN's ring (8 modes, sd 0.01) or grid (25 modes, sd 0.05), simulated",
    make_problem=_problem,
    methods=_METHODS,
    exact_method=None,
    options={
        "density": Option("ring", "ring or grid (PacGAN), 8gaussians, or digits (a conditional GAN)"),
        "train_size": Option(20000, "training samples", int),
        "steps": Option(3000, "generator updates", int),
        "pack": Option(2, "samples per critic input for the *_pack methods", int),
        "batch_size": Option(256, "minibatch size", int),
        "lr": Option(1e-3, "Adam's learning rate", float),
        "r1": Option(0.0, "R1 penalty weight on the critic (Mescheder et al. 2018), every loss but WGAN-GP; "
                          "1 keeps the f-GANs from diverging", float),
        "eval": Option(2500, "generated samples scored (PacGAN: 2,500)", int),
    },
    sample=_sample,
    doc=_doc,
    quick={"steps": 150},
    order=95,
)
