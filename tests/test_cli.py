"""Every CLI command end to end, in a subprocess, as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ASIA = ["--network", "asia"]


def genzoo(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-m", "genzoo", *args, "--no-progress"] if args[0] in
                          ("run", "compare", "sample") else [sys.executable, "-m", "genzoo", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    return proc


def test_list(tmp_path):
    proc = genzoo("list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "bayesnet" in proc.stdout and "Bayesian network" in proc.stdout


def test_help_for_every_command(tmp_path):
    for command in ("list", "info", "run", "compare", "sample"):
        proc = genzoo(command, "--help", cwd=tmp_path) if command in ("list", "info") else \
            subprocess.run([sys.executable, "-m", "genzoo", command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage" in proc.stdout


def test_info_prints_docstring_and_methods(tmp_path):
    proc = genzoo("info", "bayesnet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "junction_tree" in proc.stdout and "--network" in proc.stdout
    assert "References" in proc.stdout or "p(x" in proc.stdout


def test_render_graph_spec_is_the_networks_dag(tmp_path):
    from genzoo.data import bn_network_path
    from genzoo.render import graph_spec, spec_to_digraph
    from pgm.bayesnet import BayesNet

    bn = BayesNet.from_bif(bn_network_path("asia"))
    graph = spec_to_digraph(graph_spec(bn.model, {"n": 1}))
    assert set(graph.nodes) == set(bn.variables)
    assert set(graph.edges) == set(bn.graph.edges)
    proc = genzoo("info", "bayesnet", *ASIA, "--render", str(tmp_path / "asia.png"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "asia.png").stat().st_size > 1000


def test_run_writes_a_run_folder(tmp_path):
    proc = genzoo("run", "bayesnet", "--method", "exact", *ASIA, "--evidence", "xray=yes,dysp=yes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "log evidence (exact)" in proc.stdout
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("bayesnet-exact-")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["log_evidence_kind"] == "exact"
    from inference.result import Result

    result = Result.from_json((folder / "result.json").read_text())
    assert np.isclose(result.marginals["lung"].sum(), 1.0)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_compare_prints_table_and_plot(tmp_path):
    proc = genzoo("compare", "bayesnet", *ASIA, "--methods", "junction_tree,likelihood_weighting",
                  "--steps", "2000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("exact") for line in lines)
    assert any(line.startswith("junction_tree") for line in lines)
    (folder,) = (tmp_path / "runs").iterdir()
    rows = {r["method"]: r for r in json.loads((folder / "metrics.json").read_text())["rows"]}
    assert rows["exact"]["max_abs_marginal"] == 0.0
    assert rows["junction_tree"]["max_abs_marginal"] < 1e-9
    # a self-normalised estimate of a probability has se <= sqrt(1 / (4 ESS)); with the default
    # evidence (xray=no, dysp=no) Kong's ESS is 1408 of the 2000 draws (measured; error 0.007),
    # so 4.5 se <= 0.06; 0.07 allows an ESS down to 1030
    assert 0 < rows["likelihood_weighting"]["max_abs_marginal"] < 0.07
    assert (folder / "compare.png").stat().st_size > 1000


def test_sample_prints_a_table(tmp_path):
    proc = genzoo("sample", "bayesnet", "-n", "4", *ASIA, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    lines = (folder / "samples.csv").read_text().splitlines()
    assert len(lines) == 5 and "asia" in lines[0].split(",")
    assert all(cell in ("yes", "no") for cell in lines[1].split(","))


@pytest.mark.parametrize(
    "args, message",
    [
        (("run", "nosuchmodel", "--method", "exact"), "unknown model 'nosuchmodel'"),
        (("run", "bayesnet", "--method", "nosuchmethod"), "has no method 'nosuchmethod'"),
        (("run", "bayesnet", "--method", "exact", "--colour", "red"), "has no option --colour"),
        (("run", "bayesnet", "--method", "exact", *ASIA, "--evidence", "xray=maybe"), "unknown state 'maybe'"),
        (("run", "bayesnet", "--method", "exact", *ASIA, "--evidence", "mars=yes"), "unknown variable 'mars'"),
        (("compare", "bayesnet", "--methods", "exact,guess"), "has no method 'guess'"),
        (("sample", "bayesnet", "--network", "atlantis"), "unknown network 'atlantis'"),
        (("bogus",), "invalid choice: 'bogus'"),
        (("bogus",), "genzoo: error: argument command: invalid choice: 'bogus'"),
        (("bogus",), "(genzoo --help shows the arguments)"),
        (("compare", "hmm", "--jobs", "0"), "(genzoo compare --help shows the arguments)"),
    ],
)
def test_bad_requests_fail_plainly(tmp_path, args, message):
    proc = genzoo(*args, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_compare_side_by_side_prints_each_question_in_order(tmp_path):
    """With workers (--jobs 2), a worker writes the first question's folder while this process writes
    the second: each table is followed by its own report and run folder, in the questions' order."""
    proc = genzoo("compare", "hmm", "--rolls", "40", "--steps", "20", "--jobs", "2", "--out", str(tmp_path),
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    questions = [i for i, line in enumerate(lines) if line.startswith("question:")]
    folders = [line.split(": ", 1)[1] for line in lines if line.startswith("run folder:")]
    reports = [i for i, line in enumerate(lines) if line.startswith("report:")]
    assert len(questions) == len(folders) == len(reports) == 2
    assert questions[0] < reports[0] < questions[1] < reports[1]
    for folder, kind in zip(folders, ("states", "learning")):
        assert f"hmm-compare-{kind}-" in folder
        assert {"metrics.json", "compare.png", "report.html"} <= {p.name for p in (tmp_path / folder).iterdir()}
        assert json.loads((tmp_path / folder / "metrics.json").read_text())["model"] == "hmm"


def test_compare_lda_reports_topic_errors_and_perplexity(tmp_path):
    proc = genzoo("compare", "lda", "--docs", "100", "--length", "40", "--methods", "collapsed_gibbs,online_vb",
                  "--steps", "20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "perplexity" in proc.stdout and "topic TV mean" in proc.stdout
    (folder,) = (tmp_path / "runs").iterdir()
    rows = {r["method"]: r for r in json.loads((folder / "metrics.json").read_text())["rows"]}
    assert set(rows) == {"collapsed_gibbs", "online_vb"}
    for row in rows.values():
        scores = row["scores"]
        # 25 words: a model that has learned nothing (uniform topics) has perplexity 25
        assert 1.0 < scores["perplexity"] < 25.0
        assert 0.0 <= scores["topic TV mean"] <= scores["topic TV max"] <= 1.0
        assert row["log_evidence_kind"] == "estimate"
    assert (folder / "compare.png").stat().st_size > 1000


def test_model_options_are_never_taken_for_abbreviated_cli_flags():
    from genzoo.cli import _model_options, build_parser

    # "--n" is gmm's option n; argparse's prefix matching once read it as --no-progress
    args, extra = build_parser().parse_known_args(["compare", "gmm", "--n", "60", "--steps", "5"])
    assert extra == ["--n", "60"] and args.steps == 5 and not args.no_progress
    assert _model_options(extra) == {"n": "60"}
    args, extra = build_parser().parse_known_args(["sample", "gmm", "-n", "4", "--n", "60"])
    assert args.n == 4 and extra == ["--n", "60"]


def test_unexpected_errors_print_one_line_unless_debug(monkeypatch, capsys):
    from genzoo import cli

    def broken(args, extra):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(cli, "cmd_list", broken)
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: something inside broke" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="inside broke"):
        cli.main(["list", "--debug"])
    monkeypatch.setattr(cli, "cmd_list", lambda args, extra: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli.main(["list"]) == 130


def test_ctrl_c_during_a_compilation_leaves_cleanly(tmp_path):
    """Ctrl-C while XLA compiles on a thread of its own: the program prints one line and exits 130
    (``genzoo.cli.run`` leaves without the interpreter's shutdown, which would free the JAX client
    under the compilation: with ``sys.exit(main())`` this script aborted in 6 runs of 6)."""
    script = (
        "import threading, time, jax, jax.numpy as jnp\n"
        "from genzoo import cli\n"
        "def busy(args, extra):\n"
        "    lowered = jax.jit(lambda x: sum(jnp.sin(x * i) for i in range(400))).lower(jnp.ones(3))\n"
        "    threading.Thread(target=lowered.compile, daemon=True).start()\n"
        "    time.sleep(0.05)\n"
        "    raise KeyboardInterrupt\n"
        "cli.cmd_list = busy\n"
        "cli.run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, "list"], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()), timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "genzoo: interrupted (finished run folders and checkpoints are complete; nothing is half-written)"]
