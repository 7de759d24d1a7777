"""Representation: classical generative models as NumPyro programs (JAX).

Each model is one program that both simulates (no data) and scores (data given), with its
structure where it has one (a BN's DAG and factor graph, an HMM's chain, closed-form statistics
for EM). Inference lives in :mod:`inference`.

The classes below are imported on first use (PEP 562), so that ``from pgm.hmm import HMM`` does not
import every model's module (the Bayesian network's brings networkx: a third of a second of each
``genzoo compare hmm`` process).
"""

from inference.lazy import lazy_attributes

_HOMES = {
    "BayesNet": ".bayesnet",
    "HMM": ".hmm",
    "GaussianMixture": ".mixture",
    "BayesianGaussianMixture": ".mixture",
    "NaiveBayes": ".naive_bayes",
    "LDA": ".topics",
    "PLSA": ".topics",
    "ProdLDA": ".topics",
    "BetaBernoulli": ".conjugate",
    "NormalNormal": ".conjugate",
    "BayesianLinearRegression": ".conjugate",
    "EightSchools": ".conjugate",
    "LogisticRegression": ".conjugate",
    # Markov random fields
    "MarkovNet": ".mrf",
    "Ising": ".ising",
    "Potts": ".ising",
    "RBM": ".rbm",
}

__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
