"""The deep zoo in one table: every deep family on the same 2-D densities and digits.

``genzoo compare deep`` trains VAE, IWAE, NADE, MADE, RealNVP, MAF, NSF, Glow, GAN, WGAN-GP, EBM,
DDPM, a score SDE and flow matching (one method per family) on the same draws of 8 Gaussians, the
checkerboard and PacGAN's ring, and on the 8 x 8 digits (binarised for the binary models and the
VAEs, 17 grey levels for every other family: dequantised, and in the flows' logit space for the
diffusion models and the EBM), and prints one long table (family x dataset): NLL with its kind,
KL = NLL - H(p), MMD, W2, modes captured (digit classes on digits), training seconds, seconds per
1,000 samples and network evaluations per sample. ``--quick`` runs small networks for a few hundred
steps. The work is :mod:`deep.zoo_table`'s (digits: :mod:`deep.zoo_table_digits`); this entry only
names the sizes.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

from typing import Any, Mapping

from genzoo.registry import Method, ModelEntry, Option, Problem

_FAMILIES = ("vae", "iwae", "nade", "made", "realnvp", "maf", "nsf", "glow", "gan", "wgan_gp", "ebm", "ddpm",
             "score_sde", "flow_matching")  # deep.zoo_table.FAMILIES, spelled here so `genzoo list` imports no torch
_DESCRIPTIONS = {
    "vae": "VAE (Gaussian decoder on 2-D, Bernoulli on binary digits); NLL = IWAE bound",
    "iwae": "IWAE (DReG gradients), same networks as the VAE; NLL = IWAE bound",
    "nade": "NADE on binarised digits (exact NLL)",
    "made": "MADE on binarised digits (exact NLL)",
    "realnvp": "RealNVP (affine coupling) on 2-D and on dequantised digits",
    "maf": "MAF (MADE conditioners) on 2-D (exact NLL) and on dequantised digits",
    "nsf": "neural spline flow (rational-quadratic coupling) on 2-D (exact NLL) and on dequantised digits",
    "glow": "Glow (actnorm, 1x1 conv, affine coupling) on dequantised digits",
    "gan": "GAN (non-saturating loss): samples only (MMD, W2, modes)",
    "wgan_gp": "WGAN-GP: samples only (MMD, W2, modes)",
    "ebm": "EBM by denoising score matching; NLL with log Z by quadrature (2-D) or AIS (digits); Langevin samples",
    "ddpm": "DDPM, ancestral sampling; NLL = variational bound",
    "score_sde": "score SDE (sub-VP), reverse-SDE sampling; NLL by the probability-flow ODE (Hutchinson on digits)",
    "flow_matching": "flow matching (minibatch-OT coupling), dopri5 sampling; NLL by the ODE (Hutchinson on digits)",
}
_DATASETS = ("8gaussians", "checkerboard", "ring", "digits")


def _datasets(text: str) -> tuple[str, ...]:
    from deep.zoo_table import DIGITS_BINARY, DIGITS_GREY
    from inference.errors import UnknownNameError

    names = tuple(n.strip() for n in str(text).split(",") if n.strip())
    unknown = [n for n in names if n not in _DATASETS]
    if unknown or not names:
        raise UnknownNameError(f"--datasets: unknown {unknown[0] if unknown else text!r}; choose among "
                               f"{', '.join(_DATASETS)}")
    out = tuple(n for n in names if n != "digits")
    return out + ((DIGITS_BINARY, DIGITS_GREY) if "digits" in names else ())


def _problem(options: Mapping[str, Any], seed: int) -> Problem:
    import dataclasses

    from deep.zoo_table import FULL, QUICK, make_data

    sizes = QUICK if options["quick"] else FULL
    if options["n_eval"]:
        sizes = dataclasses.replace(sizes, n_eval=options["n_eval"])
    datasets = _datasets(options["datasets"])
    head = "quick: small networks, " if options["quick"] else "full sizes: "
    return Problem(model=None, data={"data": make_data(sizes, datasets, seed), "sizes": sizes},
                   description=head + sizes.describe())


def _method(family: str):
    def run(problem, config):
        import dataclasses

        from deep.zoo_table import run_family

        sizes = problem.data["sizes"]
        if config.steps:
            sizes = dataclasses.replace(sizes, steps=config.steps, digits_steps=config.steps)
        return run_family(family, problem.data["data"], sizes, seed=config.seed, progress=config.progress)

    return run


def _doc():
    from deep import zoo_table

    return zoo_table


ENTRY = ModelEntry(
    name="deep",
    family="every deep family",
    description="all 14 deep families on the same 2-D densities and digits: NLL, KL, MMD, W2, modes, seconds, NFE",
    dataset="8 Gaussians, checkerboard, PacGAN's ring (simulated); scikit-learn digits (binarised / dequantised)",
    make_problem=_problem,
    methods=tuple(Method(f, _DESCRIPTIONS[f], _method(f), kind="bound") for f in _FAMILIES),
    options={
        "datasets": Option(",".join(_DATASETS), "comma-separated: " + ", ".join(_DATASETS)),
        "n_eval": Option(0, "samples and fresh true points for W2 / MMD, test points for the NLL (0: the sizes')",
                         int),
        "quick": Option(0, "1: small networks, short training (deep.zoo_table.QUICK); 0: deep.zoo_table.FULL", int),
    },
    doc=_doc,
    quick={"quick": 1},
    order=98,
)
