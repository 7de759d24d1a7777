"""The GAN / EBM examples, catalogue entries and benchmark run with tiny arguments and end in numbers."""

import importlib.util
import pathlib

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gan_ring_example(tmp_path):
    ex = _load(ROOT / "examples" / "gan_ring.py")
    out = ex.main(ex.parse_args(["--losses", "gan", "wgan_gp", "--steps", "3", "--train-size", "256",
                                 "--eval-size", "100", "--batch-size", "64", "--out", str(tmp_path)]))
    assert [(r["loss"], r["pack"]) for r in out["rows"]] == [("gan", 1), ("gan", 2), ("wgan_gp", 1), ("wgan_gp", 2)]
    assert all(0 <= r["modes_captured"] <= 8 and 0 <= r["high_quality"] <= 1 for r in out["rows"])
    assert out["picture"].exists()


def test_ebm_2d_example(tmp_path):
    ex = _load(ROOT / "examples" / "ebm_2d.py")
    out = ex.main(ex.parse_args(["--steps", "3", "--train-size", "256", "--eval-size", "200", "--samples", "50",
                                 "--sample-steps", "5", "--langevin-steps", "2", "--cells", "60",
                                 "--out", str(tmp_path)]))
    assert [r["method"] for r in out["rows"]] == ["dsm", "ssm", "cd", "pcd"]
    assert all(np.isfinite([r["kl"], r["nll"], r["ksd"]]).all() for r in out["rows"])
    assert out["picture"].exists()


@pytest.mark.parametrize("model,methods,options", [
    ("gan", ["gan", "js_pack"], {"train_size": 256, "eval": 100, "batch_size": 64}),
    ("gan", ["kl", "wgan_gp"], {"train_size": 256, "eval": 100, "batch_size": 64, "r1": 1.0}),
    ("ebm", ["dsm", "pcd"], {"train_size": 256, "samples": 50, "sample_steps": 5, "langevin_steps": 2}),
    ("gan", ["wgan_gp_pack"], {"density": "digits"}),
])
def test_compare_entries(model, methods, options):
    from genzoo import compare
    from genzoo.registry import RunConfig
    from genzoo.zoo import ENTRIES

    entry = ENTRIES[model]
    problem = entry.problem(options, seed=0)
    rows = compare.run_methods(entry, problem, methods, RunConfig(seed=0, steps=3, progress=False), warm=False)
    assert [r.method for r in rows] == methods
    expected = ({"classifier_accuracy", "classes_covered"} if options.get("density") == "digits"
                else {"modes_captured", "high_quality", "reverse_kl"} if model == "gan" else {"kl", "kl_se", "nll", "ksd"})
    assert all(set(r.scores) == expected for r in rows)
    table = compare.format_table(rows, model)
    assert all(name in table for name in expected)


def test_benchmark_quick_timings():
    bench = _load(ROOT / "benchmarks" / "gan_ebm.py")
    pytest.importorskip("torchebm")
    out = bench.main(bench.parse_args(["--steps", "2", "--repeats", "1", "--batch-size", "32"]))
    assert len(out["timings"]) == 5
    assert all(ours > 0 and peer > 0 and fused > 0 for _, ours, peer, fused in out["timings"])


def test_benchmark_protocol_in_two_processes_prints_what_one_process_prints():
    """Each seed's run is a function of its arguments alone: spread over two spawned processes the
    protocol prints the same figures, digit for digit, as in one."""
    import subprocess
    import sys

    args = [sys.executable, str(ROOT / "benchmarks" / "gan_ebm.py"), "--skip-timings", "--protocol", "--steps", "2",
            "--seeds", "2", "--densities", "ring", "--losses", "kl", "--batch-size", "32", "--r1", "1"]
    one = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    two = subprocess.run(args + ["--jobs", "2"], capture_output=True, text=True, check=True).stdout
    assert one.count("modes per seed") == 2 and "R1 1" in one
    assert one == two


def test_benchmark_protocol_counts_a_diverged_seed_as_no_modes(monkeypatch):
    """Two seeds of two steps; the second seed's training is made to diverge: it counts 0 modes and
    0 high-quality samples in the means, and only the first seed's reverse KL is averaged."""
    from inference.errors import TrainingError

    bench = _load(ROOT / "benchmarks" / "gan_ebm.py")
    real = bench.train_gan

    def flaky(data, *, seed, **kw):
        if seed == 1:
            raise TrainingError("gan: the loss loss=inf at step 2", step=2)
        return real(data, seed=seed, **kw)

    monkeypatch.setattr(bench, "train_gan", flaky)
    out = bench.main(bench.parse_args(["--skip-timings", "--protocol", "--steps", "2", "--seeds", "2",
                                       "--densities", "ring", "--losses", "gan", "--batch-size", "32"]))
    first = bench.mode_scores(real(bench.get("ring").sample(20000, 0), seed=0, steps=2, loss="gan", pack=1,
                                   batch_size=32, lr=1e-3).params, bench.get("ring"), 100, 2500)
    row = out["protocol"][("ring", "gan", 1)]
    assert row["diverged"] == 1
    assert row["modes_captured"] == pytest.approx(first["modes_captured"] / 2)
    assert row["high_quality"] == pytest.approx(first["high_quality"] / 2)
    assert row["reverse_kl"] == pytest.approx(first["reverse_kl"])
