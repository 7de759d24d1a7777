"""Autoregressive densities on binarised digits: NADE, MADE (one mask, several), a mixture of
Bernoullis by EM, and the VAE's bounds, all as test NLL in nats and bits per dimension.

Model code is imported inside the functions, so ``genzoo list`` stays fast. Each method trains its
model on the first call and keeps it on the problem, so a second (timed) call only evaluates: the
table's "first call" column is training plus evaluation, "train s" the training alone.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Mapping

from genzoo.registry import Method, ModelEntry, Option, Problem


def _problem(options: Mapping[str, Any], seed: int) -> Problem:
    from deep.autoregressive import crop
    from deep.data import split
    from genzoo.data import digits

    data = digits(binarize=True)  # pixel > 8 of 0..16
    parts = split(data["images"], data["labels"], seed=seed)
    pixels = options["pixels"]
    x_train, x_test = crop(parts["train"], pixels), crop(parts["test"], pixels)
    where = "8 x 8" if pixels == 64 else "central 3 x 4 crops of"
    return Problem(
        model=None,
        data={"train": x_train, "test": x_test, "options": dict(options), "seed": seed, "trained": {},
              "shape": (8, 8) if pixels == 64 else (3, 4)},
        description=(f"test NLL of {len(x_test)} binarised {where} digits (models trained on {len(x_train)}); "
                     f"nats per image, exact or bound" + ("; log sum p by enumeration of all 4,096 vectors"
                                                          if pixels <= 12 else "")),
    )


GRID = 36  # draws shown as an image grid in the report


def _trained(problem, name, build):
    """Train once per problem (the first call), return (trained object, training seconds)."""
    cache = problem.data["trained"]
    if name not in cache:
        start = time.perf_counter()
        obj = build()
        cache[name] = (obj, time.perf_counter() - start)
    return cache[name]


def _density(name):
    def run(problem, config):
        from deep.autoregressive import fit_density, nll_result
        from deep.made import MADE
        from deep.nade import NADE

        d, o = problem.data, problem.data["options"]
        dim = d["train"].shape[1]
        seed = config.seed

        def build():
            if name == "nade":
                model = NADE(dim, o["hidden"], seed=seed)
            elif name == "nade_order_agnostic":
                model = NADE(dim, o["hidden"], order_agnostic=True, seed=seed)
            elif name == "made":
                model = MADE(dim, (o["hidden"],), seed=seed)
            else:
                model = MADE(dim, (o["hidden"],), num_masks=o["masks"], seed=seed)
            return fit_density(model, d["train"], seed=seed, steps=config.steps or o["steps"], batch_size=100,
                               lr=o["lr"], progress=config.progress and sys.stderr.isatty()).params

        model, train_seconds = _trained(problem, name, build)
        result = nll_result(name, model.log_prob, d["test"], exact=True, train_seconds=train_seconds)
        draws = model.sample(GRID, generator=seed).detach().numpy().reshape(GRID, *d["shape"])
        return dataclasses.replace(result, diagnostics={**result.diagnostics, "sample_sets": {"digits": draws}})

    return run


def _mixture(problem, config):
    from deep.autoregressive import bernoulli_mixture_em, nll_result

    d, o = problem.data, problem.data["options"]
    fitted, train_seconds = _trained(problem, "mixture_em", lambda: bernoulli_mixture_em(
        d["train"], o["components"], seed=config.seed, max_iter=200).params)
    return nll_result("mixture_em", fitted.log_prob, d["test"], exact=True, train_seconds=train_seconds)


def _vae(which):
    def run(problem, config):
        from deep.autoregressive import nll_result
        from deep.recipes import compare_bounds, fit

        d, o = problem.data, problem.data["options"]
        shape = d["shape"]
        vae, train_seconds = _trained(problem, "vae", lambda: fit(
            d["train"].reshape(-1, *shape), model="vae", seed=config.seed, epochs=o["vae_epochs"]).params)
        (bound,) = compare_bounds(vae, d["test"].reshape(-1, *shape), seed=config.seed, which=(which,))
        exact = False  # ELBO and IWAE are lower bounds; the importance-sampling figure an estimate
        return nll_result(f"vae_{which}", None, d["test"], exact=exact, log_probs=bound.diagnostics["per_datum"],
                          train_seconds=train_seconds)

    return run


def _sample(problem, seed, n):
    """Images drawn ancestrally from the problem's NADE (natural order; trained on first use)."""
    from deep.autoregressive import fit_density
    from deep.nade import NADE

    d, o = problem.data, problem.data["options"]
    nade, _ = _trained(problem, "nade", lambda: fit_density(
        NADE(d["train"].shape[1], o["hidden"], seed=seed), d["train"], seed=seed, steps=o["steps"], batch_size=100,
        lr=o["lr"]).params)
    return nade.sample(n, generator=seed).numpy().reshape(n, *d["shape"])


def _doc():
    from deep.nade import NADE

    return NADE


ENTRY = ModelEntry(
    name="nade",
    family="autoregressive (exact likelihood)",
    description="NADE and MADE on binarised digits, beside a Bernoulli mixture (EM) and VAE bounds",
    dataset="scikit-learn digits, binarised at pixel > 8, 80/20 split; --pixels 12 for the central 3 x 4 crop",
    make_problem=_problem,
    methods=(
        Method("nade", "NADE, natural pixel order (exact)", _density("nade"), kind="bound"),
        Method("nade_order_agnostic", "NADE trained on random orderings, scored in the natural one (exact)",
               _density("nade_order_agnostic"), kind="bound"),
        Method("made", "MADE, one mask (exact)", _density("made"), kind="bound"),
        Method("made_masks", "MADE, --masks orderings and connectivities, their mixture at test (exact)",
               _density("made_masks"), kind="bound"),
        Method("mixture_em", "mixture of --components Bernoulli products by EM (exact)", _mixture, kind="bound"),
        Method("vae_elbo", "VAE (z_dim 2): ELBO, one particle (lower bound)", _vae("elbo"), kind="bound"),
        Method("vae_iwae", "VAE: IWAE bound, 50 particles (lower bound)", _vae("iwae"), kind="bound"),
    ),
    exact_method=None,
    options={
        "pixels": Option(64, "64 (8 x 8 images) or 12 (central 3 x 4 crop, enumerable)", int),
        "hidden": Option(200, "hidden units of NADE and MADE", int),
        "steps": Option(2000, "training steps (batch 100) of NADE and MADE", int),
        "lr": Option(3e-3, "Adam learning rate of NADE and MADE", float),
        "masks": Option(8, "MADE's number of masks (made_masks)", int),
        "components": Option(20, "mixture components", int),
        "vae_epochs": Option(20, "VAE training epochs", int),
    },
    sample=_sample,
    doc=_doc,
    quick={"steps": 300, "vae_epochs": 3, "hidden": 100},
    order=92,
)
