"""The reference cache of ``genzoo compare``: a reference run is kept under a key of everything that
determines it, read back equal, and not run again; the methods it judges always run."""

from __future__ import annotations

import numpy as np
import pytest

from genzoo import compare
from genzoo.reference_cache import ReferenceCache, source_hash
from genzoo.registry import Method, ModelEntry, Problem, Question, RunConfig
from inference.result import Result


def _entry(calls):
    def reference(problem, config):
        calls.append("reference")
        return Result(method="reference", marginals={"z": np.array([[0.9, 0.1]])},
                      samples={"w": np.array([1.0, 3.0, np.nextafter(2.0, 3.0)])}, log_evidence=None)

    def learner(problem, config):
        calls.append("learner")
        return Result(method="learner", marginals={"z": np.array([[0.8, 0.2]])},
                      samples={"w": np.array([2.5, 2.5])}, log_evidence=None)

    methods = (Method("exact", "", lambda p, c: Result(method="exact", marginals={"z": np.array([[0.5, 0.5]])})),
               Method("reference", "", reference, kind="posterior"),
               Method("learner", "", learner, kind="posterior"))
    questions = (Question("states", "states", ("exact",), "exact"),
                 Question("learning", "learning", ("reference", "learner"), "reference"))
    return ModelEntry("toy", "toy", "toy", "none", lambda options, seed: Problem(None), methods,
                      exact_method="exact", questions=questions)


def test_a_reference_is_run_once_and_read_back_equal(tmp_path):
    calls = []
    entry, cache = _entry(calls), ReferenceCache(tmp_path)
    problem, config = Problem(None, data=np.arange(5)), RunConfig(seed=3, progress=False)
    first = compare.run_methods(entry, problem, ["learner"], config, cache=cache, options={"n": 5})
    second = compare.run_methods(entry, problem, ["learner"], config, cache=cache, options={"n": 5})
    assert calls == ["reference", "learner", "learner"]  # the judged method runs every time
    a, b = ({r.method: r for r in rows} for rows in (first, second))
    assert not a["reference"].cached and b["reference"].cached and not b["learner"].cached
    assert b["reference"].seconds == a["reference"].seconds  # the run that made it
    np.testing.assert_array_equal(b["reference"].result.samples["w"], a["reference"].result.samples["w"])
    for field in ("max_abs_marginal", "mean_tv", "max_z_mean", "max_rel_sd"):
        assert getattr(b["learner"], field) == getattr(a["learner"], field)
    assert "(cached)" in compare.format_table(second) and "(cached)" not in compare.format_table(first)
    assert b["reference"].metrics()["cached"] is True and "cached" not in a["reference"].metrics()


@pytest.mark.parametrize("change", ["entry", "method", "options", "seed", "steps", "data"])
def test_the_key_changes_with_everything_that_determines_the_run(tmp_path, change):
    cache = ReferenceCache(tmp_path)
    base = dict(entry="hmm", method="reference_nuts", options={"rolls": "300"}, seed=0, steps=None,
                data=np.array([1, 2, 3]))
    other = dict(base)
    other[change] = {"entry": "gmm", "method": "nuts", "options": {"rolls": "200"}, "seed": 1, "steps": 50,
                     "data": np.array([1, 2, 4])}[change]
    assert cache.key(**base) == cache.key(**dict(base))
    assert cache.key(**base) != cache.key(**other)


def test_the_key_holds_the_source_hash(tmp_path, monkeypatch):
    cache = ReferenceCache(tmp_path)
    args = ("hmm", "reference_nuts", {}, 0, None, None)
    before = cache.key(*args)
    monkeypatch.setattr("genzoo.reference_cache.source_hash", lambda: "0" * 64)
    assert cache.key(*args) != before
    assert len(source_hash()) == 64


def test_an_unreadable_entry_is_a_miss_and_is_overwritten(tmp_path):
    calls = []
    entry, cache = _entry(calls), ReferenceCache(tmp_path)
    problem, config = Problem(None, data=None), RunConfig(progress=False)
    key = cache.key("toy", "reference", {}, 0, None, None)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / f"{key}.json").write_text('{"seconds": 1.0, "result": "{trunc')
    assert cache.load(key) is None
    compare.run_methods(entry, problem, ["learner"], config, cache=cache)
    assert calls == ["reference", "learner"] and cache.load(key) is not None


def test_the_folder_follows_genzoo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GENZOO_CACHE", "off")
    assert ReferenceCache.default() is None
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    assert ReferenceCache.default().folder == tmp_path / "references"
    monkeypatch.delenv("GENZOO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ReferenceCache.default().folder == tmp_path / "xdg" / "genzoo" / "references"


def test_data_that_cannot_be_pickled_is_run_and_not_kept(tmp_path):
    calls = []
    entry, cache = _entry(calls), ReferenceCache(tmp_path)
    problem, config = Problem(None, data={"f": lambda x: x}), RunConfig(progress=False)
    assert cache.key("toy", "reference", {}, 0, None, problem.data) is None
    for _ in range(2):
        rows = compare.run_methods(entry, problem, ["learner"], config, cache=cache)
        assert not any(r.cached for r in rows)
    assert calls == ["reference", "learner"] * 2 and not list(tmp_path.iterdir())


def test_a_result_that_cannot_be_written_warns_and_the_comparison_goes_on(tmp_path):
    class Opaque:
        pass

    cache = ReferenceCache(tmp_path)
    result = Result(method="reference", diagnostics={"handle": Opaque()})
    with pytest.warns(UserWarning, match="reference: reference not kept"):
        assert cache.store("k", result, 1.0) is False
    assert not (tmp_path / "k.json").exists()
    # a folder that cannot be written: a file stands where it should be
    blocked = ReferenceCache(tmp_path / "file")
    (tmp_path / "file").write_text("")
    with pytest.warns(UserWarning, match="FileExistsError|NotADirectoryError"):
        assert blocked.store("k", Result(method="reference"), 1.0) is False


def test_read_false_runs_the_reference_again_and_keeps_the_new_run(tmp_path):
    calls = []
    entry = _entry(calls)
    problem, config = Problem(None, data=np.arange(3)), RunConfig(progress=False)
    compare.run_methods(entry, problem, ["learner"], config, cache=ReferenceCache(tmp_path))
    key = ReferenceCache(tmp_path).key("toy", "reference", {}, 0, None, problem.data)
    before = (tmp_path / f"{key}.json").stat().st_ino  # atomic_write renames a new file into place
    rows = compare.run_methods(entry, problem, ["learner"], config, cache=ReferenceCache(tmp_path, read=False))
    assert calls == ["reference", "learner", "reference", "learner"] and not any(r.cached for r in rows)
    assert (tmp_path / f"{key}.json").stat().st_ino != before and ReferenceCache(tmp_path).load(key)


def test_one_cache_root_for_jax_references_and_chorales(monkeypatch, tmp_path):
    """inference.io.cache_root is the one rule; JAX's folder is the root itself when GENZOO_CACHE
    names it, else its jax/ subfolder."""
    import inference
    from inference.io import cache_root

    monkeypatch.setenv("GENZOO_CACHE", "OFF")
    assert cache_root() is None and inference._cache_dir() is None
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    assert cache_root() == tmp_path and inference._cache_dir() == str(tmp_path)
    monkeypatch.delenv("GENZOO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "genzoo" and inference._cache_dir() == str(tmp_path / "genzoo" / "jax")

