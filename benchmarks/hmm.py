"""HMM benchmark: genzoo (JAX kernels of inference.chain) beside hmmlearn on the same data.

K = 8 states; categorical emissions (M = 16 symbols) and diagonal Gaussian emissions (D = 4);
one sequence of T = 100,000 and a batch of 1,000 sequences of T = 100. For each: log-likelihood,
posterior marginals, Viterbi and one Baum-Welch iteration. Each of our timed calls does what a
user's call does (validation, emission log-likelihoods, the kernels, results back to NumPy).
Times are medians of ``--repeats`` runs after one warm-up call whose time (compilation included)
is reported separately; the ratio column is ours / hmmlearn's. ``--clock cpu`` times the
process's CPU seconds instead of wall seconds: on a machine shared with other work both programs
then lose nothing to waiting for a core (both run on one thread here).

    python benchmarks/hmm.py                # the full sizes
    python benchmarks/hmm.py --quick        # T = 10,000 and 100 x 100
    python benchmarks/hmm.py --clock cpu    # CPU seconds
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import inference  # noqa: F401  (float64)
from inference import chain
from pgm.hmm import HMM


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _median_seconds(fn, repeats, clock=time.perf_counter):
    start = clock()
    fn()
    first = clock() - start
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return first, statistics.median(times)


def _models(rng, K=8, M=16, D=4):
    pi = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), K) + 4 * np.eye(K)
    A /= A.sum(1, keepdims=True)
    cat = HMM.categorical(pi, A, rng.dirichlet(np.ones(M), K))
    gauss = HMM.gaussian(pi, A, rng.normal(size=(K, D)) * 2, rng.uniform(0.5, 2.0, (K, D)), "diag")
    return cat, gauss


def _peer(hmm):
    from hmmlearn import hmm as hl

    p = hmm.params
    K = hmm.num_states
    if hmm.emission.family == "categorical":
        peer = hl.CategoricalHMM(K, init_params="", params="ste", n_iter=1)
        peer.emissionprob_ = p["emission_probs"]
        peer.n_features = p["emission_probs"].shape[1]
    else:
        peer = hl.GaussianHMM(K, "diag", init_params="", params="stmc", n_iter=1, covars_prior=0.0)
        peer.means_, peer.covars_ = p["means"], p["covariances"]
    peer.startprob_, peer.transmat_ = p["initial_probs"], p["transition_matrix"]
    return peer


def run_case(hmm, x, repeats, clock=time.perf_counter):
    """Rows (operation, ours first call, ours median, peer median, ratio, max abs difference)."""
    import copy

    X = np.concatenate(list(x))
    X = X[:, None] if X.ndim == 1 else X
    lengths = [x.shape[1]] * x.shape[0]
    data = x if x.shape[0] > 1 else x[0]
    peer = _peer(hmm)

    ours = {
        "log-likelihood": lambda: np.sum(hmm.log_prob(data)),
        "posteriors": lambda: chain.marginals(hmm, data).marginals["z"],
        "viterbi": lambda: chain.map(hmm, data).map["z"],
        "EM iteration": lambda: hmm.from_stats(hmm.expected_stats(data)[0]).transition_matrix,
    }
    theirs = {
        "log-likelihood": lambda: peer.score(X, lengths),
        "posteriors": lambda: peer.predict_proba(X, lengths),
        "viterbi": lambda: peer.decode(X, lengths, algorithm="viterbi")[1],
        "EM iteration": lambda: copy.deepcopy(peer).fit(X, lengths).transmat_,
    }
    rows = []
    for name in ours:
        first, mine = _median_seconds(ours[name], repeats, clock)
        _, other = _median_seconds(theirs[name], repeats, clock)
        a = np.asarray(ours[name]()).reshape(-1)
        b = np.asarray(theirs[name]()).reshape(-1)
        if name == "viterbi":
            a = a[a >= 0]
        diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("nan")
        rows.append((name, first, mine, other, mine / other, diff))
    return rows


def main(args):
    rng = np.random.default_rng(args.seed)
    cat, gauss = _models(rng)
    T_long, n_batch, T_batch = (10_000, 100, 100) if args.quick else (100_000, 1_000, 100)
    print(f"{'case':<34}{'operation':<16}{'first s':>9}{'ours ms':>10}{'hmmlearn ms':>13}{'ratio':>8}{'max |diff|':>12}")
    results = {}
    for family, hmm in (("categorical M=16", cat), ("gaussian diag D=4", gauss)):
        for shape in ((1, T_long), (n_batch, T_batch)):
            x = hmm.sample(jax.random.PRNGKey(args.seed), shape[1], shape[0])["x"]
            label = f"{family}, {shape[0]} x T={shape[1]}"
            for row in run_case(hmm, x, args.repeats, CLOCKS[args.clock]):
                name, first, mine, other, ratio, diff = row
                results[(label, name)] = row
                print(f"{label:<34}{name:<16}{first:>9.2f}{mine * 1e3:>10.1f}{other * 1e3:>13.1f}{ratio:>8.2f}{diff:>12.2e}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall or CPU seconds")
    main(parser.parse_args())
