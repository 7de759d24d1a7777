"""Issue 13: every wrong CLI input is one line on stderr and a non-zero exit, never a traceback,
and leaves no run folder; ``run --help`` lists the model's options; ``sample`` answers for every
model. In-process through :func:`genzoo.cli.main`, with tiny sizes."""

import numpy as np
import pytest

from genzoo.cli import main
from inference.result import Result

pytestmark = pytest.mark.usefixtures("one_thread")  # the deep models' samplers train a few torch steps

ASIA = ["--network", "asia"]


def _fails(capsys, tmp_path, argv, culprit):
    """``argv`` exits 2 (a typed error) with one stderr line naming ``culprit``; no run folder."""
    out = tmp_path / "runs"
    rc = main([*argv, "--out", str(out), "--no-progress"] if argv[0] != "info" else argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert culprit in err, err
    assert not out.exists() or not any(out.iterdir())
    return err


@pytest.mark.parametrize("argv, culprit", [
    (["run", "bayesnet", "--method", "exact", *ASIA, "--seed", "-1"], "--seed: must be an integer in [0, 4294967295], got -1"),
    (["run", "bayesnet", "--method", "exact", *ASIA, "--seed", str(2**40)], f"got {2**40}"),
    (["run", "bayesnet", "--method", "exact", *ASIA, "--seed", "x"], "--seed: expects an integer, got 'x'"),
    (["run", "bayesnet", "--method", "gibbs", *ASIA, "--steps", "-5"], "--steps: must be a positive integer"),
    (["run", "bayesnet", "--method", "gibbs", *ASIA, "--steps", "0"], "--steps: must be a positive integer"),
    (["compare", "hmm", "--steps", "0"], "--steps: must be a positive integer"),
    (["compare", "hmm", "--jobs", "0"], "--jobs: must be a positive integer (1: one method after another), got 0"),
    (["compare", "hmm", "--jobs", "two"], "--jobs: expects an integer, got 'two'"),
    (["run", "gmm", "--method", "em", "--n", "abc"], "option --n expects an integer, got 'abc'"),
    (["run", "gmm", "--method", "em", "--n", "5", "--n", "6"], "option --n given twice"),
    (["run", "bayesnet", "--method", "exact", *ASIA, "--evidence", "xray=yes,xray=no"], "variable 'xray' twice"),
    (["run", "bayesnet"], "required: --method"),
    (["sample", "bayesnet", *ASIA, "--n", "0"], "positive integer, got 0"),
    (["sample", "bayesnet", *ASIA, "-n", "3", "--n", "4"], "given twice: -n 3 and --n 4"),
])
def test_bad_cli_input_is_one_typed_line(capsys, tmp_path, argv, culprit):
    _fails(capsys, tmp_path, argv, culprit)


def test_out_under_a_file_fails_before_any_work(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    rc = main(["run", "bayesnet", "--method", "exact", *ASIA, "--out", str(tmp_path / "afile" / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is a file, not a folder" in err and "afile" in err
    assert capsys.readouterr().out == ""  # refused before the model was built or run


def test_a_failed_write_leaves_no_run_folder(capsys, tmp_path, monkeypatch):
    from genzoo import cli

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cli, "_write_result", broken)
    rc = main(["run", "bayesnet", "--method", "exact", *ASIA, "--out", str(tmp_path), "--no-progress"])
    assert rc == 1 and "disk full" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_sample_takes_n_in_every_spelling(capsys, tmp_path):
    for i, flags in enumerate((["-n", "3"], ["--num-samples", "3"], ["--n", "3"])):
        out = tmp_path / str(i)
        assert main(["sample", "bayesnet", *ASIA, *flags, "--out", str(out), "--no-progress"]) == 0
        (folder,) = out.iterdir()
        assert len((folder / "samples.csv").read_text().splitlines()) == 1 + 3
    capsys.readouterr()


def test_render_hmm_and_vae_without_building_or_training(capsys, tmp_path, monkeypatch):
    from genzoo.render import spec_to_digraph
    from genzoo.zoo import ENTRIES

    spec = ENTRIES["hmm"].graph(ENTRIES["hmm"].values({}))
    graph = spec_to_digraph(spec)
    assert ("z[0]", "z[1]") in graph.edges and ("z[1]", "x[1]") in graph.edges
    assert spec["node_data"]["x[0]"]["is_observed"] and not spec["node_data"]["z[0]"]["is_observed"]
    assert main(["info", "hmm", "--render", str(tmp_path / "hmm.svg")]) == 0
    assert "8 sites, 7 edges" in capsys.readouterr().out
    vae = ENTRIES["vae"]
    # the render must not train: make the problem (which trains) fail if it is built at all
    monkeypatch.setattr(type(vae), "problem", lambda *a, **k: pytest.fail("info --render built the VAE problem"))
    assert main(["info", "vae", "--render", str(tmp_path / "vae.png")]) == 0
    assert (tmp_path / "vae.png").stat().st_size > 1000
    assert set(spec_to_digraph(vae.graph(vae.values({}))).edges) == {("z", "x")}


def test_render_of_a_program_that_cannot_be_drawn_is_one_typed_line(capsys, tmp_path, monkeypatch):
    from genzoo import render

    def untraceable(program, kwargs):
        raise ValueError("Please specify total_count_max in Multinomial distribution.")

    monkeypatch.setattr(render, "graph_spec", untraceable)
    err = _fails(capsys, tmp_path, ["info", "bayesnet", *ASIA, "--render", str(tmp_path / "x.png")],
                 "model 'bayesnet': its program cannot be drawn")
    assert "total_count_max" in err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", ["run", "sample"])
def test_help_lists_the_models_options(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "hmm", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "options of model hmm" in out and "--rolls INT" in out and "number of rolls (default: 300)" in out


# the smallest sizes each sampler's model accepts (the deep ones train for a few steps first)
TINY = {
    "bayesnet": ["--network", "asia"], "hmm": ["--rolls", "10"], "gmm": ["--n", "20"], "ising": ["--size", "3"],
    "lda": ["--docs", "10", "--length", "5"], "beta_bernoulli": ["--n", "5"], "normal_normal": ["--n", "5"],
    "linear_regression": ["--n", "5"], "eight_schools": [], "vae": ["--epochs", "1"],
    "nade": ["--pixels", "12", "--hidden", "8", "--steps", "2", "--vae_epochs", "1"],
    "charlm": ["--quick", "--steps", "2", "--layers", "1", "--width", "16", "--heads", "1", "--context", "8",
               "--length", "5", "--checkpoint", "", "--val_windows", "1"],
    "diffusion": ["--train_steps", "2", "--points", "20", "--width", "8", "--train_n", "64", "--T", "10"],
    "gan": ["--steps", "2", "--train_size", "64", "--batch_size", "16", "--eval", "20"],
    "flow_matching": ["--train_steps", "2", "--points", "20", "--width", "8", "--train_n", "64"],
}


def _entry_names():
    from genzoo.zoo import ENTRIES

    return list(ENTRIES)


@pytest.mark.parametrize("name", _entry_names())
def test_sample_answers_for_every_model(capsys, tmp_path, name):
    from genzoo.zoo import ENTRIES

    entry = ENTRIES[name]
    rc = main(["sample", name, "-n", "2", *TINY.get(name, []), "--out", str(tmp_path / name), "--no-progress"])
    err = capsys.readouterr().err
    if entry.sample is None:  # a clear typed line saying which command draws from it
        assert rc == 2 and err.count("\n") == 1 and f"model {name!r} has no sampler" in err, (name, err)
        assert f"genzoo run {name} --method" in err or f"genzoo compare {name}" in err, err
        assert not (tmp_path / name).exists()
    else:
        assert rc == 0, (name, err)
        (folder,) = (tmp_path / name).iterdir()
        assert {p.name for p in folder.iterdir()} & {"samples.csv", "samples.png", "samples.txt"}, name


def test_run_prints_arviz_posterior_summaries(capsys, tmp_path, monkeypatch):
    """A sampling method's run prints ArviZ's mean, sd and 90% interval per site and keeps the table
    in summary.csv; checked against NumPy on the same draws (ArviZ rounds to 4 decimals: 5e-5)."""
    import pandas as pd

    from genzoo.registry import Method, ModelEntry

    draws = np.random.default_rng(0).normal([1.0, -2.0], [0.5, 3.0], size=(400, 2))
    fake = Method("nuts", "fake draws", lambda problem, config: Result(method="nuts", samples={"w": draws}),
                  kind="posterior")
    monkeypatch.setattr(ModelEntry, "method", lambda self, name: fake)
    assert main(["run", "beta_bernoulli", "--method", "nuts", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "posterior summary" in out and "hdi_5%" in out and "w[1]" in out
    (folder,) = tmp_path.iterdir()
    table = pd.read_csv(folder / "summary.csv", index_col=0)
    assert np.allclose(table["mean"], draws.mean(0), rtol=0, atol=5e-5)
    assert np.allclose(table["sd"], draws.std(0, ddof=1), rtol=0, atol=5e-5)
    assert (table["hdi_5%"] < table["mean"]).all() and (table["mean"] < table["hdi_95%"]).all()


def test_run_labels_discrete_marginals_with_state_names(capsys, tmp_path):
    assert main(["run", "hmm", "--method", "exact", "--rolls", "10", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "z[0]: fair=" in out and ", loaded=" in out and "6 more rows of z" in out
    assert main(["run", "bayesnet", "--method", "exact", *ASIA, "--out", str(tmp_path), "--no-progress"]) == 0
    assert "either: yes=" in capsys.readouterr().out


def test_info_says_which_arithmetic_the_exact_engine_uses(capsys):
    assert main(["info", "bayesnet", *ASIA]) == 0
    assert "exact arithmetic: linear" in capsys.readouterr().out


def test_help_works_for_every_model_and_command(capsys):
    """Model options named like a command's own (nade's and charlm's --steps) must not break --help."""
    from genzoo.zoo import ENTRIES

    for name, entry in ENTRIES.items():
        for command in ("info", "run", "compare", "sweep", "sample"):
            with pytest.raises(SystemExit) as exit_:
                main([command, name, "--help"])
            assert exit_.value.code == 0, (command, name)
            out = capsys.readouterr().out
            assert all(f"--{option}" in out for option in entry.options), (command, name)
