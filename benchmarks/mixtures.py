"""Gaussian-mixture EM beside scikit-learn's ``GaussianMixture``, same data, same start, same process.

Default problem (the issue's): full covariances, N = 100,000 points in D = 10 dimensions, K = 8
components, 100 EM iterations. Both libraries start from the same weights, means and covariances
(ours from k-means++ seeding, passed to scikit-learn as ``weights_init`` / ``means_init`` /
``precisions_init``), run a fixed number of iterations (``tol=0`` for scikit-learn, no early stop
for ours), and are timed ``--repeats`` times; the table prints medians, the ratio ours / peer, and
the final mean log-likelihood of each (equal up to rounding: the same EM).

    python benchmarks/mixtures.py              # the issue's problem
    python benchmarks/mixtures.py --quick      # N = 5,000, 10 iterations
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import inference  # noqa: F401  (float64)
from pgm.mixture import GaussianMixture, gmm_e_step, gmm_m_step


def simulate(seed: int, n: int, d: int, k: int) -> np.ndarray:
    """Points from a random K-component mixture with overlapping, correlated components."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, d))
    factors = rng.normal(scale=0.5, size=(k, d, d)) + np.eye(d)
    z = rng.integers(0, k, size=n)
    return means[z] + np.einsum("nde,ne->nd", factors[z], rng.normal(size=(n, d)))


def ours(start: GaussianMixture, x, iterations: int):
    """The EM loop of inference.em without its bookkeeping: E-step and M-step kernels only, so the
    figure is the time per iteration of the numerical work. (``inference.em.fit`` adds a host
    round-trip and a monotonicity check per iteration, timed separately below.)"""
    xj = jnp.asarray(x)
    weights, means, cov = jnp.asarray(start.weights), jnp.asarray(start.means), jnp.asarray(start.covariances)
    from pgm.mixture import precision_cholesky

    loglik = None
    for _ in range(iterations):
        stats, loglik = gmm_e_step(xj, jnp.log(weights), means, precision_cholesky(cov, "full"), "full")
        weights, means, cov = gmm_m_step(*stats, start.reg_covar, "full")
    jax.block_until_ready(cov)
    return GaussianMixture(np.asarray(weights), np.asarray(means), np.asarray(cov), "full")


def ours_em_fit(start, x, iterations: int):
    from inference import em

    return em.fit(start, x, max_iter=iterations, tol=-np.inf).params


def peer(start: GaussianMixture, x, iterations: int):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    model = SkGaussianMixture(
        start.n_components, covariance_type="full", weights_init=start.weights, means_init=start.means,
        precisions_init=np.linalg.inv(start.covariances), max_iter=iterations, tol=0.0, reg_covar=start.reg_covar,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": we ask for a fixed number of iterations
        model.fit(x)
    return model


def timed(fn, *args, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(args):
    x = simulate(args.seed, args.n, args.dim, args.k)
    start = GaussianMixture.initialize(jax.random.PRNGKey(args.seed), x, args.k, "full")
    ours(start, x, 1)  # compile
    ours_em_fit(start, x, 1)
    t_ours, fitted = timed(ours, start, x, args.iterations, repeats=args.repeats)
    t_fit, fitted_em = timed(ours_em_fit, start, x, args.iterations, repeats=args.repeats)
    t_peer, sk = timed(peer, start, x, args.iterations, repeats=args.repeats)
    ll_ours, ll_em, ll_peer = fitted.log_prob(x).mean(), fitted_em.log_prob(x).mean(), sk.score(x)
    per = 1e3 / args.iterations
    print(f"GMM EM, full covariances, N={args.n}, D={args.dim}, K={args.k}, {args.iterations} iterations, "
          f"median of {args.repeats} runs")
    print(f"{'':28s}{'ms / iteration':>16s}{'mean log-lik':>18s}{'ours / peer':>14s}")
    print(f"{'genzoo kernels':28s}{t_ours * per:16.1f}{ll_ours:18.10f}{t_ours / t_peer:14.3f}")
    print(f"{'genzoo inference.em.fit':28s}{t_fit * per:16.1f}{ll_em:18.10f}{t_fit / t_peer:14.3f}")
    print(f"{'scikit-learn':28s}{t_peer * per:16.1f}{ll_peer:18.10f}{1.0:14.3f}")
    print(f"|mean log-lik ours - peer| = {abs(ll_ours - ll_peer):.3e}")
    return {"ours_ms": t_ours * per, "em_fit_ms": t_fit * per, "peer_ms": t_peer * per,
            "loglik_gap": abs(ll_ours - ll_peer)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="N = 5,000 and 10 iterations")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.iterations = 5_000, 10
    return args


if __name__ == "__main__":
    main(parse_args())
