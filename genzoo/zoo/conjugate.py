"""The conjugate / teaching models: closed-form posteriors beside NUTS and SVI.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem
from genzoo.zoo._common import run_key, seed_key


def _closed_form(problem, config):
    """The posterior in closed form: its means and sds, and the exact log-evidence."""
    import time

    from inference.result import Result

    start = time.perf_counter()
    model, data = problem.model, problem.data
    posterior = model.posterior(**data)
    means = {k: np.asarray(d.mean) for k, d in posterior.items()}
    sds = {k: np.sqrt(np.asarray(d.variance)) for k, d in posterior.items()}
    return Result(method="closed_form", log_evidence=float(model.log_evidence(**data)), log_evidence_kind="exact",
                  seconds=time.perf_counter() - start,
                  diagnostics={"posterior_mean": means, "posterior_sd": sds})


def _nuts(num_samples=1000, name="nuts", program=None):
    def run(problem, config):
        from inference import mcmc

        fn = program(problem) if program else problem.model.model
        result = mcmc.nuts(fn, problem.data, key=run_key(config), num_samples=config.steps or num_samples,
                           num_warmup=config.steps or num_samples, progress=config.progress)
        return dataclasses.replace(result, method=name)

    return run


def _svi(guide):
    def run(problem, config):
        from inference import svi

        return svi.fit(problem.model.model, problem.data, key=run_key(config), guide=guide,
                       steps=config.steps or 2000, learning_rate=0.02, num_samples=4000, progress=config.progress)

    return run


def _conjugate_problem(kind):
    def make(options: Mapping[str, Any], seed: int) -> Problem:
        import jax

        from pgm import conjugate

        key = seed_key(seed)
        n = options["n"]
        if kind == "beta_bernoulli":
            model = conjugate.BetaBernoulli(2.0, 2.0)
            data = {"x": np.asarray(conjugate.simulate(model.model, key, n=n)["x"])}
            text = f"Beta(2, 2) prior, {n} coin flips"
        elif kind == "normal_normal":
            model = conjugate.NormalNormal(0.0, 2.0, 1.0)
            data = {"x": np.asarray(conjugate.simulate(model.model, key, n=n)["x"])}
            text = f"N(0, 2^2) prior on the mean, {n} draws with unit noise"
        elif kind == "linear_regression":
            model = conjugate.BayesianLinearRegression(1.0, 0.5)
            kx, ky = jax.random.split(key)
            x = np.asarray(jax.random.normal(kx, (n, 3)))
            data = {"x": x, "y": np.asarray(conjugate.simulate(model.model, ky, x=x)["y"])}
            text = f"3 weights, N(0, 1) prior, noise 0.5, {n} rows"
        else:
            model = conjugate.EightSchools(centered=True)
            data = conjugate.EightSchools.data()
            text = "Rubin's eight schools (centred program; reference: long non-centred NUTS)"
        return Problem(model=model, data=data, description=text, program_kwargs=data)

    return make


def _conjugate_sample(problem, seed, n, width=4):
    """``n`` draws of the program run forward (prior and data: NumPyro's ``Predictive``) at the
    problem's sizes, one column per scalar: a vector site's first ``width`` entries ``site[i]``."""
    from numpyro.infer import Predictive

    observed = "y" if "y" in problem.data else "x"
    kwargs = {k: v for k, v in problem.data.items() if k != observed}
    if observed == "x":
        kwargs["n"] = len(problem.data["x"])
    draws = Predictive(problem.model.model, num_samples=n)(seed_key(seed), **kwargs)
    columns = {}
    for site, value in draws.items():
        value = np.asarray(value).reshape(n, -1)
        if value.shape[1] == 1:
            columns[site] = value[:, 0]
        for i in range(min(width, value.shape[1]) if value.shape[1] > 1 else 0):
            columns[f"{site}[{i}]"] = value[:, i]
    return columns


def _eight_schools_reference(problem, config):
    from pgm import conjugate

    run = _nuts(num_samples=5000, name="reference_nuts",
                program=lambda p: conjugate.EightSchools(centered=False).model)
    result = run(problem, dataclasses.replace(config, steps=None))
    samples = {k: v for k, v in result.samples.items() if k in ("mu", "tau", "theta")}
    return dataclasses.replace(result, samples=samples)


def _conjugate_doc(name):
    def doc():
        from pgm import conjugate

        return getattr(conjugate, name)

    return doc


def _eight_schools_flow(problem, config):
    """SVI on the centred program (Pyro) with a neural spline flow guide (deep.flows.guide): the
    guide that can follow the funnel between tau and theta, beside the mean-field and full-rank ones."""
    from deep.flows.guide import FlowGuide, eight_schools
    from inference.svi import fit

    sigma, y = problem.data["sigma"], problem.data["y"]

    def program():
        return eight_schools(sigma, y)

    guide = FlowGuide(program, "nsf", hidden=(32, 32), num_layers=4, init_scale=1.0, seed=config.seed)
    result = fit(program, {}, key=config.seed, guide=guide, steps=config.steps or 2000, learning_rate=5e-3,
                 num_samples=4000, backend="pyro", progress=config.progress)
    return dataclasses.replace(result, method="svi_flow")


def _conjugate_entry(name, cls, description, guides=("normal",), reference=None, extra=()):
    methods = [Method("closed_form", "the exact posterior", _closed_form, kind="posterior")] if reference is None \
        else [Method("reference_nuts", "a long NUTS run on the non-centred program", reference, kind="posterior")]
    methods.append(Method("nuts", "NUTS (NumPyro)", _nuts(), kind="posterior"))
    for guide in guides:
        methods.append(Method(f"svi_{guide}", f"SVI with an automatic {guide} guide", _svi(guide), kind="posterior"))
    methods.extend(extra)
    return ModelEntry(
        name=name,
        family="conjugate / teaching model",
        description=description,
        dataset="simulated from the model" if reference is None else "Rubin (1981), inline",
        make_problem=_conjugate_problem(name),
        methods=tuple(methods),
        exact_method=methods[0].name,
        options={"n": Option(50, "number of observations", int)},
        sample=_conjugate_sample,
        doc=_conjugate_doc(cls),
        quick={"steps": 500},
        order=40,
    )


ENTRIES = (
    _conjugate_entry("beta_bernoulli", "BetaBernoulli", "Beta prior, Bernoulli data: a Beta posterior"),
    _conjugate_entry("normal_normal", "NormalNormal", "Normal mean, Normal prior: a Normal posterior"),
    _conjugate_entry("linear_regression", "BayesianLinearRegression",
                     "Bayesian linear regression: a Gaussian posterior", guides=("normal", "mvn")),
    _conjugate_entry("eight_schools", "EightSchools", "Hierarchical Normal model (centred)",
                     reference=_eight_schools_reference, guides=("normal", "mvn"),
                     extra=(Method("svi_flow", "SVI with a neural spline flow guide (Pyro program)", _eight_schools_flow,
                                   kind="posterior"),)),
)
