"""``genzoo.method_times``: the last run's seconds per method, and the longest-first order they give."""

import dataclasses

from genzoo import compare
from genzoo.method_times import MethodTimes, longest_first
from genzoo.registry import Method, RunConfig
from genzoo.zoo import ENTRIES
from inference.result import Result


def test_longest_first_puts_references_then_unknown_then_by_seconds():
    order = longest_first(["exact", "gibbs", "nuts", "new", "ref", "svi"],
                          {"exact": 0.2, "gibbs": 1.3, "nuts": 6.6, "svi": 1.3, "ref": 0.1}, first={"ref"})
    # ties (gibbs, svi) keep the given order; a reference comes first whatever its time
    assert order == ["ref", "new", "nuts", "gibbs", "svi", "exact"]


def test_times_round_trip_and_merge(tmp_path):
    times = MethodTimes(tmp_path / "sub" / "method-seconds.json")
    assert times.of("hmm") == {}
    times.record("hmm", {"nuts": 6.61234, "em": 0.3})
    times.record("gmm", {"em": 1.0})
    times.record("hmm", {"em": 0.4})  # the latest run's seconds replace the method's, others stay
    assert times.of("hmm") == {"nuts": 6.612, "em": 0.4} and times.of("gmm") == {"em": 1.0}


def test_an_unreadable_file_is_no_timings(tmp_path):
    path = tmp_path / "method-seconds.json"
    for text in ("{not json", "[1, 2]", '{"hmm": [1]}', '{"hmm": {"nuts": "slow", "em": 0.5}}'):
        path.write_text(text)
        assert MethodTimes(path).of("hmm") in ({}, {"em": 0.5})
    times = MethodTimes(path)
    times.record("hmm", {"nuts": 2.0})  # an unreadable file is replaced, not a failure
    assert times.of("hmm")["nuts"] == 2.0


def test_run_methods_starts_the_longest_first_and_keeps_the_seconds(tmp_path):
    """With timings, the methods start in longest-first order (here one after another, so the order
    is observable); the rows keep the order asked for, and each method's seconds are kept."""
    base, started = ENTRIES["ising"], []

    def method(name):
        def run(problem, config):
            started.append(name)
            return Result(method=name)
        return Method(name, name, run, kind="samples")

    entry = dataclasses.replace(base, methods=base.methods + tuple(method(n) for n in ("quick", "slow", "new")))
    times = MethodTimes(tmp_path / "t.json")
    times.record(entry.name, {"quick": 0.1, "slow": 5.0, "exact": 0.01})
    problem = entry.problem({"size": "3"}, seed=0)
    rows = compare.run_methods(entry, problem, ["quick", "slow", "new"], RunConfig(progress=False), times=times)
    assert [r.method for r in rows] == ["exact", "quick", "slow", "new"]
    assert started == ["new", "slow", "quick"]
    assert set(times.of(entry.name)) == {"quick", "slow", "new", "exact"}
    assert all(s >= 0 for s in times.of(entry.name).values())
