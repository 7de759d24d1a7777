"""Training on data larger than memory: resident memory stays flat while time grows linearly.

Two workloads, each on a baseline data set and on one ten times larger, every run in a fresh
subprocess whose peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall
time are reported:

- ``vae``: the Pyro VAE (``deep.vae.VAE``, 8x8 binarised digits, z_dim 8, one hidden layer of 128)
  trained one epoch by the one training loop (:func:`inference.train.fit` with the ELBO step of
  :mod:`inference.objectives`) on a :class:`inference.shards.ShardedDataset`; beside it the same
  run with the data in memory (the arrays read whole), for contrast. The images are scikit-learn's
  digits binarised at 8/16, repeated with 5% of pixels flipped at random.
- ``lda``: online VB for LDA (Hoffman et al. 2010) on a bars corpus on disk, one pass, the
  documents read a minibatch at a time from the shards (the E-step of :mod:`pgm.topics.lda_vb`
  on each minibatch, then the natural-gradient step on :math:`\\lambda`); the topic error against
  the true bars (mean total variation after matching topics) is printed as a check. Beside it,
  for contrast, ``pgm.topics.lda_vb.variational_bayes(online=True)`` with the corpus in memory
  (one pass; its time includes compilation, its first-step column is 0).

Flat memory: peak RSS of the 10x run within 10% of the baseline's. Linear time: the 10x run takes
about ten times the baseline's (the ratio is printed). The first step (recording the VAE's loss,
compiling the E-step) is timed apart: it does not grow with the data.

Usage::

    python benchmarks/memory.py --quick            # 20k -> 200k images, 20k -> 200k documents
    python benchmarks/memory.py                    # 100k -> 1M images, 100k -> 1M documents
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent.parent


# =========================================================================== data on disk
def write_digits(folder, rows: int, seed: int, shard_rows: int = 10_000):
    """Binarised digits repeated to ``rows`` with 5% of pixels flipped, written shard by shard."""
    from sklearn.datasets import load_digits

    from inference.shards import write_shards

    base = (load_digits().images > 8).astype(np.float32).reshape(-1, 64)  # (1797, 64)

    def chunks():
        for i, lo in enumerate(range(0, rows, shard_rows)):
            rng = np.random.default_rng([seed, i])
            n = min(shard_rows, rows - lo)
            x = base[rng.integers(0, len(base), n)]  # (n, 64)
            flip = rng.random(x.shape) < 0.05
            yield {"x": np.where(flip, 1.0 - x, x).astype(np.float32).reshape(n, 8, 8)}

    return write_shards(folder, chunks())


def bars(side: int = 5) -> np.ndarray:
    topics = []
    for i in range(side):
        row, col = np.zeros((side, side)), np.zeros((side, side))
        row[i, :], col[:, i] = 1.0 / side, 1.0 / side
        topics += [row.ravel(), col.ravel()]
    return np.array(topics)  # (2 side, side^2)


def write_bars_corpus(folder, docs: int, seed: int, shard_rows: int = 10_000, length: int = 40, alpha: float = 0.5):
    """A bars corpus (LDA's own simulation: theta ~ Dir(alpha), words ~ Mult(length, theta @ topics))."""
    from inference.shards import write_shards

    topics = bars()

    def chunks():
        for i, lo in enumerate(range(0, docs, shard_rows)):
            rng = np.random.default_rng([seed, i])
            n = min(shard_rows, docs - lo)
            theta = rng.dirichlet(np.full(len(topics), alpha), size=n)  # (n, K)
            p = theta @ topics  # (n, V)
            yield {"counts": np.stack([rng.multinomial(length, q / q.sum()) for q in p]).astype(np.float32)}

    return write_shards(folder, chunks())


# =========================================================================== the runs (children)
def run_vae(folder, mode: str, batch_size: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from deep.vae import VAE
    from inference.objectives import ObjectiveStep
    from inference.shards import ShardedDataset
    from inference.train import fit

    data = ShardedDataset(folder)
    if mode == "memory":
        data = data.to_arrays()
    torch.manual_seed(0)
    model = VAE((8, 8), z_dim=8, hidden=(128,))
    step = ObjectiveStep(model, "elbo", lr=1e-3, jit="auto")
    marks = {}
    start = time.perf_counter()
    result = fit(step, data, seed=0, epochs=1, batch_size=batch_size,
                 callback=lambda n, losses: marks.setdefault(n, time.perf_counter()))
    end = time.perf_counter()
    return {"seconds": end - marks[1], "first_seconds": marks[1] - start, "rows": data.n if mode == "sharded" else len(data["x"]),
            "final_loss": float(np.mean(result.history[-20:]))}


def run_lda(folder, mode: str, batch_size: int) -> dict:
    import jax
    from scipy.optimize import linear_sum_assignment

    from inference.shards import ShardedDataset

    data = ShardedDataset(folder)
    start = time.perf_counter()
    if mode == "memory":  # the library's online VB with the whole corpus in memory, for contrast
        from pgm.topics import LDA
        from pgm.topics.lda_vb import variational_bayes

        result = variational_bayes(jax.random.PRNGKey(0), data.to_arrays()["counts"], LDA(10, 25, alpha=0.5, eta=0.1),
                                   online=True, max_iter=1, batch_size=batch_size, track_elbo=False)
        lam, first = result.params["lambda"], start
    else:
        from pgm.topics import LDA
        from pgm.topics.lda_vb import online_vb_stream

        streamed = online_vb_stream(jax.random.PRNGKey(0), data, LDA(10, 25, alpha=0.5, eta=0.1), batch_size=batch_size)
        lam, first = streamed.params["lambda"], start + streamed.diagnostics["first_step_seconds"]
    seconds, first_seconds = time.perf_counter() - first, first - start
    topics, truth = lam / lam.sum(1, keepdims=True), bars()
    tv = 0.5 * np.abs(topics[:, None, :] - truth[None, :, :]).sum(-1)  # (K, K)
    rows, cols = linear_sum_assignment(tv)
    return {"seconds": seconds, "first_seconds": first_seconds, "rows": data.n, "topic_tv": float(tv[rows, cols].mean())}


def child(args) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = (run_vae if args.child == "vae" else run_lda)(args.folder, args.mode, args.batch_size)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    out["rss_before_mb"] = before / 1024
    print("RESULT " + json.dumps(out), flush=True)


# =========================================================================== the driver
def measure(workload: str, folder, mode: str, batch_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", workload, "--folder", str(folder), "--mode", mode,
           "--batch-size", str(batch_size)]
    env = dict(os.environ, OMP_NUM_THREADS="1", XLA_FLAGS="--xla_cpu_multi_thread_eigen=false")
    proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, env=env)
    line = next((s for s in proc.stdout.splitlines() if s.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{workload} {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main(args) -> None:
    size = args.base or (20_000 if args.quick else 100_000)
    base = {"vae": size, "lda": size}
    workloads = [w for w in ("vae", "lda") if w in args.workloads]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        print(f"{'workload':<8} {'data':<8} {'rows':>9} {'disk MB':>8} {'first (s)':>9} {'rest (s)':>8} "
              f"{'peak RSS MB':>11}  check")
        for workload in workloads:
            results = {}
            for scale in (1, 10):
                rows = base[workload] * scale
                folder = pathlib.Path(tmp) / f"{workload}-{scale}"
                data = (write_digits if workload == "vae" else write_bars_corpus)(folder, rows, seed=scale)
                disk = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
                modes = ["sharded", "memory"] if args.contrast else ["sharded"]
                for mode in modes:
                    r = measure(workload, folder, mode, args.batch_size if workload == "vae" else args.lda_batch_size)
                    results[(scale, mode)] = r
                    check = (f"loss {r['final_loss']:.2f}" if workload == "vae" else f"topic TV {r['topic_tv']:.3f}")
                    print(f"{workload:<8} {mode:<8} {data.n:>9,} {disk:>8.1f} {r['first_seconds']:>9.2f} {r['seconds']:>8.2f} "
                          f"{r['peak_rss_mb']:>11.1f}  {check}", flush=True)
            a, b = results[(1, "sharded")], results[(10, "sharded")]
            print(f"{workload}: sharded 10x / 1x: peak RSS {b['peak_rss_mb'] / a['peak_rss_mb']:.3f} "
                  f"(goal <= 1.10), time after the first step {b['seconds'] / a['seconds']:.2f} (linear: 10)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="baselines of 20,000 rows (else 100,000)")
    parser.add_argument("--base", type=int, default=None, help="baseline rows (overrides --quick)")
    parser.add_argument("--workloads", default="vae,lda")
    parser.add_argument("--batch-size", type=int, default=500, help="VAE minibatch (default 500)")
    parser.add_argument("--lda-batch-size", type=int, default=100, help="online VB minibatch of documents (default 100)")
    parser.add_argument("--no-contrast", dest="contrast", action="store_false",
                        help="skip the runs with the data in memory")
    parser.add_argument("--tmp", default=None, help="where the shards are written (default: the system's)")
    parser.add_argument("--child", choices=["vae", "lda"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="sharded", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        main(args)
