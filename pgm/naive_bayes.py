"""Naive Bayes: a class, then features independent given the class, as one NumPyro program.

.. math::
    y_n \\sim \\mathrm{Categorical}(\\pi), \\qquad
    p(x_n \\mid y_n = k) = \\prod_{j=1}^F p(x_{nj} \\mid \\theta_{kj})

with, per feature kind,

- ``"categorical"``: :math:`x_{nj} \\in \\{0, \\dots, C_j - 1\\}`,
  :math:`p(x_{nj} = c \\mid y = k) = \\theta_{kjc}`;
- ``"bernoulli"``: :math:`x_{nj} \\in \\{0, 1\\}`, :math:`p(x_{nj} = 1 \\mid y = k) = \\theta_{kj}`;
- ``"gaussian"``: :math:`x_{nj} \\mid y = k \\sim \\mathcal N(\\mu_{kj}, \\sigma^2_{kj})`;
- ``"multinomial"``: a row of counts :math:`x_n \\mid y = k \\sim \\mathrm{Mult}(\\textstyle\\sum_j x_{nj},
  \\theta_{k\\cdot})` (scikit-learn's ``MultinomialNB``: :math:`\\theta_{kj} = (N_{kj} + \\alpha) /
  (N_k + \\alpha F)`; the multinomial coefficient is the same for every class, so the class
  posteriors agree with scikit-learn's; no missing counts, and :meth:`NaiveBayes.sample` needs
  the data's totals, so it is refused).

Classification is Bayes' rule on the program: :math:`\\log p(x_n, y_n = k)` is read off the trace of
the program run with ``y`` set to each class in turn (vmapped over classes), and
:math:`p(y_n = k \\mid x_n) = \\exp(\\log p(x_n, k) - \\log \\sum_{k'} p(x_n, k'))`, exact
enumeration over the class. A missing feature (NaN) is marginalised, not imputed: the program
masks its factor, and :math:`\\sum_{x_{nj}} p(x_{nj} \\mid k) = 1` makes that the exact marginal.

Learning:

1. Supervised (:meth:`NaiveBayes.fit`): closed-form counts with additive (Laplace / Lidstone)
   smoothing :math:`\\alpha` for categorical and Bernoulli features,
   :math:`\\theta_{kjc} = (N_{kjc} + \\alpha) / (N_{kj} + \\alpha C_j)`, and maximum-likelihood
   means and variances plus :math:`\\epsilon = ` ``var_smoothing`` :math:`\\cdot \\max_j
   \\mathrm{Var}(x_j)` for Gaussian features: the estimators of scikit-learn's ``CategoricalNB``,
   ``BernoulliNB`` and ``GaussianNB``, so the probabilities agree with them.
2. Semi-supervised (:func:`fit_semisupervised`): rows with label ``-1`` are unlabelled; EM
   (:func:`inference.em.fit`) replaces their one-hot label by the posterior
   :math:`p(y_n \\mid x_n)` in the counts (Nigam, McCallum, Thrun and Mitchell 2000). The
   smoothing is a Dirichlet prior, so EM maximises :math:`\\log p(x, y_L) + \\alpha \\sum \\log\\theta`.

References:
    Nigam, McCallum, Thrun and Mitchell (2000). Text classification from labeled and unlabeled
    documents using EM. Machine Learning 39.
    Murphy (2012). Machine Learning: a Probabilistic Perspective, section 3.5.
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

__all__ = ["KINDS", "NaiveBayes", "ComplementNB", "LabelledData", "naive_bayes_program", "fit_semisupervised"]

KINDS = ("categorical", "bernoulli", "gaussian", "multinomial")


# --------------------------------------------------------------------------- the program
#        pi          theta[k, j]
#         |              |
#  +------v--------------|-----------+
#  |    y[n] ----> x[n, j]   F       |
#  |                   N             |
#  +---------------------------------+
def naive_bayes_program(params: dict, kind: str, x=None, y=None, n=None):
    """The naive Bayes program on a parameter pytree.

    ``params``: ``{"class_probs": (K,)}`` plus ``{"probs": (K, F, C)}`` (categorical),
    ``{"probs": (K, F)}`` (Bernoulli) or ``{"means": (K, F), "variances": (K, F)}`` (Gaussian).
    ``x``: ``(N, F)`` floats, NaN for a missing feature (masked out of the likelihood); ``y``:
    ``(N,)`` class indices, or None to leave the class latent (enumerable).
    """
    if x is not None:
        n = x.shape[0]
    with numpyro.plate("data", n):
        c = numpyro.sample("y", dist.Categorical(probs=params["class_probs"]), obs=y,
                           infer={"enumerate": "parallel"})
        if x is None:
            mask, value = True, None
        else:
            mask = ~jnp.isnan(x)
            value = jnp.where(mask, x, 0.0)
        if kind == "multinomial":
            if value is None:
                raise ModelError("a multinomial naive Bayes cannot simulate: the row totals come from the data")
            numpyro.sample("x", dist.Multinomial(total_count=jnp.sum(value, -1), probs=params["probs"][c]),
                           obs=value)
            return
        if kind == "categorical":
            value = None if value is None else value.astype(jnp.int32)
            features = dist.Categorical(probs=params["probs"][c])
        elif kind == "bernoulli":
            features = dist.Bernoulli(probs=params["probs"][c])
        else:
            features = dist.Normal(params["means"][c], jnp.sqrt(params["variances"][c]))
        numpyro.sample("x", features.mask(mask).to_event(1), obs=value)


@partial(jax.jit, static_argnames="kind")
def class_log_joint(params: dict, kind: str, x):
    """``(N, K)`` array of :math:`\\log p(x_n, y_n = k)` from the program's trace, one class at a time
    (vmapped): the program is the only place the likelihood is written."""
    n = x.shape[0]

    def one_class(k):
        y = jnp.full(n, k)
        trace = handlers.trace(partial(naive_bayes_program, params, kind)).get_trace(x=x, y=y)
        return sum(site["fn"].log_prob(site["value"]) for site in trace.values() if site["type"] == "sample")

    return jax.vmap(one_class)(jnp.arange(params["class_probs"].shape[0])).T


@partial(jax.jit, static_argnames=("kind", "n_categories_max"))
def sufficient_stats(resp, kind: str, x, n_categories_max: int | None = None):
    """Counts under (soft) labels ``resp`` ``(N, K)``; missing features (NaN) contribute nothing."""
    mask = ~jnp.isnan(x)
    value = jnp.where(mask, x, 0.0)
    m = mask.astype(x.dtype)
    stats = {"class_counts": resp.sum(0)}
    if kind == "categorical":
        onehot = jax.nn.one_hot(value.astype(jnp.int32), n_categories_max, dtype=x.dtype) * m[..., None]
        stats["counts"] = jnp.einsum("nk,nfc->kfc", resp, onehot)
    elif kind == "multinomial":
        stats["counts"] = resp.T @ value
    elif kind == "bernoulli":
        stats["ones"] = resp.T @ (value * m)
        stats["totals"] = resp.T @ m
    else:
        shift = jnp.sum(value, 0) / jnp.maximum(m.sum(0), 1.0)
        centred = (value - shift) * m
        stats.update(totals=resp.T @ m, s1=resp.T @ centred, s2=resp.T @ (centred * centred), shift=shift)
    return stats


@dataclasses.dataclass(frozen=True)
class LabelledData:
    """Features with labels, ``-1`` for an unlabelled row: the data of semi-supervised EM."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


# --------------------------------------------------------------------------- the model
class NaiveBayes:
    """A naive Bayes classifier as a generative program (see the module docstring).

    Args:
        class_probs: ``(K,)`` prior class probabilities.
        kind: ``"categorical"``, ``"bernoulli"`` or ``"gaussian"``.
        params: ``{"probs": (K, F, C)}`` (categorical; row ``[k, j, :C_j]`` sums to one, the
            rest zero), ``{"probs": (K, F)}`` (Bernoulli) or ``{"means", "variances"}`` ``(K, F)``.
        n_categories: ``(F,)`` numbers of categories :math:`C_j` (categorical only; inferred from
            the non-zero columns of ``probs`` when omitted).
        alpha: the smoothing the M-step uses; binarize: threshold applied to features before a
            Bernoulli model reads them (``x > binarize``), None when they are 0/1 already;
        epsilon: the variance floor the Gaussian M-step adds.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0, 1], [0, 1], [1, 0], [1, 1]], dtype=float)
        >>> y = np.array([0, 0, 1, 1])
        >>> nb = NaiveBayes.fit(x, y, "bernoulli", alpha=1.0)
        >>> nb.predict_proba(np.array([[0.0, np.nan]])).round(3)  # second feature missing
        array([[0.75, 0.25]])
    """

    def __init__(self, class_probs, kind: str, params: dict, *, n_categories=None, alpha: float = 1.0,
                 binarize: float | None = None, epsilon: float = 0.0):
        if kind not in KINDS:
            raise ModelError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.class_probs = np.asarray(class_probs, dtype=np.float64)
        self.params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self.alpha, self.binarize, self.epsilon = float(alpha), binarize, float(epsilon)
        k = self.class_probs.shape[0]
        if self.class_probs.ndim != 1 or not (np.all(self.class_probs >= 0) and abs(self.class_probs.sum() - 1) <= 1e-8):
            raise ModelError(f"class_probs must be a probability vector (NaN fails), got {self.class_probs}")
        need = {"categorical": ("probs",), "bernoulli": ("probs",), "gaussian": ("means", "variances"),
                "multinomial": ("probs",)}[kind]
        for name in need:
            if name not in self.params:
                raise ModelError(f"a {kind} naive Bayes needs params[{name!r}]")
            if self.params[name].shape[0] != k:
                raise ModelError(f"params[{name!r}] has {self.params[name].shape[0]} classes, class_probs {k}")
            if not np.all(np.isfinite(self.params[name])):
                raise ModelError(f"params[{name!r}] holds NaN or infinite values")
        if kind == "categorical":
            probs = self.params["probs"]
            if probs.ndim != 3 or not np.allclose(probs.sum(-1), 1.0, atol=1e-8) or np.any(probs < 0):
                raise ModelError("categorical probs must be (K, F, C) with rows summing to one")
            if n_categories is None:
                n_categories = (probs.max(axis=0) > 0).sum(-1)
            self.n_categories = np.broadcast_to(np.asarray(n_categories, dtype=np.int64), probs.shape[1:2]).copy()
        else:
            self.n_categories = None
        if kind == "multinomial":
            probs = self.params["probs"]
            if probs.ndim != 2 or np.any(probs < 0) or not np.allclose(probs.sum(-1), 1.0, atol=1e-8):
                raise ModelError("multinomial probs must be (K, F) with rows summing to one")
        if kind == "bernoulli" and np.any((self.params["probs"] < 0) | (self.params["probs"] > 1)):
            raise ModelError("Bernoulli probs must lie in [0, 1]")
        if kind == "gaussian" and np.any(self.params["variances"] <= 0):
            j = np.argwhere(self.params["variances"] <= 0)[0]
            raise ModelError(f"variance of class {j[0]}, feature {j[1]} is not positive; raise var_smoothing")

    @property
    def n_classes(self) -> int:
        return self.class_probs.shape[0]

    @property
    def n_features(self) -> int:
        return self.params["probs" if self.kind != "gaussian" else "means"].shape[1]

    def _pytree(self):
        return {"class_probs": jnp.asarray(self.class_probs), **{k: jnp.asarray(v) for k, v in self.params.items()}}

    # ------------------------------------------------------------------ program
    def model(self, x=None, y=None, n=None):
        """The generative program (see :func:`naive_bayes_program`)."""
        return naive_bayes_program(self._pytree(), self.kind, x=x, y=y, n=n)

    def sample(self, key, n: int) -> dict:
        """``{"y": (n,), "x": (n, F)}`` by running the program forward."""
        trace = handlers.trace(handlers.seed(self.model, as_key(key))).get_trace(n=int(n))
        return {name: np.asarray(site["value"]) for name, site in trace.items() if site["type"] == "sample"}

    # ------------------------------------------------------------------ data
    def prepare(self, x) -> jnp.ndarray:
        """Check features (shape, values, NaN = missing) and return them as floats."""
        x = np.array(x, dtype=np.float64, copy=True)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise DataError(f"x must be (N, {self.n_features}), got shape {x.shape}")
        if np.isinf(x).any():
            raise DataError(f"x holds an infinite value at {tuple(np.argwhere(np.isinf(x))[0])}")
        missing = np.isnan(x)
        if self.kind == "multinomial" and (missing.any() or np.any(x < 0)):
            i, j = np.argwhere(missing | (x < 0))[0]
            raise DataError(f"multinomial counts must be non-negative and present; row {i}, feature {j} is {x[i, j]}")
        if self.kind == "bernoulli" and self.binarize is not None:
            x = np.where(missing, np.nan, (x > self.binarize).astype(np.float64))
        if self.kind == "bernoulli":
            bad = ~missing & (x != 0) & (x != 1)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise DataError(f"Bernoulli feature {j} of row {i} is {x[i, j]}, not 0/1 (set binarize)")
        if self.kind == "categorical":
            bad = ~missing & ((x != np.round(x)) | (x < 0) | (x >= self.n_categories[None, :]))
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise DataError(f"categorical feature {j} of row {i} is {x[i, j]}, not a category in "
                                f"0..{self.n_categories[j] - 1}")
        return jnp.asarray(x)

    # ------------------------------------------------------------------ Bayes' rule
    def log_joint(self, x) -> np.ndarray:
        """``(N, K)``: :math:`\\log p(x_n, y_n = k)`, missing features marginalised."""
        return np.asarray(class_log_joint(self._pytree(), self.kind, self.prepare(x)))

    def log_prob(self, x) -> np.ndarray:
        """:math:`\\log p(x_n) = \\log \\sum_k p(x_n, k)` per row."""
        return np.asarray(logsumexp(self.log_joint(x), axis=1))

    def predict_log_proba(self, x) -> np.ndarray:
        joint = self.log_joint(x)
        return np.asarray(joint - logsumexp(joint, axis=1, keepdims=True))

    def predict_proba(self, x) -> np.ndarray:
        """:math:`p(y_n = k \\mid x_n)`, shape ``(N, K)``."""
        return np.exp(self.predict_log_proba(x))

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.log_joint(x), axis=1)

    # ------------------------------------------------------------------ learning
    @classmethod
    def fit(cls, x, y, kind: str, *, n_classes: int | None = None, alpha: float = 1.0,
            var_smoothing: float = 1e-9, n_categories=None, binarize: float | None = None,
            sample_weight=None) -> "NaiveBayes":
        """Maximum a posteriori (smoothed) parameters from labelled data (no ``-1`` labels).

        ``sample_weight``: ``(N,)`` non-negative row weights (scikit-learn's ``sample_weight``):
        every count and moment is the weighted sum, :math:`N_{kjc} = \\sum_n w_n [y_n = k, x_{nj} = c]`;
        the Gaussian variance floor stays ``var_smoothing`` times the largest unweighted feature
        variance, as in scikit-learn.
        """
        if kind not in KINDS:
            raise ModelError(f"kind must be one of {KINDS}, got {kind!r}")
        x = np.asarray(x, dtype=np.float64)
        y = _check_labels(y, len(x), n_classes, allow_unlabelled=False)
        template = cls._template(x, y, kind, n_classes=n_classes, alpha=alpha, var_smoothing=var_smoothing,
                                 n_categories=n_categories, binarize=binarize)
        if sample_weight is None:
            return template.from_stats(template.expected_stats(LabelledData(x, y))[0])
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (len(x),) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise DataError(f"sample_weight must be ({len(x)},) finite, non-negative and not all zero, "
                            f"got shape {w.shape}")
        resp = jax.nn.one_hot(jnp.asarray(y), template.n_classes, dtype=jnp.float64) * jnp.asarray(w)[:, None]
        width = int(template.params["probs"].shape[-1]) if kind == "categorical" else None
        return template.from_stats(sufficient_stats(resp, kind, template.prepare(x), width))

    @classmethod
    def _template(cls, x, y, kind, *, n_classes, alpha, var_smoothing, n_categories, binarize):
        """A model of the right shape whose parameters are replaced by the first M-step."""
        if x.ndim != 2:
            raise DataError(f"x must be (N, F), got shape {x.shape}")
        if alpha < 0:
            raise DataError(f"alpha must be non-negative, got {alpha}")
        k = int(n_classes if n_classes is not None else y.max() + 1)
        f = x.shape[1]
        uniform = np.full(k, 1.0 / k)
        if kind == "categorical":
            if n_categories is None:
                observed = np.where(np.isnan(x), -1, x)
                n_categories = np.maximum(observed.max(axis=0), 0).astype(np.int64) + 1
            n_categories = np.broadcast_to(np.asarray(n_categories, dtype=np.int64), (f,))
            probs = (np.arange(n_categories.max())[None, :] < n_categories[:, None]) / n_categories[:, None]
            return cls(uniform, kind, {"probs": np.broadcast_to(probs, (k, *probs.shape))},
                       n_categories=n_categories, alpha=alpha)
        if kind == "bernoulli":
            return cls(uniform, kind, {"probs": np.full((k, f), 0.5)}, alpha=alpha, binarize=binarize)
        if kind == "multinomial":
            return cls(uniform, kind, {"probs": np.full((k, f), 1.0 / f)}, alpha=alpha)
        epsilon = var_smoothing * float(np.nanmax(np.nanvar(x, axis=0)))
        return cls(uniform, kind, {"means": np.zeros((k, f)), "variances": np.ones((k, f))}, alpha=alpha,
                   epsilon=epsilon)

    # ------------------------------------------------------------------ EM hooks
    def expected_stats(self, data: LabelledData):
        """E-step: counts under one-hot labels (labelled rows) or :math:`p(y_n \\mid x_n)`
        (rows labelled ``-1``), and :math:`\\log p(x, y_L) = \\sum_{L} \\log p(x_n, y_n) +
        \\sum_{U} \\log p(x_n)`."""
        x = self.prepare(data.x)
        y = _check_labels(data.y, x.shape[0], self.n_classes, allow_unlabelled=True)
        joint = class_log_joint(self._pytree(), self.kind, x)
        resp, loglik = _responsibilities(joint, jnp.asarray(y))
        width = int(self.params["probs"].shape[-1]) if self.kind == "categorical" else None
        return sufficient_stats(resp, self.kind, x, width), float(loglik)

    def from_stats(self, stats, alpha: float | None = None) -> "NaiveBayes":
        """M-step: smoothed counts (categorical, Bernoulli), weighted moments plus the variance
        floor (Gaussian); class probabilities are the unsmoothed class frequencies."""
        alpha = self.alpha if alpha is None else float(alpha)
        s = {k: np.asarray(v) for k, v in stats.items()}
        class_probs = s["class_counts"] / s["class_counts"].sum()
        common = dict(alpha=alpha, binarize=self.binarize, epsilon=self.epsilon)
        if self.kind == "categorical":
            valid = np.arange(s["counts"].shape[-1])[None, :] < self.n_categories[:, None]  # (F, C)
            smoothed = np.where(valid, s["counts"] + alpha, 0.0)
            probs = smoothed / smoothed.sum(-1, keepdims=True)
            return NaiveBayes(class_probs, self.kind, {"probs": probs}, n_categories=self.n_categories, **common)
        if self.kind == "bernoulli":
            probs = (s["ones"] + alpha) / (s["totals"] + 2 * alpha)
            return NaiveBayes(class_probs, self.kind, {"probs": probs}, **common)
        if self.kind == "multinomial":
            smoothed = s["counts"] + alpha
            return NaiveBayes(class_probs, self.kind, {"probs": smoothed / smoothed.sum(-1, keepdims=True)}, **common)
        totals = s["totals"]
        if np.any(totals <= 0):
            k, j = np.argwhere(totals <= 0)[0]
            raise DataError(f"class {k} has no observed value of feature {j}: its Gaussian cannot be estimated")
        centred_mean = s["s1"] / totals
        variances = s["s2"] / totals - centred_mean**2 + self.epsilon
        return NaiveBayes(class_probs, self.kind, {"means": centred_mean + s["shift"], "variances": variances},
                          **common)

    def log_prior(self, alpha: float | None = None) -> float:
        """:math:`\\alpha \\sum \\log \\theta` (an unnormalised Dirichlet(:math:`\\alpha + 1`) density),
        the term the smoothed M-step maximises with; 0 for Gaussian features."""
        alpha = self.alpha if alpha is None else float(alpha)
        if self.kind == "gaussian" or alpha == 0:
            return 0.0
        probs = self.params["probs"]
        if self.kind == "bernoulli":
            return float(alpha * np.sum(np.log(probs) + np.log1p(-probs)))
        if self.kind == "multinomial":
            return float(alpha * np.sum(np.log(probs)))
        valid = np.broadcast_to((np.arange(probs.shape[-1])[None, :] < self.n_categories[:, None]), probs.shape)
        return float(alpha * np.sum(np.log(probs[valid])))

    def data_is_complete(self, data: LabelledData) -> bool:
        return bool(np.all(np.asarray(data.y) >= 0))


@jax.jit
def _responsibilities(joint, y):
    """One-hot rows for labelled data, posteriors for unlabelled (``y == -1``), and the log-likelihood."""
    k = joint.shape[1]
    labelled = y >= 0
    log_px = logsumexp(joint, axis=1)
    posterior = jnp.exp(joint - log_px[:, None])
    onehot = jax.nn.one_hot(jnp.where(labelled, y, 0), k, dtype=joint.dtype)
    resp = jnp.where(labelled[:, None], onehot, posterior)
    picked = jnp.take_along_axis(joint, jnp.where(labelled, y, 0)[:, None], axis=1)[:, 0]
    return resp, jnp.sum(jnp.where(labelled, picked, log_px))


def _check_labels(y, n, n_classes, *, allow_unlabelled: bool) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"y must have shape ({n},), got {y.shape}")
    if n == 0:
        raise DataError("x and y hold no rows: a naive Bayes model needs labelled data")
    if y.dtype.kind == "f":
        if np.isnan(y).any():
            raise DataError("labels hold NaN: mark an unlabelled row with -1")
        if np.any(y != np.round(y)):
            raise DataError("labels must be integers")
    y = y.astype(np.int64)
    low = -1 if allow_unlabelled else 0
    high = n_classes if n_classes is not None else y.max() + 1
    bad = (y < low) | (y >= high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"label of row {i} is {y[i]}, outside {low}..{high - 1}")
    return y


def fit_semisupervised(x, y, kind: str, *, n_classes: int | None = None, alpha: float = 1.0,
                       var_smoothing: float = 1e-9, n_categories=None, binarize: float | None = None,
                       max_iter: int = 100, tol: float = 1e-8, progress: bool = False):
    """Semi-supervised EM (Nigam et al. 2000): start from the model fitted on the labelled rows,
    then :func:`inference.em.fit` on all rows (label ``-1`` = unlabelled). Returns the EM
    :class:`~inference.result.Result`; ``params`` is the fitted :class:`NaiveBayes`."""
    from inference import em

    x = np.asarray(x, dtype=np.float64)
    y = _check_labels(y, len(x), n_classes, allow_unlabelled=True)
    labelled = y >= 0
    if not labelled.any():
        raise DataError("semi-supervised EM needs at least one labelled row")
    k = int(n_classes if n_classes is not None else y.max() + 1)
    missing_classes = sorted(set(range(k)) - set(y[labelled].tolist()))
    if missing_classes:
        raise DataError(f"classes {missing_classes} have no labelled row to start EM from")
    if kind == "categorical" and n_categories is None:
        n_categories = np.maximum(np.where(np.isnan(x), -1, x).max(axis=0), 0).astype(np.int64) + 1
    start = NaiveBayes.fit(x[labelled], y[labelled], kind, n_classes=k, alpha=alpha, var_smoothing=var_smoothing,
                           n_categories=n_categories, binarize=binarize)
    if kind == "gaussian":  # the variance floor from all rows, as the supervised fit on all would use
        start.epsilon = var_smoothing * float(np.nanmax(np.nanvar(x, axis=0)))
    return em.fit(start, LabelledData(x, y), max_iter=max_iter, tol=tol, progress=progress, alpha=alpha)


class ComplementNB:
    r"""Complement naive Bayes for count features (Rennie, Shih, Teevan and Karger 2003;
    scikit-learn's ``ComplementNB``): each class is scored by how badly the *other* classes'
    word distribution explains the row,

    .. math::

        \tilde\theta_{kj} = \frac{\alpha + \sum_{k' \neq k} N_{k'j}}{\sum_{j'} (\alpha + \sum_{k' \neq k} N_{k'j'})},
        \qquad w_{kj} = -\log\tilde\theta_{kj}
        \;\Big(\text{or } \frac{\log\tilde\theta_{kj}}{\sum_{j'}\log\tilde\theta_{kj'}} \text{ with norm}\Big),
        \qquad s_k(x) = \sum_j x_j w_{kj},

    the class the :math:`\arg\max_k s_k(x)`. Not a generative model (no program): the scores are
    not log-likelihoods, and ``predict_proba`` is their softmax, as scikit-learn's. The class
    prior enters only when there is a single class (scikit-learn's rule).

    Example:
        >>> import numpy as np
        >>> x = np.array([[3.0, 0.0], [0.0, 2.0], [2.0, 1.0]])
        >>> ComplementNB.fit(x, np.array([0, 1, 0])).predict(np.array([[4.0, 0.0]]))
        array([0])
    """

    def __init__(self, weights, class_log_prior):
        self.weights = np.asarray(weights, dtype=np.float64)  # (K, F)
        self.class_log_prior = np.asarray(class_log_prior, dtype=np.float64)  # (K,)

    @classmethod
    def fit(cls, x, y, *, alpha: float = 1.0, norm: bool = False, sample_weight=None) -> "ComplementNB":
        """Weighted counts, then the complement weights above (``alpha``: additive smoothing)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or not np.all(np.isfinite(x)) or np.any(x < 0):
            raise DataError(f"x must be a finite non-negative (N, F) count array, got shape {x.shape}")
        if alpha < 0:
            raise DataError(f"alpha must be non-negative, got {alpha}")
        y = _check_labels(y, len(x), None, allow_unlabelled=False)
        w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (len(x),) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataError(f"sample_weight must be ({len(x)},) finite and non-negative, got shape {w.shape}")
        resp = np.eye(int(y.max()) + 1)[y] * w[:, None]  # (N, K)
        counts = resp.T @ x  # (K, F)
        complement = counts.sum(0) + alpha - counts
        logged = np.log(complement / complement.sum(axis=1, keepdims=True))
        weights = logged / logged.sum(axis=1, keepdims=True) if norm else -logged
        class_counts = resp.sum(0)
        return cls(weights, np.log(class_counts) - np.log(class_counts.sum()))

    def scores(self, x) -> np.ndarray:
        """``(N, K)`` :math:`s_k(x_n)` (plus the class log prior when there is one class)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.weights.shape[1]:
            raise DataError(f"x must be (N, {self.weights.shape[1]}), got shape {x.shape}")
        out = x @ self.weights.T
        return out + self.class_log_prior if len(self.class_log_prior) == 1 else out

    def predict_proba(self, x) -> np.ndarray:
        s = self.scores(x)
        return np.exp(s - np.asarray(logsumexp(s, axis=1, keepdims=True)))

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.scores(x), axis=1)
