"""Teaching models with known answers: the oracles of the approximate-inference layer.

Each model is a small class whose ``model(...)`` method is a NumPyro program (data enter as
keyword arguments through ``obs=``; calling it without data simulates). Where the posterior has
a closed form, ``posterior(...)`` returns it as NumPyro distributions keyed by site, and
``log_evidence(...)`` returns :math:`\\log p(\\text{data})` exactly. SVI, NUTS, HMC and the
Langevin samplers are tested against these answers.

=============================  ==========================  ======================
model                          posterior                    evidence
=============================  ==========================  ======================
:class:`BetaBernoulli`         Beta                         closed form
:class:`NormalNormal`          Normal                       closed form
:class:`BayesianLinearRegression`  multivariate Normal      closed form
:class:`EightSchools`          (sampled: centred and non-centred parametrisations)
:class:`LogisticRegression`    (sampled)
=============================  ==========================  ======================

The evidence of the conjugate models uses the candidate's formula (Besag, 1989), exact for any
value :math:`\\theta` of the latent:
:math:`\\log p(x) = \\log p(x \\mid \\theta) + \\log p(\\theta) - \\log p(\\theta \\mid x)`.

References:
    Gelman, Carlin, Stern, Dunson, Vehtari and Rubin (2013). Bayesian Data Analysis, 3rd ed.,
    chapters 2, 3, 5 and 14.
    Rubin (1981). Estimation in parallel randomized experiments.
    Besag (1989). A candidate's formula: a curious result in Bayesian prediction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from inference.errors import DataError
from inference.rng import as_key

__all__ = [
    "BetaBernoulli",
    "NormalNormal",
    "BayesianLinearRegression",
    "EightSchools",
    "LogisticRegression",
    "simulate",
]


def simulate(program, key, **kwargs) -> dict:
    """Run a NumPyro program forward and return every sample site's value (a dict of arrays).

    Example:
        >>> import jax
        >>> draws = simulate(NormalNormal().model, jax.random.PRNGKey(0), n=5)
        >>> draws["x"].shape
        (5,)
    """
    trace = handlers.trace(handlers.seed(program, as_key(key))).get_trace(**kwargs)
    return {name: site["value"] for name, site in trace.items() if site["type"] == "sample"}


def _as_vector(name, x):
    x = jnp.asarray(x, dtype=float)
    if x.ndim != 1:
        raise DataError(f"{name} must be a vector of observations, got shape {tuple(x.shape)}")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise DataError(f"{name} holds NaN or infinite values")
    return x


class BetaBernoulli:
    """Coin flips with a Beta prior on the bias.

    .. math::
        \\theta \\sim \\mathrm{Beta}(\\alpha, \\beta), \\qquad
        x_i \\mid \\theta \\sim \\mathrm{Bernoulli}(\\theta), \\quad i = 1..N

        \\theta \\mid x \\sim \\mathrm{Beta}(\\alpha + k, \\beta + N - k), \\quad k = \\textstyle\\sum_i x_i

        \\log p(x) = \\log B(\\alpha + k, \\beta + N - k) - \\log B(\\alpha, \\beta)

    Example:
        >>> import jax
        >>> m = BetaBernoulli(2.0, 2.0)
        >>> x = simulate(m.model, jax.random.PRNGKey(0), n=20)["x"]
        >>> float(m.posterior(x)["theta"].concentration1) == 2.0 + float(x.sum())
        True
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0):
        self.alpha, self.beta = float(alpha), float(beta)

    #   theta
    #     |
    #  +--v--------+
    #  |  x[i]   N |
    #  +-----------+
    def model(self, x=None, n=None):
        n = n if x is None else len(x)
        theta = numpyro.sample("theta", dist.Beta(self.alpha, self.beta))
        with numpyro.plate("data", n):
            numpyro.sample("x", dist.Bernoulli(probs=theta), obs=x)

    def posterior(self, x) -> dict:
        x = _as_vector("x", x)
        k, n = x.sum(), x.shape[0]
        return {"theta": dist.Beta(self.alpha + k, self.beta + n - k)}

    def log_evidence(self, x) -> float:
        x = _as_vector("x", x)
        k, n = x.sum(), x.shape[0]
        lbeta = lambda a, b: jax.scipy.special.gammaln(a) + jax.scipy.special.gammaln(b) - jax.scipy.special.gammaln(a + b)  # noqa: E731
        return float(lbeta(self.alpha + k, self.beta + n - k) - lbeta(self.alpha, self.beta))


class NormalNormal:
    """A Normal mean with a Normal prior, the noise scale known.

    .. math::
        \\mu \\sim \\mathcal N(m_0, s_0^2), \\qquad x_i \\mid \\mu \\sim \\mathcal N(\\mu, \\sigma^2)

        \\mu \\mid x \\sim \\mathcal N(m_N, s_N^2), \\quad
        s_N^{-2} = s_0^{-2} + N \\sigma^{-2}, \\quad
        m_N = s_N^2 \\left(m_0 s_0^{-2} + \\sigma^{-2} \\textstyle\\sum_i x_i\\right)

    Example:
        >>> import jax
        >>> m = NormalNormal(prior_loc=0.0, prior_scale=1.0, noise_scale=1.0)
        >>> round(float(m.posterior(jax.numpy.array([1.0, 1.0, 1.0]))["mu"].loc), 6)
        0.75
    """

    def __init__(self, prior_loc: float = 0.0, prior_scale: float = 1.0, noise_scale: float = 1.0):
        if prior_scale <= 0 or noise_scale <= 0:
            raise DataError(f"scales must be positive, got prior_scale={prior_scale}, noise_scale={noise_scale}")
        self.prior_loc, self.prior_scale, self.noise_scale = float(prior_loc), float(prior_scale), float(noise_scale)

    #    mu
    #     |
    #  +--v--------+
    #  |  x[i]   N |
    #  +-----------+
    def model(self, x=None, n=None):
        n = n if x is None else len(x)
        mu = numpyro.sample("mu", dist.Normal(self.prior_loc, self.prior_scale))
        with numpyro.plate("data", n):
            numpyro.sample("x", dist.Normal(mu, self.noise_scale), obs=x)

    def posterior(self, x) -> dict:
        x = _as_vector("x", x)
        precision = self.prior_scale**-2 + x.shape[0] * self.noise_scale**-2
        loc = (self.prior_loc * self.prior_scale**-2 + x.sum() * self.noise_scale**-2) / precision
        return {"mu": dist.Normal(loc, precision**-0.5)}

    def log_evidence(self, x) -> float:
        x = _as_vector("x", x)
        post = self.posterior(x)["mu"]
        mu = post.loc
        return float(
            dist.Normal(mu, self.noise_scale).log_prob(x).sum()
            + dist.Normal(self.prior_loc, self.prior_scale).log_prob(mu)
            - post.log_prob(mu)
        )


class BayesianLinearRegression:
    """Linear regression with a Gaussian prior on the weights and a known noise scale.

    .. math::
        w \\sim \\mathcal N(0, \\lambda^{-1} I_D), \\qquad
        y_i \\mid w \\sim \\mathcal N(x_i^\\top w, \\sigma^2)

        w \\mid y \\sim \\mathcal N(m_N, S_N), \\quad
        S_N = (\\lambda I + \\sigma^{-2} X^\\top X)^{-1}, \\quad m_N = \\sigma^{-2} S_N X^\\top y

        y \\sim \\mathcal N(0, \\sigma^2 I + \\lambda^{-1} X X^\\top)

    (Bishop 2006, section 3.3; ``prior_scale`` is :math:`\\lambda^{-1/2}`.)

    Example:
        >>> import jax
        >>> m = BayesianLinearRegression(prior_scale=1.0, noise_scale=0.5)
        >>> x = jax.random.normal(jax.random.PRNGKey(0), (30, 3))
        >>> y = simulate(m.model, jax.random.PRNGKey(1), x=x)["y"]
        >>> m.posterior(x, y)["w"].mean.shape
        (3,)
    """

    def __init__(self, prior_scale: float = 1.0, noise_scale: float = 1.0):
        if prior_scale <= 0 or noise_scale <= 0:
            raise DataError(f"scales must be positive, got prior_scale={prior_scale}, noise_scale={noise_scale}")
        self.prior_scale, self.noise_scale = float(prior_scale), float(noise_scale)

    #       w
    #       |
    #  +----v-----------+
    #  |  x[i] -> y[i] N |
    #  +----------------+
    def model(self, x, y=None):
        x = jnp.asarray(x)
        w = numpyro.sample("w", dist.Normal(0.0, self.prior_scale).expand([x.shape[-1]]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ w, self.noise_scale), obs=y)

    def _check(self, x, y):
        x, y = jnp.asarray(x, dtype=float), _as_vector("y", y)
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise DataError(f"x must be (N, D) with N = len(y) = {y.shape[0]}, got shape {tuple(x.shape)}")
        return x, y

    def posterior(self, x, y) -> dict:
        x, y = self._check(x, y)
        precision = self.prior_scale**-2 * jnp.eye(x.shape[1]) + x.T @ x / self.noise_scale**2
        cov = jnp.linalg.inv(precision)
        cov = (cov + cov.T) / 2
        mean = cov @ (x.T @ y) / self.noise_scale**2
        return {"w": dist.MultivariateNormal(mean, covariance_matrix=cov)}

    def log_evidence(self, x, y) -> float:
        x, y = self._check(x, y)
        post = self.posterior(x, y)["w"]
        w = post.mean
        prior = dist.Normal(0.0, self.prior_scale).expand([x.shape[1]]).to_event(1)
        return float(dist.Normal(x @ w, self.noise_scale).log_prob(y).sum() + prior.log_prob(w) - post.log_prob(w))


class EightSchools:
    """Rubin's eight schools: a hierarchical Normal model, in centred or non-centred form.

    .. math::
        \\mu \\sim \\mathcal N(0, 5^2), \\quad \\tau \\sim \\mathrm{HalfCauchy}(5), \\quad
        \\theta_j \\sim \\mathcal N(\\mu, \\tau^2), \\quad y_j \\sim \\mathcal N(\\theta_j, \\sigma_j^2)

    The non-centred form samples :math:`\\tilde\\theta_j \\sim \\mathcal N(0, 1)` and sets
    :math:`\\theta_j = \\mu + \\tau \\tilde\\theta_j` (a deterministic site), which removes the
    funnel between :math:`\\tau` and :math:`\\theta` that makes HMC diverge in the centred form.
    The classic data ship inline (Rubin 1981): ``EightSchools.Y``, ``EightSchools.SIGMA``.

    Example:
        >>> m = EightSchools(centered=False)
        >>> sorted(m.data())
        ['sigma', 'y']
    """

    Y = (28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0)
    SIGMA = (15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0)

    def __init__(self, centered: bool = True):
        self.centered = bool(centered)

    @classmethod
    def data(cls) -> dict:
        """The data as keyword arguments of :meth:`model`: ``model(**EightSchools.data())``."""
        return {"y": np.array(cls.Y), "sigma": np.array(cls.SIGMA)}

    #   mu    tau
    #     \   /
    #  +---v-v------------------+
    #  |  theta[j] -> y[j]   J  |   (sigma[j] known)
    #  +------------------------+
    def model(self, sigma=SIGMA, y=None):
        sigma = jnp.asarray(sigma, dtype=float)
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("schools", sigma.shape[0]):
            if self.centered:
                theta = numpyro.sample("theta", dist.Normal(mu, tau))
            else:
                theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
                theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


class LogisticRegression:
    """Bayesian logistic regression with independent Normal priors.

    .. math::
        w \\sim \\mathcal N(0, s^2 I_D), \\quad b \\sim \\mathcal N(0, s^2), \\quad
        y_i \\mid w, b \\sim \\mathrm{Bernoulli}(\\operatorname{sigmoid}(x_i^\\top w + b))

    No closed form: NUTS is its oracle, and it is the benchmark of ``inference.mcmc`` overhead.

    Example:
        >>> import jax
        >>> m = LogisticRegression()
        >>> x = jax.random.normal(jax.random.PRNGKey(0), (100, 3))
        >>> draws = simulate(m.model, jax.random.PRNGKey(1), x=x)
        >>> draws["y"].shape
        (100,)
    """

    def __init__(self, prior_scale: float = 1.0):
        self.prior_scale = float(prior_scale)

    #     w, b
    #       |
    #  +----v-----------+
    #  |  x[i] -> y[i] N |
    #  +----------------+
    def model(self, x, y=None):
        x = jnp.asarray(x)
        w = numpyro.sample("w", dist.Normal(0.0, self.prior_scale).expand([x.shape[-1]]).to_event(1))
        b = numpyro.sample("b", dist.Normal(0.0, self.prior_scale))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    def log_likelihood_terms(self, w, b, x, y):
        """Per-datum :math:`\\log p(y_i \\mid x_i, w, b)`, shape (N,): the building block of SGLD's
        minibatch gradient."""
        return dist.Bernoulli(logits=x @ w + b).log_prob(y)

    def log_prior(self, w, b):
        return dist.Normal(0.0, self.prior_scale).log_prob(w).sum() + dist.Normal(0.0, self.prior_scale).log_prob(b)
