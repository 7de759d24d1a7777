"""The mixture and topic examples run end to end with tiny arguments and write their figure."""

import importlib.util
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gmm_iris(tmp_path):
    example = _load("gmm_iris")
    out = example.main(example.parse_args(["--max-k", "3", "--max-iter", "30", "--out", str(tmp_path)]))
    assert (tmp_path / "gmm_iris.png").stat().st_size > 0
    assert out["best_k"] in (2, 3)
    # scikit-learn's EM from the example's start (seed 0) with our stopping rule (mean log-likelihood
    # gain below 1e-6, at most 30 iterations; the same EM step for step, test_mixture) chooses the
    # same K by BIC and gives the same clusters: BIC equal up to float64 rounding of the
    # log-likelihood (a sum of 150 terms: 1e-9 relative), the adjusted Rand index exactly
    import warnings

    import jax
    from sklearn.datasets import load_iris
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture as Sk

    from pgm.mixture import GaussianMixture

    x, species = load_iris(return_X_y=True)
    peers = {}
    for k in range(1, 4):
        start = GaussianMixture.initialize(jax.random.PRNGKey(0), x, k, "full")
        peers[k] = Sk(k, weights_init=start.weights, means_init=start.means,
                      precisions_init=np.linalg.inv(start.covariances), max_iter=30, tol=1e-6,
                      reg_covar=start.reg_covar)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 30 iterations may end before convergence
            peers[k].fit(x)
        assert out["bic"][k] == pytest.approx(peers[k].bic(x), rel=1e-9)
    assert out["best_k"] == min(peers, key=lambda k: peers[k].bic(x))
    assert out["ari"] == adjusted_rand_score(species, peers[out["best_k"]].predict(x))


def test_lda_lee(tmp_path):
    example = _load("lda_lee")
    out = example.main(example.parse_args(["--topics", "4", "--passes", "3", "--out", str(tmp_path)]))
    assert (tmp_path / "lda_lee.png").stat().st_size > 0
    assert 1.0 < out["perplexity"] < 5000 and -1.0 <= out["npmi"] <= 1.0
