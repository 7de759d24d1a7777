"""The mixture and topic examples run end to end with tiny arguments and write their figure."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gmm_iris(tmp_path):
    example = _load("gmm_iris")
    out = example.main(example.parse_args(["--max-k", "3", "--max-iter", "30", "--out", str(tmp_path)]))
    assert (tmp_path / "gmm_iris.png").stat().st_size > 0
    assert out["best_k"] in (2, 3) and out["ari"] > 0.4


def test_lda_lee(tmp_path):
    example = _load("lda_lee")
    out = example.main(example.parse_args(["--topics", "4", "--passes", "3", "--out", str(tmp_path)]))
    assert (tmp_path / "lda_lee.png").stat().st_size > 0
    assert 1.0 < out["perplexity"] < 5000 and -1.0 <= out["npmi"] <= 1.0
