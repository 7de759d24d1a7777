"""The Ising model on a small torus at couplings below, near and above the critical one.

One comparison, one question: *where do loopy BP and mean field break down, and which samplers
keep up?* The problem is three independent L x L tori (couplings J below, near and above
J_c = ln(1 + sqrt 2) / 2 = 0.4407 of the infinite lattice), small enough for the exact engine
(treewidth 2L). Each method runs on each lattice; its Result holds the marginals of all three
(variables prefixed ``J=<value>:``) and, where it has one, the sum of the three log Z's (the log Z
of the three lattices together: a disconnected graph). ``diagnostics["scores"]`` breaks the errors
down per coupling, so the table shows them side by side.

Model code is imported inside the functions, so ``genzoo list`` stays fast.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from genzoo.registry import Method, ModelEntry, Option, Problem
from genzoo.zoo._common import run_key, seed_key

CRITICAL = 0.5 * np.log(1.0 + np.sqrt(2.0))


def _couplings(text) -> tuple[float, ...]:
    from inference.errors import DataError

    try:
        values = tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise DataError(f"--couplings must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise DataError("--couplings names no coupling")
    return values


def _problem(options: Mapping[str, Any], seed: int) -> Problem:
    from inference import exact
    from pgm.ising import Ising
    from pgm.mrf import MarkovNet

    size = int(options["size"])
    lattices = {j: Ising((size, size), j, float(options["field"]), periodic=True) for j in _couplings(options["couplings"])}
    references = {j: exact.marginals(m) for j, m in lattices.items()}
    states, potentials = {}, {}
    for j, m in lattices.items():  # the three tori as one (disconnected) Markov network
        for f in m.factor_graph().factors:
            scope = tuple(f"J={j:g}:{v}" for v in f.scope)
            states.update({v: ("-1", "+1") for v in scope})
            potentials[scope] = potentials.get(scope, 0.0) + f.log_table
    net = MarkovNet(states, potentials, log=True, name="three Ising tori")
    shown = ", ".join(f"{j:g}" for j in lattices)
    return Problem(
        model=net,
        data={"lattices": lattices, "exact": references},
        description=f"{size} x {size} Ising tori, field {float(options['field']):g}, J = {shown} (J_c = {CRITICAL:.4f})",
    )


def _merge(problem, per_lattice: dict, method: str, kind: str | None, seconds: float, **diagnostics):
    """Per-lattice Results -> one Result with prefixed marginals, summed log Z and per-coupling scores."""
    from inference.result import Result

    marginals, scores, log_z = {}, {}, 0.0
    for j, r in per_lattice.items():
        ref = problem.data["exact"][j]
        err = max(float(np.max(np.abs(np.asarray(r.marginals[v]) - ref.marginals[v]))) for v in ref.marginals)
        scores[f"|dm| J={j:g}"] = err
        marginals.update({f"J={j:g}:{v}": np.asarray(m) for v, m in r.marginals.items()})
        if r.log_evidence is None:
            log_z = None
        else:
            scores[f"|dlogZ| J={j:g}"] = abs(r.log_evidence - ref.log_evidence)
            log_z = None if log_z is None else log_z + r.log_evidence
    return Result(method=method, marginals=marginals, log_evidence=log_z, log_evidence_kind=kind if log_z is not None else None,
                  seconds=seconds, diagnostics={"scores": scores, **diagnostics})


def _exact(problem, config):
    from inference import exact

    start = time.perf_counter()
    runs = {j: exact.marginals(m) for j, m in problem.data["lattices"].items()}
    kinds = sorted({r.diagnostics.get("arithmetic") for r in runs.values()} - {None})
    arithmetic = {"arithmetic": " and ".join(kinds)} if kinds else {}  # one per coupling; usually they agree
    return _merge(problem, runs, "exact", "exact", time.perf_counter() - start, **arithmetic)


def _loopy(problem, config):
    from inference import bp

    start = time.perf_counter()
    runs = {j: bp.loopy(m, damping=0.5, max_iter=config.steps or 500, tol=1e-10) for j, m in problem.data["lattices"].items()}
    converged = {f"J={j:g}": bool(r.diagnostics["converged"]) for j, r in runs.items()}
    return _merge(problem, runs, "loopy_bp", "estimate", time.perf_counter() - start, converged=converged)


def _mean_field(problem, config):
    import jax

    from inference import meanfield

    start = time.perf_counter()
    keys = jax.random.split(run_key(config), len(problem.data["lattices"]))
    runs = {j: meanfield.mean_field(m, key=k, steps=config.steps or 200)
            for (j, m), k in zip(problem.data["lattices"].items(), keys)}
    return _merge(problem, runs, "mean_field", "lower_bound", time.perf_counter() - start)


def _sampler(problem, config, which: str):
    import jax

    from inference.checkerboard import checkerboard_gibbs, run
    from inference.cluster import swendsen_wang
    from inference.result import Result

    start = time.perf_counter()
    keys = jax.random.split(run_key(config), len(problem.data["lattices"]))
    runs, ess = {}, {}
    for (j, m), key in zip(problem.data["lattices"].items(), keys):
        unary, k = m.potts_form()
        init_key, run_key_ = jax.random.split(key)
        x0 = np.asarray(jax.random.bernoulli(init_key, 0.5, (4,) + m.site_shape), dtype=np.int32)
        if which == "gibbs":
            kernel, steps = checkerboard_gibbs(unary, k, periodic=m.periodic), config.steps or 1000
        else:
            kernel, steps = swendsen_wang(unary.reshape(-1, 2), m.edges, k), config.steps or 500
            x0 = x0.reshape(4, -1)
        r = run(kernel, run_key_, x0, steps, burn_in=steps // 10, num_chains=4, num_states=2)
        grid = r.marginals["x"].reshape(-1, 2)
        runs[j] = Result(method=which, marginals=dict(zip(m.names, grid)))
        ess[f"J={j:g}"] = float(np.min(r.diagnostics["ess"]))
    return _merge(problem, runs, which, None, time.perf_counter() - start, min_ess=ess)


def _gibbs(problem, config):
    return _sampler(problem, config, "gibbs")


def _swendsen_wang(problem, config):
    return _sampler(problem, config, "swendsen_wang")


def _sample(problem, seed, n):
    """``n`` Swendsen-Wang states of the lattice nearest the critical coupling, as images."""
    from inference.checkerboard import run
    from inference.cluster import swendsen_wang

    j, m = min(problem.data["lattices"].items(), key=lambda item: abs(item[0] - CRITICAL))
    unary, k = m.potts_form()
    x0 = np.zeros((1, m.num_nodes), dtype=np.int32)
    r = run(swendsen_wang(unary.reshape(-1, 2), m.edges, k), seed_key(seed), x0, 100 + 10 * n, burn_in=100)
    return r.samples["x"][::10][:n].reshape((n,) + m.site_shape).astype(np.float64)


def _doc():
    from pgm.ising import Ising

    return Ising


ENTRY = ModelEntry(
    name="ising",
    family="Markov random field",
    description="Ising model on small tori below, near and above the critical coupling",
    dataset="the model itself (no data): three L x L tori",
    make_problem=_problem,
    methods=(
        Method("exact", "planned contraction of each torus (treewidth 2L)", _exact),
        Method("loopy_bp", "loopy sum-product, damping 0.5, Bethe log Z", _loopy),
        Method("mean_field", "naive mean field by CAVI (ELBO: a lower bound)", _mean_field),
        Method("gibbs", "checkerboard Gibbs, 4 chains, random starts", _gibbs),
        Method("swendsen_wang", "Swendsen-Wang cluster updates, 4 chains", _swendsen_wang),
    ),
    exact_method="exact",
    options={
        "size": Option(6, "side L of each L x L torus (even: checkerboard Gibbs needs it)", int),
        "couplings": Option("0.3,0.4407,0.6", "comma-separated couplings J"),
        "field": Option(0.1, "uniform field h", float),
    },
    sample=_sample,
    doc=_doc,
    quick={"size": 4, "steps": 500},
    order=20,
)
