"""The run report: one self-contained ``report.html`` beside a run folder's ``metrics.json``.

Every ``genzoo compare`` and ``genzoo run`` writes it. The page needs no network and no script:
CSS is inline and every picture is a PNG embedded as a ``data:image/png;base64`` URI, so the file
can be mailed, archived or opened offline. It shows, in order:

1. the model (name, family, the problem asked) and its structure: a Bayesian network's DAG or an
   MRF's graph as the model holds it, else the plate diagram NumPyro traces from the program
   (:mod:`genzoo.render`); where neither exists or drawing fails, a line says so instead;
2. the comparison table, cell for cell the table the command printed;
3. pictures read at a glance (:mod:`genzoo.report_plots`): error against seconds; for discrete
   models the marginals of every method beside the exact ones; for continuous posteriors each
   method's sample densities over the reference's; for deep models their samples over the true
   2-D density, or a grid of sampled images; the objective per step.

Pictures use matplotlib's Agg backend; a report of the usual comparison takes well under 2 s.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import pathlib
import re
from typing import Mapping, Sequence

from genzoo.runs import atomic_write

__all__ = ["Picture", "table_cells", "structure_picture", "compare_report", "run_report", "write_page"]

#: Structures with more nodes than this are not drawn (a hairball helps no reader); the page says so.
MAX_STRUCTURE_NODES = 60


@dataclasses.dataclass(frozen=True)
class Picture:
    """One picture of the report: a heading, the PNG (None when not drawn) and a caption saying what
    is shown, or why nothing is."""

    title: str
    png: bytes | None
    caption: str = ""


def table_cells(text: str) -> tuple[list[str], list[str], list[list[str]], list[str]]:
    """Split a table as :func:`genzoo.compare.format_table` prints it into
    ``(title lines, header, body rows, trailing lines)``.

    The printed table left-justifies every column to its widest cell and joins columns with two
    spaces, and no header cell holds two spaces in a row; so the header's cells mark where every
    column starts, and each body line is cut at those positions. The report therefore shows the
    very strings the terminal showed. Body lines start with a method's name; the first line that is
    blank or indented (the long table's footnotes) ends the body.
    """
    lines = text.splitlines()
    rule = next((i for i, line in enumerate(lines) if line and set(line) == {"-"}), None)
    if rule is None or rule == 0:
        from inference.errors import DataError

        raise DataError("table_cells: no header line above a rule of dashes in the table text")
    header_line = lines[rule - 1]
    spans = [m.span() for m in re.finditer(r"\S+(?: \S+)*", header_line)]
    starts = [a for a, _ in spans]
    body, rest = [], []
    for k, line in enumerate(lines[rule + 1:]):
        if not line.strip() or line[0].isspace():
            rest = lines[rule + 1 + k:]
            break
        body.append([line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])])
    header = [header_line[a:b] for a, b in spans]
    return lines[:rule - 1], header, body, [line for line in rest if line.strip()]


def _observed_sites(problem) -> list[str]:
    data = getattr(problem, "data", None)
    return [k for k in data if isinstance(k, str)] if isinstance(data, Mapping) else []


def structure_picture(problem) -> Picture:
    """The model's structure: its own networkx graph if it has one (a BN's DAG with the evidence
    shaded, an MRF's graph), else the plate diagram of ``problem.model.model(**program_kwargs)``.
    Never raises: a model that cannot be drawn gets a caption saying why."""
    title = "Structure"
    if problem is None:
        return Picture(title, None, "structure: not drawn for this model (the problem was built on the workers)")
    import networkx as nx

    from genzoo.render import graph_spec, graph_to_spec, picture

    model = problem.model
    try:
        graph = getattr(model, "graph", None)
        if isinstance(graph, nx.Graph):
            spec = graph_to_spec(graph, observed=[s for s in _observed_sites(problem) if s in graph])
            source = "the model's graph" + (" (observed variables grey)" if any(
                d["is_observed"] for d in spec["node_data"].values()) else "")
        elif callable(getattr(model, "model", None)) and problem.program_kwargs:
            spec = graph_spec(model.model, problem.program_kwargs)
            source = "the program's plate diagram, traced by NumPyro (observed sites grey)"
        else:
            return Picture(title, None, "structure: not drawn for this model (it holds no graph and no "
                                        "NumPyro program to trace)")
        nodes, edges = len(spec["node_data"]), len(spec["edge_list"])
        if nodes == 0:
            return Picture(title, None, "structure: not drawn for this model (NumPyro sees no sample site "
                                        "in its program)")
        if nodes > MAX_STRUCTURE_NODES:
            return Picture(title, None, f"structure: not drawn for this model ({nodes} nodes and {edges} edges, "
                                        f"more than the {MAX_STRUCTURE_NODES} nodes a drawing keeps legible)")
        return Picture(title, picture(spec, "png", dpi=80), f"{source}: {nodes} nodes, {edges} edges")
    except Exception as err:  # noqa: BLE001 - a picture that fails must not fail the command
        return Picture(title, None, f"structure: not drawn for this model ({type(err).__name__}: {err})")


def compare_report(folder, *, model: str, family: str, summary: str, problem_text: str, table: str,
                   rows: Sequence, reference: str | None, problem=None, seed: int | None = None,
                   error_png: bytes | None = None, notes: Sequence[str] = ()) -> pathlib.Path:
    """Write ``folder/report.html`` for a comparison and return its path.

    Args:
        model, family, summary: the model's name, family and one-line description.
        problem_text: the problem asked (``Problem.description``).
        table: the comparison table exactly as printed (:func:`genzoo.compare.format_table`).
        rows: the table's rows (:class:`genzoo.compare.Row`); rows whose ``result`` is None (a Ray
            run returns only figures) get no per-method pictures.
        reference: the name of the exact / reference method, or None.
        problem: the :class:`~genzoo.registry.Problem`, for the structure and the state names.
        error_png: the error-against-seconds PNG already written as ``compare.png`` (drawn here
            when None).
        notes: extra lines for the top of the page.
    """
    from genzoo import report_plots as plots

    # each Result under its row's name (the table's: "svi_normal", where the algorithm says "svi")
    results = [r.result if r.result.method == r.method else dataclasses.replace(r.result, method=r.method)
               for r in rows if getattr(r, "result", None) is not None]
    if error_png is None and plots.has_figure(rows):
        error_png = plots.png(plots.error_figure(rows, f"{model}: {problem_text}", reference))
    if plots.has_errors(rows):
        pictures = [Picture("Error against seconds", error_png, plots.ERROR_CAPTION)]
    elif any(r.scores for r in rows):
        pictures = [Picture("Scores against seconds", error_png, plots.SCORES_CAPTION)]
    else:  # the long tables of several datasets per method (compare deep): their figures are in the table
        pictures = []
    if len(results) < len(rows):
        notes = [*notes, "per-method pictures: not drawn for the rows whose results stayed on the Ray workers"]
    reference_result = next((r for r in results if r.method == reference), None)
    continuous = reference_result is not None and not reference_result.marginals
    pictures += plots.result_pictures(results, problem, reference=reference_result, posterior=continuous)
    return write_page(folder, heading=f"genzoo compare {model}", model=model, family=family, summary=summary,
                      problem_text=problem_text, seed=seed, table=table, structure=structure_picture(problem),
                      pictures=pictures, notes=notes)


def run_report(folder, *, model: str, family: str, summary: str, problem, method: str, result, kind: str,
               seed: int | None = None, history_png: bytes | None = None) -> pathlib.Path:
    """Write ``folder/report.html`` for ``genzoo run MODEL --method METHOD``: the ``result`` of the
    registry's ``method`` of kind ``kind`` (:class:`~genzoo.registry.Method`'s). Returns its path."""
    from genzoo import report_plots as plots

    result = result if result.method == method else dataclasses.replace(result, method=method)
    rows = [["method", method], ["seconds", f"{result.seconds:.4f}"]]
    if result.log_evidence is not None:
        rows.append([f"log evidence ({result.log_evidence_kind})", f"{result.log_evidence:.6f}"])
    rows += [[name, format(float(value), ".4g")] for name, value in result.diagnostics.get("scores", {}).items()]
    pictures = plots.result_pictures([result], problem, reference=None, posterior=kind == "posterior",
                                     history_png=history_png)
    return write_page(folder, heading=f"genzoo run {model} --method {method}", model=model, family=family,
                      summary=summary, problem_text=problem.description, seed=seed,
                      table=None, table_rows=rows,
                      structure=structure_picture(problem), pictures=pictures,
                      notes=[f"summary: {line}" for line in result.summary().splitlines()[1:]])


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; color: #222; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd;
       padding-bottom: 0.2em; margin-top: 1.6em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; } dt { font-weight: 600; }
dd { margin: 0; } .note { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; } td.num { text-align: right; } td:first-child { font-weight: 600; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 0.6em 0 1.4em; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; margin-top: 0.3em; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?inf|nan|-")  # right-aligned cells


def _table_html(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if _NUMBER.fullmatch(c) else f"<td>{esc(c)}</td>"
                                    for c in row) + "</tr>\n" for row in body)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"


def _figure_html(pic: Picture) -> str:
    caption = f"<figcaption>{html.escape(pic.caption)}</figcaption>" if pic.caption else ""
    if pic.png is None:
        return f'<p class="note">{html.escape(pic.caption)}</p>'
    return f"<figure>{_img(pic.png, pic.title)}{caption}</figure>"


def write_page(folder, *, heading: str, model: str, family: str, summary: str, problem_text: str,
               seed: int | None, table: str | None, structure: Picture, pictures: Sequence[Picture],
               table_rows: Sequence[Sequence[str]] | None = None, notes: Sequence[str] = ()) -> pathlib.Path:
    """Assemble the page and write ``folder/report.html`` atomically. ``table`` is a printed table
    (split by :func:`table_cells`); ``table_rows`` are (quantity, value) pairs instead."""
    esc = html.escape
    written = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    about = [("model", f"{model} ({family})"), ("what", summary), ("problem", problem_text)]
    about += [("seed", str(seed))] if seed is not None else []
    about += [("written", written)]
    parts = [f"<h1>{esc(heading)}</h1>",
             "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in about) + "</dl>"]
    parts += [f'<p class="note">{esc(n)}</p>' for n in notes]
    parts += ["<h2>Structure</h2>", _figure_html(structure)]
    if table is not None:
        titles, header, body, trailing = table_cells(table)
        parts += ["<h2>Comparison</h2>"] + [f'<p class="note">{esc(t)}</p>' for t in titles if t.strip()]
        parts += [_table_html(header, body)] + [f'<p class="note">{esc(t)}</p>' for t in trailing]
    elif table_rows is not None:
        parts += ["<h2>Result</h2>", _table_html(["quantity", "value"], table_rows)]
    for pic in pictures:
        parts += [f"<h2>{esc(pic.title)}</h2>", _figure_html(pic)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(heading)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
    return atomic_write(pathlib.Path(folder) / "report.html", page)

