"""The VAE family (Pyro) on binarised digits: bounds on log p(x) of held-out images.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem


def _vae_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """Binarised digits split 80/20; the chosen model is trained on the training part here, and the
    methods evaluate it on the held-out part."""
    from deep.data import split
    from deep.recipes import fit
    from genzoo.data import digits

    data = digits(binarize=True)
    parts = split(data["images"], data["labels"], seed=seed)
    kind = options["model"]
    labels = parts["train_labels"] if kind == "cvae" else None
    fitted = fit(parts["train"], labels, model=kind, seed=seed, epochs=options["epochs"], z_dim=options["z_dim"],
                 progress=sys.stderr.isatty())
    return Problem(
        model=fitted.params,
        data={"test": parts["test"], "test_labels": parts["test_labels"] if kind == "cvae" else None,
              "fit": fitted, "k_is": options["k_is"]},
        description=(f"{kind} (z_dim={options['z_dim']}) trained {options['epochs']} epochs on "
                     f"{len(parts['train'])} binarised digits; log p(x) of {len(parts['test'])} held-out digits"),
        program_kwargs={"n": 1},
    )


def _vae_bound(name):
    def run(problem, config):
        from deep.recipes import compare_bounds

        d = problem.data
        from deep.recipes import sample_images

        (result,) = compare_bounds(problem.model, d["test"], seed=config.seed, labels=d["test_labels"],
                                   k_is=config.steps or d["k_is"], which=(name,))
        draws = np.asarray(sample_images(problem.model, config.seed, 36))  # (36, H, W) pixel probabilities
        return dataclasses.replace(result, diagnostics={**result.diagnostics, "sample_sets": {"digits": draws}})

    return run


def _vae_train(problem, config):
    return problem.data["fit"]


def _vae_sample(problem, seed, n):
    from deep.recipes import sample_images

    return sample_images(problem.model, seed, n)


def _vae_graph(options):
    """The untrained model's Pyro program traced by Pyro's inspection (no digits, no training)."""
    import torch
    from pyro.infer.inspect import generate_graph_specification, get_model_relations

    from deep.recipes import make_model

    net = make_model(options["model"], image_shape=(8, 8), z_dim=options["z_dim"], hidden=(64,), num_particles=8,
                     num_classes=10)
    kwargs = {"n": 1, "labels": torch.zeros(1, dtype=torch.long)} if options["model"] == "cvae" else {"n": 1}
    return generate_graph_specification(get_model_relations(net.model, model_kwargs=kwargs))


def _vae_doc():
    from deep.vae import VAE

    return VAE


ENTRY = ModelEntry(
    name="vae",
    family="variational autoencoder",
    description="VAE / IWAE / conditional VAE (Pyro) on binarised 8x8 digits",
    dataset="scikit-learn digits, binarised at half range, 80/20 split",
    make_problem=_vae_problem,
    methods=(
        Method("elbo", "evidence lower bound, one particle", _vae_bound("elbo"), kind="bound"),
        Method("iwae", "importance-weighted bound, 50 particles", _vae_bound("iwae"), kind="bound"),
        Method("importance_sampling", "importance-sampled log p(x) (--steps particles, default 1000)",
               _vae_bound("importance_sampling"), kind="bound"),
        Method("train", "SVI training of the chosen model (its loss history)", _vae_train, kind="fit"),
    ),
    exact_method=None,
    options={
        "model": Option("vae", "vae, iwae (DReG gradients) or cvae"),
        "epochs": Option(20, "training epochs", int),
        "z_dim": Option(2, "latent dimension", int),
        "k_is": Option(1000, "importance samples for the log-likelihood estimate", int),
    },
    sample=_vae_sample,
    graph=_vae_graph,
    doc=_vae_doc,
    quick={"epochs": 3, "steps": 200},
    order=90,
)
