"""Markov random fields: discrete variables and non-negative potentials over any graph.

A Markov random field (an undirected graphical model) over discrete variables
:math:`x = (x_1, \\dots, x_V)` is a product of potentials over cliques :math:`C` of a graph,

.. math::

    p(x) = \\frac{1}{Z} \\prod_C \\psi_C(x_C), \\qquad
    Z = \\sum_x \\prod_C \\psi_C(x_C), \\qquad \\psi_C \\ge 0.

Unlike a Bayesian network's CPTs, the potentials need not be normalised, so the partition
function :math:`Z` is a sum over every joint state: the hard part of every question asked of an
MRF. On a thin graph (a tree, a chain, a 6 x 6 torus, a 4 x 40 strip) the exact engine computes it
by a planned contraction (``inference.exact.log_evidence(net)``); elsewhere loopy BP, mean field,
samplers and AIS approximate it.

The net is a NumPyro program whose every potential enters with ``numpyro.factor``::

    #   x_a --- x_b          psi_ab(x_a, x_b)
    #    |       |
    #   x_c --- x_d          p(x) ~ prod_C psi_C(x_C)

and it exposes its :class:`~inference.factors.FactorGraph` (``factor_graph()``), through which
``inference.exact``, ``inference.bp``, ``inference.gibbs`` and ``inference.meanfield`` run on it.

References:
    Hammersley and Clifford (1971). Markov fields on finite graphs and lattices.
    Koller and Friedman (2009). Probabilistic Graphical Models, chapter 4. MIT Press.
    Wainwright and Jordan (2008). Graphical models, exponential families, and variational inference.

Example:
    >>> import numpy as np
    >>> from pgm.mrf import MarkovNet
    >>> from inference import exact
    >>> net = MarkovNet({"a": 2, "b": 2}, {("a", "b"): [[4.0, 1.0], [1.0, 4.0]]})
    >>> round(float(np.exp(exact.log_evidence(net).log_evidence)), 6)   # 4 + 1 + 1 + 4
    10.0
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.errors import DataError, ModelError
from inference.factors import Factor, FactorGraph
from inference.rng import as_key

__all__ = ["MarkovNet", "check_potential_table"]


def check_potential_table(table, expected_shape: tuple, where: str, *, log: bool) -> np.ndarray:
    """A potential (``log=False``) or log-potential (``log=True``) table as float64, checked.

    Raises :class:`ModelError` naming ``where`` for a wrong shape, a NaN, a negative or infinite
    potential, or a log-potential of :math:`+\\infty`.
    """
    try:
        array = np.asarray(table, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: the table is not an array of numbers") from None
    if array.shape != tuple(expected_shape):
        raise ModelError(f"{where}: table has shape {array.shape}, expected {tuple(expected_shape)}")
    bad = np.isnan(array) | (np.isposinf(array) if log else (~np.isfinite(array) | (array < 0)))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "log-potential" if log else "potential"
        raise ModelError(
            f"{where}: {kind} entry {index} is {float(array[index])!r}; "
            + ("log-potentials must be < +inf and not NaN" if log else "potentials must be finite and >= 0")
        )
    return array


def _check_states(states: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    if not isinstance(states, Mapping) or not states:
        raise ModelError("states must be a non-empty mapping variable -> number of states (or state names)")
    out = {}
    for var, spec in states.items():
        if not isinstance(var, str):
            raise ModelError(f"variable names must be strings, got {var!r}")
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, (bool, np.bool_)):
            if spec < 1:
                raise ModelError(f"variable {var!r} must have at least one state, got {int(spec)}")
            out[var] = tuple(str(k) for k in range(int(spec)))
        elif isinstance(spec, Sequence) and not isinstance(spec, str):
            names = tuple(str(s) for s in spec)
            if not names:
                raise ModelError(f"variable {var!r} has no states")
            if len(set(names)) != len(names):
                raise ModelError(f"variable {var!r} names a state twice: {list(names)}")
            out[var] = names
        else:
            raise ModelError(f"states of variable {var!r} must be a positive int or a list of names, got {spec!r}")
    return out


class MarkovNet:
    """A Markov random field: variables with finitely many states and potential tables.

    .. math::

        \\log \\tilde p(x) = \\sum_C \\log \\psi_C(x_C), \\qquad p(x) = \\tilde p(x) / Z.

    Args:
        states: ``{variable: number of states | list of state names}``.
        potentials: ``{scope: table}``: a scope is a variable name (a unary potential) or a tuple of
            names; the table's axes follow the scope, one per variable, sized by its states. A scope
            may appear once; two potentials over the same variables multiply (merge them first).
        log: ``True`` when the tables are log-potentials (any real, or ``-inf`` for zero).
        name: a label for reports.

    Raises:
        ModelError: a scope naming an unknown variable, a table of the wrong shape, a negative,
            infinite or NaN potential (a NaN or :math:`+\\infty` log-potential), a variable with no
            states. Every message names the scope and the entry.

    A variable in no potential is uniform (its states equally likely); a graph in several
    connected pieces factorises, and :math:`\\log Z` is the sum of the pieces'.

    Example:
        >>> net = MarkovNet({"a": ("off", "on"), "b": 2}, {"a": [1.0, 3.0], ("a", "b"): [[2.0, 1.0], [1.0, 2.0]]})
        >>> sorted(net.graph.edges())
        [('a', 'b')]
        >>> float(net.log_potential({"a": 1, "b": 1}))  # log(3 * 2)
        1.791759469228055
    """

    def __init__(self, states: Mapping[str, Any], potentials: Mapping[Any, Any], *, log: bool = False,
                 name: str = "markovnet"):
        self._states = _check_states(states)
        if not isinstance(potentials, Mapping):
            raise ModelError(f"potentials must be a mapping scope -> table, got {type(potentials).__name__}")
        tables: dict[tuple[str, ...], np.ndarray] = {}
        for scope, table in potentials.items():
            scope_t = (scope,) if isinstance(scope, str) else tuple(scope)
            where = f"potential over {scope_t}"
            if not scope_t:
                raise ModelError(f"{where}: a potential needs at least one variable")
            for var in scope_t:
                if var not in self._states:
                    raise ModelError(f"{where} names unknown variable {var!r}; known: {sorted(self._states)[:8]}")
            if len(set(scope_t)) != len(scope_t):
                raise ModelError(f"{where} names a variable twice")
            if scope_t in tables:
                raise ModelError(f"{where} is given twice")
            shape = tuple(len(self._states[v]) for v in scope_t)
            array = check_potential_table(table, shape, where, log=log)
            if log:
                tables[scope_t] = array
            else:
                with np.errstate(divide="ignore"):
                    tables[scope_t] = np.log(array)
        self._log_tables = tables
        self.name = str(name)

    @classmethod
    def from_graph(cls, graph: nx.Graph, states: int, edge_potential, node_potential=None, *, log: bool = False,
                   name: str = "markovnet") -> "MarkovNet":
        """The same pairwise potential on every edge of a ``networkx`` graph (nodes named by ``str``),
        and optionally the same unary potential on every node; each node has ``states`` states.

        Example:
            >>> net = MarkovNet.from_graph(nx.cycle_graph(3), 2, [[2.0, 1.0], [1.0, 2.0]])
            >>> sorted(net.variables), len(net.log_potentials)
            (['0', '1', '2'], 3)
        """
        if not isinstance(graph, nx.Graph) or graph.is_directed():
            raise ModelError(f"graph must be an undirected networkx.Graph, got {type(graph).__name__}")
        if any(nx.selfloop_edges(graph)):
            raise ModelError("the graph has a self-loop: a pairwise potential needs two different variables")
        names = {n: str(n) for n in graph.nodes()}
        if len(set(names.values())) != len(names):
            raise ModelError("two nodes of the graph have the same name as strings")
        pots = {(names[a], names[b]): edge_potential for a, b in graph.edges()}
        if node_potential is not None:
            pots.update({names[n]: node_potential for n in graph.nodes()})
        return cls({names[n]: states for n in graph.nodes()}, pots, log=log, name=name)

    # ------------------------------------------------------------------ structure
    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self._states)

    @property
    def states(self) -> dict[str, tuple[str, ...]]:
        return dict(self._states)

    @property
    def log_potentials(self) -> dict[tuple[str, ...], np.ndarray]:
        """``{scope: log table}`` (copies)."""
        return {s: t.copy() for s, t in self._log_tables.items()}

    @functools.cached_property
    def graph(self) -> nx.Graph:
        """The Markov network: variables joined when they share a potential."""
        g = nx.Graph()
        g.add_nodes_from(self._states)
        for scope in self._log_tables:
            g.add_edges_from(itertools.combinations(scope, 2))
        return g

    def factor_graph(self) -> FactorGraph:
        """The factor graph: one factor per potential, its log-table as is."""
        return FactorGraph(self._states, [Factor(s, t) for s, t in self._log_tables.items()])

    def __repr__(self) -> str:
        return f"MarkovNet({self.name!r}, {len(self._states)} variables, {len(self._log_tables)} potentials)"

    # ------------------------------------------------------------------ scoring
    def _columns(self, assignments) -> tuple[dict[str, np.ndarray], tuple]:
        if isinstance(assignments, Mapping):
            unknown = [v for v in assignments if v not in self._states]
            if unknown:
                raise DataError(f"assignment names unknown variable {unknown[0]!r}")
            missing = [v for v in self._states if v not in assignments]
            if missing:
                raise DataError(f"assignment lacks variable {missing[0]!r}")
            cols = {v: np.asarray(assignments[v]) for v in self._states}
        else:
            array = np.asarray(assignments)
            if array.ndim < 1 or array.shape[-1] != len(self._states):
                raise DataError(
                    f"assignments must have shape (..., {len(self._states)}) (one column per variable), got {array.shape}"
                )
            cols = {v: array[..., i] for i, v in enumerate(self._states)}
        shape = np.broadcast_shapes(*(c.shape for c in cols.values()))
        for v, c in cols.items():
            k = len(self._states[v])
            if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 0 or c.max() >= k):
                raise DataError(f"values of variable {v!r} must be integer state indices in 0..{k - 1}")
        return cols, shape

    def log_potential(self, assignments) -> np.ndarray:
        """:math:`\\log \\tilde p(x) = \\sum_C \\log \\psi_C(x_C)` (unnormalised) of state indices:
        a mapping ``{variable: indices}`` or an array ``(..., V)`` in :attr:`variables` order."""
        cols, shape = self._columns(assignments)
        total = np.zeros(shape)
        for scope, table in self._log_tables.items():
            total = total + table[tuple(cols[v] for v in scope)]
        return total

    def log_prob(self, assignments, log_z: float | None = None) -> np.ndarray:
        """:math:`\\log p(x) = \\log \\tilde p(x) - \\log Z`, with :math:`\\log Z` from
        ``inference.exact`` unless given."""
        if log_z is None:
            from inference import exact

            log_z = exact.log_evidence(self).log_evidence
        return self.log_potential(assignments) - log_z

    def sample(self, key, n: int) -> dict[str, np.ndarray]:
        """``n`` exact draws ``{variable: (n,) state indices}`` by forward-filter backward-sample on
        the exact engine's contraction plan (``inference.exact.sample``): an undirected model has no
        ancestral order to simulate in; for wide graphs use a sampler (``inference.gibbs``)."""
        key = as_key(key)
        from inference import exact

        return exact.sample(self, key, n).samples

    # ------------------------------------------------------------------ program
    def model(self, data=None):
        """The NumPyro program: each variable a uniform categorical site (enumerable), each
        potential a ``numpyro.factor``. With ``data`` (``(N, V)`` state indices) it scores the
        rows (log density = sum of :math:`\\log \\tilde p(x_n)` minus :math:`N V`-many
        :math:`\\log K_v` of the uniform sites); without, the sites are latent.

        ::

            plate(N) [ x_v ~ Uniform{0..K_v-1}  for v in V;   factor(log psi_C(x_C)) for C ]
        """
        n = None if data is None else int(np.shape(data)[0])
        with numpyro.plate("rows", n if n is not None else 1):
            values = {}
            for i, (v, names) in enumerate(self._states.items()):
                obs = None if data is None else jnp.asarray(data)[:, i]
                values[v] = numpyro.sample(
                    v, dist.Categorical(logits=jnp.zeros(len(names))), obs=obs, infer={"enumerate": "parallel"}
                )
            for scope, table in self._log_tables.items():
                numpyro.factor("psi(" + ",".join(scope) + ")", jnp.asarray(table)[tuple(values[v] for v in scope)])
