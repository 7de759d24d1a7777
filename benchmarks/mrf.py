"""Markov random fields against plain NumPy and scikit-learn, same sizes, same process.

1. Checkerboard Gibbs on an L x L Ising torus (default 256 x 256, J = 0.44, no field): sweeps per
   second of ``inference.checkerboard`` (one jitted ``lax.scan`` over sweeps; compilation timed
   apart) beside a plain NumPy implementation of the same update (``np.roll`` neighbour sums, a
   sigmoid, one uniform per site, both colours). Goal: at least 3x the NumPy rate.
2. One epoch of RBM training by PCD-1 on binarised digits (1,797 x 64, 64 hidden units, batch 10,
   learning rate 0.1) by ``inference.mrf_learning.rbm_contrastive_divergence`` beside
   ``sklearn.neural_network.BernoulliRBM`` (``n_iter=1``, the same sizes; it also runs PCD-1 with
   as many persistent chains as the batch size). Goal: our time / theirs <= 1.0.

Medians of ``--repeats`` runs (for Gibbs both wall-clock and CPU time, the latter less disturbed by
other jobs on the machine); ``--quick`` for CI-sized runs (64 x 64, fewer sweeps).

    python benchmarks/mrf.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from inference.checkerboard import checkerboard_gibbs, run
from inference.mrf_learning import rbm_contrastive_divergence
from pgm.ising import Ising
from pgm.rbm import RBM


def numpy_checkerboard(spins, coupling, sweeps, rng):
    """The same checkerboard update in plain NumPy, spins in {-1, +1}: returns the final state."""
    black = (np.indices(spins.shape).sum(0) % 2).astype(bool)
    s = spins.astype(np.float64)
    for _ in range(sweeps):
        for mask in (black, ~black):
            nb = np.roll(s, 1, 0) + np.roll(s, -1, 0) + np.roll(s, 1, 1) + np.roll(s, -1, 1)
            p_up = 1.0 / (1.0 + np.exp(-2.0 * coupling * nb))
            s = np.where(mask, np.where(rng.random(s.shape) < p_up, 1.0, -1.0), s)
    return s


def mean_spin(x):
    return jnp.mean(2.0 * x - 1.0)


def gibbs_benchmark(size, sweeps, repeats, coupling=0.44):
    model = Ising((size, size), coupling, periodic=True)
    unary, k = model.potts_form()
    kernel = checkerboard_gibbs(unary, k, periodic=True)
    x0 = np.asarray(jax.random.bernoulli(jax.random.key(0), 0.5, (1, size, size)), dtype=np.int32)
    start = time.perf_counter()
    run(kernel, 1, x0, sweeps, statistic=mean_spin)  # compiles
    first = time.perf_counter() - start
    ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
    rng = np.random.default_rng(0)
    for r in range(repeats):  # alternately, so that both see the same machine load
        start, cpu = time.perf_counter(), time.process_time()
        run(kernel, 2 + r, x0, sweeps, statistic=mean_spin)
        ours.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        numpy_checkerboard(2 * x0[0] - 1, coupling, sweeps, rng)
        theirs.append(time.perf_counter() - start)
        theirs_cpu.append(time.process_time() - cpu)
    ours_rate, numpy_rate = sweeps / np.median(ours), sweeps / np.median(theirs)
    # CPU time (all threads of the process) is less disturbed by other jobs than wall time
    cpu_ratio = np.median(theirs_cpu) / np.median(ours_cpu)
    print(f"Gibbs {size}x{size}: ours {ours_rate:.0f} sweeps/s (compile+first {first:.2f} s), "
          f"NumPy {numpy_rate:.0f} sweeps/s, ratio {ours_rate / numpy_rate:.2f}x (goal >= 3x); "
          f"in CPU time {cpu_ratio:.2f}x")
    return ours_rate, numpy_rate


def rbm_benchmark(hidden, repeats, batch_size=10, learning_rate=0.1):
    from sklearn.datasets import load_digits
    from sklearn.neural_network import BernoulliRBM

    x = (load_digits().data >= 8).astype(np.float64)  # (1797, 64)
    init = RBM.random(0, x.shape[1], hidden, scale=0.01).params
    rbm_contrastive_divergence(0, x, init, epochs=1, batch_size=batch_size, learning_rate=learning_rate)  # compiles
    ours, theirs = [], []
    for r in range(repeats):
        start = time.perf_counter()
        rbm_contrastive_divergence(r + 1, x, init, epochs=1, batch_size=batch_size, learning_rate=learning_rate)
        ours.append(time.perf_counter() - start)
        peer = BernoulliRBM(n_components=hidden, batch_size=batch_size, learning_rate=learning_rate, n_iter=1,
                            random_state=r)
        start = time.perf_counter()
        peer.fit(x)
        theirs.append(time.perf_counter() - start)
    ratio = np.median(ours) / np.median(theirs)
    print(f"RBM PCD-1 epoch (1797 x 64, {hidden} hidden, batch {batch_size}): ours {1e3 * np.median(ours):.1f} ms, "
          f"BernoulliRBM {1e3 * np.median(theirs):.1f} ms, ratio {ratio:.2f} (goal <= 1.0)")
    return float(np.median(ours)), float(np.median(theirs))


def main(args):
    size, sweeps = (64, 200) if args.quick else (args.size, args.sweeps)
    gibbs_benchmark(size, sweeps, args.repeats)
    rbm_benchmark(args.hidden, args.repeats)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--sweeps", type=int, default=200)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    main(p.parse_args())
