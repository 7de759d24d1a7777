"""Topic models (LDA, ProdLDA, PLSA) on the bars corpus or gensim's Lee corpus.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem
from genzoo.zoo._common import run_key, seed_key


_LDA_CORPORA = ("bars", "lee")


def _lda_problem(options: Mapping[str, Any], seed: int) -> Problem:
    """``bars``: documents simulated by the LDA program with the Griffiths-Steyvers bars as its
    topics (the truth is known, so every method's topics are matched to it); ``lee``: gensim's
    ``lee_background.cor``. Either way 10% of the documents are held out for document completion."""
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
        trace = handlers.trace(handlers.seed(program, seed_key(seed))).get_trace(
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
                   program_kwargs={"counts": np.ones((3, lda.n_words))})


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

        lda, train, key, steps = problem.model, problem.data["train"], run_key(config), config.steps
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
        # maximum-likelihood topics give probability zero to words unseen in training
        return _lda_scores(problem, fit, fit.params.smoothed_topic_word(train.sum(), pseudo_tokens=0.5))

    return run


def _lda_sample(problem, seed, n):
    draws = problem.model.sample(seed_key(seed), n, 20)
    counts = draws["counts"].astype(int)
    return {"document": np.arange(n), "top_word": counts.argmax(1), "distinct_words": (counts > 0).sum(1)}


def _lda_doc():
    from pgm.topics import LDA

    return LDA


ENTRY = ModelEntry(
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
    order=30,
)
