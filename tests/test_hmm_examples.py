"""The HMM examples run with tiny arguments and end in sensible numbers."""

import argparse
import importlib.util
import pathlib

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_casino(tmp_path):
    out = _load("hmm_casino").main(argparse.Namespace(rolls=120, em_iter=5, seed=0, out=str(tmp_path)))
    assert np.isfinite(out["log_evidence"]) and out["p_loaded"].shape == (120,)
    assert np.all(np.diff(out["em"].history) >= -1e-8 * np.abs(out["em"].history[:-1]))
    assert (tmp_path / "casino.png").stat().st_size > 0


def test_nile(tmp_path):
    out = _load("hmm_nile").main(argparse.Namespace(em_iter=30, out=str(tmp_path)))
    # the drop in flow is documented at 1898-1899 (Cobb, 1978); the regime change must be near it
    assert out["change_year"] is not None and 1893 <= out["change_year"] <= 1903
    assert (tmp_path / "nile.png").stat().st_size > 0
