"""Regimes in the Nile's annual flow (1871-1970), from statsmodels' bundled dataset.

A two-state Gaussian HMM with a sticky transition matrix, fitted by Baum-Welch, finds the drop in
flow around 1898 (the Aswan dam works); Viterbi gives the regime of every year.

    python examples/hmm_nile.py --out runs/nile

Takes about 10 s on a 2-core CPU at the defaults.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import inference  # noqa: F401  (float64)
from inference import chain, em
from inference.errors import MissingPackageError
from pgm.hmm import HMM


def load_nile():
    """(years, flow) from statsmodels.datasets.nile (no download: the data ship with the package)."""
    try:
        from statsmodels.datasets import nile
    except ImportError as err:  # pragma: no cover
        raise MissingPackageError("statsmodels", "the Nile dataset") from err
    frame = nile.load_pandas().data
    return frame["year"].to_numpy(int), frame["volume"].to_numpy(float)


def main(args):
    years, flow = load_nile()
    x = flow[:, None] / 100.0  # hundreds of 10^8 m^3
    start = HMM.gaussian(
        [0.5, 0.5], [[0.95, 0.05], [0.05, 0.95]],
        means=[[np.quantile(x, 0.75)], [np.quantile(x, 0.25)]],
        covariances=[[np.var(x)], [np.var(x)]], covariance_type="diag",
    )
    fit = em.fit(start, x, max_iter=args.em_iter, tol=1e-9)
    hmm = fit.params
    path = chain.map(hmm, x).map["z"]
    high = int(np.argmax(hmm.emission.means[:, 0]))
    change = years[np.argmax(path != high)] if np.any(path != high) else None
    print(f"Baum-Welch: log-likelihood {fit.history[0]:.3f} -> {fit.history[-1]:.3f} "
          f"in {fit.diagnostics['iterations']} iterations")
    print("regime means (10^8 m^3):", np.round(hmm.emission.means[:, 0] * 100, 1))
    print("first year of the low regime:", change)
    if args.out:
        _plot(args.out, years, flow, path, hmm)
    return {"em": fit, "path": path, "change_year": change}


def _plot(out, years, flow, path, hmm):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(years, flow, ".-", color="0.5", label="annual flow")
    ax.plot(years, hmm.emission.means[path, 0] * 100, label="Viterbi regime mean")
    ax.legend()
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out)
    os.close(fd)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, os.path.join(out, "nile.png"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--em-iter", type=int, default=200)
    parser.add_argument("--out", default=None, help="folder for nile.png")
    main(parser.parse_args())
