"""A Gaussian mixture, asked two questions.

1. The assignment posterior p(z | x) given the true mixture: enumeration over the components is
   exact; Gibbs sampling, mean field (CAVI) and Adam on the mean-field ELBO run on its factor graph
   (the assignments are independent given the parameters, so mean field is exact here: the table
   shows it).
2. Learning the mixture from the points: EM, SVI (MAP), a short NUTS run and conjugate Gibbs
   against a long NUTS run (4 chains); each method's parameters (posterior mean over its draws) and
   its averaged assignment posteriors are measured against the reference's, after relabelling every
   draw to the true components by their means.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem, Question
from genzoo.zoo._common import reference_draws, run_key, seed_key, state_method


def _gmm_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """Three well-separated 2-D Gaussians; the exact assignment posterior uses the true mixture."""
    from pgm.mixture import GaussianMixture

    truth = GaussianMixture([0.5, 0.3, 0.2], [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
                            [np.eye(2), [[1.0, 0.5], [0.5, 1.0]], 0.5 * np.eye(2)])
    x = np.asarray(truth.sample(seed_key(seed), options["n"])["x"])
    return Problem(model=truth, data=x, description=f"3 Gaussians in 2-D, {len(x)} points",
                   program_kwargs={"x": x})


def _gmm_exact(problem, config):
    import time

    from inference.result import Result

    start = time.perf_counter()
    truth, x = problem.model, problem.data
    return Result(method="exact", marginals={"z": np.asarray(truth.responsibilities(x))},
                  log_evidence=float(np.sum(truth.log_prob(x))), log_evidence_kind="exact",
                  seconds=time.perf_counter() - start, diagnostics={"arithmetic": "log"})  # logsumexp over K


def _state_graph(problem):
    return problem.model.state_graph(problem.data)


def _learned(problem, draws, result, method, seconds):
    """A learning method's Result: its parameter draws ``{"weights", "loc", "cov"}`` (S, ...) (a point
    estimate is S = 1) relabelled to the true components (by their means) as ``samples``, and the
    assignment posteriors averaged over them as ``marginals``."""
    from pgm.mixture import relabelled_responsibilities

    aligned, probs = relabelled_responsibilities(draws, problem.data, problem.model.means)
    return dataclasses.replace(result, method=method, marginals={"z": probs}, seconds=seconds, samples=aligned,
                               log_evidence=None, log_evidence_kind=None)


def _gmm_learn(kind, num_samples=300, num_chains=1, name=None):
    """EM, SVI (MAP), NUTS or conjugate Gibbs on the points, as a :func:`_learned` Result."""

    def run(problem, config):
        import time

        from pgm import mixture

        start = time.perf_counter()
        prior = mixture.BayesianGaussianMixture(3, 2)
        x, key, steps = problem.data, run_key(config), config.steps
        if kind == "em":
            fit = mixture.fit_em(key, x, 3, max_iter=steps or 100)
            draws = {"weights": fit.params.weights[None], "loc": fit.params.means[None],
                     "cov": fit.params.full_covariances()[None]}
        elif kind == "svi_map":
            fit = mixture.fit_svi(key, x, prior, steps=steps or 1000)
            draws = {k: np.asarray(v)[None] for k, v in fit.params.items()}
        else:
            if kind == "gibbs":
                fit = mixture.gibbs(key, x, prior, num_samples=steps or 500, burn_in=200)
            else:
                n = reference_draws(num_samples, steps) if name == "reference_nuts" else steps or num_samples
                fit = mixture.fit_nuts(key, x, prior, num_samples=n, num_warmup=n, num_chains=num_chains,
                                       chain_method="sequential")  # lockstep chains wait for the deepest tree
            draws = {k: fit.samples[k] for k in ("weights", "loc", "cov")}
        return _learned(problem, draws, fit, name or kind, time.perf_counter() - start)

    return run


def _gmm_sample(problem, seed, n):
    draws = problem.model.sample(seed_key(seed), n)
    x = np.asarray(draws["x"])
    return {"component": np.asarray(draws["z"]), "x0": x[:, 0].round(4), "x1": x[:, 1].round(4)}


def _gmm_doc():
    from pgm.mixture import GaussianMixture

    return GaussianMixture


ENTRY = ModelEntry(
    name="gmm",
    family="Gaussian mixture",
    description="A Gaussian mixture: the assignment posterior, and learning the mixture (EM, SVI, NUTS, Gibbs)",
    dataset="simulated: 3 Gaussians in 2-D",
    make_problem=_gmm_problem,
    methods=(
        Method("exact", "p(z_n | x_n) under the true mixture (enumeration over K)", _gmm_exact),
        Method("gibbs", "Gibbs sampling of the assignments, 4 chains (true mixture)", state_method("gibbs", _state_graph)),
        Method("mean_field", "fully factorised q(z) by CAVI (true mixture; exact here)", state_method("cavi", _state_graph)),
        Method("svi_states", "the same q(z) by Adam on its ELBO (true mixture)", state_method("adam", _state_graph)),
        Method("reference_nuts", "NUTS, 4 chains of 1000 draws: the learning question's reference",
               _gmm_learn("nuts", 1000, 4, "reference_nuts"), kind="posterior"),
        Method("em", "EM from k-means++ (a point estimate)", _gmm_learn("em"), kind="posterior"),
        Method("svi_map", "SVI, point-mass guide, z enumerated out (a MAP point estimate)", _gmm_learn("svi_map"),
               kind="posterior"),
        Method("nuts", "NUTS on weights, means, covariances, one chain of 300 draws (z enumerated out)",
               _gmm_learn("nuts"), kind="posterior"),
        Method("gibbs_params", "conjugate Gibbs sampling of the mixture and the assignments", _gmm_learn("gibbs", name="gibbs_params"),
               kind="posterior"),
    ),
    exact_method="exact",
    questions=(
        Question("states", "the assignment posterior p(z | x) given the true mixture",
                 ("exact", "gibbs", "mean_field", "svi_states"), "exact"),
        Question("learning", "the mixture learned from the points, and p(z | x) averaged over it",
                 ("reference_nuts", "em", "svi_map", "nuts", "gibbs_params"), "reference_nuts"),
    ),
    options={"n": Option(300, "number of points", int)},
    sample=_gmm_sample,
    doc=_gmm_doc,
    quick={"n": 200, "steps": 200},
    order=20,
)
