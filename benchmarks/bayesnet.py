"""All posterior marginals of a Bayesian network given evidence: genzoo against pyAgrum and pgmpy.

For each bundled network, three evidence variables (states drawn from the network itself, so
that :math:`p(e) > 0`) and the query "the marginal of every other variable":

- ours: ``inference.exact.marginals(graph, evidence)`` on the network's factor graph. The first
  call plans the contraction (reported as ``plan ms``); the timed calls re-use the plan and
  differ from it only in the values, as a query with new evidence values would. The line
  above the table says whether the passes ran in linear or in log space.
- pyAgrum: ``LazyPropagation`` built once; per run ``setEvidence``, ``makeInference`` and the
  ``posterior`` of every variable.
- pgmpy: ``VariableElimination`` built once; per run ``query(all other variables, joint=False)``.

All in one process on the same evidence; each time is the median of ``--repeats`` runs (pgmpy's
of ``--peer-repeats``). The table prints our time over each peer's and the largest difference
between our marginals and each peer's, to show that the answers are the same.

Run: ``python benchmarks/bayesnet.py --quick`` (CI-sized) or ``--networks alarm andes``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time

import jax
import numpy as np

import inference  # noqa: F401 - float64
from genzoo.data import bn_network_path
from inference import exact

DEFAULT_NETWORKS = ("alarm", "win95pts", "hepar2", "andes", "munin")
PGMPY_TOO_SLOW = ("munin",)
"""Networks where one pgmpy query per variable (1041 of them) would take many minutes: left out."""


def load_graph(name):
    """The network as our FactorGraph (through pgm.bayesnet.BayesNet when it is there)."""
    try:
        from pgm.bayesnet import BayesNet
    except ImportError:
        BayesNet = None
    if BayesNet is not None:
        return BayesNet.from_bif(bn_network_path(name)).factor_graph()
    import networkx as nx
    from pgmpy.readwrite import BIFReader

    from inference.factors import Factor, FactorGraph

    model = BIFReader(string=_bif_text(name)).get_model()
    states, factors = {}, []
    for v in nx.topological_sort(model):
        cpd = model.get_cpds(v)
        states[v] = tuple(cpd.state_names[v])
        parents = tuple(cpd.variables[1:])
        table = cpd.get_values().reshape((len(states[v]),) + tuple(len(cpd.state_names[p]) for p in parents))
        with np.errstate(divide="ignore"):
            factors.append(Factor(parents + (v,), np.log(np.moveaxis(table, 0, -1))))
    return FactorGraph(states, factors, directed=True)


def _bif_text(name):
    with gzip.open(bn_network_path(name), "rt") as handle:
        return handle.read()


def pick_evidence(graph, seed, k=3):
    """k variables and their states in one exact draw from the network (so p(e) > 0)."""
    rng = np.random.default_rng(seed)
    draw = exact.sample(graph, jax.random.key(seed), 1).samples
    names = rng.choice(graph.variables, size=k, replace=False)
    return {str(v): graph.states[v][int(draw[v][0])] for v in names}


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run_ours(graph, evidence, repeats):
    start = time.perf_counter()
    first = exact.marginals(graph, evidence)
    plan_ms = 1e3 * (time.perf_counter() - start)
    ms = median_ms(lambda: exact.marginals(graph, evidence), repeats)
    return first.marginals, ms, plan_ms, first.log_evidence, first.diagnostics


def run_pyagrum(name, graph, evidence, repeats):
    made = pyagrum_query(name, graph, evidence)
    if made is None:
        return None, float("nan")
    bn, query = made
    query()
    ms = median_ms(query, repeats)
    marginals = {}
    for v, potential in query().items():
        labels = list(bn.variable(v).labels())
        values = np.asarray(potential.toarray(), dtype=np.float64)
        marginals[v] = np.array([values[labels.index(s)] for s in graph.states[v]])
    return marginals, ms


def pyagrum_query(name, graph, evidence):
    """pyAgrum's network with our CPT values and its query (all posteriors given ``evidence``):
    ``(bn, query)``, or None where pyAgrum is not installed."""
    try:
        import pyagrum as gum
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"{name}.bif")
        with open(path, "w") as handle:
            handle.write(_bif_text(name))
        bn = gum.loadBN(path)
    _copy_cpts(bn, graph)
    engine = gum.LazyPropagation(bn)
    names = [bn.variable(i).name() for i in bn.nodes()]

    def query():
        engine.eraseAllEvidence()
        engine.setEvidence(evidence)
        engine.makeInference()
        return {v: engine.posterior(v) for v in names if v not in evidence}

    return bn, query


def _copy_cpts(bn, graph):
    """Give pyAgrum exactly our CPT values (its BIF reader rounds some rows differently)."""
    for factor in graph.factors:
        var = factor.scope[-1]
        potential = bn.cpt(var)
        axes = list(reversed(potential.names))  # pyAgrum's array axes run opposite to .names
        table = np.transpose(np.exp(factor.log_table), [factor.scope.index(n) for n in axes])
        for axis, n in enumerate(axes):
            labels = list(bn.variable(n).labels())
            table = np.take(table, [graph.states[n].index(label) for label in labels], axis=axis)
        potential[:] = table
        corner = {n: bn.variable(n).labels()[-1] for n in axes}
        expected = np.exp(factor.log_table[tuple(graph.states[n].index(corner[n]) for n in factor.scope)])
        assert abs(potential[corner] - expected) < 1e-15, f"pyAgrum CPT of {var!r} laid out differently"


def run_pgmpy(name, graph, evidence, repeats):
    from pgmpy.inference import VariableElimination
    from pgmpy.readwrite import BIFReader

    model = BIFReader(string=_bif_text(name)).get_model()
    for factor in graph.factors:  # exactly our CPT values (the BIF rows are rounded)
        cpd = model.get_cpds(factor.scope[-1])
        order = [cpd.variables[0]] + list(cpd.variables[1:])
        table = np.transpose(np.exp(factor.log_table), [factor.scope.index(n) for n in order])
        for axis, n in enumerate(order):
            table = np.take(table, [graph.states[n].index(s) for s in cpd.state_names[n]], axis=axis)
        cpd.values = table
    engine = VariableElimination(model)
    query_vars = [v for v in graph.variables if v not in evidence]

    def query():  # one query per variable: a multi-variable query builds their joint table
        return {v: engine.query([v], evidence=evidence, show_progress=False) for v in query_vars}

    result = query()
    ms = median_ms(query, repeats) if repeats > 1 else _once_ms(query)
    marginals = {v: np.array([result[v].get_value(**{v: s}) for s in graph.states[v]]) for v in query_vars}
    return marginals, ms


def _once_ms(fn):
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def max_diff(ours, theirs):
    if theirs is None:
        return float("nan")
    return max(float(np.max(np.abs(ours[v] - theirs[v]))) for v in theirs)


def main(args):
    rows = []
    for name in args.networks:
        graph = load_graph(name)
        evidence = pick_evidence(graph, args.seed)
        ours, ms, plan_ms, log_ev, diag = run_ours(graph, evidence, args.repeats)
        agrum, agrum_ms = run_pyagrum(name, graph, evidence, args.repeats)
        if args.skip_pgmpy or name in PGMPY_TOO_SLOW:
            pgm, pgm_ms = None, float("nan")
        else:
            pgm, pgm_ms = run_pgmpy(name, graph, evidence, args.peer_repeats)
        rows.append((name, len(graph.variables), diag["largest_table"], plan_ms, ms, agrum_ms, pgm_ms,
                     max_diff(ours, agrum), max_diff(ours, pgm), log_ev))
        print(f"{name}: evidence {evidence}, log p(e) = {log_ev:.6f}, {diag['arithmetic']} space", flush=True)

    head = (f"{'network':10s} {'vars':>5s} {'largest':>8s} {'plan ms':>8s} {'ours ms':>8s} {'pyAgrum':>8s} "
            f"{'pgmpy':>9s} {'ours/pyAgrum':>13s} {'ours/pgmpy':>11s} {'max|d| agrum':>13s} {'max|d| pgmpy':>13s}")
    print()
    print(head)
    print("-" * len(head))
    for name, n, largest, plan_ms, ms, a_ms, p_ms, d_a, d_p, _ in rows:
        print(f"{name:10s} {n:5d} {largest:8d} {plan_ms:8.1f} {ms:8.2f} {a_ms:8.2f} {p_ms:9.1f} "
              f"{ms / a_ms:13.2f} {ms / p_ms:11.4f} {d_a:13.2e} {d_p:13.2e}")
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_NETWORKS)}")
    parser.add_argument("--quick", action="store_true", help="CI-sized: alarm and win95pts, fewer pgmpy runs")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of ours and pyAgrum (median)")
    parser.add_argument("--peer-repeats", type=int, default=None, help="timed runs of pgmpy (median)")
    parser.add_argument("--skip-pgmpy", action="store_true", help="leave the slow peer out")
    parser.add_argument("--seed", type=int, default=0, help="picks the evidence")
    args = parser.parse_args(argv)
    if args.networks is None:
        args.networks = ["alarm", "win95pts"] if args.quick else list(DEFAULT_NETWORKS)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 7
    if args.peer_repeats is None:
        args.peer_repeats = 1 if args.quick else 5
    return args


if __name__ == "__main__":
    main(parse_args())
