"""Topic models on real text beside scikit-learn and gensim: perplexity, coherence and fit time.

For each corpus (gensim's ``lee_background.cor`` and the shortened Wikipedia dump), the same
tokenisation and vocabulary (:mod:`genzoo.text`), the same 90/10 document split, K topics. Every
method's topic-word matrix is scored the same way: held-out document-completion perplexity
(:func:`pgm.topics.completion_perplexity`, fold-in with alpha = 1/K; ProdLDA with its own encoder),
UMass and NPMI coherence of the top 10 words on the training documents. Every method runs with
``--seeds`` seeds (its initialisation and random draws; the split stays that of ``--seed``): the
table shows the medians over seeds of fit time, perplexity and coherence, and the range of the
perplexities (one run's perplexity moves by a few percent with the seed). Compilation is excluded
(one warm-up run first); times are printed with the ratio to scikit-learn's batch time.

Hyperparameters: every LDA fit uses :math:`\\alpha = \\eta = 1/K` (scikit-learn's defaults,
gensim's ``alpha="symmetric"`` and ``eta=None``); ProdLDA its logistic-normal approximation of
:math:`\\mathrm{Dir}(1)` (Srivastava and Sutton's choice); PLSA has no prior. Iterations: scikit-learn
and online VB 10 passes (online minibatches: scikit-learn's 128 documents, ours 64), gensim 10 passes,
batch VB until the ELBO gains less than 1e-4 per token (at most 50 iterations) and, in a second row,
10 iterations without evaluating the ELBO (scikit-learn batch's budget), collapsed Gibbs
a burn-in until the log-likelihood per token of a window of 10 sweeps changes by less than 1e-3
per sweep (``burn_in="auto"``, the same rule on every corpus), then 50 (``--quick``) or 200 sweeps
kept at thinning 10. E-steps stop per document at a mean
change of 1e-3 or 100 updates (scikit-learn's defaults; gensim: 50 updates). No method evaluates
its bound while fitting (scikit-learn's ``evaluate_every=-1``; ours ``track_elbo=False``).

The goal line names those of our methods whose median perplexity is at most gensim's and whose
median fit time is at most scikit-learn batch's.

    python benchmarks/topics.py                   # K = 20, both corpora
    python benchmarks/topics.py --corpus lee --quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import inference  # noqa: F401  (float64)
from genzoo import text
from pgm.topics import (LDA, collapsed_gibbs, completion_perplexity, fit_plsa, fit_prodlda, npmi_coherence,
                        umass_coherence, variational_bayes)


def _timed(fn, repeats):
    """Median wall time of ``repeats`` calls, and the last call's result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def methods(train, k, seed, quick):
    key = jax.random.PRNGKey(seed)
    lda = LDA(k, train.counts.shape[1])
    sweeps = 100 if quick else 400

    def sk(method):
        from sklearn.decomposition import LatentDirichletAllocation

        def run():
            m = LatentDirichletAllocation(k, learning_method=method, random_state=seed,
                                          total_samples=train.counts.shape[0]).fit(train.counts)
            return m.components_ / m.components_.sum(1, keepdims=True)
        return run

    def gensim_lda():
        from gensim.models import LdaModel

        bow = train.to_gensim()
        m = LdaModel(bow, num_topics=k, id2word=dict(enumerate(train.vocabulary)), random_state=seed, passes=10)
        return m.get_topics()

    return {
        "genzoo collapsed Gibbs": lambda: collapsed_gibbs(key, train.counts, lda, num_sweeps=sweeps // 2,
                                                          burn_in="auto").params["topic_word"],
        "genzoo VB (batch)": lambda: variational_bayes(key, train.counts, lda, max_iter=50).params["topic_word"],
        "genzoo VB (batch, 10 it.)": lambda: variational_bayes(key, train.counts, lda, max_iter=10,
                                                               track_elbo=False).params["topic_word"],
        "genzoo VB (online)": lambda: variational_bayes(key, train.counts, lda, max_iter=10, online=True,
                                                        batch_size=64, track_elbo=False).params["topic_word"],
        "genzoo ProdLDA (SVI)": lambda: fit_prodlda(key, train.counts, k, steps=500 if quick else 2000).params,
        # PLSA's maximum-likelihood topics give probability zero to words unseen in training (the
        # vocabulary is built on all documents): half a token's worth of probability added to every word
        "genzoo PLSA (EM)": lambda: fit_plsa(key, train.counts, k, max_iter=100).params.smoothed_topic_word(
            train.counts.sum(), pseudo_tokens=0.5),
        "scikit-learn batch": sk("batch"),
        "scikit-learn online": sk("online"),
        "gensim LdaModel": gensim_lda,
    }


def evaluate(name, out, train, test, k):
    first, second = text.completion_halves(test)
    if isinstance(out, dict):  # ProdLDA: its own predictive distribution
        topic_word = out["topic_word"]
        perplexity = completion_perplexity(first, second, word_probs=out["model"].word_probs(out, first))
    else:
        topic_word = out
        perplexity = completion_perplexity(first, second, topic_word=topic_word, alpha=1.0 / k)
    return perplexity, float(umass_coherence(topic_word, train.counts).mean()), float(
        npmi_coherence(topic_word, train.counts).mean())


def main(args):
    rows = []
    seeds = list(range(args.seed, args.seed + args.seeds))
    for corpus_name in args.corpus:
        corpus = text.lee_corpus() if corpus_name == "lee" else text.wikipedia_corpus(max_size=args.max_vocabulary)
        train_idx, test_idx = text.train_test_split(len(corpus.names), test_fraction=0.1, seed=args.seed)
        train, test = corpus.subset(train_idx), corpus.subset(test_idx)
        print(f"\n{corpus_name}: {len(corpus.names)} documents ({len(train_idx)} train), "
              f"{len(corpus.vocabulary)} words, {int(train.counts.sum())} training tokens, K={args.k}, "
              f"seeds {seeds[0]}-{seeds[-1]}")
        print(f"{'method':26s}{'fit s':>9s}{'/ sklearn':>11s}{'perplexity':>12s}{'range':>17s}{'u_mass':>9s}{'npmi':>8s}")
        per_seed = [methods(train, args.k, seed, args.quick) for seed in seeds]
        results = {}
        for name in per_seed[0]:
            per_seed[0][name]()  # warm-up (compilation)
            runs = []
            for fns in per_seed:
                seconds, out = _timed(fns[name], args.repeats)
                runs.append((seconds, *evaluate(name, out, train, test, args.k)))
            seconds, perplexity, umass, npmi = (statistics.median(column) for column in zip(*runs))
            results[name] = (seconds, perplexity, min(r[1] for r in runs), max(r[1] for r in runs), umass, npmi)
        base = results["scikit-learn batch"][0]
        for name, (seconds, perplexity, low, high, umass, npmi) in results.items():
            rows.append((corpus_name, name, seconds, perplexity, umass, npmi))
            print(f"{name:26s}{seconds:9.2f}{seconds / base:11.2f}{perplexity:12.1f}{f'{low:.0f}-{high:.0f}':>17s}"
                  f"{umass:9.3f}{npmi:8.3f}")
        gensim_perplexity = results["gensim LdaModel"][1]
        met = [name for name, (seconds, perplexity, *_) in results.items()
               if name.startswith("genzoo") and perplexity <= gensim_perplexity and seconds <= base]
        print(f"goal (median perplexity <= gensim's {gensim_perplexity:.1f} at <= scikit-learn batch's median "
              f"{base:.2f} s): " + (", ".join(met) if met else "not met"))
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", nargs="+", default=["lee", "wikipedia"], choices=["lee", "wikipedia"])
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per seed")
    p.add_argument("--seed", type=int, default=0, help="the first seed (also the train / test split's)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method: medians of times and perplexities")
    p.add_argument("--max-vocabulary", type=int, default=10_000)
    p.add_argument("--quick", action="store_true", help="fewer Gibbs sweeps and SVI steps")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
