"""The deep zoo's table at full size: every family on the same 2-D densities and digits.

Runs the methods of ``genzoo compare deep`` (one per family, :mod:`deep.zoo_table`) and prints the
same long table (family x dataset: NLL with its kind, KL = NLL - H(p), MMD, W2, modes, training
seconds, seconds per 1,000 samples, network evaluations per sample), then the machine (cores, torch
threads, load) and the total wall and CPU time. ``--quick`` runs the CLI's quick sizes.

    python benchmarks/deep_table.py              # full sizes (deep.zoo_table.FULL)
    python benchmarks/deep_table.py --quick      # = genzoo compare deep --quick
    python benchmarks/deep_table.py --families gan,flow_matching --datasets ring
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from genzoo import compare
from genzoo.registry import RunConfig
from genzoo.zoo import ENTRIES


def machine(threads: int) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads by default, {threads} while a family trains "
            f"and samples); load average {load}")


def main(args) -> list:
    entry = ENTRIES["deep"]
    options = {"quick": int(args.quick), "datasets": args.datasets}
    methods = [m.strip() for m in args.families.split(",") if m.strip()] if args.families else \
        list(entry.comparable_methods)
    start, cpu = time.perf_counter(), time.process_time()
    problem = entry.problem(options, seed=args.seed)
    threads = problem.data["sizes"].threads
    print(machine(threads), flush=True)
    rows = compare.run_methods(entry, problem, methods, RunConfig(seed=args.seed, progress=not args.no_progress))
    print(compare.format_table(rows, f"deep: {problem.description}"))
    print(machine(threads))
    print(f"total: {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU (this process)")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CLI's quick sizes (deep.zoo_table.QUICK)")
    parser.add_argument("--families", default="", help="comma-separated families (default: all 14)")
    parser.add_argument("--datasets", default="8gaussians,checkerboard,ring,digits",
                        help="comma-separated: 8gaussians, checkerboard, ring, digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    main(parser.parse_args())
