"""Sweeps: a grid of (method, seed, option values) on one model, one after another or as Ray tasks.

A comparison of inference methods is honest when it is repeated: several seeds per method, several
option values (network, data size...). A sweep runs the grid

.. math::  \\{\\text{methods}\\} \\times \\prod_o \\{\\text{values of option } o\\} \\times \\{\\text{seeds}\\}

and measures every cell as ``genzoo compare`` does (:func:`genzoo.compare.run_methods`): the
problem is built from the cell's options and seed, the model's exact method (where it has one)
answers it, the cell's method answers it with the same seed, and the errors against the exact
answer and the seconds are recorded. For each method and option values, the summary gives over the
:math:`S` seeds the mean :math:`\\bar e = \\frac1S\\sum_s e_s` and the sample standard deviation
:math:`\\sqrt{\\frac{1}{S-1}\\sum_s (e_s - \\bar e)^2}` of every error and of the seconds.

How a sweep goes (:func:`sweep`):

1. Check the grid (unknown model, method or option fail before any work) and write it to
   ``OUT/sweep.json``; a folder that holds another grid is refused.
2. Read the cells already finished (``OUT/cells/<cell>.json``): they are not run again, so a sweep
   interrupted at any point (even by SIGKILL) and started again with the same folder computes
   only the missing cells.
3. Run the missing cells: in this process one after another (``ray=None``), or as Ray tasks on a
   local cluster started for the sweep (``ray="local"``, one worker per core) or on an existing
   one (``ray="ADDRESS"``). A task whose worker dies is run again (Ray's ``max_retries``). Each
   finished cell is written at once, atomically (:func:`inference.io.atomic_write`).
4. Write ``results.csv`` (a row per cell), ``summary.csv`` and ``summary.txt`` (a row per method
   and option values) and ``sweep.png`` (mean error against mean seconds, with error bars of one
   standard deviation across seeds).

References:
    Moritz et al. (2018). Ray: a distributed framework for emerging AI applications. OSDI.
    (Tasks, retries of tasks whose worker died.)

Example:
    >>> import tempfile
    >>> from genzoo.sweep import sweep
    >>> run = sweep("bayesnet", ["junction_tree"], seeds=[0, 1], options={"network": ["asia"]},
    ...             out=tempfile.mkdtemp(), warm=False)
    >>> len(run.rows), run.computed == [r["cell"] for r in run.rows]
    (2, True)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import pathlib
import re
import socket
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from inference.errors import DataError, MissingPackageError, SweepError, UnknownNameError
from inference.io import atomic_write

__all__ = ["sweep", "SweepRun", "SweepError", "Cell", "parse_seeds", "parse_set", "format_summary", "connect",
           "compare_models", "run_cell", "grid"]

METRICS = ("max_abs_marginal", "mean_tv", "max_z_mean", "abs_log_evidence")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: a method, option values and a seed."""

    method: str
    options: tuple  # ((name, value), ...) in the grid's option order
    seed: int

    @property
    def id(self) -> str:
        """A file-name-safe identity, e.g. ``gibbs__network=asia__seed3``."""
        parts = [self.method, *(f"{k}={v}" for k, v in self.options), f"seed{self.seed}"]
        return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "__".join(map(str, parts)))


@dataclasses.dataclass
class SweepRun:
    """What a sweep left in its folder.

    Attributes:
        folder: the run folder. rows: one dict per cell (grid order): ``cell``, ``method``,
            ``seed``, the options, ``seconds``, the errors, ``log_evidence``, the scores.
        summary: one dict per method and option values: ``n`` (seeds) and ``<column>_mean``,
            ``<column>_sd`` for the seconds and every error. computed: the cells this call ran;
            reused: the cells found finished in the folder. table: the summary as text.
    """

    folder: pathlib.Path
    rows: list[dict]
    summary: list[dict]
    computed: list[str]
    reused: list[str]
    table: str


# =========================================================================== parsing (for the CLI)
def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9, ``"0,3,5"``, or both (``"0-2,7"``); a DataError names a bad item.

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]
    """
    seeds: list[int] = []
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise DataError(f"--seeds: {item!r} is not a seed or a range LOW-HIGH of non-negative integers")
        seeds += list(range(int(match[1]), int(match[2] or match[1]) + 1))
    if not seeds:
        raise DataError("--seeds: no seed given")
    return list(dict.fromkeys(seeds))


def parse_set(items: Iterable[str]) -> dict[str, list[str]]:
    """``["network=asia,sachs", "n=10"]`` -> ``{"network": ["asia", "sachs"], "n": ["10"]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = str(item).partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not vals:
            raise DataError(f"--set: {item!r} is not of the form OPTION=VALUE[,VALUE...]")
        grid[name] = vals
    return grid


# =========================================================================== one cell
def _entry(model):
    from genzoo.registry import ModelEntry, lookup

    if isinstance(model, ModelEntry):
        return model
    from genzoo.zoo import ENTRIES

    return lookup(str(model), ENTRIES)


def run_cell(model: str, method: str, options: Mapping[str, Any], seed: int, steps: int | None = None,
             warm: bool = False) -> dict:
    """Measure one cell: build the problem, run the exact method and ``method``, compare them.

    Returns a JSON-able dict: ``metrics`` (the :class:`genzoo.compare.Row` of ``method``, its
    Result dropped) and where it ran (``host``, ``pid``).
    """
    from genzoo import compare
    from genzoo.registry import RunConfig

    entry = _entry(model)
    problem = entry.problem(dict(options), seed=seed)
    config = RunConfig(seed=seed, steps=steps, progress=False)
    rows = compare.run_methods(entry, problem, [method], config, warm=warm)
    row = next(r for r in rows if r.method == method)
    return {"metrics": _jsonable(row.metrics()), "problem": problem.description,
            "host": socket.gethostname(), "pid": os.getpid()}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    return obj


def _cell_task(model, cell: Cell, steps, warm, fault_dir):
    """A Ray task: one cell. With ``fault_dir`` set (fault injection), the first attempt at this cell
    kills its own worker process (``os._exit``) after leaving a marker, so that Ray retries it."""
    attempt = 1
    if fault_dir is not None:
        marker = pathlib.Path(fault_dir) / f"{cell.id}.attempts"
        marker.parent.mkdir(parents=True, exist_ok=True)
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        attempt = len(marker.read_text().split())
        if attempt == 1:
            os._exit(1)  # the worker dies: a system failure, which Ray retries
    record = run_cell(model, cell.method, dict(cell.options), cell.seed, steps, warm)
    record["attempt"] = attempt
    return record


# =========================================================================== Ray
def connect(address: str | None, num_cpus: int | None = None):
    """Connect to Ray: ``"local"`` starts a cluster of ``num_cpus`` workers (default: the cores)
    without dashboard, another string is a cluster's address. An already connected process keeps
    its connection. Returns ``(ray, started)``: ``started`` says whether the caller must shut it down.
    """
    try:
        import ray
    except ImportError:
        err = MissingPackageError("ray", "running on Ray (--ray)")
        err.msg = ("running on Ray (--ray) needs the package 'ray', which is not installed: "
                   "pip install 'genzoo[distributed]' (or pip install ray)")  # ImportError prints .msg
        err.args = (err.msg,)
        raise err from None
    if ray.is_initialized():
        return ray, False
    with warnings.catch_warnings():
        # JAX warns on any os.fork; Ray's processes are started by subprocess (fork then exec at once)
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        if address == "local":
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    return ray, True


def _run_ray(ray, model, todo: Sequence[Cell], steps, warm, max_retries, fault_dir, faults, done: Callable):
    task = ray.remote(max_retries=max_retries, retry_exceptions=False)(_cell_task)
    pending = {task.remote(model, cell, steps, warm, fault_dir if cell.id in faults else None): cell
               for cell in todo}
    failures = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        cell = pending.pop(ready[0])
        try:
            done(cell, ray.get(ready[0]))
        except Exception as err:  # noqa: BLE001 - a failed cell is reported with the others
            failures.append((cell, err))
    return failures


# =========================================================================== compare --all on Ray
def compare_task(model: str, methods: Sequence[str] | None, options: Mapping[str, Any], seed: int,
                 steps: int | None, warm: bool) -> tuple[str, list]:
    """``genzoo compare`` of one model, as a task: ``(problem description, rows)``, the rows without
    their Results (only their figures travel back)."""
    from genzoo import compare
    from genzoo.registry import RunConfig

    entry = _entry(model)
    methods = list(methods) if methods else list(entry.comparable_methods)
    problem = entry.problem(dict(options), seed=seed)
    config = RunConfig(seed=seed, steps=steps, progress=False)
    rows = compare.run_methods(entry, problem, methods, config, warm=warm)
    return problem.description, [dataclasses.replace(r, result=None) for r in rows]


def compare_models(jobs: Mapping[str, Mapping[str, Any]], *, seed: int, ray: str, num_cpus: int | None = None,
                   warm: bool = False, max_retries: int = 3, progress: bool = False):
    """Run ``genzoo compare`` on several models at once as Ray tasks (``genzoo compare --all --ray``).

    Args:
        jobs: model name -> ``{"options": {...}, "steps": int | None, "methods": [...] | None}``.
        seed, warm: as in ``genzoo compare``. ray, num_cpus, max_retries: as in :func:`sweep`.

    Yields ``(model, problem description, rows)`` as the models finish (the order of ``jobs`` is
    not kept: the first finished comes first).
    """
    from tqdm.auto import tqdm

    for name in jobs:
        _entry(name)  # unknown models fail before any work
    ray_mod, started = connect(ray, num_cpus)
    try:
        task = ray_mod.remote(max_retries=max_retries, retry_exceptions=False)(compare_task)
        pending = {task.remote(name, job.get("methods"), job.get("options", {}), seed, job.get("steps"), warm): name
                   for name, job in jobs.items()}
        with tqdm(total=len(pending), desc="compare --all", disable=not progress) as bar:
            while pending:
                ready, _ = ray_mod.wait(list(pending), num_returns=1)
                name = pending.pop(ready[0])
                description, rows = ray_mod.get(ready[0])
                bar.update(1)
                yield name, description, rows
    finally:
        if started:
            ray_mod.shutdown()


# =========================================================================== the sweep
def grid(model, methods: Sequence[str], seeds: Iterable[int], options: Mapping[str, Any] | None = None) -> list[Cell]:
    """The sweep's cells in order (methods, then option values, then seeds), checked: an unknown
    method or option, no seed, or two cells of one name is an error before any work."""
    return _grid(_entry(model), list(methods), list(seeds), dict(options or {}))


def _grid(entry, methods, seeds, options) -> list[Cell]:
    for name in methods:
        entry.method(name)  # unknown methods fail before any work
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise UnknownNameError(f"model {entry.name!r} has no option --{unknown[0]}; its options: "
                               + (", ".join(f"--{k}" for k in entry.options) or "none"))
    if not methods:
        raise DataError("methods: give at least one method")
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds):
        raise DataError(f"seeds must be non-negative integers, got {seeds!r}")
    names = list(options)
    values = [list(options[k]) if isinstance(options[k], (list, tuple)) else [options[k]] for k in names]
    for k, v in zip(names, values):
        if not v:
            raise DataError(f"option {k!r}: no value given")
    cells = [Cell(m, tuple(zip(names, combo)), s)
             for m in methods for combo in itertools.product(*values) for s in seeds]
    ids: dict[str, Cell] = {}
    for cell in cells:
        if cell.id in ids:
            raise DataError(f"two cells of the grid share the name {cell.id!r} ({ids[cell.id]} and {cell}): "
                            "repeated methods, seeds or option values")
        ids[cell.id] = cell
    return cells


def sweep(
    model,
    methods: Sequence[str],
    seeds: Iterable[int],
    options: Mapping[str, Any] | None = None,
    out=None,
    *,
    ray: str | None = None,
    num_cpus: int | None = None,
    steps: int | None = None,
    warm: bool = False,
    max_retries: int = 3,
    kill_first_attempt: Iterable[str] = (),
    progress: bool = False,
    callback: Callable[[str, dict], None] | None = None,
) -> SweepRun:
    """Run the grid of ``methods`` x option values x ``seeds`` on ``model`` (module docstring).

    Args:
        model: a registry name (``"bayesnet"``) or a :class:`~genzoo.registry.ModelEntry`.
        methods: the methods' names.
        seeds: the seeds (each builds the problem and seeds the method, as ``genzoo compare --seed``).
        options: option -> a value or a list of values; the grid takes every combination.
        out: the run folder (created; a folder of the same grid is resumed).
        ray: None (cells in this process), ``"local"`` (a local Ray cluster for the sweep) or a
            Ray cluster's address.
        num_cpus: workers of a local cluster (default: the cores).
        steps: the methods' step / sample budget (each method's default when None).
        warm: run each method twice per cell and time the second (compiled) call; by default the
            first call is timed, compilation included (as ``genzoo compare`` without ``--warm``).
        max_retries: Ray's retries of a task whose worker died.
        kill_first_attempt: fault injection for tests (Ray only): the ids of cells whose first
            attempt kills its worker.
        progress: a progress bar over the cells.
        callback: ``callback(cell_id, record)`` after each cell is written.

    Returns:
        A :class:`SweepRun`. Raises :class:`SweepError` naming the cells that failed (after the
        others are written).
    """
    from tqdm.auto import tqdm

    entry = _entry(model)
    options = dict(options or {})
    methods = list(methods)
    cells = _grid(entry, methods, seeds, options)
    if out is None:
        raise DataError("out: give the sweep's run folder")
    folder = pathlib.Path(out)
    faults = set(kill_first_attempt)
    if faults and ray is None:
        raise DataError("kill_first_attempt kills a Ray worker: it needs ray='local' or an address")
    unknown = sorted(faults - {c.id for c in cells})
    if unknown:
        raise DataError(f"kill_first_attempt: {unknown[0]!r} is not a cell of this sweep")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise DataError(f"max_retries must be a non-negative integer, got {max_retries!r}")

    # 1. the grid, written once; another grid in the same folder is refused
    spec = {"model": entry.name, "methods": methods, "seeds": sorted({c.seed for c in cells}),
            "options": {k: [str(v) for v in (vs if isinstance(vs, (list, tuple)) else [vs])] for k, vs in options.items()},
            "steps": steps, "warm": warm}
    spec_path = folder / "sweep.json"
    if spec_path.exists():
        try:
            saved = json.loads(spec_path.read_text())
        except (OSError, ValueError) as err:
            raise DataError(f"{spec_path}: unreadable sweep description ({err})") from None
        diff = sorted(k for k in set(spec) | set(saved) if spec.get(k) != saved.get(k))
        if diff:
            raise DataError(f"{folder} holds another sweep (it differs in {', '.join(diff)}: "
                            f"{ {k: saved.get(k) for k in diff} }); give another folder")
    else:
        atomic_write(spec_path, json.dumps(spec, indent=2) + "\n")

    # 2. cells already finished
    cell_dir = folder / "cells"
    records: dict[str, dict] = {}
    for cell in cells:
        path = cell_dir / f"{cell.id}.json"
        if path.exists():
            try:
                records[cell.id] = json.loads(path.read_text())
            except ValueError:
                pass  # written atomically, so never torn; a hand-edited file is recomputed
    reused = [c.id for c in cells if c.id in records]
    todo = [c for c in cells if c.id not in records]

    # 3. the missing cells
    computed: list[str] = []
    bar = tqdm(total=len(cells), initial=len(reused), desc=f"sweep {entry.name}", disable=not progress)

    def done(cell: Cell, record: dict):
        record = {"cell": cell.id, "model": entry.name, "method": cell.method, "seed": cell.seed,
                  "options": {k: str(v) for k, v in cell.options}, "steps": steps, **record}
        atomic_write(cell_dir / f"{cell.id}.json", json.dumps(record, indent=1) + "\n")
        records[cell.id] = record
        computed.append(cell.id)
        bar.update(1)
        if callback is not None:
            callback(cell.id, record)

    failures = []
    try:
        if ray is None:
            for cell in todo:
                try:
                    record = run_cell(entry.name, cell.method, dict(cell.options), cell.seed, steps, warm)
                except Exception as err:  # noqa: BLE001 - reported with the other failures
                    failures.append((cell, err))
                    continue
                done(cell, record)
        elif todo:
            ray_mod, started = connect(ray, num_cpus)
            try:
                failures = _run_ray(ray_mod, entry.name, todo, steps, warm, max_retries, str(folder / ".faults"),
                                    faults, done)
            finally:
                if started:
                    ray_mod.shutdown()
    finally:
        bar.close()

    # 4. tables and plot over the finished cells
    rows = [_row(records[c.id], list(options)) for c in cells if c.id in records]
    summary = _summary(rows, list(options))
    table = format_summary(summary, list(options), f"{entry.name}: {len(rows)} cells of {len(cells)}")
    _write_tables(folder, rows, summary, table)
    if rows:
        _plot(summary, list(options), folder / "sweep.png", table.splitlines()[0])
    if failures:
        cell, err = failures[0]
        raise SweepError(f"{len(failures)} of {len(cells)} cells failed, e.g. {cell.id}: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''} (finished cells are in {folder}; "
                         "run the same sweep again to retry the others)")
    return SweepRun(folder, rows, summary, computed, reused, table)


# =========================================================================== tables and plot
def _number(value):
    if value is None:
        return None
    if isinstance(value, str):  # inf / nan written as text
        try:
            return float(value)
        except ValueError:
            return None
    return float(value)


def _row(record: dict, option_names: list[str]) -> dict:
    m = record["metrics"]
    row = {"cell": record["cell"], "method": record["method"], "seed": record["seed"]}
    row.update({k: record["options"].get(k) for k in option_names})
    row["seconds"] = _number(m.get("seconds"))
    row.update({k: _number(m.get(k)) for k in METRICS})
    row["log_evidence"] = _number(m.get("log_evidence"))
    row["log_evidence_kind"] = m.get("log_evidence_kind")
    row.update({f"score:{k}": _number(v) for k, v in (m.get("scores") or {}).items()})
    return row


def _columns(rows) -> list[str]:
    """The numeric columns summarised: seconds, then the errors and scores some row has."""
    extra = list(dict.fromkeys(k for r in rows for k in r if k.startswith("score:")))
    return ["seconds"] + [k for k in (*METRICS, *extra) if any(r.get(k) is not None for r in rows)]


def _summary(rows: list[dict], option_names: list[str]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], *(r[k] for k in option_names)), []).append(r)
    out = []
    for key, members in groups.items():
        entry = {"method": key[0], **dict(zip(option_names, key[1:])), "n": len(members)}
        for col in _columns(rows):
            vals = np.array([m[col] for m in members if m.get(col) is not None], dtype=float)
            entry[f"{col}_mean"] = float(vals.mean()) if len(vals) else None
            entry[f"{col}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
        out.append(entry)
    return out


def _fmt(x) -> str:
    return "-" if x is None else (f"{x:.4f}" if abs(x) >= 1e-2 or x == 0 else f"{x:.2e}")


def format_summary(summary: list[dict], option_names: list[str], title: str = "") -> str:
    """The summary as a text table: a row per method and option values, ``mean ± sd`` per column."""
    if not summary:
        return title + "\n(no finished cells)"
    cols = [k[:-5] for k in summary[0] if k.endswith("_mean")]
    header = ["method", *option_names, "seeds", *cols]
    body = [[s["method"], *(str(s[k]) for k in option_names), str(s["n"]),
             *(f"{_fmt(s[c + '_mean'])} ± {_fmt(s[c + '_sd'])}" for c in cols)] for s in summary]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    lines = ([title] if title else []) + [line, "-" * len(line)]
    return "\n".join(lines + ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body])


def _csv(rows: list[dict]) -> str:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else (repr(r[k]) if isinstance(r[k], float) else r[k]))
                         for k in fields})
    return buffer.getvalue()


def _write_tables(folder: pathlib.Path, rows, summary, table) -> None:
    atomic_write(folder / "results.csv", _csv(rows) if rows else "")
    atomic_write(folder / "summary.csv", _csv(summary) if summary else "")
    atomic_write(folder / "summary.txt", table + "\n")


def _plot(summary: list[dict], option_names: list[str], path: pathlib.Path, title: str) -> None:
    """Mean error against mean seconds per method (and option values), bars of one sd across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genzoo.runs import save_figure

    errors = [c for c in (*METRICS, *(k[:-5] for k in summary[0] if k.startswith("score:") and k.endswith("_mean")))
              if any(s.get(f"{c}_mean") is not None for s in summary)][:2]
    fig, axes = plt.subplots(1, max(1, len(errors)), figsize=(5 * max(1, len(errors)), 4), squeeze=False)
    for ax, col in zip(axes[0], errors or ["seconds"]):
        for i, s in enumerate(summary):
            y = s.get(f"{col}_mean")
            if y is None:
                continue
            label = " ".join([s["method"], *(f"{k}={s[k]}" for k in option_names)])
            ax.errorbar(max(s["seconds_mean"], 1e-6), y, xerr=s["seconds_sd"] or 0.0, yerr=s[f"{col}_sd"] or 0.0,
                        fmt="o", color=f"C{i % 10}", capsize=3)
            ax.annotate(label, (max(s["seconds_mean"], 1e-6), y), textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("seconds (mean ± sd over seeds)")
        ax.set_ylabel(f"{col} (mean ± sd over seeds)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)

