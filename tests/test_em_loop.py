"""The generic EM loop on a model with closed-form statistics: the two-coin mixture.

Each of N trials picks coin A or B with probability (pi, 1 - pi) and tosses it m times; heads are
observed, the coin is latent. E-step: responsibilities; M-step: weighted proportions.
"""

import dataclasses

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit, logsumexp

from inference import em
from inference.errors import ModelError, MonotonicityError
from genzoo.runs import atomic_write, new_run_dir, write_json


@dataclasses.dataclass(frozen=True)
class TwoCoins:
    pi: float
    theta: tuple[float, float]
    m: int = 10

    def joint(self, heads):
        t = np.asarray(self.theta)
        return (np.log([self.pi, 1 - self.pi])[None, :]
                + heads[:, None] * np.log(t)[None, :] + (self.m - heads[:, None]) * np.log1p(-t)[None, :])

    def expected_stats(self, heads):
        joint = self.joint(heads)
        ll = logsumexp(joint, axis=1)
        r = np.exp(joint - ll[:, None])
        return (r.sum(0), r.T @ heads), float(ll.sum())

    def from_stats(self, stats):
        counts, heads = stats
        return TwoCoins(counts[0] / counts.sum(), tuple(heads / (counts * self.m)), self.m)


def _loglik(params, heads, m):
    model = TwoCoins(expit(params[0]), tuple(expit(params[1:])), m)
    return logsumexp(model.joint(heads), axis=1).sum()


def test_em_reaches_the_maximum_likelihood_and_never_decreases():
    rng = np.random.default_rng(1)
    coins = rng.random(200) < 0.3
    heads = rng.binomial(10, np.where(coins, 0.8, 0.35)).astype(float)
    result = em.fit(TwoCoins(0.5, (0.6, 0.5)), heads, max_iter=500, tol=1e-12)
    assert result.method == "em" and result.log_evidence_kind == "exact"
    assert np.all(np.diff(result.history) >= -1e-9)
    assert result.diagnostics["converged"]
    fitted = result.params
    # Oracle: a general-purpose optimiser on the same log-likelihood from EM's answer's neighbourhood.
    x0 = np.r_[logit(fitted.pi), logit(np.asarray(fitted.theta))]
    best = minimize(lambda p: -_loglik(p, heads, 10), x0 + 0.1, method="BFGS", options={"gtol": 1e-10})
    assert result.log_evidence == pytest.approx(-best.fun, abs=1e-6)
    np.testing.assert_allclose(np.r_[fitted.pi, fitted.theta], np.r_[expit(best.x[0]), expit(best.x[1:])], atol=1e-4)


def test_a_decreasing_m_step_is_caught():
    class Broken(TwoCoins):
        def from_stats(self, stats):
            return Broken(0.5, (0.99, 0.01), self.m)

    heads = np.array([5.0, 6.0, 4.0, 5.0])
    with pytest.raises(MonotonicityError, match="decreased at iteration 1"):
        em.fit(Broken(0.5, (0.5, 0.5)), heads)


def test_a_model_without_statistics_is_refused():
    with pytest.raises(ModelError, match="expected_stats"):
        em.fit(object(), [1, 2])


def test_atomic_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    import os

    target = tmp_path / "metrics.json"
    write_json(target, {"a": np.arange(3), "b": float("inf")})
    before = target.read_text()

    def interrupted(src, dst):  # the process is interrupted after writing, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "x" * 10_000)
    monkeypatch.undo()
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert '"b": "inf"' in before


def test_run_dirs_are_unique(tmp_path):
    a = new_run_dir("m", "x", tmp_path)
    b = new_run_dir("m", "x", tmp_path)
    assert a != b and a.is_dir() and b.is_dir() and a.name.startswith("m-x-")


def test_a_start_of_zero_prior_density_is_allowed_but_nan_is_not():
    class ZeroPriorStart(TwoCoins):
        def log_prior(self):
            return -np.inf if self.theta == (0.6, 0.5) else 0.0

        def from_stats(self, stats):
            new = TwoCoins.from_stats(self, stats)
            return ZeroPriorStart(new.pi, new.theta, new.m)

    heads = np.array([5.0, 9.0, 2.0, 8.0, 3.0])
    result = em.fit(ZeroPriorStart(0.5, (0.6, 0.5)), heads)
    assert result.history[0] == -np.inf and np.all(np.isfinite(result.history[1:]))
    assert np.all(np.diff(result.history[1:]) >= -1e-9)

    class NanStart(TwoCoins):
        def log_prior(self):
            return np.nan

    with pytest.raises(MonotonicityError, match="not finite"):
        em.fit(NanStart(0.5, (0.6, 0.5)), heads)
