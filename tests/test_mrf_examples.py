"""The MRF examples and the `ising` zoo entry run end to end with tiny arguments.

Checks use answers known in advance: Onsager's magnetisation deep in the ordered phase, that
denoising lowers the pixel error, the exact RBM log Z beside its AIS estimate, and the exact
method's zero error in the comparison table.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_onsager_example_tiny():
    mod = _load("ising_onsager")
    out = mod.main(mod.parse_args(["--size", "8", "--sweeps", "150", "--temperatures", "2", "--out", ""]))
    t, gibbs, sw, onsager = out["rows"][0]
    assert t == pytest.approx(1.5)
    # at T = 1.5, M = 0.9865; on 8 x 8 the finite-size shift is < 0.01 and the s.d. of |m| < 0.03,
    # so 120 kept draws (ESS >= 10 even if strongly correlated) give s.e. < 0.01: 0.05 is 5 s.e.
    assert abs(gibbs - onsager) < 0.05 and abs(sw - onsager) < 0.05
    assert out["tau_gibbs"] > 0 and out["tau_sw"] > 0


@pytest.mark.slow
def test_denoise_example_tiny(tmp_path):
    mod = _load("ising_denoise")
    png = tmp_path / "denoise.png"
    out = mod.main(mod.parse_args(["--scale", "8", "--sweeps", "40", "--mf-steps", "10", "--bp-iterations", "30",
                                   "--out", str(png)]))
    assert png.exists()
    for name in ("ICM", "loopy BP (max)", "mean field", "Gibbs (marginal mode)"):
        assert out[name] < out["noisy"], (name, out)  # every method removes noise


@pytest.mark.slow
def test_rbm_example_tiny():
    mod = _load("rbm_digits")
    # equal sizes: the second RBM reuses the first one's compiled training and AIS
    out = mod.main(mod.parse_args(["--epochs", "1", "--small-hidden", "6", "--large-hidden", "6", "--ais-chains", "50",
                                   "--ais-betas", "300", "--sample-steps", "5", "--out", ""]))
    assert np.isfinite(out["exact_ll"]) and out["exact_ll"] < 0 and out["peer_ll"] < 0
    assert abs(out["ais"] - out["log_z"]) <= 4 * out["ais_stderr"] + 1e-9  # AIS within 4 s.e. of exact


@pytest.mark.slow
def test_compare_ising_entry(tmp_path, capsys):
    from genzoo.cli import main

    main(["compare", "ising", "--size", "4", "--steps", "100", "--no-progress", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    exact_row = next(line for line in text.splitlines() if line.startswith("exact "))
    assert "0.00e+00" in exact_row
    for method in ("loopy_bp", "mean_field", "gibbs", "swendsen_wang"):
        assert any(line.startswith(method) for line in text.splitlines())
    assert list(tmp_path.glob("ising-compare-*/metrics.json"))
