"""A Gaussian mixture: assignment posteriors by EM, SVI, NUTS and Gibbs beside the truth.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem
from genzoo.zoo._common import run_key, seed_key


def _gmm_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """Three well-separated 2-D Gaussians; the exact assignment posterior uses the true mixture."""
    from pgm.mixture import GaussianMixture

    truth = GaussianMixture([0.5, 0.3, 0.2], [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
                            [np.eye(2), [[1.0, 0.5], [0.5, 1.0]], 0.5 * np.eye(2)])
    x = np.asarray(truth.sample(seed_key(seed), options["n"])["x"])
    return Problem(model=truth, data=x, description=f"3 Gaussians in 2-D, {len(x)} points",
                   program_kwargs={"x": x})


def _gmm_aligned(problem, mixtures, result, method, seconds):
    """Assignment marginals p(z_n | x_n) averaged over ``mixtures`` (draws or a point estimate),
    each relabelled to the true components first."""
    from pgm.mixture import averaged_responsibilities

    probs = averaged_responsibilities(mixtures, problem.data, problem.model.means)
    return dataclasses.replace(result, method=method, marginals={"z": probs}, seconds=seconds)


def _gmm_exact(problem, config):
    import time

    from inference.result import Result

    start = time.perf_counter()
    truth, x = problem.model, problem.data
    return Result(method="exact", marginals={"z": np.asarray(truth.responsibilities(x))},
                  log_evidence=float(np.sum(truth.log_prob(x))), log_evidence_kind="exact",
                  seconds=time.perf_counter() - start)


def _gmm_em(problem, config):
    import time

    from pgm.mixture import fit_em

    start = time.perf_counter()
    fit = fit_em(run_key(config), problem.data, 3, max_iter=config.steps or 100)
    return _gmm_aligned(problem, [fit.params], fit, "em", time.perf_counter() - start)


def _gmm_bayes(kind):
    def run(problem, config):
        import time

        from pgm import mixture

        start = time.perf_counter()
        prior = mixture.BayesianGaussianMixture(3, 2)
        x, key, steps = problem.data, run_key(config), config.steps
        if kind == "svi_map":
            fit = mixture.fit_svi(key, x, prior, steps=steps or 1000)
            draws = [fit.params]
        else:
            if kind == "gibbs":
                fit = mixture.gibbs(key, x, prior, num_samples=steps or 500, burn_in=200)
            else:
                fit = mixture.fit_nuts(key, x, prior, num_samples=steps or 300, num_warmup=steps or 300)
            s = fit.samples
            every = max(1, len(s["loc"]) // 100)  # 100 draws are plenty for averaged marginals
            draws = [{k: s[k][i] for k in ("weights", "loc", "cov")} for i in range(0, len(s["loc"]), every)]
        mixtures = [prior.mixture(d["weights"], d["loc"], d["cov"]) for d in draws]
        return _gmm_aligned(problem, mixtures, fit, kind, time.perf_counter() - start)

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
    description="A Gaussian mixture: assignment posteriors by EM, SVI, NUTS and Gibbs beside the truth",
    dataset="simulated: 3 Gaussians in 2-D",
    make_problem=_gmm_problem,
    methods=(
        Method("exact", "p(z_n | x_n) under the true mixture (enumeration over K)", _gmm_exact),
        Method("em", "EM from k-means++, then p(z | x) under the fit", _gmm_em),
        Method("svi_map", "SVI, point-mass guide, z enumerated out (TraceEnum)", _gmm_bayes("svi_map")),
        Method("nuts", "NUTS on weights, means, covariances (z enumerated out)", _gmm_bayes("nuts")),
        Method("gibbs", "conjugate Gibbs sampling", _gmm_bayes("gibbs")),
    ),
    exact_method="exact",
    options={"n": Option(300, "number of points", int)},
    sample=_gmm_sample,
    doc=_gmm_doc,
    quick={"n": 200, "steps": 200},
    order=20,
)
