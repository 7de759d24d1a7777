"""The run report (genzoo/report.py): its HTML structure read back with the stdlib parser.

A comparison on asia (exact, loopy BP, likelihood weighting), a deep comparison with sample sets,
a continuous posterior against stated reference moments, and the CLI hooks. Every embedded image
must decode to a PNG that is not blank, every number in the table must be the printed one, and
nothing may point outside the file.
"""

from __future__ import annotations

import base64
import html.parser
import io
import pathlib

import numpy as np
import pytest

from genzoo import compare, report
from genzoo.registry import Problem, RunConfig
from inference.result import Result

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Page(html.parser.HTMLParser):
    """Tables (rows of cells), images, headings, captions and every src / href of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.images, self.links, self.headings, self.captions, self.tags = [], [], [], [], [], []
        self._cell = self._heading = self._caption = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "h2":
            self._heading = ""
        elif tag in ("figcaption", "p"):
            self._caption = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None
        elif tag == "h2":
            self.headings.append(self._heading)
            self._heading = None
        elif tag in ("figcaption", "p"):
            self.captions.append(self._caption)
            self._caption = None

    def handle_data(self, data):
        for name in ("_cell", "_heading", "_caption"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name) + data)


def decode_png(src: str) -> np.ndarray:
    """The pixels of a data-URI PNG, checked to be a PNG."""
    import matplotlib.image

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    raw = base64.b64decode(src[len(prefix):], validate=True)
    assert raw[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(io.BytesIO(raw), format="png")


def check_page(path: pathlib.Path) -> Page:
    """Parse ``path`` and check what every report must be: self-contained, its images real PNGs
    with something drawn on them."""
    text = path.read_text()
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>")
    assert "script" not in page.tags and "link" not in page.tags  # no code, no stylesheet fetched
    assert not [link for link in page.links if not link.startswith("data:")]  # no http(s)://, no file
    assert "http://" not in text and "https://" not in text
    for src in page.images:
        rgb = decode_png(src)[..., :3]
        assert rgb.var() > 0
        # drawn, not blank: at least 500 pixels darker than light grey (one axis frame alone has ~1,000)
        assert (rgb.min(-1) < 0.8).sum() >= 500
    return page


# ----------------------------------------------------------------------------- asia
@pytest.fixture(scope="module")
def asia():
    from genzoo.zoo import ENTRIES

    entry = ENTRIES["bayesnet"]
    problem = entry.problem({"network": "asia"}, seed=0)
    rows = compare.run_methods(entry, problem, ["exact", "loopy_bp", "likelihood_weighting"],
                               RunConfig(seed=0, steps=2000, progress=False))
    return entry, problem, rows


@pytest.fixture(scope="module")
def asia_page(asia, tmp_path_factory):
    entry, problem, rows = asia
    folder = tmp_path_factory.mktemp("asia")
    table = compare.format_table(rows, f"bayesnet: {problem.description}")
    path = report.compare_report(folder, model=entry.name, family=entry.family, summary=entry.description,
                                 problem_text=problem.description, table=table, rows=rows, reference="exact",
                                 problem=problem, seed=0)
    assert path == folder / "report.html"
    return check_page(path)


def test_compare_report_table_holds_the_printed_numbers(asia, asia_page):
    entry, problem, rows = asia
    page = asia_page
    assert len(page.tables) == 1
    header, *body = page.tables[0]
    assert header == ["method", "seconds", "max |d marg|", "mean TV", "|d log Z|", "log Z", "kind"]
    assert [cells[0] for cells in body] == ["exact", "loopy_bp", "likelihood_weighting"]
    for cells, row in zip(body, rows):  # the oracle: the row's own figures, formatted as the CLI prints them
        cell = dict(zip(header, cells))
        assert cell["seconds"] == f"{row.seconds:.4f}"
        assert cell["max |d marg|"] == f"{row.max_abs_marginal:.2e}"
        assert cell["mean TV"] == f"{row.mean_tv:.2e}"
        assert cell["log Z"] == f"{row.log_evidence:.6f}"
        assert cell["kind"] == row.log_evidence_kind


def test_compare_report_pictures(asia, asia_page):
    entry, problem, rows = asia
    page = asia_page
    assert page.headings == ["Structure", "Comparison", "Error against seconds", "Marginals"]
    assert len(page.images) == 3  # structure, error, marginals: no history (none has one), no samples
    bn = problem.model
    graph_caption = next(c for c in page.captions if c.startswith("the model's graph"))
    assert f"{len(bn.variables)} nodes, {bn.graph.number_of_edges()} edges" in graph_caption
    hidden = [v for v in bn.variables if v not in problem.data]
    marginal_caption = next(c for c in page.captions if c.startswith("posterior marginals"))
    assert f"{len(hidden)} of {len(hidden)} unobserved variables: {', '.join(hidden)}" in marginal_caption


def test_error_axis_spans_the_approximation_errors_only(asia):
    """The exact row (error 0) is a vertical line, not a point at 1e-16: the error axis runs from
    half the smallest approximate error to four times the largest (the plot's stated padding)."""
    from genzoo.report_plots import ROUNDING, error_figure

    _, _, rows = asia
    fig = error_figure(rows, "asia", "exact")
    ax = fig.axes[0]
    errors = [r.max_abs_marginal for r in rows if r.max_abs_marginal >= ROUNDING]
    assert [r.method for r in rows if r.max_abs_marginal < ROUNDING] == ["exact"]
    lo, hi = ax.get_ylim()
    assert (lo, hi) == pytest.approx((min(errors) / 2, max(errors) * 4), rel=1e-12)
    assert np.log10(hi / lo) < 6  # under six decades here; sixteen before
    exact_seconds = rows[0].seconds
    assert any(np.allclose(line.get_xdata(), exact_seconds) for line in ax.get_lines())
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_table_cells_reads_back_the_printed_table(asia):
    _, problem, rows = asia
    text = compare.format_table(rows, "title line")
    titles, header, body, trailing = report.table_cells(text)
    assert titles == ["title line"] and trailing == []
    widths = [len(line.split()) for line in text.splitlines()[3:]]  # single-word cells only in the body
    assert [len(b) for b in body] == widths == [len(header)] * len(rows)
    assert [" ".join(b) for b in body] == [" ".join(line.split()) for line in text.splitlines()[3:]]


def test_table_cells_stops_at_the_footnotes():
    """The long table of ``compare deep`` (one line per method and dataset) ends in indented notes."""
    text = ("deep: two densities\n"
            "method  dataset     NLL    kind\n"
            "-------------------------------\n"
            "vae     8gaussians  2.913  bound\n"
            "vae     ring        -      -\n"
            "  VAE: NLL is the IWAE bound with 64 samples\n")
    titles, header, body, trailing = report.table_cells(text)
    assert titles == ["deep: two densities"] and header == ["method", "dataset", "NLL", "kind"]
    assert body == [["vae", "8gaussians", "2.913", "bound"], ["vae", "ring", "-", "-"]]
    assert trailing == ["  VAE: NLL is the IWAE bound with 64 samples"]


# ----------------------------------------------------------------------------- deep
def _row(result, scores, seconds=1.0):
    return compare.Row(result.method, seconds, seconds, None, None, None, None, None, None, result, scores)


def test_deep_report_draws_sample_sets(tmp_path):
    import torch

    from deep.densities import get

    points = get("8gaussians").sample(300, torch.Generator().manual_seed(0)).numpy()
    images = np.random.default_rng(1).random((12, 8, 8))  # (n, h, w) grey levels, as an image sampler returns
    results = [Result(method="real_data", diagnostics={"sample_sets": {"8gaussians": points, "digits": images}}),
               Result(method="noise", history=np.linspace(3.0, 1.0, 20),
                      diagnostics={"sample_sets": {"8gaussians": np.random.default_rng(0).normal(size=(300, 2))}})]
    rows = [_row(results[0], {"w2": 0.05}, 0.5), _row(results[1], {"w2": 2.0}, 0.1)]
    table = compare.format_table(rows, "deep")
    path = report.compare_report(tmp_path, model="tiny", family="test", summary="two sample sets",
                                 problem_text="8 Gaussians and digits", table=table, rows=rows, reference=None)
    page = check_page(path)
    assert page.headings == ["Structure", "Comparison", "Scores against seconds", "Samples: 8gaussians",
                             "Samples: digits", "Objective per step"]
    assert len(page.images) == 4  # no structure; scores, both scatters in one picture, digits, history
    assert [cells[0] for cells in page.tables[0][1:]] == ["real_data", "noise"]
    assert any("over the true density of 8gaussians" in c for c in page.captions)
    assert any(c.startswith("structure: not drawn for this model") for c in page.captions)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("model,method,options,density", [
    ("gan", "gan", {"train_size": 256, "eval": 100, "batch_size": 64}, "ring"),
    ("ebm", "dsm", {"train_size": 256, "samples": 50, "sample_steps": 5}, "8gaussians"),
    ("diffusion", "ddim_10", {"train_steps": 3, "points": 40, "width": 8, "train_n": 200, "T": 10}, "8gaussians"),
    ("flow_matching", "ot_euler_1", {"train_steps": 3, "points": 40, "width": 8, "train_n": 200}, "8gaussians"),
    ("flows", "realnvp", {"densities": "ring", "n_train": 200, "n_test": 200, "hidden": 8, "layers": 2}, "ring"),
])
def test_deep_entries_carry_their_samples_for_the_report(model, method, options, density):
    from genzoo.zoo import ENTRIES

    entry = ENTRIES[model]
    result = entry.method(method).fn(entry.problem(options, seed=0), RunConfig(seed=0, steps=3, progress=False))
    sets = result.diagnostics["sample_sets"]
    assert list(sets) == [density]
    if result.samples:  # the same draws the scores were computed on, not a second sample
        assert sets[density] is result.samples["x"]
    else:  # flows: 1,000 fresh draws per density
        assert np.shape(sets[density]) == (1000, 2)


def test_continuous_report_draws_densities_over_the_reference(tmp_path):
    rng = np.random.default_rng(0)
    # the Result names its algorithm; the row (and so the report) the registry's method name
    reference = Result(method="conjugate_update", diagnostics={"posterior_mean": {"mu": np.zeros(3)},
                                                               "posterior_sd": {"mu": np.ones(3)}})
    draws = Result(method="draws", samples={"mu": rng.normal(size=(500, 3)), "tau": rng.gamma(2.0, size=500)})
    rows = [compare.Row("closed_form", 0.01, 0.01, None, None, 0.0, None, None, None, reference),
            compare.Row("draws", 0.2, 0.2, None, None, compare.moment_errors(reference, draws), None, None, None,
                        draws)]
    path = report.compare_report(tmp_path, model="toy", family="test", summary="a Gaussian posterior",
                                 problem_text="three means", table=compare.format_table(rows), rows=rows,
                                 reference="closed_form")
    page = check_page(path)
    assert page.headings == ["Structure", "Comparison", "Error against seconds", "Posterior densities"]
    caption = next(c for c in page.captions if c.startswith("posterior draws"))
    assert "reference (closed_form) mean +- one sd" in caption
    assert "4 of 4 components: mu[0], mu[1], mu[2], tau" in caption


def test_a_picture_that_fails_becomes_a_line_saying_why(tmp_path):
    reference = Result(method="closed_form", diagnostics={"posterior_mean": {"w": np.zeros(())},
                                                          "posterior_sd": {"w": np.ones(())}})
    words = Result(method="words", samples={"w": np.array(["not", "numbers"])})
    rows = [compare.Row("closed_form", 0.01, 0.01, None, None, 0.0, None, None, None, reference),
            compare.Row("words", 0.1, 0.1, None, None, None, None, None, None, words)]
    path = report.compare_report(tmp_path, model="toy", family="test", summary="a broken sampler",
                                 problem_text="w", table=compare.format_table(rows), rows=rows,
                                 reference="closed_form")
    page = check_page(path)
    assert page.headings[-1] == "Posterior densities"
    assert any(c.startswith("posterior densities: not drawn (ValueError") for c in page.captions)


def test_rows_without_results_still_make_a_report(asia, tmp_path):
    """``compare --all --ray``: only the figures come back; the report says what it cannot draw."""
    import dataclasses

    entry, problem, rows = asia
    bare = [dataclasses.replace(r, result=None) for r in rows]
    path = report.compare_report(tmp_path, model=entry.name, family=entry.family, summary=entry.description,
                                 problem_text=problem.description, table=compare.format_table(bare), rows=bare,
                                 reference="exact", problem=None)
    page = check_page(path)
    assert page.headings == ["Structure", "Comparison", "Error against seconds"]
    assert any("stayed on the Ray workers" in c for c in page.captions)


def test_a_models_own_graph_becomes_a_graph_spec(asia):
    """The BN's DAG as a spec (checked on the spec, and on the Graphviz source numpyro makes of it
    where ``dot`` is installed), and an undirected graph drawn without arrows."""
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import networkx as nx
    from numpyro.infer.inspect import render_graph

    from genzoo.render import figure, graph_to_spec

    _, problem, _ = asia
    bn = problem.model
    spec = graph_to_spec(bn.graph, observed=list(problem.data))
    assert set(spec["node_data"]) == set(bn.variables) and spec["directed"]
    assert sorted(spec["edge_list"]) == sorted((p, v) for v in bn.variables for p in bn.parents(v))
    assert {n for n, d in spec["node_data"].items() if d["is_observed"]} == set(problem.data)
    source = render_graph(graph_to_spec(bn.graph, observed=list(problem.data))).source
    for v in bn.variables:
        colour = "grey" if v in problem.data else "white"
        assert f"{v} [label={v} fillcolor={colour}" in source
    ring = graph_to_spec(nx.cycle_graph(["a", "b", "c"]))
    assert not ring["directed"] and len(ring["edge_list"]) == 3
    fig = figure(ring)
    assert not any(isinstance(p, matplotlib.patches.FancyArrowPatch) for p in fig.axes[0].patches)
    plt.close(fig)


def test_structure_falls_back_with_a_note():
    class Broken:
        def model(self, n):
            raise RuntimeError("cannot trace")

    assert report.structure_picture(None).png is None
    pic = report.structure_picture(Problem(model=object()))
    assert pic.png is None and "no graph and no NumPyro program" in pic.caption
    pic = report.structure_picture(Problem(model=Broken(), program_kwargs={"n": 1}))
    assert pic.png is None and "RuntimeError: cannot trace" in pic.caption


# ----------------------------------------------------------------------------- CLI
def test_cli_run_and_compare_write_the_report(tmp_path, capsys):
    from genzoo.cli import main

    assert main(["run", "bayesnet", "--method", "exact", "--network", "asia", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    path = pathlib.Path(printed.split("report: ")[1].split("\n")[0])
    assert path.name == "report.html" and path.parent.parent == tmp_path / "run"
    page = check_page(path)
    assert page.tables[0][1] == ["method", "exact"]
    assert "Marginals" in page.headings

    assert main(["compare", "bayesnet", "--network", "asia", "--methods", "loopy_bp", "--out",
                 str(tmp_path / "compare"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    path = pathlib.Path(printed.split("report: ")[1].split("\n")[0])
    page = check_page(path)
    assert [cells[0] for cells in page.tables[0][1:]] == ["exact", "loopy_bp"]
    # compare.png is the very picture the report embeds
    compare_png = (path.parent / "compare.png").read_bytes()
    assert page.images[1] == "data:image/png;base64," + base64.b64encode(compare_png).decode("ascii")


def test_cli_compare_all_on_ray_writes_a_report_per_model(asia, tmp_path, monkeypatch, capsys):
    """``compare --all --ray`` hands each model's figures (rows without Results) to the same report
    writer; Ray itself is replaced by the rows it would return (tests/test_sweep.py runs the real one)."""
    import argparse
    import dataclasses

    import genzoo.sweep
    from genzoo import cli

    entry, problem, rows = asia
    bare = [dataclasses.replace(r, result=None) for r in rows]
    monkeypatch.setattr(genzoo.sweep, "compare_models",
                        lambda jobs, **kw: iter([("bayesnet", problem.description, bare)]))
    args = argparse.Namespace(seed=0, steps=None, ray="local", warm=False, no_progress=True, out=str(tmp_path))
    cli._compare_all_ray(args)
    printed = capsys.readouterr().out
    path = pathlib.Path(printed.split("report: ")[1].split("\n")[0])
    page = check_page(path)
    assert [cells[0] for cells in page.tables[0][1:]] == ["exact", "loopy_bp", "likelihood_weighting"]
    assert any("stayed on the Ray workers" in c for c in page.captions)
    assert (path.parent / "compare.png").exists()


class _Chain:
    """A model with a hidden chain (what :func:`report_plots._chain_sites` looks for)."""

    def chain(self, x, lengths=None):
        raise NotImplementedError  # never called by the figure


@pytest.mark.parametrize("K", [2, 3])
def test_a_long_hidden_chain_is_drawn_as_lines_over_time(K):
    """An HMM's state marginals (T, K) with T above MAX_PANELS: one line per method over every
    step, one panel per state (for two states, the second: the first is its complement), named
    from ``problem.state_names``; the lines hold the marginals exactly."""
    from genzoo import report_plots

    rng = np.random.default_rng(0)
    T = report_plots.MAX_PANELS + 28
    names = ("fair", "loaded", "sticky")[:K]
    results = [Result(method=m, marginals={"z": rng.dirichlet(np.ones(K), size=T)}) for m in ("exact", "gibbs")]
    problem = Problem(model=_Chain(), data=np.zeros(T), state_names={"z": names})
    fig, caption = report_plots.marginals_figure(results, problem)
    states = [1] if K == 2 else list(range(K))
    assert [ax.get_title() for ax in fig.axes] == [f"p(z[t] = {names[k]})" for k in states]
    for ax, k in zip(fig.axes, states):
        assert [line.get_label() for line in ax.lines] == ["exact", "gibbs"]
        for line, r in zip(ax.lines, results):
            np.testing.assert_array_equal(line.get_xdata(), np.arange(T))
            np.testing.assert_array_equal(line.get_ydata(), r.marginals["z"][:, k])
    assert caption.startswith(f"posterior state probabilities at every step (z: {T} steps)")
    assert report_plots.png(fig).startswith(PNG_SIGNATURE)


def test_a_short_chain_or_a_model_without_one_keeps_the_bars():
    from genzoo import report_plots

    rng = np.random.default_rng(1)
    long = [Result(method="exact", marginals={"z": rng.dirichlet(np.ones(2), size=40)})]
    short = [Result(method="exact", marginals={"z": rng.dirichlet(np.ones(2), size=report_plots.MAX_PANELS)})]
    for results, model in ((long, object()), (short, _Chain())):  # no chain method; a chain of 12 steps
        fig, caption = report_plots.marginals_figure(results, Problem(model=model, state_names={"z": ("a", "b")}))
        assert caption.startswith("posterior marginals") and len(fig.axes) == report_plots.MAX_PANELS
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b"]  # the states named
