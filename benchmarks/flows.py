"""Flows against zuko (RealNVP, MAF, NSF) and normflows (Glow): time per training step, KL, construction.

Same architecture, data, optimiser (Adam, same learning rate), batch and thread count, in the same
process:

- RealNVP: 4 affine couplings, alternating masks, conditioners of two hidden ReLU layers
  (ours ``RealNVP`` / zuko ``RealNVP``; both bound the log-scale by ``u / (1 + |u| / 6.9)``);
- MAF: 4 MADE layers, orderings alternating forward / reversed (ours ``MAF`` / zuko ``MAF``);
- NSF: 4 rational-quadratic spline *couplings*, 8 bins on [-5, 5] (ours ``NSF`` / zuko's
  ``NICE(univariate=MonotonicRQSTransform)``, zuko's own ``NSF`` being autoregressive);
- Glow on 1 x 8 x 8 images: 2 levels of K steps (actnorm, LU 1 x 1 convolution, affine coupling with
  a 3 x 3 / 1 x 1 / 3 x 3 CNN), squeeze and split (ours ``Glow`` / normflows ``MultiscaleFlow`` of
  ``GlowBlock``s, the layout of normflows' own Glow test; fixed standard Normal bases); data: the
  digits dequantised and logit-transformed, the same tensor for both.

Reported: the median time per update (forward, backward, Adam step: the same bare step for both
libraries, blocks of steps alternating ours / peer) and ours / peer; our update through the shared
loop ``inference.train.fit`` (its minibatching, checks and history) over the bare step; KL(p || q)
= NLL - H(p) on fresh draws after the same number of steps on the same minibatches (2-D), or bits per
dimension of held-out digits (Glow), averaged over independent seeds with the paired difference and
its standard error, for our default identity start and for ``init="random"`` (torch's default
initialisation of every layer, zuko's kind of start), and for RealNVP and MAF from zuko's own
initial weights (``same_start``); construction time of each flow at dimension 1,000 (medians).

Usage: ``python benchmarks/flows.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch


def peer_2d(kind: str, dim: int, hidden: int, layers: int):
    import zuko
    from zuko.transforms import MonotonicRQSTransform

    if kind == "realnvp":
        return zuko.flows.RealNVP(dim, transforms=layers, hidden_features=(hidden, hidden))
    if kind == "maf":
        return zuko.flows.MAF(dim, transforms=layers, hidden_features=(hidden, hidden))
    return zuko.flows.NICE(dim, transforms=layers, univariate=MonotonicRQSTransform, shapes=[(8,), (8,), (7,)],
                           hidden_features=(hidden, hidden))


def ours_2d(kind: str, dim: int, hidden: int, layers: int, seed: int, init: str = "identity"):
    from deep.flows.fit import make_flow

    return make_flow(kind, dim, hidden=(hidden, hidden), num_layers=layers, bins=8, bound=5.0, init=init, seed=seed)


def peer_glow(hidden: int, steps: int):
    import normflows as nf

    shape, levels = (1, 8, 8), 2
    bases, merges, flows = [], [], []
    for i in range(levels):  # normflows' layout (its core_test): level 0 is the coarsest
        blocks = [nf.flows.GlowBlock(shape[0] * 2 ** (levels + 1 - i), hidden, split_mode="channel", scale=True)
                  for _ in range(steps)]
        flows.append(blocks + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (shape[0] * 2 ** (levels - i), shape[1] // 2 ** (levels - i), shape[2] // 2 ** (levels - i))
        else:
            latent = (shape[0] * 2 ** (levels + 1), shape[1] // 2 ** levels, shape[2] // 2 ** levels)
        bases.append(nf.distributions.DiagGaussian(latent, trainable=False))
    return nf.MultiscaleFlow(bases, flows, merges, class_cond=False)


def nll_ours(flow, x):
    return -flow.log_prob(x).mean()


def nll_zuko(flow, x):
    return -flow().log_prob(x).mean()


def nll_normflows(flow, x):
    return -flow.log_prob(x, None).mean()


def time_steps(pairs, batches, block: int, repeats: int) -> dict[str, float]:
    """Median seconds per update of each (name, module, loss) over ``repeats`` alternating blocks."""
    times = {name: [] for name, _, _ in pairs}
    optims = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m, _ in pairs}
    for r in range(repeats + 1):  # block 0 warms up
        for name, module, loss_fn in pairs:
            opt = optims[name]
            start = time.perf_counter()
            for i in range(block):
                loss = loss_fn(module, batches[(r * block + i) % len(batches)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if r:
                times[name].append((time.perf_counter() - start) / block)
    return {name: statistics.median(t) for name, t in times.items()}


def train_same(module, loss_fn, batches, steps: int, lr: float):
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    for i in range(steps):
        loss = loss_fn(module, batches[i % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return module


def kl_of(nll_fn, module, density, n: int, seed: int) -> float:
    x = density.sample(n, seed)
    with torch.no_grad():
        return float(torch.cat([nll_fn(module, c).reshape(1) * len(c) for c in x.split(4096)]).sum() / n) \
            - density.entropy()


class FlippedDensity:
    """A 2-D density with its coordinates swapped (``sample`` and ``entropy``; entropy is unchanged)."""

    def __init__(self, density):
        self.density = density

    def sample(self, n, seed):
        return self.density.sample(n, seed).flip(-1)

    def entropy(self):
        return self.density.entropy()


def same_start(kind: str, seed: int, hidden: int, layers: int):
    """Ours and zuko's flow from the *same* initial weights (2-D RealNVP and MAF): zuko's weights,
    drawn from torch's generator seeded ``seed``, copied into ours layer by layer from the data side.

    Both stacks alternate their masks (orderings), but ours starts the alternation at the base side
    and zuko's at the data side, so with an even number of layers ours on the swapped coordinates
    ``x[:, ::-1]`` is zuko's on ``x`` (MAF's MADE, which reads and writes every coordinate, gets its
    first layer's columns and last layer's per-coordinate rows swapped to match): the copy is
    checked on that (log-densities equal to float
    rounding), and ours then trains and is scored on swapped coordinates. The 8 Gaussians are symmetric
    under the swap, so the KL is the same quantity. What remains between the two runs is float rounding.
    """
    if layers % 2:
        raise ValueError("same_start pairs the stacks for an even number of layers")
    torch.manual_seed(seed)
    peer = peer_2d(kind, 2, hidden, layers)
    ours = ours_2d(kind, 2, hidden, layers, seed=seed)
    theirs = [t.hyper for t in peer.transform.transforms]  # data side first
    with torch.no_grad():
        for mine, other in zip(list(ours.transform.layers)[::-1], theirs):
            params = list(zip(mine.net.parameters(), other.parameters(), strict=True))
            for i, (a, b) in enumerate(params):
                if kind == "maf" and i == 0:  # MADE reads all coordinates: ours reads them swapped
                    b = b.flip(-1)
                if kind == "maf" and i >= len(params) - 2:  # and writes (shift, log-scale) per coordinate, swapped
                    b = b.unflatten(0, (2, -1)).flip(0).flatten(0, 1)
                a.copy_(b)
        x = torch.randn(64, 2, generator=torch.Generator().manual_seed(seed))
        gap = float((ours.log_prob(x.flip(-1)) - peer().log_prob(x)).abs().max())
    if gap > 1e-4:  # float32 rounding through 4 layers is ~1e-6
        raise AssertionError(f"{kind}: the copied weights give log-densities {gap:.2e} apart")
    return ours, peer


def paired(pairs) -> str:
    """The mean paired difference ours - peer over seeds, with its standard error (the seeds are
    independent trainings, so the error is the sample sd of the differences over sqrt(n))."""
    d = [a - b for a, b in pairs]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"ours - peer {statistics.mean(d):+.3f} +- {se:.3f} ({len(d)} seeds)"


def print_row(kind, peer, t_ours, t_peer, loop, q_ours, q_peer, metric):
    print(f"{kind:8} {peer:9} {1e3 * t_ours:8.2f} {1e3 * t_peer:8.2f} {t_ours / t_peer:9.2f} "
          f"{loop / t_ours:8.2f} {q_ours:8.3f} {q_peer:8.3f}  {metric}", flush=True)


def main(args):
    torch.set_num_threads(1)
    from deep.densities import get
    from inference.train import LossStep, fit

    density = get("8gaussians")
    n_batches = 64
    data = density.sample(args.batch * n_batches, 0)  # (N, 2)
    batches = list(data.split(args.batch))
    print(f"time per update (median of {args.repeats} blocks of {args.block}), one thread; "
          f"quality after {args.train_steps} steps on the same minibatches")
    print(f"{'flow':8} {'peer':9} {'ours ms':>8} {'peer ms':>8} {'ours/peer':>9} {'fit/bare':>8} "
          f"{'ours':>8} {'peer':>8}  metric", flush=True)
    for kind in args.flows:
        torch.manual_seed(0)  # zuko initialises from torch's global generator
        ours, peer = ours_2d(kind, 2, args.hidden, args.layers, seed=0), peer_2d(kind, 2, args.hidden, args.layers)
        t = time_steps([("ours", ours, nll_ours), ("peer", peer, nll_zuko)], batches, args.block, args.repeats)
        # our update through the shared loop, same batch size
        fresh = ours_2d(kind, 2, args.hidden, args.layers, seed=0)
        fit(LossStep(fresh, lambda m, b, g: m.loss(b), lr=1e-3), {"x": data}, seed=0, steps=5, batch_size=args.batch)
        start = time.perf_counter()
        fit(LossStep(fresh, lambda m, b, g: m.loss(b), lr=1e-3), {"x": data}, seed=0, steps=args.block * 2,
            batch_size=args.batch)
        loop = (time.perf_counter() - start) / (args.block * 2)
        # KL after the same steps on the same minibatches, fresh modules, one pair per seed
        # (our default identity start, and init="random", zuko's kind of start, against the same zuko run)
        kls, kls_random = [], []
        for seed in range(1, args.seeds + 1):
            torch.manual_seed(seed)
            ours_k = train_same(ours_2d(kind, 2, args.hidden, args.layers, seed=seed), nll_ours, batches,
                                args.train_steps, 1e-3)
            peer_k = train_same(peer_2d(kind, 2, args.hidden, args.layers), nll_zuko, batches, args.train_steps, 1e-3)
            kls.append((kl_of(nll_ours, ours_k, density, args.n_test, 2), kl_of(nll_zuko, peer_k, density, args.n_test, 2)))
            if args.random_start:
                ours_r = train_same(ours_2d(kind, 2, args.hidden, args.layers, seed=seed, init="random"), nll_ours,
                                    batches, args.train_steps, 1e-3)
                kls_random.append((kl_of(nll_ours, ours_r, density, args.n_test, 2), kls[-1][1]))
        kl_ours, kl_peer = (statistics.mean(k) for k in zip(*kls))
        print_row(kind, "zuko", t["ours"], t["peer"], loop, kl_ours, kl_peer, f"KL, {paired(kls)}")
        if kls_random:
            kl_ours, kl_peer = (statistics.mean(k) for k in zip(*kls_random))
            label = 'ours init="random":'
            print(f"{'':8} {'':9} {label:>45} {kl_ours:8.3f} {kl_peer:8.3f}  KL, {paired(kls_random)}", flush=True)
        if kind in ("realnvp", "maf") and args.same_start:
            # the same seeds again, both libraries from zuko's initial weights (same_start)
            kls = []
            for seed in range(1, args.seeds + 1):
                ours_k, peer_k = same_start(kind, seed, args.hidden, args.layers)
                train_same(ours_k, nll_ours, [b.flip(-1) for b in batches], args.train_steps, 1e-3)
                train_same(peer_k, nll_zuko, batches, args.train_steps, 1e-3)
                kls.append((kl_of(nll_ours, ours_k, FlippedDensity(density), args.n_test, 2),
                            kl_of(nll_zuko, peer_k, density, args.n_test, 2)))
            kl_ours, kl_peer = (statistics.mean(k) for k in zip(*kls))
            label = "same initial weights (zuko's):"
            print(f"{'':8} {'':9} {label:>45} {kl_ours:8.3f} {kl_peer:8.3f}  "
                  f"KL, {paired(kls)}", flush=True)

    if not args.glow:
        return construction(args)
    # Glow on dequantised, logit-transformed digits
    from deep.flows import Glow
    from deep.flows.digits import LogitTransform, dequantize_levels
    from genzoo.data import digits

    levels = np.round(digits()["images"] * 16)
    k = torch.as_tensor(levels, dtype=torch.long)
    perm = torch.randperm(len(k), generator=torch.Generator().manual_seed(0))
    train_k, test_k = k[perm[:1400]], k[perm[1400:]]
    logit = LogitTransform(0.05)
    y_train = logit.inverse_and_log_det(dequantize_levels(train_k, 17, 0).reshape(-1, 64))[0]  # (N, 64)
    v_test = dequantize_levels(test_k, 17, 1).reshape(-1, 64)
    y_test, ladj_test = logit.inverse_and_log_det(v_test)
    img_batches = list(y_train.reshape(-1, 1, 8, 8).split(args.image_batch))
    torch.manual_seed(0)
    ours_g = Glow((1, 8, 8), args.glow_hidden, 2, args.glow_steps, seed=0)
    peer_g = peer_glow(args.glow_hidden, args.glow_steps)
    with torch.no_grad():  # both actnorms initialise on the same first batch
        ours_g.log_prob(img_batches[0])
        peer_g.log_prob(img_batches[0], None)
    t = time_steps([("ours", ours_g, nll_ours), ("peer", peer_g, nll_normflows)], img_batches, args.block,
                   args.repeats)
    shift = 64 * math.log(17)
    bpd = lambda lp: float((-(lp + ladj_test).mean() + shift) / (64 * math.log(2)))  # noqa: E731
    bpds = []
    for seed in range(1, args.glow_seeds + 1):
        torch.manual_seed(seed)
        ours_g = Glow((1, 8, 8), args.glow_hidden, 2, args.glow_steps, seed=seed)
        peer_g = peer_glow(args.glow_hidden, args.glow_steps)
        train_same(ours_g, nll_ours, img_batches, args.train_steps, 1e-3)
        train_same(peer_g, nll_normflows, img_batches, args.train_steps, 1e-3)
        with torch.no_grad():
            bpds.append((bpd(ours_g.log_prob(y_test)), bpd(peer_g.log_prob(y_test.reshape(-1, 1, 8, 8), None))))
    bpd_ours, bpd_peer = (statistics.mean(b) for b in zip(*bpds))
    print_row("glow", "normflows", t["ours"], t["peer"], float("nan"), bpd_ours, bpd_peer,
              f"bits/dim, {paired(bpds)}")

    construction(args)


def construction(args):
    """Construction time of each flow at dimension ``args.big_dim``, ours and zuko's (medians)."""
    print(f"\nconstruction at dim {args.big_dim} (median of {args.repeats_build}, seconds):")
    for kind in ("realnvp", "maf", "nsf"):
        ours_t, peer_t = [], []
        for r in range(args.repeats_build):
            start = time.perf_counter()
            ours_2d(kind, args.big_dim, args.hidden, args.layers, seed=r)
            ours_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            peer_2d(kind, args.big_dim, args.hidden, args.layers)
            peer_t.append(time.perf_counter() - start)
        o, p = statistics.median(ours_t), statistics.median(peer_t)
        print(f"{kind:8} ours {o:8.4f}  zuko {p:8.4f}  ours/zuko {o / p:6.2f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized: fewer blocks and steps")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--glow-hidden", type=int, default=32)
    parser.add_argument("--glow-steps", type=int, default=4)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=5, help="independent trainings per 2-D flow for KL")
    parser.add_argument("--glow-seeds", type=int, default=3)
    parser.add_argument("--big-dim", type=int, default=1000)
    parser.add_argument("--repeats-build", type=int, default=3)
    parser.add_argument("--flows", nargs="*", default=["realnvp", "maf", "nsf"], choices=["realnvp", "maf", "nsf"])
    parser.add_argument("--no-glow", dest="glow", action="store_false")
    parser.add_argument("--no-random-start", dest="random_start", action="store_false",
                        help='skip the KL runs of our flows with init="random"')
    parser.add_argument("--no-same-start", dest="same_start", action="store_false",
                        help="skip the KL runs of RealNVP and MAF from zuko's initial weights")
    args = parser.parse_args()
    for name in ("seeds", "glow_seeds", "train_steps", "block", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.quick:
        args.repeats, args.train_steps, args.n_test, args.block, args.glow_seeds = 3, 300, 5000, 10, 1
    main(args)
