"""Latent Dirichlet allocation as a NumPyro program (Blei, Ng and Jordan 2003).

.. math::
    \\phi_k \\sim \\mathrm{Dir}(\\eta \\mathbf 1_V), \\quad
    \\theta_d \\sim \\mathrm{Dir}(\\alpha \\mathbf 1_K), \\quad
    n_{d\\cdot} \\sim \\mathrm{Mult}(L_d, \\theta_d^\\top\\Phi)

(the topic of each token summed out). Fitted by :mod:`pgm.topics.lda_gibbs` and
:mod:`pgm.topics.lda_vb`.

References:
    Blei, Ng and Jordan (2003). Latent Dirichlet allocation. JMLR.
"""

from __future__ import annotations


import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from inference.errors import ModelError
from inference.rng import as_key


class LDA:
    """Latent Dirichlet allocation (see the module docstring).

    Args:
        n_topics: :math:`K`; n_words: :math:`V`.
        alpha: document-topic concentration (default :math:`1/K`, as scikit-learn and gensim);
        eta: topic-word concentration (default :math:`1/K`).

    Example:
        >>> import jax
        >>> lda = LDA(3, 10)
        >>> draw = lda.sample(jax.random.PRNGKey(0), n_docs=4, doc_length=20)
        >>> draw["counts"].shape, draw["counts"].sum(axis=1).astype(int).tolist()
        ((4, 10), [20, 20, 20, 20])
    """

    #   eta --> phi[k]  K        alpha
    #             |                |
    #  +----------|----------------v-----+
    #  |          |             theta[d] |
    #  |  +-------v-----------------|--+ |
    #  |  |  w[d,i] <---- z[d,i] <--+  | |
    #  |  |                      L_d   | |
    #  |  +----------------------------+ |
    #  |                               D |
    #  +---------------------------------+
    def __init__(self, n_topics: int, n_words: int, *, alpha: float | None = None, eta: float | None = None):
        self.n_topics, self.n_words = int(n_topics), int(n_words)
        if self.n_topics < 1 or self.n_words < 1:
            raise ModelError(f"need n_topics >= 1 and n_words >= 1, got {n_topics}, {n_words}")
        self.alpha = 1.0 / n_topics if alpha is None else float(alpha)
        self.eta = 1.0 / n_topics if eta is None else float(eta)
        if self.alpha <= 0 or self.eta <= 0:
            raise ModelError(f"alpha and eta must be positive, got {self.alpha}, {self.eta}")

    def model(self, counts=None, doc_lengths=None):
        """The program: ``phi`` (K, V), ``theta`` (D, K), then ``counts`` (D, V) with the token
        topics summed out."""
        if counts is not None:
            doc_lengths = jnp.sum(counts, axis=-1)
        doc_lengths = jnp.asarray(doc_lengths)
        with numpyro.plate("topics", self.n_topics):
            phi = numpyro.sample("phi", dist.Dirichlet(jnp.full(self.n_words, self.eta)))
        with numpyro.plate("documents", doc_lengths.shape[0]):
            theta = numpyro.sample("theta", dist.Dirichlet(jnp.full(self.n_topics, self.alpha)))
            numpyro.sample("counts", dist.Multinomial(doc_lengths, probs=theta @ phi), obs=counts)

    def sample(self, key, n_docs: int, doc_length: int) -> dict:
        """``{"phi", "theta", "counts"}`` by running the program forward."""
        lengths = jnp.full(int(n_docs), int(doc_length))
        trace = handlers.trace(handlers.seed(self.model, as_key(key))).get_trace(doc_lengths=lengths)
        return {name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] == "sample"}

    def log_joint(self, counts, phi, theta) -> float:
        """:math:`\\log p(n, \\theta, \\Phi)` from the program's trace."""
        data = handlers.substitute(self.model, {"phi": jnp.asarray(phi), "theta": jnp.asarray(theta)})
        trace = handlers.trace(data).get_trace(counts=jnp.asarray(counts))
        return float(sum(jnp.sum(s["fn"].log_prob(s["value"])) for s in trace.values() if s["type"] == "sample"))
