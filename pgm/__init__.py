"""Representation: classical generative models as NumPyro programs (JAX).

Each model is one program that both simulates (no data) and scores (data given), with its
structure where it has one (a BN's DAG and factor graph, an HMM's chain, closed-form statistics
for EM). Inference lives in :mod:`inference`.
"""

from pgm.bayesnet import BayesNet
from pgm.conjugate import BayesianLinearRegression, BetaBernoulli, EightSchools, LogisticRegression, NormalNormal
from pgm.hmm import HMM
from pgm.mixture import BayesianGaussianMixture, GaussianMixture
from pgm.naive_bayes import NaiveBayes
from pgm.topics import LDA, PLSA, ProdLDA

__all__ = [
    "BayesNet",
    "HMM",
    "GaussianMixture",
    "BayesianGaussianMixture",
    "NaiveBayes",
    "LDA",
    "PLSA",
    "ProdLDA",
    "BetaBernoulli",
    "NormalNormal",
    "BayesianLinearRegression",
    "EightSchools",
    "LogisticRegression",
]

# Markov random fields
from pgm.ising import Ising, Potts  # noqa: E402
from pgm.mrf import MarkovNet  # noqa: E402
from pgm.rbm import RBM  # noqa: E402

__all__ += ["MarkovNet", "Ising", "Potts", "RBM"]
