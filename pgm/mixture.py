"""Gaussian mixtures: one NumPyro program, learned by EM, SVI, NUTS and Gibbs sampling.

A mixture of :math:`K` Gaussians in :math:`D` dimensions draws, for each point, a component and
then the point from that component:

.. math::
    z_n \\sim \\mathrm{Categorical}(\\pi), \\qquad
    x_n \\mid z_n = k \\sim \\mathcal N(\\mu_k, \\Sigma_k), \\qquad
    p(x_n) = \\sum_k \\pi_k\\, \\mathcal N(x_n; \\mu_k, \\Sigma_k).

``covariance_type`` says how :math:`\\Sigma_k` is parametrised: ``"full"`` (any positive definite
matrix), ``"diag"`` (:math:`\\mathrm{diag}(\\sigma^2_{k1}, \\dots, \\sigma^2_{kD})`) or
``"spherical"`` (:math:`\\sigma^2_k I`).

How each method sees the program:

1. **EM** (:meth:`GaussianMixture.expected_stats` / :meth:`GaussianMixture.from_stats`, driven by
   :func:`inference.em.fit`): the E-step computes responsibilities
   :math:`r_{nk} = p(z_n = k \\mid x_n)` and the weighted moments
   :math:`N_k = \\sum_n r_{nk}`, :math:`S_k = \\sum_n r_{nk} x_n`,
   :math:`S^{(2)}_k = \\sum_n r_{nk} x_n x_n^\\top`; the M-step is closed form,
   :math:`\\pi_k = N_k / N`, :math:`\\mu_k = S_k / N_k`,
   :math:`\\Sigma_k = S^{(2)}_k / N_k - \\mu_k \\mu_k^\\top + \\epsilon I`.
   The ridge :math:`\\epsilon` = ``reg_covar`` (1e-6 by default, as in scikit-learn) keeps every
   covariance positive definite when a component collapses onto few points; a covariance that is
   still singular raises :class:`~inference.errors.ModelError` naming the component.
2. **SVI** and **NUTS** (:class:`BayesianGaussianMixture`): priors on :math:`\\pi, \\mu, \\Sigma`
   (Dirichlet, Normal-inverse-Wishart), the assignment site ``z`` marked
   ``infer={"enumerate": "parallel"}`` so that it is summed out exactly; only the continuous
   parameters are optimised or sampled (:func:`fit_svi`, :func:`fit_nuts`).
3. **Gibbs sampling** (:func:`gibbs`): the same conjugate program, alternating
   :math:`z \\mid \\pi, \\mu, \\Sigma, x`, :math:`\\pi \\mid z` (Dirichlet) and
   :math:`(\\mu_k, \\Sigma_k) \\mid z, x` (Normal-inverse-Wishart), all sweeps in one ``lax.scan``.

``log_prob`` is the exact :math:`\\log p(x_n)` (outlier scores); :meth:`GaussianMixture.bic` and
:meth:`GaussianMixture.aic` choose :math:`K`.

References:
    Dempster, Laird and Rubin (1977). Maximum likelihood from incomplete data via the EM algorithm.
    Bishop (2006). Pattern Recognition and Machine Learning, sections 9.2 and 10.2.
    Murphy (2007). Conjugate Bayesian analysis of the Gaussian distribution (NIW posterior).
    Schwarz (1978). Estimating the dimension of a model (BIC).
"""

from __future__ import annotations

import dataclasses
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

__all__ = [
    "COVARIANCE_TYPES",
    "GaussianMixture",
    "BayesianGaussianMixture",
    "gmm_log_joint",
    "gmm_e_step",
    "gmm_m_step",
    "precision_cholesky",
    "fit_em",
    "fit_svi",
    "map_guide",
    "fit_nuts",
    "gibbs",
    "match_components",
    "averaged_responsibilities",
]

COVARIANCE_TYPES = ("full", "diag", "spherical")
_LOG_2PI = float(np.log(2 * np.pi))
_EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- array kernels
def precision_cholesky(covariances, covariance_type: str):
    """The factor :math:`P_k` with :math:`P_k P_k^\\top = \\Sigma_k^{-1}` (full: upper triangular
    :math:`L_k^{-\\top}` where :math:`\\Sigma_k = L_k L_k^\\top`; diag / spherical: :math:`1/\\sigma`).
    NaN where a covariance is not positive definite."""
    if covariance_type == "full":
        chol = jnp.linalg.cholesky(covariances)
        eye = jnp.broadcast_to(jnp.eye(covariances.shape[-1]), covariances.shape)
        return jnp.swapaxes(jax.scipy.linalg.solve_triangular(chol, eye, lower=True), -1, -2)
    return jnp.where(covariances > 0, 1.0 / jnp.sqrt(jnp.abs(covariances)), jnp.nan)


@partial(jax.jit, static_argnames="covariance_type")
def gmm_log_joint(x, log_weights, means, prec_chol, covariance_type: str):
    """:math:`\\log \\pi_k + \\log \\mathcal N(x_n; \\mu_k, \\Sigma_k)` as an ``(N, K)`` array.

    Uses :math:`(x - \\mu)^\\top \\Sigma^{-1} (x - \\mu) = \\lVert P^\\top x - P^\\top \\mu \\rVert^2`
    and :math:`\\log|\\Sigma|^{-1/2} = \\sum_i \\log P_{ii}`: one matrix product for all components.
    """
    d = x.shape[-1]
    if covariance_type == "full":
        y = jnp.einsum("nd,kde->nke", x, prec_chol) - jnp.einsum("kd,kde->ke", means, prec_chol)
        log_det = jnp.sum(jnp.log(jnp.diagonal(prec_chol, axis1=-2, axis2=-1)), axis=-1)
    elif covariance_type == "diag":
        y = (x[:, None, :] - means[None]) * prec_chol[None]
        log_det = jnp.sum(jnp.log(prec_chol), axis=-1)
    else:
        y = (x[:, None, :] - means[None]) * prec_chol[None, :, None]
        log_det = d * jnp.log(prec_chol)
    return log_weights + log_det - 0.5 * (d * _LOG_2PI + jnp.sum(y * y, axis=-1))


E_STEP_CHUNK = 4096
"""The E-step runs over the points in chunks of this many rows (a scan): the (chunk, K, D)
intermediates stay in cache, which on a CPU more than halves the time of one pass over them all."""


def _chunk_moments(xc, shift, log_weights, means, prec_chol, covariance_type):
    """``(N_k, S_k, S2_k, log p)`` of the rows ``xc`` (centred at ``shift``) as sums over the rows."""
    joint = gmm_log_joint(xc + shift, log_weights, means, prec_chol, covariance_type)
    loglik = logsumexp(joint, axis=1)
    resp = jnp.exp(joint - loglik[:, None])  # (n, K)
    n, d = xc.shape
    if covariance_type == "full":
        weighted = (resp[:, :, None] * xc[:, None, :]).reshape(n, -1)  # (n, K*D)
        sxx = (weighted.T @ xc).reshape(-1, d, d)  # (K, D, D)
    else:
        sxx = resp.T @ (xc * xc)  # (K, D)
    return jnp.sum(resp, axis=0), resp.T @ xc, sxx, jnp.sum(loglik)


@partial(jax.jit, static_argnames="covariance_type")
def gmm_e_step(x, log_weights, means, prec_chol, covariance_type: str):
    """The E-step: ``((N_k, S_k, S2_k, shift), log p(x))``.

    Moments are taken about ``shift`` (the data mean), which keeps
    :math:`S^{(2)}_k / N_k - \bar x_k \bar x_k^\top` accurate when the data sit far from the origin.
    ``S2_k`` is ``(K, D, D)`` for full covariances, its diagonal ``(K, D)`` otherwise. The points
    are taken :data:`E_STEP_CHUNK` rows at a time and the sums accumulated.
    """
    shift = jnp.mean(x, axis=0)
    xc = x - shift  # (N, D)
    n, d = xc.shape
    args = (shift, log_weights, means, prec_chol, covariance_type)
    n_chunks = n // E_STEP_CHUNK
    if n_chunks < 2:
        nk, sx, sxx, loglik = _chunk_moments(xc, *args)
    else:
        def add(total, rows):
            return jax.tree_util.tree_map(jnp.add, total, _chunk_moments(rows, *args)), None

        whole = n_chunks * E_STEP_CHUNK
        first = _chunk_moments(xc[:E_STEP_CHUNK], *args)
        rest = xc[E_STEP_CHUNK:whole].reshape(n_chunks - 1, E_STEP_CHUNK, d)
        (nk, sx, sxx, loglik), _ = jax.lax.scan(add, first, rest)
        if whole < n:
            nk, sx, sxx, loglik = jax.tree_util.tree_map(jnp.add, (nk, sx, sxx, loglik),
                                                         _chunk_moments(xc[whole:], *args))
    return (nk, sx, sxx, shift), loglik


@partial(jax.jit, static_argnames="covariance_type")
def gmm_m_step(nk, sx, sxx, shift, reg_covar, covariance_type: str):
    """The M-step: ``(weights, means, covariances)`` from the E-step moments.

    :math:`N_k` gets :math:`10\\,\\varepsilon_{\\text{machine}}` added (as scikit-learn does) so an
    empty component keeps finite parameters.
    """
    nk = nk + 10 * _EPS
    weights = nk / jnp.sum(nk)
    centred_means = sx / nk[:, None]
    if covariance_type == "full":
        d = sx.shape[1]
        cov = sxx / nk[:, None, None] - centred_means[:, :, None] * centred_means[:, None, :]
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2)) + reg_covar * jnp.eye(d)
    else:
        cov = sxx / nk[:, None] - centred_means**2 + reg_covar
        if covariance_type == "spherical":
            cov = jnp.mean(cov, axis=1)
    return weights, centred_means + shift, cov


# --------------------------------------------------------------------------- checks
def _check_data(x, dim: int | None = None) -> jnp.ndarray:
    """``x`` as a float64 device array, checked: (N, D), N >= 1, finite, D = ``dim``. A float64
    device array is checked where it lies (no copy to the host unless a value is bad)."""
    on_device = isinstance(x, jax.Array) and x.dtype == jnp.float64
    if on_device and x.ndim == 2 and x.shape[0] > 0 and bool(jnp.all(jnp.isfinite(x))):
        if dim is not None and x.shape[1] != dim:
            raise DataError(f"x has {x.shape[1]} columns but the mixture has dimension {dim}")
        return x
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"x must be an (N, D) array of points, got shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError("x holds no points")
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        raise DataError(f"x holds NaN or infinite values (first at row {bad[0][0]}, column {bad[0][1]}); "
                        "a Gaussian mixture takes no missing values")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"x has {x.shape[1]} columns but the mixture has dimension {dim}")
    return jnp.asarray(x)


def _check_type(covariance_type: str) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ModelError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return covariance_type


# --------------------------------------------------------------------------- the model
class GaussianMixture:
    """A finite mixture of Gaussians with full, diagonal or spherical covariances.

    .. math::
        p(x) = \\sum_{k=1}^K \\pi_k\\, \\mathcal N(x; \\mu_k, \\Sigma_k)

    Args:
        weights: ``(K,)`` mixing proportions :math:`\\pi`, summing to one.
        means: ``(K, D)``.
        covariances: ``(K, D, D)`` (full), ``(K, D)`` variances (diag) or ``(K,)`` variances
            (spherical).
        covariance_type: ``"full"``, ``"diag"`` or ``"spherical"``.
        reg_covar: the ridge the M-step adds to every variance (see the module docstring).

    Example:
        >>> import jax, numpy as np
        >>> from inference import em
        >>> truth = GaussianMixture([0.5, 0.5], [[-3.0, 0.0], [3.0, 0.0]], [np.eye(2), np.eye(2)])
        >>> x = truth.sample(jax.random.PRNGKey(0), 500)["x"]
        >>> start = GaussianMixture.initialize(jax.random.PRNGKey(1), x, 2)
        >>> fitted = em.fit(start, x, max_iter=50).params
        >>> bool(np.allclose(np.sort(fitted.means[:, 0]), [-3, 3], atol=0.3))
        True
    """

    #        pi      (mu_k, Sigma_k)
    #         |            |
    #  +------v------------|----+
    #  |     z[n] -----> x[n] N |
    #  +------------------------+
    def __init__(self, weights, means, covariances, covariance_type: str = "full", *, reg_covar: float = 1e-6):
        self.covariance_type = _check_type(covariance_type)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.covariances = np.asarray(covariances, dtype=np.float64)
        self.reg_covar = float(reg_covar)
        if self.reg_covar < 0:
            raise ModelError(f"reg_covar must be non-negative, got {reg_covar}")
        if self.means.ndim != 2:
            raise ModelError(f"means must be (K, D), got shape {self.means.shape}")
        k, d = self.means.shape
        expected = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]
        if self.weights.shape != (k,):
            raise ModelError(f"weights must have shape ({k},), got {self.weights.shape}")
        if self.covariances.shape != expected:
            raise ModelError(f"{covariance_type} covariances must have shape {expected}, got {self.covariances.shape}")
        if np.any(self.weights < 0) or abs(self.weights.sum() - 1.0) > 1e-8:
            raise ModelError(f"weights must be non-negative and sum to 1, got sum {self.weights.sum():.12g}")
        for name, value in (("means", self.means), ("covariances", self.covariances)):
            if not np.all(np.isfinite(value)):
                raise ModelError(f"{name} hold NaN or infinite values")
        self.prec_chol = np.asarray(precision_cholesky(jnp.asarray(self.covariances), covariance_type))
        bad = np.flatnonzero(~np.all(np.isfinite(self.prec_chol.reshape(k, -1)), axis=1))
        if len(bad):
            raise ModelError(
                f"the covariance of component {int(bad[0])} is not positive definite; "
                f"a component collapsed onto too few points: increase reg_covar (now {self.reg_covar:g})"
            )

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def full_covariances(self) -> np.ndarray:
        """``(K, D, D)`` covariance matrices whatever the parametrisation."""
        if self.covariance_type == "full":
            return self.covariances
        var = self.covariances if self.covariance_type == "diag" else self.covariances[:, None] * np.ones(self.dim)
        return var[:, :, None] * np.eye(self.dim)

    # ------------------------------------------------------------------ program
    def model(self, x=None, n=None):
        """The generative program: ``z`` (enumerable) then ``x``; scores ``x`` when given."""
        n = n if x is None else x.shape[0]
        if n is None:
            raise DataError("give the data x or the number of points n")
        weights, means = jnp.asarray(self.weights), jnp.asarray(self.means)
        with numpyro.plate("data", n):
            z = numpyro.sample("z", dist.Categorical(probs=weights), infer={"enumerate": "parallel"})
            if self.covariance_type == "full":
                chol = jnp.linalg.cholesky(jnp.asarray(self.covariances))
                component = dist.MultivariateNormal(means[z], scale_tril=chol[z])
            else:
                sd = jnp.sqrt(jnp.asarray(self.covariances))
                sd = sd[z] if self.covariance_type == "diag" else sd[z][..., None] * jnp.ones(self.dim)
                component = dist.Normal(means[z], sd).to_event(1)
            numpyro.sample("x", component, obs=x)

    def sample(self, key, n: int) -> dict:
        """``{"z": (n,), "x": (n, D)}`` drawn by running the program forward."""
        trace = handlers.trace(handlers.seed(self.model, as_key(key))).get_trace(n=int(n))
        return {name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] == "sample"}

    # ------------------------------------------------------------------ scoring
    def _args(self):
        return (jnp.log(jnp.asarray(self.weights)), jnp.asarray(self.means), jnp.asarray(self.prec_chol))

    def log_joint(self, x) -> np.ndarray:
        """``(N, K)`` array of :math:`\\log \\pi_k + \\log \\mathcal N(x_n; \\mu_k, \\Sigma_k)`."""
        x = _check_data(x, self.dim)
        return np.asarray(gmm_log_joint(x, *self._args(), covariance_type=self.covariance_type))

    def log_prob(self, x) -> np.ndarray:
        """Exact :math:`\\log p(x_n)` per point, shape ``(N,)``: low values flag outliers."""
        return np.asarray(logsumexp(self.log_joint(x), axis=1))

    def responsibilities(self, x) -> np.ndarray:
        """:math:`p(z_n = k \\mid x_n)`, shape ``(N, K)``."""
        joint = self.log_joint(x)
        return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))

    def predict(self, x) -> np.ndarray:
        """The most probable component of each point."""
        return np.argmax(self.log_joint(x), axis=1)

    def n_parameters(self) -> int:
        """Free parameters: :math:`K - 1` weights, :math:`KD` means and the covariances."""
        k, d = self.means.shape
        cov = {"full": k * d * (d + 1) // 2, "diag": k * d, "spherical": k}[self.covariance_type]
        return int(cov + k * d + k - 1)

    def bic(self, x) -> float:
        """:math:`-2 \\log p(x) + p \\log N` (lower is better)."""
        x = _check_data(x, self.dim)
        return float(-2 * np.sum(self.log_prob(x)) + self.n_parameters() * np.log(x.shape[0]))

    def aic(self, x) -> float:
        """:math:`-2 \\log p(x) + 2 p` (lower is better)."""
        return float(-2 * np.sum(self.log_prob(x)) + 2 * self.n_parameters())

    # ------------------------------------------------------------------ EM hooks
    def prepare_data(self, x):
        """The checked device copy of ``x`` that :func:`inference.em.fit` hands every E-step."""
        return _check_data(x, self.dim)

    def expected_stats(self, x):
        """E-step for :func:`inference.em.fit`: moments under the responsibilities, and log p(x)."""
        x = _check_data(x, self.dim)
        stats, loglik = gmm_e_step(x, *self._args(), covariance_type=self.covariance_type)
        return stats, float(loglik)

    def from_stats(self, stats) -> "GaussianMixture":
        """M-step: the closed-form maximiser of the expected complete-data log-likelihood."""
        weights, means, cov = gmm_m_step(*stats, self.reg_covar, covariance_type=self.covariance_type)
        return GaussianMixture(np.asarray(weights), np.asarray(means), np.asarray(cov), self.covariance_type,
                               reg_covar=self.reg_covar)

    def data_is_complete(self, x) -> bool:
        return False

    # ------------------------------------------------------------------ start
    @classmethod
    def initialize(cls, key, x, n_components: int, covariance_type: str = "full", *,
                   reg_covar: float = 1e-6) -> "GaussianMixture":
        """A starting point for EM: means by k-means++ seeding (Arthur and Vassilvitskii 2007),
        uniform weights, every covariance the data covariance (plus the ridge).

        Raises :class:`~inference.errors.DataError` when ``n_components`` exceeds the number of
        distinct points.
        """
        _check_type(covariance_type)
        x = _check_data(x)
        n, d = x.shape
        if int(n_components) < 1:
            raise DataError(f"n_components must be at least 1, got {n_components}")
        distinct = len(np.unique(np.asarray(x), axis=0))
        if n_components > distinct:
            raise DataError(f"n_components={n_components} exceeds the {distinct} distinct points of x")
        means = np.asarray(_kmeans_pp(as_key(key), x, int(n_components)))
        var = np.var(np.asarray(x), axis=0) + reg_covar
        cov = {"full": np.broadcast_to(np.cov(np.asarray(x), rowvar=False, bias=True).reshape(d, d)
                                        + reg_covar * np.eye(d), (n_components, d, d)),
               "diag": np.broadcast_to(var, (n_components, d)),
               "spherical": np.full(n_components, var.mean())}[covariance_type]
        return cls(np.full(n_components, 1.0 / n_components), means, np.array(cov), covariance_type,
                   reg_covar=reg_covar)


@partial(jax.jit, static_argnums=2)
def _kmeans_pp(key, x, k):
    """k-means++ seeding: each next centre drawn with probability proportional to its squared
    distance to the nearest centre chosen so far."""
    n = x.shape[0]
    key, sub = jax.random.split(key)
    first = jax.random.randint(sub, (), 0, n)
    centres = jnp.zeros((k, x.shape[1])).at[0].set(x[first])
    dist2 = jnp.sum((x - x[first]) ** 2, axis=1)

    def step(carry, key_i):
        centres, dist2, i = carry
        pick = jax.random.categorical(key_i, jnp.log(dist2))  # chosen points have weight 0
        centres = centres.at[i].set(x[pick])
        dist2 = jnp.minimum(dist2, jnp.sum((x - x[pick]) ** 2, axis=1))
        return (centres, dist2, i + 1), None

    (centres, _, _), _ = jax.lax.scan(step, (centres, dist2, 1), jax.random.split(key, k - 1))
    return centres


def fit_em(key, x, n_components: int, covariance_type: str = "full", *, reg_covar: float = 1e-6,
           max_iter: int = 100, tol: float = 1e-6, progress: bool = False, n_init: int = 1) -> Result:
    """EM from a k-means++ start: ``inference.em.fit(GaussianMixture.initialize(...), x)``.
    ``params`` is the fitted :class:`GaussianMixture`; ``log_evidence`` the exact log-likelihood.

    ``n_init`` > 1 (scikit-learn's): that many starts, from ``jax.random.split(key, n_init)``,
    each run to convergence; the one with the highest final log-likelihood is returned, with
    ``diagnostics["restarts"]`` the final log-likelihood of every start."""
    from inference import em

    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise DataError(f"n_init must be a positive integer, got {n_init!r}")
    keys = [key] if n_init == 1 else list(jax.random.split(as_key(key), int(n_init)))
    best, finals = None, []
    for k in keys:
        start = GaussianMixture.initialize(k, x, n_components, covariance_type, reg_covar=reg_covar)
        result = em.fit(start, x, max_iter=max_iter, tol=tol, progress=progress)
        finals.append(float(result.log_evidence))
        if best is None or finals[-1] > best.log_evidence:
            best = result
    if n_init == 1:
        return best
    return dataclasses.replace(best, diagnostics={**best.diagnostics, "restarts": finals})


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


def match_components(estimated_means, true_means) -> np.ndarray:
    """The permutation ``perm`` minimising :math:`\\sum_k \\lVert \\hat\\mu_{perm[k]} - \\mu_k\\rVert`
    (mixtures are identified only up to relabelling): :func:`inference.align.align` with
    ``metric="euclidean"``."""
    from inference.align import align

    return align(estimated_means, true_means, "euclidean")[0]


def averaged_responsibilities(mixtures, x, reference_means) -> np.ndarray:
    """Assignment posteriors :math:`p(z_n = k \\mid x) \\approx \\frac1S \\sum_s p(z_n = \\pi_s(k) \\mid
    x_n, \\theta_s)` averaged over ``mixtures`` (posterior draws :math:`\\theta_s`, or one point
    estimate), each relabelled first (:func:`match_components`: component :math:`\\pi_s(k)` of draw
    :math:`s` is the one whose mean is matched to ``reference_means[k]``), since averaging
    unaligned draws would mix the labels (Stephens 2000).

    Args:
        mixtures: a sequence of :class:`GaussianMixture`.
        x: (N, D) points.
        reference_means: (K, D) means giving the labelling (the truth, or a point estimate).

    Returns:
        (N, K) probabilities in the reference's component order.

    Example:
        >>> import numpy as np
        >>> m = GaussianMixture([0.5, 0.5], [[3.0], [-3.0]], [[[1.0]], [[1.0]]])
        >>> averaged_responsibilities([m], np.array([[-3.0]]), [[-3.0], [3.0]]).round(6).tolist()
        [[1.0, 0.0]]
    """
    mixtures = list(mixtures)
    if not mixtures:
        raise DataError("mixtures is empty: average over at least one mixture")
    return np.mean([m.responsibilities(x)[:, match_components(m.means, reference_means)] for m in mixtures], axis=0)


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
             num_chains: int = 1, progress: bool = False) -> Result:
    """NUTS on the Bayesian mixture's weights, means and covariances, ``z`` summed out; runs through
    :func:`inference.mcmc.nuts`, started at k-means++ centres. Samples of ``weights``, ``loc``,
    ``cov``; the labels of a chain are those of its start (no label switching between separated
    components)."""
    from numpyro.infer.initialization import init_to_value

    from inference import mcmc

    key = as_key(key)
    x = _check_data(x, prior.dim)
    init = _init_locations(key, x, prior.n_components)
    return mcmc.nuts(prior.model, {"x": x}, key=key, num_samples=num_samples, num_warmup=num_warmup,
                     num_chains=num_chains, progress=progress, init_strategy=init_to_value(values=init))


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
