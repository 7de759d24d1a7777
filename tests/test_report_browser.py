"""The run report opened in headless Chromium: it renders its table and its images, not a blank page.

Skips only where no Chromium binary is on the PATH (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from genzoo import compare, report
from genzoo.registry import Problem
from inference.result import Result

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on the PATH (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A comparison report of three methods on two discrete variables (no JAX, no torch: fast)."""
    folder = tmp_path_factory.mktemp("report")
    exact = {"rain": np.array([0.3, 0.7]), "sprinkler": np.array([0.5, 0.2, 0.3])}
    results = [Result(method="exact", marginals=exact),
               Result(method="gibbs", marginals={"rain": np.array([0.32, 0.68]),
                                                 "sprinkler": np.array([0.47, 0.21, 0.32])}),
               Result(method="mean_field", marginals={"rain": np.array([0.4, 0.6]),
                                                      "sprinkler": np.array([0.6, 0.2, 0.2])})]
    rows = []
    for seconds, result in zip((0.01, 0.5, 0.05), results):
        max_abs, tv = compare.marginal_errors(results[0], result)
        rows.append(compare.Row(result.method, seconds, seconds, max_abs, tv, None, None, None, None, result))
    path = report.compare_report(folder, model="sprinkler", family="Bayesian network", summary="a toy network",
                                 problem_text="two variables, no evidence", table=compare.format_table(rows, "toy"),
                                 rows=rows, reference="exact", problem=Problem(model=None, data={}))
    return path


def _chromium(*args, cwd):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={cwd / 'profile'}", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180, check=True)


def test_chromium_renders_the_report(page, tmp_path):
    import matplotlib.image

    shot = tmp_path / "out.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri(), cwd=tmp_path)
    rgb = matplotlib.image.imread(shot)[..., :3]
    assert rgb.shape[:2] == (2000, 1200)
    # dark pixels: text, table rules, axes (44,633 measured on this page; a page holding one line of
    # text and a one-cell table: 123). Coloured pixels (max - min channel > 0.25) come only from the
    # embedded plots, the page's own text and rules being grey (18,008 measured; that page: 0).
    dark = (rgb.min(-1) < 0.5).sum()
    coloured = (rgb.max(-1) - rgb.min(-1) > 0.25).sum()
    assert dark > 5000 and coloured > 2000, (dark, coloured)


def test_chromium_dom_has_the_table_and_images(page, tmp_path):
    dom = _chromium("--dump-dom", page.as_uri(), cwd=tmp_path).stdout
    assert "<title>genzoo compare sprinkler</title>" in dom
    assert dom.count("<table>") == 1 and dom.count("<tr>") == 4  # the header and three methods
    for method in ("exact", "gibbs", "mean_field"):
        assert f"<td>{method}</td>" in dom
    assert dom.count('<img src="data:image/png;base64,') == 2  # error against seconds, marginals
