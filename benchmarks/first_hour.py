"""A new user's first and later ``genzoo compare`` runs, timed as they would see them.

Each run is the command itself (``python -m genzoo compare MODEL``) in a fresh process, its wall
time measured from outside:

- a *first* run starts with an empty cache folder (``GENZOO_CACHE`` set to a new temporary folder:
  no compiled programs, no reference, no timings of earlier runs), as after the set-up;
- *later* runs share one cache folder that a first run has filled.

Runs of the same code move by up to 40% between sessions of this project's 2-core machine (and by
10-20% within one), so a change is measured against the code before it in turns: ``--ref REF``
unpacks the packages at that git ref (``git archive``) into a temporary folder and runs them with
``PYTHONPATH`` pointing there, beside the working tree, in an order shuffled per round. The
table gives medians with their ranges and the ratio of the medians (ours / ref).

The goals of the first hour (the README's "first hour" section): 30 s for a first run of
``compare hmm`` or ``compare gmm`` and 10 s for a later one, on an idle 2-core machine.

    python benchmarks/first_hour.py                      # hmm and gmm: 2 first runs, 5 later runs
    python benchmarks/first_hour.py --ref 34f4cc5 --first 3 --later 5
    python benchmarks/first_hour.py --models hmm --quick  # one first run, two later runs
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("genzoo", "inference", "pgm", "deep")


def unpack(ref: str, into: pathlib.Path) -> pathlib.Path:
    """The project's packages at git ``ref``, unpacked under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *PACKAGES], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"--ref {ref!r}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def timed_run(model: str, cache: pathlib.Path, workdir: pathlib.Path, path: pathlib.Path | None) -> float:
    """Seconds of one ``genzoo compare model`` in a new process (its output discarded)."""
    env = dict(os.environ, GENZOO_CACHE=str(cache))
    env.pop("PYTHONPATH", None)
    if path is not None:  # the packages at the reference commit come first
        env["PYTHONPATH"] = str(path)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "genzoo", "compare", model], cwd=workdir, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"genzoo compare {model} failed ({'ref' if path else 'working tree'}):\n{done.stderr[-2000:]}")
    return seconds


def summary(times: list[float]) -> str:
    if not times:
        return "-"
    return f"{statistics.median(times):6.2f} s ({min(times):.2f}-{max(times):.2f}, n={len(times)})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hmm", "gmm"])
    parser.add_argument("--first", type=int, default=2, help="first runs (empty cache) per version")
    parser.add_argument("--later", type=int, default=5, help="later runs (filled cache) per version")
    parser.add_argument("--ref", help="a git ref whose packages run in turns with the working tree's")
    parser.add_argument("--quick", action="store_true", help="one first run and two later runs")
    parser.add_argument("--seed", type=int, default=0, help="the order of the versions in each round")
    args = parser.parse_args(argv)
    if args.quick:
        args.first, args.later = 1, 2
    if args.first < 1 or args.later < 0:
        parser.error(f"--first must be >= 1 (a later run needs a filled cache) and --later >= 0, "
                     f"got {args.first} and {args.later}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="genzoo-first-hour-") as tmp:
        tmp = pathlib.Path(tmp)
        versions = {"ours": None}
        if args.ref:
            versions[args.ref] = unpack(args.ref, tmp / "ref")
        workdir = tmp / "work"
        workdir.mkdir()
        rows = []
        for model in args.models:
            first = {v: [] for v in versions}
            later = {v: [] for v in versions}
            filled = {}
            for round_ in range(max(args.first, args.later)):
                order = list(versions)
                rng.shuffle(order)
                for version in order:
                    if round_ < args.first:
                        cache = tmp / f"cache-{model}-{version}-{round_}"
                        first[version].append(timed_run(model, cache, workdir, versions[version]))
                        filled.setdefault(version, cache)
                        print(f"{model} {version} first {first[version][-1]:.2f} s", flush=True)
                    if round_ < args.later:
                        if version not in filled:
                            filled[version] = tmp / f"cache-{model}-{version}-filled"
                            timed_run(model, filled[version], workdir, versions[version])
                        later[version].append(timed_run(model, filled[version], workdir, versions[version]))
                        print(f"{model} {version} later {later[version][-1]:.2f} s", flush=True)
            rows.append((model, first, later))
    print(f"\n{os.cpu_count()} cores; median (range, runs) of the wall time of `genzoo compare MODEL`")
    print(f"{'model':6s} {'version':10s} {'first run (empty cache)':32s} {'later run':32s}")
    for model, first, later in rows:
        for version in first:
            print(f"{model:6s} {version:10s} {summary(first[version]):32s} {summary(later[version]):32s}")
        if args.ref:
            ratio = [f"{statistics.median(t['ours']) / statistics.median(t[args.ref]):.3f}" if t["ours"] else "-"
                     for t in (first, later)]
            print(f"{model:6s} {'ours / ref':10s} {ratio[0]:32s} {ratio[1]:32s}")


if __name__ == "__main__":
    main()
