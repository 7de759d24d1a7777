"""Learning Markov random fields: pseudo-likelihood, contrastive divergence, moment matching.

The log-likelihood of an MRF :math:`p_\\theta(x) = \\exp(\\theta^\\top \\phi(x)) / Z(\\theta)` has the
gradient :math:`\\mathbb{E}_{\\text{data}}[\\phi] - \\mathbb{E}_{p_\\theta}[\\phi]`: the data's moments
minus the model's, and the model's need :math:`Z`. Three ways around it:

- **Pseudo-likelihood** (Besag, 1975) replaces :math:`p(x)` by :math:`\\prod_i p(x_i \\mid x_{-i})`,
  which needs no :math:`Z` and is consistent. For a fully visible Ising model
  :math:`\\log \\tilde p(s) = \\sum_{i<j} J_{ij} s_i s_j + \\sum_i h_i s_i`, :math:`s \\in \\{\\pm1\\}^V`,
  with :math:`a_i = h_i + \\sum_j J_{ij} s_j`:

  .. math::

      \\mathrm{PL}(J, h) = \\sum_n \\sum_i \\log \\sigma(2 s_{ni} a_{ni}), \\qquad
      g_{ni} = 2 s_{ni} \\big(1 - \\sigma(2 s_{ni} a_{ni})\\big),

      \\frac{\\partial \\mathrm{PL}}{\\partial h_i} = \\sum_n g_{ni}, \\qquad
      \\frac{\\partial \\mathrm{PL}}{\\partial J_{ij}} = \\sum_n (g_{ni} s_{nj} + g_{nj} s_{ni}).

- **Contrastive divergence** (Hinton, 2002) for an RBM estimates the model's moments from ``k``
  block-Gibbs steps started at the data (CD-k) or from persistent chains that carry over between
  updates (PCD, Tieleman 2008):
  :math:`\\Delta W \\propto \\langle v\\, p(h \\mid v)^\\top \\rangle_{\\text{data}} - \\langle v\\,
  p(h \\mid v)^\\top \\rangle_{\\text{chains}}`.
- **Moment matching** by iterative proportional fitting (Deming and Stephan, 1940): when the
  model's factor marginals are exact (``inference.exact.family_posteriors``), rescale each factor
  :math:`\\psi_f \\leftarrow \\psi_f\\, \\hat p_f / p_f` so that its marginal equals the data's; each
  update maximises the likelihood in :math:`\\psi_f` with the rest fixed, so it never decreases.

References:
    Besag (1975). Statistical analysis of non-lattice data.
    Hinton (2002). Training products of experts by minimizing contrastive divergence.
    Tieleman (2008). Training restricted Boltzmann machines using approximations to the likelihood
    gradient.
    Koller and Friedman (2009). Probabilistic Graphical Models, section 20.2 (IPF).

Example:
    >>> import numpy as np
    >>> s = np.array([[1, 1, -1], [1, 1, 1], [-1, -1, -1]])
    >>> value, grad = ising_pseudo_likelihood(np.zeros((3, 3)), np.zeros(3), s)
    >>> round(float(value), 4)   # 9 conditionals, each log(1/2)
    -6.2383
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import DataError, ModelError
from inference.factors import Factor, FactorGraph
from inference.result import Result
from inference.rng import as_key

__all__ = ["ising_pseudo_likelihood", "fit_pseudo_likelihood", "rbm_contrastive_divergence", "rbm_sample",
           "moment_matching", "RBMParams"]


# ============================================================================ pseudo-likelihood
def _check_spins(spins) -> np.ndarray:
    s = np.asarray(spins, dtype=np.float64)
    if s.ndim != 2 or 0 in s.shape:
        raise DataError(f"spins must have shape (N, V) with N, V > 0, got {s.shape}")
    if not np.all(np.abs(s) == 1):
        raise DataError("spins must be -1 or +1")
    return s


def ising_pseudo_likelihood(coupling, field, spins) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """``(PL, (dPL/dJ, dPL/dh))`` of a fully visible Ising model (see the module docstring).

    Args:
        coupling: :math:`J`, ``(V, V)`` symmetric with zero diagonal (only :math:`i \\ne j` enter).
        field: :math:`h`, ``(V,)``.
        spins: ``(N, V)`` in :math:`\\{-1, +1\\}`.

    Returns:
        the summed log pseudo-likelihood and its gradient, ``dJ`` symmetric with zero diagonal
        (the derivative with respect to the pair parameter :math:`J_{ij} = J_{ji}`).
    """
    s = _check_spins(spins)
    j = np.asarray(coupling, dtype=np.float64)
    h = np.asarray(field, dtype=np.float64)
    v = s.shape[1]
    if j.shape != (v, v):
        raise DataError(f"coupling has shape {j.shape}, expected ({v}, {v}) for {v} spins")
    if h.shape != (v,):
        raise DataError(f"field has shape {h.shape}, expected ({v},)")
    j = 0.5 * (j + j.T)
    np.fill_diagonal(j, 0.0)
    a = h + s @ j  # (N, V) local fields
    margin = 2.0 * s * a
    value = -np.logaddexp(0.0, -margin).sum()  # log sigmoid
    g = 2.0 * s * (0.5 * (1.0 - np.tanh(0.5 * margin)))  # 2 s (1 - sigmoid(margin))
    grad_j = g.T @ s
    grad_j = grad_j + grad_j.T
    np.fill_diagonal(grad_j, 0.0)
    return float(value), (grad_j, g.sum(0))


def fit_pseudo_likelihood(spins, *, edges=None, l2: float = 0.0, tol: float = 1e-8) -> Result:
    """Maximise the Ising pseudo-likelihood (L-BFGS-B, analytic gradient) over :math:`J_{ij}` for
    the pairs in ``edges`` (all pairs when absent) and every :math:`h_i`.

    Returns:
        ``Result(method="pseudo_likelihood", params={"coupling": (V, V), "field": (V,)},
        history=<-PL / N per evaluation>, diagnostics={"converged", "message"})``.
    """
    from scipy.optimize import minimize

    start = time.perf_counter()
    s = _check_spins(spins)
    n, v = s.shape
    if edges is None:
        pairs = np.array(np.triu_indices(v, 1)).T
    else:
        pairs = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        if pairs.size and (pairs.min() < 0 or pairs.max() >= v or np.any(pairs[:, 0] == pairs[:, 1])):
            raise DataError(f"edges must join two different spins in 0..{v - 1}")
    history = []

    def unpack(theta):
        j = np.zeros((v, v))
        j[pairs[:, 0], pairs[:, 1]] = theta[: len(pairs)]
        j[pairs[:, 1], pairs[:, 0]] = theta[: len(pairs)]
        return j, theta[len(pairs):]

    def objective(theta):
        j, h = unpack(theta)
        value, (gj, gh) = ising_pseudo_likelihood(j, h, s)
        loss = -value / n + 0.5 * l2 * np.sum(theta[: len(pairs)] ** 2)
        grad = np.concatenate([-gj[pairs[:, 0], pairs[:, 1]] / n + l2 * theta[: len(pairs)], -gh / n])
        history.append(loss)
        return loss, grad

    out = minimize(objective, np.zeros(len(pairs) + v), jac=True, method="L-BFGS-B", options={"gtol": tol, "maxiter": 1000})
    j, h = unpack(out.x)
    return Result(method="pseudo_likelihood", params={"coupling": j, "field": h}, history=np.asarray(history),
                  seconds=time.perf_counter() - start,
                  diagnostics={"converged": bool(out.success), "message": str(out.message)})


# ============================================================================ CD / PCD
class RBMParams(NamedTuple):
    """weights (D, H), visible_bias (D,), hidden_bias (H,)."""

    weights: jnp.ndarray
    visible_bias: jnp.ndarray
    hidden_bias: jnp.ndarray


def _bernoulli(key, p):
    return (jax.random.uniform(key, p.shape, dtype=p.dtype) < p).astype(p.dtype)


def _gibbs_vhv(key, params: RBMParams, v):
    kh, kv = jax.random.split(key)
    h = _bernoulli(kh, jax.nn.sigmoid(v @ params.weights + params.hidden_bias))  # (B, H)
    return _bernoulli(kv, jax.nn.sigmoid(h @ params.weights.T + params.visible_bias))  # (B, D)


@functools.partial(jax.jit, static_argnames=("k", "persistent", "batch_size"))
def _cd_epoch(key, params: RBMParams, chains, data, order, learning_rate, k: int, persistent: bool, batch_size: int):
    batches = order.shape[0] // batch_size
    index = order[: batches * batch_size].reshape(batches, batch_size)

    def update(carry, xs):
        params, chains = carry
        rows, step_key = xs
        v0 = data[rows]  # (B, D)
        ph0 = jax.nn.sigmoid(v0 @ params.weights + params.hidden_bias)  # (B, H)
        start = chains if persistent else v0
        # 1. k block-Gibbs steps from the persistent chains (PCD) or the data (CD-k)
        vk = start
        for sub in jax.random.split(step_key, k):
            vk = _gibbs_vhv(sub, params, vk)
        phk = jax.nn.sigmoid(vk @ params.weights + params.hidden_bias)
        # 2. data moments minus chain moments, averaged over the batch
        m = v0.shape[0]
        grad = RBMParams((v0.T @ ph0) / m - (vk.T @ phk) / vk.shape[0], jnp.mean(v0, 0) - jnp.mean(vk, 0),
                         jnp.mean(ph0, 0) - jnp.mean(phk, 0))
        params = jax.tree_util.tree_map(lambda p, g: p + learning_rate * g, params, grad)
        return (params, vk if persistent else chains), None

    keys = jax.random.split(key, batches)
    (params, chains), _ = jax.lax.scan(update, (params, chains), (index, keys))
    # the mean squared error of a mean-field reconstruction of the data, once per epoch
    recon = jax.nn.sigmoid(jax.nn.sigmoid(data @ params.weights + params.hidden_bias) @ params.weights.T
                           + params.visible_bias)
    return params, chains, jnp.mean((data - recon) ** 2)


def rbm_contrastive_divergence(key, data, init: RBMParams | dict, *, epochs: int, batch_size: int = 100,
                               learning_rate: float = 0.05, k: int = 1, persistent: bool = True,
                               num_chains: int | None = None, callback=None) -> Result:
    """Train a binary RBM by CD-k (``persistent=False``) or PCD-k (``persistent=True``).

    Args:
        key: a JAX key or an int seed (shuffling and the Gibbs draws).
        data: ``(N, D)`` binary.
        init: the starting parameters (``RBMParams`` or a dict with its field names; e.g.
            ``pgm.rbm.RBM.random(...).params``).
        epochs, batch_size, learning_rate, k: the usual; one epoch is one jitted scan over the
            shuffled minibatches (a last partial batch is dropped).
        num_chains: persistent chains (PCD only; default ``batch_size``), started from data rows.
        callback: ``callback(epoch, params)`` after each epoch (e.g. to log an exact
            log-likelihood); its return value, when not None, is kept in ``diagnostics["callback"]``.

    Returns:
        ``Result(method="pcd" | "cd", params=RBMParams (NumPy), history=<mean squared error of
        the mean-field reconstruction p(v | E[h | v]) of the data after each epoch>, diagnostics={"chains": the final persistent chains, "callback": [...]})``.
    """
    start = time.perf_counter()
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise DataError(f"data must have shape (N, D) with N, D > 0, got {x.shape}")
    if not np.all((x == 0) | (x == 1)):
        raise DataError("data must be binary (0 or 1)")
    params = RBMParams(**init) if isinstance(init, dict) else RBMParams(*init)
    params = RBMParams(*(jnp.asarray(p, dtype=jnp.float64) for p in params))
    if params.weights.ndim != 2 or params.weights.shape[0] != x.shape[1]:
        raise ModelError(f"init weights have shape {tuple(params.weights.shape)}, expected ({x.shape[1]}, H) for data of {x.shape[1]} columns")
    if int(batch_size) < 1 or int(batch_size) > x.shape[0]:
        raise DataError(f"batch_size must lie in 1..{x.shape[0]} (the number of rows), got {batch_size!r}")
    if int(epochs) < 1 or int(k) < 1:
        raise DataError(f"epochs and k must be at least 1, got epochs={epochs!r}, k={k!r}")
    key = as_key(key)
    key, chain_key = jax.random.split(key)
    chains = jnp.asarray(x[np.asarray(jax.random.randint(chain_key, (int(num_chains or batch_size),), 0, x.shape[0]))])
    data_j = jnp.asarray(x)
    history, logged = [], []
    for epoch in range(int(epochs)):
        key, perm_key, epoch_key = jax.random.split(key, 3)
        order = jax.random.permutation(perm_key, x.shape[0])
        params, chains, err = _cd_epoch(epoch_key, params, chains, data_j, order, jnp.asarray(float(learning_rate)),
                                        int(k), bool(persistent), int(batch_size))
        history.append(float(err))
        if callback is not None:
            out = callback(epoch, RBMParams(*(np.asarray(p) for p in params)))
            if out is not None:
                logged.append(out)
    final = RBMParams(*(np.asarray(p) for p in params))
    return Result(method="pcd" if persistent else "cd", params=final, history=np.asarray(history),
                  seconds=time.perf_counter() - start, diagnostics={"chains": np.asarray(chains), "callback": logged})


@functools.partial(jax.jit, static_argnames=("steps",))
def _sample_chains(key, params: RBMParams, v, steps: int):
    def body(v, k):
        return _gibbs_vhv(k, params, v), None

    v, _ = jax.lax.scan(body, v, jax.random.split(key, steps))
    return v, jax.nn.sigmoid(v @ params.weights + params.hidden_bias) @ params.weights.T + params.visible_bias


def rbm_sample(key, params: RBMParams | dict, n: int, *, steps: int = 1000) -> Result:
    """``n`` visible states after ``steps`` block-Gibbs steps :math:`v \to h \to v` from uniform
    random starts (approximate draws from :math:`p(v)`; exact in the limit of many steps).

    Returns:
        ``Result(method="rbm_gibbs", samples={"v": (n, D) binary, "v_mean": (n, D) the visible
        probabilities given the mean hidden units of the final states, for display})``.
    """
    start = time.perf_counter()
    params = RBMParams(**params) if isinstance(params, dict) else RBMParams(*params)
    params = RBMParams(*(jnp.asarray(p, dtype=jnp.float64) for p in params))
    if int(n) < 1 or int(steps) < 1:
        raise DataError(f"n and steps must be positive, got n={n!r}, steps={steps!r}")
    key = as_key(key)
    init_key, run_key = jax.random.split(key)
    v0 = jax.random.bernoulli(init_key, 0.5, (int(n), params.weights.shape[0])).astype(jnp.float64)
    v, logits = _sample_chains(run_key, params, v0, int(steps))
    return Result(method="rbm_gibbs", samples={"v": np.asarray(v), "v_mean": np.asarray(jax.nn.sigmoid(logits))},
                  seconds=time.perf_counter() - start, diagnostics={"steps": int(steps)})


# ============================================================================ moment matching
def moment_matching(graph: FactorGraph, data, *, max_iter: int = 200, tol: float = 1e-8, pseudo_count: float = 0.0) -> Result:
    """Maximum likelihood for a factor graph's tables by iterative proportional fitting.

    Each iteration visits every factor :math:`f` and sets
    :math:`\\log \\psi_f \\leftarrow \\log \\psi_f + \\log \\hat p_f - \\log p_f`, where :math:`\\hat p_f`
    is the data's empirical distribution over the factor's scope (plus ``pseudo_count`` per cell)
    and :math:`p_f` the model's exact marginal (``inference.exact.family_posteriors``). At the
    fixed point every factor's marginal equals the data's: the maximum-likelihood estimate.

    Args:
        graph: an undirected :class:`FactorGraph` (its tables are the starting point).
        data: ``(N, V)`` state indices, columns in ``graph.variables`` order.
        max_iter, tol: stop when no factor marginal differs from the data's by more than ``tol``.
        pseudo_count: added to every empirical count (keeps zero cells finite).

    Returns:
        ``Result(method="moment_matching", params=<the fitted FactorGraph>, history=<mean exact
        log-likelihood per row after each iteration>, diagnostics={"converged", "iterations",
        "max_moment_error"})``.
    """
    from inference.exact import family_posteriors, log_evidence

    start = time.perf_counter()
    if not isinstance(graph, FactorGraph):
        raise ModelError(f"moment_matching needs a FactorGraph (model.factor_graph()), got {type(graph).__name__}")
    x = np.asarray(data)
    v = len(graph.variables)
    if x.ndim != 2 or x.shape[1] != v or x.shape[0] == 0:
        raise DataError(f"data must have shape (N, {v}) (one column per variable of the graph), got {x.shape}")
    cards = graph.cardinalities
    for i, var in enumerate(graph.variables):
        col = x[:, i]
        if not np.issubdtype(col.dtype, np.integer) or col.min() < 0 or col.max() >= cards[var]:
            raise DataError(f"column {i} ({var!r}) must hold integer state indices in 0..{cards[var] - 1}")
    position = {var: i for i, var in enumerate(graph.variables)}
    empirical = []
    for f in graph.factors:
        counts = np.full(f.log_table.shape, float(pseudo_count))
        np.add.at(counts, tuple(x[:, position[u]] for u in f.scope), 1.0)
        empirical.append(counts / counts.sum())
    tables = [np.asarray(f.log_table, dtype=np.float64).copy() for f in graph.factors]
    empty = np.zeros((1, 0), dtype=np.int64)

    def rebuild():
        return FactorGraph(graph.states, [Factor(f.scope, t) for f, t in zip(graph.factors, tables)])

    def mean_log_likelihood(g):
        total = sum(t[tuple(x[:, position[u]] for u in f.scope)] for f, t in zip(g.factors, tables))
        return float(np.mean(total) - log_evidence(g).log_evidence)

    history, error, converged, it = [], np.inf, False, 0
    for it in range(1, int(max_iter) + 1):
        error = 0.0
        for i in range(len(tables)):  # 1. one factor at a time: its exact marginal, 2. the IPF rescaling
            _, post = family_posteriors(rebuild(), (), empty)
            model = post[i][0]
            error = max(error, float(np.max(np.abs(model - empirical[i]))))
            with np.errstate(divide="ignore"):
                tables[i] = np.where(empirical[i] > 0, tables[i] + np.log(empirical[i]) - np.log(np.maximum(model, 1e-300)), -np.inf)
        history.append(mean_log_likelihood(rebuild()))
        if error <= tol:
            converged = True
            break
    return Result(method="moment_matching", params=rebuild(), history=np.asarray(history),
                  seconds=time.perf_counter() - start,
                  diagnostics={"converged": converged, "iterations": it, "max_moment_error": error})
