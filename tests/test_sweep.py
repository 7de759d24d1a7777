"""Sweeps: sequential and on a local Ray cluster give the same table; a killed worker's task is retried;
a sweep killed by SIGKILL and started again computes only the missing cells."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from genzoo.sweep import SweepError, parse_seeds, parse_set, sweep
from inference.errors import DataError, UnknownNameError

HERE = pathlib.Path(__file__).resolve().parent.parent
# asia with its evidence given: the seed then only seeds the method (no sampled evidence to compile)
ASIA = {"network": ["asia"], "evidence": ["xray=yes,dysp=yes"]}
GRID = dict(model="bayesnet", methods=["junction_tree", "likelihood_weighting"], seeds=[0, 3],
            options=ASIA, steps=300, warm=False)
CELL = "{}__network=asia__evidence=xray=yes_dysp=yes__seed{}"
SAME = ("cell", "method", "seed", "network", "evidence", "max_abs_marginal", "mean_tv", "abs_log_evidence", "log_evidence")


def _table(run):
    """The rows without the wall seconds (the one column that differs between two runs)."""
    return [{k: r.get(k) for k in SAME} for r in run.rows]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    return sweep(**GRID, out=tmp_path_factory.mktemp("sequential"))


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from genzoo.sweep import connect

    ray, started = connect("local", num_cpus=2)  # no dashboard; JAX's os.fork warning silenced
    assert started
    yield ray
    ray.shutdown()


def test_the_sequential_sweep_measures_each_cell_against_exact(sequential):
    run = sequential
    assert [r["cell"] for r in run.rows] == [CELL.format(m, s) for m in GRID["methods"] for s in (0, 3)]
    files = sorted(p.name for p in (run.folder / "cells").glob("*.json"))
    assert files == sorted(f"{r['cell']}.json" for r in run.rows)
    jt = [r for r in run.rows if r["method"] == "junction_tree"]
    lw = [r for r in run.rows if r["method"] == "likelihood_weighting"]
    # the junction tree is exact: its error is float64 rounding of probabilities (a few ulps of 1)
    assert all(r["max_abs_marginal"] < 1e-12 for r in jt)
    # likelihood weighting with 300 particles: its error is of order 1/sqrt(ESS) >= 1/sqrt(300) / 10,
    # never zero (a seed that were ignored would still give this; the Ray test checks seed by seed)
    assert all(1e-6 < r["max_abs_marginal"] < 0.5 for r in lw)
    # summary: mean and sample sd over the two seeds, recomputed from the rows
    summary = {s["method"]: s for s in run.summary}
    errors = np.array([r["max_abs_marginal"] for r in lw])
    assert summary["likelihood_weighting"]["max_abs_marginal_mean"] == pytest.approx(errors.mean(), rel=1e-12)
    assert summary["likelihood_weighting"]["max_abs_marginal_sd"] == pytest.approx(errors.std(ddof=1), rel=1e-12)
    # results.csv holds the rows; summary.txt the table; the plot exists
    lines = (run.folder / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + len(run.rows) and lines[0].startswith("cell,method,seed,network,evidence,seconds")
    assert (run.folder / "summary.txt").read_text().strip() == run.table.strip()
    assert (run.folder / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # worker processes import JAX and compile once each
def test_ray_sweep_equals_the_sequential_sweep_and_a_killed_worker_is_retried(sequential, ray_cluster, tmp_path):
    faulty = CELL.format("likelihood_weighting", 3)
    run = sweep(**GRID, out=tmp_path, ray="local", max_retries=2, kill_first_attempt=[faulty])
    # cell for cell, the same numbers (same seeds, same float64 code on one machine): exact equality
    assert _table(run) == _table(sequential)
    assert run.computed and sorted(run.computed) == sorted(r["cell"] for r in run.rows)
    record = json.loads((tmp_path / "cells" / f"{faulty}.json").read_text())
    assert record["attempt"] == 2  # the first attempt's worker died (os._exit), Ray ran it again
    pids = (tmp_path / ".faults" / f"{faulty}.attempts").read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]  # two processes: the killed worker and another
    assert record["pid"] != os.getpid()  # it ran in a worker, not in the driver


@pytest.mark.slow  # worker processes import JAX and compile once each
def test_a_task_killed_more_often_than_its_retries_fails_named_and_keeps_the_rest(ray_cluster, tmp_path):
    faulty = CELL.format("junction_tree", 0)
    with pytest.raises(SweepError, match=f"1 of 2 cells failed, e.g. {faulty}"):
        sweep("bayesnet", ["junction_tree"], [0, 1], ASIA, tmp_path, ray="local",
              max_retries=0, kill_first_attempt=[faulty], warm=False)
    assert [p.stem for p in (tmp_path / "cells").glob("*.json")] == [CELL.format("junction_tree", 1)]


@pytest.mark.slow  # worker processes import JAX and compile once each
def test_compare_models_on_ray_gives_the_figures_of_compare(ray_cluster):
    from genzoo import compare
    from genzoo.registry import RunConfig
    from genzoo.sweep import compare_models
    from genzoo.zoo import ENTRIES

    options = {k: v[0] for k, v in ASIA.items()}
    job = {"options": options, "steps": 300, "methods": ["junction_tree", "likelihood_weighting"]}
    [(name, description, rows)] = list(compare_models({"bayesnet": job}, seed=3, ray="local"))
    entry = ENTRIES["bayesnet"]
    problem = entry.problem(options, seed=3)
    local = compare.run_methods(entry, problem, job["methods"], RunConfig(seed=3, steps=300, progress=False),
                                warm=False)
    fields = ("method", "max_abs_marginal", "mean_tv", "abs_log_evidence", "log_evidence", "log_evidence_kind")
    # the exact method first, then the two asked for; the same numbers as in this process
    assert [tuple(getattr(r, f) for f in fields) for r in rows] == [tuple(getattr(r, f) for f in fields) for r in local]
    assert name == "bayesnet" and description == problem.description and rows[0].result is None


SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from genzoo.sweep import sweep

    def stop(cell, record):  # the first finished cell: say so, then wait to be killed
        print("finished", cell, flush=True)
        sys.stdin.readline()

    sweep(model="bayesnet", methods=["junction_tree"], seeds=[0, 3, 5], steps=300, warm=False,
          options={"network": ["asia"], "evidence": ["xray=yes,dysp=yes"]}, out=sys.argv[1], callback=stop)
    """
)


@pytest.mark.slow  # a fresh process imports JAX and compiles once
def test_a_sweep_killed_by_sigkill_computes_only_the_missing_cells(sequential, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], cwd=HERE, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the first cell is written (the signal)
        assert line.startswith("finished "), line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = line.split()[1]
    before = {p.name: p.read_bytes() for p in (out / "cells").glob("*.json")}
    assert list(before) == [f"{first}.json"]
    grid = dict(GRID, methods=["junction_tree"], seeds=[0, 3, 5])
    run = sweep(**grid, out=out)
    assert first == CELL.format("junction_tree", 0) and run.reused == [first]
    assert run.computed == [CELL.format("junction_tree", 3), CELL.format("junction_tree", 5)]
    assert (out / "cells" / f"{first}.json").read_bytes() == before[f"{first}.json"]  # not rewritten
    # the cell computed before the kill and those after it: the uninterrupted sweep's numbers
    assert _table(run)[:2] == [row for row in _table(sequential) if row["method"] == "junction_tree"]
    # a third call finds every cell and computes nothing
    assert sweep(**grid, out=out).computed == []


def test_bad_grids_are_named(tmp_path):
    with pytest.raises(UnknownNameError, match="no method 'nope'"):
        sweep("bayesnet", ["nope"], [0], out=tmp_path)
    with pytest.raises(UnknownNameError, match="no option --size"):
        sweep("bayesnet", ["exact"], [0], {"size": [1]}, out=tmp_path)
    with pytest.raises(DataError, match="needs ray"):
        sweep("bayesnet", ["exact"], [0], ASIA, out=tmp_path, kill_first_attempt=[CELL.format("exact", 0)])
    sweep("bayesnet", ["exact"], [0], ASIA, out=tmp_path, warm=False)
    with pytest.raises(DataError, match="holds another sweep.*seeds"):
        sweep("bayesnet", ["exact"], [0, 1], ASIA, out=tmp_path, warm=False)
    with pytest.raises(DataError, match="share the name"):
        sweep("bayesnet", ["exact", "exact"], [0], ASIA, out=tmp_path / "b")
    assert parse_seeds("0-2,7,2") == [0, 1, 2, 7]
    with pytest.raises(DataError, match="'3-1'"):
        parse_seeds("3-1")
    assert parse_set(["network=asia,sachs", "--n=5"]) == {"network": ["asia", "sachs"], "n": ["5"]}
    with pytest.raises(DataError, match="OPTION=VALUE"):
        parse_set(["network"])


def test_the_cli_sweeps_resumes_and_names_a_missing_ray(tmp_path, capsys, monkeypatch):
    from genzoo.cli import main

    argv = ["sweep", "bayesnet", "--methods", "junction_tree", "--seeds", "0-1", "--network", "asia",
            "--evidence", "xray=yes,dysp=yes", "--folder", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 cells computed, 0 found finished" in out and "junction_tree" in out
    assert main(argv) == 0  # the same folder: every cell is found, none recomputed
    assert "0 cells computed, 2 found finished" in capsys.readouterr().out
    assert main(["sweep", "bayesnet", "--methods", "nope", "--out", str(tmp_path / "runs")]) == 2
    assert "no method 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # bad input makes no run folder
    assert main(["sweep", "bayesnet", "--seeds", "2-1"]) == 2
    assert capsys.readouterr().err.strip() == ("genzoo: error: --seeds: '2-1' is not a seed or a range LOW-HIGH "
                                               "of non-negative integers")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    assert main(argv[:-3] + ["--folder", str(tmp_path / "r"), "--ray", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'genzoo[distributed]'" in err and "Traceback" not in err and len(err.splitlines()) == 1
