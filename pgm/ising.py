"""Ising and Potts models: pairwise Markov random fields on lattices and graphs.

**Ising.** Spins :math:`s_i \\in \\{-1, +1\\}` on the nodes of a graph (a grid of ``shape``, or any
``networkx`` graph), with coupling :math:`J` on every edge and an external field :math:`h_i`:

.. math::

    p(s) = \\frac{1}{Z} \\exp\\Big(J \\sum_{(i, j) \\in E} s_i s_j + \\sum_i h_i s_i\\Big).

:math:`J > 0` (ferromagnet) favours aligned neighbours. On the infinite square lattice with no
field the model orders below the critical temperature :math:`T_c = 1 / J_c = 2 / \\ln(1 + \\sqrt 2)
\\approx 2.269` (Onsager, 1944), with spontaneous magnetisation
:math:`M(T) = (1 - \\sinh(2/T)^{-4})^{1/8}`.

**Potts.** :math:`q` colours :math:`x_i \\in \\{0, \\dots, q-1\\}`,
:math:`p(x) \\propto \\exp\\big(J \\sum_{(i,j) \\in E} [x_i = x_j] + \\sum_i h_i(x_i)\\big)`;
``q = 2`` is the Ising model with :math:`J_{\\text{Ising}} = J / 2`.

Both are the *same* pairwise form, which the samplers use: a unary log-table :math:`u_i(k)` per node
and :math:`K [x_i = x_j]` per edge (``potts_form``); for the Ising model :math:`K = 2J`,
:math:`u_i = (-h_i, h_i)` and :math:`J s_i s_j = K [s_i = s_j] - J`.

Variables are named ``s[i,j]`` on a grid (``s[i]`` in 1-D) and ``s[node]`` on a graph; Ising states
are ``("-1", "+1")`` (index 1 is spin up), Potts states ``("0", ..., "q-1")``.

::

    s[0,0] -- s[0,1] -- s[0,2]       periodic=True also joins the last row to the first
      |         |         |          and the last column to the first (a torus)
    s[1,0] -- s[1,1] -- s[1,2]

References:
    Ising (1925). Beitrag zur Theorie des Ferromagnetismus.
    Onsager (1944). Crystal statistics. I. A two-dimensional model with an order-disorder transition.
    Potts (1952). Some generalized order-disorder transformations.
    Wu (1982). The Potts model. Reviews of Modern Physics.

Example:
    >>> import numpy as np
    >>> from pgm.ising import Ising
    >>> from inference import exact
    >>> chain = Ising((3,), coupling=0.5)           # open chain: Z = 2 (2 cosh J)^2
    >>> bool(np.isclose(exact.log_evidence(chain).log_evidence, np.log(2 * (2 * np.cosh(0.5)) ** 2)))
    True
"""

from __future__ import annotations

import functools
import numbers

import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.errors import DataError, ModelError
from inference.factors import Factor, FactorGraph

__all__ = ["Ising", "Potts", "PairwiseMRF", "grid_edges", "check_shape"]


def check_shape(shape) -> tuple[int, ...]:
    """A lattice shape as a tuple of positive ints; ModelError naming the shape otherwise."""
    if isinstance(shape, (numbers.Integral,)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        out = tuple(shape)
    except TypeError:
        raise ModelError(f"shape must be a tuple of positive ints or a networkx graph, got {shape!r}") from None
    if not out:
        raise ModelError("shape must have at least one axis, got ()")
    for axis, n in enumerate(out):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise ModelError(f"shape {out}: side {axis} is {n!r}, not an int")
        if n < 1:
            raise ModelError(f"shape {out}: side {axis} is {int(n)}; every side must be at least 1 (a shape with a zero has no sites)")
    return tuple(int(n) for n in out)


def grid_edges(shape: tuple[int, ...], periodic: bool) -> np.ndarray:
    """Nearest-neighbour edges of a grid as an (E, 2) array of flat (C-order) site indices.

    With ``periodic`` each axis wraps; a side of 2 then joins each pair twice (the torus's two
    bonds), which the samplers' neighbour sums count the same way."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    edges = []
    for axis, n in enumerate(shape):
        if periodic:
            if n == 1:
                raise ModelError(f"shape {shape}: a periodic lattice needs every side >= 2 (side {axis} is 1)")
            nbr = np.roll(index, -1, axis=axis)
            edges.append(np.stack([index.ravel(), nbr.ravel()], axis=1))
        elif n > 1:
            lo = np.take(index, np.arange(n - 1), axis=axis)
            hi = np.take(index, np.arange(1, n), axis=axis)
            edges.append(np.stack([lo.ravel(), hi.ravel()], axis=1))
    return np.concatenate(edges, axis=0) if edges else np.zeros((0, 2), dtype=np.int64)


def _check_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        try:
            value = float(np.asarray(value).item())
        except (TypeError, ValueError):
            raise ModelError(f"{name} must be a real number, got {value!r}") from None
    value = float(value)
    if not np.isfinite(value):
        raise ModelError(f"{name} must be finite, got {value!r}")
    return value


class PairwiseMRF:
    """Shared by :class:`Ising` and :class:`Potts`: nodes, edges, a per-node unary log-table and one
    log-table shared by every edge.

    Attributes:
        shape: the grid shape, or None for a graph model.
        periodic: whether the grid wraps.
        nodes: node keys (grid index tuples, or the graph's nodes), in variable order.
        names: variable names, in the same order.
        edges: (E, 2) int array of node positions.
        q: states per node.
    """

    _state_names: tuple[str, ...]

    def __init__(self, shape_or_graph, q: int, pair_log_table: np.ndarray, unary: np.ndarray | None,
                 periodic: bool, potts_coupling: float):
        if isinstance(shape_or_graph, nx.Graph):
            graph = shape_or_graph
            if graph.is_directed() or graph.is_multigraph():
                raise ModelError("the graph must be an undirected simple networkx.Graph")
            if graph.number_of_nodes() == 0:
                raise ModelError("the graph has no nodes")
            if periodic:
                raise ModelError("periodic=True applies to a grid shape, not to a graph")
            if any(nx.selfloop_edges(graph)):
                raise ModelError(f"the graph has a self-loop at node {next(iter(nx.selfloop_edges(graph)))[0]!r}")
            self.shape = None
            self.nodes = tuple(graph.nodes())
            position = {n: i for i, n in enumerate(self.nodes)}
            self.edges = np.asarray([[position[a], position[b]] for a, b in graph.edges()], dtype=np.int64).reshape(-1, 2)
            self.names = tuple(f"s[{n}]" for n in self.nodes)
        else:
            self.shape = check_shape(shape_or_graph)
            self.nodes = tuple(np.ndindex(*self.shape))
            self.edges = grid_edges(self.shape, bool(periodic))
            self.names = tuple("s[" + ",".join(str(i) for i in n) + "]" for n in self.nodes)
        self.periodic = bool(periodic)
        self.q = int(q)
        self._pair = np.asarray(pair_log_table, dtype=np.float64)
        n = len(self.nodes)
        self._unary = np.zeros((n, self.q)) if unary is None else np.asarray(unary, dtype=np.float64).reshape(n, self.q)
        self._potts_coupling = float(potts_coupling)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def site_shape(self) -> tuple[int, ...]:
        """The grid shape, or ``(N,)`` for a graph model."""
        return self.shape if self.shape is not None else (self.num_nodes,)

    @functools.cached_property
    def graph(self) -> nx.Graph:
        """The interaction graph over variable names."""
        g = nx.Graph()
        g.add_nodes_from(self.names)
        g.add_edges_from((self.names[a], self.names[b]) for a, b in self.edges)
        return g

    def potts_form(self) -> tuple[np.ndarray, float]:
        """``(unary, K)``: unary log-tables of shape ``(*site_shape, q)`` and the coupling
        :math:`K` of :math:`K [x_i = x_j]`, which equals each edge's log-table up to a constant.
        The samplers and ICM take these arrays (with :attr:`edges` or the grid's shape)."""
        return self._unary.reshape(self.site_shape + (self.q,)).copy(), self._potts_coupling

    @property
    def log_z_offset(self) -> float:
        """:math:`\log Z - \log Z_{\text{Potts form}}`: each edge's log-table minus :math:`K [x_i = x_j]`
        is a constant (:math:`-J` for the Ising model, 0 for Potts), summed over the edges."""
        return float(len(self.edges) * (self._pair[0, 0] - self._potts_coupling))

    def factor_graph(self) -> FactorGraph:
        """One factor per node (its unary table) and one per edge (the shared pair table)."""
        states = {name: self._state_names for name in self.names}
        factors = [Factor((name,), self._unary[i]) for i, name in enumerate(self.names)]
        factors += [Factor((self.names[a], self.names[b]), self._pair) for a, b in self.edges]
        return FactorGraph(states, factors)

    def to_grid(self, per_variable: dict) -> np.ndarray:
        """``{name: array over states}`` (e.g. ``Result.marginals``) -> ``(*site_shape, q)``."""
        missing = [n for n in self.names if n not in per_variable]
        if missing:
            raise DataError(f"no entry for variable {missing[0]!r}")
        return np.stack([np.asarray(per_variable[n]) for n in self.names]).reshape(self.site_shape + (self.q,))

    def _indices(self, x) -> np.ndarray:
        x = np.asarray(x)
        shape = self.site_shape
        if x.shape[x.ndim - len(shape):] != shape:
            raise DataError(f"states must have shape (..., {', '.join(map(str, shape))}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() >= self.q)):
            raise DataError(f"states must be integer indices in 0..{self.q - 1}")
        return x.reshape(x.shape[: x.ndim - len(shape)] + (self.num_nodes,))

    def log_potential(self, x) -> np.ndarray:
        """:math:`\\log \\tilde p(x)` of state indices ``x`` of shape ``(..., *site_shape)``."""
        flat = self._indices(x)
        unary = np.take_along_axis(self._unary, flat.T.reshape(self.num_nodes, -1), axis=1).T
        unary = unary.reshape(flat.shape).sum(-1)
        pair = self._pair[flat[..., self.edges[:, 0]], flat[..., self.edges[:, 1]]].sum(-1)
        return unary + pair

    def model(self, x=None):
        """The NumPyro program: every node a uniform categorical site ``s`` (enumerable) and the
        edges and fields as ``numpyro.factor`` sites; ``x`` (``(*site_shape,)`` state indices)
        observes it, so its log density is :math:`\\log \\tilde p(x) - N \\log q`.

        ::

            s ~ Uniform{0..q-1}^N;   factor("pairs", sum_E pair[s_i, s_j]);   factor("field", sum_i u_i(s_i))
        """
        obs = None if x is None else jnp.asarray(self._indices(x))
        s = numpyro.sample("s", dist.Categorical(logits=jnp.zeros(self.q)).expand((self.num_nodes,)).to_event(1), obs=obs)
        pair = jnp.asarray(self._pair)[s[..., self.edges[:, 0]], s[..., self.edges[:, 1]]]
        numpyro.factor("pairs", jnp.sum(pair, axis=-1))
        unary = jnp.take_along_axis(jnp.asarray(self._unary), s[..., None], axis=-1)[..., 0]
        numpyro.factor("field", jnp.sum(unary, axis=-1))


class Ising(PairwiseMRF):
    """The Ising model :math:`p(s) \\propto \\exp(J \\sum_{(i,j)} s_i s_j + \\sum_i h_i s_i)`.

    Args:
        shape: a grid shape such as ``(6, 6)`` (any number of axes), or a ``networkx.Graph``.
        coupling: :math:`J` (real; negative is antiferromagnetic).
        field: :math:`h`, a scalar or an array of ``shape`` (``(N,)`` for a graph, node order).
        periodic: wrap every axis of the grid (a torus); every side must then be >= 2.

    Raises:
        ModelError: a shape with a zero or non-int side, a non-finite coupling, a field of the wrong
            shape or with NaN / inf (naming the entry).

    Example:
        >>> m = Ising((2, 2), coupling=1.0, field=0.0, periodic=False)
        >>> m.names
        ('s[0,0]', 's[0,1]', 's[1,0]', 's[1,1]')
        >>> float(m.log_potential(np.ones((2, 2), dtype=int)))   # all up: 4 bonds of J
        4.0
    """

    _state_names = ("-1", "+1")

    def __init__(self, shape, coupling: float, field=0.0, periodic: bool = False):
        self.coupling = _check_real(coupling, "coupling")
        PairwiseMRF.__init__(self, shape, 2, np.zeros((2, 2)), None, periodic, 2 * self.coupling)
        h = np.asarray(field, dtype=np.float64)
        if h.ndim == 0:
            h = np.full(self.site_shape, float(h))
        if h.shape != self.site_shape:
            raise ModelError(f"field has shape {h.shape}, expected a scalar or {self.site_shape}")
        bad = ~np.isfinite(h)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelError(f"field entry {where} is {float(h[where])!r}; the field must be finite")
        self.field = h
        j = self.coupling
        self._pair = np.array([[j, -j], [-j, j]])
        self._unary = np.stack([-h.ravel(), h.ravel()], axis=1)

    def __repr__(self) -> str:
        where = f"shape={self.shape}, periodic={self.periodic}" if self.shape else f"{self.num_nodes} nodes"
        return f"Ising({where}, coupling={self.coupling})"

    @staticmethod
    def spins(x) -> np.ndarray:
        """State indices (0, 1) -> spins (-1, +1)."""
        return 2 * np.asarray(x) - 1

    def magnetisation(self, marginals: dict) -> np.ndarray:
        """:math:`\\mathbb{E}[s_i] = p_i(+1) - p_i(-1)` per site, from single-site marginals."""
        grid = self.to_grid(marginals)
        return grid[..., 1] - grid[..., 0]


class Potts(PairwiseMRF):
    """The Potts model :math:`p(x) \\propto \\exp(J \\sum_{(i,j)} [x_i = x_j] + \\sum_i h_i(x_i))`.

    Args:
        shape: a grid shape or a ``networkx.Graph``.
        q: the number of colours, a positive int.
        coupling: :math:`J` (real).
        field: None, or log-tables :math:`h_i(k)` of shape ``(*shape, q)`` (``(N, q)`` for a graph).
        periodic: wrap the grid.

    Example:
        >>> m = Potts((2,), q=3, coupling=1.0)     # two sites: Z = 3 e^J + 6
        >>> from inference import exact
        >>> bool(np.isclose(np.exp(exact.log_evidence(m).log_evidence), 3 * np.e + 6))
        True
    """

    def __init__(self, shape, q: int, coupling: float, field=None, periodic: bool = False):
        if isinstance(q, bool) or not isinstance(q, numbers.Integral) or q < 1:
            raise ModelError(f"q (the number of Potts states) must be a positive int, got {q!r}")
        self.coupling = _check_real(coupling, "coupling")
        q = int(q)
        PairwiseMRF.__init__(self, shape, q, self.coupling * np.eye(q), None, periodic, self.coupling)
        if field is not None:
            h = np.asarray(field, dtype=np.float64)
            if h.shape != self.site_shape + (q,):
                raise ModelError(f"field has shape {h.shape}, expected {self.site_shape + (q,)}")
            bad = np.isnan(h) | np.isposinf(h)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ModelError(f"field entry {where} is {float(h[where])!r}; log-potentials must be < +inf and not NaN")
            self._unary = h.reshape(self.num_nodes, q).copy()
        self._state_names = tuple(str(k) for k in range(q))

    def __repr__(self) -> str:
        where = f"shape={self.shape}, periodic={self.periodic}" if self.shape else f"{self.num_nodes} nodes"
        return f"Potts({where}, q={self.q}, coupling={self.coupling})"
