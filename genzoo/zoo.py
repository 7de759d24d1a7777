"""The zoo's entries: each model with its default problem and the methods that apply to it.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem, RunConfig


def _key(config: RunConfig):
    import jax

    return jax.random.PRNGKey(config.seed)


# --------------------------------------------------------------------------- Bayesian networks
def parse_evidence(text: str) -> dict[str, str]:
    """``"A=yes,B=no"`` -> ``{"A": "yes", "B": "no"}``; empty text -> ``{}``."""
    evidence = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            from inference.errors import EvidenceError

            raise EvidenceError(f"evidence item {item!r} is not of the form VARIABLE=STATE")
        var, state = (s.strip() for s in item.split("=", 1))
        evidence[var] = state
    return evidence


def _default_evidence(bn, seed: int, k: int = 3) -> dict[str, str]:
    """``k`` leaf variables (no children) observed at the values of one forward sample: evidence
    that is typical for the network and never of probability zero."""
    import jax

    leaves = [v for v in bn.variables if not bn.children(v)] or list(bn.variables)
    chosen = sorted(np.random.default_rng(seed).choice(len(leaves), size=min(k, len(leaves)), replace=False))
    draw = bn.sample(jax.random.PRNGKey(seed), 1)
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
        description=f"{bn.name}: {len(bn.variables)} variables, evidence {shown}",
        program_kwargs={"n": 1},
    )


def _bn_exact(problem, config):
    from inference import exact

    return exact.marginals(problem.model, problem.data)


def _bn_map(problem, config):
    from inference import exact

    return exact.map(problem.model, problem.data)


def _bn_exact_samples(problem, config):
    from inference import exact

    return exact.sample(problem.model, _key(config), config.steps or 1000, problem.data)


def _bn_junction_tree(problem, config):
    from inference import bp

    return bp.junction_tree(problem.model, problem.data)


def _bn_loopy(problem, config):
    from inference import bp

    return bp.loopy(problem.model, problem.data, damping=0.5, max_iter=config.steps or 200)


def _bn_lw(problem, config):
    from inference import importance

    return importance.likelihood_weighting(problem.model, _key(config), config.steps or 20000, problem.data)


def _bn_gibbs(problem, config):
    from inference import gibbs

    return gibbs.gibbs(problem.model, _key(config), config.steps or 2000, problem.data, chains=4)


def _bn_mean_field(problem, config):
    from inference import meanfield

    return meanfield.mean_field(problem.model, problem.data, key=_key(config), steps=config.steps or 500)


def _bn_em(problem, config):
    """EM from random CPTs on 1,000 rows sampled from the network with 20% of cells hidden."""
    import jax

    from inference import em

    bn = problem.model
    key_data, _ = jax.random.split(_key(config))
    draws = bn.sample(key_data, 1000)
    rng = np.random.default_rng(config.seed)
    rows = bn.encode_data(draws).astype(np.float64)
    rows[rng.random(rows.shape) < 0.2] = np.nan
    start = bn.with_cpts({v: rng.dirichlet(np.ones(len(bn.states[v])), size=bn.cpt(v).shape[:-1]) for v in bn.variables})
    return em.fit(start, rows, max_iter=config.steps or 50, progress=config.progress, pseudo_count=1.0)


def _bn_sample(problem, seed, n):
    import jax

    return problem.model.sample(jax.random.PRNGKey(seed), n)


def _bayesnet_doc():
    from pgm.bayesnet import BayesNet

    return BayesNet


BAYESNET = ModelEntry(
    name="bayesnet",
    family="Bayesian network",
    description="A discrete Bayesian network read from a BIF file (the bnlearn zoo ships with pgmpy)",
    dataset="bnlearn networks bundled in the pgmpy wheel (asia, alarm, child, insurance, hepar2, ...)",
    make_problem=_bayesnet_problem,
    methods=(
        Method("exact", "variable elimination in log space (all marginals by differentiating log Z)", _bn_exact),
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
)

# --------------------------------------------------------------------------- VAE family
def _vae_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """Binarised digits split 80/20; the chosen model is trained on the training part here, and the
    methods evaluate it on the held-out part."""
    from deep.data import split
    from deep.recipes import fit
    from genzoo.data import digits

    data = digits(binarize=True)
    parts = split(data["images"], data["labels"], seed=seed)
    kind = options["model"]
    labels = parts["train_labels"] if kind == "cvae" else None
    fitted = fit(parts["train"], labels, model=kind, seed=seed, epochs=options["epochs"], z_dim=options["z_dim"],
                 progress=sys.stderr.isatty())
    return Problem(
        model=fitted.params,
        data={"test": parts["test"], "test_labels": parts["test_labels"] if kind == "cvae" else None,
              "fit": fitted, "k_is": options["k_is"]},
        description=(f"{kind} (z_dim={options['z_dim']}) trained {options['epochs']} epochs on "
                     f"{len(parts['train'])} binarised digits; log p(x) of {len(parts['test'])} held-out digits"),
        program_kwargs={"n": 1},
    )


def _vae_bound(index):
    def run(problem, config):
        from deep.recipes import compare_bounds

        d = problem.data
        results = compare_bounds(problem.model, d["test"], seed=config.seed, labels=d["test_labels"],
                                 k_is=config.steps or d["k_is"])
        return results[index]

    return run


def _vae_train(problem, config):
    return problem.data["fit"]


def _vae_sample(problem, seed, n):
    from deep.recipes import sample_images

    return sample_images(problem.model, seed, n)


def _vae_doc():
    from deep.vae import VAE

    return VAE


VAE_ENTRY = ModelEntry(
    name="vae",
    family="variational autoencoder",
    description="VAE / IWAE / conditional VAE (Pyro) on binarised 8x8 digits",
    dataset="scikit-learn digits, binarised at half range, 80/20 split",
    make_problem=_vae_problem,
    methods=(
        Method("elbo", "evidence lower bound, one particle", _vae_bound(0), kind="bound"),
        Method("iwae", "importance-weighted bound, 50 particles", _vae_bound(1), kind="bound"),
        Method("importance_sampling", "importance-sampled log p(x) (--steps particles, default 1000)",
               _vae_bound(2), kind="bound"),
        Method("train", "SVI training of the chosen model (its loss history)", _vae_train, kind="fit"),
    ),
    exact_method=None,
    options={
        "model": Option("vae", "vae, iwae (DReG gradients) or cvae"),
        "epochs": Option(20, "training epochs", int),
        "z_dim": Option(2, "latent dimension", int),
        "k_is": Option(1000, "importance samples for the log-likelihood estimate", int),
    },
    sample=_vae_sample,
    doc=_vae_doc,
    quick={"epochs": 3, "steps": 200},
)


ENTRIES: dict[str, ModelEntry] = {BAYESNET.name: BAYESNET, VAE_ENTRY.name: VAE_ENTRY}
DEFAULT_MODEL = "bayesnet"
