"""The catalogue package: entries found by discovery, in a stable order, with typed errors."""

import importlib
import pathlib
import sys
import textwrap

import jax
import numpy as np
import pytest

import genzoo.zoo
from genzoo.registry import ModelEntry, RunConfig
from genzoo.zoo import DEFAULT_MODEL, ENTRIES, discover, parse_evidence
from genzoo.zoo._common import run_key, seed_key
from inference.errors import DataError, EvidenceError, ModelError


def test_every_entry_module_is_discovered_in_display_order():
    # oracle: the package's files read independently of pkgutil, each module's own declaration
    folder = pathlib.Path(genzoo.zoo.__file__).parent
    expected = []
    for path in sorted(folder.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"genzoo.zoo.{path.stem}")
        expected.extend([module.ENTRY] if hasattr(module, "ENTRY") else list(module.ENTRIES))
    assert sorted(e.name for e in expected) == sorted(ENTRIES)
    assert all(ENTRIES[e.name] is e for e in expected)
    orders = [e.order for e in ENTRIES.values()]
    assert orders == sorted(orders)
    assert next(iter(ENTRIES)) == DEFAULT_MODEL == "bayesnet"
    # the models the CLI and its tests name are all there
    assert {"bayesnet", "hmm", "gmm", "lda", "beta_bernoulli", "eight_schools", "vae"} <= set(ENTRIES)


def _package(tmp_path, monkeypatch, name, files):
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    for stem, body in files.items():
        (root / f"{stem}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return [str(root)], name


_HEAD = textwrap.dedent("""
    from genzoo.registry import ModelEntry

    def entry(name, order):
        return ModelEntry(name=name, family="f", description="d", dataset="s", make_problem=None, methods=(),
                          order=order)
""")


def test_a_dropped_file_is_an_entry_and_ties_keep_module_order(tmp_path, monkeypatch):
    path, package = _package(tmp_path, monkeypatch, "zoo_order", {
        "b_model": _HEAD + "ENTRY = entry('b', 5)\n",
        "a_models": _HEAD + "ENTRIES = (entry('a1', 5), entry('a0', 1), entry('a2', 5))\n",
        "_helpers": "VALUE = 1\n",  # an underscore module is not an entry and needs no ENTRY
    })
    entries = discover(path, package)
    # order 1 first; among order 5: module a_models before b_model, a_models' own order kept
    assert list(entries) == ["a0", "a1", "a2", "b"]
    assert all(isinstance(e, ModelEntry) for e in entries.values())


@pytest.mark.parametrize("files, message", [
    ({"one": _HEAD + "ENTRY = entry('x', 0)\n", "two": _HEAD + "ENTRY = entry('x', 1)\n"},
     "'x' is declared by both zoo_bad.one and zoo_bad.two"),
    ({"empty": "VALUE = 1\n"}, "zoo module zoo_bad.empty must define exactly one of ENTRY"),
    ({"both": _HEAD + "ENTRY = entry('x', 0)\nENTRIES = (ENTRY,)\n"}, "zoo_bad.both must define exactly one"),
    ({"wrong": "ENTRY = 'bayesnet'\n"}, "zoo_bad.wrong declares 'bayesnet', which is not a ModelEntry"),
])
def test_a_malformed_entry_module_is_a_model_error_naming_it(tmp_path, monkeypatch, files, message):
    for name in [m for m in sys.modules if m.startswith("zoo_bad")]:
        monkeypatch.delitem(sys.modules, name)
    path, package = _package(tmp_path, monkeypatch, "zoo_bad", files)
    with pytest.raises(ModelError, match=message):
        discover(path, package)


def test_parse_evidence():
    assert parse_evidence("xray=yes, dysp = no") == {"xray": "yes", "dysp": "no"}
    assert parse_evidence("") == {}
    with pytest.raises(EvidenceError, match="'xray' is not of the form VARIABLE=STATE"):
        parse_evidence("xray")


def test_run_key_is_the_seeds_key_and_a_bad_seed_is_named():
    # oracle: JAX's own PRNGKey of the same seed
    np.testing.assert_array_equal(run_key(RunConfig(seed=7)), jax.random.PRNGKey(7))
    np.testing.assert_array_equal(seed_key(7), jax.random.PRNGKey(7))
    with pytest.raises(DataError, match="seed"):
        run_key(RunConfig(seed=-1))
    with pytest.raises(DataError, match="seed"):
        seed_key("7")
