"""Discrete Bayesian networks: a DAG of categorical variables and one program that runs it.

A Bayesian network over discrete variables :math:`x_1, \\dots, x_V` factorises the joint along a
directed acyclic graph, each variable given its parents :math:`\\mathrm{pa}(v)`:

.. math::

    p(x) = \\prod_{v=1}^{V} p\\big(x_v \\mid x_{\\mathrm{pa}(v)}\\big),
    \\qquad p\\big(x_v = k \\mid x_{\\mathrm{pa}(v)} = j\\big) = \\theta_{v, j, k},
    \\qquad \\sum_k \\theta_{v, j, k} = 1.

The conditional probability tables (CPTs) :math:`\\theta_v` are arrays whose last axis runs over
the states of :math:`v` and whose leading axes run over the states of its parents, in the order of
``parents(v)``. As a NumPyro program the network is a loop over the variables in topological order
inside one plate over the data rows; every site is enumerable, so exact inference sums the
latent ones out (``inference.exact``), and ``obs=`` turns the same program from a simulator into a
likelihood. Missing entries (``-1``) are latent sites of their own (NumPyro's ``obs_mask``).

How to use it:

1. build a network from tables (``BayesNet(states, parents, cpts)``, :meth:`BayesNet.from_spec`)
   or a file (:meth:`BayesNet.from_bif`, :meth:`BayesNet.from_xmlbif`; the bnlearn repository's
   networks ship with pgmpy: ``genzoo.data.bn_network_path("alarm")``);
2. simulate (:meth:`BayesNet.sample`), score complete rows (:meth:`BayesNet.log_prob`), or hand it
   to the inference layer (``inference.exact.marginals(bn, evidence)``, ``inference.bp``, ...);
3. learn its tables from data with EM: ``inference.em.fit(bn, data, pseudo_count=1.0)``.

References:
    Pearl (1988). Probabilistic Reasoning in Intelligent Systems. Morgan Kaufmann.
    Koller and Friedman (2009). Probabilistic Graphical Models, chapters 3 and 17. MIT Press.
    Lauritzen and Spiegelhalter (1988). Local computations with probabilities on graphical
    structures (the asia network).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from inference.errors import DataError, EvidenceError, ModelError, UnknownNameError
from inference.factors import Factor, FactorGraph
from inference.rng import as_key
from pgm import bif, xmlbif
from pgm.bn_data import as_columns, encode_column, preview

__all__ = ["BayesNet"]

ROW_TOLERANCE = 1e-6
"""A CPT row may miss a sum of one by at most this much; it is then divided by its sum."""

_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------- structure
class _Structure:
    """The validated DAG of a network, shared by every network with the same structure.

    It also keeps the network's compiled (jitted) functions, whose tables are arguments: networks
    made by :meth:`BayesNet.with_cpts` (an EM loop, say) reuse them without recompiling.
    """

    def __init__(self, states: Mapping[str, Sequence[str]], parents: Mapping[str, Sequence[str]]):
        self.states = _check_states(states)
        parents = _check_parents(self.states, parents)
        graph = nx.DiGraph()
        graph.add_nodes_from(self.states)
        graph.add_edges_from((p, v) for v, ps in parents.items() for p in ps)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = [u for u, _ in nx.find_cycle(graph)]
            raise ModelError("the parents form a cycle: " + " -> ".join(map(repr, cycle + cycle[:1])))
        position = {v: i for i, v in enumerate(self.states)}
        self.variables = tuple(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
        self.states = {v: self.states[v] for v in self.variables}
        self.parents = {v: parents[v] for v in self.variables}
        children: dict[str, list[str]] = {v: [] for v in self.variables}
        for child in self.variables:
            for parent in parents[child]:
                children[parent].append(child)
        self.children = {v: tuple(cs) for v, cs in children.items()}
        self.index = {v: i for i, v in enumerate(self.variables)}
        self.graph = nx.freeze(graph)
        self.compiled: dict[str, Any] = {}

    def shape(self, var: str) -> tuple[int, ...]:
        return (*[len(self.states[p]) for p in self.parents[var]], len(self.states[var]))

    def __getstate__(self):  # compiled functions do not pickle; they are rebuilt on demand
        state = dict(self.__dict__)
        state["compiled"] = {}
        return state

    def jitted(self, what: str):
        """The jitted ``sample`` or ``log_prob`` kernel of this structure (built once)."""
        if what not in self.compiled:
            if what == "sample":
                self.compiled[what] = jax.jit(functools.partial(_sample_kernel, self),
                                              static_argnums=2)
            elif what == "log_prob":
                self.compiled[what] = jax.jit(functools.partial(_log_prob_kernel, self))
            else:  # pragma: no cover - internal
                raise KeyError(what)
        return self.compiled[what]


def _check_states(states) -> dict[str, tuple[str, ...]]:
    if not isinstance(states, Mapping) or not states:
        raise ModelError("states must be a non-empty mapping variable -> sequence of state names")
    checked = {}
    for var, names in states.items():
        if not isinstance(var, str):
            raise ModelError(f"variable names must be strings, got {var!r}")
        if var == "data":
            raise ModelError("'data' names the program's plate over rows; rename that variable")
        if isinstance(names, str) or not isinstance(names, (Sequence, np.ndarray)):
            raise ModelError(f"the states of {var!r} must be a sequence of names, got {names!r}")
        names = tuple(str(s) for s in names)
        if not names:
            raise ModelError(f"variable {var!r} has no states")
        if len(set(names)) != len(names):
            dup = next(s for s in names if names.count(s) > 1)
            raise ModelError(f"variable {var!r} lists state {dup!r} twice")
        checked[var] = names
    return checked


def _check_parents(states, parents) -> dict[str, tuple[str, ...]]:
    parents = {} if parents is None else parents
    if not isinstance(parents, Mapping):
        raise ModelError("parents must be a mapping variable -> sequence of parent names")
    for var in parents:
        if var not in states:
            raise ModelError(f"parents are given for {var!r}, which is not a variable of the "
                             f"network (it has no states)")
    checked = {}
    for var in states:
        given = parents.get(var, ())
        given = (given,) if isinstance(given, str) else tuple(given)
        for parent in given:
            if parent not in states:
                raise ModelError(f"parent {parent!r} of {var!r} is not a variable of the network")
        if len(set(given)) != len(given):
            dup = next(p for p in given if given.count(p) > 1)
            raise ModelError(f"{var!r} lists parent {dup!r} twice")
        checked[var] = given
    return checked


def _config_text(structure: _Structure, var: str, row: int) -> str:
    """'(smoke=yes, asia=no)': the parent configuration of flat row ``row`` of var's CPT."""
    parents = structure.parents[var]
    if not parents:
        return "(no parents)"
    index = np.unravel_index(row, structure.shape(var)[:-1])
    return "(" + ", ".join(f"{p}={structure.states[p][i]}" for p, i in zip(parents, index)) + ")"


def _check_properties(structure: _Structure, properties) -> dict:
    """``{"network": tuple, "variables": {var: tuple}, "tables": {var: tuple}}`` of property texts;
    ModelError naming an unknown key or variable."""
    properties = {} if properties is None else properties
    if not isinstance(properties, Mapping) or set(properties) - {"network", "variables", "tables"}:
        raise ModelError("properties must be a mapping with keys among 'network', 'variables', 'tables'")

    def texts(value, where):
        if isinstance(value, str) or not all(isinstance(t, str) for t in value):
            raise ModelError(f"the properties of {where} must be a sequence of strings, got {value!r}")
        return tuple(value)

    out = {"network": texts(properties.get("network", ()), "the network")}
    for key in ("variables", "tables"):
        out[key] = {}
        for var, value in dict(properties.get(key, {})).items():
            if var not in structure.index:
                raise ModelError(f"properties[{key!r}] names {var!r}, which is not a variable of the network")
            if len(value):
                out[key][var] = texts(value, repr(var))
    return out


def _cpt_error(message: str, var: str) -> ModelError:
    error = ModelError(message)
    error.variable = var  # lets file readers add the line of the variable's table
    return error


def _check_cpt(structure: _Structure, var: str, table) -> np.ndarray:
    """Validate and normalise one CPT; a read-only float64 array of the expected shape.

    Rows off by more than rounding but at most ``ROW_TOLERANCE`` are divided by their sum; rows
    within rounding are kept as they are, so checking twice changes nothing (files round trip).
    """
    try:
        cpt = np.array(table, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise _cpt_error(f"the CPT of {var!r} is not an array of numbers: {err}", var) from None
    expected = structure.shape(var)
    if cpt.shape != expected:
        axes = ", ".join([*structure.parents[var], var])
        raise _cpt_error(f"the CPT of {var!r} has shape {cpt.shape}; expected {expected} "
                         f"(axes: {axes})", var)
    rows = cpt.reshape(-1, expected[-1])
    k = expected[-1]
    if not np.isfinite(rows).all():
        row = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise _cpt_error(f"the CPT of {var!r} holds a value that is not finite in row "
                         f"{_config_text(structure, var, row)}", var)
    if (rows < 0).any():
        row, col = map(int, np.argwhere(rows < 0)[0])
        raise _cpt_error(f"the CPT of {var!r} holds a negative probability {float(rows[row, col])!r} for "
                         f"{var}={structure.states[var][col]} in row "
                         f"{_config_text(structure, var, row)}", var)
    sums = rows.sum(axis=1)
    off = np.abs(sums - 1.0)
    if (off > ROW_TOLERANCE).any():
        row = int(np.flatnonzero(off > ROW_TOLERANCE)[0])
        raise _cpt_error(f"the CPT row of {var!r} for {_config_text(structure, var, row)} sums to "
                         f"{float(sums[row])!r}, not 1 (tolerance {ROW_TOLERANCE:g})", var)
    fix = off > 4 * k * _EPS
    if fix.any():
        rows[fix] /= sums[fix, None]
    cpt.setflags(write=False)
    return cpt


# --------------------------------------------------------------------------- the program
#   Each variable is a categorical site whose CPT row is picked by its parents' values
#   (advanced indexing, so enumerated parents broadcast); all inside one plate over rows:
#
#     +--------------------------------------------- data (N) ---+
#     |   x_1 -----> x_3 <----- x_2        x_v ~ Cat(theta_v[x_pa(v)])
#     |               |                                           |
#     |               v                                           |
#     |              x_4                                          |
#     +-----------------------------------------------------------+
def _program(structure: _Structure, cpts, obs=None, n=None, missing=None):
    """The generative program of a network, array-level: ``cpts[i]`` is the table of
    ``structure.variables[i]``; ``obs`` an ``(N, V)`` int array with -1 for missing entries;
    ``missing[i]`` says whether column i has no (``"none"``), some or only (``"all"``) missing
    entries ("some" when unknown: the entries are then split with ``obs_mask``)."""
    if obs is not None:
        rows = obs.shape[0]
        if n is not None and int(n) != rows:
            raise DataError(f"n={n} disagrees with the {rows} rows of the data")
    else:
        rows = 1 if n is None else int(n)
    values = {}
    with numpyro.plate("data", rows):
        for i, var in enumerate(structure.variables):
            parent_values = tuple(values[p] for p in structure.parents[var])
            probs = cpts[i][parent_values] if parent_values else cpts[i]
            fn = dist.Categorical(probs=probs)
            infer = {"enumerate": "parallel"}
            status = "all" if obs is None else (missing[i] if missing is not None else "some")
            if status == "none":
                values[var] = numpyro.sample(var, fn, obs=obs[:, i], infer=infer)
            elif status == "all":
                values[var] = numpyro.sample(var, fn, infer=infer)
            else:
                column = obs[:, i]
                mask = column >= 0
                values[var] = numpyro.sample(var, fn, obs=jnp.where(mask, column, 0),
                                             obs_mask=mask, infer=infer)
    return values


def _sample_kernel(structure: _Structure, key, cpts, n: int):
    """Ancestral sampling: run the program under a seed and read every site's value."""
    trace = handlers.trace(handlers.seed(_program, key)).get_trace(structure, cpts, None, n)
    return tuple(trace[v]["value"] for v in structure.variables)


def _log_prob_kernel(structure: _Structure, cpts, obs):
    """Per-row :math:`\\log p(x)`: the program conditioned on complete rows, site log-probs summed."""
    missing = ("none",) * len(structure.variables)
    trace = handlers.trace(_program).get_trace(structure, cpts, obs, None, missing)
    rows = obs.shape[0]
    total = jnp.zeros(rows)
    for site in trace.values():
        if site["type"] == "sample":
            total = total + jnp.broadcast_to(site["fn"].log_prob(site["value"]), (rows,))
    return total


# --------------------------------------------------------------------------- the class
class BayesNet:
    """A discrete Bayesian network :math:`p(x) = \\prod_v p(x_v \\mid x_{\\mathrm{pa}(v)})`.

    The object is immutable: :meth:`with_cpts` returns a new network with new tables.

    Example (the sprinkler network of Pearl, 1988)::

        cloudy ---> sprinkler ---+
           |                     v
           +------> rain ------> wet

    >>> bn = BayesNet(
    ...     states={"cloudy": ["no", "yes"], "sprinkler": ["off", "on"],
    ...             "rain": ["no", "yes"], "wet": ["no", "yes"]},
    ...     parents={"sprinkler": ["cloudy"], "rain": ["cloudy"], "wet": ["sprinkler", "rain"]},
    ...     cpts={"cloudy": [0.5, 0.5],
    ...           "sprinkler": [[0.5, 0.5], [0.9, 0.1]],      # rows: cloudy = no, yes
    ...           "rain": [[0.8, 0.2], [0.2, 0.8]],
    ...           "wet": [[[1.0, 0.0], [0.1, 0.9]],           # [sprinkler, rain, wet]
    ...                   [[0.1, 0.9], [0.01, 0.99]]]})
    >>> bn.variables
    ('cloudy', 'sprinkler', 'rain', 'wet')
    >>> p = np.exp(bn.log_prob({"cloudy": "yes", "sprinkler": "off", "rain": "yes", "wet": "yes"}))
    >>> round(float(p[0]), 6)    # 0.5 * 0.9 * 0.8 * 0.9
    0.324
    >>> draws = bn.sample(jax.random.PRNGKey(0), 1000)
    >>> draws["wet"].shape, draws["wet"].dtype
    ((1000,), dtype('int64'))

    The asia network of Lauritzen and Spiegelhalter (1988) ships with pgmpy:

    >>> from genzoo.data import bn_network_path
    >>> asia = BayesNet.from_bif(bn_network_path("asia"))
    >>> asia.parents("either"), asia.cpt("either").shape
    (('lung', 'tub'), (2, 2, 2))

    References:
        Pearl (1988). Probabilistic Reasoning in Intelligent Systems.
        Koller and Friedman (2009). Probabilistic Graphical Models, section 3.2.
    """

    def __init__(
        self,
        states: Mapping[str, Sequence[str]],
        parents: Mapping[str, Sequence[str]],
        cpts: Mapping[str, Any],
        *,
        name: str = "bayesnet",
        properties: Mapping[str, Any] | None = None,
    ):
        """Build and validate a network.

        Args:
            states: variable -> its state names (any order; the network sorts the variables
                topologically, keeping this order where the graph leaves a choice).
            parents: variable -> its parents; variables left out have none.
            cpts: variable -> table of shape ``(*[len(states[p]) for p in parents[v]],
                len(states[v]))``, each row summing to one (within 1e-6; then renormalised).
            name: the network's name.
            properties: BIF ``property`` statements carried to the files written (their text
                between ``property`` and ``;``): ``{"network": [...], "variables": {var: [...]},
                "tables": {var: [...]}}``, any key left out. Kept as the plain dict
                :attr:`properties`; they do not affect the model.

        Raises:
            ModelError: naming the culprit: duplicate state names, an unknown parent, a cycle
                (listed), a missing table, a wrong shape, a negative or non-finite entry, a row
                that does not sum to one (with its parent configuration).
        """
        structure = _Structure(states, parents)
        if not isinstance(cpts, Mapping):
            raise ModelError("cpts must be a mapping variable -> table")
        for var in cpts:
            if var not in structure.index:
                raise ModelError(f"a CPT is given for {var!r}, which is not a variable of the network")
        tables = {}
        for var in structure.variables:
            if var not in cpts:
                raise _cpt_error(f"no CPT is given for {var!r}", var)
            tables[var] = _check_cpt(structure, var, cpts[var])
        self._init(structure, tables, name, _check_properties(structure, properties))

    def _init(self, structure: _Structure, tables: dict[str, np.ndarray], name: str, properties: dict) -> None:
        self._structure = structure
        self._cpts = tables
        self._name = str(name)
        self.properties = properties
        self._factor_graph = None
        self._device_cpts = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_spec(cls, spec: Mapping[str, Mapping[str, Any]], *, name: str = "bayesnet") -> "BayesNet":
        """A network from ``{var: {"states": [...], "parents": [...], "cpt": nested list}}``
        (``"parents"`` may be left out for a root)."""
        if not isinstance(spec, Mapping):
            raise ModelError("a spec is a mapping variable -> {'states', 'parents', 'cpt'}")
        states, parents, cpts = {}, {}, {}
        for var, entry in spec.items():
            if not isinstance(entry, Mapping):
                raise ModelError(f"the spec of {var!r} must be a mapping with 'states', 'parents', 'cpt'")
            for key in ("states", "cpt"):
                if key not in entry:
                    raise ModelError(f"the spec of {var!r} has no {key!r}")
            unknown = set(entry) - {"states", "parents", "cpt"}
            if unknown:
                raise ModelError(f"the spec of {var!r} has unknown keys {sorted(unknown)}")
            states[var] = entry["states"]
            parents[var] = entry.get("parents", ())
            cpts[var] = entry["cpt"]
        return cls(states, parents, cpts, name=name)

    @classmethod
    def from_bif(cls, path) -> "BayesNet":
        """Read a BIF file (plain or gzipped); see :mod:`pgm.bif`.

        Raises:
            ParseError: a malformed file, with the path and line of the fault.
            ModelError: a well-formed file whose network is invalid (a cycle, a row not summing
                to one), with the path and the line of the offending table.
        """
        return cls._from_network_spec(bif.read_bif(path), path)

    @classmethod
    def from_xmlbif(cls, path) -> "BayesNet":
        """Read an XMLBIF 0.3 file (plain or gzipped); errors as :meth:`from_bif`."""
        return cls._from_network_spec(xmlbif.read_xmlbif(path), path)

    @classmethod
    def _from_network_spec(cls, spec: bif.NetworkSpec, path) -> "BayesNet":
        try:
            properties = {"network": spec.network_properties, "variables": spec.properties,
                          "tables": spec.table_properties}
            return cls(spec.states, spec.parents, spec.cpts, name=spec.name, properties=properties)
        except ModelError as err:
            var = getattr(err, "variable", None)
            where = f"{os.fspath(path)}"
            if var is not None and var in spec.lines:
                where += f", line {spec.lines[var]}"
            raise ModelError(f"{where}: {err}") from err

    def to_network_spec(self) -> bif.NetworkSpec:
        """The network as the plain record the file writers take (variables in topological order),
        with its :attr:`properties`."""
        props = self.properties
        return bif.NetworkSpec(name=self._name, states=self.states, parents=dict(self._structure.parents),
                               cpts=dict(self._cpts), network_properties=props["network"],
                               properties=dict(props["variables"]), table_properties=dict(props["tables"]))

    def to_dict(self) -> dict:
        """The network as plain data (states, parents, CPTs, name, properties), for
        ``Result.to_json``; :meth:`from_dict` reads it back exactly."""
        spec = self.to_network_spec()
        return {"name": spec.name, "states": dict(spec.states), "parents": dict(spec.parents),
                "cpts": dict(spec.cpts), "properties": dict(self.properties)}

    @classmethod
    def from_dict(cls, data) -> "BayesNet":
        return cls(data["states"], data["parents"], data["cpts"], name=data["name"], properties=data["properties"])

    def to_bif(self, path) -> None:
        """Write the network as BIF (gzipped when ``path`` ends in ``.gz``); reads back exactly."""
        bif.write_bif(path, self.to_network_spec())

    def to_xmlbif(self, path) -> None:
        """Write the network as XMLBIF 0.3 (gzipped when ``path`` ends in ``.gz``)."""
        xmlbif.write_xmlbif(path, self.to_network_spec())

    def with_cpts(self, cpts: Mapping[str, Any]) -> "BayesNet":
        """The same structure with new tables for the variables named in ``cpts`` (the others
        keep theirs); validated like the constructor's. Compiled kernels are shared."""
        if not isinstance(cpts, Mapping):
            raise ModelError("cpts must be a mapping variable -> table")
        tables = dict(self._cpts)
        for var, table in cpts.items():
            if var not in self._structure.index:
                raise ModelError(f"a CPT is given for {var!r}, which is not a variable of the network")
            tables[var] = _check_cpt(self._structure, var, table)
        new = object.__new__(type(self))
        new._init(self._structure, tables, self._name, self.properties)
        return new

    # ------------------------------------------------------------------ structure
    @property
    def name(self) -> str:
        return self._name

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables in topological order (every parent before its children)."""
        return self._structure.variables

    @property
    def states(self) -> dict[str, tuple[str, ...]]:
        """variable -> tuple of state names (a fresh dict, in topological order)."""
        return dict(self._structure.states)

    @property
    def graph(self) -> nx.DiGraph:
        """The DAG (edges parent -> child), frozen: it cannot be modified."""
        return self._structure.graph

    def _check_variable(self, var: str) -> None:
        if var not in self._structure.index:
            names = ", ".join(map(repr, self.variables[:8]))
            more = f", ... ({len(self.variables)} in all)" if len(self.variables) > 8 else ""
            raise UnknownNameError(f"unknown variable {var!r}; the variables are {names}{more}")

    def parents(self, var: str) -> tuple[str, ...]:
        """The parents of ``var``, in the order of its CPT's leading axes."""
        self._check_variable(var)
        return self._structure.parents[var]

    def children(self, var: str) -> tuple[str, ...]:
        """The children of ``var``, in topological order."""
        self._check_variable(var)
        return self._structure.children[var]

    def cpt(self, var: str) -> np.ndarray:
        """The table of ``var`` (read-only float64), shape ``(*parent cards, card of var)``."""
        self._check_variable(var)
        return self._cpts[var]

    @property
    def num_parameters(self) -> int:
        """Free parameters: :math:`\\sum_v (|x_v| - 1) \\prod_{p \\in \\mathrm{pa}(v)} |x_p|`."""
        return sum(c.size // c.shape[-1] * (c.shape[-1] - 1) for c in self._cpts.values())

    def __repr__(self) -> str:
        edges = self._structure.graph.number_of_edges()
        return (f"BayesNet(name={self._name!r}, {len(self.variables)} variables, {edges} edges, "
                f"{self.num_parameters} free parameters)")

    def factor_graph(self) -> FactorGraph:
        """The network as a directed :class:`~inference.factors.FactorGraph`:
        ``factors[i]`` is :math:`\\log p(x_{v_i} \\mid x_{\\mathrm{pa}(v_i)})` with scope
        ``(*parents, v_i)``, variables in topological order. Built once (the object is immutable)."""
        if self._factor_graph is None:
            factors = []
            with np.errstate(divide="ignore"):
                for var in self.variables:
                    log_table = np.log(self._cpts[var])
                    log_table.setflags(write=False)
                    factors.append(Factor((*self._structure.parents[var], var), log_table))
            self._factor_graph = FactorGraph(self.states, tuple(factors), directed=True)
        return self._factor_graph

    # ------------------------------------------------------------------ the program
    def _tables(self) -> tuple:
        """The CPTs as JAX arrays, in topological order (made once)."""
        if self._device_cpts is None:
            self._device_cpts = tuple(jnp.asarray(self._cpts[v]) for v in self.variables)
        return self._device_cpts

    def model(self, data=None, n: int | None = None):
        """The network's NumPyro program: in topological order,
        ``numpyro.sample(v, Categorical(probs=cpt[v][parent values]), obs=...)`` inside the
        plate ``"data"`` of size N, every site marked ``{"enumerate": "parallel"}``.

        Args:
            data: None to simulate, or rows to score (anything :meth:`encode_data` takes, or an
                already encoded ``(N, V)`` int array, -1 = missing). A fully missing column is a
                latent site; a partly missing one is split by NumPyro's ``obs_mask`` into the
                sites ``v_observed`` and ``v_unobserved``.
            n: the number of rows when simulating (default 1).

        Returns:
            dict variable -> its values, shape (N,) (or with enumeration dimensions on the left).
        """
        if data is None:
            return _program(self._structure, self._tables(), None, n)
        if isinstance(data, jax.Array) and not isinstance(data, np.ndarray):
            try:
                obs = np.asarray(data)  # concrete: decide the observed columns now
            except jax.errors.TracerArrayConversionError:
                return _program(self._structure, self._tables(), data, n)
        else:
            obs = self.encode_data(data)
        missing = tuple(
            "none" if (col >= 0).all() else "all" if (col < 0).all() else "some" for col in obs.T
        )
        return _program(self._structure, self._tables(), obs, n, missing)

    def sample(self, key, n: int, evidence: Mapping | None = None) -> dict[str, np.ndarray]:
        """``n`` joint draws: dict variable -> ``(n,)`` int64 state indices.

        Without evidence, ancestral sampling: the program run forward under ``key`` (jitted,
        vectorised over the plate). With evidence (``{var: state name or index}``), exact
        posterior draws from :func:`inference.exact.sample`; evidence variables hold their value.

        Args:
            key: a JAX PRNG key (or an int seed, made into one).
            n: the number of draws.
            evidence: optional ``{variable: state}``.
        """
        n = _check_count(n)
        key = as_key(key)
        if evidence:
            from inference import exact

            observed = self.factor_graph().evidence_indices(evidence)
            result = exact.sample(self, key, n, evidence=evidence)
            return {
                v: np.full(n, observed[v], dtype=np.int64) if v in observed
                else np.asarray(result.samples[v], dtype=np.int64).reshape(n)
                for v in self.variables
            }
        # compiled once per power-of-two bucket of n; the first n draws are kept
        values = self._structure.jitted("sample")(key, self._tables(), _bucket(n))
        return {v: np.asarray(x[:n], dtype=np.int64) for v, x in zip(self.variables, values)}

    def log_prob(self, assignments) -> np.ndarray:
        """:math:`\\log p(x)` for each complete row, through the program (jitted): shape ``(n,)``.

        Args:
            assignments: complete rows, anything :meth:`encode_data` takes.

        Raises:
            DataError: a missing entry (names the variable and the row).
        """
        codes = self.encode_data(assignments)
        if (codes < 0).any():
            row, col = map(int, np.argwhere(codes < 0)[0])
            raise DataError(f"log_prob needs complete rows: {self.variables[col]!r} is missing in "
                            f"row {row}")
        n = codes.shape[0]
        padded = np.zeros((_bucket(n), codes.shape[1]), dtype=np.int64)  # one compile per bucket
        padded[:n] = codes
        out = self._structure.jitted("log_prob")(self._tables(), jnp.asarray(padded))
        return np.asarray(out, dtype=np.float64)[:n]

    # ------------------------------------------------------------------ data
    def encode_data(self, data) -> np.ndarray:
        """Rows -> ``(n, V)`` int64 state indices in :attr:`variables` order, -1 = missing.

        Accepts a dict ``variable -> sequence`` (state names or indices; None, NaN or -1 for
        missing; variables left out are missing throughout; scalars make one row), a pandas
        DataFrame (one column per variable), or an ``(n, V)`` array in :attr:`variables` order
        (NaN or -1 for missing).

        Raises:
            EvidenceError: an unknown variable or state (both named), an index out of range.
            DataError: columns of different lengths, a wrong array shape, a non-integer index.
        """
        variables = self.variables
        columns = as_columns(data, variables)
        if columns is None:  # an array in variables order
            array = np.asarray(data)
            if array.ndim != 2 or array.shape[1] != len(variables):
                raise DataError(f"data array has shape {array.shape}; expected (n, {len(variables)}) "
                                f"with columns in the order {preview(variables)}")
            columns = {v: array[:, i] for i, v in enumerate(variables)}
        for var in columns:
            if var not in self._structure.index:
                raise EvidenceError(f"unknown variable {var!r} in the data; the variables are "
                                    f"{preview(variables)}")
        lengths = {var: len(col) for var, col in columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"data columns have different lengths: {lengths}")
        n = next(iter(lengths.values())) if lengths else 0
        codes = np.full((n, len(variables)), -1, dtype=np.int64)
        for var, column in columns.items():
            codes[:, self._structure.index[var]] = encode_column(var, self._structure.states[var], column)
        return codes

    # ------------------------------------------------------------------ EM hooks (pgm.bn_learning)
    def expected_stats(self, data):
        """E-step for :func:`inference.em.fit`: expected family counts and :math:`\\log p(data)`."""
        from pgm import bn_learning

        return bn_learning.expected_counts(self, data)

    def from_stats(self, stats, pseudo_count: float = 0.0) -> "BayesNet":
        """M-step for :func:`inference.em.fit`: the tables maximising the expected counts."""
        from pgm import bn_learning

        return bn_learning.cpts_from_counts(self, stats, pseudo_count)

    def data_is_complete(self, data) -> bool:
        from pgm import bn_learning

        return bn_learning.data_is_complete(self, data)

    def log_prior(self, pseudo_count: float = 0.0) -> float:
        from pgm import bn_learning

        return bn_learning.log_dirichlet_prior(self, pseudo_count)


# --------------------------------------------------------------------------- data helpers
def _bucket(n: int) -> int:
    """The power of two (at least 1024) that ``n`` rows are padded to, so that the kernels
    compile once per bucket instead of once per ``n`` (small calls all share one)."""
    return max(1024, 1 << max(0, int(n) - 1).bit_length())


def _check_count(n) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer, got {n!r}")
    return int(n)
