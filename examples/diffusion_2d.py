"""Diffusion and flow matching on a 2-D density: samples against sampling steps, and test NLL.

Trains a DDPM (whose network is also the VP score SDE) and a flow-matching model (minibatch-OT
coupling) on a density with a closed-form log-density, then prints, for each sampler, the exact
W2 distance of its samples from fresh true points and the number of network calls; and the test
NLL of each model (the DDPM variational bound, the probability-flow ODE's likelihood, the flow's
likelihood), with KL = NLL - H(p). Writes a picture of the samples.

    python examples/diffusion_2d.py --density 8gaussians --steps 3000

Takes about 3 minutes on a 2-core CPU at the defaults.
"""

from __future__ import annotations

import argparse
import pathlib

import torch

from deep.densities import get
from deep.diffusion.recipes import score_samples, train, with_nll
from deep.diffusion.sde import ScoreSDE


def main(args) -> dict:
    torch.set_num_threads(1)
    density = get(args.density)
    gen = torch.Generator().manual_seed(args.seed)
    x_train, truth, test = (density.sample(n, gen) for n in (args.train_size, args.n, args.n))
    ddpm = train("ddpm", x_train, seed=args.seed, steps=args.steps, hidden=(args.width,) * 3, T=args.T)
    flow = train("fm_ot", x_train, seed=args.seed, steps=args.steps, hidden=(args.width,) * 3)
    vp = ScoreSDE.from_ddpm(ddpm)
    samplers = {
        f"DDPM ancestral ({args.T} steps)": lambda: (ddpm.sample(args.n, args.seed), args.T),
        **{f"DDIM {k} steps": (lambda k=k: (ddpm.ddim_sample(args.n, args.seed, num_steps=k), k)) for k in args.ddim},
        "VP reverse SDE (200 steps)": lambda: (vp.reverse_sde_sample(args.n, args.seed, num_steps=200), 200),
        "VP probability-flow ODE (dopri5)": lambda: (lambda o: (o.x, o.nfe))(vp.ode_sample(args.n, args.seed)),
        "flow matching, Euler 1 step": lambda: (flow.sample(args.n, args.seed, method="euler", num_steps=1).x, 1),
        "flow matching, Euler 10 steps": lambda: (flow.sample(args.n, args.seed, method="euler", num_steps=10).x, 10),
        "flow matching (dopri5)": lambda: (lambda o: (o.x, o.nfe))(flow.sample(args.n, args.seed)),
    }
    rows = {}
    print(f"{args.density}: W2 of {args.n} samples against {args.n} true points (exact assignment)")
    for name, draw in samplers.items():
        x, steps = draw()
        rows[name] = score_samples(name, x, truth, seconds=0.0, steps=steps)
        print(f"  {name:<36} W2 {rows[name].diagnostics['scores']['w2']:.3f}   network calls {steps}")
    nll = {
        "DDPM variational bound": with_nll(rows[f"DDPM ancestral ({args.T} steps)"],
                                           ddpm.bound(test, args.seed, num_terms=None if args.T <= 100 else 100),
                                           density, kind="lower_bound", seconds=0.0),
        "VP probability-flow ODE": with_nll(rows["VP probability-flow ODE (dopri5)"], vp.log_prob(test).log_prob,
                                            density, kind="estimate", seconds=0.0),
        "flow matching ODE": with_nll(rows["flow matching (dopri5)"], flow.log_prob(test).log_prob, density,
                                      kind="estimate", seconds=0.0),
    }
    print(f"test NLL of {args.n} points, nats (entropy of the density: {density.entropy():.3f})")
    for name, r in nll.items():
        s = r.diagnostics["scores"]
        print(f"  {name:<36} NLL {s['nll']:.3f} +- {s['nll_se']:.3f}   KL {s['kl']:.3f}")
    picture = None
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(rows) + 1, figsize=(2.2 * (len(rows) + 1), 2.4))
        for ax, (name, r) in zip(axes, [("data", None), *rows.items()]):
            pts = truth if r is None else torch.as_tensor(r.samples["x"])
            ax.scatter(pts[:, 0], pts[:, 1], s=1)
            ax.set_title(name, fontsize=6)
            ax.set_xlim(-density.box, density.box)
            ax.set_ylim(-density.box, density.box)
            ax.axis("off")
        picture = pathlib.Path(args.out) / f"diffusion_{args.density}.png"
        picture.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(picture, dpi=120)
        plt.close(fig)
        print(f"picture: {picture}")
    return {"samplers": rows, "nll": nll, "picture": picture}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--density", default="8gaussians")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--ddim", type=int, nargs="+", default=[50, 20, 10])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
