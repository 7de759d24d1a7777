"""benchmarks/before_after.py loads the package as it was at a git ref beside the working tree's:
the old tree must import only itself, and the two versions must be timed on the same cells."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None
    or subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0,
    reason="needs the project's git history")


def _load():
    spec = importlib.util.spec_from_file_location("before_after_bench", ROOT / "benchmarks" / "before_after.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unpacked_tree_imports_only_its_renamed_self(tmp_path):
    bench = _load()
    bench.unpack_ref("HEAD", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"before_{n}" for n in sorted(bench.PACKAGES)]
    rewritten = 0
    for path in tmp_path.rglob("*.py"):
        text = path.read_text()
        assert not bench._FROM.search(text), f"{path} still imports the working tree's packages"
        rewritten += text.count("from before_")
    assert rewritten > 100  # the packages import each other a few hundred times


def test_one_round_on_alarm_times_both_versions_on_the_same_answers():
    """Before = HEAD: both versions answer the same query with the same marginals (difference 0)."""
    pytest.importorskip("pyagrum")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "before_after.py"), "HEAD", "--only", "bayesnet",
         "--networks", "alarm", "--rounds", "1", "--min-ms", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "before_inference" in proc.stderr  # the old version really came from the unpacked tree
    assert "before and after differ by 0.0e+00" in proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("alarm: all marginals"))
    before_ms, after_ms, peer_ms, ratio = (float(v) for v in row.split()[3:7])
    assert before_ms > 0 and after_ms > 0 and peer_ms > 0
    # the columns are printed to 0.005 ms and 0.0005: their rounding bounds the relative difference
    tol = 0.005 / before_ms + 0.005 / after_ms + 0.0005 / ratio
    assert ratio == pytest.approx(after_ms / before_ms, rel=tol)


def _first_hour():
    spec = importlib.util.spec_from_file_location("first_hour_bench", ROOT / "benchmarks" / "first_hour.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_first_hour_refuses_bad_counts_and_refs(tmp_path, capsys):
    bench = _first_hour()
    for argv in (["--first", "0"], ["--later", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            bench.main(argv)
        assert exit_.value.code == 2
        assert "--first must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--ref 'no-such-ref': git archive failed"):
        bench.unpack("no-such-ref", tmp_path)
    assert bench.summary([]) == "-"  # --later 0: no later runs to summarise


def test_first_hour_runs_the_ref_packages_not_the_installed_ones(tmp_path):
    """benchmarks/first_hour.py runs the packages at a ref through PYTHONPATH: they must win over
    the working tree's editable install, in the command and in the processes it spawns."""
    bench = _first_hour()
    tree = bench.unpack("HEAD", tmp_path / "ref")
    assert sorted(p.name for p in tree.iterdir()) == sorted(bench.PACKAGES)
    code = ("import multiprocessing as mp, genzoo, inference\n"
            "def where(_):\n    import pgm, genzoo\n    return pgm.__file__, genzoo.__file__\n"
            "if __name__ == '__main__':\n"
            "    with mp.get_context('spawn').Pool(1) as pool:\n"
            "        print(genzoo.__file__, inference.__file__, *pool.map(where, [0])[0])\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    script = tmp_path / "where.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], env={**env, "PYTHONPATH": str(tree)}, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 4 and all(pathlib.Path(p).is_relative_to(tree) for p in out), out
