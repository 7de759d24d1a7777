"""Sample weights in naive Bayes (issue 20), against scikit-learn on the same input.

Oracle: scikit-learn's ``GaussianNB``, ``BernoulliNB`` and ``CategoricalNB`` fitted with the same
``sample_weight``, ``alpha`` and ``var_smoothing``; their ``predict_proba`` and parameters must
equal ours to 1e-8 relative (weighted sums of 40 rows in float64, rounding ~1e-14), and integer
weights must equal repeating the rows (an invariant).
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.errors import DataError
from pgm.naive_bayes import NaiveBayes

REL = 1e-8


def _data(kind, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 40)
    if kind == "gaussian":
        x = rng.normal(size=(40, 2)) + y[:, None]
    elif kind == "bernoulli":
        x = (rng.random((40, 3)) < 0.3 + 0.2 * y[:, None]).astype(float)
    else:
        x = np.minimum(rng.integers(0, 3, (40, 2)) + (y[:, None] > 1), 3).astype(float)
    w = rng.uniform(0.2, 3.0, 40)
    return x, y, w


@pytest.mark.parametrize("kind,peer", [("gaussian", "GaussianNB"), ("bernoulli", "BernoulliNB"),
                                       ("categorical", "CategoricalNB")])
def test_weighted_fit_equals_scikit_learn(kind, peer):
    nb_mod = pytest.importorskip("sklearn.naive_bayes")
    x, y, w = _data(kind)
    options = {"var_smoothing": 1e-9} if kind == "gaussian" else {"alpha": 0.7}
    ours = NaiveBayes.fit(x, y, kind, sample_weight=w, **options)
    theirs = getattr(nb_mod, peer)(**options).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(ours.class_probs, np.exp(theirs.class_log_prior_) if kind != "gaussian"
                               else theirs.class_prior_, rtol=REL)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=REL, atol=1e-14)
    if kind == "gaussian":
        np.testing.assert_allclose(ours.params["means"], theirs.theta_, rtol=REL)
        np.testing.assert_allclose(ours.params["variances"], theirs.var_, rtol=REL)


def test_integer_weights_equal_repeated_rows():
    x, y, _ = _data("categorical", seed=1)
    w = np.arange(40) % 3  # 0, 1 or 2 copies of each row
    weighted = NaiveBayes.fit(x, y, "categorical", sample_weight=w, n_categories=4)
    repeated = NaiveBayes.fit(np.repeat(x, w, axis=0), np.repeat(y, w), "categorical", n_categories=4, n_classes=3)
    np.testing.assert_allclose(weighted.params["probs"], repeated.params["probs"], rtol=1e-12)
    np.testing.assert_allclose(weighted.class_probs, repeated.class_probs, rtol=1e-12)
    with pytest.raises(DataError, match="sample_weight"):
        NaiveBayes.fit(x, y, "categorical", sample_weight=-np.ones(40))


def test_multinomial_equals_scikit_learn():
    nb_mod = pytest.importorskip("sklearn.naive_bayes")
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 50)
    rates = np.array([[5.0, 1.0, 1.0, 2.0], [1.0, 4.0, 2.0, 1.0], [2.0, 2.0, 5.0, 0.5]])
    x = rng.poisson(rates[y]).astype(float)
    w = rng.uniform(0.5, 2.0, 50)
    for weights in (None, w):
        ours = NaiveBayes.fit(x, y, "multinomial", alpha=0.5, sample_weight=weights)
        theirs = nb_mod.MultinomialNB(alpha=0.5).fit(x, y, sample_weight=weights)
        np.testing.assert_allclose(np.log(ours.params["probs"]), theirs.feature_log_prob_, rtol=REL)
        np.testing.assert_allclose(np.log(ours.class_probs), theirs.class_log_prior_, rtol=REL)
        np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=REL, atol=1e-14)
    with pytest.raises(DataError, match="multinomial"):
        ours.predict(np.where(x > 3, np.nan, x))


@pytest.mark.parametrize("norm", [False, True])
def test_complement_equals_scikit_learn(norm):
    nb_mod = pytest.importorskip("sklearn.naive_bayes")
    from pgm.naive_bayes import ComplementNB

    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 50)
    x = rng.poisson(np.array([[4.0, 1.0, 1.0], [1.0, 3.0, 2.0], [2.0, 1.0, 4.0]])[y]).astype(float)
    w = rng.uniform(0.5, 2.0, 50)
    ours = ComplementNB.fit(x, y, alpha=0.3, norm=norm, sample_weight=w)
    theirs = nb_mod.ComplementNB(alpha=0.3, norm=norm).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(ours.weights, theirs.feature_log_prob_, rtol=REL)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=REL, atol=1e-14)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))
    with pytest.raises(DataError, match="non-negative"):
        ComplementNB.fit(-x, y)
