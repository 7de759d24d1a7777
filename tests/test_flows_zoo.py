"""The flow entries of the catalogue and the 2-D example run at tiny sizes and report their scores."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np
import pytest
import torch

from genzoo.registry import RunConfig
from inference.errors import UnknownNameError

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test, restored after
EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_flows_entry_scores_every_density_it_is_given():
    from genzoo.zoo import ENTRIES

    entry = ENTRIES["flows"]
    problem = entry.problem({"densities": "8gaussians,checkerboard", "steps": 3, "n_train": 256, "n_test": 256,
                             "hidden": 4, "layers": 2}, seed=0)
    result = entry.method("nsf").fn(problem, RunConfig(seed=0, progress=False))
    scores = result.diagnostics["scores"]
    assert set(scores) == {"test NLL 8gaussians", "KL 8gaussians", "test NLL checkerboard", "KL checkerboard",
                           "train seconds"}
    # KL = NLL - H(p), H(checkerboard) = log 32 in closed form
    assert scores["test NLL checkerboard"] - scores["KL checkerboard"] == pytest.approx(math.log(32), abs=1e-9)
    with pytest.raises(UnknownNameError, match="--densities"):
        entry.problem({"densities": "spiral"}, seed=0)


def test_flows_digits_entry_reports_bits_per_dim():
    from genzoo.zoo import ENTRIES

    entry = ENTRIES["flows_digits"]
    problem = entry.problem({"steps": 2, "hidden": 4, "glow_steps": 1}, seed=0)
    scores = entry.method("glow").fn(problem, RunConfig(seed=0, progress=False)).diagnostics["scores"]
    # bits/dim and the NLL bound are the same number in two units: NLL = bpd * D log 2 with D = 64
    assert scores["test NLL (nats)"] == pytest.approx(scores["bits/dim"] * 64 * math.log(2), rel=1e-9)


def test_flows_2d_example(tmp_path):
    spec = importlib.util.spec_from_file_location("flows_2d", EXAMPLES / "flows_2d.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = ex.main(ex.parse_args(["--steps", "3", "--n-train", "256", "--n-test", "256", "--hidden", "4",
                                 "--layers", "2", "--grid", "20", "--flows", "realnvp", "maf", "--out", str(tmp_path)]))
    assert out["figure"].exists()
    assert all(math.isfinite(r.diagnostics["scores"]["KL"]) for r in out["results"].values())


def test_funnel_entry_flow_guide_runs_and_reports_kl():
    # log Z = 0 for the funnel (a normalised density, no data), so the reported KL is minus the ELBO
    from genzoo.zoo import ENTRIES

    entry = ENTRIES["funnel"]
    problem = entry.problem({"dim": 3, "steps": 3, "hidden": 4, "layers": 2, "draws": 20}, seed=0)
    exact = entry.method("closed_form").fn(problem, RunConfig(seed=0, progress=False))
    assert exact.diagnostics["posterior_sd"]["x"] == pytest.approx([math.exp(2.25)] * 3)
    result = entry.method("svi_flow").fn(problem, RunConfig(seed=0, progress=False))
    assert result.samples["x"].shape == (20, 3)
    assert result.diagnostics["scores"]["KL(q||p) = -ELBO"] == pytest.approx(-result.log_evidence)
    # the table's sd column against the closed-form sds (3 for v, e^2.25 for each x)
    from genzoo import compare

    v, x = (np.asarray(result.samples[k], dtype=np.float64) for k in ("v", "x"))  # float32 draws, read in float64
    by_hand = max(abs(v.std() / 3.0 - 1), float(np.max(np.abs(x.std(0) / math.exp(2.25) - 1))))
    assert compare.sd_errors(exact, result) == pytest.approx(by_hand, rel=1e-12)
