"""Our times before and after a change, in one process: the regression check of a refactor.

Two runs of ``benchmarks/hmm.py`` (or ``bayesnet.py``, ``mixtures.py``) in two processes do not
compare two versions of the code: the same code, run in separate processes, moves a cell's time by
a median factor of 1.18 and up to 2.4 on this project's 2-core machine (memory layout, XLA's
thread pool and the peer's own spread differ from process to process). So this script loads the
package as it was at a git ref beside the working tree's, in the same process:

- ``git archive REF pgm deep inference genzoo`` is unpacked into a temporary folder and every
  ``from pgm... import`` (``deep``, ``inference``, ``genzoo``) is rewritten to ``before_pgm``...,
  so the old code imports only old code (the packages import each other with ``from`` statements
  only; the rewrite refuses a tree that does otherwise);
- each cell of the HMM, Bayesian-network and GMM benchmarks is built once per version, from the same
  data, and both versions' answers are checked equal;
- each round times before, after and the peer once each, in an order shuffled per round, so slow
  drift of the machine falls on all three alike; a call shorter than ``--min-ms`` is repeated
  within its measurement.

The table prints, per cell, the medians over rounds; ``after / before``, the median of the per-round
paired ratios (each round times both versions back to back, so this is the paired design's
estimate), with their interquartile range and, beside it, the ratio of the two medians; and ours /
peer before and after. In one process the peer is the same for both, so the change in a ratio
against the peer is after / before. ``--save`` keeps the raw times; ``--pool`` puts the rounds of
several processes together.

    python benchmarks/before_after.py 7aea361              # every cell, 15 rounds
    python benchmarks/before_after.py 7aea361 --only hmm --rounds 5
    python benchmarks/before_after.py 7aea361 --save run1.json     # one process of several ...
    python benchmarks/before_after.py --pool run1.json run2.json   # ... and their rounds together
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import pathlib
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from types import SimpleNamespace

import numpy as np

PACKAGES = ("pgm", "deep", "inference", "genzoo")
PREFIX = "before_"
REPO = pathlib.Path(__file__).resolve().parent.parent
_FROM = re.compile(r"^(\s*from\s+)(" + "|".join(PACKAGES) + r")(\b)", re.MULTILINE)
_IMPORT = re.compile(r"^\s*import\s+(" + "|".join(PACKAGES) + r")\b", re.MULTILINE)


def unpack_ref(ref: str, folder: pathlib.Path) -> None:
    """The packages at ``ref``, renamed ``before_*``, with their imports rewritten to match."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, *PACKAGES], check=True,
                             capture_output=True).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(folder, filter="data")
    for name in PACKAGES:
        (folder / name).rename(folder / (PREFIX + name))
    for path in folder.rglob("*.py"):
        text = path.read_text()
        if _IMPORT.search(text):
            raise SystemExit(f"{path}: a plain 'import' of a project package; this rewrite handles 'from' imports only")
        path.write_text(_FROM.sub(lambda m: m.group(1) + PREFIX + m.group(2) + m.group(3), text))


def load(prefix: str) -> SimpleNamespace:
    """The modules the benchmarks call, from the working tree (prefix "") or the old ref."""
    mod = lambda name: importlib.import_module(prefix + name)  # noqa: E731
    mixture = mod("pgm.mixture")
    return SimpleNamespace(
        chain=mod("inference.chain"), exact=mod("inference.exact"), em=mod("inference.em"),
        HMM=mod("pgm.hmm").HMM, BayesNet=mod("pgm.bayesnet").BayesNet, mixture=mixture,
    )


# --------------------------------------------------------------------------- cells
class Cell:
    def __init__(self, group, name, before, after, peer=None, check=None):
        self.group, self.name = group, name
        self.fns = {"before": before, "after": after}
        if peer is not None:
            self.fns["peer"] = peer
        self.check, self.diff = check, float("nan")
        self.inner, self.times = {}, {label: [] for label in self.fns}


def hmm_cells(versions, seed):
    import jax

    sys.path.insert(0, str(REPO / "benchmarks"))
    import hmm as bench  # the HMM benchmark's models and peer set-up

    rng = np.random.default_rng(seed)
    cat, gauss = bench._models(rng)
    cells = []
    for family, model in (("categorical M=16", cat), ("gaussian diag D=4", gauss)):
        for n, T in ((1, 100_000), (1_000, 100)):
            x = np.asarray(model.sample(jax.random.PRNGKey(seed), T, n)["x"])
            data = x if n > 1 else x[0]
            X = np.concatenate(list(x))
            X = X[:, None] if X.ndim == 1 else X
            lengths = [T] * n
            peer = bench._peer(model)
            ops = {}
            for label, v in versions.items():
                m = _rebuild_hmm(v.HMM, model)
                ops[label] = {
                    "log-likelihood": lambda m=m, d=data: np.sum(m.log_prob(d)),
                    "posteriors": lambda m=m, v=v, d=data: np.asarray(v.chain.marginals(m, d).marginals["z"]),
                    "viterbi": lambda m=m, v=v, d=data: np.asarray(v.chain.map(m, d).map["z"]),
                    "EM iteration": lambda m=m, d=data: np.asarray(m.from_stats(m.expected_stats(d)[0]).transition_matrix),
                }
            theirs = {  # default arguments bind this case's data (the loop rebinds the names)
                "log-likelihood": lambda p=peer, X=X, n=lengths: p.score(X, n),
                "posteriors": lambda p=peer, X=X, n=lengths: p.predict_proba(X, n),
                "viterbi": lambda p=peer, X=X, n=lengths: p.decode(X, n, algorithm="viterbi")[1],
                "EM iteration": lambda p=peer, X=X, n=lengths: copy.deepcopy(p).fit(X, n).transmat_,
            }
            for op in theirs:
                cells.append(Cell("hmm", f"{family}, {n} x T={T}: {op}", ops["before"][op], ops["after"][op],
                                  theirs[op], check=_equal))
    return cells


def _rebuild_hmm(HMM, model):
    p = model.params
    if model.emission.family == "categorical":
        return HMM.categorical(p["initial_probs"], p["transition_matrix"], p["emission_probs"])
    return HMM.gaussian(p["initial_probs"], p["transition_matrix"], p["means"], p["covariances"], "diag")


def bn_cells(versions, seed, networks):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bayesnet as bench

    from genzoo.data import bn_network_path

    cells = []
    for name in networks:
        graphs = {label: v.BayesNet.from_bif(bn_network_path(name)).factor_graph() for label, v in versions.items()}
        evidence = bench.pick_evidence(graphs["after"], seed)
        fns = {label: (lambda v=v, g=graphs[label], e=evidence: v.exact.marginals(g, e).marginals)
               for label, v in versions.items()}
        made = bench.pyagrum_query(name, graphs["after"], evidence)
        peer = made[1] if made is not None else None
        cells.append(Cell("bayesnet", f"{name}: all marginals", fns["before"], fns["after"], peer, check=_equal_dicts))
    return cells


def gmm_cells(versions, seed, iterations):
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(REPO / "benchmarks"))
    import mixtures as bench

    x = bench.simulate(seed, 100_000, 10, 8)
    start = versions["after"].mixture.GaussianMixture.initialize(jax.random.PRNGKey(seed), x, 8, "full")
    xj = jnp.asarray(x)
    kernels, fits = {}, {}
    for label, v in versions.items():
        mix = v.mixture
        s = mix.GaussianMixture(start.weights, start.means, start.covariances, "full")

        def run_kernels(mix=mix, s=s):  # benchmarks/mixtures.py's `ours`, on this version's kernels
            w, mu, cov = jnp.asarray(s.weights), jnp.asarray(s.means), jnp.asarray(s.covariances)
            for _ in range(iterations):
                stats, _ = mix.gmm_e_step(xj, jnp.log(w), mu, mix.precision_cholesky(cov, "full"), "full")
                w, mu, cov = mix.gmm_m_step(*stats, s.reg_covar, "full")
            return np.asarray(cov)

        kernels[label] = run_kernels
        fits[label] = lambda v=v, s=s: np.asarray(v.em.fit(s, x, max_iter=iterations, tol=-np.inf).params.covariances)
    peer = lambda: bench.peer(start, x, iterations).covariances_  # noqa: E731
    return [
        Cell("gmm", f"EM kernels, {iterations} iterations", kernels["before"], kernels["after"], peer, check=_equal),
        Cell("gmm", f"inference.em.fit, {iterations} iterations", fits["before"], fits["after"], peer, check=_equal),
    ]


def _equal(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))


def _equal_dicts(a, b):
    return max(_equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- timing
def _once(fn, inner):
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def warm_up(cell, min_ms, peer_max_s):
    """Compile, check the two versions agree, and pick each side's inner repeat count."""
    outs = {}
    for label, fn in cell.fns.items():
        fn()
        start = time.perf_counter()
        outs[label] = fn()
        seconds = time.perf_counter() - start
        cell.inner[label] = max(1, math.ceil(min_ms / 1e3 / max(seconds, 1e-6)))
        if label == "peer" and seconds > peer_max_s:
            cell.inner[label] = 0  # timed in the first rounds only (see run)
    cell.diff = cell.check(outs["before"], outs["after"]) if cell.check else float("nan")


def run(cells, rounds, seed, min_ms, peer_rounds):
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        t0 = time.perf_counter()
        for cell in cells:
            labels = list(cell.fns)
            for i in rng.permutation(len(labels)):
                label = labels[i]
                inner = cell.inner[label]
                if inner == 0:
                    if r >= peer_rounds:
                        continue
                    inner = 1
                cell.times[label].append(_once(cell.fns[label], inner))
        print(f"round {r + 1}/{rounds}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def summarise(cells):
    """Print the table; return each cell's median of the per-round paired ratios after / before."""
    head = (f"{'cell':<52}{'before ms':>10}{'after ms':>10}{'peer ms':>10}{'after/before':>13}{'IQR':>12}"
            f"{'of medians':>11}{'ours/peer before':>17}{'after':>7}{'max|d|':>9}")
    print(head)
    print("-" * len(head))
    ratios = []
    for cell in cells:
        before, after = cell.times["before"], cell.times["after"]
        b, a = statistics.median(before), statistics.median(after)
        # the paired design's estimate: each round times both versions back to back
        paired = [x / y for x, y in zip(after, before)]
        ratio = statistics.median(paired)
        q1, q3 = np.quantile(paired, [0.25, 0.75])
        ratios.append(ratio)
        p = statistics.median(cell.times["peer"]) if cell.times.get("peer") else float("nan")
        print(f"{cell.name[:51]:<52}{b * 1e3:>10.2f}{a * 1e3:>10.2f}{p * 1e3:>10.1f}{ratio:>13.3f}"
              f"{f'{q1:.2f}-{q3:.2f}':>12}{a / b:>11.3f}{b / p:>17.3f}{a / p:>7.3f}{cell.diff:>9.1e}")
    ratios = np.array(ratios)
    within = int(np.sum(np.abs(ratios - 1) <= 0.10))
    print(f"\n{within} of {len(ratios)} cells within 10% (median paired after / before in [0.90, 1.10]); "
          f"geometric mean {math.exp(np.mean(np.log(ratios))):.3f}; range {ratios.min():.3f}-{ratios.max():.3f}")
    return ratios


def save(cells, path):
    """The raw times (seconds per call) of every cell, for pooling runs of several processes."""
    with open(path, "w") as handle:
        json.dump([{"group": c.group, "name": c.name, "diff": c.diff, "times": c.times} for c in cells], handle)


def pool(paths):
    """One table from the saved runs of several processes: every cell's rounds put together."""
    cells = None
    for path in paths:
        with open(path) as handle:
            saved = json.load(handle)
        if cells is None:
            cells = [Cell(s["group"], s["name"], None, None, peer=(lambda: None) if s["times"].get("peer") else None)
                     for s in saved]
            for cell, s in zip(cells, saved):
                cell.diff = s["diff"]
        for cell, s in zip(cells, saved):
            if s["name"] != cell.name:
                raise SystemExit(f"{path}: cells differ from {paths[0]}'s ({s['name']!r})")
            for label, times in s["times"].items():
                cell.times[label] += times
    print(f"{len(paths)} runs pooled: {', '.join(map(str, paths))}")
    return summarise(cells)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ref", nargs="?", help="the git ref to compare the working tree with (the 'before')")
    p.add_argument("--save", metavar="JSON", help="write every cell's raw times here")
    p.add_argument("--pool", nargs="+", metavar="JSON", help="print one table from runs saved by --save; no timing")
    p.add_argument("--only", nargs="+", choices=("hmm", "bayesnet", "gmm"), default=("hmm", "bayesnet", "gmm"))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--networks", nargs="+", default=["alarm", "win95pts", "hepar2", "andes", "munin"])
    p.add_argument("--gmm-iterations", type=int, default=10)
    p.add_argument("--min-ms", type=float, default=20.0, help="shorter calls are repeated within one measurement")
    p.add_argument("--peer-max-s", type=float, default=2.0, help="a slower peer call is timed in --peer-rounds rounds only")
    p.add_argument("--peer-rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.pool:
        return None, pool(args.pool)
    if args.ref is None:
        p.error("give the git ref to compare with (or --pool)")
    if args.rounds < 1 or args.gmm_iterations < 1 or args.peer_rounds < 1:
        p.error("--rounds, --gmm-iterations and --peer-rounds must be at least 1")

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="genzoo-before-") as folder:
        unpack_ref(args.ref, pathlib.Path(folder))
        sys.path.insert(0, folder)
        import inference  # noqa: F401  (float64, as the benchmarks run)

        versions = {"before": load(PREFIX), "after": load("")}
        print(f"before: {pathlib.Path(versions['before'].exact.__file__).parent}", file=sys.stderr)
        cells = []
        if "hmm" in args.only:
            cells += hmm_cells(versions, args.seed)
        if "bayesnet" in args.only:
            cells += bn_cells(versions, args.seed, args.networks)
        if "gmm" in args.only:
            cells += gmm_cells(versions, args.seed, args.gmm_iterations)
        for cell in cells:
            warm_up(cell, args.min_ms, args.peer_max_s)
            print(f"warmed {cell.name} (before and after differ by {cell.diff:.1e})", file=sys.stderr, flush=True)
        run(cells, args.rounds, args.seed, args.min_ms, args.peer_rounds)
    if args.save:
        save(cells, args.save)
    print(f"before = {args.ref}, after = the working tree; {args.rounds} rounds, medians")
    return cells, summarise(cells)

if __name__ == "__main__":
    main()
