"""Bayesian networks read from BIF files: exact, message passing, sampling, variational and EM.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem
from genzoo.zoo._common import parse_evidence, run_key, seed_key


def _default_evidence(bn, seed: int, k: int = 3) -> dict[str, str]:
    """``k`` leaf variables (no children) observed at the values of one forward sample: evidence
    that is typical for the network and never of probability zero."""
    leaves = [v for v in bn.variables if not bn.children(v)] or list(bn.variables)
    chosen = sorted(np.random.default_rng(seed).choice(len(leaves), size=min(k, len(leaves)), replace=False))
    draw = bn.sample(seed_key(seed), 1)
    return {leaves[i]: bn.states[leaves[i]][int(np.asarray(draw[leaves[i]])[0])] for i in chosen}


def _bayesnet_problem(options: Mapping[str, Any], seed: int) -> Problem:
    from genzoo.data import bn_network_path
    from pgm.bayesnet import BayesNet

    network = options["network"]
    path = network if network.endswith((".bif", ".bif.gz", ".xml", ".xmlbif")) else bn_network_path(network)
    path = str(path)
    bn = BayesNet.from_xmlbif(path) if path.endswith((".xml", ".xmlbif")) else BayesNet.from_bif(path)
    evidence = parse_evidence(options["evidence"]) if options["evidence"] else _default_evidence(bn, seed)
    bn.factor_graph().evidence_indices(evidence)  # unknown variables / states fail here, named
    shown = ", ".join(f"{k}={v}" for k, v in evidence.items()) or "none"
    return Problem(
        model=bn,
        data=evidence,
        description=f"{_network_label(bn, network)}: {len(bn.variables)} variables, evidence {shown}",
        program_kwargs={"n": 1},
    )


def _network_label(bn, network: str) -> str:
    """The network's own name, or the file's when the file calls it 'unknown' (as bnlearn's do)."""
    import pathlib

    if bn.name and bn.name != "unknown":
        return bn.name
    return pathlib.Path(network).name.split(".")[0]


def _bn_exact(problem, config):
    from inference import exact

    return exact.marginals(problem.model, problem.data)


def _bn_map(problem, config):
    from inference import exact

    return exact.map(problem.model, problem.data)


def _bn_exact_samples(problem, config):
    from inference import exact

    return exact.sample(problem.model, run_key(config), config.steps or 1000, problem.data)


def _bn_junction_tree(problem, config):
    from inference import bp

    return bp.junction_tree(problem.model, problem.data)


def _bn_loopy(problem, config):
    from inference import bp

    return bp.loopy(problem.model, problem.data, damping=0.5, max_iter=config.steps or 200)


def _bn_lw(problem, config):
    from inference import importance

    return importance.likelihood_weighting(problem.model, run_key(config), config.steps or 20000, problem.data)


def _bn_gibbs(problem, config):
    from inference import gibbs

    return gibbs.gibbs(problem.model, run_key(config), config.steps or 2000, problem.data, chains=4)


def _bn_mean_field(problem, config):
    from inference import meanfield

    return meanfield.mean_field(problem.model, problem.data, key=run_key(config), steps=config.steps or 500)


def _bn_em(problem, config):
    """EM from random CPTs on 1,000 rows sampled from the network with 20% of cells hidden."""
    import jax

    from inference import em

    bn = problem.model
    key_data, _ = jax.random.split(run_key(config))
    draws = bn.sample(key_data, 1000)
    rng = np.random.default_rng(config.seed)
    rows = bn.encode_data(draws).astype(np.float64)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    start = bn.with_cpts({v: rng.dirichlet(np.ones(len(bn.states[v])), size=bn.cpt(v).shape[:-1]) for v in bn.variables})
    fitted = em.fit(start, rows, max_iter=config.steps or 50, progress=config.progress, pseudo_count=1.0)
    # EM's log_evidence is log p(the 1,000 sampled rows | fitted CPTs), another quantity than the
    # other methods' log p(evidence): kept as a diagnostic, not set beside theirs
    return dataclasses.replace(fitted, log_evidence=None, log_evidence_kind=None,
                               diagnostics={**fitted.diagnostics, "train_log_likelihood": fitted.log_evidence})


def _bn_sample(problem, seed, n):
    return problem.model.sample(seed_key(seed), n)


def _bayesnet_doc():
    from pgm.bayesnet import BayesNet

    return BayesNet


ENTRY = ModelEntry(
    name="bayesnet",
    family="Bayesian network",
    description="A discrete Bayesian network read from a BIF file (the bnlearn zoo ships with pgmpy)",
    dataset="bnlearn networks bundled in the pgmpy wheel (asia, alarm, child, insurance, hepar2, ...)",
    make_problem=_bayesnet_problem,
    methods=(
        Method("exact", "variable elimination in log space (all marginals in one outside pass)", _bn_exact),
        Method("junction_tree", "clique-tree calibration, two passes", _bn_junction_tree),
        Method("loopy_bp", "loopy sum-product belief propagation, damping 0.5", _bn_loopy),
        Method("likelihood_weighting", "importance sampling from the prior, evidence as weights", _bn_lw),
        Method("gibbs", "Gibbs sampling, 4 chains", _bn_gibbs),
        Method("mean_field", "fully factorised variational inference (ELBO)", _bn_mean_field),
        Method("map", "most probable explanation by max-product with backtracking", _bn_map, kind="map"),
        Method("exact_sample", "exact posterior samples (forward-filter backward-sample)", _bn_exact_samples,
               kind="samples"),
        Method("em", "EM from random CPTs on sampled data with 20% of cells missing", _bn_em, kind="fit"),
    ),
    exact_method="exact",
    options={
        "network": Option("alarm", "a bundled network name (asia, alarm, child, ...) or a .bif / .xmlbif path"),
        "evidence": Option("", "evidence as VAR=STATE,VAR=STATE (default: 3 leaves at a sampled value)"),
    },
    sample=_bn_sample,
    doc=_bayesnet_doc,
    quick={"network": "asia", "steps": 2000},
    order=0,
)
