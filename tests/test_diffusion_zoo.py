"""The diffusion and flow-matching catalogue entries and the 2-D example run with tiny settings."""

import importlib.util
import math
import pathlib

import pytest
import torch

from genzoo.registry import RunConfig
from genzoo.zoo import ENTRIES
from inference.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test, restored after
TINY = {"train_steps": 5, "points": 40, "width": 8, "train_n": 200}
CONFIG = RunConfig(seed=0, steps=None, progress=False)


def test_diffusion_entry_methods_report_their_scores():
    entry = ENTRIES["diffusion"]
    problem = entry.problem({**TINY, "T": 10}, seed=0)
    rows = {name: entry.method(name).fn(problem, CONFIG) for name in ("ddpm", "ddim_10", "vp_ode")}
    assert rows["ddpm"].log_evidence_kind == "lower_bound"  # the NLL column of DDPM is its bound
    assert rows["vp_ode"].log_evidence_kind == "estimate"  # the ODE likelihood, exact up to the solver
    for name, r in rows.items():
        s = r.diagnostics["scores"]
        assert math.isfinite(s["w2"]) and s["steps"] >= 1, name
        assert r.samples["x"].shape == (40, 2)
    # KL = NLL - H(p) by construction
    s = rows["vp_ode"].diagnostics["scores"]
    from deep.densities import get

    assert s["kl"] == pytest.approx(s["nll"] - get("8gaussians").entropy(), abs=1e-12)
    assert rows["ddim_10"].diagnostics["scores"]["steps"] == 10


def test_flow_matching_entry_and_bad_options():
    entry = ENTRIES["flow_matching"]
    problem = entry.problem(TINY, seed=0)
    r = entry.method("ot_adaptive").fn(problem, CONFIG)
    assert r.log_evidence_kind == "estimate" and r.diagnostics["scores"]["steps"] > 2
    assert entry.method("independent_euler_1").fn(problem, CONFIG).diagnostics["scores"]["steps"] == 1
    with pytest.raises(DataError, match="points"):
        entry.problem({**TINY, "points": 1}, seed=0)


def test_diffusion_2d_example(tmp_path):
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "diffusion_2d.py"
    spec = importlib.util.spec_from_file_location("diffusion_2d", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = ex.main(ex.parse_args(["--steps", "5", "--width", "8", "--T", "10", "--ddim", "5", "--n", "30",
                                 "--train-size", "100", "--out", str(tmp_path)]))
    assert out["picture"].exists()
    assert out["nll"]["DDPM variational bound"].log_evidence_kind == "lower_bound"
    assert all(math.isfinite(r.diagnostics["scores"]["nll"]) for r in out["nll"].values())


@pytest.mark.parametrize("name", ["schedules", "paths", "gaussian", "ode", "nets", "ddpm", "sde", "flow_matching",
                                  "recipes"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"deep.diffusion.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
