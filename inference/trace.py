"""From a NumPyro program with discrete latent sites to a factor graph.

A program whose latent sites are all discrete defines the joint

.. math::

    p(z, x) = \\prod_{s \\in \\text{sites}} p_s(v_s \\mid \\text{parents}(s)),

one factor per sample site (latent or observed). :func:`trace_factor_graph` recovers these
factors by running the program once under NumPyro's parallel enumeration:

1. Sites named in the evidence are conditioned on their values (``numpyro.handlers.condition``);
   other evidence names (unrolled variables such as ``"z[1]"``) are kept for the graph.
2. Under ``numpyro.contrib.funsor.enum`` every discrete latent site takes *all* its values at once,
   each on its own tensor dimension; the funsor ``trace`` records which dimension belongs to which
   site or plate (``site["infer"]["dim_to_name"]``). So each site's ``log_prob`` is a table over the
   sites it depends on (and the plates it sits in).
   The run and every site's ``log_prob`` happen inside one ``jax.jit`` (cached per program and
   argument shapes): one compilation instead of one per eager JAX operation; a program whose
   Python control flow reads values runs eagerly instead.
3. Plates are unrolled: a site ``z`` inside plate ``data`` of size N becomes the variables
   ``z[0] ... z[N-1]`` (``z[i,j]`` inside two plates), and each table is split along its plate
   axes into one factor per plate index. A latent site's states are its support indices
   ``"0", "1", ..., "K-1"`` (state ``k`` is ``fn.enumerate_support()[k]``).

Continuous latent sites cannot be summed out: they raise :class:`~inference.errors.ModelError`
naming the site (observe them, or use ``inference.svi`` / ``inference.mcmc``).

References:
    Obermeyer et al. (2019). Tensor variable elimination for plated factor graphs.

Example:
    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from inference.trace import trace_factor_graph
    >>> def coin(flips=None):
    ...     bias = numpyro.sample("bias", dist.Categorical(jnp.array([0.5, 0.5])))
    ...     with numpyro.plate("flips", 3):
    ...         numpyro.sample("flip", dist.Bernoulli(jnp.array([0.3, 0.8])[bias]), obs=flips)
    >>> graph = trace_factor_graph(coin, flips=jnp.array([1.0, 1.0, 0.0]))
    >>> graph.states
    {'bias': ('0', '1')}
    >>> [f.scope for f in graph.factors]
    [('bias',), ('bias',), ('bias',), ('bias',)]
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from inference.errors import EvidenceError, ModelError
from inference.factors import Factor, FactorGraph
from inference.staging import NEEDS_CONCRETE

MAX_PLATE_NESTING = 6
"""Enumerated dimensions start left of this many plate dimensions."""


@dataclasses.dataclass(frozen=True)
class SiteLayout:
    """Where a latent site's unrolled variables sit: ``variables`` in C order over ``plate_shape``."""

    plate_shape: tuple[int, ...]
    variables: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TracedProgram:
    """A traced program: its factor graph, the layout of each latent site, and the evidence that
    names unrolled variables (``"z[1]"``) rather than sites (those condition the program)."""

    graph: FactorGraph
    sites: dict[str, SiteLayout]
    evidence: dict


def trace_factor_graph(fn, *args, **kwargs) -> FactorGraph:
    """The factor graph of the NumPyro program ``fn(*args, **kwargs)`` (see the module docstring)."""
    return trace_program(fn, args, kwargs).graph


def variable_name(site: str, index: tuple[int, ...]) -> str:
    """``z`` outside plates, ``z[3]`` in one plate, ``z[3,1]`` in two."""
    return site if not index else f"{site}[{','.join(str(i) for i in index)}]"


def trace_program(fn, args=(), kwargs=None, evidence: Mapping | None = None) -> TracedProgram:
    """Trace ``fn(*args, **kwargs)`` into a :class:`TracedProgram`.

    Args:
        fn: a NumPyro program whose latent sites are discrete (any site with enumerable support is
            enumerated, marked ``infer={"enumerate": "parallel"}`` or not).
        args, kwargs: the program's arguments.
        evidence: ``{name: value}``; a name that is a sample site of the program conditions that
            site on ``value`` (an array of the site's shape, in the site's own value space); any
            other name is kept as evidence on the unrolled variables (``{"z[1]": 2}``).
    """
    kwargs = dict(kwargs or {})
    evidence = dict(evidence or {})

    # 1-2. one run under parallel enumeration, with every evidence name offered to the condition
    # handler: the names that are sample sites condition them, the others wait for the graph
    records = _site_records(fn, args, kwargs, evidence)
    site_evidence = {k: v for k, v in evidence.items() if k in records}
    var_evidence = {k: v for k, v in evidence.items() if k not in records}
    _check_site_evidence(records, site_evidence)

    # 3. one factor per site and plate index
    states, layouts, site_plates, site_sizes = {}, {}, {}, {}
    for name, rec in records.items():
        if rec["observed"]:
            continue
        if not rec["enumerated"]:
            raise ModelError(
                f"site {name!r} is a latent {rec['dist']} without enumerable support: "
                f"exact inference sums out discrete sites only; observe it (evidence={{{name!r}: value}}) "
                f"or use inference.svi / inference.mcmc"
            )
        shape = tuple(p[1] for p in rec["plates"])
        names = tuple(variable_name(name, idx) for idx in itertools.product(*(range(k) for k in shape)))
        for var in names:
            states[var] = tuple(str(k) for k in range(rec["size"]))
        layouts[name] = SiteLayout(shape, names)
        site_plates[name] = rec["plates"]
        site_sizes[name] = rec["size"]

    factors = []
    for name, rec in records.items():
        factors.extend(_site_factors(name, rec, site_plates, site_sizes))
    return TracedProgram(FactorGraph(states, factors), layouts, var_evidence)


def _site_records(fn, args, kwargs, evidence) -> dict:
    """Per sample site: its log_prob table (NumPy) and what the factor graph needs to know.

    The enumerated run and every log_prob happen in one jitted function (one XLA compilation
    per program and argument shapes, instead of one per JAX operation run eagerly); a program
    that cannot be traced by ``jax.jit`` (Python control flow on values) runs eagerly.
    """
    leaves, treedef = jax.tree_util.tree_flatten((tuple(args), kwargs, evidence))
    dynamic = [isinstance(x, (np.ndarray, jax.Array, float, np.floating)) for x in leaves]
    statics = tuple(None if d else x for x, d in zip(leaves, dynamic))
    arrays = [x for x, d in zip(leaves, dynamic) if d]
    try:
        hash((fn, statics))
        runner = _jitted_records(fn, treedef, statics)
    except TypeError:  # unhashable program or arguments: no cache, run eagerly
        runner = None
    if runner is not None:
        run, meta = runner
        try:
            tables = run(*arrays)
            key = tuple((np.shape(a), np.result_type(a).str) for a in arrays)
            return _merge(meta[key], tables)
        except NEEDS_CONCRETE:
            pass
    meta, tables = _records(fn, tuple(args), kwargs, evidence)
    return _merge(meta, tables)


def _merge(meta, tables):
    return {name: {**m, **{k: np.asarray(v) for k, v in tables[name].items()}} for name, m in meta.items()}


@functools.lru_cache(maxsize=64)
def _jitted_records(fn, treedef, statics):
    meta = {}

    def run(*arrays):
        it = iter(arrays)
        leaves = [next(it) if s is None else s for s in statics]
        args, kwargs, evidence = jax.tree_util.tree_unflatten(treedef, leaves)
        info, tables = _records(fn, args, kwargs, evidence)
        meta[tuple((np.shape(a), np.result_type(a).str) for a in arrays)] = info
        return tables

    return jax.jit(run), meta


def _records(fn, args, kwargs, evidence):
    """(static facts, arrays) per sample site of the enumerated run."""
    try:
        trace = _enumerated_trace(fn, args, kwargs, evidence, first_dim=-MAX_PLATE_NESTING - 1)
    except ValueError as exc:
        if "plate" not in str(exc) and "dim" not in str(exc):
            raise
        raise ModelError(f"exact inference supports at most {MAX_PLATE_NESTING} nested plates: {exc}") from exc
    info, tables = {}, {}
    for name, site in trace.items():
        if site["type"] != "sample":
            continue
        d = site["fn"]
        enumerated = site["infer"].get("enumerate") == "parallel" and not site["is_observed"]
        info[name] = {
            "observed": bool(site["is_observed"]),
            "enumerated": enumerated,
            "dist": type(d).__name__,
            "support": str(getattr(d, "support", "")),
            "plates": _plates(site),
            "size": int(d.enumerate_support(expand=False).shape[0]) if enumerated else 0,
            "dim_to_name": dict(site["infer"].get("dim_to_name", {})),
        }
        arrays = {}
        if site["is_observed"] or enumerated:
            log_prob = d.log_prob(site["value"])
            if site.get("scale") is not None:
                log_prob = site["scale"] * log_prob
            arrays["log_prob"] = log_prob
        if name in evidence:
            arrays["value"] = jnp.asarray(site["value"])
            try:
                arrays["inside"] = jnp.asarray(d.support(site["value"]))
            except Exception:  # noqa: BLE001 - a value the support cannot even read
                arrays["inside"] = jnp.asarray(False)
        tables[name] = arrays
    return info, tables


def _enumerated_trace(fn, args, kwargs, site_evidence, first_dim):
    from numpyro import handlers
    from numpyro.contrib.funsor import config_enumerate, enum
    from numpyro.contrib.funsor import trace as enum_trace
    from numpyro.contrib.funsor.infer_util import plate_to_enum_plate

    program = config_enumerate(handlers.condition(fn, data=site_evidence), default="parallel")
    with plate_to_enum_plate(), enum(first_available_dim=first_dim):
        return enum_trace(handlers.seed(program, rng_seed=0)).get_trace(*args, **kwargs)


def _check_site_evidence(records, site_evidence):
    for name in site_evidence:
        rec = records[name]
        if not rec["inside"].all():
            raise EvidenceError(
                f"evidence for site {name!r} is outside its support {rec['support']}: {rec['value'].tolist()}"
            )


def _plates(site) -> list[tuple[str, int, int]]:
    """(name, size, dim) of the site's plates, outermost dimension first."""
    frames = [(f.name, int(f.size), int(f.dim)) for f in site["cond_indep_stack"] if f.dim is not None]
    return sorted(frames, key=lambda p: p[2])


def _site_factors(name, rec, site_plates, site_sizes) -> list[Factor]:
    """Split the site's log_prob table into one factor per index of the plates it lies in."""
    if "log_prob" not in rec:  # a latent site that is not enumerated: refused before
        return []
    table = np.asarray(rec["log_prob"], dtype=np.float64)
    dim_to_name = rec["dim_to_name"]
    for dim_name in dim_to_name.values():
        if dim_name.startswith("_PREV_") or dim_name.startswith("_time"):
            raise ModelError(
                f"site {name!r} lies in a markov/scan context; exact inference over time series "
                f"goes through a model's chain() (inference.chain), not through tracing"
            )

    # named axes in dim order; unnamed axes must be broadcast (size 1)
    ndim = table.ndim
    named = sorted((d, n) for d, n in dim_to_name.items() if -ndim <= d)
    for axis in range(ndim):
        if axis - ndim not in dim_to_name and table.shape[axis] != 1:
            raise ModelError(f"site {name!r}: log_prob axis {axis - ndim} of size {table.shape[axis]} has no name")
    table = table.reshape([table.shape[d] for d, _ in named])

    plates = {p[0]: p[1] for p in rec["plates"]}
    sizes = []
    for _, dim_name in named:
        if dim_name in plates:
            sizes.append(plates[dim_name])
        elif dim_name in site_sizes:
            sizes.append(site_sizes[dim_name])
        else:
            raise ModelError(f"site {name!r} depends on {dim_name!r}, which is neither a latent site nor a plate")
    table = np.broadcast_to(table, sizes)

    axis_names = [n for _, n in named]
    plate_axes = [a for a, n in enumerate(axis_names) if n in plates]
    var_axes = [a for a, n in enumerate(axis_names) if n not in plates]
    plate_names = [axis_names[a] for a in plate_axes]
    if not var_axes:  # a constant: the log-likelihood of observed data given nothing latent
        return [Factor((), np.asarray(table.sum()))]

    table = np.transpose(table, plate_axes + var_axes)
    factors = []
    for idx in itertools.product(*(range(sizes[a]) for a in plate_axes)):
        where = dict(zip(plate_names, idx))
        scope = []
        for a in var_axes:
            parent = axis_names[a]
            outer = [p[0] for p in site_plates[parent]]
            missing = [p for p in outer if p not in where]
            if missing:
                raise ModelError(
                    f"site {name!r} depends on {parent!r}, which lies in plate {missing[0]!r} that "
                    f"{name!r} is not in"
                )
            scope.append(variable_name(parent, tuple(where[p] for p in outer)))
        factors.append(Factor(tuple(scope), np.array(table[idx])))
    return factors

