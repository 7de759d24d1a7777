r"""Learning the structure (the DAG) of a Bayesian network from complete discrete data.

**Score-based search.** A decomposable score is a sum of *family scores*, one per variable
:math:`v` with parent set :math:`\Pi`, each a function of the family counts :math:`N_{jk}`
(:math:`j` a parent configuration out of :math:`q = \prod_{u \in \Pi} r_u`, :math:`k` a state of
:math:`v` out of :math:`r`, :math:`N_j = \sum_k N_{jk}`, :math:`n` rows):

.. math::

    \mathrm{BIC}(v, \Pi) &= \sum_{j,k} N_{jk} \log \frac{N_{jk}}{N_j}
        \;-\; \frac{\log n}{2}\, q\,(r - 1), \\
    \mathrm{BDeu}(v, \Pi) &= \sum_j \Big[\log\Gamma(\alpha_j) - \log\Gamma(N_j + \alpha_j)\Big]
        + \sum_{j,k} \Big[\log\Gamma(N_{jk} + \alpha_{jk}) - \log\Gamma(\alpha_{jk})\Big],
    \quad \alpha_j = \frac{\alpha}{q},\; \alpha_{jk} = \frac{\alpha}{q r},

with :math:`\alpha` the equivalent sample size. BDeu is the log marginal likelihood of the
family under a Dirichlet prior that gives Markov-equivalent graphs the same score; BIC is its
large-sample approximation. Three more (pgmpy's ``K2``, ``AIC`` and ``BDs``):

.. math::

    \mathrm{K2}(v, \Pi) &= \sum_j \Big[\log\Gamma(r) - \log\Gamma(N_j + r)\Big]
        + \sum_{j,k} \log\Gamma(N_{jk} + 1), \\
    \mathrm{AIC}(v, \Pi) &= \sum_{j,k} N_{jk} \log \frac{N_{jk}}{N_j} - q\,(r - 1),

and BDs (Scutari, 2016), BDeu with the prior spread over the :math:`\tilde q` parent
configurations *seen* in the data only (:math:`\alpha_j = \alpha / \tilde q`,
:math:`\alpha_{jk} = \alpha / (\tilde q r)` on those, nothing on the others); with every
configuration seen it is BDeu. Parent configurations never seen in the data contribute exactly zero
to both sums (only the BIC penalty counts them), so counting runs over the observed ones only.

:func:`hill_climb` climbs this score by single-edge moves:

1. Start from the empty graph; every family score is computed once and cached by
   ``(variable, parent set)``.
2. For every legal move (add ``u -> v`` if it creates no cycle and ``v`` has fewer than
   ``max_parents`` parents, remove an edge, reverse an edge if no other path joins its ends and
   the new parent set is small enough) the gain is the change of the one or two families it
   touches; families already scored come from the cache, so after a move only the families of
   the changed variables are ever counted anew.
3. Take the best move if it gains more than ``epsilon``, unless it undoes one of the last
   ``tabu_length`` moves; otherwise stop.

**Chow-Liu trees.** Among all trees, the one whose edges maximise the total empirical mutual
information :math:`I(X_u; X_v) = \sum_{a,b} \hat p(a,b) \log \frac{\hat p(a,b)}{\hat p(a)\hat p(b)}`
is the maximum-likelihood tree-shaped network (:func:`chow_liu`): a maximum spanning tree,
oriented away from a root.

Example::

    import jax
    from genzoo.data import bn_network_path
    from pgm.bayesnet import BayesNet
    from pgm import structure

    asia = BayesNet.from_bif(bn_network_path("asia"))
    data = asia.sample(jax.random.PRNGKey(0), 5000)
    dag = structure.hill_climb(data, asia.states, score="bdeu")
    tree = structure.chow_liu(data, asia.states, root="smoke")

References:
    Chow and Liu (1968). Approximating discrete probability distributions with dependence trees.
    Heckerman, Geiger and Chickering (1995). Learning Bayesian networks: the combination of
    knowledge and statistical data. Machine Learning 20.
    Schwarz (1978). Estimating the dimension of a model. Annals of Statistics 6.
    Akaike (1974). A new look at the statistical model identification.
    Cooper and Herskovits (1992). A Bayesian method for the induction of probabilistic networks
    from data (K2). Machine Learning 9.
    Scutari (2016). An empirical-Bayes score for discrete Bayesian networks (BDs). PGM 2016.
    Friedman, Geiger and Goldszmidt (1997). Bayesian network classifiers (TAN). Machine Learning 29.
    Koller and Friedman (2009). Probabilistic Graphical Models, chapter 18.
"""

from __future__ import annotations

import collections
import math
from typing import Mapping, Sequence

import networkx as nx
import numpy as np
from scipy.special import gammaln, xlogy

from inference.errors import DataError, UnknownNameError

__all__ = [
    "encode_complete",
    "family_table",
    "bic_family_score",
    "bdeu_family_score",
    "k2_family_score",
    "aic_family_score",
    "bds_family_score",
    "tan",
    "local_score",
    "score_graph",
    "hill_climb",
    "mutual_information",
    "chow_liu",
]

SCORES = ("bic", "bdeu", "k2", "aic", "bds")


# ============================================================================ data
def encode_complete(data, states: Mapping[str, Sequence[str]]) -> np.ndarray:
    """``data`` (anything ``BayesNet.encode_data`` reads) -> ``(n, V)`` int64 state indices in the
    order of ``states``; structure learning needs complete data, so a missing cell raises
    :class:`DataError` naming its row and variable."""
    from pgm.bayesnet import BayesNet

    states = {v: tuple(s) for v, s in states.items()}
    if not states:
        raise DataError("states is empty: no variables to learn a structure over")
    for v, s in states.items():
        if len(s) == 0:
            raise DataError(f"variable {v!r} has no states")
    uniform = {v: np.full(len(s), 1.0 / len(s)) for v, s in states.items()}
    edgeless = BayesNet(states, {v: () for v in states}, uniform, name="structure-data")
    rows = np.asarray(edgeless.encode_data(data), dtype=np.int64)
    if rows.shape[0] == 0:
        raise DataError("data has no rows: nothing to learn from")
    missing = np.argwhere(rows < 0)
    if missing.size:
        row, col = missing[0]
        raise DataError(
            f"structure learning needs complete data: row {int(row)} misses variable "
            f"{list(states)[int(col)]!r} ({len(missing)} missing cells in all)"
        )
    # encode_data may order columns by its own (topological) order; ours is the order of states
    order = [list(edgeless.variables).index(v) for v in states]
    return rows[:, order]


# ============================================================================ family scores
def family_table(rows: np.ndarray, child: int, parents: Sequence[int], cards: Sequence[int]) -> np.ndarray:
    """Counts :math:`N_{jk}` of column ``child`` (``k``) per configuration ``j`` of the columns
    ``parents``: an ``(m, r)`` array. When the full table is small (``q r <= max(4 n, 2^16)``) it is
    the full table (``m = q``, unobserved configurations as zero rows: one ``bincount``); otherwise
    only the ``m`` configurations seen in the data (one ``unique``, then a ``bincount``). Both
    scores give zero rows exactly zero, so either form scores the same."""
    r = int(cards[child])
    n = rows.shape[0]
    shape = tuple(int(cards[p]) for p in parents)
    q = math.prod(shape)
    if q * r <= max(4 * n, 2**16):
        codes = np.zeros(n, dtype=np.int64)
        for p, card in zip(parents, shape):  # mixed-radix code of the parent configuration
            codes = codes * card + rows[:, p]
        config, m = codes, q
    else:
        if q < 2**62:
            codes = np.ravel_multi_index(tuple(rows[:, list(parents)].T), shape)
            _, config = np.unique(codes, return_inverse=True)
        else:  # too many configurations for one int64 code: unique rows instead
            _, config = np.unique(rows[:, list(parents)], axis=0, return_inverse=True)
        config = config.reshape(-1)
        m = int(config.max()) + 1
    return np.bincount(config * r + rows[:, child], minlength=m * r).reshape(m, r).astype(np.float64)


def bic_family_score(table: np.ndarray, q: int, n: int) -> float:
    r""":math:`\sum_{jk} N_{jk}\log(N_{jk}/N_j) - \tfrac{1}{2}\log(n)\, q (r-1)` from the counts
    ``table`` (observed parent configurations x states), ``q`` parent configurations in all and
    ``n`` rows."""
    r = table.shape[1]
    loglik = xlogy(table, table).sum() - xlogy(table.sum(axis=1), table.sum(axis=1)).sum()
    return float(loglik - 0.5 * math.log(n) * float(q) * (r - 1))


def bdeu_family_score(table: np.ndarray, q: int, equivalent_sample_size: float) -> float:
    r"""The BDeu family score (module docstring) from the counts ``table`` (observed parent
    configurations x states) and ``q`` parent configurations in all; unobserved configurations
    add exactly zero."""
    r = table.shape[1]
    a_j = equivalent_sample_size / float(q)
    a_jk = a_j / r
    n_j = table.sum(axis=1)
    per_config = gammaln(a_j) - gammaln(n_j + a_j)
    per_cell = gammaln(table + a_jk) - gammaln(a_jk)
    return float(per_config.sum() + per_cell.sum())


def k2_family_score(table: np.ndarray) -> float:
    r"""The K2 family score (module docstring), :math:`\alpha_{jk} = 1`: zero rows add zero."""
    r = table.shape[1]
    n_j = table.sum(axis=1)
    return float(np.sum(gammaln(r) - gammaln(n_j + r)) + np.sum(gammaln(table + 1.0)))


def aic_family_score(table: np.ndarray, q: int) -> float:
    r""":math:`\sum_{jk} N_{jk}\log(N_{jk}/N_j) - q (r-1)` (Akaike's penalty: one per free parameter)."""
    r = table.shape[1]
    loglik = xlogy(table, table).sum() - xlogy(table.sum(axis=1), table.sum(axis=1)).sum()
    return float(loglik - float(q) * (r - 1))


def bds_family_score(table: np.ndarray, equivalent_sample_size: float) -> float:
    r"""The BDs family score (module docstring): BDeu over the :math:`\tilde q` parent
    configurations with :math:`N_j > 0` only."""
    seen = table[table.sum(axis=1) > 0]
    if seen.shape[0] == 0:
        return 0.0
    return bdeu_family_score(seen, seen.shape[0], equivalent_sample_size)


def _check_score(score: str, equivalent_sample_size: float) -> str:
    name = str(score).lower()
    if name not in SCORES:
        raise UnknownNameError(f"unknown score {score!r}; available: {', '.join(SCORES)}")
    if name in ("bdeu", "bds") and (not np.isfinite(equivalent_sample_size) or equivalent_sample_size <= 0):
        raise DataError(f"equivalent_sample_size must be > 0, got {equivalent_sample_size!r}")
    return name


def _family_score(rows, child, parents, cards, score, ess) -> float:
    table = family_table(rows, child, parents, cards)
    q = math.prod(int(cards[p]) for p in parents)
    if score == "bic":
        return bic_family_score(table, q, rows.shape[0])
    if score == "k2":
        return k2_family_score(table)
    if score == "aic":
        return aic_family_score(table, q)
    if score == "bds":
        return bds_family_score(table, ess)
    return bdeu_family_score(table, q, ess)


def local_score(
    data, states, variable: str, parents: Sequence[str] = (), *, score: str = "bic",
    equivalent_sample_size: float = 10.0,
) -> float:
    """The family score of ``variable`` with ``parents`` on ``data`` (``score``: one of ``SCORES``).

    Example::

        local_score(data, asia.states, "dysp", ["bronc", "either"], score="bdeu")
    """
    score = _check_score(score, equivalent_sample_size)
    rows = encode_complete(data, states)
    names = list(states)
    for v in (variable, *parents):
        if v not in states:
            raise UnknownNameError(f"unknown variable {v!r}; known: {names}")
    cards = [len(states[v]) for v in names]
    return _family_score(
        rows, names.index(variable), [names.index(p) for p in parents], cards, score, equivalent_sample_size
    )


def score_graph(graph: nx.DiGraph, data, states, *, score: str = "bic", equivalent_sample_size: float = 10.0) -> float:
    """Sum of the family scores of every variable of ``states`` with its parents in ``graph``
    (``score``: one of ``SCORES``); a model with no variables scores 0, as in pgmpy."""
    score = _check_score(score, equivalent_sample_size)
    if not states:
        return 0.0
    rows = encode_complete(data, states)
    names = list(states)
    cards = [len(states[v]) for v in names]
    total = 0.0
    for i, v in enumerate(names):
        parents = sorted(names.index(p) for p in graph.predecessors(v)) if v in graph else []
        total += _family_score(rows, i, parents, cards, score, equivalent_sample_size)
    return total


# ============================================================================ hill climbing
def _reachability(adj: np.ndarray) -> np.ndarray:
    """``reach[i, j]``: a directed path of length >= 1 leads from ``i`` to ``j`` (Warshall)."""
    reach = adj.copy()
    for k in range(adj.shape[0]):
        reach |= reach[:, k : k + 1] & reach[k : k + 1, :]
    return reach


def hill_climb(
    data,
    states: Mapping[str, Sequence[str]],
    *,
    score: str = "bic",
    equivalent_sample_size: float = 10.0,
    max_parents: int | None = None,
    max_iter: int = 1000,
    tabu_length: int = 0,
    epsilon: float = 1e-8,
    start_dag=None,
    fixed_edges=(),
    white_list=None,
    black_list=None,
) -> nx.DiGraph:
    r"""Greedy hill climbing over DAGs with a decomposable score (see the module docstring).

    Args:
        data: complete data, anything ``BayesNet.encode_data`` reads.
        states: var -> state names (their order fixes the state indices and the variable order).
        score: one of ``SCORES`` (``"bic"``, ``"bdeu"``, ``"k2"``, ``"aic"``, ``"bds"``).
        equivalent_sample_size: :math:`\alpha` of BDeu.
        max_parents: the most parents a variable may get (None: no limit).
        max_iter: the most moves.
        tabu_length: forbid undoing any of the last ``tabu_length`` moves (0: plain hill climbing).
        epsilon: stop when the best move gains no more than this.
        start_dag: the graph to start from (a ``networkx.DiGraph`` or a list of edges; default
            empty), pgmpy's ``start_dag``.
        fixed_edges: edges that are added to the start and never removed or reversed.
        white_list: when given, the only edges that may be added (or be created by a reversal).
        black_list: edges that may never be added (nor created by a reversal).

    Returns:
        a ``networkx.DiGraph`` over all variables; ``graph.graph`` holds ``score`` (the total),
        ``iterations`` (moves made) and ``scored_families`` (distinct families counted).

    Example::

        dag = hill_climb(data, asia.states, score="bdeu", equivalent_sample_size=5.0)
    """
    score = _check_score(score, equivalent_sample_size)
    if max_parents is not None and int(max_parents) < 0:
        raise DataError(f"max_parents must be >= 0, got {max_parents!r}")
    limit = len(states) if max_parents is None else int(max_parents)
    rows = np.asfortranarray(encode_complete(data, states))  # columns contiguous: fast gathers
    names = list(states)
    cards = [len(states[v]) for v in names]
    V = len(names)

    cache: dict[tuple[int, frozenset], float] = {}

    def local(v: int, parents: frozenset) -> float:
        key = (v, parents)
        if key not in cache:
            cache[key] = _family_score(rows, v, sorted(parents), cards, score, equivalent_sample_size)
        return cache[key]

    # 1. the start graph (empty by default) with the fixed edges
    index = {v: i for i, v in enumerate(names)}
    start_edges = _edge_ids(start_dag.edges if isinstance(start_dag, nx.DiGraph) else (start_dag or ()),
                            index, "start_dag")
    fixed = _edge_ids(fixed_edges, index, "fixed_edges")
    allowed = None if white_list is None else _edge_ids(white_list, index, "white_list")
    banned = _edge_ids(black_list or (), index, "black_list")
    adj = np.zeros((V, V), dtype=bool)
    for u, v in start_edges | fixed:
        adj[u, v] = True
    if not nx.is_directed_acyclic_graph(nx.from_numpy_array(adj.astype(int), create_using=nx.DiGraph)):
        raise DataError("start_dag with fixed_edges has a directed cycle")
    parents = [frozenset(np.flatnonzero(adj[:, v]).tolist()) for v in range(V)]
    current = [local(v, parents[v]) for v in range(V)]

    def addable(u, v):
        return (u, v) not in banned and (allowed is None or (u, v) in allowed)

    tabu: collections.deque = collections.deque(maxlen=max(tabu_length, 0) or None)
    iterations = 0
    for _ in range(max_iter):
        # 2. the gain of every legal move
        reach = _reachability(adj)
        best_gain, best_move = epsilon, None
        for u in range(V):
            for v in range(V):
                if u == v:
                    continue
                if adj[u, v]:
                    if (u, v) in fixed:
                        continue
                    without = parents[v] - {u}
                    gain = local(v, without) - current[v]
                    if ("+", u, v) not in tabu and gain > best_gain:
                        best_gain, best_move = gain, ("-", u, v)
                    # reverse u -> v: no other path u ~> v, and room for a parent of u
                    other_path = bool(np.any(adj[u] & reach[:, v] & (np.arange(V) != v)))
                    if (not other_path and len(parents[u]) < limit and ("r", v, u) not in tabu
                            and addable(v, u)):
                        gain_r = gain + local(u, parents[u] | {v}) - current[u]
                        if gain_r > best_gain:
                            best_gain, best_move = gain_r, ("r", u, v)
                elif not reach[v, u] and len(parents[v]) < limit and ("-", u, v) not in tabu and addable(u, v):
                    gain = local(v, parents[v] | {u}) - current[v]
                    if gain > best_gain:
                        best_gain, best_move = gain, ("+", u, v)
        if best_move is None:
            break
        # 3. apply it; only the changed families get new scores
        op, u, v = best_move
        if op == "+":
            adj[u, v] = True
            parents[v] = parents[v] | {u}
        elif op == "-":
            adj[u, v] = False
            parents[v] = parents[v] - {u}
        else:
            adj[u, v], adj[v, u] = False, True
            parents[v] = parents[v] - {u}
            parents[u] = parents[u] | {v}
        for w in {u, v}:
            current[w] = local(w, parents[w])
        if tabu_length > 0:
            tabu.append(best_move)
        iterations += 1

    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from((names[u], names[v]) for u, v in zip(*np.nonzero(adj)))
    graph.graph.update(score=float(sum(current)), iterations=iterations, scored_families=len(cache))
    return graph


def _edge_ids(edges, index, what) -> set:
    """Edges by name -> a set of (parent id, child id); an unknown name raises naming ``what``."""
    out = set()
    for edge in edges:
        try:
            u, v = edge
        except (TypeError, ValueError):
            raise DataError(f"{what} must hold (parent, child) pairs, got {edge!r}") from None
        for w in (u, v):
            if w not in index:
                raise UnknownNameError(f"{what} names unknown variable {w!r}; known: {list(index)}")
        if u == v:
            raise DataError(f"{what} holds a self-loop on {u!r}")
        out.add((index[u], index[v]))
    return out


# ============================================================================ Chow-Liu
def mutual_information(rows: np.ndarray, cards: Sequence[int]) -> np.ndarray:
    r"""``(V, V)`` matrix of empirical mutual informations (nats) between the columns of ``rows``:
    :math:`I_{uv} = \sum_{a,b} \hat p_{uv}(a,b) \log \frac{\hat p_{uv}(a,b)}{\hat p_u(a) \hat p_v(b)}`,
    each from one ``bincount`` of the pair; the diagonal is zero."""
    from pgm.bn_learning import family_counts

    rows = np.asarray(rows, dtype=np.int64)
    n, V = rows.shape
    mi = np.zeros((V, V))
    for u in range(V):
        for v in range(u + 1, V):
            joint = family_counts(rows[:, [u, v]], (int(cards[u]), int(cards[v]))) / n
            outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
            mi[u, v] = mi[v, u] = float(np.sum(xlogy(joint, joint) - xlogy(joint, np.where(joint > 0, outer, 1.0))))
    return mi


def chow_liu(data, states: Mapping[str, Sequence[str]], root: str | None = None) -> nx.DiGraph:
    r"""The Chow-Liu tree: the maximum spanning tree of the pairwise mutual information
    (Kruskal, via ``networkx.maximum_spanning_tree``), oriented away from ``root``.

    Args:
        data: complete data, anything ``BayesNet.encode_data`` reads.
        states: var -> state names.
        root: the variable the edges point away from (default: the first variable of ``states``).

    Returns:
        a ``networkx.DiGraph`` tree over all variables; each edge carries ``weight`` = its mutual
        information, ``graph.graph["mutual_information"]`` the total.

    Example::

        tree = chow_liu(data, asia.states, root="asia")
    """
    rows = encode_complete(data, states)
    names = list(states)
    if root is None:
        root = names[0]
    if root not in states:
        raise UnknownNameError(f"unknown root variable {root!r}; known: {names}")
    mi = mutual_information(rows, [len(states[v]) for v in names])
    complete = nx.Graph()
    complete.add_nodes_from(names)
    complete.add_weighted_edges_from(
        (names[u], names[v], mi[u, v]) for u in range(len(names)) for v in range(u + 1, len(names))
    )
    tree = nx.maximum_spanning_tree(complete, algorithm="kruskal")
    dag = nx.bfs_tree(tree, root)
    dag.add_nodes_from(names)
    for a, b in dag.edges:
        dag.edges[a, b]["weight"] = tree.edges[a, b]["weight"]
    dag.graph["mutual_information"] = float(sum(w for _, _, w in tree.edges(data="weight")))
    return dag


def tan(data, states: Mapping[str, Sequence[str]], class_variable: str, root: str | None = None) -> nx.DiGraph:
    r"""Tree-augmented naive Bayes (TAN): the class points to every feature, and the features form
    the maximum spanning tree of the conditional mutual information given the class,

    .. math::

        I(X_u; X_v \mid C) = \sum_c \hat p(c)\, I(X_u; X_v \mid C = c),

    oriented away from ``root`` (pgmpy's ``TreeSearch(data, root_node=root).estimate(
    estimator_type="tan", class_node=class_variable)``).

    Args:
        data: complete data; states: var -> state names.
        class_variable: the class; root: the feature the tree points away from (default: the
            first feature of ``states``).

    Returns:
        a ``networkx.DiGraph``; each tree edge carries ``weight``, ``graph.graph["conditional_mutual_information"]``
        the tree's total.

    Example::

        dag = tan(data, states, "class", root="x1")
    """
    rows = encode_complete(data, states)
    names = list(states)
    if class_variable not in states:
        raise UnknownNameError(f"unknown class_variable {class_variable!r}; known: {names}")
    features = [v for v in names if v != class_variable]
    if root is None:
        root = features[0] if features else None
    if root not in features:
        raise UnknownNameError(f"root must be a feature other than the class {class_variable!r}, got {root!r}")
    c = names.index(class_variable)
    cols = [names.index(v) for v in features]
    cards = [len(states[v]) for v in features]
    cmi = np.zeros((len(features), len(features)))
    n = rows.shape[0]
    for k in range(len(states[class_variable])):
        subset = rows[rows[:, c] == k][:, cols]
        if subset.shape[0]:
            cmi += subset.shape[0] / n * mutual_information(subset, cards)
    complete = nx.Graph()
    complete.add_nodes_from(features)
    complete.add_weighted_edges_from(
        (features[u], features[v], cmi[u, v]) for u in range(len(features)) for v in range(u + 1, len(features))
    )
    tree = nx.maximum_spanning_tree(complete, algorithm="kruskal")
    dag = nx.bfs_tree(tree, root)
    dag.add_nodes_from(names)
    for a, b in dag.edges:
        dag.edges[a, b]["weight"] = tree.edges[a, b]["weight"]
    dag.add_edges_from((class_variable, v) for v in features)
    dag.graph["conditional_mutual_information"] = float(sum(w for _, _, w in tree.edges(data="weight")))
    return dag
