"""One question per table: the HMM's and the mixture's state posterior apart from learning their
parameters, and the pieces that serve it (the state factor graphs, the collapsed HMM program).

Oracles: brute-force enumeration of every state path, forward-backward, closed-form responsibilities.
"""

import itertools
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import substitute, trace
from numpyro.infer.util import log_density

from genzoo import compare
from genzoo.registry import Method, ModelEntry, Problem, Question, RunConfig
from inference import chain, exact, meanfield
from inference.errors import DataError, ModelError
from inference.result import Result
from pgm.hmm import HMM
from pgm.mixture import GaussianMixture

# float64 sums of a few dozen terms: rounding well below 1e-12
EXACT = 1e-12


def _brute_log_evidence(pi, a, log_lik):
    """log sum over every state path z of p(z) prod_t p(x_t | z_t), by enumeration."""
    T, K = log_lik.shape
    terms = []
    for z in itertools.product(range(K), repeat=T):
        lp = np.log(pi[z[0]]) + sum(np.log(a[z[t - 1], z[t]]) for t in range(1, T))
        terms.append(lp + sum(log_lik[t, z[t]] for t in range(T)))
    return float(np.logaddexp.reduce(terms))


def _prior_log_density(model, args, params):
    """The log density of the program's sample sites other than the factor "x" (the priors)."""
    tr = trace(substitute(model, params)).get_trace(*args)
    return float(sum(site["fn"].log_prob(site["value"]).sum() for name, site in tr.items()
                     if site["type"] == "sample" and name != "x"))


PARAMS = {"initial_probs": np.array([0.3, 0.7]), "transition_matrix": np.array([[0.8, 0.2], [0.4, 0.6]]),
          "emission_probs": np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])}


def test_collapsed_program_is_the_prior_plus_the_enumerated_likelihood():
    hmm = HMM.categorical([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.4, 0.3, 0.3], [0.1, 0.2, 0.7]])
    x = np.array([0, 2, 2, 1, 0, 2])
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    log_lik = np.log(PARAMS["emission_probs"])[:, x].T
    brute = _brute_log_evidence(PARAMS["initial_probs"], PARAMS["transition_matrix"], log_lik)
    total, _ = log_density(hmm.collapsed_model, (x,), {}, params)
    assert float(total) == pytest.approx(_prior_log_density(hmm.collapsed_model, (x,), params) + brute, abs=EXACT)
    # a padded batch: the second sequence's steps past its length do not count
    xs = [x, x[:4]]
    batch, _ = log_density(hmm.collapsed_model, (xs,), {}, params)
    brute4 = _brute_log_evidence(PARAMS["initial_probs"], PARAMS["transition_matrix"], log_lik[:4])
    prior = _prior_log_density(hmm.collapsed_model, (xs,), params)
    assert float(batch) == pytest.approx(prior + brute + brute4, abs=EXACT)


def test_collapsed_gaussian_program_matches_enumeration_and_refuses_missing_steps():
    hmm = HMM.gaussian([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], [[0.0], [3.0]], [[[1.0]], [[2.0]]])
    x = np.array([[0.3], [2.9], [3.4], [-0.5], [1.2]])
    params = {"initial_probs": jnp.array([0.4, 0.6]), "transition_matrix": jnp.array([[0.7, 0.3], [0.2, 0.8]]),
              "means": jnp.array([[0.5], [2.0]]), "variances": jnp.array([[1.5], [2.5]])}
    var = np.array([1.5, 2.5])
    log_lik = -0.5 * ((x - np.array([0.5, 2.0])) ** 2 / var + np.log(2 * np.pi * var))  # (T, K)
    brute = _brute_log_evidence(np.array([0.4, 0.6]), np.array([[0.7, 0.3], [0.2, 0.8]]), log_lik)
    total, _ = log_density(hmm.collapsed_model, (x,), {}, params)
    assert float(total) == pytest.approx(_prior_log_density(hmm.collapsed_model, (x,), params) + brute, abs=EXACT)
    x[2, 0] = np.nan
    with pytest.raises(DataError, match="missing"):
        log_density(hmm.collapsed_model, (x,), {}, params)


def test_state_graph_has_the_chain_posterior_and_evidence():
    hmm = HMM.categorical(PARAMS["initial_probs"], PARAMS["transition_matrix"], PARAMS["emission_probs"])
    x = np.array([1, 0, 0, 2, 1, 1, 0])
    graph = hmm.state_graph(x)
    assert list(graph.states) == [f"z[{t}]" for t in range(7)]
    answer = exact.marginals(graph)
    smoothed = chain.marginals(hmm, x)
    assert answer.log_evidence == pytest.approx(smoothed.log_evidence, abs=EXACT)
    log_lik = np.log(PARAMS["emission_probs"])[:, x].T
    assert answer.log_evidence == pytest.approx(
        _brute_log_evidence(PARAMS["initial_probs"], PARAMS["transition_matrix"], log_lik), abs=EXACT)
    stacked = np.stack([answer.marginals[f"z[{t}]"] for t in range(7)])
    np.testing.assert_allclose(stacked, smoothed.marginals["z"], atol=EXACT)
    with pytest.raises(DataError, match="one sequence"):
        hmm.state_graph([x, x])


def test_chain_results_say_their_arithmetic():
    hmm = HMM.categorical(PARAMS["initial_probs"], PARAMS["transition_matrix"], PARAMS["emission_probs"])
    x = np.array([1, 0, 2])
    for result in (chain.marginals(hmm, x), chain.log_evidence(hmm, x), chain.map(hmm, x), chain.sample(hmm, 0, 2, x)):
        assert result.diagnostics["arithmetic"] == "linear"  # log A >= log 0.2, far inside the scaled range
    assert chain.arithmetic_of(np.log([[1.0, 1e-300], [0.5, 0.5]])) == "log"  # log 1e-300 = -690.8 < -325


def test_mixture_state_graph_mean_field_is_exact():
    """Given the parameters the assignments are independent, so the fully factorised q is the
    posterior: CAVI reaches it (to rounding) and its ELBO equals log p(x)."""
    truth = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], [np.eye(2), 0.5 * np.eye(2)])
    x = np.array([[0.0, 0.1], [1.2, 0.4], [-2.0, -0.3], [0.4, 1.0]])
    graph = truth.state_graph(x)
    fit = meanfield.mean_field(graph, key=0, steps=5)
    q = np.stack([fit.marginals[f"z[{n}]"] for n in range(4)])
    np.testing.assert_allclose(q, truth.responsibilities(x), atol=1e-12)
    assert fit.log_evidence == pytest.approx(float(np.sum(truth.log_prob(x))), abs=1e-10)


# ----------------------------------------------------------------------------- the catalogue's questions
def _const(method, value, samples=None):
    def run(problem, config):
        return Result(method=method, marginals={"z": np.array([[value, 1 - value]])},
                      samples=samples or {}, log_evidence=None)

    return run


def _entry(questions):
    methods = (Method("exact", "", _const("exact", 0.5)), Method("approx", "", _const("approx", 0.6)),
               Method("reference", "", _const("reference", 0.9, {"w": np.array([1.0, 3.0])}), kind="posterior"),
               Method("learner", "", _const("learner", 0.8, {"w": np.array([2.5, 2.5])}), kind="posterior"))
    return ModelEntry("toy", "toy", "toy", "none", lambda options, seed: Problem(None), methods,
                      exact_method="exact", questions=questions)


QUESTIONS = (Question("states", "states", ("exact", "approx"), "exact"),
             Question("learning", "learning", ("reference", "learner"), "reference"))


def test_each_row_is_measured_against_its_questions_reference():
    entry = _entry(QUESTIONS)
    rows = compare.run_methods(entry, Problem(None), ["approx", "learner"], RunConfig(progress=False))
    by_name = {r.method: r for r in rows}
    assert set(by_name) == {"exact", "approx", "reference", "learner"}  # each reference run once
    assert by_name["approx"].max_abs_marginal == pytest.approx(0.1) and by_name["approx"].question == "states"
    assert by_name["learner"].max_abs_marginal == pytest.approx(0.1)  # |0.8 - 0.9|, not |0.8 - 0.5|
    # the reference's draws w = (1, 3): mean 2, sd 1; the learner's mean 2.5 is 0.5 sd off
    assert by_name["learner"].max_z_mean == pytest.approx(0.5)
    assert by_name["learner"].max_rel_sd == pytest.approx(1.0)  # its draws are equal: sd 0 against 1
    groups = compare.by_question(entry, rows)
    assert [(q.name, [r.method for r in g]) for q, g in groups] == [
        ("states", ["exact", "approx"]), ("learning", ["reference", "learner"])]


@pytest.mark.parametrize("questions, culprit", [
    ((Question("a", "a", ("exact", "approx", "reference"), "exact"),), "learner"),  # a method in no question
    ((Question("a", "a", ("exact", "approx"), "exact"), Question("b", "b", ("approx", "reference", "learner"), "reference")),
     "approx"),  # a method in two
    ((Question("a", "a", ("exact", "approx"), "exact"), Question("b", "b", ("reference", "learner"), "exact")),
     "references"),  # a reference outside its question
])
def test_a_malformed_question_list_is_refused(questions, culprit):
    with pytest.raises(ModelError, match=culprit):
        _entry(questions)


def test_compare_hmm_prints_the_state_question_under_its_title(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-m", "genzoo", "compare", "hmm", "--methods", "mean_field", "--rolls", "40",
                           "--steps", "30", "--no-progress", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "question: the state posterior p(z | x) given the true parameters (reference: exact)" in proc.stdout
    assert "reference_nuts" not in proc.stdout  # the learning question was not asked
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("hmm-compare-states-")
    rows = json.loads((folder / "metrics.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["exact", "mean_field"] and {r["question"] for r in rows} == {"states"}


def test_relabelled_responsibilities_is_the_loop_over_mixtures():
    """The batched form against averaged_responsibilities' loop over GaussianMixture objects, on
    draws whose labels are permuted: equal to float rounding, and each draw relabelled to the reference."""
    from pgm.mixture import averaged_responsibilities, relabelled_responsibilities

    rng = np.random.default_rng(0)
    means = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    x = rng.normal(size=(50, 2)) * 2
    draws = {"weights": [], "loc": [], "cov": []}
    for _ in range(6):
        perm = rng.permutation(3)
        a = rng.normal(size=(3, 2, 2)) * 0.3
        draws["weights"].append(rng.dirichlet(np.ones(3)))
        draws["loc"].append((means + 0.2 * rng.normal(size=(3, 2)))[perm])
        draws["cov"].append((np.eye(2) + a @ np.swapaxes(a, 1, 2))[perm])
    draws = {k: np.stack(v) for k, v in draws.items()}
    aligned, probs = relabelled_responsibilities(draws, x, means)
    mixtures = [GaussianMixture(w / w.sum(), m, c) for w, m, c in zip(draws["weights"], draws["loc"], draws["cov"])]
    np.testing.assert_allclose(probs, averaged_responsibilities(mixtures, x, means), atol=1e-12)
    assert np.all(np.abs(aligned["loc"] - means).max(axis=(1, 2)) < 1.5)  # every draw in the reference's order
    with pytest.raises(DataError, match="samples must be"):
        relabelled_responsibilities({**draws, "cov": draws["cov"][:, :2]}, x, means)


@pytest.mark.parametrize("n", [0, -2, 2.5, True])
def test_mixture_sample_size_is_checked(n):
    truth = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], [np.eye(2), 0.5 * np.eye(2)])
    with pytest.raises(DataError, match="n must be a positive integer"):
        truth.sample(0, n)


def test_sd_errors_against_closed_form_moments():
    """The reference states its moments (sd 2 and 4); the draws (-3, 3) have sd 3 for both
    coordinates: relative errors 0.5 and 0.25, the largest reported."""
    from inference.result import Result

    reference = Result(method="closed", diagnostics={"posterior_mean": {"w": np.zeros(2)},
                                                     "posterior_sd": {"w": np.array([2.0, 4.0])}})
    draws = Result(method="draws", samples={"w": np.array([[-3.0, -3.0], [3.0, 3.0]])})
    assert compare.sd_errors(reference, draws) == pytest.approx(0.5, rel=1e-15)
    assert compare.sd_errors(reference, Result(method="none")) is None
