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
