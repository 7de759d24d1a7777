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
import contextlib
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from genzoo.registry import ModelEntry, Problem, RunConfig
from inference.errors import DataError, UnknownNameError
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


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_WORKER_PROBLEM: tuple[str, Problem] | None = None
"""In a worker process of :class:`Workers`: the problem it serves last, with its digest."""
_WORKER_THREADS = 1
"""In a worker process: its share of the cores."""


def _worker_init(threads: int, entry: str | None = None) -> None:
    """A worker's set-up: its share of the cores for torch, OpenMP and BLAS (set before anything
    imports them, unless the user has set them), Ctrl-C left to the parent, which ends the workers,
    a thread lock for progress bars (off in a worker; tqdm's default is a named semaphore, which a
    terminated worker would leak), then JAX, the catalogue and, given the name of the ``entry``
    whose methods it will run, that model's module (:meth:`ModelEntry.doc_object`: what reading the
    problem would import), all while the parent is still building the problem."""
    import signal
    import threading

    from tqdm.auto import tqdm

    global _WORKER_THREADS  # noqa: PLW0603 - a worker process's share of the cores
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())
    _WORKER_THREADS = threads
    import jax  # noqa: F401 - what every problem of the JAX half unpickles into (its settings: this module's imports)
    from genzoo.zoo import ENTRIES

    if entry is not None:
        try:
            ENTRIES[entry].doc_object()
        except Exception:  # noqa: BLE001 - a worker whose set-up fails is restarted by the pool, forever:
            pass  # the method that needs the module raises its error where it is run


def _worker_run(entry_name, name, config, warm, digest, problem_bytes):
    """One method in a worker process with its share of the cores, on the problem pickled in
    ``problem_bytes`` (this process's, not rebuilt, which could differ: a model trained with another
    thread count, say), read once for all the methods of that problem."""
    import pickle

    from genzoo.zoo import ENTRIES

    global _WORKER_PROBLEM  # noqa: PLW0603 - a worker keeps the problem it serves
    if _WORKER_PROBLEM is None or _WORKER_PROBLEM[0] != digest:
        _WORKER_PROBLEM = (digest, pickle.loads(problem_bytes))
    with _thread_share(_WORKER_THREADS):
        return _run_one(ENTRIES[entry_name].method(name), _WORKER_PROBLEM[1], config, warm)


class Workers:
    """``jobs - 1`` worker processes that run methods beside this one (:func:`run_methods`), each with
    its share of the cores.

    Made before the problem (``genzoo compare`` makes them before its own JAX import: the catalogue
    loads without JAX), their start, a new Python importing JAX, the catalogue and the module of the
    model named by ``entry`` (about 2 s), overlaps this process's imports and the building of the
    problem. One set serves any number of :func:`run_methods` calls (``compare --all``, with no
    ``entry``): a problem reaches a worker pickled with each method and is read there once. Use as a
    context manager, or call :meth:`close`: workers are ended, not waited for (they hold nothing
    once their results are in).
    """

    def __init__(self, jobs: int, entry: str | None = None):
        import multiprocessing

        if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 2:
            raise DataError(f"Workers: jobs must be an integer >= 2 (this process and a worker at least), got {jobs!r}")
        if entry is not None:
            from genzoo.zoo import ENTRIES

            if entry not in ENTRIES:  # a worker could not start (and the pool would start it again)
                raise UnknownNameError(f"Workers: entry must name a model of the catalogue, got {entry!r}")
        self.jobs = int(jobs)
        self.threads = max(1, _cores() // self.jobs)
        context = multiprocessing.get_context("spawn")  # a fork of a process running JAX may deadlock
        self.pool = context.Pool(self.jobs - 1, initializer=_worker_init, initargs=(self.threads, entry))

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _thread_share(threads: int):
    """Run with ``threads`` of torch's threads (its default, one per core, oversubscribes a machine
    running several methods at once: two GAN trainings side by side took 2.6x as long) and of
    OpenMP's for a torch imported meanwhile; the thread counts are restored after."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    unset = [name for name in _THREAD_VARIABLES if name not in os.environ]
    for name in unset:
        os.environ[name] = str(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        for name in unset:
            os.environ.pop(name, None)
        torch = sys.modules.get("torch")
        if torch is not None:  # imported meanwhile, it took the share: given the default back
            torch.set_num_threads(before if before is not None else _cores())


def side_by_side(entry: ModelEntry) -> bool:
    """Whether :func:`run_methods` can run ``entry``'s methods in worker processes, which find an
    entry by its name: a catalogue entry, not one made by the caller."""
    from genzoo.zoo import ENTRIES

    return ENTRIES.get(entry.name) is entry


def _run_side_by_side(entry, problem, problem_bytes, todo, config, warm, workers, finished):
    """Run the methods ``todo`` in this process and in ``workers`` (:class:`Workers`) at once, all on
    the problem pickled in ``problem_bytes``.

    The methods are taken in order from one queue: each worker takes the next as soon as it is free,
    and this process takes the next whenever it is, so a worker that is still starting (importing
    JAX) delays nothing. ``finished(name, (result, seconds, first))`` is called as each method ends,
    here. Each process runs its methods with its share of the cores (:func:`_thread_share`).
    """
    import hashlib
    import threading

    queue, lock = list(todo), threading.Lock()
    pending = {}  # name -> AsyncResult, in the order the workers took them
    digest = hashlib.sha256(problem_bytes).hexdigest()

    def feed(_done=None):
        with lock:
            if queue:
                name = queue.pop(0)
                pending[name] = workers.pool.apply_async(
                    _worker_run, (entry.name, name, config, warm, digest, problem_bytes), callback=feed,
                    error_callback=failed)

    def failed(_error):  # nothing more starts; the error is raised below, where its result is read
        with lock:
            queue.clear()

    try:
        for _ in range(min(workers.jobs - 1, len(queue) - 1)):
            feed()
        while True:
            with lock:
                if not queue:
                    break
                name = queue.pop(0)
            with _thread_share(workers.threads):
                finished(name, _run_one(entry.method(name), problem, config, warm))
        for name, result in list(pending.items()):  # every name is in pending once the queue is empty
            finished(name, result.get())
    except BaseException:
        with lock:
            queue.clear()
        workers.close()  # a failed method or Ctrl-C here ends the others at once
        raise


def _pickled(problem: Problem) -> bytes | None:
    """The problem as a worker receives it, or None where it does not pickle (it then runs here)."""
    import pickle

    try:
        return pickle.dumps(problem, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any object pickle refuses: the methods run one at a time here
        return None


def run_methods(
    entry: ModelEntry, problem: Problem, methods: Sequence[str], config: RunConfig, warm: bool = False,
    cache=None, options: Mapping[str, Any] | None = None, jobs: int = 1, workers: Workers | None = None,
    times=None,
) -> list[Row]:
    """Run each method once (twice when ``warm``: once to compile, once to time) and compare it with
    its reference (its question's, :meth:`ModelEntry.reference_of`), which is run too where missing.

    ``cache`` (a :class:`~genzoo.reference_cache.ReferenceCache`; ``options`` are the problem's, part
    of its key) keeps the results of references other than the exact method: one found there is not
    run again, and its row says so (``cached``, with the seconds of the run that made it).

    ``jobs`` > 1 runs that many methods at once, here and in ``jobs - 1`` worker processes that
    receive ``problem`` pickled (each method's seconds are its own wall time in its process):
    ``workers`` made beforehand (:class:`Workers`, whose ``jobs`` then count), else workers started
    here and ended on return. References start first, then the methods in order or, given ``times``
    (a :class:`~genzoo.method_times.MethodTimes`, which keeps this run's seconds), longest first
    (:func:`~genzoo.method_times.longest_first`). Every method draws its randomness from
    ``config.seed`` alone, so the results are those of ``jobs=1``. An entry not in the catalogue
    (made by the caller; a worker finds entries by name) or a problem that does not pickle runs with
    ``jobs=1``."""
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise DataError(f"jobs must be a positive integer (1: one method after another), got {jobs!r}")
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
    for name in references if cache is not None else ():
        keys[name] = cache.key(entry.name, name, options or {}, config.seed, config.steps, problem.data)
        found = cache.load(keys[name]) if keys[name] is not None else None
        if found is not None:
            results[name] = (found[0], found[1], found[1])
            cached.add(name)
    from genzoo.method_times import longest_first

    # references first; then, with no timings, the catalogue's order
    todo = longest_first([n for n in names if n not in results], times.of(entry.name) if times is not None else {},
                         first=references)

    def finished(name, timed):
        results[name] = timed
        if keys.get(name) is not None:
            cache.store(keys[name], timed[0], timed[2])
        bar.update(1)

    with tqdm(total=len(names), initial=len(cached), desc=f"compare {entry.name}", disable=not config.progress,
              leave=False) as bar:
        jobs = workers.jobs if workers is not None else jobs
        problem_bytes = _pickled(problem) if jobs > 1 and len(todo) > 1 and side_by_side(entry) else None
        if problem_bytes is None:
            for name in todo:
                bar.set_postfix(method=name)
                finished(name, _run_one(entry.method(name), problem, config, warm))
        elif workers is not None:
            _run_side_by_side(entry, problem, problem_bytes, todo, config, warm, workers, finished)
        else:
            with Workers(min(jobs, len(todo))) as started:
                _run_side_by_side(entry, problem, problem_bytes, todo, config, warm, started, finished)
    if times is not None:
        times.record(entry.name, {name: results[name][2] + (results[name][1] if warm else 0.0) for name in todo})
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
