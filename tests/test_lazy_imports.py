"""``import inference`` and the catalogue load without JAX, so ``genzoo compare`` starts its workers
first; JAX still gets the package's settings (float64, the compilation cache) whichever comes first.

Each case runs in a fresh interpreter (what is imported is per process), with the JAX variables of
this one removed: the test process imported the package, which set them."""

import json
import os
import subprocess
import sys

import pytest

_REPORT = """
import json, sys
import jax
print(json.dumps({"x64": bool(jax.config.jax_enable_x64), "dir": jax.config.jax_compilation_cache_dir,
                  "min": jax.config.jax_persistent_cache_min_compile_time_secs}))
"""


def _run(code, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "GENZOO_JAX_ENV"}
    clean.update(env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_the_package_errors_and_catalogue_import_no_jax(tmp_path):
    code = ("import sys, inference, genzoo.cli, genzoo.compare\n"
            "from genzoo.zoo import ENTRIES\n"
            "from inference.errors import DataError\n"
            "ENTRIES['hmm'].method('nuts'); print(sorted(m for m in ('jax', 'numpyro', 'torch') if m in sys.modules))")
    assert _run(code, GENZOO_CACHE=str(tmp_path)).stdout.strip() == "[]"


@pytest.mark.parametrize("jax_first", [False, True])
def test_jax_gets_the_settings_whichever_is_imported_first(tmp_path, jax_first):
    code = ("import jax\n" if jax_first else "") + "import inference\n" + _REPORT
    got = json.loads(_run(code, GENZOO_CACHE=str(tmp_path)).stdout)
    assert got == {"x64": True, "dir": str(tmp_path), "min": 0.0}


def test_switches_off(tmp_path):
    got = json.loads(_run("import inference\n" + _REPORT, GENZOO_CACHE="off", GENZOO_X64="0").stdout)
    assert got["x64"] is False and got["dir"] is None


def test_a_child_derives_the_settings_from_its_own_variables(tmp_path):
    # a parent's variables reach a child; the child's own GENZOO_CACHE=off must still hold
    parent = ("import inference, json, os\n"
              "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(('JAX_', 'GENZOO_JAX'))}))")
    inherited = json.loads(_run(parent, GENZOO_CACHE=str(tmp_path)).stdout)
    assert inherited["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path)
    got = json.loads(_run("import inference\n" + _REPORT, GENZOO_CACHE="off", **inherited).stdout)
    assert got["dir"] is None and got["x64"] is True
    # a variable the user set is theirs: left alone
    mine = json.loads(_run("import inference\n" + _REPORT, GENZOO_CACHE=str(tmp_path),
                           JAX_COMPILATION_CACHE_DIR=str(tmp_path / "mine")).stdout)
    assert mine["dir"] == str(tmp_path / "mine")


def test_classes_load_on_first_use():
    import inference
    from inference.errors import DataError
    from inference.result import Result

    assert inference.Result is Result and inference.DataError is DataError
    assert "Result" in dir(inference)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        inference.Nothing  # noqa: B018


def test_arviz_is_imported_without_its_refactor_notice(tmp_path):
    # ArviZ 0.23 prints the notice once a day per cache folder: a fresh one makes it due
    code = "from inference._arviz import arviz\narviz()\nimport warnings\nwarnings.warn('other', FutureWarning)"
    done = _run(code, XDG_CACHE_HOME=str(tmp_path), PYTHONWARNINGS="always")
    assert "ArviZ is undergoing" not in done.stderr
    assert "FutureWarning: other" in done.stderr  # other warnings still pass
