"""The Bayesian Gaussian mixture and the methods that sample or optimise its parameters.

.. math::
    \\pi \\sim \\mathrm{Dir}(\\alpha \\mathbf 1_K), \\quad
    \\Sigma_k \\sim \\mathcal{IW}(\\nu_0, \\Psi_0), \\quad
    \\mu_k \\mid \\Sigma_k \\sim \\mathcal N(m_0, \\Sigma_k / \\kappa_0), \\quad
    z_n \\sim \\mathrm{Cat}(\\pi), \\quad x_n \\sim \\mathcal N(\\mu_{z_n}, \\Sigma_{z_n})

1. **SVI** (:func:`fit_svi`) and **NUTS** (:func:`fit_nuts`): the assignment site ``z`` is summed out
   by enumeration; only the continuous parameters are optimised or sampled.
2. **Gibbs sampling** (:func:`gibbs`): the same conjugate program, alternating
   :math:`z \\mid \\pi, \\mu, \\Sigma, x`, :math:`\\pi \\mid z` (Dirichlet) and
   :math:`(\\mu_k, \\Sigma_k) \\mid z, x` (Normal-inverse-Wishart), all sweeps in one ``lax.scan``.

The maximum-likelihood mixture, its EM kernels and k-means++ seeding live in :mod:`pgm.mixture`,
which re-exports everything here (``from pgm.mixture import gibbs`` works).

References:
    Bishop (2006). Pattern Recognition and Machine Learning, section 10.2.
    Murphy (2007). Conjugate Bayesian analysis of the Gaussian distribution (NIW posterior).
"""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro import handlers

from inference.errors import DataError, ModelError
from inference.rng import as_key
from inference.result import Result
from pgm.mixture import GaussianMixture, _check_data, _kmeans_pp, gmm_log_joint, precision_cholesky

__all__ = ["BayesianGaussianMixture", "fit_svi", "map_guide", "fit_nuts", "gibbs"]

# --------------------------------------------------------------------------- Bayesian mixture
class BayesianGaussianMixture:
    """A Gaussian mixture with conjugate priors on its parameters (full covariances).

    .. math::
        \\pi \\sim \\mathrm{Dir}(\\alpha \\mathbf 1_K), \\quad
        \\Sigma_k \\sim \\mathcal{IW}(\\nu_0, \\Psi_0), \\quad
        \\mu_k \\mid \\Sigma_k \\sim \\mathcal N(m_0, \\Sigma_k / \\kappa_0), \\quad
        z_n \\sim \\mathrm{Cat}(\\pi), \\quad x_n \\sim \\mathcal N(\\mu_{z_n}, \\Sigma_{z_n})

    NUTS and SVI see the assignments summed out (``z`` is enumerated); :func:`gibbs` samples them.

    Args:
        n_components, dim: :math:`K`, :math:`D`.
        concentration: :math:`\\alpha`.
        mean_prior: :math:`m_0` (``(D,)``, zeros by default); mean_precision: :math:`\\kappa_0`.
        dof: :math:`\\nu_0 > D - 1` (``D + 2`` by default); scale: :math:`\\Psi_0` (identity).

    Example:
        >>> import jax
        >>> prior = BayesianGaussianMixture(3, 2)
        >>> sorted(prior.sample(jax.random.PRNGKey(0), 10))
        ['cov', 'loc', 'weights', 'x', 'z']
    """

    #   alpha      (m0, kappa0, nu0, Psi0)
    #     |               |
    #     v        +------v------------+
    #    pi        | Sigma_k -> mu_k K |
    #     |        +------|------------+
    #  +--v---------------v---+
    #  |  z[n] ------> x[n] N |
    #  +----------------------+
    def __init__(self, n_components: int, dim: int, *, concentration: float = 1.0, mean_prior=None,
                 mean_precision: float = 0.01, dof: float | None = None, scale=None):
        self.n_components, self.dim = int(n_components), int(dim)
        self.concentration = float(concentration)
        self.mean_prior = np.zeros(dim) if mean_prior is None else np.asarray(mean_prior, dtype=np.float64)
        self.mean_precision = float(mean_precision)
        self.dof = float(dim + 2) if dof is None else float(dof)
        self.scale = np.eye(dim) if scale is None else np.asarray(scale, dtype=np.float64)
        if self.dof <= dim - 1:
            raise ModelError(f"dof must exceed dim - 1 = {dim - 1}, got {self.dof}")
        if self.concentration <= 0 or self.mean_precision <= 0:
            raise ModelError("concentration and mean_precision must be positive")
        if self.scale.shape != (dim, dim) or not np.all(np.linalg.eigvalsh(self.scale) > 0):
            raise ModelError(f"scale must be a positive definite ({dim}, {dim}) matrix")

    def model(self, x=None, n=None):
        n = n if x is None else x.shape[0]
        k = self.n_components
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.full(k, self.concentration)))
        with numpyro.plate("components", k):
            cov = numpyro.sample("cov", dist.InverseWishart(self.dof, jnp.asarray(self.scale)))
            loc = numpyro.sample("loc", dist.MultivariateNormal(jnp.asarray(self.mean_prior),
                                                                cov / self.mean_precision))
        with numpyro.plate("data", n):
            z = numpyro.sample("z", dist.Categorical(probs=weights), infer={"enumerate": "parallel"})
            numpyro.sample("x", dist.MultivariateNormal(loc[z], cov[z]), obs=x)

    def sample(self, key, n: int) -> dict:
        trace = handlers.trace(handlers.seed(self.model, as_key(key))).get_trace(n=int(n))
        return {name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] == "sample"}

    def mixture(self, weights, loc, cov) -> GaussianMixture:
        """The :class:`GaussianMixture` at one parameter value (a posterior mean, a draw)."""
        return GaussianMixture(np.asarray(weights) / np.sum(weights), loc, cov, "full", reg_covar=0.0)



def fit_svi(key, x, prior: BayesianGaussianMixture, *, steps: int = 2000, learning_rate: float = 0.05) -> Result:
    """SVI on the Bayesian mixture with the assignments ``z`` enumerated out (``TraceEnum_ELBO``),
    through :func:`inference.svi.fit`.

    The guide (:meth:`map_guide`) is a point mass on :math:`(\\pi, \\mu, \\Sigma)` started at
    k-means++ centres, so SVI maximises :math:`\\log p(x, \\pi, \\mu, \\Sigma)` with
    :math:`\\log p(x \\mid \\cdot) = \\sum_n \\log\\sum_k \\pi_k \\mathcal N(x_n; \\mu_k, \\Sigma_k)`
    computed by enumeration: a MAP estimate, so the Result carries no log-evidence (a point mass
    gives no bound). ``params``: ``{"weights", "loc", "cov"}`` at the optimum; ``history``: the loss
    :math:`-\\log p(x, \\pi, \\mu, \\Sigma)` per step.
    """
    import dataclasses

    from inference import svi

    key = as_key(key)
    x = _check_data(x, prior.dim)
    init = _init_locations(key, x, prior.n_components)
    result = svi.fit(prior.model, {"x": x}, key=key, guide=partial(map_guide, init), elbo="trace_enum",
                     steps=steps, learning_rate=learning_rate)
    params = {name: np.asarray(result.params[f"{name}_map"]) for name in ("weights", "loc", "cov")}
    return dataclasses.replace(result, method="svi_map", params=params, log_evidence=None, log_evidence_kind=None)


def map_guide(init: dict, x=None, n=None):
    """A point-mass guide on the Bayesian mixture's global sites (``z`` is enumerated in the model)."""
    from numpyro.distributions import constraints

    weights = numpyro.param("weights_map", init["weights"], constraint=constraints.simplex)
    loc = numpyro.param("loc_map", init["loc"])
    cov = numpyro.param("cov_map", init["cov"], constraint=constraints.positive_definite)
    numpyro.sample("weights", dist.Delta(weights, event_dim=1))
    with numpyro.plate("components", loc.shape[0]):
        numpyro.sample("cov", dist.Delta(cov, event_dim=2))
        numpyro.sample("loc", dist.Delta(loc, event_dim=1))


def _init_locations(key, x, k):
    """Initial values for the global sites: k-means++ centres, data covariance, uniform weights."""
    d = x.shape[1]
    cov = jnp.cov(x, rowvar=False).reshape(d, d) + 1e-3 * jnp.eye(d)
    return {"weights": jnp.full(k, 1.0 / k), "loc": _kmeans_pp(key, x, k), "cov": jnp.broadcast_to(cov, (k, d, d))}


def fit_nuts(key, x, prior: BayesianGaussianMixture, *, num_samples: int = 500, num_warmup: int = 500,
             num_chains: int = 1, chain_method: str | None = None, progress: bool = False) -> Result:
    """NUTS on the Bayesian mixture's weights, means and covariances, ``z`` summed out; runs through
    :func:`inference.mcmc.nuts` (``chain_method`` as there), started at k-means++ centres. Samples of ``weights``, ``loc``,
    ``cov``; the labels of a chain are those of its start (no label switching between separated
    components)."""
    from numpyro.infer.initialization import init_to_value

    from inference import mcmc

    key = as_key(key)
    x = _check_data(x, prior.dim)
    init = _init_locations(key, x, prior.n_components)
    return mcmc.nuts(prior.model, {"x": x}, key=key, num_samples=num_samples, num_warmup=num_warmup,
                     num_chains=num_chains, chain_method=chain_method, progress=progress,
                     init_strategy=init_to_value(values=init))


# --------------------------------------------------------------------------- Gibbs
def _niw_posterior(prior, nk, sx, sxx):
    """Normal-inverse-Wishart posterior parameters per component from the sufficient statistics
    (Murphy 2007, eq. 250-254): :math:`\\kappa_N = \\kappa_0 + N_k`, :math:`\\nu_N = \\nu_0 + N_k`,
    :math:`m_N = (\\kappa_0 m_0 + S_k) / \\kappa_N`,
    :math:`\\Psi_N = \\Psi_0 + S^{(2)}_k + \\kappa_0 m_0 m_0^\\top - \\kappa_N m_N m_N^\\top`."""
    m0, kappa0, nu0, psi0 = prior
    kappa = kappa0 + nk
    nu = nu0 + nk
    m = (kappa0 * m0 + sx) / kappa[:, None]
    psi = (psi0 + sxx + kappa0 * jnp.outer(m0, m0) - kappa[:, None, None] * m[:, :, None] * m[:, None, :])
    return kappa, nu, m, 0.5 * (psi + jnp.swapaxes(psi, -1, -2))


@partial(jax.jit, static_argnames=("num_sweeps",))
def _gibbs_kernel(key, x, alpha, prior, weights, loc, cov, num_sweeps):
    """All Gibbs sweeps in one scan. One sweep:

    1. :math:`z_n \\sim p(z_n \\mid x_n, \\pi, \\mu, \\Sigma) \\propto \\pi_k \\mathcal N(x_n; \\mu_k, \\Sigma_k)`;
    2. :math:`\\pi \\sim \\mathrm{Dir}(\\alpha + N_1, \\dots, \\alpha + N_K)`;
    3. :math:`\\Sigma_k \\sim \\mathcal{IW}(\\nu_N, \\Psi_N)`, then
       :math:`\\mu_k \\sim \\mathcal N(m_N, \\Sigma_k / \\kappa_N)`.
    """
    k = weights.shape[0]

    def sweep(state, key):
        weights, loc, cov = state
        kz, kw, ks, km = jax.random.split(key, 4)
        joint = gmm_log_joint(x, jnp.log(weights), loc, precision_cholesky(cov, "full"), "full")
        z = jax.random.categorical(kz, joint, axis=1)
        onehot = jax.nn.one_hot(z, k, dtype=x.dtype)
        nk = onehot.sum(0)
        sx = onehot.T @ x
        sxx = jnp.einsum("nk,nd,ne->kde", onehot, x, x)
        weights = jax.random.dirichlet(kw, alpha + nk)
        kappa, nu, m, psi = _niw_posterior(prior, nk, sx, sxx)
        cov = dist.InverseWishart(nu, psi).sample(ks)
        loc = dist.MultivariateNormal(m, cov / kappa[:, None, None]).sample(km)
        loglik = jnp.sum(logsumexp(joint, axis=1))
        return (weights, loc, cov), (weights, loc, cov, loglik)

    _, trace = jax.lax.scan(sweep, (weights, loc, cov), jax.random.split(key, num_sweeps))
    return trace


def gibbs(key, x, prior: BayesianGaussianMixture, *, num_samples: int = 1000, burn_in: int = 200) -> Result:
    """Conjugate Gibbs sampling of the Bayesian mixture's weights, means, covariances and assignments.

    Starts at k-means++ centres. ``samples``: ``weights`` ``(S, K)``, ``loc`` ``(S, K, D)``, ``cov``
    ``(S, K, D, D)`` after ``burn_in`` sweeps; ``history``: :math:`\\log p(x \\mid \\pi, \\mu, \\Sigma)`
    per sweep (burn-in included).

    Example:
        >>> import jax
        >>> truth = GaussianMixture([0.5, 0.5], [[-4.0, 0.0], [4.0, 0.0]], [np.eye(2), np.eye(2)])
        >>> x = truth.sample(jax.random.PRNGKey(0), 300)["x"]
        >>> r = gibbs(jax.random.PRNGKey(1), x, BayesianGaussianMixture(2, 2), num_samples=200, burn_in=50)
        >>> r.samples["loc"].shape
        (200, 2, 2)
    """
    x = _check_data(x, prior.dim)
    if burn_in < 0 or num_samples < 1:
        raise DataError(f"need num_samples >= 1 and burn_in >= 0, got {num_samples}, {burn_in}")
    start = time.perf_counter()
    k_init, k_run = jax.random.split(as_key(key))
    init = _init_locations(k_init, x, prior.n_components)
    prior_args = (jnp.asarray(prior.mean_prior), prior.mean_precision, prior.dof, jnp.asarray(prior.scale))
    weights, loc, cov, loglik = _gibbs_kernel(k_run, x, prior.concentration, prior_args, init["weights"],
                                              init["loc"], init["cov"], num_sweeps=burn_in + num_samples)
    samples = {"weights": np.asarray(weights[burn_in:]), "loc": np.asarray(loc[burn_in:]),
               "cov": np.asarray(cov[burn_in:])}
    return Result(method="gibbs", samples=samples, history=np.asarray(loglik), seconds=time.perf_counter() - start,
                  params={name: value.mean(0) for name, value in samples.items()},
                  diagnostics={"num_chains": 1, "burn_in": burn_in})
