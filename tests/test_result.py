"""Result: JSON round trip, arviz conversion, validation."""

import math

import numpy as np
import pytest

from inference.result import Result


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_json_round_trip_keeps_every_field_and_dtype():
    rng = np.random.default_rng(0)
    result = Result(
        method="exact",
        marginals={"a": rng.dirichlet(np.ones(3)), "z": rng.dirichlet(np.ones(4), size=(5,))},
        samples={"a": rng.integers(0, 3, size=100), "mu": rng.normal(size=(100, 2)).astype(np.float32)},
        params={"w": rng.normal(size=(2, 3)), "names": ("x", "y"), "k": 3},
        map={"a": 2, "b": np.int64(1)},
        log_evidence=-3.25,
        log_evidence_kind="exact",
        history=np.array([-10.0, -5.0, -np.inf, np.nan]),
        seconds=0.125,
        diagnostics={"converged": True, "residuals": [1.0, 0.5], "note": None, "ess": float("inf")},
    )
    back = Result.from_json(result.to_json())
    for field in ("method", "marginals", "samples", "params", "log_evidence", "log_evidence_kind",
                  "history", "seconds", "diagnostics"):
        assert _equal(getattr(result, field), getattr(back, field)), field
    assert back.map["a"] == 2 and int(back.map["b"]) == 1


def test_json_round_trip_of_jax_arrays():
    import jax.numpy as jnp

    result = Result(method="svi", params={"loc": jnp.arange(3.0)}, history=jnp.ones(4))
    back = Result.from_json(result.to_json())
    np.testing.assert_array_equal(back.params["loc"], np.arange(3.0))
    np.testing.assert_array_equal(back.history, np.ones(4))


def test_to_arviz_splits_chains():
    samples = {"theta": np.arange(40.0).reshape(20, 2)}
    idata = Result(method="nuts", samples=samples, diagnostics={"num_chains": 4}).to_arviz()
    assert idata.posterior["theta"].shape == (4, 5, 2)
    np.testing.assert_array_equal(idata.posterior["theta"].values.reshape(20, 2), samples["theta"])


def test_to_arviz_without_samples_and_bad_kind_fail_clearly():
    with pytest.raises(ValueError, match="no samples"):
        Result(method="exact").to_arviz()
    with pytest.raises(ValueError, match="log_evidence_kind"):
        Result(method="x", log_evidence=1.0, log_evidence_kind="approx")
    with pytest.raises(ValueError, match="needs its log_evidence_kind"):
        Result(method="x", log_evidence=1.0)
