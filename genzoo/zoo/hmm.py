"""A categorical HMM on the occasionally dishonest casino: forward-backward beside learned fits.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem
from genzoo.zoo._common import run_key, seed_key


def _hmm_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """The occasionally dishonest casino: rolls simulated from the true model; the exact method
    uses the true parameters, the others learn them from the rolls."""
    from pgm.hmm import HMM

    truth = HMM.categorical(
        initial_probs=[0.5, 0.5],
        transition_matrix=[[0.95, 0.05], [0.10, 0.90]],
        emission_probs=[[1 / 6] * 6, [0.1] * 5 + [0.5]],
    )
    x = np.asarray(truth.sample(seed_key(seed), options["rolls"])["x"][0])
    return Problem(
        model=truth,
        data=x,
        description=f"occasionally dishonest casino (fair / loaded die), {len(x)} rolls",
        program_kwargs={"x": x},
        state_names={"z": ("fair", "loaded")},
    )


def _hmm_graph(options, steps=4):
    """The program unrolled over its first ``steps`` rolls, z[t-1] -> z[t] -> x[t]. (NumPyro's
    inspection of the scanned program folds the time steps into two sites, z and x, and reports
    dependencies both ways between them, which has no drawing as a DAG.)"""
    import networkx as nx

    from genzoo.render import graph_to_spec

    graph = nx.DiGraph()
    for t in range(steps):
        graph.add_edge(f"z[{t}]", f"x[{t}]")
        if t:
            graph.add_edge(f"z[{t - 1}]", f"z[{t}]")
    return graph_to_spec(graph, observed=[f"x[{t}]" for t in range(steps)])


def _hmm_start():
    from pgm.hmm import HMM

    return HMM.categorical(
        initial_probs=[0.6, 0.4],
        transition_matrix=[[0.8, 0.2], [0.3, 0.7]],
        emission_probs=[[0.2, 0.2, 0.2, 0.15, 0.15, 0.1], [0.1, 0.1, 0.1, 0.15, 0.15, 0.4]],
    )


def _hmm_exact(problem, config):
    from inference import exact

    return exact.marginals(problem.model, problem.data)


def _with_marginals(result, hmm, x, method, seconds=None, **diagnostics):
    """The state marginals of ``x`` under ``hmm`` attached to a learning method's Result."""
    from inference import exact

    post = exact.marginals(hmm, x)
    return dataclasses.replace(
        result, method=method, marginals=post.marginals, log_evidence=post.log_evidence,
        log_evidence_kind="exact", seconds=result.seconds if seconds is None else seconds,
        diagnostics={**result.diagnostics, **diagnostics, "log_evidence_of": "the learned point estimate"},
    )


def _hmm_em(problem, config):
    from inference import em

    fit = em.fit(_hmm_start(), problem.data, max_iter=config.steps or 200, progress=config.progress)
    return _with_marginals(fit, fit.params, problem.data, "em")


def _hmm_from_params(params):
    from pgm.hmm import HMM

    return HMM.categorical(
        initial_probs=np.asarray(params["initial_probs"]),
        transition_matrix=np.asarray(params["transition_matrix"]),
        emission_probs=np.asarray(params["emission_probs"]),
    )


def _hmm_svi(problem, config):
    """MAP parameters by SVI (delta guide) with the states enumerated out (TraceEnum ELBO)."""
    from inference import svi

    start = _hmm_start()
    fit = svi.fit(start.bayesian_model, {"x": problem.data}, key=run_key(config), guide="delta",
                  elbo="trace_enum", steps=config.steps or 500, learning_rate=0.05, num_samples=1,
                  progress=config.progress)
    point = {site: value[0] for site, value in fit.samples.items()}
    return _with_marginals(fit, _hmm_from_params(point), problem.data, "svi_map")


def _hmm_nuts(problem, config):
    """NUTS over the parameters (states enumerated out), started at Baum-Welch's estimate (moved
    off the simplex boundary, where the Dirichlet's unconstrained coordinates are infinite); the
    state marginals averaged over draws aligned to that estimate's labelling."""
    import time

    from numpyro.infer.initialization import init_to_value

    from inference import em, mcmc
    from pgm.hmm import averaged_state_marginals

    start_time = time.perf_counter()
    start = _hmm_start()
    x = np.asarray(problem.data)
    estimate = em.fit(start, x, max_iter=200).params.params
    interior = {name: (np.asarray(v) + 1e-3) / np.sum(np.asarray(v) + 1e-3, axis=-1, keepdims=True)
                for name, v in estimate.items()}
    draws = mcmc.nuts(start.bayesian_model, {"x": x}, key=run_key(config), num_samples=config.steps or 200,
                      num_warmup=config.steps or 200, init_strategy=init_to_value(values=interior),
                      progress=config.progress)
    marginals = averaged_state_marginals(draws.samples, x, interior["emission_probs"])
    return dataclasses.replace(draws, method="nuts", marginals={"z": marginals},
                               seconds=time.perf_counter() - start_time)


def _hmm_sample(problem, seed, n):
    draws = problem.model.sample(seed_key(seed), n)
    return {"state": np.asarray(draws["z"][0]), "roll": np.asarray(draws["x"][0]) + 1}


def _hmm_doc():
    from pgm.hmm import HMM

    return HMM


ENTRY = ModelEntry(
    name="hmm",
    family="hidden Markov model",
    description="A categorical HMM on the occasionally dishonest casino",
    dataset="simulated: 300 rolls of a fair and a loaded die (Durbin et al. 1998)",
    make_problem=_hmm_problem,
    methods=(
        Method("exact", "forward-backward with the true parameters", _hmm_exact),
        Method("em", "Baum-Welch from a wrong start, then forward-backward", _hmm_em),
        Method("svi_map", "SVI, delta guide, states enumerated out (TraceEnum)", _hmm_svi),
        Method("nuts", "NUTS over the parameters, states enumerated out; marginals averaged over draws", _hmm_nuts),
    ),
    exact_method="exact",
    options={"rolls": Option(300, "number of rolls", int)},
    sample=_hmm_sample,
    graph=_hmm_graph,
    doc=_hmm_doc,
    quick={"rolls": 200, "steps": 100},
    order=10,
)
