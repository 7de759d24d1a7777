"""Magnetisation of the 2-D Ising model against temperature: Gibbs, Swendsen-Wang and Onsager.

On the infinite square lattice with coupling 1 and no field, the spontaneous magnetisation is
(Onsager 1944; Yang 1952)

    M(T) = (1 - sinh(2/T)^-4)^(1/8)  for T < T_c = 2 / ln(1 + sqrt 2) = 2.269,  0 above.

A finite L x L torus has no spontaneous symmetry breaking, so we estimate <|m|>, m the mean spin,
which tends to M(T) as L grows. Both samplers run on the same lattice at every temperature
(coupling J = 1/T, compiled once: the coupling is an argument of the jitted chain). Near T_c
single-site Gibbs suffers critical slowing down; the integrated autocorrelation time
tau_int = N / ESS of |m| (ArviZ's ESS) of each sampler at T_c says by how much.

    python examples/ising_onsager.py                 # 64 x 64, a plot in ising_onsager.png
    python examples/ising_onsager.py --size 16 --sweeps 200 --temperatures 5   # seconds

Takes about 2 minutes on a 2-core CPU at the defaults.

References:
    Onsager (1944). Crystal statistics. I.  Yang (1952). The spontaneous magnetization of a
    two-dimensional Ising model.  Swendsen and Wang (1987).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from inference.checkerboard import checkerboard_gibbs, integrated_autocorrelation_time, run
from inference.cluster import swendsen_wang
from pgm.ising import Ising

T_C = 2.0 / np.log(1.0 + np.sqrt(2.0))


def onsager(t):
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = (1.0 - np.sinh(2.0 / t) ** -4) ** 0.125
    return np.where(t < T_C, m, 0.0)


def abs_magnetisation(x):
    return jnp.abs(jnp.mean(2.0 * x - 1.0))


def measure(size, temperature, sweeps, key):
    """<|m|> and the |m| series of both samplers at one temperature (one chain each, cold start)."""
    model = Ising((size, size), 1.0 / temperature, periodic=True)
    unary, k = model.potts_form()
    x0 = np.ones((1, size, size), dtype=np.int32)  # ordered start: the low-temperature phase
    burn = sweeps // 5
    kg, ks = jax.random.split(key)
    g = run(checkerboard_gibbs(unary, k, periodic=True), kg, x0, sweeps, burn_in=burn, statistic=abs_magnetisation)
    s = run(swendsen_wang(unary.reshape(-1, 2), model.edges, k), ks, x0.reshape(1, -1), sweeps, burn_in=burn,
            statistic=abs_magnetisation)
    return g.samples["statistic"], s.samples["statistic"], g.seconds, s.seconds


def main(args):
    key = jax.random.key(args.seed)
    temperatures = np.linspace(1.5, 3.5, args.temperatures)
    temperatures = np.sort(np.append(temperatures, T_C))
    rows = []
    for i, t in enumerate(temperatures):
        mg, ms, sec_g, sec_s = measure(args.size, t, args.sweeps, jax.random.fold_in(key, i))
        rows.append((t, float(np.mean(mg)), float(np.mean(ms)), float(onsager(t)), mg, ms, sec_g, sec_s))
        print(f"T = {t:.3f}  <|m|> Gibbs {rows[-1][1]:.4f}  SW {rows[-1][2]:.4f}  Onsager {rows[-1][3]:.4f}"
              f"  ({sec_g:.2f} s, {sec_s:.2f} s)")
    at_tc = [r for r in rows if np.isclose(r[0], T_C)][0]
    tau_g = integrated_autocorrelation_time(at_tc[4])
    tau_s = integrated_autocorrelation_time(at_tc[5])
    print(f"at T_c = {T_C:.4f} on {args.size} x {args.size}: integrated autocorrelation time of |m|: "
          f"Gibbs {tau_g:.1f} sweeps, Swendsen-Wang {tau_s:.1f} steps (ratio {tau_g / tau_s:.1f})")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fine = np.linspace(1.4, 3.6, 400)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(fine, onsager(fine), "k-", label="Onsager (infinite lattice)")
        ax.plot([r[0] for r in rows], [r[1] for r in rows], "o", label="checkerboard Gibbs")
        ax.plot([r[0] for r in rows], [r[2] for r in rows], "s", mfc="none", label="Swendsen-Wang")
        ax.axvline(T_C, color="grey", ls=":")
        ax.set_xlabel("temperature T = 1 / J")
        ax.set_ylabel("<|m|>")
        ax.set_title(f"{args.size} x {args.size} torus; tau_int at T_c: Gibbs {tau_g:.1f}, SW {tau_s:.1f}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"plot: {args.out}")
    return {"rows": [(r[0], r[1], r[2], r[3]) for r in rows], "tau_gibbs": tau_g, "tau_sw": tau_s}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--sweeps", type=int, default=2000)
    p.add_argument("--temperatures", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="ising_onsager.png", help="PNG path ('' for none)")
    return p.parse_args(argv)


if __name__ == "__main__":
    start = time.perf_counter()
    main(parse_args())
    print(f"total {time.perf_counter() - start:.1f} s")
