"""GAN and EBM training: time per step of our loop against plain PyTorch and against torchebm.

1. GAN: :class:`deep.gan_steps.GANStep` through :func:`inference.train.fit` against a plain PyTorch
   loop written out by hand with the same networks (the same initial weights), the same loss
   functions, optimisers and batch size, on PacGAN's ring. Goal: at most 1.1x.
2. EBM: denoising score matching of the same :class:`deep.ebm.EnergyNet` through ``fit`` against
   torchebm's ``DenoisingScoreMatching`` loss in a plain loop (the two losses are equal on the same
   draws: printed), and CD-20 with Langevin negatives started at the minibatch against torchebm's
   ``ContrastiveDivergence`` with its ``LangevinDynamics`` sampler (same step size and loss).
   Goal: at most 1.0x.
3. The PacGAN protocol (``--protocol``): every loss unpacked and packed on the ring and the grid over
   ``--seeds`` seeds, modes captured / high-quality fraction / reverse KL (means over the seeds).

Each timing runs ours and the peer alternately in the same process, one thread, ``--repeats``
times, and reports medians of the time per step and their ratio. Our loop's Adam is torch's fused
kernel (:func:`inference.train.adam`), so the peer runs twice: as its tutorials write it
(``torch.optim.Adam``), and handed the same fused kernel, which leaves the loops' difference alone.

    python benchmarks/gan_ebm.py --quick
    python benchmarks/gan_ebm.py --protocol --steps 3000 --seeds 5
    python benchmarks/gan_ebm.py --skip-timings --protocol --steps 5000 --seeds 5 --r1 1 --jobs 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from deep.densities import get
from deep.ebm import EnergyNet, dsm_loss
from deep.gan import GAN
from deep.gan_losses import make_loss
from deep.gan_steps import GANStep, mode_scores, train_gan
from inference.train import LossStep, adam, fit, isolated


def _gan(seed, pack):
    with isolated(seed):
        return GAN(2, 2, (128, 128), pack=pack)


def ours_gan(data, loss, pack, steps, batch_size, seed):
    gan = _gan(seed, pack)
    start = time.perf_counter()
    fit(GANStep(gan, make_loss(loss, pack=pack), lr=1e-3), {"x": data}, seed=seed, steps=steps, batch_size=batch_size)
    return (time.perf_counter() - start) / steps


def _optimizer(fused):
    """The plain loops' Adam: ``torch.optim.Adam`` as tutorials write it, or (``fused``) the fused
    kernel our loop uses (:func:`inference.train.adam`), which leaves the loops' difference alone."""
    return adam if fused else torch.optim.Adam


def plain_gan(data, loss_name, pack, steps, batch_size, seed, fused=False):
    """The same training written as a plain PyTorch loop (no genzoo loop, no Pyro)."""
    gan = _gan(seed, pack)
    loss = make_loss(loss_name, pack=pack)
    opt_g = _optimizer(fused)(gan.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = _optimizer(fused)(gan.critic.parameters(), lr=1e-3, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    n = len(data)
    start = time.perf_counter()
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            real = data[perm[i:i + batch_size]]
            for _ in range(loss.critic_steps):
                with torch.no_grad():
                    fake = gan.generator(torch.randn(batch_size, 2, generator=gen))
                d_loss = loss.critic_loss(gan.critic, real, fake, gen)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            g_loss = loss.generator_loss(gan.critic, gan.generator(torch.randn(batch_size, 2, generator=gen)))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            float(g_loss.detach()), float(d_loss.detach())  # what the loop records each step
            done += 1
            if done == steps:
                break
    return (time.perf_counter() - start) / steps


def _energy(seed):
    with isolated(seed):
        return EnergyNet(2, (128, 128))


def ours_dsm(data, sigma, steps, batch_size, seed):
    energy = _energy(seed)
    step = LossStep(energy, lambda e, b, g: dsm_loss(e, b["x"], g, sigma=sigma), lr=1e-3)
    start = time.perf_counter()
    fit(step, {"x": data}, seed=seed, steps=steps, batch_size=batch_size)
    return (time.perf_counter() - start) / steps


def _plain_loop(loss_of, params, data, steps, batch_size, seed, fused=False):
    """Seconds per step of a plain PyTorch loop: Adam 1e-3, a fresh permutation per epoch,
    ``loss_of(minibatch, generator)``, the loss read back each step as our loop does."""
    opt = _optimizer(fused)(params, lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    n = len(data)
    start = time.perf_counter()
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            loss = loss_of(data[perm[i:i + batch_size]], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())
            done += 1
            if done == steps:
                break
    return (time.perf_counter() - start) / steps


def torchebm_dsm(data, sigma, steps, batch_size, seed, fused=False):
    from torchebm.losses import DenoisingScoreMatching

    energy = _energy(seed)
    loss_fn = DenoisingScoreMatching(model=energy, noise_scale=sigma)
    return _plain_loop(lambda x, gen: loss_fn(x, generator=gen), energy.parameters(), data, steps, batch_size, seed,
                       fused)


def ours_cd(data, k, step_size, alpha, steps, batch_size, seed):
    """CD-k (chains start at the minibatch) through the one loop."""
    from deep.ebm import ContrastiveDivergence

    energy = _energy(seed)
    step = ContrastiveDivergence(energy, num_steps=k, step_size=step_size, persistent=False, alpha=alpha)
    start = time.perf_counter()
    fit(step, {"x": data}, seed=seed, steps=steps, batch_size=batch_size)
    return (time.perf_counter() - start) / steps


def torchebm_cd(data, k, step_size, alpha, steps, batch_size, seed, fused=False):
    """torchebm's ``ContrastiveDivergence`` with its ``LangevinDynamics`` sampler (the same update,
    :math:`x - \\epsilon \\nabla E + \\sqrt{2 \\epsilon}\\, \\xi`, and the same loss
    :math:`E^+ - E^- + \\alpha (E^{+2} + E^{-2})`) in a plain loop; the energy network wrapped in
    torchebm's ``BaseModel``, which the sampler needs for its gradient."""
    from torchebm.core import BaseModel
    from torchebm.losses import ContrastiveDivergence
    from torchebm.samplers import LangevinDynamics

    class Wrapped(BaseModel):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    model = Wrapped(_energy(seed))
    sampler = LangevinDynamics(model, step_size=step_size, noise_scale=1.0)
    loss_fn = ContrastiveDivergence(model=model, sampler=sampler, k_steps=k, persistent=False,
                                    energy_reg_weight=alpha)
    return _plain_loop(lambda x, gen: loss_fn(x, generator=gen)[0], model.parameters(), data, steps, batch_size, seed,
                       fused)


def _alternate(fns, repeats):
    """Medians of ``repeats`` runs of each function, run in turn (all see the same load)."""
    for fn in fns:
        fn()  # warm-up (allocator, first-call overheads)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t.append(fn())
    return [statistics.median(t) for t in times]


def timings(args) -> list[tuple]:
    """Rows (case, ours, peer, peer with the fused Adam): seconds per step."""
    data = get("ring").sample(20000, 0)
    rows = []
    for loss, pack in (("gan", 1), ("gan", 2), ("wgan_gp", 1)):
        medians = _alternate([lambda: ours_gan(data, loss, pack, args.steps, args.batch_size, 0),
                              lambda: plain_gan(data, loss, pack, args.steps, args.batch_size, 0),
                              lambda: plain_gan(data, loss, pack, args.steps, args.batch_size, 0, fused=True)],
                             args.repeats)
        rows.append((f"GAN {loss} pack={pack} vs plain PyTorch", *medians))
    x = get("8gaussians").sample(20000, 0)
    e = _energy(1)
    from torchebm.losses import DenoisingScoreMatching

    peer_value = float(DenoisingScoreMatching(model=e, noise_scale=0.1)(x[:256], generator=torch.Generator().manual_seed(3)).detach())
    ours_value = float(dsm_loss(e, x[:256], torch.Generator().manual_seed(3), sigma=0.1).detach())
    print(f"DSM loss on the same draws: ours {ours_value:.6f}, torchebm {peer_value:.6f}")
    medians = _alternate([lambda: ours_dsm(x, 0.1, args.steps, args.batch_size, 0),
                          lambda: torchebm_dsm(x, 0.1, args.steps, args.batch_size, 0),
                          lambda: torchebm_dsm(x, 0.1, args.steps, args.batch_size, 0, fused=True)], args.repeats)
    rows.append(("EBM DSM vs torchebm", *medians))
    cd_steps = max(args.steps // 10, 5)  # each update runs k = 20 Langevin steps
    medians = _alternate([lambda: ours_cd(x, 20, 1e-2, 0.1, cd_steps, args.batch_size, 0),
                          lambda: torchebm_cd(x, 20, 1e-2, 0.1, cd_steps, args.batch_size, 0),
                          lambda: torchebm_cd(x, 20, 1e-2, 0.1, cd_steps, args.batch_size, 0, fused=True)],
                         args.repeats)
    rows.append(("EBM CD-20 vs torchebm", *medians))
    print("peer: as its tutorials write it (torch.optim.Adam); peer+fused: handed our loop's fused Adam")
    print(f"{'case':<38} {'ours (ms/step)':>15} {'peer (ms/step)':>15} {'ratio':>7} {'peer+fused':>11} {'ratio':>7}")
    for name, ours, peer, fused in rows:
        print(f"{name:<38} {1e3 * ours:15.3f} {1e3 * peer:15.3f} {ours / peer:7.2f} {1e3 * fused:11.3f} {ours / fused:7.2f}")
    return rows


def _protocol_cell(name: str, loss: str, pack: int, seed: int, steps: int, batch_size: int, lr: float,
                   r1: float) -> dict | None:
    """One seed of one (density, loss, pack): PacGAN's figures of 2,500 samples, None if training diverged."""
    from inference.errors import TrainingError

    torch.set_num_threads(1)
    density = get(name)
    try:
        gan = train_gan(density.sample(20000, 0), seed=seed, steps=steps, loss=loss, pack=pack,
                        batch_size=batch_size, lr=lr, r1=0.0 if loss == "wgan_gp" else r1).params
    except TrainingError:
        return None
    return mode_scores(gan, density, seed + 100, 2500)


def protocol(args) -> dict:
    """PacGAN's figures per (density, loss, pack), means over the seeds. A run that diverges (the
    loop's finite-loss guard stops it) counts as 0 modes and 0 high-quality samples, and its reverse
    KL is left out of the mean; the per-seed list marks it ``x``. ``--r1`` adds the R1 penalty to
    every loss but WGAN-GP (which has its own penalty); ``--jobs`` runs the seeds in that many
    processes of one thread each."""
    packs = args.packs or (1, args.pack)
    rows = [(name, loss, pack) for name in args.densities for loss in args.losses for pack in packs]
    cells = [(*row, seed, args.steps, args.batch_size, args.lr, args.r1) for row in rows for seed in range(args.seeds)]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        futures = [pool.submit(_protocol_cell, *cell) for cell in cells]
        results = (f.result() for f in futures)
    else:
        pool, results = None, (_protocol_cell(*cell) for cell in cells)
    out = {}
    try:
        for name, loss, pack in rows:
            figures = [next(results) for _ in range(args.seeds)]
            done = [f for f in figures if f is not None]
            mean = {"modes_captured": float(np.mean([f["modes_captured"] if f else 0.0 for f in figures])),
                    "high_quality": float(np.mean([f["high_quality"] if f else 0.0 for f in figures])),
                    "reverse_kl": float(np.mean([f["reverse_kl"] for f in done])) if done else float("nan"),
                    "diverged": len(figures) - len(done)}
            out[(name, loss, pack)] = mean
            per_seed = [str(int(f["modes_captured"])) if f else "x" for f in figures]
            note = f"; {mean['diverged']} diverged" if mean["diverged"] else ""
            r1 = f", R1 {args.r1:g}" if args.r1 and loss != "wgan_gp" else ""
            print(f"{name:>5} {loss:>11} pack={pack}: modes {mean['modes_captured']:.1f}/{len(get(name).modes)}, "
                  f"high quality {mean['high_quality']:.3f}, reverse KL {mean['reverse_kl']:.3f} "
                  f"({args.seeds} seeds, {args.steps} steps{r1}; modes per seed [{', '.join(per_seed)}]{note})",
                  flush=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


def main(args) -> dict:
    torch.set_num_threads(1)
    result = {}
    if not args.skip_timings:
        result["timings"] = timings(args)
    if args.protocol:
        result["protocol"] = protocol(args)
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI-sized: 50 steps, 3 repeats")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--skip-timings", action="store_true")
    p.add_argument("--protocol", action="store_true", help="PacGAN's mode-coverage protocol")
    p.add_argument("--densities", nargs="+", default=["ring", "grid"])
    p.add_argument("--losses", nargs="+", default=["gan", "kl", "reverse_kl", "js", "pearson", "hellinger", "wgan_gp"])
    p.add_argument("--pack", type=int, default=2)
    p.add_argument("--packs", type=int, nargs="+", help="the packings the protocol runs (default: 1 and --pack)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate in the protocol")
    p.add_argument("--r1", type=float, default=0.0,
                   help="R1 penalty weight in the protocol, for every loss but WGAN-GP (0: none)")
    p.add_argument("--jobs", type=int, default=1, help="protocol runs at once, one process and thread each")
    args = p.parse_args(argv)
    if args.packs and min(args.packs) < 1:
        p.error(f"--packs must be positive integers, got {args.packs}")
    for name in ("seeds", "steps", "repeats", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if not (args.lr > 0 and np.isfinite(args.lr)) or not (args.r1 >= 0 and np.isfinite(args.r1)):
        p.error(f"--lr must be positive and --r1 non-negative, got {args.lr} and {args.r1}")
    if args.quick:
        args.steps, args.repeats = min(args.steps, 50), min(args.repeats, 3)
    return args


if __name__ == "__main__":
    main(parse_args())
