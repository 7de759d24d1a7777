"""A VAE (or IWAE, or CVAE) on scikit-learn's 8 x 8 digits, binarised at half the grey range.

Trains by SVI, then estimates the test-set log-likelihood three ways (ELBO <= IWAE_K <= importance
sampling, in expectation) and draws samples, reconstructions (or inpaintings) and, for 2-D
latents, the latent space as PNG files.

    python examples/vae_digits.py --model iwae --epochs 50 --out runs/vae_digits

Takes about 2 minutes on a 2-core CPU at the defaults.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from deep.data import split
from deep.recipes import compare_bounds, fit, save_pictures
from genzoo.data import digits


def main(args) -> dict:
    data = digits(binarize=True)
    parts = split(data["images"], data["labels"], test_fraction=0.2, seed=0)
    test = parts["test"][: args.test_size]
    test_labels = parts["test_labels"][: args.test_size]
    result = fit(parts["train"][: args.train_size], parts["train_labels"][: args.train_size], model=args.model, seed=args.seed, epochs=args.epochs,
                 z_dim=args.z_dim, hidden=(args.hidden,), num_particles=args.particles, progress=args.progress)
    model = result.params
    print(f"{args.model}: {result.diagnostics['steps']} steps in {result.seconds:.1f} s, "
          f"last-epoch training loss {result.diagnostics['mean_loss_last_epoch']:.3f} nats/image")
    labels = test_labels if args.model == "cvae" else None
    rows = compare_bounds(model, test, seed=args.seed, labels=labels, k_iwae=args.k_iwae, k_is=args.k_is)
    for r in rows:
        print(f"  {r.method:>22}: {r.diagnostics['mean']:9.4f} nats/image  ({r.log_evidence_kind}, "
              f"{r.diagnostics['bits_per_dim']:.4f} bits/dim)")
    paths = save_pictures(model, test, pathlib.Path(args.out), seed=args.seed, labels=test_labels)
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return {"train": result, "estimates": rows, "pictures": paths}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("vae", "iwae", "cvae"), default="vae")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--z-dim", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--particles", type=int, default=8, help="K of the IWAE objective")
    p.add_argument("--k-iwae", type=int, default=50)
    p.add_argument("--k-is", type=int, default=5000)
    p.add_argument("--train-size", type=int, default=1437)
    p.add_argument("--test-size", type=int, default=360)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/vae_digits")
    p.add_argument("--progress", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
