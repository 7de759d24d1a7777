"""Gaussian mixtures: one NumPyro program, learned by EM, SVI, NUTS and Gibbs sampling.

A mixture of :math:`K` Gaussians in :math:`D` dimensions draws, for each point, a component and
then the point from that component:

.. math::
    z_n \\sim \\mathrm{Categorical}(\\pi), \\qquad
    x_n \\mid z_n = k \\sim \\mathcal N(\\mu_k, \\Sigma_k), \\qquad
    p(x_n) = \\sum_k \\pi_k\\, \\mathcal N(x_n; \\mu_k, \\Sigma_k).

``covariance_type`` says how :math:`\\Sigma_k` is parametrised: ``"full"`` (any positive definite
matrix), ``"diag"`` (:math:`\\mathrm{diag}(\\sigma^2_{k1}, \\dots, \\sigma^2_{kD})`),
``"spherical"`` (:math:`\\sigma^2_k I`) or ``"tied"`` (one matrix for all, :math:`\\Sigma_k = \\Sigma`).

How each method sees the program:

1. **EM** (:meth:`GaussianMixture.expected_stats` / :meth:`GaussianMixture.from_stats`, driven by
   :func:`inference.em.fit`): the E-step computes responsibilities
   :math:`r_{nk} = p(z_n = k \\mid x_n)` and the weighted moments
   :math:`N_k = \\sum_n r_{nk}`, :math:`S_k = \\sum_n r_{nk} x_n`,
   :math:`S^{(2)}_k = \\sum_n r_{nk} x_n x_n^\\top`; the M-step is closed form,
   :math:`\\pi_k = N_k / N`, :math:`\\mu_k = S_k / N_k`,
   :math:`\\Sigma_k = S^{(2)}_k / N_k - \\mu_k \\mu_k^\\top + \\epsilon I`; tied,
   :math:`\\Sigma = \\big(\\sum_n x_n x_n^\\top - \\sum_k N_k \\mu_k \\mu_k^\\top\\big) / N + \\epsilon I`.
   The ridge :math:`\\epsilon` = ``reg_covar`` (1e-6 by default, as in scikit-learn) keeps every
   covariance positive definite when a component collapses onto few points; a covariance that is
   still singular raises :class:`~inference.errors.ModelError` naming the component.
2. **SVI** and **NUTS** (:class:`BayesianGaussianMixture`, in :mod:`pgm.mixture_bayes`): priors on
   :math:`\\pi, \\mu, \\Sigma`
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

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
_LOG_2PI = float(np.log(2 * np.pi))
_EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- array kernels
def precision_cholesky(covariances, covariance_type: str):
    """The factor :math:`P_k` with :math:`P_k P_k^\\top = \\Sigma_k^{-1}` (full: upper triangular
    :math:`L_k^{-\\top}` where :math:`\\Sigma_k = L_k L_k^\\top`; tied: the same of the one (D, D)
    matrix; diag / spherical: :math:`1/\\sigma`). NaN where a covariance is not positive definite."""
    if covariance_type in ("full", "tied"):
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
    elif covariance_type == "tied":  # one factor: (N, D) @ (D, D) once
        y = (x @ prec_chol)[:, None, :] - (means @ prec_chol)[None]
        log_det = jnp.sum(jnp.log(jnp.diagonal(prec_chol)))
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
    elif covariance_type == "tied":
        sxx = xc.T @ xc  # (D, D): the responsibilities of a row sum to one
    else:
        sxx = resp.T @ (xc * xc)  # (K, D)
    return jnp.sum(resp, axis=0), resp.T @ xc, sxx, jnp.sum(loglik)


@partial(jax.jit, static_argnames="covariance_type")
def gmm_e_step(x, log_weights, means, prec_chol, covariance_type: str):
    """The E-step: ``((N_k, S_k, S2_k, shift), log p(x))``.

    Moments are taken about ``shift`` (the data mean), which keeps
    :math:`S^{(2)}_k / N_k - \bar x_k \bar x_k^\top` accurate when the data sit far from the origin.
    ``S2_k`` is ``(K, D, D)`` for full covariances, the sum over components ``(D, D)`` for tied,
    the diagonal ``(K, D)`` otherwise. The points
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
    elif covariance_type == "tied":
        d = sx.shape[1]
        cov = (sxx - jnp.einsum("k,kd,ke->de", nk, centred_means, centred_means)) / jnp.sum(nk)
        cov = 0.5 * (cov + cov.T) + reg_covar * jnp.eye(d)
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


def _check_collapse(stats, cov: np.ndarray, covariance_type: str, reg_covar: float) -> None:
    """ModelError naming the first component whose M-step variance (ridge included) is no larger
    than the rounding error of the subtraction that produced it,
    :math:`S^{(2)}_{k,ii}/N_k - \\bar x_{k,i}^2 \\le 10^3\\,\\varepsilon\\, S^{(2)}_{k,ii}/N_k` (a few ulps of
    the second moment, with room for the rounding of the sums over rows): the component collapsed
    onto a point and only ``reg_covar`` can keep it a density, as in scikit-learn."""
    nk, _, sxx = (np.asarray(s) for s in stats[:3])
    second = (np.diagonal(sxx, axis1=-2, axis2=-1) if covariance_type == "full" else sxx) / (nk[:, None] + 10 * _EPS)
    var = np.diagonal(cov, axis1=-2, axis2=-1) if covariance_type == "full" else cov
    if covariance_type == "spherical":
        second = second.mean(axis=1)
    var = var.reshape(len(nk), -1)
    collapsed = np.argwhere(var <= 1e3 * _EPS * second.reshape(len(nk), -1))
    if len(collapsed):
        k, i = (int(j) for j in collapsed[0])
        raise ModelError(
            f"component {k} collapsed onto a single point (variance {var[k, i]:.3g} in dimension {i}, "
            f"at float64 rounding level; about {float(nk[k]):.3g} points): increase reg_covar "
            f"(now {reg_covar:g}; scikit-learn's default is 1e-6)"
        )


def _check_type(covariance_type: str) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ModelError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return covariance_type


# --------------------------------------------------------------------------- the model
class GaussianMixture:
    """A finite mixture of Gaussians with full, diagonal, spherical or tied covariances.

    .. math::
        p(x) = \\sum_{k=1}^K \\pi_k\\, \\mathcal N(x; \\mu_k, \\Sigma_k)

    Args:
        weights: ``(K,)`` mixing proportions :math:`\\pi`, summing to one.
        means: ``(K, D)``.
        covariances: ``(K, D, D)`` (full), ``(K, D)`` variances (diag), ``(K,)`` variances
            (spherical) or one ``(D, D)`` matrix shared by every component (tied).
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``.
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
        expected = {"full": (k, d, d), "diag": (k, d), "spherical": (k,), "tied": (d, d)}[covariance_type]
        if self.weights.shape != (k,):
            raise ModelError(f"weights must have shape ({k},), got {self.weights.shape}")
        if self.covariances.shape != expected:
            raise ModelError(f"{covariance_type} covariances must have shape {expected}, got {self.covariances.shape}")
        if not (np.all(self.weights >= 0) and abs(self.weights.sum() - 1.0) <= 1e-8):  # NaN fails too
            raise ModelError(f"weights must be non-negative and sum to 1, got sum {self.weights.sum():.12g}")
        for name, value in (("means", self.means), ("covariances", self.covariances)):
            if not np.all(np.isfinite(value)):
                raise ModelError(f"{name} hold NaN or infinite values")
        self.prec_chol = np.asarray(precision_cholesky(jnp.asarray(self.covariances), covariance_type))
        if covariance_type == "tied" and not np.all(np.isfinite(self.prec_chol)):
            raise ModelError(f"the tied covariance is not positive definite: increase reg_covar "
                             f"(now {self.reg_covar:g})")
        finite = np.isfinite(self.prec_chol)
        bad = [] if covariance_type == "tied" else np.flatnonzero(~np.all(finite.reshape(k, -1), axis=1))
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
        if self.covariance_type == "tied":
            return np.broadcast_to(self.covariances, (self.n_components, self.dim, self.dim)).copy()
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
            if self.covariance_type in ("full", "tied"):
                chol = jnp.linalg.cholesky(jnp.asarray(self.covariances))
                component = dist.MultivariateNormal(means[z], scale_tril=chol if self.covariance_type == "tied"
                                                    else chol[z])
            else:
                sd = jnp.sqrt(jnp.asarray(self.covariances))
                sd = sd[z] if self.covariance_type == "diag" else sd[z][..., None] * jnp.ones(self.dim)
                component = dist.Normal(means[z], sd).to_event(1)
            numpyro.sample("x", component, obs=x)

    def sample(self, key, n: int) -> dict:
        """``{"z": (n,), "x": (n, D)}`` drawn by running the program forward."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DataError(f"n must be a positive integer number of draws, got {n!r}")
        key = as_key(key)
        # the constructor checked the parameters (weights, finite values, positive definite
        # covariances); NumPyro's checks of every distribution's arguments again, eagerly, were 0.7 s
        # of the first draw in a process (genzoo compare gmm's problem), and change no value
        with numpyro.validation_enabled(False):
            trace = handlers.trace(handlers.seed(self.model, key)).get_trace(n=int(n))
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

    def state_graph(self, x):
        """The assignment posterior :math:`p(z \\mid x)` as a factor graph, for the generic discrete
        engines (Gibbs, mean field): variables ``"z[0]"`` ... ``"z[N-1]"``, each with its own factor
        :math:`\\log \\pi_k + \\log \\mathcal N(x_n; \\mu_k, \\Sigma_k)` and no factor between them (the
        assignments are independent given the parameters, so mean field is exact here and Gibbs
        draws independent samples); the normaliser is :math:`p(x)`."""
        from inference.factors import Factor, FactorGraph

        joint = self.log_joint(x)
        names = [f"z[{n}]" for n in range(len(joint))]
        states = tuple(str(k) for k in range(self.n_components))
        return FactorGraph({v: states for v in names}, [Factor((v,), row) for v, row in zip(names, joint)])

    def responsibilities(self, x) -> np.ndarray:
        """:math:`p(z_n = k \\mid x_n)`, shape ``(N, K)``."""
        joint = self.log_joint(x)
        return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))

    def predict(self, x) -> np.ndarray:
        """The most probable component of each point."""
        return np.argmax(self.log_joint(x), axis=1)

    def n_parameters(self) -> int:
        """Free parameters: :math:`K - 1` weights, :math:`KD` means and the covariances
        (:math:`KD(D+1)/2` full, :math:`KD` diag, :math:`K` spherical, :math:`D(D+1)/2` tied)."""
        k, d = self.means.shape
        cov = {"full": k * d * (d + 1) // 2, "diag": k * d, "spherical": k,
               "tied": d * (d + 1) // 2}[self.covariance_type]
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
        if self.covariance_type != "tied":
            _check_collapse(stats, np.asarray(cov), self.covariance_type, self.reg_covar)
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
        data_cov = np.cov(np.asarray(x), rowvar=False, bias=True).reshape(d, d) + reg_covar * np.eye(d)
        cov = {"full": np.broadcast_to(data_cov, (n_components, d, d)), "tied": data_cov,
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


def relabelled_responsibilities(samples, x, reference_means) -> tuple[dict, np.ndarray]:
    """The array form of :func:`averaged_responsibilities` for draws of a full-covariance mixture.

    Args:
        samples: ``{"weights": (S, K), "loc": (S, K, D), "cov": (S, K, D, D)}`` (posterior draws, or
            a point estimate as ``S = 1``).
        x: (N, D) points.
        reference_means: (K, D) means giving the labelling.

    Returns:
        ``(aligned, probs)``: the draws relabelled to the reference (each draw's components matched by
        their means, :func:`match_components`, all draws in one batched call) and the (N, K)
        assignment posteriors averaged over them, computed for every draw at once.
    """
    from inference.align import align

    w = np.asarray(samples["weights"], dtype=np.float64)
    loc = np.asarray(samples["loc"], dtype=np.float64)
    cov = np.asarray(samples["cov"], dtype=np.float64)
    if w.ndim != 2 or loc.shape[:2] != w.shape or cov.shape != loc.shape + loc.shape[-1:]:
        raise DataError(f"samples must be weights (S, K), loc (S, K, D), cov (S, K, D, D); got {w.shape}, "
                        f"{loc.shape}, {cov.shape}")
    x = _check_data(x, loc.shape[-1])
    perm = align(loc, np.asarray(reference_means, dtype=np.float64), "euclidean")[0]  # (S, K)
    rows = np.arange(len(w))[:, None]
    aligned = {"weights": w[rows, perm], "loc": loc[rows, perm], "cov": cov[rows, perm]}
    log_w = jnp.log(aligned["weights"] / aligned["weights"].sum(-1, keepdims=True))
    prec = precision_cholesky(jnp.asarray(aligned["cov"]), "full")  # (S, K, D, D)
    joint = jax.vmap(lambda lw, m, p: gmm_log_joint(x, lw, m, p, "full"))(log_w, jnp.asarray(aligned["loc"]), prec)
    return aligned, np.asarray(jax.nn.softmax(joint, axis=-1).mean(0))  # (N, K)


# the Bayesian mixture and its samplers (pgm.mixture_bayes imports this module's kernels, so this
# import comes last: pgm's __init__ imports this module first)
from pgm.mixture_bayes import BayesianGaussianMixture, fit_nuts, fit_svi, gibbs, map_guide  # noqa: E402
