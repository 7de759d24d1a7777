"""A categorical HMM on the occasionally dishonest casino, asked two questions.

1. The state posterior given the true parameters: forward-backward is exact; Gibbs sampling, mean
   field (CAVI) and Adam on the same mean-field ELBO run on the chain's factor graph.
2. Learning the parameters from the rolls: Baum-Welch, SVI (MAP) and a short NUTS run against a
   long NUTS run (4 chains), with the states summed out by the forward algorithm; each method's
   parameters (posterior mean over its draws) and its averaged state marginals are measured
   against the reference's, after relabelling every draw to the true states.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem, Question
from genzoo.zoo._common import reference_draws, run_key, seed_key, state_method


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


def _state_graph(problem):
    return problem.model.state_graph(problem.data)


# ----------------------------------------------------------------------------- learning the parameters
_SITES = ("initial_probs", "transition_matrix", "emission_probs")


def _learned(problem, result, draws, method, seconds):
    """A learning method's Result: its parameter draws (a point estimate is one draw) aligned to the
    true labelling as ``samples``, and the state marginals averaged over them as ``marginals``, so that
    the table measures both against the reference's."""
    from pgm.hmm import averaged_state_marginals, relabelled_draws

    aligned = relabelled_draws(draws, np.asarray(problem.model.emission.probs))
    marginals = averaged_state_marginals(aligned, problem.data, np.asarray(problem.model.emission.probs))
    return dataclasses.replace(result, method=method, samples=aligned, marginals={"z": marginals},
                               log_evidence=None, log_evidence_kind=None, seconds=seconds)


def _hmm_em(problem, config):
    import time

    from inference import em

    began = time.perf_counter()
    fit = em.fit(_hmm_start(), problem.data, max_iter=config.steps or 200, progress=config.progress)
    point = {site: np.asarray(fit.params.params[site])[None] for site in _SITES}
    return _learned(problem, fit, point, "em", time.perf_counter() - began)


def _hmm_svi(problem, config):
    """MAP parameters by SVI (delta guide) on the program with the states summed out."""
    import time

    from inference import svi

    began = time.perf_counter()
    start = _hmm_start()
    fit = svi.fit(start.collapsed_model, {"x": problem.data}, key=run_key(config), guide="delta",
                  steps=config.steps or 500, learning_rate=0.05, num_samples=1, progress=config.progress)
    return _learned(problem, fit, fit.samples, "svi_map", time.perf_counter() - began)


def _hmm_nuts(num_samples, num_chains, name):
    """NUTS over the parameters of the program with the states summed out (dense mass matrix),
    started at Baum-Welch's estimate moved off the simplex boundary (where the Dirichlet's
    unconstrained coordinates are infinite): the posterior of 300 rolls also has a mode where both
    states emit alike, which a start from the prior's centre finds first. Several chains run one
    after another: in lockstep (vectorised) every iteration waits for the deepest tree of any chain,
    7x slower here (263 s against 38 s for 4 chains of 500 draws)."""

    def run(problem, config):
        import time

        from numpyro.infer.initialization import init_to_value

        from inference import em, mcmc

        began = time.perf_counter()
        start = _hmm_start()
        x = np.asarray(problem.data)
        estimate = em.fit(start, x, max_iter=200).params.params
        interior = {name: (np.asarray(v) + 1e-3) / np.sum(np.asarray(v) + 1e-3, axis=-1, keepdims=True)
                    for name, v in estimate.items()}
        n = reference_draws(num_samples, config.steps) if name == "reference_nuts" else config.steps or num_samples
        draws = mcmc.nuts(start.collapsed_model, {"x": x}, key=run_key(config), num_samples=n, num_warmup=n,
                          num_chains=num_chains, chain_method="sequential", dense_mass=True,
                          init_strategy=init_to_value(values=interior),
                          progress=config.progress)
        return _learned(problem, draws, draws.samples, name, time.perf_counter() - began)

    return run


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
        Method("gibbs", "Gibbs sampling of the states, 4 chains (true parameters)", state_method("gibbs", _state_graph)),
        Method("mean_field", "fully factorised q(z) by CAVI (true parameters; ELBO)", state_method("cavi", _state_graph)),
        Method("svi_states", "the same q(z) by Adam on its ELBO (true parameters)", state_method("adam", _state_graph)),
        Method("reference_nuts", "NUTS, 4 chains of 1000 draws: the learning question's reference",
               _hmm_nuts(1000, 4, "reference_nuts"), kind="posterior"),
        Method("em", "Baum-Welch from a wrong start (a point estimate)", _hmm_em, kind="posterior"),
        Method("svi_map", "SVI, delta guide, states summed out (a MAP point estimate)", _hmm_svi, kind="posterior"),
        Method("nuts", "NUTS over the parameters, one chain of 200 draws, states summed out",
               _hmm_nuts(200, 1, "nuts"), kind="posterior"),
    ),
    exact_method="exact",
    questions=(
        Question("states", "the state posterior p(z | x) given the true parameters",
                 ("exact", "gibbs", "mean_field", "svi_states"), "exact"),
        Question("learning", "the parameters learned from the rolls, and p(z | x) averaged over them",
                 ("reference_nuts", "em", "svi_map", "nuts"), "reference_nuts"),
    ),
    options={"rolls": Option(300, "number of rolls", int)},
    sample=_hmm_sample,
    graph=_hmm_graph,
    doc=_hmm_doc,
    quick={"rolls": 200, "steps": 100},
    order=10,
)
