"""The zoo's entries: each model with its default problem and the methods that apply to it.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
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


def _vae_bound(name):
    def run(problem, config):
        from deep.recipes import compare_bounds

        d = problem.data
        (result,) = compare_bounds(problem.model, d["test"], seed=config.seed, labels=d["test_labels"],
                                   k_is=config.steps or d["k_is"], which=(name,))
        return result

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
        Method("elbo", "evidence lower bound, one particle", _vae_bound("elbo"), kind="bound"),
        Method("iwae", "importance-weighted bound, 50 particles", _vae_bound("iwae"), kind="bound"),
        Method("importance_sampling", "importance-sampled log p(x) (--steps particles, default 1000)",
               _vae_bound("importance_sampling"), kind="bound"),
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


# --------------------------------------------------------------------------- hidden Markov models
def _hmm_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """The occasionally dishonest casino: rolls simulated from the true model; the exact method
    uses the true parameters, the others learn them from the rolls."""
    import jax

    from pgm.hmm import HMM

    truth = HMM.categorical(
        initial_probs=[0.5, 0.5],
        transition_matrix=[[0.95, 0.05], [0.10, 0.90]],
        emission_probs=[[1 / 6] * 6, [0.1] * 5 + [0.5]],
    )
    x = np.asarray(truth.sample(jax.random.PRNGKey(seed), options["rolls"])["x"][0])
    return Problem(
        model=truth,
        data=x,
        description=f"occasionally dishonest casino (fair / loaded die), {len(x)} rolls",
        program_kwargs={"x": x},
    )


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
    fit = svi.fit(start.bayesian_model, {"x": problem.data}, key=_key(config), guide="delta",
                  elbo="trace_enum", steps=config.steps or 500, learning_rate=0.05, num_samples=1,
                  progress=config.progress)
    point = {site: value[0] for site, value in fit.samples.items()}
    return _with_marginals(fit, _hmm_from_params(point), problem.data, "svi_map")


def _align_states(draws, reference):
    """Relabel each posterior draw's states by the permutation whose emission rows are closest to
    ``reference``'s (the posterior is symmetric under relabelling; averaging unaligned draws would
    mix the labels)."""
    import itertools

    b = np.asarray(draws["emission_probs"])  # (S, K, M)
    k = b.shape[1]
    perms = np.array(list(itertools.permutations(range(k))))  # (P, K)
    cost = np.abs(b[:, perms, :] - reference[None, None]).sum((-1, -2))  # (S, P)
    best = perms[cost.argmin(1)]  # (S, K)
    rows = np.arange(len(best))[:, None]
    a = np.asarray(draws["transition_matrix"])
    return (np.asarray(draws["initial_probs"])[rows, best], a[rows[:, :, None], best[:, :, None], best[:, None, :]],
            b[rows, best])


def _hmm_nuts(problem, config):
    """NUTS over the parameters (states enumerated out), started at Baum-Welch's estimate (moved
    off the simplex boundary, where the Dirichlet's unconstrained coordinates are infinite); the
    state marginals averaged over draws aligned to that estimate's labelling."""
    import time

    import jax
    from numpyro.infer.initialization import init_to_value

    from inference import chain, em, mcmc

    start_time = time.perf_counter()
    start = _hmm_start()
    x = np.asarray(problem.data)
    estimate = em.fit(start, x, max_iter=200).params.params
    interior = {name: (np.asarray(v) + 1e-3) / np.sum(np.asarray(v) + 1e-3, axis=-1, keepdims=True)
                for name, v in estimate.items()}
    draws = mcmc.nuts(start.bayesian_model, {"x": x}, key=_key(config), num_samples=config.steps or 200,
                      num_warmup=config.steps or 200, init_strategy=init_to_value(values=interior),
                      progress=config.progress)
    pi, a, b = _align_states(draws.samples, interior["emission_probs"])

    def smooth(pi, a, b):
        log_lik = jax.numpy.log(b)[:, x].T  # (T, K)
        return chain.hmm_smoother(jax.numpy.log(pi), jax.numpy.log(a), log_lik)[1]

    marginals = np.asarray(jax.vmap(smooth)(pi, a, b).mean(0))
    return dataclasses.replace(draws, method="nuts", marginals={"z": marginals},
                               seconds=time.perf_counter() - start_time)


def _hmm_sample(problem, seed, n):
    import jax

    draws = problem.model.sample(jax.random.PRNGKey(seed), n)
    return {"state": np.asarray(draws["z"][0]), "roll": np.asarray(draws["x"][0]) + 1}


def _hmm_doc():
    from pgm.hmm import HMM

    return HMM


HMM_ENTRY = ModelEntry(
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
    doc=_hmm_doc,
    quick={"rolls": 200, "steps": 100},
)


# --------------------------------------------------------------------------- Gaussian mixtures
def _gmm_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """Three well-separated 2-D Gaussians; the exact assignment posterior uses the true mixture."""
    import jax

    from pgm.mixture import GaussianMixture

    truth = GaussianMixture([0.5, 0.3, 0.2], [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
                            [np.eye(2), [[1.0, 0.5], [0.5, 1.0]], 0.5 * np.eye(2)])
    x = np.asarray(truth.sample(jax.random.PRNGKey(seed), options["n"])["x"])
    return Problem(model=truth, data=x, description=f"3 Gaussians in 2-D, {len(x)} points",
                   program_kwargs={"x": x})


def _gmm_aligned(problem, mixtures, result, method, seconds):
    """Assignment marginals p(z_n | x_n) averaged over ``mixtures`` (draws or a point estimate),
    each relabelled to the true components first."""
    from pgm.mixture import match_components

    truth, x = problem.model, problem.data
    probs = np.mean([m.responsibilities(x)[:, match_components(m.means, truth.means)] for m in mixtures], axis=0)
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
    fit = fit_em(_key(config), problem.data, 3, max_iter=config.steps or 100)
    return _gmm_aligned(problem, [fit.params], fit, "em", time.perf_counter() - start)


def _gmm_bayes(kind):
    def run(problem, config):
        import time

        from pgm import mixture

        start = time.perf_counter()
        prior = mixture.BayesianGaussianMixture(3, 2)
        x, key, steps = problem.data, _key(config), config.steps
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
    import jax

    draws = problem.model.sample(jax.random.PRNGKey(seed), n)
    x = np.asarray(draws["x"])
    return {"component": np.asarray(draws["z"]), "x0": x[:, 0].round(4), "x1": x[:, 1].round(4)}


def _gmm_doc():
    from pgm.mixture import GaussianMixture

    return GaussianMixture


GMM_ENTRY = ModelEntry(
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
)


# --------------------------------------------------------------------------- topic models
_LDA_CORPORA = ("bars", "lee")


def _lda_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """``bars``: documents simulated by the LDA program with the Griffiths-Steyvers bars as its
    topics (the truth is known, so every method's topics are matched to it); ``lee``: gensim's
    ``lee_background.cor``. Either way 10% of the documents are held out for document completion."""
    import jax
    import jax.numpy as jnp
    from numpyro import handlers

    from genzoo import text
    from inference.errors import DataError
    from pgm.topics import LDA, bars_topics

    corpus = options["corpus"]
    if corpus not in _LDA_CORPORA:
        raise DataError(f"unknown corpus {corpus!r}; choose one of {', '.join(_LDA_CORPORA)}")
    rng = np.random.default_rng(seed)
    if corpus == "bars":
        truth = bars_topics(5)
        k = options["topics"] or len(truth)
        n_docs, length = options["docs"], options["length"]
        if n_docs < 10 or length < 2:
            raise DataError(f"the bars corpus needs --docs >= 10 and --length >= 2, got {n_docs}, {length}")
        lda = LDA(k, truth.shape[1], alpha=1.0, eta=0.1)
        program = handlers.substitute(lda.model, {"phi": jnp.asarray(truth)})  # the program with the bars as topics
        trace = handlers.trace(handlers.seed(program, jax.random.PRNGKey(seed))).get_trace(
            doc_lengths=jnp.full(n_docs, length))
        counts = np.asarray(trace["counts"]["value"]).astype(np.int64)
        train_idx, test_idx = text.train_test_split(n_docs, test_fraction=0.1, seed=seed)
        # tokens of a bag of words have no order: each held-out document's tokens in a random order
        halves = []
        for row in counts[test_idx]:
            tokens = rng.permutation(np.repeat(np.arange(len(row)), row))
            halves.append(tokens)
        first = text.document_term_matrix([t[: len(t) // 2] for t in halves], counts.shape[1])
        second = text.document_term_matrix([t[len(t) // 2:] for t in halves], counts.shape[1])
        data = {"train": counts[train_idx], "first": first, "second": second, "truth": truth, "vocabulary": None}
        description = (f"bars: {n_docs} documents of {length} tokens over 25 words from the LDA program with the "
                       f"10 bars as topics (alpha=1), K={k}; {len(test_idx)} held out")
    else:
        docs = text.lee_corpus()
        k = options["topics"] or 20
        lda = LDA(k, len(docs.vocabulary))
        train_idx, test_idx = text.train_test_split(len(docs.names), test_fraction=0.1, seed=seed)
        first, second = text.completion_halves(docs.subset(test_idx))
        data = {"train": docs.counts[train_idx], "first": first, "second": second, "truth": None,
                "vocabulary": docs.vocabulary}
        description = (f"lee_background.cor: {len(docs.names)} news stories, {len(docs.vocabulary)} words, "
                       f"K={k} (alpha = eta = 1/K); {len(test_idx)} held out")
    return Problem(model=lda, data=data, description=description + "; log Z = held-out completion log-likelihood",
                   program_kwargs={"doc_lengths": np.full(3, 10)})


def _lda_scores(problem, result, topic_word, word_probs=None):
    """The Result a topic method hands to compare: its topics, their scores against the truth
    (bars) or their coherence (a real corpus), and the held-out document-completion
    log-likelihood as the log-evidence estimate."""
    from pgm.topics import completion_perplexity, match_topics, npmi_coherence, top_words, umass_coherence

    d, lda = problem.data, problem.model
    perplexity = completion_perplexity(d["first"], d["second"], topic_word=topic_word, alpha=lda.alpha,
                                       word_probs=word_probs)
    scores = {"perplexity": perplexity}
    if d["truth"] is not None and topic_word.shape[0] == d["truth"].shape[0]:
        _, tv = match_topics(topic_word, d["truth"])
        scores.update({"topic TV mean": float(tv.mean()), "topic TV max": float(tv.max())})
    else:
        scores.update({"u_mass": float(umass_coherence(topic_word, d["train"]).mean()),
                       "npmi": float(npmi_coherence(topic_word, d["train"]).mean())})
    held_out_tokens = float(d["second"].sum())
    diagnostics = {k: v for k, v in result.diagnostics.items() if isinstance(v, (int, float, str))}
    diagnostics.update(scores=scores, top_words=top_words(topic_word, d["vocabulary"], n=8),
                       fit_log_evidence=result.log_evidence, fit_log_evidence_kind=result.log_evidence_kind)
    return dataclasses.replace(result, params={"topic_word": np.asarray(topic_word)},
                               log_evidence=-held_out_tokens * float(np.log(perplexity)), log_evidence_kind="estimate",
                               diagnostics=diagnostics)


def _lda_method(name):
    def run(problem, config):
        from pgm import topics

        lda, train, key, steps = problem.model, problem.data["train"], _key(config), config.steps
        k = lda.n_topics
        if name == "collapsed_gibbs":
            sweeps = steps or 100
            fit = topics.collapsed_gibbs(key, train, lda, num_sweeps=sweeps, burn_in=sweeps, thin=10)
            return _lda_scores(problem, fit, fit.params["topic_word"])
        if name in ("vb", "online_vb"):
            online = name == "online_vb"
            fit = topics.variational_bayes(key, train, lda, online=online, max_iter=steps or (30 if online else 50),
                                           batch_size=32)
            return _lda_scores(problem, fit, fit.params["topic_word"])
        if name == "prodlda":
            fit = topics.fit_prodlda(key, train, k, steps=steps or 500, learning_rate=0.01,
                                     hidden=50 if lda.n_words < 100 else 100)
            word_probs = fit.params["model"].word_probs(fit.params, problem.data["first"])
            return _lda_scores(problem, dataclasses.replace(fit, params=None), fit.params["topic_word"], word_probs)
        fit = topics.fit_plsa(key, train, k, max_iter=steps or 100)
        # maximum-likelihood topics give probability zero to words unseen in training: half a
        # training token's worth of probability added to every word, then renormalised
        floored = fit.params.topic_word + 0.5 / float(train.sum())
        return _lda_scores(problem, fit, floored / floored.sum(1, keepdims=True))

    return run


def _lda_sample(problem, seed, n):
    import jax

    draws = problem.model.sample(jax.random.PRNGKey(seed), n, 20)
    counts = draws["counts"].astype(int)
    return {"document": np.arange(n), "top_word": counts.argmax(1), "distinct_words": (counts > 0).sum(1)}


def _lda_doc():
    from pgm.topics import LDA

    return LDA


LDA_ENTRY = ModelEntry(
    name="lda",
    family="topic model",
    description="LDA (and PLSA): topics by collapsed Gibbs, batch and online VB, ProdLDA (SVI), EM",
    dataset="simulated bars (Griffiths and Steyvers 2004), or gensim's lee_background.cor (--corpus lee)",
    make_problem=_lda_problem,
    methods=(
        Method("collapsed_gibbs", "collapsed Gibbs, --steps (100) sweeps of burn-in, as many more, every 10th kept",
               _lda_method("collapsed_gibbs"), kind="bound"),
        Method("vb", "batch mean-field VB, at most --steps (50) iterations", _lda_method("vb"), kind="bound"),
        Method("online_vb", "online VB, minibatches of 32 documents, --steps passes (30)", _lda_method("online_vb"),
               kind="bound"),
        Method("prodlda", "ProdLDA: amortised SVI, logistic-normal prior, --steps (500) steps", _lda_method("prodlda"),
               kind="bound"),
        Method("plsa", "PLSA by EM (a point estimate, no prior), --steps (100) iterations", _lda_method("plsa"),
               kind="bound"),
    ),
    exact_method=None,
    options={
        "corpus": Option("bars", "bars (simulated, true topics known) or lee (gensim's news stories)"),
        "topics": Option(0, "number of topics K (0: 10 for bars, 20 for lee)", int),
        "docs": Option(300, "bars: number of documents", int),
        "length": Option(100, "bars: tokens per document", int),
    },
    sample=_lda_sample,
    doc=_lda_doc,
    quick={"docs": 200, "length": 60},
)


# --------------------------------------------------------------------------- conjugate models
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
        result = mcmc.nuts(fn, problem.data, key=_key(config), num_samples=config.steps or num_samples,
                           num_warmup=config.steps or num_samples, progress=config.progress)
        return dataclasses.replace(result, method=name)

    return run


def _svi(guide):
    def run(problem, config):
        from inference import svi

        return svi.fit(problem.model.model, problem.data, key=_key(config), guide=guide,
                       steps=config.steps or 2000, learning_rate=0.02, num_samples=4000, progress=config.progress)

    return run


def _conjugate_problem(kind):
    def make(options: Mapping[str, Any], seed: int) -> Problem:
        import jax

        from pgm import conjugate

        key = jax.random.PRNGKey(seed)
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


def _conjugate_entry(name, cls, description, guides=("normal",), reference=None):
    methods = [Method("closed_form", "the exact posterior", _closed_form, kind="posterior")] if reference is None \
        else [Method("reference_nuts", "a long NUTS run on the non-centred program", reference, kind="posterior")]
    methods.append(Method("nuts", "NUTS (NumPyro)", _nuts(), kind="posterior"))
    for guide in guides:
        methods.append(Method(f"svi_{guide}", f"SVI with an automatic {guide} guide", _svi(guide), kind="posterior"))
    return ModelEntry(
        name=name,
        family="conjugate / teaching model",
        description=description,
        dataset="simulated from the model" if reference is None else "Rubin (1981), inline",
        make_problem=_conjugate_problem(name),
        methods=tuple(methods),
        exact_method=methods[0].name,
        options={"n": Option(50, "number of observations", int)},
        doc=_conjugate_doc(cls),
        quick={"steps": 500},
    )


CONJUGATE = (
    _conjugate_entry("beta_bernoulli", "BetaBernoulli", "Beta prior, Bernoulli data: a Beta posterior"),
    _conjugate_entry("normal_normal", "NormalNormal", "Normal mean, Normal prior: a Normal posterior"),
    _conjugate_entry("linear_regression", "BayesianLinearRegression",
                     "Bayesian linear regression: a Gaussian posterior", guides=("normal", "mvn")),
    _conjugate_entry("eight_schools", "EightSchools", "Hierarchical Normal model (centred)",
                     reference=_eight_schools_reference),
)


ENTRIES: dict[str, ModelEntry] = {
    e.name: e for e in (BAYESNET, HMM_ENTRY, GMM_ENTRY, LDA_ENTRY, *CONJUGATE, VAE_ENTRY)
}
DEFAULT_MODEL = "bayesnet"
