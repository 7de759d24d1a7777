"""Diffusion and flow matching against their peers: torchcfm (training step, 8 Gaussians -> moons W2)
and diffusers (the DDPM sampling loop), same networks, same process.

1. Flow-matching training time per step: our ``FlowMatching`` trained by :func:`inference.train.fit`
   (the zoo's one loop: minibatches, generator, finite-loss guard) against torchcfm's
   ``ConditionalFlowMatcher`` / ``ExactOptimalTransportConditionalFlowMatcher`` in a plain PyTorch
   loop, with the same network (torchcfm's ``MLP(2, w=64, time_varying=True)``: three SELU layers
   of 64 on :math:`[x, t]`; ours is a :class:`~deep.diffusion.nets.TimeMLP` of the same shape,
   loaded with the same weights), batch 256, Adam 1e-3, sigma 0.1, pre-drawn data (the peer's
   generators are Python loops, timed apart from the steps). Median of ``--repeats`` blocks of
   ``--timing-steps`` steps, ours and the peer's interleaved. Goal: ours / torchcfm <= 1.0.
   Our loop's Adam is torch's fused kernel (:func:`inference.train.adam`); the peer runs twice:
   as torchcfm's tutorials write it (``torch.optim.Adam``'s default per-tensor implementation),
   and with the same fused kernel, which leaves the difference of the steps and loops alone
   (our loop also gathers a shuffled minibatch each step, where the peer slices pre-shuffled rows).
2. DDPM sampling, T = 1000 steps, 2,000 points: our ``DDPM.sample`` against diffusers'
   ``DDPMScheduler`` loop (``clip_sample=False``, ``variance_type="fixed_small"``, our betas) with
   the same network; the two draw the same numbers in the same order, so their samples agree to
   float rounding (printed). Median of ``--repeats``. Goal: ours / diffusers <= 1.0.
3. The issue's protocol: 8 Gaussians -> two moons with torchcfm's generators (``sample_8gaussians``,
   ``sample_moons``), 5,000 steps (``--fm-steps``), batch 256, sigma 0.1, the same MLP for both
   sides; 2,000 points integrated from 8 Gaussians to t = 1 by dopri5, atol = rtol = 1e-4 (ours: our
   ODE solver; torchcfm's network: torchdiffeq's ``odeint``, the solver torchcfm's tutorials reach
   through torchdyn, which needs torchcde), W2 against 2,000 fresh moons by exact
   assignment; independent and minibatch-OT coupling; median over ``--seeds`` seeds. Goal: ours <=
   torchcfm's on each coupling. Both sides train on the same minibatches in the same order (the
   peer reads them in the order our loop draws them) from the same initial weights, so a seed's
   pair differs only in the times and noise each library draws; the paired difference over seeds
   and its standard error are printed. (torchcfm's generators read torch's and NumPy's global
   random state: seeded here per run for both sides, the benchmark's only use of it.)

    python benchmarks/diffusion_fm.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from deep.diffusion.ddpm import DDPM
from deep.diffusion.flow_matching import FlowMatching, fit
from deep.diffusion.nets import TimeMLP
from deep.diffusion.schedules import vp_betas
from inference.evaluate import wasserstein2


def same_mlp(seed):
    """torchcfm's MLP and our TimeMLP (no Fourier features, SELU, 3 x 64) with the same weights."""
    from torchcfm.models.models import MLP

    torch.manual_seed(seed)  # initial weights only
    peer = MLP(dim=2, w=64, time_varying=True)
    ours = TimeMLP(2, (64, 64, 64), frequencies=0, activation="selu")
    ours.body.load_state_dict(peer.net.state_dict())
    return ours, peer


def peer_flow_matcher(coupling):
    from torchcfm.conditional_flow_matching import (ConditionalFlowMatcher,
                                                    ExactOptimalTransportConditionalFlowMatcher)

    return (ConditionalFlowMatcher if coupling == "independent" else ExactOptimalTransportConditionalFlowMatcher)(sigma=0.1)


def peer_steps(peer, matcher, x0, x1, optimizer, steps, batch_size, offset=0):
    for k in range(steps):
        s = slice(((offset + k) * batch_size) % len(x0), ((offset + k) * batch_size) % len(x0) + batch_size)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0[s], x1[s])
        vt = peer(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def pools(n, seed):
    from torchcfm.utils import sample_8gaussians, sample_moons

    torch.manual_seed(seed)
    np.random.seed(seed)
    x0, x1 = sample_8gaussians(n), sample_moons(n)
    # generate_moons lists the outer moon, then the inner one, each by angle: shuffled, so that
    # consecutive rows are the independent draws torchcfm's per-step sample_moons(256) gives
    return x0, x1[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]


# --------------------------------------------------------------------------- 1. training step
def bench_training(args):
    from inference.train import adam

    print("1. flow-matching training, seconds per step (batch 256, same MLP, pre-drawn data)")
    x0, x1 = pools(256 * args.timing_steps, 0)
    for coupling in ("independent", "ot"):
        ours_net, peer = same_mlp(0)
        _, peer_fused = same_mlp(0)
        model = FlowMatching(2, net=ours_net, coupling=coupling, sigma=0.1)
        matcher = peer_flow_matcher(coupling)
        # the peer as torchcfm's tutorials write it (torch.optim.Adam's default implementation), and
        # the peer handed the fused Adam kernel our loop uses: the second isolates the step itself
        arms = {"torchcfm": (peer, torch.optim.Adam(peer.parameters(), lr=1e-3)),
                "torchcfm+fused": (peer_fused, adam(peer_fused.parameters(), lr=1e-3))}
        wall = {k: [] for k in ("ours", *arms)}
        cpu = {k: [] for k in wall}
        for r in range(args.repeats + 1):
            start, c = time.perf_counter(), time.process_time()
            fit(model, {"x": x1, "source": x0}, seed=r, steps=args.timing_steps, batch_size=256, lr=1e-3)
            wall["ours"].append((time.perf_counter() - start) / args.timing_steps)
            cpu["ours"].append((time.process_time() - c) / args.timing_steps)
            for name, (net, opt) in arms.items():
                start, c = time.perf_counter(), time.process_time()
                peer_steps(net, matcher, x0, x1, opt, args.timing_steps, 256)
                wall[name].append((time.perf_counter() - start) / args.timing_steps)
                cpu[name].append((time.process_time() - c) / args.timing_steps)
        w = {k: statistics.median(v[1:]) for k, v in wall.items()}  # the first round warms up
        c = {k: statistics.median(v[1:]) for k, v in cpu.items()}
        # CPU seconds of this process (one thread) beside wall seconds: on a shared machine the
        # CPU-time ratio is the one other jobs do not move
        for name in arms:
            print(f"   {coupling:<12} vs {name:<15} wall: ours {w['ours'] * 1e3:.3f} ms  peer {w[name] * 1e3:.3f} ms  "
                  f"ratio {w['ours'] / w[name]:.2f};  CPU: ours {c['ours'] * 1e3:.3f} ms  peer {c[name] * 1e3:.3f} ms  "
                  f"ratio {c['ours'] / c[name]:.2f}")


# --------------------------------------------------------------------------- 2. DDPM sampling
def bench_ddpm_sampling(args):
    from diffusers import DDPMScheduler

    print(f"2. DDPM sampling, T = 1000, {args.samples} points, same network: seconds")
    torch.manual_seed(0)
    model = DDPM(2, betas=vp_betas(1000), hidden=(128, 128, 128)).eval()
    sched = DDPMScheduler(num_train_timesteps=1000, trained_betas=model.schedule.betas.numpy(), clip_sample=False,
                          variance_type="fixed_small")

    def peer(seed):
        sched.set_timesteps(1000)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(args.samples, 2, generator=gen)
        with torch.no_grad():
            for t in sched.timesteps:
                eps = model.net(x, 1 - (int(t) + 1) / 1000)
                x = sched.step(eps, t, x, generator=gen).prev_sample
        return x

    ours_t, peer_t, ours_c, peer_c = [], [], [], []
    for r in range(args.repeats + 1):
        start, cpu = time.perf_counter(), time.process_time()
        a = model.sample(args.samples, generator=r)
        ours_t.append(time.perf_counter() - start)
        ours_c.append(time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        b = peer(r)
        peer_t.append(time.perf_counter() - start)
        peer_c.append(time.process_time() - cpu)
    o, p = statistics.median(ours_t[1:]), statistics.median(peer_t[1:])
    oc, pc = statistics.median(ours_c[1:]), statistics.median(peer_c[1:])
    # the two loops draw the same normals in the same order; diffusers keeps its schedule in float32,
    # so the samples agree to that precision amplified by 1 / sqrt(abar_T) ~ 150 in the first steps
    print(f"   wall: ours {o:.3f} s  diffusers {p:.3f} s  ratio {o / p:.2f};  CPU: ours {oc:.3f} s  diffusers "
          f"{pc:.3f} s  ratio {oc / pc:.2f}  (max |ours - diffusers| = {float((a - b).abs().max()):.2e})")


# --------------------------------------------------------------------------- 3. W2 protocol
def ours_w2(coupling, seed, steps):
    from torchcfm.utils import sample_8gaussians, sample_moons

    net, _ = same_mlp(seed)
    model = FlowMatching(2, net=net, coupling=coupling, sigma=0.1)
    x0, x1 = pools(256 * steps, seed)
    fit(model, {"x": x1, "source": x0}, seed=seed, steps=steps, batch_size=256, lr=1e-3)
    torch.manual_seed(seed + 1000)
    np.random.seed(seed + 1000)
    src, truth = sample_8gaussians(2000), sample_moons(2000)
    x = model.sample(src, method="dopri5", atol=1e-4, rtol=1e-4).x
    return wasserstein2(x.numpy(), truth.numpy())


def peer_w2(coupling, seed, steps):
    from torchcfm.utils import sample_8gaussians, sample_moons
    from torchdiffeq import odeint

    _, peer = same_mlp(seed)
    matcher = peer_flow_matcher(coupling)
    opt = torch.optim.Adam(peer.parameters(), lr=1e-3)
    x0, x1 = pools(256 * steps, seed)
    # the minibatches ours reads, in its order: inference.train.fit's one epoch of 256 * steps rows
    # is randperm(N) from a CPU generator seeded with the run's seed (tested in test_train_loop.py)
    order = torch.randperm(len(x0), generator=torch.Generator().manual_seed(seed))
    x0, x1 = x0[order], x1[order]
    torch.manual_seed(seed)
    peer_steps(peer, matcher, x0, x1, opt, steps, 256)
    torch.manual_seed(seed + 1000)
    np.random.seed(seed + 1000)
    src, truth = sample_8gaussians(2000), sample_moons(2000)
    with torch.no_grad():  # torchcfm's tutorials wrap the MLP in torchdyn's NeuralODE(dopri5); the same solver here
        traj = odeint(lambda t, x: peer(torch.cat([x, t.expand(len(x), 1)], -1)), src, torch.tensor([0.0, 1.0]),
                      method="dopri5", atol=1e-4, rtol=1e-4)
    return wasserstein2(traj[-1].numpy(), truth.numpy())


def bench_w2(args):
    print(f"3. 8 Gaussians -> moons, {args.fm_steps} steps, W2 (2,000 vs 2,000, exact), seeds {list(range(args.seeds))}")
    for coupling in args.couplings:
        ours = [ours_w2(coupling, s, args.fm_steps) for s in range(args.seeds)]
        peer = [peer_w2(coupling, s, args.fm_steps) for s in range(args.seeds)]
        print(f"   {coupling:<12} ours median {statistics.median(ours):.3f} {np.round(ours, 3).tolist()}  "
              f"torchcfm median {statistics.median(peer):.3f} {np.round(peer, 3).tolist()}")
        if len(ours) > 1:  # each seed is one independent training of both (same data, same initial weights)
            d = np.subtract(ours, peer)
            print(f"   {'':<12} mean ours {np.mean(ours):.3f}, torchcfm {np.mean(peer):.3f}; paired difference "
                  f"ours - torchcfm {d.mean():+.3f} +- {d.std(ddof=1) / math.sqrt(len(d)):.3f} (standard error)")


def main(args):
    torch.set_num_threads(args.threads)
    if "train" in args.parts:
        bench_training(args)
    if "ddpm" in args.parts:
        bench_ddpm_sampling(args)
    if "w2" in args.parts:
        bench_w2(args)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI sizes: 1,000 training steps, 1 seed, 3 repeats")
    p.add_argument("--parts", nargs="+", default=["train", "ddpm", "w2"], choices=["train", "ddpm", "w2"])
    p.add_argument("--timing-steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--fm-steps", type=int, default=5000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--couplings", nargs="+", default=["independent", "ot"], choices=["independent", "ot"],
                   help="the couplings of the W2 protocol")
    args = p.parse_args(argv)
    for name in ("seeds", "fm_steps", "timing_steps", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.quick:
        args.fm_steps, args.seeds, args.repeats, args.timing_steps = 1000, 1, 3, 100
    return args


if __name__ == "__main__":
    main(parse_args())
