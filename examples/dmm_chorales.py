"""A deep Markov model on Bach chorales (music21's corpus, as 88-key piano rolls, one step per beat).

Trains by SVI on the first chorales, reports the ELBO per time step on held-out ones, and
draws a new piano roll from the program.

    python examples/dmm_chorales.py --chorales 100 --epochs 20

Takes about 5 minutes on a 2-core CPU at the defaults (the first run also converts the chorales
to piano rolls and caches them).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from deep.dmm import DMM, pad_rolls
from deep.music import chorale_rolls
from deep.train import train
from inference.likelihood import elbo, seeded


def main(args) -> dict:
    rolls = chorale_rolls(limit=args.chorales)["rolls"]
    n_test = max(1, len(rolls) // 5)
    train_data = pad_rolls(rolls[n_test:], max_length=args.max_length)
    test_data = pad_rolls(rolls[:n_test], max_length=args.max_length)
    with seeded(args.seed):  # the initial weights: torch's layers draw them from its generator
        dmm = DMM(z_dim=args.z_dim, transition_dim=args.hidden, emission_dim=args.hidden, rnn_dim=args.hidden)
    result = train(dmm, train_data, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                   learning_rate=args.learning_rate, progress=args.progress)
    steps = int(test_data["lengths"].sum())
    test = elbo(dmm.model, dmm.guide, test_data, seed=args.seed, num_particles=args.particles)
    print(f"DMM on {len(rolls) - n_test} chorales ({int(train_data['lengths'].sum())} steps), "
          f"{result.diagnostics['steps']} SVI steps in {result.seconds:.1f} s")
    print(f"  test ELBO: {test.log_evidence / steps:.4f} nats per time step ({n_test} chorales, {steps} steps)")
    roll = dmm.sample(seed=args.seed, steps=args.sample_steps)[0]
    print(f"  a sampled roll of {args.sample_steps} beats has {roll.sum(1).mean():.2f} keys down per beat")
    return {"train": result, "test_elbo_per_step": test.log_evidence / steps, "sample": roll}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chorales", type=int, default=100)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--particles", type=int, default=1)
    p.add_argument("--sample-steps", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
