r"""Learning the parameters of a Bayesian network: maximum likelihood, Bayesian smoothing, EM.

A Bayesian network factorises as :math:`p(x) = \prod_v \theta_{v}[x_{\pi(v)}, x_v]`, one
conditional probability table (CPT) per variable :math:`v` with parents :math:`\pi(v)`. Write
:math:`j` for a configuration of the parents and :math:`k` for a state of :math:`v`. Everything
here rests on the *family counts*

.. math::

    N_{vjk} = \#\{\text{rows } n : x^{(n)}_{\pi(v)} = j,\; x^{(n)}_v = k\},

the sufficient statistics of the network: the log-likelihood of complete data is
:math:`\sum_{v,j,k} N_{vjk} \log \theta_{vjk}`, a sum of independent multinomial terms.

1. **Maximum likelihood** (``pseudo_count=0``): :math:`\hat\theta_{vjk} = N_{vjk} / N_{vj}` with
   :math:`N_{vj} = \sum_k N_{vjk}`.
2. **Dirichlet smoothing** (``pseudo_count`` :math:`a_{vjk} > 0`):

   .. math::

       \hat\theta_{vjk} = \frac{N_{vjk} + a_{vjk}}{\sum_{k'} (N_{vjk'} + a_{vjk'})}.

   This one formula has two readings: it is the posterior **mean** under the prior
   :math:`\theta_{vj\cdot} \sim \mathrm{Dir}(a_{vj\cdot})` (pgmpy's ``BayesianEstimator`` with
   ``prior_type="dirichlet"``, ``"K2"`` for :math:`a = 1` or ``"BDeu"`` for
   :math:`a = \alpha / (q_v r_v)`), and the posterior **mode** (MAP) under
   :math:`\mathrm{Dir}(a_{vj\cdot} + 1)`. :func:`log_dirichlet_prior` returns the log density of
   the latter, so that EM's objective, log-likelihood plus log prior, is maximised exactly by the
   M-step and never decreases.
   A parent configuration with :math:`N_{vj} + \sum_k a_{vjk} = 0` (never seen, no prior) gets the
   uniform row :math:`1 / r_v`.
3. **Available-case maximum likelihood** (:func:`available_case_cpts`, pgmpy's
   ``complete_samples_only=False``): each family is counted on the rows where it is fully
   observed, :math:`N^{\text{ac}}_{vjk} = \#\{n : x^{(n)}_{\pi(v)} = j, x^{(n)}_v = k\}` over those
   rows; no inference, but not the maximum-likelihood estimate unless cells are missing
   completely at random.
4. **Missing cells and latent variables**: the counts are replaced by their posterior
   expectations :math:`\bar N_{vjk} = \sum_n p(x_{\pi(v)} = j, x_v = k \mid x^{(n)}_{\mathrm{obs}})`
   (the E-step, by exact inference), and steps 1-2 become the M-step of EM
   (:func:`inference.em.fit`). :func:`fit_em` starts some tables from given values and keeps
   others fixed: the expected complete-data log-likelihood is a sum over the CPTs, so maximising
   it over the free tables only, the fixed ones held, is still an exact M-step and the objective
   still never decreases.

Data arrive as anything :meth:`pgm.bayesnet.BayesNet.encode_data` reads (a dict of columns, a
DataFrame, an ``(n, V)`` array); a missing cell is ``None`` / NaN / -1.

Example::

    import jax
    from genzoo.data import bn_network_path
    from inference import em
    from pgm.bayesnet import BayesNet
    from pgm.bn_learning import fit_cpts, random_cpts

    asia = BayesNet.from_bif(bn_network_path("asia"))
    data = asia.sample(jax.random.PRNGKey(0), 1000)
    ml = em.fit(asia, data).params                     # complete data: one closed-form step
    smoothed = fit_cpts(asia.graph, asia.states, data, pseudo_count=1.0)

    rows = asia.encode_data(data)
    rows[::3, 2] = -1                                  # 'smoke' missing in every third row
    start = random_cpts(asia, jax.random.PRNGKey(1))   # no zero entries, symmetry broken
    result = em.fit(start, rows, pseudo_count=1.0)     # EM: the objective never decreases

References:
    Heckerman (1995). A tutorial on learning with Bayesian networks. MSR-TR-95-06.
    Koller and Friedman (2009). Probabilistic Graphical Models, sections 17.2-17.4 and 19.2.
    Lauritzen (1995). The EM algorithm for graphical association models with missing data.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.special import gammaln, xlogy

from inference.errors import DataError, ModelError, UnknownNameError
from inference.rng import as_key

__all__ = [
    "family_counts",
    "normalise_counts",
    "dirichlet_log_density",
    "expected_counts",
    "cpts_from_counts",
    "data_is_complete",
    "log_dirichlet_prior",
    "bdeu_pseudo_counts",
    "random_cpts",
    "fit_cpts",
    "available_case_cpts",
    "fit_em",
]

# Rows per call of the batched E-step (bounds the memory of the per-row posteriors).
_MAX_BATCH = 4096


# ============================================================================ array kernels
def family_counts(values: np.ndarray, shape: tuple[int, ...], weights: np.ndarray | None = None) -> np.ndarray:
    r"""Contingency table of the columns of ``values``: :math:`N[i_1, \dots, i_k]`.

    Args:
        values: ``(n, k)`` integer states, column ``c`` in ``range(shape[c])``.
        shape: the cardinalities of the ``k`` columns.
        weights: optional ``(n,)`` row weights (counts are then weighted sums).

    Returns:
        ``np.ndarray`` of ``shape`` (float64): ``N[i] = sum_n w_n [values[n] == i]``.

    Example:
        >>> family_counts(np.array([[0, 1], [0, 1], [1, 0]]), (2, 2))
        array([[0., 2.],
               [1., 0.]])
    """
    values = np.asarray(values, dtype=np.int64).reshape(-1, len(shape))
    size = int(np.prod(shape, dtype=np.int64))
    if values.shape[0] == 0:
        return np.zeros(shape)
    flat = np.ravel_multi_index(tuple(values.T), shape) if shape else np.zeros(values.shape[0], np.int64)
    return np.bincount(flat, weights=weights, minlength=size).astype(np.float64).reshape(shape)


def normalise_counts(counts: np.ndarray, pseudo_count: np.ndarray | float = 0.0) -> np.ndarray:
    r"""CPT from counts: :math:`\theta_{jk} = (N_{jk} + a_{jk}) / \sum_{k'} (N_{jk'} + a_{jk'})`
    over the last axis; rows with zero total become uniform.

    Example:
        >>> normalise_counts(np.array([[3.0, 1.0], [0.0, 0.0]]), 1.0)
        array([[0.66666667, 0.33333333],
               [0.5       , 0.5       ]])
    """
    total = np.asarray(counts, dtype=np.float64) + pseudo_count
    norm = total.sum(axis=-1, keepdims=True)
    uniform = np.full_like(total, 1.0 / total.shape[-1])
    safe = np.where(norm > 0, norm, 1.0)
    return np.where(norm > 0, total / safe, uniform)


def dirichlet_log_density(theta: np.ndarray, alpha: np.ndarray) -> float:
    r"""Sum over rows (last axis = the simplex) of :math:`\log \mathrm{Dir}(\theta_j; \alpha_j)`:

    .. math::

        \log \Gamma\Big(\sum_k \alpha_{jk}\Big) - \sum_k \log \Gamma(\alpha_{jk})
        + \sum_k (\alpha_{jk} - 1) \log \theta_{jk},

    with :math:`0 \log 0 = 0` (an entry with :math:`\alpha = 1` and :math:`\theta = 0`
    contributes nothing; with :math:`\alpha > 1` it gives :math:`-\infty`).

    Example:
        >>> float(dirichlet_log_density(np.array([0.5, 0.5]), np.array([1.0, 1.0])))  # log Gamma(2)
        0.0
    """
    theta = np.asarray(theta, dtype=np.float64)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), theta.shape)
    norm = gammaln(alpha.sum(axis=-1)) - gammaln(alpha).sum(axis=-1)
    return float(norm.sum() + xlogy(alpha - 1.0, theta).sum())


# ============================================================================ helpers on a BayesNet
def _families(bn) -> list[tuple[str, tuple[str, ...], tuple[int, ...]]]:
    """``(var, (*parents, var), shape)`` per variable, in ``bn.variables`` order."""
    out = []
    for var in bn.variables:
        scope = (*bn.parents(var), var)
        out.append((var, scope, tuple(len(bn.states[u]) for u in scope)))
    return out


def _encode(bn, data) -> np.ndarray:
    rows = np.asarray(bn.encode_data(data))
    if rows.ndim != 2 or rows.shape[1] != len(bn.variables):
        raise DataError(
            f"encoded data must have shape (n, {len(bn.variables)}) for the variables "
            f"{list(bn.variables)}, got {rows.shape}"
        )
    if rows.shape[0] == 0:
        raise DataError("data has no rows: nothing to learn from")
    return rows.astype(np.int64)


def _pseudo_tables(bn, pseudo_count) -> dict[str, np.ndarray]:
    """``pseudo_count`` (a number, or a mapping var -> array broadcastable to that CPT's shape)
    -> var -> array of the CPT's shape, checked non-negative and finite."""
    tables = {}
    if isinstance(pseudo_count, Mapping):
        unknown = set(pseudo_count) - set(bn.variables)
        if unknown:
            raise DataError(f"pseudo_count names unknown variable {sorted(unknown)[0]!r}")
    for var, _, shape in _families(bn):
        value = pseudo_count.get(var, 0.0) if isinstance(pseudo_count, Mapping) else pseudo_count
        try:
            table = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
        except ValueError:
            raise DataError(
                f"pseudo_count of {var!r} has shape {np.shape(value)}, not broadcastable to its CPT's {shape}"
            ) from None
        if not np.all(np.isfinite(table)) or np.any(table < 0):
            raise DataError(f"pseudo_count of {var!r} must be finite and >= 0")
        tables[var] = table
    return tables


# ============================================================================ E-step
def data_is_complete(bn, data) -> bool:
    """True when no cell of ``data`` is missing (then one M-step is the exact estimate)."""
    return bool(np.all(_encode(bn, data) >= 0))


def _row_log_probs(bn, rows: np.ndarray) -> np.ndarray:
    """log p(x) of complete rows, ``(n,)``: sum over variables of a gathered log-CPT entry."""
    with np.errstate(divide="ignore"):
        total = np.zeros(rows.shape[0])
        for var, scope, _ in _families(bn):
            axes = [bn.variables.index(u) for u in scope]
            total += np.log(np.asarray(bn.cpt(var), dtype=np.float64))[tuple(rows[:, axes].T)]
    return total


_RULED_OUT = "EM cannot start from a model that rules data out"


def _raise_zero_rows(log_probs: np.ndarray, row_ids: np.ndarray) -> None:
    """The shared zero-probability check (``inference.discrete.check_evidence``), by data row."""
    from inference.discrete import check_evidence

    check_evidence(log_probs, labels=row_ids, unit="data row", where=_RULED_OUT)


def _complete_counts(bn, rows: np.ndarray) -> dict[str, np.ndarray]:
    counts = {}
    for var, scope, shape in _families(bn):
        axes = [bn.variables.index(u) for u in scope]
        counts[var] = family_counts(rows[:, axes], shape)
    return counts


def _pattern_groups(observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows grouped by missingness pattern: ``[(observed mask (V,), row indices), ...]``."""
    if observed.shape[1] <= 62:  # one integer code per pattern: a 1-D unique is much faster
        codes = observed.astype(np.int64) @ (np.int64(1) << np.arange(observed.shape[1], dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        patterns = observed[first]
    else:
        patterns, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(patterns) + 1))
    return [(patterns[g], order[bounds[g] : bounds[g + 1]]) for g in range(len(patterns))]


def _batched_posteriors(graph, evidence_vars, values, row_ids, n_families):
    """Sum over rows of the first ``n_families`` family posteriors, and the per-row log-evidence.

    Calls ``inference.exact.family_posteriors`` in chunks of at most ``_MAX_BATCH`` rows (to bound
    the memory of the per-row posteriors); zero-probability rows are named by their data row.
    """
    from inference.exact import family_posteriors

    sums = [np.zeros(f.log_table.shape) for f in graph.factors[:n_families]]
    log_ev = np.empty(values.shape[0])
    for start in range(0, values.shape[0], _MAX_BATCH):
        stop = min(values.shape[0], start + _MAX_BATCH)
        logz, posteriors = family_posteriors(
            graph, evidence_vars, values[start:stop], row_labels=row_ids[start:stop], row_unit="data row",
            where=_RULED_OUT,
        )
        logz = np.asarray(logz, dtype=np.float64)
        log_ev[start:stop] = logz
        for i in range(n_families):
            sums[i] += np.asarray(posteriors[i], dtype=np.float64).sum(axis=0)
    return sums, log_ev


def _indicator_graph(graph):
    r"""``graph`` with one observed child :math:`o_v` per variable, whose last state means "missing":

    .. math::

        p(o_v = k \mid x_v = j) = \tfrac12 [k = j], \qquad p(o_v = \text{missing} \mid x_v = j) = \tfrac12.

    Observing :math:`o_v = x_v` (observed cell) or :math:`o_v = \text{missing}` multiplies the
    joint by :math:`\tfrac12 [x_v = \text{value}]` or :math:`\tfrac12`: every missingness pattern
    becomes the *same* evidence set, whose posterior over the original variables is the one of
    the observed cells, and :math:`\log p(o) = \log p(x_{\mathrm{obs}}) - V \log 2`.
    """
    from inference.factors import Factor, FactorGraph

    states = dict(graph.states)
    factors = list(graph.factors)
    names = []
    for var in graph.variables:
        name = f"{var}:observed"
        while name in states:
            name += "'"
        k = len(graph.states[var])
        missing = "<missing>"
        while missing in graph.states[var]:
            missing += "'"
        table = np.full((k, k + 1), -np.inf)
        table[np.arange(k), np.arange(k)] = -np.log(2.0)
        table[:, k] = -np.log(2.0)
        states[name] = (*graph.states[var], missing)
        factors.append(Factor((var, name), table))
        names.append(name)
    return FactorGraph(states, factors, directed=graph.directed), tuple(names)


def _e_step_by_pattern(graph, rows, row_ids):
    """One ``family_posteriors`` call per missingness pattern (evidence = the observed cells)."""
    variables = graph.variables
    sums = [np.zeros(f.log_table.shape) for f in graph.factors]
    log_ev = np.empty(rows.shape[0])
    for pattern, members in _pattern_groups(rows >= 0):
        evidence_vars = tuple(v for v, seen in zip(variables, pattern) if seen)
        part, log_ev[members] = _batched_posteriors(
            graph, evidence_vars, rows[members][:, pattern], row_ids[members], len(graph.factors)
        )
        for total, add in zip(sums, part):
            total += add
    return sums, log_ev


def _e_step_by_indicators(graph, rows, row_ids):
    """One ``family_posteriors`` call for all rows, whatever their pattern (``_indicator_graph``)."""
    augmented, names = _indicator_graph(graph)
    cards = np.array([len(graph.states[v]) for v in graph.variables])
    values = np.where(rows >= 0, rows, cards[None, :])  # missing -> the indicator's last state
    sums, log_ev = _batched_posteriors(augmented, names, values, row_ids, len(graph.factors))
    return sums, log_ev + len(names) * np.log(2.0)


E_STEP_METHODS = ("auto", "patterns", "indicators")


def expected_counts(bn, data, *, method: str = "auto") -> tuple[dict[str, np.ndarray], float]:
    r"""The E-step: expected family counts :math:`\bar N_{vjk}` and the log-likelihood.

    .. math::

        \bar N_{vjk} = \sum_n p\big(x_{\pi(v)} = j, x_v = k \mid x^{(n)}_{\mathrm{obs}}\big),
        \qquad \log p(\mathcal D) = \sum_n \log p\big(x^{(n)}_{\mathrm{obs}}\big).

    1. Encode the data (``bn.encode_data``: -1 marks a missing cell).
    2. Complete rows: plain family counts (one ``bincount`` per family) and
       :math:`\log p(x^{(n)})` from the CPTs.
    3. Rows with missing cells: exact family posteriors from the batched
       ``inference.exact.family_posteriors`` (compiled once per structure and evidence set; new
       CPT values reuse it), summed over rows. Two ways, the same numbers:

       - ``"patterns"``: rows grouped by missingness pattern, one call per pattern with the
         observed cells as evidence. Best for one or a few patterns (a latent variable is a
         column missing in every row: one pattern).
       - ``"indicators"``: one call for all rows on the network extended by an observed
         indicator child per variable (``_indicator_graph``). Best for randomly missing cells,
         where every pattern would otherwise be compiled on its own.
       - ``"auto"`` (default): ``"patterns"`` when the incomplete rows share a single pattern,
         else ``"indicators"``.

    Args:
        bn: a :class:`pgm.bayesnet.BayesNet`.
        data: anything ``bn.encode_data`` reads.
        method: ``"auto"``, ``"patterns"`` or ``"indicators"`` (step 3).

    Returns:
        ``(counts, loglik)``: ``counts[var]`` shaped like ``bn.cpt(var)`` (parents first, then
        ``var``), ``loglik`` the exact log-likelihood of the observed cells under ``bn``.

    Raises:
        EvidenceError: a row has probability zero under ``bn`` (its index is named).
        DataError: no rows, or data of the wrong shape.

    Example::

        counts, loglik = expected_counts(asia, {"smoke": ["yes", None], "lung": ["no", "no"]})
    """
    if method not in E_STEP_METHODS:
        raise UnknownNameError(f"unknown E-step method {method!r}; available: {', '.join(E_STEP_METHODS)}")
    rows = _encode(bn, data)
    complete = (rows >= 0).all(axis=1)

    # 2. complete rows: direct counts
    full = rows[complete]
    counts = _complete_counts(bn, full)
    log_probs = _row_log_probs(bn, full)
    _raise_zero_rows(log_probs, np.flatnonzero(complete))
    loglik = float(log_probs.sum())

    # 3. incomplete rows: exact posteriors of every family
    if not complete.all():
        graph = bn.factor_graph()
        if tuple(graph.variables) != tuple(bn.variables):
            raise ModelError("bn.factor_graph() must list the variables in bn.variables order")
        ids = np.flatnonzero(~complete)
        part = rows[ids]
        if method == "auto":
            method = "patterns" if _single_pattern(part) else "indicators"
        e_step = _e_step_by_pattern if method == "patterns" else _e_step_by_indicators
        sums, log_ev = e_step(graph, part, ids)
        for (var, _, _), total in zip(_families(bn), sums):
            counts[var] += total
        loglik += float(log_ev.sum())
    return counts, loglik


def _single_pattern(rows: np.ndarray) -> bool:
    observed = rows >= 0
    return bool(np.all(observed == observed[:1]))


# ============================================================================ M-step and prior
def cpts_from_counts(bn, counts: Mapping[str, np.ndarray], pseudo_count=0.0):
    r"""The M-step: a BayesNet with the same structure and CPTs

    .. math::

        \theta_{vjk} = \frac{N_{vjk} + a_{vjk}}{\sum_{k'} (N_{vjk'} + a_{vjk'})}

    (maximum likelihood for :math:`a = 0`; the posterior mean under :math:`\mathrm{Dir}(a)`, which
    is the posterior mode under :math:`\mathrm{Dir}(a + 1)`, for :math:`a > 0`). A row whose
    numerator is all zero (parent configuration never seen and no pseudo-count) becomes uniform.

    Args:
        bn: the network whose structure is kept.
        counts: var -> (expected) counts shaped like ``bn.cpt(var)``, as :func:`expected_counts`
            returns them.
        pseudo_count: a number :math:`a \ge 0` for every cell, or a mapping var -> array
            broadcastable to that CPT's shape (see :func:`bdeu_pseudo_counts`).

    Example::

        counts, _ = expected_counts(asia, data)
        smoothed = cpts_from_counts(asia, counts, pseudo_count=1.0)   # pgmpy's "K2" prior
    """
    pseudo = _pseudo_tables(bn, pseudo_count)
    cpts = {}
    for var, _, shape in _families(bn):
        if var not in counts:
            raise DataError(f"counts lack the variable {var!r}")
        table = np.asarray(counts[var], dtype=np.float64)
        if table.shape != shape:
            raise DataError(f"counts of {var!r} have shape {table.shape}, its CPT has {shape}")
        if not np.all(np.isfinite(table)) or np.any(table < 0):
            raise DataError(f"counts of {var!r} must be finite and >= 0")
        cpts[var] = normalise_counts(table, pseudo[var])
    return bn.with_cpts(cpts)


def log_dirichlet_prior(bn, pseudo_count=0.0) -> float:
    r"""Log density of ``bn``'s CPTs under the prior that :func:`cpts_from_counts` maximises with:

    .. math::

        \log p(\theta) = \sum_{v, j} \log \mathrm{Dir}\big(\theta_{vj\cdot};\, a_{vj\cdot} + 1\big),

    so that :math:`\log p(\mathcal D \mid \theta) + \log p(\theta)` is EM's objective and each
    M-step maximises its expected version exactly. With every pseudo-count zero (maximum
    likelihood) there is no prior and this returns ``0.0``. A CPT entry of zero under a positive
    pseudo-count has density zero (``-inf``): start EM with a pseudo-count from a model with no
    zero entries (e.g. :func:`random_cpts`).
    """
    pseudo = _pseudo_tables(bn, pseudo_count)
    if all(not np.any(table) for table in pseudo.values()):
        return 0.0
    with np.errstate(divide="ignore"):
        return float(
            sum(dirichlet_log_density(np.asarray(bn.cpt(var)), pseudo[var] + 1.0) for var, _, _ in _families(bn))
        )


def bdeu_pseudo_counts(bn, equivalent_sample_size: float = 10.0) -> dict[str, np.ndarray]:
    r"""BDeu pseudo-counts :math:`a_{vjk} = \alpha / (q_v r_v)` (``alpha`` = equivalent sample
    size, :math:`q_v` parent configurations, :math:`r_v` states): a prior worth ``alpha`` rows
    spread uniformly over the family table (Heckerman, Geiger and Chickering, 1995). Pass the
    result as ``pseudo_count``; it matches pgmpy's ``BayesianEstimator(prior_type="BDeu")``."""
    if not np.isfinite(equivalent_sample_size) or equivalent_sample_size <= 0:
        raise DataError(f"equivalent_sample_size must be > 0, got {equivalent_sample_size!r}")
    return {
        var: np.full(shape, float(equivalent_sample_size) / float(np.prod(shape)))
        for var, _, shape in _families(bn)
    }


def random_cpts(bn, key, concentration: float = 1.0):
    r"""``bn`` with every CPT row drawn from :math:`\mathrm{Dir}(\text{concentration} \cdot \mathbf 1)`:
    a starting point for EM that breaks the symmetry of latent variables.

    Args:
        bn: the network whose structure is kept.
        key: a ``jax.random`` key; its bits seed a NumPy generator (one Dirichlet draw per CPT
            row, without compiling a JAX gamma sampler per table shape).
        concentration: the Dirichlet concentration (> 0); large values give near-uniform rows.

    Example::

        start = random_cpts(asia, jax.random.PRNGKey(0))
        fitted = inference.em.fit(start, data_with_missing_cells).params
    """
    key = as_key(key)
    import jax

    if not np.isfinite(concentration) or concentration <= 0:
        raise DataError(f"concentration must be > 0, got {concentration!r}")
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    rng = np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel())
    cpts = {}
    for var, _, shape in _families(bn):
        draw = rng.dirichlet(np.full(shape[-1], float(concentration)), size=shape[:-1])
        # clip away exact zeros a tiny concentration can produce, then renormalise
        draw = np.maximum(draw, 1e-12)
        cpts[var] = draw / draw.sum(axis=-1, keepdims=True)
    return bn.with_cpts(cpts)


# ============================================================================ from a structure
def fit_cpts(graph, states: Mapping[str, object], data, pseudo_count=0.0, **em_options):
    r"""A :class:`~pgm.bayesnet.BayesNet` with structure ``graph`` and CPTs learned from ``data``.

    Complete data give the closed form of :func:`cpts_from_counts` (one step); data with missing
    cells run EM (:func:`inference.em.fit`, options such as ``max_iter`` and ``tol`` passed on)
    from uniform CPTs. A variable that is never observed needs a symmetry-breaking start: build
    the network, draw :func:`random_cpts` and call ``inference.em.fit`` yourself.

    Args:
        graph: a ``networkx.DiGraph`` over the variables (e.g. from :mod:`pgm.structure`); nodes
            missing from it are added without parents.
        states: var -> sequence of state names; its order is the order of the variables and of
            each variable's parents.
        data: anything ``BayesNet.encode_data`` reads.
        pseudo_count: as in :func:`cpts_from_counts`.

    Example::

        dag = structure.hill_climb(data, asia.states)
        learned = fit_cpts(dag, asia.states, data, pseudo_count=1.0)
    """
    import networkx as nx

    from inference import em
    from pgm.bayesnet import BayesNet

    order = {v: i for i, v in enumerate(states)}
    unknown = [v for v in graph.nodes if v not in order]
    if unknown:
        raise DataError(f"graph node {unknown[0]!r} has no entry in states")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        raise ModelError(f"graph has a cycle through {cycle[0][0]!r}: {cycle}")
    parents = {v: sorted(graph.predecessors(v), key=order.get) if v in graph else [] for v in states}
    cpts = {}
    for v in states:
        shape = tuple(len(states[u]) for u in (*parents[v], v))
        cpts[v] = np.full(shape, 1.0 / shape[-1])
    start = BayesNet(states, parents, cpts)
    return em.fit(start, data, pseudo_count=pseudo_count, **em_options).params


# ============================================================================ partial and available-case
def available_case_cpts(bn, data, pseudo_count=0.0):
    r"""``bn`` with CPTs from available-case counts: family :math:`v` is counted on the rows where
    :math:`v` and all its parents are observed (module docstring, item 3), then smoothed as in
    :func:`cpts_from_counts`. With complete data it is the maximum-likelihood estimate.

    Example::

        rows = asia.encode_data(data)
        rows[::3, 2] = -1
        quick = available_case_cpts(asia, rows)   # pgmpy: MLE with complete_samples_only=False
    """
    rows = _encode(bn, data)
    index = {v: i for i, v in enumerate(bn.variables)}
    counts = {}
    for var, scope, shape in _families(bn):
        cols = [index[u] for u in scope]
        values = rows[:, cols]
        counts[var] = family_counts(values[np.all(values >= 0, axis=1)], shape)
    return cpts_from_counts(bn, counts, pseudo_count)


class _Partial:
    """An :class:`~inference.protocols.EMModel` around a BayesNet whose ``fixed`` CPTs stay as they are."""

    def __init__(self, bn, fixed: frozenset):
        self.bn, self.fixed = bn, fixed

    def expected_stats(self, data):
        return expected_counts(self.bn, data)

    def from_stats(self, stats, pseudo_count=0.0):
        new = cpts_from_counts(self.bn, stats, pseudo_count)
        if self.fixed:
            new = new.with_cpts({v: np.asarray(self.bn.cpt(v)) for v in self.fixed})
        return _Partial(new, self.fixed)

    def data_is_complete(self, data) -> bool:
        return data_is_complete(self.bn, data)

    def log_prior(self, pseudo_count=0.0) -> float:
        """The Dirichlet log prior of the free tables (a fixed table's is a constant)."""
        pseudo = _pseudo_tables(self.bn, pseudo_count)
        free = [v for v in self.bn.variables if v not in self.fixed]
        if all(not np.any(pseudo[v]) for v in free):
            return 0.0
        with np.errstate(divide="ignore"):
            return float(sum(dirichlet_log_density(np.asarray(self.bn.cpt(v)), pseudo[v] + 1.0) for v in free))


def fit_em(bn, data, *, start: Mapping | None = None, fixed=(), pseudo_count=0.0, **em_options):
    r"""EM (:func:`inference.em.fit`) from ``bn`` with some CPTs started from given values and
    others held fixed (module docstring, item 4; pgmpy's ``init_cpds``).

    Args:
        bn: the network (its CPTs are the start of the tables ``start`` does not name).
        data: anything ``bn.encode_data`` reads; missing cells as ``None`` / NaN / -1.
        start: var -> CPT to start from.
        fixed: variables whose CPTs are never re-estimated (their start value is kept).
        pseudo_count: as in :func:`cpts_from_counts` (the fixed tables ignore it).
        em_options: ``max_iter``, ``tol``, ... of :func:`inference.em.fit`.

    Returns:
        :func:`inference.em.fit`'s ``Result`` with ``params`` the fitted ``BayesNet``.

    Example::

        result = fit_em(asia, rows, start={"lung": lung_guess}, fixed=["asia", "smoke"])
    """
    import dataclasses

    from inference import em

    if isinstance(fixed, str):
        fixed = (fixed,)
    fixed = frozenset(fixed)
    for v in fixed | set(start or {}):
        if v not in bn.variables:
            raise UnknownNameError(f"fit_em: unknown variable {v!r}; known: {list(bn.variables)}")
    model = bn.with_cpts(dict(start)) if start else bn
    result = em.fit(_Partial(model, fixed), data, pseudo_count=pseudo_count, **em_options)
    return dataclasses.replace(result, params=result.params.bn)
