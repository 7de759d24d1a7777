"""The README's Python quickstart runs as written, and prints what its comments say."""

import pathlib
import re
import subprocess
import sys

import numpy as np
from scipy.special import betaln

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _quickstart() -> str:
    text = README.read_text()
    section = text[text.index("## Five-minute Python quickstart"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _pgmpy_lung() -> float:
    import gzip

    from pgmpy.inference import VariableElimination
    from pgmpy.readwrite import BIFReader

    from genzoo.data import bn_network_path

    with gzip.open(bn_network_path("asia"), "rt") as handle:
        model = BIFReader(string=handle.read()).get_model()
    query = VariableElimination(model).query(["lung"], evidence={"xray": "yes", "smoke": "yes"}, show_progress=False)
    return round(float(query.get_value(lung="yes")), 4)


def test_quickstart_runs(tmp_path):
    script = tmp_path / "quickstart.py"
    script.write_text(_quickstart())
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          cwd=README.parent)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # asia: pgmpy's variable elimination on the same BIF file is the oracle of the printed posterior
    assert f"p(lung | xray, smoker): {{'yes': {_pgmpy_lung():.4g}, " in out, out
    # the sprinkler: p(rain | wet) by hand, as tests/test_exact.py enumerates the joint
    pc, ps, pr = np.array([0.5, 0.5]), np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([[0.8, 0.2], [0.2, 0.8]])
    pw = np.array([[0.0, 0.9], [0.9, 0.99]])
    joint = np.einsum("c,cs,cr,sr->r", pc, ps, pr, pw)  # p(rain, wet = 1)
    assert f"p(rain | wet): {np.array2string((joint / joint.sum()).round(4))}" in out, out
    # Beta(2, 2) prior and 8 heads in 10: the posterior is Beta(10, 4), mean 10/14 = 0.714, sd 0.117.
    nuts_mean, svi_mean = (float(v) for v in re.findall(r"(?:NUTS|SVI) (\d\.\d+)", out))
    # NUTS's 1,000 draws (ESS >= 300 on this one-dimensional posterior): Monte Carlo sd <= 0.0068; 4.4 of them
    assert abs(nuts_mean - 10 / 14) < 0.03, out
    # SVI: the Normal guide on eta = logit(p). Its KL-optimal member (quadrature below) has
    # E[sigmoid(eta)] = 0.71429 and sd S = 0.613. What remains is Adam's stationary jitter of the
    # location, sd S sqrt(lr / (2 S sqrt(M))) (derived in tests/test_svi.py; lr 0.01, M = 1
    # particle), carried to p by dp/deta = p(1 - p), and the 1,000 guide draws' sd 0.117 / sqrt(1000).
    optimum, s = _kl_optimal_guide()
    p = 10 / 14
    jitter = s * np.sqrt(0.01 / (2 * s)) * p * (1 - p)
    sd = np.hypot(jitter, 0.117 / np.sqrt(1000))
    assert abs(svi_mean - optimum) < 4.5 * sd, out  # 4.5 sd: false alarm below 1e-5
    # and the ELBO is below the exact log evidence, log B(10, 4) - log B(2, 2)
    elbo = float(re.search(r"ELBO (-?\d+\.\d+)", out).group(1))
    assert elbo <= betaln(10, 4) - betaln(2, 2)


def _kl_optimal_guide():
    """(E_q[sigmoid(eta)], sd of q) for the Normal q on eta = logit(p) minimising KL(q || Beta(10, 4)),
    by 80-point Gauss-Hermite quadrature (the density of eta is p^10 (1 - p)^4)."""
    from scipy.optimize import minimize

    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()

    def kl(theta):  # up to a constant
        eta = theta[0] + np.exp(theta[1]) * x
        return -theta[1] - np.sum(w * (10 * eta - 14 * np.logaddexp(0, eta)))

    m, log_s = minimize(kl, [1.0, -1.0]).x
    eta = m + np.exp(log_s) * x
    return float(np.sum(w / (1 + np.exp(-eta)))), float(np.exp(log_s))
