"""Emission families of the hidden Markov models: what a hidden state emits, and how it is learned.

An emission family turns a state :math:`z_t = k` into a distribution over the observation
:math:`x_t`:

- :class:`CategoricalEmission`: :math:`p(x_t = m \\mid z_t = k) = B_{km}` over ``M`` symbols;
- :class:`MultinomialEmission`: ``M`` counts per step summing to ``n_trials``,
  :math:`x_t \\mid z_t = k \\sim \\mathrm{Mult}(n, B_k)` (hmmlearn's ``MultinomialHMM``);
- :class:`GaussianSingleEmission`: :math:`\\mathcal N(\\mu_k, \\Sigma_k)`, ``covariance_type``
  ``"full"`` or ``"diag"``; NaN entries are missing and marginalised;
- :class:`GaussianMixtureEmission`: :math:`\\sum_m w_{km} \\mathcal N(\\mu_{km}, \\Sigma_{km})`.

Each offers the contract :class:`pgm.hmm.HMM` relies on: ``prepare(x, lengths)`` (checks and pads
the observations), ``log_likelihoods(x)`` (the (N, T, K) table :math:`\\log p(x_t \\mid z_t = k)`
that forward-backward consumes), ``distribution(params, z)`` (the sample site of the program),
and the EM pieces ``expected_stats(x, gamma)`` / ``from_stats(stats, ...)`` / ``log_prior(...)``
(closed-form M-steps with optional Dirichlet / covariance priors).

The discrete families and the checks all families share live in :mod:`pgm.emissions_discrete`;
this module re-exports them, so ``from pgm.emissions import CategoricalEmission`` keeps working.

References:
    Rabiner (1989). A tutorial on hidden Markov models and selected applications in speech recognition.
    Bishop (2006). Pattern Recognition and Machine Learning, section 13.2.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from inference.errors import DataError, ModelError
from pgm.emissions_discrete import (CategoricalEmission, MultinomialEmission, _as_batch, _dirichlet_log_density,
                                    _normalise_counts, _probability_table, _valid_mask)

_LOG_2PI = math.log(2 * math.pi)


class GaussianEmission:
    """Gaussian components :math:`\\mathcal N(\\mu_c, \\Sigma_c)`, ``c = 0..C-1`` (one per state, or
    per state and mixture component in :class:`GaussianMixtureEmission`).

    ``covariance_type="full"``: ``covariances`` (C, D, D); ``"diag"``: (C, D) variances;
    ``"spherical"``: one variance per component, :math:`\Sigma_c = \sigma^2_c I` ((C,) given, kept
    as (C, D) equal columns); ``"tied"``: one matrix for all, :math:`\Sigma_c = \Sigma` ((D, D)
    given, kept as (C, D, D) equal slices). Their M-steps (hmmlearn's) are the constrained
    maximisers:

    .. math::

        \sigma^2_c = \frac{1}{D}\sum_d \frac{S_{cd} + \psi}{N_c}, \qquad
        \Sigma = \frac{\sum_c S_c + \psi I}{\sum_c N_c},

    with :math:`S` the scatter about the new means and :math:`\psi` the covariance prior
    (:meth:`log_prior`: :math:`-\tfrac{\psi}{2}\sum_c D/\sigma^2_c`, resp.
    :math:`-\tfrac{\psi}{2}\mathrm{tr}\,\Sigma^{-1}` once).
    """

    family = "gaussian"
    event_ndim = 1

    def __init__(self, means, covariances, covariance_type="full", *, name="means"):
        if covariance_type not in ("full", "diag", "spherical", "tied"):
            raise ModelError(
                f"covariance_type must be 'full', 'diag', 'spherical' or 'tied', got {covariance_type!r}"
            )
        self.means = np.asarray(means, dtype=np.float64)
        if self.means.ndim != 2 or not np.all(np.isfinite(self.means)):
            raise ModelError(f"means must be a finite (C, D) array, got shape {self.means.shape}")
        C, D = self.means.shape
        cov = np.asarray(covariances, dtype=np.float64)
        # spherical and tied are stored expanded, as diag (C, D) and full (C, D, D) tables whose
        # M-step keeps them tied (hmmlearn's shapes (C,) and (D, D) are accepted as given)
        self.kind = covariance_type
        if covariance_type == "spherical":
            if cov.shape == (C,):
                cov = np.repeat(cov[:, None], D, axis=1)
            if cov.shape != (C, D) or not np.all(cov == cov[:, :1]):
                raise ModelError(f"covariances must have shape {(C,)} (one variance per component) for "
                                 f"'spherical', got {np.shape(covariances)}")
            covariance_type = "diag"
        elif covariance_type == "tied":
            if cov.shape == (D, D):
                cov = np.broadcast_to(cov, (C, D, D)).copy()
            if cov.shape != (C, D, D) or not np.all(cov == cov[:1]):
                raise ModelError(f"covariances must have shape {(D, D)} (one shared matrix) for 'tied', "
                                 f"got {np.shape(covariances)}")
            covariance_type = "full"
        self.covariance_type = covariance_type
        if covariance_type == "diag":
            if cov.shape != (C, D):
                raise ModelError(f"covariances must have shape {(C, D)} for 'diag', got {cov.shape}")
            if not np.all(np.isfinite(cov)) or np.any(cov <= 0):
                raise ModelError("covariances ('diag' variances) must be finite and positive")
        else:
            if cov.shape != (C, D, D):
                raise ModelError(f"covariances must have shape {(C, D, D)} for 'full', got {cov.shape}")
            for c in range(C):
                if not np.allclose(cov[c], cov[c].T) or not np.all(np.isfinite(cov[c])):
                    raise ModelError(f"covariances[{c}] is not a finite symmetric matrix")
                if np.linalg.eigvalsh(cov[c]).min() <= 0:
                    raise ModelError(f"covariances[{c}] is not positive definite")
        self.covariances = cov
        self.dim = D

    def full_covariances(self):
        if self.covariance_type == "full":
            return self.covariances
        return self.covariances[:, :, None] * np.eye(self.dim)

    def params(self):
        return {"means": self.means, "covariances": self.covariances}

    def prepare(self, x, lengths):
        x, lengths, batched = _as_batch(x, 1, lengths, float_data=True)
        if x.shape[-1] != self.dim:
            raise DataError(f"x has {x.shape[-1]} features per step, the means have D = {self.dim}")
        if np.all(lengths == x.shape[1]):  # no padding
            if np.isinf(x).any():
                raise DataError("x holds infinite values (NaN marks a missing value; inf is not allowed)")
            return x, lengths, batched
        valid = _valid_mask(lengths, x.shape[1])
        if np.any(np.isinf(x[valid])):
            raise DataError("x holds infinite values (NaN marks a missing value; inf is not allowed)")
        x = np.where(valid[..., None], x, np.nan)  # padding is missing
        return x, lengths, batched

    def component_log_density(self, x):
        """(N, T, C) :math:`\\log \\mathcal N(x_o; \\mu_{c,o}, \\Sigma_{c,oo})` over the observed entries."""
        if self.covariance_type == "diag":
            variances = jnp.asarray(self.covariances)
            return _diag_loglik(jnp.asarray(self.means), 1.0 / variances, jnp.log(variances) + _LOG_2PI, x)
        observed = ~np.isnan(x)
        partial = observed.any(-1) & ~observed.all(-1)
        out = np.array(_full_loglik(jnp.asarray(self.means), jnp.asarray(self.covariances), x))
        if partial.any():
            idx = np.nonzero(partial)
            out[idx] = np.asarray(_masked_full_loglik(self.means, self.covariances, x[idx]))
        return jnp.asarray(out)

    def moments(self, x):
        """Per step and component, :math:`E[x]` (N,T,C,D) and :math:`E[x x^T]` (or :math:`E[x^2]`)
        with missing entries imputed by their conditional Gaussian given the observed ones."""
        if self.covariance_type == "diag":
            return _diag_moments(jnp.asarray(self.means), jnp.asarray(self.covariances), x)
        return _full_moments(jnp.asarray(self.means), jnp.asarray(self.covariances), x)

    def stats(self, x, weights):
        """Weighted sufficient statistics; ``weights`` (N, T, C), zero where x is wholly missing."""
        present = ~np.all(np.isnan(x), axis=-1)
        weights = jnp.where(present[..., None], weights, 0.0)
        if np.all(present == ~np.isnan(x).any(-1)):  # no partially observed step: plain sums
            xf = jnp.asarray(np.nan_to_num(x))
            s1 = jnp.einsum("ntc,ntd->cd", weights, xf)
            if self.covariance_type == "diag":
                s2 = jnp.einsum("ntc,ntd->cd", weights, xf**2)
            else:
                s2 = jnp.einsum("ntc,ntd,nte->cde", weights, xf, xf)
        else:
            ex, exx = self.moments(x)
            s1 = jnp.einsum("ntc,ntcd->cd", weights, ex)
            sub = "ntc,ntcd->cd" if self.covariance_type == "diag" else "ntc,ntcde->cde"
            s2 = jnp.einsum(sub, weights, exx)
        return {"s0": jnp.sum(weights, axis=(0, 1)), "s1": s1, "s2": s2}

    def from_stats(self, stats, covariance_prior=0.0, learn="mc", mean_weight=0.0, mean_prior=0.0):
        """The M-step of the letters in ``learn`` (hmmlearn's: ``m`` means, ``c`` covariances);
        the others stay. Covariances are the scatter about the means in force (new or kept).

        ``mean_weight`` :math:`\\kappa` and ``mean_prior`` :math:`\\mu_0` (hmmlearn's
        ``means_weight`` / ``means_prior``): :math:`\\mu_c = (\\kappa\\mu_0 + \\sum_t\\gamma_{tc}x_t)
        / (\\kappa + N_c)` and the scatter gains :math:`\\kappa(\\mu_c-\\mu_0)(\\mu_c-\\mu_0)^T`, the
        joint maximiser with the term :math:`-\\tfrac{\\kappa}{2}(\\mu_c-\\mu_0)^T\\Sigma_c^{-1}(\\mu_c-\\mu_0)`
        of :meth:`log_prior`."""
        s0, s1, s2 = (np.asarray(stats[k], dtype=np.float64) for k in ("s0", "s1", "s2"))
        has = s0 > 0
        safe = np.where(has, s0, 1.0)
        means = np.where(has[:, None], s1 / safe[:, None], self.means)
        kappa = float(mean_weight)
        if kappa < 0:
            raise ModelError(f"mean_weight must be >= 0, got {mean_weight!r}")
        prior = np.broadcast_to(np.asarray(mean_prior, dtype=np.float64), self.means.shape)
        if "m" not in learn or kappa > 0:
            means = self.means if "m" not in learn else (kappa * prior + s1) / (kappa + s0[:, None])
            off = means - prior
            # scatter about these means, s2 - mu s1' - s1 mu' + s0 mu mu' + kappa off off', written as
            # s2 - mu s1 of an equivalent s1 so that the branches below apply unchanged
            if self.covariance_type == "diag":
                s2 = s2 - 2 * means * s1 + 2 * s0[:, None] * means**2 + kappa * off**2
            else:
                outer = np.einsum("cd,ce->cde", means, s1)
                s2 = (s2 - outer - np.swapaxes(outer, -1, -2)
                      + 2 * s0[:, None, None] * np.einsum("cd,ce->cde", means, means)
                      + kappa * np.einsum("cd,ce->cde", off, off))
            s1 = s0[:, None] * means
        if "c" not in learn:
            return GaussianEmission(means, self.covariances, self.kind)
        if self.kind == "tied":
            scatter = (s2 - np.einsum("cd,ce->cde", means, s1)).sum(axis=0)
            cov = (scatter + covariance_prior * np.eye(self.dim)) / max(float(s0.sum()), np.finfo(float).tiny)
            cov = np.broadcast_to(0.5 * (cov + cov.T), self.covariances.shape).copy()
        elif self.covariance_type == "diag":
            cov = (s2 - means * s1 + covariance_prior) / safe[:, None]
            if self.kind == "spherical":
                cov = np.repeat(cov.mean(axis=1, keepdims=True), self.dim, axis=1)
            cov = np.where(has[:, None], cov, self.covariances)
        else:
            scatter = s2 - np.einsum("cd,ce->cde", means, s1)
            cov = (scatter + covariance_prior * np.eye(self.dim)) / safe[:, None, None]
            cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
            cov = np.where(has[:, None, None], cov, self.covariances)
        return GaussianEmission(means, cov, self.kind)

    def log_prior(self, covariance_prior=0.0, mean_weight=0.0, mean_prior=0.0):
        """Improper inverse-Wishart-style prior :math:`\\log p(\\Sigma) = -\\tfrac{\\psi}{2}\\mathrm{tr}\\,\\Sigma^{-1}`,
        plus :math:`-\\tfrac{\\kappa}{2}\\sum_c(\\mu_c-\\mu_0)^T\\Sigma_c^{-1}(\\mu_c-\\mu_0)` for a mean prior."""
        value = 0.0
        if mean_weight:
            off = self.means - np.broadcast_to(np.asarray(mean_prior, dtype=np.float64), self.means.shape)
            if self.covariance_type == "diag":
                value = float(-0.5 * mean_weight * np.sum(off**2 / self.covariances))
            else:
                value = float(-0.5 * mean_weight * np.einsum("cd,cd->", off, np.linalg.solve(self.covariances, off[..., None])[..., 0]))
        return value + self._covariance_log_prior(covariance_prior)

    def _covariance_log_prior(self, covariance_prior):
        if covariance_prior == 0:
            return 0.0
        if self.kind == "tied":
            return float(-0.5 * covariance_prior * np.trace(np.linalg.inv(self.covariances[0])))
        if self.covariance_type == "diag":
            return float(-0.5 * covariance_prior * np.sum(1.0 / self.covariances))
        return float(-0.5 * covariance_prior * np.trace(np.linalg.inv(self.covariances), axis1=-2, axis2=-1).sum())


@jax.jit
def _diag_loglik(means, precisions, log_norms, x):
    """(N, T, C) from ``precisions`` :math:`1 / \\sigma^2_{cd}` and ``log_norms``
    :math:`\\log \\sigma^2_{cd} + \\log 2\\pi` (C, D); NaN entries of x are left out."""
    observed = ~jnp.isnan(x)  # (N, T, D)
    filled = jnp.where(observed, x, 0.0)
    total = jnp.zeros(x.shape[:-1] + means.shape[:1], x.dtype)  # (N, T, C)
    for d in range(x.shape[-1]):  # unrolled: XLA's CPU reduction over a short minor axis is slow
        diff = filled[..., d : d + 1] - means[:, d]
        total = total + jnp.where(observed[..., d : d + 1], diff * diff * precisions[:, d] + log_norms[:, d], 0.0)
    return -0.5 * total


@jax.jit
def _full_loglik(means, covariances, x):
    chol = jnp.linalg.cholesky(covariances)  # (C, D, D)
    D = means.shape[-1]
    chol_inv = jax.scipy.linalg.solve_triangular(chol, jnp.broadcast_to(jnp.eye(D), chol.shape), lower=True)
    diff = jnp.nan_to_num(x)[..., None, :] - means  # (N, T, C, D)
    y = jnp.einsum("ced,ntcd->ntce", chol_inv, diff)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    out = -0.5 * (jnp.sum(y**2, axis=-1) + log_det + D * _LOG_2PI)
    present = ~jnp.all(jnp.isnan(x), axis=-1)
    return jnp.where(present[..., None], out, 0.0)


def _observed_block(covariances, observed):
    """:math:`\\Sigma` with missing rows/columns replaced by the identity: (P, C, D, D)."""
    both = observed[:, None, :, None] & observed[:, None, None, :]
    eye = jnp.eye(covariances.shape[-1])
    return jnp.where(both, covariances[None], eye)


@jax.jit
def _masked_full_loglik(means, covariances, x):
    """(P, C) log-densities of partially observed rows x (P, D): marginal over the missing entries."""
    observed = ~jnp.isnan(x)
    sigma = _observed_block(covariances, observed)
    chol = jnp.linalg.cholesky(sigma)
    diff = jnp.where(observed[:, None, :], jnp.nan_to_num(x)[:, None, :] - means[None], 0.0)
    y = jax.scipy.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    d_obs = jnp.sum(observed, axis=-1)[:, None]
    return -0.5 * (jnp.sum(y**2, axis=-1) + log_det + d_obs * _LOG_2PI)


@jax.jit
def _diag_moments(means, variances, x):
    observed = ~jnp.isnan(x)[..., None, :]
    xf = jnp.nan_to_num(x)[..., None, :]
    ex = jnp.where(observed, xf, means)
    exx = jnp.where(observed, xf**2, means**2 + variances)
    return ex, exx


@jax.jit
def _full_moments(means, covariances, x):
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    observed = ~jnp.isnan(flat)
    sigma = _observed_block(covariances, observed)  # (P, C, D, D)
    both = observed[:, None, :, None] & observed[:, None, None, :]
    w = jnp.where(both, jnp.linalg.inv(sigma), 0.0)  # embedded inverse of the observed block
    diff = jnp.where(observed[:, None, :], jnp.nan_to_num(flat)[:, None, :] - means[None], 0.0)
    gain = jnp.einsum("cde,pcef->pcdf", covariances, w)  # Sigma W
    ex = means[None] + jnp.einsum("pcdf,pcf->pcd", gain, diff)
    cov = covariances[None] - jnp.einsum("pcdf,cfe->pcde", gain, covariances)
    exx = cov + ex[..., :, None] * ex[..., None, :]
    C, D = means.shape
    return ex.reshape(shape[:-1] + (C, D)), exx.reshape(shape[:-1] + (C, D, D))


class GaussianSingleEmission(GaussianEmission):
    """One Gaussian per state."""

    def __init__(self, means, covariances, covariance_type, num_states):
        super().__init__(means, covariances, covariance_type)
        if self.means.shape[0] != num_states:
            raise ModelError(f"means must have one row per state (K = {num_states}), got {self.means.shape}")

    def log_likelihoods(self, x):
        return self.component_log_density(x)

    def distribution(self, params, z, observed=None):
        means, cov = params
        if self.covariance_type == "diag":
            d = dist.Normal(means[z], jnp.sqrt(cov[z]))
            return (d.mask(observed) if observed is not None else d).to_event(1)
        return dist.MultivariateNormal(means[z], covariance_matrix=cov[z])

    def expected_stats(self, x, gamma):
        return self.stats(x, gamma)

    def from_stats(self, stats, covariance_prior=0.0, learn="mc", mean_weight=0.0, mean_prior=0.0, **_):
        new = GaussianEmission.from_stats(self, stats, covariance_prior, learn, mean_weight, mean_prior)
        return GaussianSingleEmission(new.means, new.covariances, self.kind, self.means.shape[0])

    def log_prior(self, covariance_prior=0.0, mean_weight=0.0, mean_prior=0.0, **_):
        return GaussianEmission.log_prior(self, covariance_prior, mean_weight, mean_prior)


class GaussianMixtureEmission:
    """:math:`p(x \\mid z = k) = \\sum_m w_{km} \\mathcal N(x; \\mu_{km}, \\Sigma_{km})`."""

    family = "gaussian_mixture"
    event_ndim = 1

    def __init__(self, weights, means, covariances, covariance_type, num_states):
        self.weights = _probability_table(weights, "weights")
        if self.weights.ndim != 2 or self.weights.shape[0] != num_states:
            raise ModelError(f"weights must have shape (K={num_states}, n_mix), got {self.weights.shape}")
        K, Mix = self.weights.shape
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 3 or means.shape[:2] != (K, Mix):
            raise ModelError(f"means must have shape (K={K}, n_mix={Mix}, D), got {means.shape}")
        cov = np.asarray(covariances, dtype=np.float64)
        D = means.shape[-1]
        if covariance_type not in ("full", "diag"):
            raise ModelError(f"a Gaussian-mixture emission takes covariance_type 'full' or 'diag', got {covariance_type!r}")
        want = (K, Mix, D, D) if covariance_type == "full" else (K, Mix, D)
        if cov.shape != want:
            raise ModelError(f"covariances must have shape {want} for {covariance_type!r}, got {cov.shape}")
        self.components = GaussianEmission(means.reshape(K * Mix, D), cov.reshape((K * Mix,) + want[2:]), covariance_type)
        self.covariance_type = covariance_type
        self.dim = D

    @property
    def means(self):
        return self.components.means.reshape(self.weights.shape + (self.dim,))

    @property
    def covariances(self):
        return self.components.covariances.reshape(self.weights.shape + self.components.covariances.shape[1:])

    def params(self):
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    def prepare(self, x, lengths):
        return self.components.prepare(x, lengths)

    def _joint(self, x):
        """(N, T, K, Mix) :math:`\\log w_{km} + \\log \\mathcal N(x; \\mu_{km}, \\Sigma_{km})`."""
        K, Mix = self.weights.shape
        dens = self.components.component_log_density(x)
        return dens.reshape(dens.shape[:2] + (K, Mix)) + jnp.log(self.weights)

    def log_likelihoods(self, x):
        out = jax.nn.logsumexp(self._joint(x), axis=-1)
        present = ~np.all(np.isnan(x), axis=-1)
        return jnp.where(present[..., None], out, 0.0)

    def distribution(self, params, z, observed=None):
        weights, means, cov = params
        if self.covariance_type == "diag":
            tril = jnp.sqrt(cov)[..., :, None] * jnp.eye(self.dim)
        else:
            tril = jnp.linalg.cholesky(cov)
        return _StateMixture(weights[z], means[z], tril[z])

    def expected_stats(self, x, gamma):
        joint = self._joint(x)
        resp = jnp.exp(joint - jax.nn.logsumexp(joint, axis=-1, keepdims=True)) * gamma[..., None]
        present = ~np.all(np.isnan(x), axis=-1)
        resp = jnp.where(present[..., None, None], resp, 0.0)
        stats = self.components.stats(x, resp.reshape(resp.shape[:2] + (-1,)))
        stats["mix"] = jnp.sum(resp, axis=(0, 1))
        return stats

    def from_stats(self, stats, pseudo_count=0.0, covariance_prior=0.0, **_):
        weights = _normalise_counts(stats["mix"], pseudo_count, self.weights)
        comps = self.components.from_stats(stats, covariance_prior)
        K, Mix = self.weights.shape
        return GaussianMixtureEmission(
            weights,
            comps.means.reshape(K, Mix, self.dim),
            comps.covariances.reshape((K, Mix) + comps.covariances.shape[1:]),
            self.covariance_type,
            K,
        )

    def log_prior(self, pseudo_count=0.0, covariance_prior=0.0, **_):
        return _dirichlet_log_density(self.weights, pseudo_count) + self.components.log_prior(covariance_prior)


class _StateMixture(dist.Distribution):
    """:math:`\\sum_m w_m \\mathcal N(x; \\mu_m, L_m L_m^\\top)` with batched ``weights`` (..., M),
    ``means`` (..., M, D) and ``scale_tril`` (..., M, D, D) (one state's mixture per batch entry).

    ``MixtureSameFamily`` reshapes its component batch to a fixed shape and fails on the extra
    leading dimensions that enumerating the state adds; this log-density only broadcasts.
    """

    arg_constraints = {
        "weights": dist.constraints.simplex,
        "means": dist.constraints.independent(dist.constraints.real_vector, 1),  # (M, D) per entry
        "scale_tril": dist.constraints.independent(dist.constraints.lower_cholesky, 1),  # (M, D, D)
    }
    support = dist.constraints.real_vector

    def __init__(self, weights, means, scale_tril, *, validate_args=None):
        self.weights, self.means, self.scale_tril = weights, means, scale_tril
        batch_shape = jnp.broadcast_shapes(
            jnp.shape(weights)[:-1], jnp.shape(means)[:-2], jnp.shape(scale_tril)[:-3]
        )
        super().__init__(batch_shape=batch_shape, event_shape=jnp.shape(means)[-1:], validate_args=validate_args)

    def log_prob(self, value):
        D = self.means.shape[-1]
        diff = value[..., None, :] - self.means  # (..., M, D)
        tril = jnp.broadcast_to(self.scale_tril, diff.shape + (D,))
        y = jax.scipy.linalg.solve_triangular(tril, diff[..., None], lower=True)[..., 0]
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), axis=-1)
        comp = -0.5 * jnp.sum(y**2, axis=-1) - half_log_det - 0.5 * D * _LOG_2PI  # (..., M)
        return jax.nn.logsumexp(comp + jnp.log(self.weights), axis=-1)

    def sample(self, key, sample_shape=()):
        k_mix, k_normal = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        M, D = self.means.shape[-2:]
        m = jax.random.categorical(k_mix, jnp.log(self.weights), shape=shape)
        means = jnp.broadcast_to(self.means, shape + (M, D))
        tril = jnp.broadcast_to(self.scale_tril, shape + (M, D, D))
        pick = m[..., None, None]
        mean = jnp.take_along_axis(means, pick, axis=-2)[..., 0, :]
        scale = jnp.take_along_axis(tril, pick[..., None], axis=-3)[..., 0, :, :]
        noise = jax.random.normal(k_normal, shape + (D,))
        return mean + jnp.einsum("...de,...e->...d", scale, noise)


__all__ = ["CategoricalEmission", "MultinomialEmission", "GaussianEmission", "GaussianSingleEmission",
           "GaussianMixtureEmission"]
