"""``run_methods(jobs=N)``: methods side by side in worker processes give the results of one after another."""

import dataclasses
import os

import numpy as np
import pytest

from genzoo import compare
from genzoo.registry import Method, RunConfig
from genzoo.zoo import ENTRIES
from inference.result import Result

ISING = {"size": "4"}
METHODS = ["loopy_bp", "mean_field", "gibbs", "swendsen_wang"]


def _figures(rows):
    """Every figure of the rows but the seconds (which differ from run to run)."""
    return [{k: v for k, v in r.metrics().items() if k not in ("seconds", "first_seconds")} for r in rows]


def test_side_by_side_equals_one_after_another():
    """Each method draws its randomness from the seed alone, so two processes at once give the figures
    of one process, to the last bit (and in the same order), marginals included."""
    entry = ENTRIES["ising"]
    problem = entry.problem(ISING, seed=3)
    config = RunConfig(seed=3, steps=200, progress=False)
    alone = compare.run_methods(entry, problem, METHODS, config, options=ISING, jobs=1)
    paired = compare.run_methods(entry, problem, METHODS, config, options=ISING, jobs=2)
    assert [r.method for r in paired] == [r.method for r in alone] == ["exact", *METHODS]
    assert _figures(paired) == _figures(alone)
    for a, b in zip(alone, paired):
        for site in a.result.marginals:
            np.testing.assert_array_equal(np.asarray(b.result.marginals[site]), np.asarray(a.result.marginals[site]))


def test_workers_run_on_this_process_problem():
    """A worker receives the problem it serves, pickled, rather than rebuilding it: the casino's rolls
    of seed 1 measured with config seed 0 (which a rebuilt problem would not have) give the figures of
    one method after another."""
    entry, options = ENTRIES["hmm"], {"rolls": "40"}
    problem = entry.problem(options, seed=1)
    config = RunConfig(seed=0, steps=20, progress=False)
    methods = ["gibbs", "mean_field", "svi_states"]
    alone = compare.run_methods(entry, problem, methods, config, options=options, jobs=1)
    paired = compare.run_methods(entry, problem, methods, config, options=options, jobs=3)
    assert _figures(paired) == _figures(alone)


def test_an_entry_made_here_runs_here():
    """An entry that is not the catalogue's cannot be found by a worker: its methods run in this process."""
    base = ENTRIES["ising"]

    def where(problem, config):
        return Result(method="where", diagnostics={"pid": os.getpid()})

    entry = dataclasses.replace(base, methods=base.methods + (Method("here", "this process", where, kind="samples"),
                                                              Method("there", "this process", where, kind="samples")))
    problem = entry.problem(ISING, seed=0)
    rows = compare.run_methods(entry, problem, ["here", "there"], RunConfig(progress=False), options=ISING, jobs=2)
    assert {r.result.diagnostics["pid"] for r in rows if r.method in ("here", "there")} == {os.getpid()}


def test_default_jobs_is_bounded():
    assert 1 <= compare.default_jobs() <= compare.MAX_JOBS


def test_typed_errors_cross_processes_whole():
    """A method's typed error raised in a worker reaches the parent with its type, message and
    attributes, whatever its ``__init__`` takes."""
    import pickle

    from inference.errors import GenzooError, MissingPackageError, ParseError, TrainingError

    for error in (ParseError("bad token", "asia.bif", 7), MissingPackageError("ray", "compare --all --ray"),
                  TrainingError("loss is nan", step=12, rows=[3, 4])):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and isinstance(back, GenzooError)
        assert str(back) == str(error) and back.__dict__ == error.__dict__


def test_a_process_runs_with_its_share_of_the_cores():
    """Beside a worker, torch runs with its share of the threads (its default oversubscribes the
    machine) and gets its own count back after."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with compare._thread_share(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("jobs", [0, -2, 1.5, "2", True])
def test_jobs_that_are_not_a_positive_integer_are_refused(jobs):
    from inference.errors import DataError

    entry = ENTRIES["ising"]
    with pytest.raises(DataError, match=r"jobs must be a positive integer .* got"):
        compare.run_methods(entry, entry.problem(ISING), ["loopy_bp"], RunConfig(progress=False), jobs=jobs)


def test_one_set_of_workers_serves_several_problems():
    """Workers made beforehand serve one problem after another (``compare --all``): each run reads its
    own problem, so two sizes of the Ising model give the figures of one process each."""
    entry = ENTRIES["ising"]
    config = RunConfig(seed=3, steps=100, progress=False)
    figures = []
    with compare.Workers(2) as workers:
        for options in ({"size": "6"}, ISING):
            problem = entry.problem(options, seed=0)
            alone = compare.run_methods(entry, problem, METHODS, config, options=options, jobs=1)
            paired = compare.run_methods(entry, problem, METHODS, config, options=options, workers=workers)
            assert _figures(paired) == _figures(alone)
            figures.append(_figures(alone))
    assert figures[0] != figures[1]  # the problems differ: a worker that kept the first would be caught


@pytest.mark.parametrize("jobs", [1, 0, 2.0, True])
def test_workers_need_two_processes_at_least(jobs):
    from inference.errors import DataError

    with pytest.raises(DataError, match=r"jobs must be an integer >= 2"):
        compare.Workers(jobs)


def test_workers_for_an_entry_need_a_catalogue_name():
    """A worker imports the named entry's model module while the problem is built; a name the
    catalogue lacks is refused here (a worker that failed its set-up would be started again, forever)."""
    from inference.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"entry must name a model of the catalogue, got 'nope'"):
        compare.Workers(2, entry="nope")


def test_workers_for_an_entry_give_its_figures():
    """Workers that imported the entry's module at their start give the figures of one process."""
    entry = ENTRIES["ising"]
    config = RunConfig(seed=3, steps=100, progress=False)
    problem = entry.problem(ISING, seed=0)
    alone = compare.run_methods(entry, problem, METHODS, config, options=ISING, jobs=1)
    with compare.Workers(2, entry="ising") as workers:
        paired = compare.run_methods(entry, problem, METHODS, config, options=ISING, workers=workers)
    assert _figures(paired) == _figures(alone)


def test_the_cli_starts_no_more_processes_than_methods_to_run():
    """``--jobs 4`` with two methods to run starts one worker; one method (the exact one, its own
    reference) starts none."""
    import argparse

    from genzoo.cli import _workers

    entry = ENTRIES["ising"]
    with _workers(argparse.Namespace(jobs=4), entry, ["exact", "gibbs"]) as workers:
        assert workers.jobs == 2 and workers.pool._processes == 1
    with _workers(argparse.Namespace(jobs=4), entry, ["exact"]) as workers:
        assert workers is None
