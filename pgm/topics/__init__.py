"""Topic models: PLSA and latent Dirichlet allocation, with the measures users judge topics by.

LDA (Blei, Ng and Jordan 2003) as a program, with :math:`K` topics over a vocabulary of :math:`V`
words and :math:`D` documents of lengths :math:`L_d`:

.. math::
    \\phi_k \\sim \\mathrm{Dir}(\\eta \\mathbf 1_V), \\quad
    \\theta_d \\sim \\mathrm{Dir}(\\alpha \\mathbf 1_K), \\quad
    z_{di} \\sim \\mathrm{Cat}(\\theta_d), \\quad w_{di} \\sim \\mathrm{Cat}(\\phi_{z_{di}}).

Tokens are exchangeable within a document, so the program scores a document by its word counts
with the topic of each token summed out: :math:`n_{d\\cdot} \\sim \\mathrm{Mult}(L_d, \\theta_d^\\top\\Phi)`.

Methods, each returning :class:`~inference.result.Result` with ``params["topic_word"]`` (the
:math:`K \\times V` matrix :math:`\\Phi`, rows summing to one):

1. :func:`collapsed_gibbs`: :math:`\\theta` and :math:`\\Phi` integrated out, each token's topic
   resampled from :math:`p(z_{di} = k \\mid z_{-di}, w) \\propto (n_{dk}^{-di} + \\alpha)
   \\frac{n_{kw}^{-di} + \\eta}{n_k^{-di} + V\\eta}` (Griffiths and Steyvers 2004), vectorised in
   JAX: tokens are split into ``n_blocks`` random blocks, a block is resampled in parallel from the
   counts left by the previous block (AD-LDA, Newman et al. 2009, synchronised after every
   block); ``n_blocks`` equal to the number of tokens is the sequential sampler. Counts are
   integers, and a token's new topic is one uniform draw against the running sums of its
   unnormalised conditional (inverse CDF), not :math:`K` Gumbel draws.
2. :func:`variational_bayes`: mean-field :math:`q(\\theta_d) = \\mathrm{Dir}(\\gamma_d)`,
   :math:`q(\\phi_k) = \\mathrm{Dir}(\\lambda_k)`, batch or online (stochastic natural gradient on
   :math:`\\lambda` with step :math:`\\rho_t = (\\tau_0 + t)^{-\\kappa}`, Hoffman, Blei and Bach 2010).
3. :func:`fit_prodlda`: ProdLDA (Srivastava and Sutton 2017): a logistic-normal approximation of
   the Dirichlet prior, a product-of-experts decoder, and an amortised encoder
   :math:`q(z_d \\mid n_d)` trained by SVI through :func:`inference.svi.fit`.
4. :class:`PLSA` (Hofmann 1999): :math:`p(w \\mid d) = \\sum_k \\theta_{dk}\\phi_{kw}` by EM
   through :func:`inference.em.fit`, tempered EM optional.

Evaluation: :func:`completion_perplexity` (document completion: topic proportions inferred from
the first half of each held-out document with :math:`\\Phi` fixed, the second half scored),
:func:`umass_coherence` and :func:`npmi_coherence`, :func:`top_words`. Every kernel works on the
sparse bag of words (:class:`BagOfWords`: one entry per distinct word of a document), so a sweep
costs :math:`O(\\mathrm{nnz} \\cdot K)`.

One job per module:

- :mod:`pgm.topics.corpus`: :class:`BagOfWords` (the data), :func:`bars_topics`;
- :mod:`pgm.topics.lda`: the :class:`LDA` program;
- :mod:`pgm.topics.lda_gibbs`: :func:`collapsed_gibbs`;
- :mod:`pgm.topics.lda_vb`: :func:`variational_bayes` (batch and online), :func:`vb_e_step`;
- :mod:`pgm.topics.plsa`: :class:`PLSA` and :func:`fit_plsa`;
- :mod:`pgm.topics.prodlda`: :class:`ProdLDA` and :func:`fit_prodlda`;
- :mod:`pgm.topics.metrics`: perplexity, coherence, :func:`top_words`, :func:`match_topics`.

Every name is re-exported here: ``from pgm.topics import LDA, collapsed_gibbs`` works.

References:
    Hofmann (1999). Probabilistic latent semantic analysis. UAI.
    Blei, Ng and Jordan (2003). Latent Dirichlet allocation. JMLR.
    Griffiths and Steyvers (2004). Finding scientific topics. PNAS.
    Newman, Asuncion, Smyth and Welling (2009). Distributed algorithms for topic models. JMLR.
    Hoffman, Blei and Bach (2010). Online learning for latent Dirichlet allocation. NeurIPS.
    Wallach, Murray, Salakhutdinov and Mimno (2009). Evaluation methods for topic models. ICML.
    Mimno, Wallach, Talley, Leenders and McCallum (2011). Optimizing semantic coherence in topic models.
    Bouma (2009). Normalized (pointwise) mutual information in collocation extraction.
    Srivastava and Sutton (2017). Autoencoding variational inference for topic models. ICLR.
"""

from pgm.topics.corpus import BagOfWords, bars_topics
from pgm.topics.lda import LDA
from pgm.topics.lda_gibbs import collapsed_gibbs
from pgm.topics.lda_vb import variational_bayes, vb_e_step, vb_elbo
from pgm.topics.metrics import (completion_perplexity, fold_in, match_topics, npmi_coherence, top_words,
                                umass_coherence)
from pgm.topics.plsa import PLSA, fit_plsa, plsa_e_step, plsa_e_step_dense
from pgm.topics.prodlda import ProdLDA, fit_prodlda

__all__ = [
    "BagOfWords",
    "LDA",
    "PLSA",
    "ProdLDA",
    "collapsed_gibbs",
    "variational_bayes",
    "vb_e_step",
    "vb_elbo",
    "fit_plsa",
    "plsa_e_step",
    "plsa_e_step_dense",
    "fit_prodlda",
    "fold_in",
    "completion_perplexity",
    "umass_coherence",
    "npmi_coherence",
    "top_words",
    "match_topics",
    "bars_topics",
]
