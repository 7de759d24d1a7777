"""How close is an answer? Distances between distributions and moment checks for samplers.

- Discrete marginals (exact against approximate inference):
  total variation :math:`\\mathrm{TV}(p, q) = \\tfrac12 \\sum_k |p_k - q_k|` and
  Kullback-Leibler :math:`\\mathrm{KL}(p \\,\\|\\, q) = \\sum_k p_k (\\log p_k - \\log q_k)`
  (with :math:`0 \\log 0 = 0`; infinite where :math:`q_k = 0 < p_k`).
- Samples against samples: the maximum mean discrepancy with a Gaussian kernel
  (Gretton et al. 2012), unbiased U-statistic

  .. math::
      \\widehat{\\mathrm{MMD}}^2 = \\frac{1}{m(m-1)} \\sum_{i \\ne j} k(x_i, x_j)
        + \\frac{1}{n(n-1)} \\sum_{i \\ne j} k(y_i, y_j) - \\frac{2}{mn} \\sum_{i, j} k(x_i, y_j).

- Samples against a Gaussian: moments, the effective sample size, and z-scores
  :math:`(\\bar x - \\mu) / \\sqrt{\\sigma^2 / \\mathrm{ESS}}` whose size says whether a sampler's
  error is what its ESS allows; the KL divergence between two Gaussians in closed form.

References:
    Gretton, Borgwardt, Rasch, Schölkopf and Smola (2012). A kernel two-sample test. JMLR.
    Geyer (1992). Practical Markov chain Monte Carlo. Statistical Science.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import DataError

__all__ = [
    "tv_distance",
    "kl_divergence",
    "marginal_distances",
    "mmd",
    "wasserstein2",
    "mode_coverage",
    "sample_moments",
    "effective_sample_size",
    "moment_zscores",
    "gaussian_kl",
    "bits_per_dim",
]


def _probabilities(name, p):
    p = np.asarray(p, dtype=float)
    if p.ndim == 0:
        raise DataError(f"{name} must have a last axis over states, got a scalar")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise DataError(f"{name} holds negative, NaN or infinite probabilities")
    if not np.allclose(p.sum(-1), 1.0, atol=1e-6):
        raise DataError(f"{name} does not sum to one over its last axis (sums {p.sum(-1)})")
    return p


def _pair(p, q):
    p, q = _probabilities("p", p), _probabilities("q", q)
    if p.shape != q.shape:
        raise DataError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return p, q


def tv_distance(p, q) -> np.ndarray:
    """Total variation :math:`\\tfrac12 \\sum_k |p_k - q_k|` over the last axis.

    Example:
        >>> float(tv_distance([0.5, 0.5], [1.0, 0.0]))
        0.5
    """
    p, q = _pair(p, q)
    return 0.5 * np.abs(p - q).sum(-1)


def kl_divergence(p, q) -> np.ndarray:
    """:math:`\\mathrm{KL}(p \\| q) = \\sum_k p_k \\log(p_k / q_k)` over the last axis (``inf`` where
    ``q`` misses mass of ``p``).

    Example:
        >>> round(float(kl_divergence([0.5, 0.5], [0.25, 0.75])), 6)
        0.143841
    """
    p, q = _pair(p, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(-1)


def marginal_distances(reference: Mapping, approx: Mapping) -> dict:
    """Per site, TV and KL(reference || approx) between two dicts of marginals.

    Returns ``{site: {"tv": float, "kl": float}}`` plus ``"max_tv"`` and ``"max_kl"`` over sites.
    Sites of ``reference`` missing from ``approx`` raise :class:`DataError` naming them.
    """
    missing = sorted(set(reference) - set(approx))
    if missing:
        raise DataError(f"approximate marginals lack the sites {missing}")
    out = {site: {"tv": float(np.max(tv_distance(p, approx[site]))),
                  "kl": float(np.max(kl_divergence(p, approx[site])))} for site, p in reference.items()}
    per_site = list(out.values())
    out["max_tv"] = max((d["tv"] for d in per_site), default=0.0)
    out["max_kl"] = max((d["kl"] for d in per_site), default=0.0)
    return out


def _rows(name, x):
    x = jnp.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise DataError(f"{name} must be (n, d) samples with n >= 2, got shape {tuple(x.shape)}")
    return x


@jax.jit
def _mmd2(x, y, bandwidth):
    def gram(a, b):
        d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
        return jnp.exp(-jnp.maximum(d2, 0.0) / (2 * bandwidth**2))

    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    return ((kxx.sum() - jnp.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - jnp.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def mmd(x, y, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD between samples ``x`` (m, d) and ``y`` (n, d), Gaussian kernel
    :math:`k(a, b) = \\exp(-\\|a - b\\|^2 / 2h^2)`; ``h`` defaults to the median pairwise distance
    of the pooled samples (the median heuristic). Can be slightly negative (unbiased estimate).

    Example:
        >>> import numpy as np
        >>> r = np.random.default_rng(0)
        >>> mmd(r.normal(size=(200, 2)), r.normal(size=(200, 2))) < 0.01
        True
    """
    x, y = _rows("x", x), _rows("y", y)
    if x.shape[1] != y.shape[1]:
        raise DataError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if bandwidth is None:
        pooled = jnp.concatenate([x, y])[:1000]
        d = jnp.sqrt(jnp.maximum(jnp.sum((pooled[:, None] - pooled[None]) ** 2, -1), 0.0))
        bandwidth = float(jnp.median(d[jnp.triu_indices(pooled.shape[0], 1)]))
    if not bandwidth > 0:
        raise DataError(f"bandwidth must be positive, got {bandwidth}")
    return float(_mmd2(x, y, bandwidth))


def sample_moments(samples) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over the leading sample axis of draws shaped (S, ...)."""
    s = np.asarray(samples, dtype=float)
    return s.mean(0), s.var(0)


def effective_sample_size(samples, num_chains: int = 1) -> np.ndarray:
    """ESS per coordinate of draws shaped (num_chains * S, ...) chain-major (Geyer's initial
    monotone sequence, NumPyro's estimator)."""
    from numpyro.diagnostics import effective_sample_size as ess

    s = np.asarray(samples, dtype=float)
    if s.shape[0] % num_chains:
        raise DataError(f"{s.shape[0]} draws do not split into {num_chains} chains")
    return np.asarray(ess(s.reshape((num_chains, -1) + s.shape[1:])))


def moment_zscores(samples, mean, var, num_chains: int = 1) -> dict:
    """z-scores of a sampler's mean and variance against the true Gaussian moments.

    With :math:`n_e` the ESS per coordinate, :math:`\\mathrm{se}(\\bar x) = \\sigma/\\sqrt{n_e}` and,
    for a Gaussian target, :math:`\\mathrm{se}(s^2) \\approx \\sigma^2 \\sqrt{2 / n_e}` (the ESS of
    :math:`x^2` can differ from that of :math:`x`; we use the ESS of the squared centred draws).
    Returns ``{"mean": z, "var": z, "ess": ess}`` arrays per coordinate.
    """
    s = np.asarray(samples, dtype=float)
    mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
    ess_x = effective_sample_size(s, num_chains)
    centred2 = (s - mean) ** 2
    ess_x2 = effective_sample_size(centred2, num_chains)
    z_mean = (s.mean(0) - mean) / np.sqrt(var / ess_x)
    # Var[(x-mu)^2] = 2 sigma^4 for a Gaussian
    z_var = (centred2.mean(0) - var) / np.sqrt(2 * var**2 / ess_x2)
    return {"mean": z_mean, "var": z_var, "ess": ess_x, "ess_sq": ess_x2}


def gaussian_kl(mean0, cov0, mean1, cov1) -> float:
    """:math:`\\mathrm{KL}(\\mathcal N_0 \\| \\mathcal N_1) = \\tfrac12 [\\mathrm{tr}(\\Sigma_1^{-1}\\Sigma_0)
    + (\\mu_1 - \\mu_0)^\\top \\Sigma_1^{-1} (\\mu_1 - \\mu_0) - d + \\log\\det\\Sigma_1 - \\log\\det\\Sigma_0]`.

    Example:
        >>> gaussian_kl([0.0], [[1.0]], [0.0], [[1.0]])
        0.0
    """
    m0, m1 = np.atleast_1d(np.asarray(mean0, float)), np.atleast_1d(np.asarray(mean1, float))
    s0, s1 = np.atleast_2d(np.asarray(cov0, float)), np.atleast_2d(np.asarray(cov1, float))
    d = m0.shape[0]
    if m1.shape != (d,) or s0.shape != (d, d) or s1.shape != (d, d):
        raise DataError(f"Gaussian shapes disagree: means {m0.shape}, {m1.shape}; covariances {s0.shape}, {s1.shape}")
    l1 = np.linalg.cholesky(s1)
    solve = np.linalg.solve(s1, np.column_stack([s0, m1 - m0]))
    logdet0 = np.linalg.slogdet(s0)[1]
    logdet1 = 2 * np.log(np.diag(l1)).sum()
    return float(0.5 * (np.trace(solve[:, :d]) + (m1 - m0) @ solve[:, d] - d + logdet1 - logdet0))


def wasserstein2(x, y) -> float:
    """The 2-Wasserstein distance between two empirical distributions of equal size, exactly.

    For ``x`` and ``y`` of shape (n, d) with uniform weights, an optimal coupling is a permutation
    (Birkhoff's theorem), so :math:`W_2^2 = \\min_\\pi \\frac1n \\sum_i \\|x_i - y_{\\pi(i)}\\|^2`, found by
    the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``, :math:`O(n^3)`: a few seconds
    at n = 2,000). Returns :math:`W_2` (not squared), in the data's units.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((3, 2)); y = x + [3.0, 4.0]
        >>> wasserstein2(x, y)
        5.0
    """
    from scipy.optimize import linear_sum_assignment

    x = np.asarray(_rows("x", x))
    y = np.asarray(_rows("y", y))
    if x.shape != y.shape:
        raise DataError(f"x and y must have the same shape (n, d) for the exact assignment, got "
                        f"{x.shape} and {y.shape}")
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)  # (n, n)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def mode_coverage(samples, modes, std: float, *, radius: float = 3.0) -> dict:
    """PacGAN's measures of a sample from a mixture of isotropic Gaussians (Lin et al. 2018).

    Each sample is assigned to its nearest mode; it is *high quality* when it lies within
    ``radius`` standard deviations of that mode. Returns ``modes_captured`` (the number of modes
    with at least one high-quality sample), ``high_quality`` (the fraction of high-quality
    samples) and ``reverse_kl``: :math:`\\mathrm{KL}(\\hat q \\,\\|\\, u) = \\sum_k \\hat q_k
    \\log(K \\hat q_k)`, where :math:`\\hat q` is the distribution of the high-quality samples over
    the K modes and :math:`u` the uniform one (0 when every mode gets its share, :math:`\\log K`
    for a generator collapsed onto one mode; :math:`\\log K` as well when no sample is high quality).

    Example:
        >>> import numpy as np
        >>> modes = np.array([[0.0, 0.0], [10.0, 0.0]])
        >>> mode_coverage(np.array([[0.1, 0.0], [9.9, 0.0], [5.0, 5.0]]), modes, 0.1)["modes_captured"]
        2
    """
    x = np.asarray(_rows("samples", samples))
    modes = np.asarray(modes, dtype=float)
    if modes.ndim != 2 or modes.shape[1] != x.shape[1]:
        raise DataError(f"modes must have shape (K, {x.shape[1]}), got {modes.shape}")
    if not (np.isfinite(std) and std > 0):
        raise DataError(f"std must be positive and finite, got {std}")
    d2 = ((x[:, None, :] - modes[None]) ** 2).sum(-1)  # (n, K)
    nearest = d2.argmin(1)
    good = np.sqrt(d2[np.arange(len(x)), nearest]) <= radius * std
    k = len(modes)
    counts = np.bincount(nearest[good], minlength=k)
    if counts.sum() == 0:
        reverse_kl = float(np.log(k))
    else:
        q = counts / counts.sum()
        nz = q > 0
        reverse_kl = float((q[nz] * np.log(k * q[nz])).sum())
    return {"modes_captured": int((counts > 0).sum()), "high_quality": float(good.mean()),
            "reverse_kl": reverse_kl}


def bits_per_dim(log_likelihood, num_dims: int, *, levels: int | None = None) -> float:
    """Bits per dimension :math:`-\\log_2 P(x) / D` from log-likelihoods in nats (the mean over data).

    .. math::
        \\mathrm{bpd} = \\frac{-\\overline{\\log p(x)}}{D \\ln 2} \\quad\\text{or, with } L
        \\text{ levels,}\\quad \\frac{-\\overline{\\log p(y)} + D \\ln L}{D \\ln 2}
        = \\frac{-\\overline{\\log p(y)}}{D \\ln 2} + \\log_2 L.

    Without ``levels`` the log-likelihood is that of the data themselves (a discrete model, or a
    density on continuous data). With ``levels`` the data were :math:`L` grey values scaled to
    :math:`[0, 1)` and uniformly dequantised, :math:`y = (v + u) / L`, and ``log_likelihood`` is a
    density :math:`\\log p(y)` on :math:`[0, 1)^D`; the discrete likelihood of the grey values obeys
    :math:`\\log P(v) \\ge \\mathbb E_u \\log p(y) - D \\log L` (Theis et al. 2016), so the figure is
    that bound's, in bits per dimension, comparable with discrete models'.

    Args:
        log_likelihood: per-datum :math:`\\log p` in nats (or their mean); finite.
        num_dims: :math:`D`, the dimensions of one datum.
        levels: :math:`L` for dequantised data, else None.

    References:
        Theis, van den Oord and Bethge (2016). A note on the evaluation of generative models. ICLR.

    Example:
        >>> import math
        >>> round(bits_per_dim([-64 * math.log(2.0)], 64), 12)
        1.0
        >>> round(bits_per_dim([0.0], 64, levels=256), 12)
        8.0
    """
    ll = np.asarray(log_likelihood, dtype=np.float64)
    if isinstance(num_dims, bool) or int(num_dims) != num_dims or int(num_dims) < 1:
        raise DataError(f"num_dims must be an integer >= 1, got {num_dims!r}")
    if ll.size == 0:
        raise DataError("log_likelihood is empty")
    if not np.all(np.isfinite(ll)):
        raise DataError("log_likelihood holds NaN or infinite values")
    d = int(num_dims)
    shift = 0.0
    if levels is not None:
        if isinstance(levels, bool) or int(levels) != levels or int(levels) < 2:
            raise DataError(f"levels must be an integer >= 2, got {levels!r}")
        shift = d * float(np.log(int(levels)))
    return float(-(ll.mean() - shift) / (d * np.log(2.0)))


# The log-likelihood estimators of latent-variable programs (importance sampling, the IWAE bound,
# the ELBO) live in inference.likelihood, which needs torch and Pyro; they are re-exported here
# lazily so that importing this module stays light.
_LIKELIHOOD = ("importance_log_likelihood", "iwae_bound", "elbo", "log_weights")


def __getattr__(name):
    if name in _LIKELIHOOD:
        from inference import likelihood

        return getattr(likelihood, name)
    raise AttributeError(f"module 'inference.evaluate' has no attribute {name!r}")
