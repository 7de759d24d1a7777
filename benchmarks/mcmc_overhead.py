"""Overhead of ``inference.mcmc.nuts`` over NumPyro's ``MCMC(NUTS)`` called directly.

Same model, same data, same key, same settings; each timing is a whole call (compile, warm-up,
sampling, collecting samples) and the figure is the median of several runs, in this one process.
Models: Bayesian logistic regression (N = 10,000, D = 20) and eight schools (non-centred).
Target: ours / NumPyro <= 1.05.

    python benchmarks/mcmc_overhead.py            # full sizes, 5 repeats
    python benchmarks/mcmc_overhead.py --quick    # small sizes, 3 repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import inference  # noqa: F401  (float64)
from inference import mcmc
from pgm.conjugate import EightSchools, LogisticRegression, simulate


def direct(model, data, key, num_samples, num_warmup):
    from numpyro.infer import MCMC, NUTS

    runner = MCMC(NUTS(model), num_warmup=num_warmup, num_samples=num_samples, progress_bar=False)
    runner.run(jax.random.split(key)[1], extra_fields=("diverging", "accept_prob"), **data)
    return {k: np.asarray(v) for k, v in runner.get_samples().items()}


def ours(model, data, key, num_samples, num_warmup):
    return mcmc.nuts(model, data, key=key, num_samples=num_samples, num_warmup=num_warmup).samples


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def compare(name, model, data, key, num_samples, num_warmup, repeats):
    times = {"numpyro": [], "ours": []}
    for _ in range(repeats):  # interleaved, so that load drifts hit both alike
        t, a = timed(direct, model, data, key, num_samples, num_warmup)
        times["numpyro"].append(t)
        t, b = timed(ours, model, data, key, num_samples, num_warmup)
        times["ours"].append(t)
    same = all(np.array_equal(a[k], b[k]) for k in a)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name:28s} numpyro {med['numpyro']:8.3f} s   ours {med['ours']:8.3f} s   "
          f"ratio ours/numpyro {med['ours'] / med['numpyro']:.3f}   identical draws: {same}")
    return med["ours"] / med["numpyro"]


def main(args):
    key = jax.random.PRNGKey(0)
    n, d = (2000, 10) if args.quick else (10_000, 20)
    samples, warmup = (300, 300) if args.quick else (1000, 500)
    repeats = 3 if args.quick else args.repeats
    lr = LogisticRegression()
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (n, d)))
    y = np.asarray(simulate(lr.model, jax.random.PRNGKey(2), x=x)["y"])
    print(f"devices: {jax.devices()}  samples {samples}, warm-up {warmup}, median of {repeats}")
    compare(f"logistic N={n} D={d}", lr.model, {"x": x, "y": y}, key, samples, warmup, repeats)
    compare("eight schools (non-centred)", EightSchools(centered=False).model, EightSchools.data(), key,
            samples, warmup, repeats)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args())
