"""First-call time of ``inference.mcmc.nuts`` and ``inference.svi.fit`` beside NumPyro's own ``MCMC`` /
``SVI`` on the same model: compilation, as a new user meets it.

Each figure is one call in a fresh process with JAX's persistent cache off (``GENZOO_CACHE=off``),
so nothing is compiled before it; the imports are done before the clock starts. With 2 warm-up and
2 kept draws (NUTS) or 2 steps (SVI), the call is almost all tracing and compilation. Both sides
run in float64 (``import inference``), with NumPyro's defaults (``init_to_uniform``, diagonal mass;
``AutoNormal``, ``Trace_ELBO``, Adam). Medians of ``--repeats`` processes, alternating the two sides.
Goal (issue #13): ours / NumPyro <= 1.5.

Models: eight schools (non-centred), the casino HMM with its states summed out
(``HMM.collapsed_model``, 300 rolls), the Bayesian Gaussian mixture (300 points; assignments
enumerated, so SVI uses ``TraceEnum_ELBO`` on both sides).

    python benchmarks/compile_time.py              # 3 processes per cell
    python benchmarks/compile_time.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = r'''
import json, sys, time
import jax, numpy as np
import inference  # float64, as the zoo runs
from inference import mcmc, svi

which, side = sys.argv[1], sys.argv[2]
if which == "eight_schools":
    from pgm.conjugate import EightSchools
    model, data, enum = EightSchools(centered=False).model, EightSchools.data(), False
elif which == "hmm":
    from genzoo.zoo import hmm as zh
    problem = zh.ENTRY.problem({"rolls": 300}, 0)
    model, data, enum = zh._hmm_start().collapsed_model, {"x": problem.data}, False
else:
    from functools import partial
    from genzoo.zoo import gmm as zg
    from pgm.mixture import BayesianGaussianMixture
    problem = zg.ENTRY.problem({"n": 300}, 0)
    model, data, enum = BayesianGaussianMixture(3, 2).model, {"x": problem.data}, True
kind = sys.argv[3]
key = jax.random.PRNGKey(0)
start = time.perf_counter()
if kind == "nuts" and side == "numpyro":
    from numpyro.infer import MCMC, NUTS
    run = MCMC(NUTS(model), num_warmup=2, num_samples=2, progress_bar=False)
    run.run(key, **data)
    jax.block_until_ready(run.get_samples())
elif kind == "nuts":
    mcmc.nuts(model, data, key=key, num_samples=2, num_warmup=2)
elif side == "numpyro":
    import numpyro.optim
    from numpyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro import handlers
    guide = AutoNormal(handlers.block(model, hide=["z"]) if enum else model)
    run = SVI(model, guide, numpyro.optim.Adam(0.01), TraceEnum_ELBO() if enum else Trace_ELBO())
    out = run.run(key, 2, progress_bar=False, **data)
    jax.block_until_ready(out.params)
else:
    svi.fit(model, data, key=key, guide="normal", elbo="trace_enum" if enum else "trace", steps=2,
            learning_rate=0.01, num_samples=0)
print(json.dumps({"seconds": time.perf_counter() - start}))
'''


def one(model: str, side: str, kind: str) -> float:
    env = dict(os.environ, GENZOO_CACHE="off", PYTHONPATH=os.getcwd())
    proc = subprocess.run([sys.executable, "-c", _CHILD, model, side, kind], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{model} {side} {kind}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="eight_schools,hmm,gmm")
    args = parser.parse_args(argv)
    print(f"{'model':<14} {'method':<5} {'ours (s)':>9} {'NumPyro (s)':>12} {'ratio':>6}")
    for model in args.models.split(","):
        for kind in ("nuts", "svi"):
            ours, theirs = [], []
            for _ in range(args.repeats):
                theirs.append(one(model, "numpyro", kind))
                ours.append(one(model, "ours", kind))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"{model:<14} {kind:<5} {a:9.2f} {b:12.2f} {a / b:6.2f}", flush=True)


if __name__ == "__main__":
    main()
