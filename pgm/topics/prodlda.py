"""ProdLDA (Srivastava and Sutton 2017): a logistic-normal prior, a product-of-experts decoder and
an amortised encoder, trained by SVI through :func:`inference.svi.fit`.

References:
    Srivastava and Sutton (2017). Autoencoding variational inference for topic models. ICLR.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.errors import ModelError
from inference.rng import as_key
from inference.result import Result
from pgm.topics.corpus import _bow, _check_topics


class ProdLDA:
    """ProdLDA (Srivastava and Sutton 2017): LDA with a logistic-normal prior and a
    product-of-experts decoder, learned by amortised SVI.

    .. math::
        z_d \\sim \\mathcal N(\\mu_0, \\mathrm{diag}\\,\\sigma_0^2), \\quad
        \\theta_d = \\mathrm{softmax}(z_d), \\quad
        n_{d\\cdot} \\sim \\mathrm{Mult}(L_d, \\mathrm{softmax}(\\theta_d^\\top B))

    :math:`(\\mu_0, \\sigma_0^2)` is the Laplace approximation of :math:`\\mathrm{Dir}(\\alpha)` in
    the softmax basis: :math:`\\mu_{0k} = \\log\\alpha_k - \\overline{\\log\\alpha}`,
    :math:`\\sigma^2_{0k} = \\frac{1}{\\alpha_k}(1 - \\frac2K) + \\frac{1}{K^2}\\sum_j \\frac1{\\alpha_j}`.
    The guide is an encoder MLP from :math:`\\log(1 + n_d)` to the mean and log-scale of
    :math:`q(z_d \\mid n_d)`. The topic-word weights :math:`B` (``K x V``) are a parameter; the
    topics shown are :math:`\\mathrm{softmax}(B_k)`.

    Example:
        >>> m = ProdLDA(n_topics=3, n_words=10, hidden=8)
        >>> m.prior_loc.shape, m.prior_scale.shape
        ((3,), (3,))
    """

    def __init__(self, n_topics: int, n_words: int, *, hidden: int = 100, alpha: float = 1.0):
        self.n_topics, self.n_words, self.hidden = int(n_topics), int(n_words), int(hidden)
        if alpha <= 0:
            raise ModelError(f"alpha must be positive, got {alpha}")
        a = np.full(self.n_topics, float(alpha))
        self.prior_loc = np.log(a) - np.log(a).mean()
        self.prior_scale = np.sqrt((1.0 / a) * (1 - 2.0 / self.n_topics) + (1.0 / a).sum() / self.n_topics**2)

    #                          B (K x V)
    #  +-----------------------|----+
    #  |  z[d] -> theta[d] -> n[d]  |
    #  |                         D  |
    #  +----------------------------+
    def model(self, counts=None, doc_lengths=None):
        if counts is not None:
            doc_lengths = jnp.sum(counts, axis=-1)
        k, v = self.n_topics, self.n_words
        topic_word = numpyro.param("topic_word_logits", lambda key: 0.01 * jax.random.normal(key, (k, v)))
        with numpyro.plate("documents", doc_lengths.shape[0]):
            z = numpyro.sample("z", dist.Normal(jnp.asarray(self.prior_loc), jnp.asarray(self.prior_scale)).to_event(1))
            theta = jax.nn.softmax(z, axis=-1)
            numpyro.sample("counts", dist.Multinomial(doc_lengths, logits=jax.nn.log_softmax(theta @ topic_word, -1)),
                           obs=counts)

    def encode(self, params: dict, counts):
        """The encoder: ``(mean, scale)`` of :math:`q(z_d \\mid n_d)`, each ``(D, K)``."""
        h = jax.nn.softplus(jnp.log1p(counts) @ params["enc_w1"] + params["enc_b1"])
        h = jax.nn.softplus(h @ params["enc_w2"] + params["enc_b2"])
        return h @ params["enc_wm"] + params["enc_bm"], jnp.exp(h @ params["enc_ws"] + params["enc_bs"])

    def guide(self, counts=None, doc_lengths=None):
        v, h, k = self.n_words, self.hidden, self.n_topics

        def weight(name, shape):
            scale = 1.0 / np.sqrt(shape[0])
            return numpyro.param(name, lambda key: scale * jax.random.normal(key, shape))

        params = {"enc_w1": weight("enc_w1", (v, h)), "enc_b1": numpyro.param("enc_b1", jnp.zeros(h)),
                  "enc_w2": weight("enc_w2", (h, h)), "enc_b2": numpyro.param("enc_b2", jnp.zeros(h)),
                  "enc_wm": weight("enc_wm", (h, k)), "enc_bm": numpyro.param("enc_bm", jnp.zeros(k)),
                  "enc_ws": numpyro.param("enc_ws", jnp.zeros((h, k))),
                  "enc_bs": numpyro.param("enc_bs", jnp.full(k, -1.0))}
        loc, scale = self.encode(params, counts)
        with numpyro.plate("documents", counts.shape[0]):
            numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def topic_word(self, params: dict) -> np.ndarray:
        """:math:`\\mathrm{softmax}(B_k)` per topic, ``(K, V)``."""
        return np.asarray(jax.nn.softmax(params["topic_word_logits"], axis=-1))

    def word_probs(self, params: dict, counts) -> np.ndarray:
        """Predictive word distribution of each document, :math:`\\mathrm{softmax}(\\hat\\theta_d^\\top B)`
        with :math:`\\hat\\theta_d = \\mathrm{softmax}(\\text{encoder mean})`: ``(D, V)``."""
        loc, _ = self.encode(params, jnp.asarray(counts, dtype=jnp.float64))
        return np.asarray(jax.nn.softmax(jax.nn.softmax(loc, -1) @ params["topic_word_logits"], -1))


def fit_prodlda(key, counts, n_topics: int, *, hidden: int = 100, alpha: float = 1.0, steps: int = 2000,
                learning_rate: float = 5e-3, num_particles: int = 1) -> Result:
    """ProdLDA by SVI (``Trace_ELBO``, Adam) through :func:`inference.svi.fit`.
    ``params`` holds the learned parameters plus ``"topic_word"`` (:math:`\\mathrm{softmax}(B)`) and
    ``"model"`` (the :class:`ProdLDA`, for :meth:`ProdLDA.word_probs`)."""
    from inference import svi

    bow = _bow(counts)
    _check_topics(n_topics, bow)
    prod = ProdLDA(n_topics, bow.n_words, hidden=hidden, alpha=alpha)
    dense = jnp.asarray(bow.dense())
    result = svi.fit(prod.model, {"counts": dense}, key=as_key(key), guide=prod.guide, elbo="trace", steps=steps,
                     learning_rate=learning_rate, num_particles=num_particles)
    params = dict(result.params)
    params["topic_word"] = prod.topic_word(params)
    params["model"] = prod
    return dataclasses.replace(result, method="prodlda", params=params)
