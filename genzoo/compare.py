"""Exact beside approximate: run several methods on one problem and measure each against the exact answer.

For every method the table reports wall seconds of one call, compilation included (a second
JAX compilation of the same program is read from the persistent cache; with ``warm=True`` each
method runs twice and the table shows the compiled call beside the first), the largest absolute error of any posterior marginal probability
:math:`\\max_{v,k} |\\hat p(x_v = k \\mid e) - p(x_v = k \\mid e)|`, the mean total-variation
distance between marginals :math:`\\frac{1}{|V|}\\sum_v \\frac12 \\sum_k |\\hat p_v(k) - p_v(k)|`,
and :math:`|\\widehat{\\log p(e)} - \\log p(e)|` with the kind of each log-evidence (exact, a lower
bound, an estimate).

For continuous posteriors the error is the largest standardised error of a posterior mean,
:math:`\\max_i |\\hat\\mu_i - \\mu_i| / \\sigma_i`, and of a posterior standard deviation,
:math:`\\max_i |\\hat\\sigma_i / \\sigma_i - 1|`, where :math:`\\mu, \\sigma` are the reference's
posterior means and standard deviations (a closed form where one exists, else a long NUTS run).
A Result states its moments in ``diagnostics["posterior_mean"]`` / ``["posterior_sd"]`` (closed
forms) or they are read off its samples.

Where no exact answer exists but a method's own figures do (topic models: held-out perplexity, the
error of its topics against the true ones, coherence), the Result states them in
``diagnostics["scores"]`` (name -> number) and the table shows one column per name.

A method measured on several datasets (``genzoo compare deep``: every deep family on the same 2-D
densities and digits) states one dict per dataset in ``diagnostics["rows"]``; the table is then long
(one line per method and dataset: method, dataset, then the dicts' columns in order of first
appearance), followed by the methods' ``diagnostics["notes"]`` as footnotes, each once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from genzoo.registry import ModelEntry, Problem, RunConfig
from inference.result import Result


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    seconds: float
    first_seconds: float
    max_abs_marginal: float | None
    mean_tv: float | None
    max_z_mean: float | None
    abs_log_evidence: float | None
    log_evidence: float | None
    log_evidence_kind: str | None
    result: Result = dataclasses.field(repr=False, compare=False, default=None)
    scores: dict = dataclasses.field(default_factory=dict)
    table: list = dataclasses.field(default_factory=list)  # diagnostics["rows"]: one dict per dataset
    question: str | None = None  # the name of the entry's Question the row answers, if it has several
    max_rel_sd: float | None = None  # max |sd_hat / sd - 1| against the reference's posterior sds
    cached: bool = False  # a reference read from the ReferenceCache; seconds are those of the run that made it

    def metrics(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("result")
        if not d["cached"]:
            d.pop("cached")
        if not d["table"]:
            d.pop("table")  # the usual one-line rows keep their metrics.json as it was
        if d["question"] is None:
            d.pop("question")
        return d


def marginal_errors(reference: Result, other: Result) -> tuple[float | None, float | None]:
    """(max |Δ marginal|, mean TV) over the sites both results have marginals for."""
    sites = [s for s in reference.marginals if s in other.marginals]
    if not sites:
        return None, None
    max_abs, tvs = 0.0, []
    for site in sites:
        ref = np.asarray(reference.marginals[site], dtype=np.float64)
        est = np.asarray(other.marginals[site], dtype=np.float64)
        if ref.shape != est.shape:
            raise ValueError(f"site {site!r}: marginal shapes differ, {ref.shape} vs {est.shape}")
        diff = np.abs(ref - est)
        max_abs = max(max_abs, float(diff.max()))
        tvs.append(0.5 * diff.reshape(-1, ref.shape[-1]).sum(-1))
    return max_abs, float(np.mean(np.concatenate(tvs)))


def posterior_moments(result: Result) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """site -> (posterior mean, posterior sd): stated in the diagnostics, else from the samples."""
    means = result.diagnostics.get("posterior_mean")
    sds = result.diagnostics.get("posterior_sd")
    if means is not None and sds is not None:
        return {k: (np.asarray(means[k], dtype=np.float64), np.asarray(sds[k], dtype=np.float64)) for k in means}
    moments = {}
    for site, value in result.samples.items():
        value = np.asarray(value, dtype=np.float64)
        moments[site] = (value.mean(0), value.std(0))
    return moments


def moment_errors(reference: Result, other: Result) -> float | None:
    """:math:`\\max |\\hat\\mu - \\mu| / \\sigma` over the sites both results have moments for."""
    ref, est = posterior_moments(reference), posterior_moments(other)
    sites = [s for s in ref if s in est]
    if not sites:
        return None
    worst = 0.0
    for site in sites:
        (mu, sd), (mu_hat, _) = ref[site], est[site]
        worst = max(worst, float(np.max(np.abs(mu_hat - mu) / np.maximum(sd, 1e-300))))
    return worst


def sd_errors(reference: Result, other: Result) -> float | None:
    """:math:`\max |\hat\sigma / \sigma - 1|`: the largest relative error of a posterior standard
    deviation, over the sites both results have moments for."""
    ref, est = posterior_moments(reference), posterior_moments(other)
    sites = [s for s in ref if s in est]
    if not sites:
        return None
    return max(float(np.max(np.abs(est[s][1] / np.maximum(ref[s][1], 1e-300) - 1.0))) for s in sites)


def _timed(fn, problem, config) -> tuple[Result, float]:
    start = time.perf_counter()
    result = fn(problem, config)
    return result, time.perf_counter() - start


def _run_one(method, problem, config, warm) -> tuple[Result, float, float]:
    """``(result, seconds, first call's seconds)`` of one method, without its own progress bar."""
    quiet = dataclasses.replace(config, progress=False)
    result, first = _timed(method.fn, problem, quiet)
    seconds = first
    if warm:
        result, seconds = _timed(method.fn, problem, quiet)
    return result, seconds, first


# ----------------------------------------------------------------------------- methods side by side
MAX_JOBS = 4
"""The most processes :func:`default_jobs` asks for (each holds its own JAX and compiled programs)."""


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_jobs() -> int:
    """Processes for ``genzoo compare`` by default: one per core this process may use, at most
    :data:`MAX_JOBS`."""
    return max(1, min(_cores(), MAX_JOBS))


def _fingerprint(obj, digest) -> None:
    """Feed ``digest`` with the numbers and text in ``obj`` (mappings, sequences, arrays, dataclasses
    but their ``seconds``); other objects by their type alone."""
    if isinstance(obj, Mapping):
        for key in sorted(obj, key=repr):
            digest.update(repr(key).encode())
            _fingerprint(obj[key], digest)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"[{len(obj)}".encode())
        for item in obj:
            _fingerprint(item, digest)
    elif isinstance(obj, (str, bytes, int, float, complex, bool, type(None), np.generic)):
        digest.update(repr(obj).encode())
    elif hasattr(obj, "__array__") and hasattr(obj, "dtype"):
        array = np.asarray(obj)
        digest.update(f"{array.dtype}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())
    elif dataclasses.is_dataclass(obj):
        _fingerprint({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "seconds"}, digest)
    else:
        digest.update(type(obj).__qualname__.encode())


def _data_hash(problem: Problem) -> str:
    """A hash of the problem's description and data, equal in two processes that built the same problem."""
    digest = hashlib.sha256(problem.description.encode())
    _fingerprint(problem.data, digest)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _worker_problem(entry_name: str, options: tuple, seed: int) -> tuple[Problem, str]:
    from genzoo.zoo import ENTRIES

    problem = ENTRIES[entry_name].problem(dict(options), seed=seed)
    return problem, _data_hash(problem)


def _worker_init(threads: int) -> None:
    """A worker's set-up: its share of the cores for the libraries that read it at import (torch,
    OpenMP, BLAS), unless the user has set one; Ctrl-C left to the parent, which ends the workers;
    progress bars (off in a worker) share a thread lock."""
    import signal
    import threading

    from tqdm.auto import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())  # its default lock is a named semaphore, which a terminated worker would leak
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))


def _worker_run(entry_name, options, seed, name, config, warm):
    """One method in a worker process: the problem is built there from its name, options and seed
    (once per process), and its data's hash travels back so the parent can check it is the same."""
    from genzoo.zoo import ENTRIES

    problem, data_hash = _worker_problem(entry_name, tuple(sorted(options.items())), seed)
    return _run_one(ENTRIES[entry_name].method(name), problem, config, warm), data_hash


def side_by_side(entry: ModelEntry) -> bool:
    """Whether :func:`run_methods` can run ``entry``'s methods in worker processes, which find an
    entry by its name: a catalogue entry, not one made by the caller."""
    from genzoo.zoo import ENTRIES

    return ENTRIES.get(entry.name) is entry


def _run_side_by_side(entry, problem, todo, config, warm, options, jobs, finished):
    """Run the methods ``todo`` in this process and ``jobs - 1`` worker processes at once.

    The methods are taken in order from one queue: each worker takes the next as soon as it is free,
    and this process takes the next whenever it is, so a worker that is still starting (importing
    JAX, building the problem) delays nothing. ``finished(name, (result, seconds, first))`` is
    called as each method ends, here. A worker's problem is rebuilt from the entry's name, options
    and seed; a :class:`RuntimeError` says so if its data differ from this process's (a problem
    that is not a function of its seed). Each process gets its share of the cores for torch and
    the OpenMP / BLAS libraries (:func:`_worker_init`; torch here when the problem has imported it).
    """
    import multiprocessing
    import threading

    queue, lock = list(todo), threading.Lock()
    pending = {}  # name -> AsyncResult, in the order the workers took them
    own_hash = _data_hash(problem)
    threads = max(1, _cores() // jobs)
    context = multiprocessing.get_context("spawn")  # a fork of a process running JAX may deadlock
    pool = context.Pool(jobs - 1, initializer=_worker_init, initargs=(threads,))

    def feed(_done=None):
        with lock:
            if queue:
                name = queue.pop(0)
                pending[name] = pool.apply_async(_worker_run, (entry.name, dict(options or {}), config.seed, name,
                                                               config, warm), callback=feed, error_callback=failed)

    def failed(_error):  # nothing more starts; the error is raised below, where its result is read
        with lock:
            queue.clear()

    torch = sys.modules.get("torch")  # a deep entry's problem has imported it: its share of the cores here too
    own_threads = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(threads)
        for _ in range(jobs - 1):
            feed()
        while True:
            with lock:
                if not queue:
                    break
                name = queue.pop(0)
            finished(name, _run_one(entry.method(name), problem, config, warm))
        for name, result in list(pending.items()):  # every name is in pending once the queue is empty
            timed, data_hash = result.get()
            if data_hash != own_hash:
                raise RuntimeError(f"model {entry.name!r}: a worker process built other data from options "
                                   f"{dict(options or {})} and seed {config.seed} than this process's problem "
                                   f"(pass the options it was built with, or jobs=1)")
            finished(name, timed)
        pool.close()
    except BaseException:
        with lock:
            queue.clear()
        pool.terminate()  # a failed method or Ctrl-C here ends the others at once
        raise
    finally:
        pool.join()
        if torch is not None:
            torch.set_num_threads(own_threads)


def run_methods(
    entry: ModelEntry, problem: Problem, methods: Sequence[str], config: RunConfig, warm: bool = False,
    cache=None, options: Mapping[str, Any] | None = None, jobs: int = 1,
) -> list[Row]:
    """Run each method once (twice when ``warm``: once to compile, once to time) and compare it with
    its reference (its question's, :meth:`ModelEntry.reference_of`), which is run too where missing.

    ``cache`` (a :class:`~genzoo.reference_cache.ReferenceCache`; ``options`` are the problem's, part
    of its key) keeps the results of references other than the exact method: one found there is not
    run again, and its row says so (``cached``, with the seconds of the run that made it).

    ``jobs`` > 1 runs that many methods at once, here and in ``jobs - 1`` worker processes
    (references first, then in order; each method's seconds are its own wall time in its process).
    Every method draws its randomness from ``config.seed`` alone, so the results are those of
    ``jobs=1``. An entry not in the catalogue (made by the caller) runs with ``jobs=1``: a worker
    finds entries by name."""
    names = list(methods)
    for name in names:
        entry.method(name)  # unknown names fail before any work
    for name in list(names):
        reference = entry.reference_of(name)
        if reference is not None and reference not in names:
            names.insert(0 if reference == entry.exact_method else names.index(name), reference)
    references = {entry.reference_of(n) for n in names} - {None, entry.exact_method}
    results: dict[str, tuple[Result, float, float]] = {}
    cached = set()
    keys = {}
    for name in references:
        if cache is not None:
            keys[name] = cache.key(entry.name, name, options or {}, config.seed, config.steps, problem.data)
            found = cache.load(keys[name]) if keys[name] is not None else None
            if found is not None:
                results[name] = (found[0], found[1], found[1])
                cached.add(name)
    todo = sorted((n for n in names if n not in results), key=lambda n: n not in references)  # references first

    def finished(name, timed):
        results[name] = timed
        if keys.get(name) is not None:
            cache.store(keys[name], timed[0], timed[2])
        bar.update(1)

    with tqdm(total=len(names), initial=len(cached), desc=f"compare {entry.name}", disable=not config.progress,
              leave=False) as bar:
        if jobs > 1 and len(todo) > 1 and side_by_side(entry):
            _run_side_by_side(entry, problem, todo, config, warm, options, min(jobs, len(todo)), finished)
        else:
            for name in todo:
                bar.set_postfix(method=name)
                finished(name, _run_one(entry.method(name), problem, config, warm))
    rows = []
    for name in names:
        result, seconds, first = results[name]
        reference_name = entry.reference_of(name)
        reference = results[reference_name][0] if reference_name is not None else None
        max_abs = tv = dlog = z = rel_sd = None
        if reference is not None:
            max_abs, tv = marginal_errors(reference, result)
            z, rel_sd = moment_errors(reference, result), sd_errors(reference, result)
            if reference.log_evidence is not None and result.log_evidence is not None:
                dlog = abs(float(result.log_evidence) - float(reference.log_evidence))
        scores = {k: float(v) for k, v in result.diagnostics.get("scores", {}).items()}
        table = [dict(r) for r in result.diagnostics.get("rows", [])]
        question = entry.question_of(name)
        rows.append(
            Row(name, seconds, first, max_abs, tv, z, dlog, result.log_evidence, result.log_evidence_kind, result,
                scores, table, question.name if question is not None else None, rel_sd, name in cached)
        )
    return rows


def by_question(entry: ModelEntry, rows: Sequence[Row]) -> list[tuple[object, list[Row]]]:
    """``rows`` grouped by the question they answer, in the entry's order: ``[(Question or None, rows)]``
    (one group, None, for an entry of one question)."""
    if not entry.questions:
        return [(None, list(rows))]
    return [(q, [r for r in rows if r.question == q.name]) for q in entry.questions
            if any(r.question == q.name for r in rows)]


def _fmt(x, spec=".2e"):
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec)


def _cell(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, (bool, str)):
        return str(x)
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e6):
        return str(int(x))
    return _fmt(float(x), ".4g")


def _layout(header: Sequence[str], body: Sequence[Sequence[str]], title: str) -> list[str]:
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [title] if title else []
    out += [line, "-" * len(line)]
    return out + ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]


def long_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]], list[str]]:
    """The long form of rows carrying ``table`` dicts: ``(header, body, notes)``, all as text
    (``header`` = method, then the dicts' keys in order of first appearance; ``notes`` the methods'
    ``diagnostics["notes"]``, each once)."""
    columns = list(dict.fromkeys(k for r in rows for t in r.table for k in t))
    body = [[r.method, *(_cell(t.get(c)) for c in columns)] for r in rows for t in r.table]
    notes = list(dict.fromkeys(n for r in rows if r.result is not None for n in r.result.diagnostics.get("notes", ())))
    return ["method", *columns], body, notes


def format_table(rows: Sequence[Row], title: str = "") -> str:
    if any(r.table for r in rows):
        header, body, notes = long_table(rows)
        return "\n".join(_layout(header, body, title) + [f"  {n}" for n in notes])
    show_z = any(r.max_z_mean is not None for r in rows)
    score_names = list(dict.fromkeys(name for r in rows for name in r.scores))
    show_marg = any(r.max_abs_marginal is not None for r in rows) or not (show_z or score_names)
    warm = any(r.seconds != r.first_seconds for r in rows)
    header = ["method", "seconds (compiled)", "first call (s)"] if warm else ["method", "seconds"]
    header += ["max |d marg|", "mean TV"] if show_marg else []
    header += ["max |d mean|/sd", "max |d sd|/sd"] if show_z else []
    header += score_names
    header += ["|d log Z|", "log Z", "kind"]
    body = [
        [
            r.method,
            _fmt(r.seconds, ".4f") + (" (cached)" if r.cached else ""),
            *([_fmt(r.first_seconds, ".3f")] if warm else []),
            *([_fmt(r.max_abs_marginal), _fmt(r.mean_tv)] if show_marg else []),
            *([_fmt(r.max_z_mean), _fmt(r.max_rel_sd)] if show_z else []),
            *(_fmt(r.scores.get(name), ".4g") for name in score_names),
            _fmt(r.abs_log_evidence),
            _fmt(r.log_evidence, ".6f"),
            r.log_evidence_kind or "-",
        ]
        for r in rows
    ]
    return "\n".join(_layout(header, body, title))
