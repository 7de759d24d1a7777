"""The ``genzoo`` command line: list, info, run, compare, sample.

Model options (``--network alarm``, ``--evidence A=x,B=y``...) follow the model name; ``genzoo info
MODEL`` lists them. Every command exits non-zero with a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import textwrap

import numpy as np

from inference.errors import DataError, GenzooError, ModelError, UnknownNameError

MAX_SEED = 2**32 - 1  # JAX's PRNGKey keeps the low 32 bits of a seed: larger seeds would collide


def _entries():
    from genzoo.zoo import ENTRIES

    return ENTRIES


def _entry(name):
    from genzoo.registry import lookup

    return lookup(name, _entries())


def _model_options(extra: list[str]) -> dict[str, str]:
    """``["--network", "alarm", "--evidence=A=x"]`` -> ``{"network": "alarm", "evidence": "A=x"}``."""
    options, i = {}, 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or token == "--":
            raise UnknownNameError(f"unexpected argument {token!r}")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            value, i = extra[i + 1], i + 1
        else:
            value = "1"  # a bare flag (--quick): on
        key = key.replace("-", "_")
        if key in options:
            raise DataError(f"model option --{key} given twice ({options[key]!r} and {value!r})")
        options[key] = value
        i += 1
    return options


# --------------------------------------------------------------------------- commands
def cmd_list(args, extra):
    entries = _entries()
    rows = [(e.name, e.family, e.exact_method or "-", ", ".join(m.name for m in e.methods), e.description)
            for e in entries.values()]
    header = ("model", "family", "exact", "methods", "description")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header[:-1])]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  " + header[-1])
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])


def cmd_info(args, extra):
    entry = _entry(args.model)
    doc_obj = entry.doc_object()
    print(f"{entry.name}: {entry.description}")
    print(f"family: {entry.family}")
    print(f"default data: {entry.dataset}")
    print(f"exact method: {entry.exact_method or 'none'}")
    print("methods:")
    for m in entry.methods:
        print(f"  {m.name:<22} [{m.kind}] {m.description}")
    if entry.options:
        print("options:")
        for name, opt in entry.options.items():
            print(f"  --{name:<20} {opt.help} (default: {opt.default!r})")
    if doc_obj is not None and inspect.getdoc(doc_obj):
        print()
        print(inspect.getdoc(doc_obj))
    options = _model_options(extra)
    if entry.exact_method == "exact":
        print(f"\nexact arithmetic: {_arithmetic(entry, options)}")
    if args.render:
        from genzoo.render import render

        spec = _graph_spec(entry, options)
        path = render(spec, args.render)
        print(f"\ngraph: {len(spec['node_data'])} sites, {len(spec['edge_list'])} edges -> {path}")


def _arithmetic(entry, options):
    """Which arithmetic the exact engine uses on the problem these options make, measured by running
    it: linear (probability space, per-message scaling) or log space (``Result.diagnostics``)."""
    problem = entry.problem(options, seed=0)
    from genzoo.registry import RunConfig

    result = entry.method("exact").fn(problem, RunConfig(seed=0, steps=None, progress=False))
    arithmetic = result.diagnostics.get("arithmetic")
    if arithmetic is None:
        return "not reported (this model's exact method does not report it)"
    return {"linear": "linear (probability space with per-message scaling: the tables' range allows it)",
            "log": "log space"}.get(arithmetic, arithmetic)


def _graph_spec(entry, options):
    """The program's graph spec: the entry's own ``graph`` hook (no training, no data), else the
    problem's program traced by NumPyro; a program that cannot be drawn is a typed error."""
    from genzoo.render import graph_spec

    if entry.graph is not None:
        return entry.graph(entry.values(options))
    problem = entry.problem(options, seed=0)
    try:
        spec = graph_spec(problem.model.model, problem.program_kwargs)
        import networkx as nx

        from genzoo.render import spec_to_digraph

        if not nx.is_directed_acyclic_graph(spec_to_digraph(spec)):
            raise ValueError("the traced dependencies have a cycle")
    except GenzooError:
        raise
    except Exception as err:  # noqa: BLE001 - a program NumPyro's inspection cannot trace
        raise ModelError(f"model {entry.name!r}: its program cannot be drawn ({type(err).__name__}: {err})") from err
    return spec


def _write_result(folder, result, problem, entry):
    from genzoo.runs import atomic_write, save_figure, write_json

    metrics = {
        "model": entry.name,
        "method": result.method,
        "problem": problem.description,
        "seconds": result.seconds,
        "log_evidence": result.log_evidence,
        "log_evidence_kind": result.log_evidence_kind,
        "history": result.history,
        "diagnostics": {k: v for k, v in result.diagnostics.items()
                        if k != "sample_sets" and _is_jsonable(v)},  # the samples are in result.json
    }
    write_json(folder / "metrics.json", metrics)
    params = result.params
    if params is not None and hasattr(params, "to_bif"):
        tmp = folder / ".model.bif.tmp"
        params.to_bif(tmp)
        tmp.replace(folder / "model.bif")
        params = None
    import dataclasses

    try:
        atomic_write(folder / "result.json", dataclasses.replace(result, params=params).to_json())
    except TypeError:
        atomic_write(folder / "result.json", dataclasses.replace(result, params=None).to_json())
    if result.history is not None and len(result.history) > 1:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(np.asarray(result.history, dtype=float), marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel("objective")
        ax.set_title(f"{entry.name} / {result.method}")
        save_figure(fig, folder / "history.png")
        plt.close(fig)


def _is_jsonable(value):
    try:
        json.dumps(value, default=lambda o: np.asarray(o).tolist())
        return True
    except (TypeError, ValueError):
        return False


def _print_marginals(result, problem, limit=12, rows=4):
    """Each site's marginal with its states named (``problem.state_names``, else the model's
    ``states``, else the state index); a site over time or data points (T, K) shows its first rows."""
    model_states = getattr(problem.model, "states", None)
    states = {**(model_states if isinstance(model_states, dict) else {}), **problem.state_names}
    for i, (site, probs) in enumerate(result.marginals.items()):
        if i == limit:
            print(f"  ... {len(result.marginals) - limit} more in result.json")
            break
        probs = np.asarray(probs)
        names = states.get(site)
        if probs.ndim == 1 or (probs.ndim == 2 and (names is not None or probs.shape[1] <= 10)):
            def cells(p):
                labels = names if names is not None and len(names) == len(p) else range(len(p))
                return ", ".join(f"{s}={q:.4f}" for s, q in zip(labels, p))

            if probs.ndim == 1:
                print(f"  {site}: {cells(probs)}")
                continue
            for t, row in enumerate(probs[:rows]):
                print(f"  {site}[{t}]: {cells(row)}")
            if len(probs) > rows:
                print(f"  ... {len(probs) - rows} more rows of {site} in result.json")
        else:
            print(f"  {site}: {np.array2string(probs, precision=4, threshold=20)}")


def _posterior_summary(result):
    """ArviZ's summary of the samples (mean, sd, the 90% highest-density interval hdi_5% / hdi_95%,
    Monte Carlo standard errors, bulk and tail ESS, rank-normalised R-hat), as a DataFrame, or None
    where the result holds no real-valued samples."""
    samples = {k: v for k, v in result.samples.items()
               if np.issubdtype(np.asarray(v).dtype, np.floating) and np.asarray(v).ndim >= 1}
    if not samples:
        return None
    import dataclasses
    import logging

    from inference._arviz import arviz

    az = arviz()

    logger = logging.getLogger("arviz")
    level = logger.level
    logger.setLevel(logging.ERROR)  # one chain: ArviZ warns that R-hat needs two; the column is dropped below
    try:
        table = az.summary(dataclasses.replace(result, samples=samples).to_arviz(), hdi_prob=0.9, round_to=4)
    finally:
        logger.setLevel(level)
    return table.drop(columns=[c for c in table.columns if table[c].isna().all()])


def _print_summary(table, limit=20):
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.head(limit).to_string())
    if len(table) > limit:
        print(f"  ... {len(table) - limit} more rows in summary.csv")


def cmd_run(args, extra):
    from genzoo import report
    from genzoo.registry import RunConfig
    from genzoo.runs import run_folder

    entry = _entry(args.model)
    method = entry.method(args.method)
    problem = entry.problem(_model_options(extra), seed=args.seed)
    config = RunConfig(seed=args.seed, steps=args.steps, progress=not args.no_progress)
    print(f"{entry.name} / {method.name}: {problem.description}")
    result = method.fn(problem, config)
    print(result.summary())
    table = _posterior_summary(result)
    if table is not None:
        print("posterior summary (ArviZ; hdi_5% / hdi_95%: the 90% highest-density interval):")
        _print_summary(table)
    if result.marginals:
        print("marginals:")
        _print_marginals(result, problem)
    if result.map:
        names = result.diagnostics.get("map_states", {})
        shown = list(result.map.items())[:12]
        print("MAP: " + ", ".join(f"{k}={names.get(k, v)}" for k, v in shown)
              + (" ..." if len(result.map) > 12 else ""))
    with run_folder(entry.name, method.name, args.out) as folder:
        _write_result(folder, result, problem, entry)
        if table is not None:
            from genzoo.runs import atomic_write

            atomic_write(folder / "summary.csv", table.to_csv())
        history = folder / "history.png"
        _write_report(lambda: report.run_report(
            folder, model=entry.name, family=entry.family, summary=entry.description, problem=problem,
            method=method.name, result=result, kind=method.kind, seed=args.seed,
            history_png=history.read_bytes() if history.exists() else None))
    print(f"run folder: {folder}")


def _write_report(write, say=True):
    """Call ``write()`` (which writes report.html) and print the report's path; a report that fails
    prints one line, to stderr, and leaves the run folder's other files as they are. With
    ``say=False`` the line is returned instead, as ``(to_stderr, line)``."""
    try:
        line = (False, f"report: {write()}")
    except Exception as err:  # noqa: BLE001 - the results are written already; the picture must not undo that
        line = (True, f"genzoo: report.html not written: {type(err).__name__}: {err}")
    if not say:
        return line
    print(line[1], file=sys.stderr if line[0] else sys.stdout)
    return None


def cmd_compare(args, extra):
    if args.all:
        if args.model or args.methods or extra:
            raise UnknownNameError("--all runs every model with its defaults: give no model, --methods or options")
        import time

        start = time.perf_counter()
        if args.ray:  # every model at once, as Ray tasks
            _compare_all_ray(args)
            print(f"report card: {len(_entries())} models in {time.perf_counter() - start:.1f} s")
            return
        with _workers(args) as workers:  # one set of workers serves every model
            for name, entry in _entries().items():
                quick = dict(entry.quick)
                steps = quick.pop("steps", None)
                _compare_one(entry, list(entry.comparable_methods), quick, args,
                             steps if args.steps is None else args.steps, warm=False, workers=workers)
                print()
        print(f"report card: {len(_entries())} models in {time.perf_counter() - start:.1f} s")
        return
    if args.ray:
        raise UnknownNameError("--ray runs the models of --all in parallel; one model's methods run here "
                               "(use genzoo sweep MODEL --ray for seeds and options)")
    if not args.model:
        raise UnknownNameError("name a model (genzoo list shows them) or use --all")
    entry = _entry(args.model)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(entry.comparable_methods)
    options, steps = _model_options(extra), args.steps
    if args.quick:  # the entry's small sizes (the report card's), under any option given explicitly
        quick = dict(entry.quick)
        quick_steps = quick.pop("steps", None)
        options = {**{k: str(v) for k, v in quick.items()}, **options}
        steps = steps if steps is not None else quick_steps
        print(f"quick run: {', '.join(f'{k}={v}' for k, v in {**quick, 'steps': steps}.items() if v is not None)}")
    for name in methods:  # an unknown name fails before any process starts
        entry.method(name)
    with _workers(args, entry, methods) as workers:  # started now, they get ready while the problem is built
        _compare_one(entry, methods, options, args, steps, warm=args.warm, workers=workers)


def _jobs_of(args) -> int:
    from genzoo import compare

    return args.jobs if getattr(args, "jobs", None) is not None else compare.default_jobs()


def _workers(args, entry=None, methods=()):
    """The worker processes of ``compare`` (``--jobs``) as a context manager: a null one where the
    methods run here (``--jobs 1``, one method and no reference to run, or an entry whose methods a
    worker cannot find by name)."""
    import contextlib

    from genzoo import compare

    jobs = _jobs_of(args)
    if entry is not None:
        to_run = set(methods) | {entry.reference_of(name) for name in methods} - {None}
        if not compare.side_by_side(entry):
            return contextlib.nullcontext()
        jobs = min(jobs, len(to_run))  # no process without a method to take
    return contextlib.nullcontext() if jobs < 2 else compare.Workers(jobs, entry=entry.name if entry else None)


def _compare_one(entry, methods, options, args, steps, warm=False, workers=None):
    """One comparison; ``warm`` runs each method a second time so that the seconds exclude
    compilation; ``workers`` (:class:`genzoo.compare.Workers`) run methods beside this process."""
    from genzoo import compare
    from genzoo.method_times import MethodTimes
    from genzoo.registry import RunConfig

    if entry.exact_method is None:
        print(f"note: {entry.name} has no exact method; errors are not computed")
    problem = entry.problem(options, seed=args.seed)
    config = RunConfig(seed=args.seed, steps=steps, progress=not args.no_progress)
    from genzoo.reference_cache import ReferenceCache

    cache = ReferenceCache.default(read=not getattr(args, "fresh_reference", False))
    jobs = workers.jobs if workers is not None else 1
    rows = compare.run_methods(entry, problem, methods, config, warm=warm, cache=cache, options=options, jobs=jobs,
                               workers=workers, times=MethodTimes.default())
    ran = sum(not r.cached for r in rows)
    if jobs > 1 and ran > 1 and compare.side_by_side(entry):
        print(f"note: the methods ran {min(jobs, ran)} at a time (--jobs {_jobs_of(args)}): each one's seconds "
              f"include the others' load; --jobs 1 times each alone")
    _report_compare(entry, problem.description, rows, args, problem, workers=workers if jobs > 1 else None)


def _compare_all_ray(args):
    """``compare --all --ray``: the report card's models as Ray tasks, each reported as it finishes."""
    from genzoo.sweep import compare_models

    jobs = {}
    for name, entry in _entries().items():
        quick = dict(entry.quick)
        steps = quick.pop("steps", None)
        jobs[name] = {"options": quick, "steps": steps if args.steps is None else args.steps}
    for name, description, rows in compare_models(jobs, seed=args.seed, ray=args.ray, warm=args.warm,
                                                  progress=not args.no_progress):
        entry = _entries()[name]
        if entry.exact_method is None:
            print(f"note: {entry.name} has no exact method; errors are not computed")
        _report_compare(entry, description, rows, args)
        print()


def _report_compare(entry, description, rows, args, problem=None, workers=None):
    """Print a comparison's tables, one per question the entry asks, and write a run folder for each
    (metrics.json, compare.png, report.html); ``problem`` is None where the rows came back from Ray
    workers without it. With ``workers`` (:class:`genzoo.compare.Workers`), the folders of all
    questions but the last are written by workers while this process writes the last (drawing the
    pictures is most of what a second ``compare hmm`` does after its methods); the output is printed
    in the questions' order either way."""
    from genzoo import compare

    parts = []  # (title, folder kind, reference, rows, problem text, a question follows)
    for question, group in compare.by_question(entry, rows):
        if question is None:
            parts.append((f"{entry.name}: {description}", "compare", entry.exact_method, group, description, False))
        else:
            title = f"{entry.name}: {description}\nquestion: {question.title} (reference: {question.reference})"
            parts.append((title, f"compare-{question.name}", question.reference, group,
                          f"{description}; {question.title}", True))
    written = []
    for i, (title, kind, reference, group, text, _) in enumerate(parts):
        task = (entry.name, title, kind, reference, group, args.out, args.seed, problem, text)
        if workers is not None and i < len(parts) - 1:
            written.append(workers.pool.apply_async(_question_folder, task))
        else:
            written.append(_question_folder(entry, *task[1:]))
    for (title, _, _, group, _, blank), done in zip(parts, written):
        print(compare.format_table(group, title))
        folder, lines = done.get() if hasattr(done, "get") else done
        for to_stderr, line in lines:
            print(line, file=sys.stderr if to_stderr else sys.stdout)
        print(f"run folder: {folder}")
        if blank:
            print()


def _question_folder(entry, title, kind, reference, rows, out, seed, problem, problem_text):
    """Write one question's run folder (metrics.json, compare.png, report.html) and return it with the
    lines to print, as ``(to_stderr, line)`` (see :func:`_write_report`); ``entry`` or its name (in
    a worker, which finds it in the catalogue)."""
    from genzoo import compare, report
    from genzoo.report_plots import error_figure, has_figure, png
    from genzoo.runs import atomic_write, run_folder, write_json

    if isinstance(entry, str):
        entry = _entry(entry)
    table = compare.format_table(rows, title)
    with run_folder(entry.name, kind, out) as folder:
        write_json(folder / "metrics.json", {"model": entry.name, "problem": problem_text,
                                             "seed": seed, "rows": [r.metrics() for r in rows]})
        error_png = None
        if has_figure(rows):  # errors or scores against seconds (a long table per dataset has neither)
            error_png = png(error_figure(rows, title.replace("\n", " - "), reference), dpi=120)
            atomic_write(folder / "compare.png", error_png)
        line = _write_report(lambda: report.compare_report(
            folder, model=entry.name, family=entry.family, summary=entry.description, problem_text=problem_text,
            table=table, rows=rows, reference=reference, problem=problem, seed=seed,
            error_png=error_png), say=False)
    return folder, [line]


def cmd_sweep(args, extra):
    from genzoo.runs import new_run_dir
    from genzoo.sweep import grid as check_grid, parse_seeds, parse_set, sweep

    entry = _entry(args.model)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else list(entry.comparable_methods)
    grid = _model_options(extra)  # fixed options (--network asia) ...
    grid.update(parse_set(args.set or []))  # ... and the grid's (--set network=asia,sachs)
    steps = args.steps
    if args.quick:  # the entry's small sizes (the report card's), under any option given explicitly
        quick = dict(entry.quick)
        quick_steps = quick.pop("steps", None)
        grid = {**{k: str(v) for k, v in quick.items()}, **grid}
        steps = steps if steps is not None else quick_steps
    seeds = parse_seeds(args.seeds)
    check_grid(entry.name, methods, seeds, grid)  # bad input fails before a run folder is made
    folder = args.folder or new_run_dir(entry.name, "sweep", args.out)
    run = sweep(entry.name, methods, seeds, grid, folder, ray=args.ray, steps=steps, warm=args.warm,
                max_retries=args.max_retries, progress=not args.no_progress)
    print(run.table)
    print(f"{len(run.computed)} cells computed, {len(run.reused)} found finished")
    print(f"run folder: {run.folder}")


def _sample_count(args, entry, options):
    """The number of samples: ``-n`` / ``--num-samples``, or ``--n`` where the model has no option
    ``n`` of its own (for ``gmm``, ``--n`` stays the model's data size)."""
    n = args.n
    if "n" in options and "n" not in entry.options:
        given = options.pop("n")
        try:
            from_option = int(given)
        except ValueError:
            raise DataError(f"--n (the number of samples) expects an integer, got {given!r}") from None
        if n is not None and n != from_option:
            raise DataError(f"the number of samples is given twice: -n {n} and --n {from_option}")
        n = from_option
    n = 10 if n is None else n
    if n < 1:
        raise DataError(f"-n (the number of samples) must be a positive integer, got {n}")
    return n


def _draws_hint(entry):
    """Which command draws from a model that has no ``sample`` hook."""
    posterior = [m.name for m in entry.methods if m.kind == "posterior" and m.name != entry.exact_method]
    if posterior:
        return f"posterior draws come from genzoo run {entry.name} --method {posterior[0]} (samples in result.json)"
    return (f"genzoo compare {entry.name} trains its methods ({', '.join(m.name for m in entry.methods[:4])}"
            f"{', ...' if len(entry.methods) > 4 else ''}) and scores draws from each")


def cmd_sample(args, extra):
    from genzoo.runs import atomic_write, run_folder, save_figure

    entry = _entry(args.model)
    options = _model_options(extra)
    n = _sample_count(args, entry, options)
    if entry.sample is None:
        raise UnknownNameError(f"model {entry.name!r} has no sampler for genzoo sample; {_draws_hint(entry)}")
    problem = entry.problem(options, seed=args.seed)
    draws = entry.sample(problem, args.seed, n)
    with run_folder(entry.name, "sample", args.out) as folder:
        if isinstance(draws, str):  # text (charlm): print it and keep it
            atomic_write(folder / "samples.txt", draws + "\n")
            print(draws)
        elif isinstance(draws, dict):
            states = getattr(problem.model, "states", {})
            columns = list(draws)
            table = [[_state_name(states, c, v) for v in np.asarray(draws[c]).reshape(n)] for c in columns]
            lines = [",".join(columns)] + [",".join(str(col[i]) for col in table) for i in range(n)]
            atomic_write(folder / "samples.csv", "\n".join(lines) + "\n")
            _print_table(columns, [[f"{v:.4g}" if isinstance(v, float) else v for v in col] for col in table], n)
        else:
            images = np.asarray(draws)
            fig = image_grid(images)
            save_figure(fig, folder / "samples.png", dpi=100)
            print(f"{len(images)} samples of shape {images.shape[1:]}")
    print(f"run folder: {folder}")


def _state_name(states, var, value):
    names = states.get(var) if isinstance(states, dict) else None
    return names[int(value)] if names is not None else value


def _print_table(columns, table, n, max_columns=8):
    shown = columns[:max_columns]
    widths = [max(len(c), *(len(str(v)) for v in table[i])) for i, c in enumerate(shown)]
    print("  ".join(c.ljust(w) for c, w in zip(shown, widths))
          + (f"  ... ({len(columns) - max_columns} more columns in samples.csv)" if len(columns) > max_columns else ""))
    for r in range(n):
        print("  ".join(str(table[i][r]).ljust(w) for i, w in enumerate(widths)))


def image_grid(images, columns: int | None = None):
    """A figure with ``images`` (N, H, W) laid out in a grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image in zip(axes.ravel(), images):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    return fig


# --------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors raised as a :class:`DataError` (one line from :func:`main`)
    instead of printed with the usage and ``SystemExit``."""

    def error(self, message):
        # "genzoo compare: ..." names the command; the program's own errors need no second "genzoo:"
        where = "" if self.prog == "genzoo" else f"{self.prog}: "
        raise DataError(f"{where}{message} ({self.prog} --help shows the arguments)")


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects an integer, got {text!r}") from None


def _seed(text):
    """``--seed``: an integer in [0, 2^32 - 1]."""
    seed = _integer(text)
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {MAX_SEED}], got {seed}")
    return seed


def _steps(text):
    """``--steps``: a positive integer (0 would be read as "the method's default" otherwise)."""
    steps = _integer(text)
    if steps < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (leave --steps out for the method's "
                                         f"default), got {steps}")
    return steps


def _jobs(text):
    """``--jobs``: a positive integer."""
    jobs = _integer(text)
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1: one method after another), got {jobs}")
    return jobs


def _add_model_options(parser, entry):
    """The options of model ``entry`` as a group of ``parser``'s arguments, for ``--help`` only
    (parsing leaves them to :func:`_model_options` and the entry)."""
    taken = [name for name in entry.options if f"--{name}" in parser._option_string_actions]
    note = "; ".join(f"--{n} is the command's own here, not the model's option ({entry.options[n].help}, "
                     f"default {entry.options[n].default!r})" for n in taken)
    group = parser.add_argument_group(f"options of model {entry.name} (after the model name)", note or None)
    for name, opt in entry.options.items():
        if name not in taken:
            kind = {int: "INT", float: "FLOAT"}.get(opt.type, "VALUE")
            group.add_argument(f"--{name}", metavar=kind, help=f"{opt.help} (default: {opt.default!r})")


def build_parser(model_help=None) -> argparse.ArgumentParser:
    """The argument parser; ``model_help`` (a ModelEntry) adds its options to the help of
    ``run``, ``compare``, ``sweep``, ``sample`` and ``info``."""
    parser = _Parser(
        prog="genzoo",
        description="A zoo of generative models as probabilistic programs, with one inference layer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              genzoo list
              genzoo info bayesnet --render asia.png --network asia
              genzoo run bayesnet --method exact --network asia --evidence xray=yes,dysp=yes
              genzoo compare bayesnet --network alarm
              genzoo sweep bayesnet --methods gibbs,loopy_bp --seeds 0-9 --set network=asia,alarm --ray
              genzoo sample bayesnet -n 5 --network asia"""),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    # no abbreviations: "--n 60" is the model option n, not an abbreviation of --no-progress

    p = sub.add_parser("list", allow_abbrev=False, help="the registry as a table")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("info", allow_abbrev=False, help="a model's docstring, methods and options; --render draws its program")
    p.add_argument("model")
    p.add_argument("--render", metavar="FILE", help="draw the program's graph to FILE (.svg or .png)")
    p.set_defaults(fn=cmd_info)

    def common(p):
        p.add_argument("--seed", type=_seed, default=0, help=f"seed of all randomness, 0 to {MAX_SEED} (default 0)")
        p.add_argument("--out", default="runs", help="where run folders go (default runs/)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("run", allow_abbrev=False, help="fit or infer with one method; writes a run folder")
    p.add_argument("model")
    p.add_argument("--method", required=True)
    p.add_argument("--steps", default=None, type=_steps, help="iterations / samples (method's default if absent)")
    common(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("compare", allow_abbrev=False, help="the exact answer beside every approximate method: table and plot")
    p.add_argument("model", nargs="?")
    p.add_argument("--all", action="store_true", help="every model of the zoo at small sizes: the report card")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all that apply)")
    p.add_argument("--steps", type=_steps, default=None, help="iterations / samples for every method")
    p.add_argument("--quick", action="store_true",
                   help="the model's small sizes (those of the report card, --all), for a run of minutes")
    p.add_argument("--warm", action="store_true",
                   help="run every method twice and time the second (compiled) call beside the first")
    p.add_argument("--fresh-reference", action="store_true",
                   help="run the reference again and keep the new run in the cache (GENZOO_CACHE=off: never kept)")
    p.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="methods run N at a time, in this process and N - 1 workers (default: one per core, "
                        "at most 4; 1: one after another)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="with --all: the models in parallel as Ray tasks, on a local cluster (no ADDRESS) "
                        "or on the cluster at ADDRESS (pip install 'genzoo[distributed]')")
    common(p)
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser("sweep", allow_abbrev=False, help="a grid of methods x seeds x option values: results.csv, summary, plot")
    p.add_argument("model")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all that compare)")
    p.add_argument("--seeds", default="0", help="seeds: 0-9, 0,3,5 or both (default 0)")
    p.add_argument("--set", action="append", metavar="OPTION=V1,V2",
                   help="an option's values for the grid (repeatable); fixed options follow the model name")
    p.add_argument("--steps", type=_steps, default=None, help="iterations / samples for every method")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="cells as Ray tasks, on a local cluster (no ADDRESS) or the cluster at ADDRESS "
                        "(pip install 'genzoo[distributed]')")
    p.add_argument("--max-retries", type=int, default=3, help="Ray's retries of a cell whose worker died (default 3)")
    p.add_argument("--folder", default=None,
                   help="the run folder; a folder holding the same sweep is resumed (default: a new one under --out)")
    p.add_argument("--quick", action="store_true",
                   help="the model's small sizes (those of the report card, --all), for a run of minutes")
    p.add_argument("--warm", action="store_true",
                   help="run every method twice per cell and time the second (compiled) call")
    p.add_argument("--out", default="runs", help="where run folders go (default runs/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("sample", allow_abbrev=False, help="draw samples from the model (a table, or a PNG grid for images)")
    p.add_argument("model")
    p.add_argument("-n", "--num-samples", dest="n", type=int, default=None,
                   help="number of samples (default 10); --n N too where the model has no option n")
    common(p)
    p.set_defaults(fn=cmd_sample)
    if model_help is not None:
        for name, command in sub.choices.items():
            if name != "list":
                _add_model_options(command, model_help)
    return parser


def _model_for_help(argv):
    """The entry named by ``genzoo COMMAND MODEL ... --help``, whose options the help then lists."""
    if ("--help" in argv or "-h" in argv) and len(argv) > 2 and argv[0] != "list":
        return _entries().get(argv[1])
    return None


def main(argv=None) -> int:
    """Run one command. A typed error prints one line and exits 2; any other failure prints one
    line and exits 1; ``--debug`` (anywhere on the line) shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args, extra = build_parser(_model_for_help(argv)).parse_known_args(argv)
        if getattr(args, "out", None) is not None:
            from genzoo.runs import check_root

            check_root(args.out)  # before any work: a file in the way is reported now, not after the run
        args.fn(args, extra)
    except KeyboardInterrupt:
        if debug:
            raise
        print("genzoo: interrupted (finished run folders and checkpoints are complete; nothing is half-written)",
              file=sys.stderr)
        return 130
    except GenzooError as err:
        if debug:
            raise
        print(f"genzoo: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the CLI never shows a traceback unless asked
        if debug:
            raise
        print(f"genzoo: internal error: {type(err).__name__}: {err} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The ``genzoo`` program: :func:`main` on this process's command line, then exit with its code.

    It leaves with ``os._exit`` once the output is flushed, without the interpreter's shutdown.
    - After Ctrl-C, what the interrupted work held is freed first (a worker pool's semaphores, which
      multiprocessing's tracker would report as leaked): XLA may still be compiling a program on a
      thread of its own, and the shutdown would free the JAX client under it (a segmentation fault).
    - Otherwise the exit functions run first (Ray's shutdown among them); the shutdown would then
      only free memory the system takes back anyway: 0.6 s of a second ``compare hmm``.
    Files are written atomically, so an interrupted run leaves nothing half-written either way."""
    import atexit

    code = main()
    if code == 130:
        import gc

        gc.collect()
    else:
        atexit._run_exitfuncs()  # what sys.exit would run, without the module teardown after it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
