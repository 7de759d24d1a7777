"""LDA on the Lee news corpus (gensim's test data): mean-field VB, top words, held-out perplexity.

    python examples/lda_lee.py --topics 20 --out runs/lda_lee

Tokenizes the 300 stories with :mod:`genzoo.text`, holds out 10% for document completion, fits
LDA by batch variational Bayes, and prints the top words per topic, the completion perplexity and
the UMass / NPMI coherence; writes ``lda_lee.png`` (ELBO per pass) into ``--out``.

Takes about 30 s on a 2-core CPU at the defaults.
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np

import inference  # noqa: F401  (float64)
from genzoo import text
from genzoo.runs import save_figure
from pgm.topics import LDA, completion_perplexity, npmi_coherence, top_words, umass_coherence, variational_bayes


def main(args):
    corpus = text.lee_corpus(min_df=args.min_df, max_df=args.max_df)
    train_idx, test_idx = text.train_test_split(len(corpus.names), test_fraction=0.1, seed=args.seed)
    train, test = corpus.subset(train_idx), corpus.subset(test_idx)
    lda = LDA(args.topics, len(corpus.vocabulary))
    result = variational_bayes(jax.random.PRNGKey(args.seed), train.counts, lda, max_iter=args.passes)
    topic_word = result.params["topic_word"]
    for k, words in enumerate(top_words(topic_word, corpus.vocabulary, n=8)):
        print(f"topic {k:2d}: {' '.join(words)}")
    first, second = text.completion_halves(test)
    perplexity = completion_perplexity(first, second, topic_word=topic_word, alpha=lda.alpha)
    umass = float(umass_coherence(topic_word, train.counts).mean())
    npmi = float(npmi_coherence(topic_word, train.counts).mean())
    print(f"{len(corpus.names)} documents, {len(corpus.vocabulary)} words; fit {result.seconds:.2f} s, "
          f"{result.diagnostics['passes']} passes")
    print(f"held-out completion perplexity {perplexity:.1f}; coherence u_mass {umass:.3f}, npmi {npmi:.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(result.history) + 1), result.history)
    ax.set(xlabel="pass", ylabel="ELBO (lower bound on log p(w))", title=f"LDA, K={args.topics}, Lee corpus")
    path = save_figure(fig, pathlib.Path(args.out) / "lda_lee.png")
    plt.close(fig)
    print(f"wrote {path}")
    return {"perplexity": perplexity, "umass": umass, "npmi": npmi}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="LDA on the Lee corpus by variational Bayes")
    p.add_argument("--topics", type=int, default=20)
    p.add_argument("--passes", type=int, default=50)
    p.add_argument("--min-df", type=int, default=2)
    p.add_argument("--max-df", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/lda_lee")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
