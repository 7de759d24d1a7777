"""The occasionally dishonest casino (Durbin et al., 1998): which rolls came from the loaded die?

A casino switches between a fair die and a loaded one (a six half of the time). We simulate rolls
with the HMM's own program, then ask exact inference (forward-backward, Viterbi) which die was in
play, and learn the parameters back from the rolls with Baum-Welch from a deliberately wrong start.

    python examples/hmm_casino.py --rolls 300 --out runs/casino

Takes about 10 s on a 2-core CPU at the defaults.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import numpy as np

import inference  # noqa: F401  (float64)
from inference import chain, em
from pgm.hmm import HMM


def casino():
    """Fair die (state 0) and loaded die (state 1), as in Durbin et al. (1998), chapter 3."""
    return HMM.categorical(
        initial_probs=[0.5, 0.5],
        transition_matrix=[[0.95, 0.05], [0.10, 0.90]],
        emission_probs=[[1 / 6] * 6, [0.1] * 5 + [0.5]],
        name="casino",
    )


def main(args):
    truth = casino()
    data = truth.sample(jax.random.PRNGKey(args.seed), args.rolls)
    rolls, dice = data["x"][0], data["z"][0]

    posterior = chain.marginals(truth, rolls)
    p_loaded = posterior.marginals["z"][:, 1]
    viterbi = chain.map(truth, rolls).map["z"]
    print(f"log p(rolls) = {posterior.log_evidence:.4f}")
    print(f"posterior decoding accuracy: {np.mean((p_loaded > 0.5) == (dice == 1)):.3f}")
    print(f"Viterbi accuracy:            {np.mean(viterbi == dice):.3f}")

    start = HMM.categorical([0.5, 0.5], [[0.8, 0.2], [0.2, 0.8]],
                            [[0.2, 0.2, 0.2, 0.15, 0.15, 0.1], [0.1, 0.1, 0.1, 0.2, 0.2, 0.3]])
    fit = em.fit(start, rolls, max_iter=args.em_iter, tol=1e-8)
    learned = fit.params
    print(f"Baum-Welch: {fit.diagnostics['iterations']} iterations, log-likelihood "
          f"{fit.history[0]:.3f} -> {fit.history[-1]:.3f}")
    print("learned transition matrix:\n", np.round(learned.transition_matrix, 3))
    print("learned P(six | loaded die):", round(float(learned.emission.probs[1, 5]), 3))

    if args.out:
        _plot(args.out, dice, p_loaded, viterbi)
    return {"log_evidence": posterior.log_evidence, "p_loaded": p_loaded, "viterbi": viterbi, "em": fit}


def _plot(out, dice, p_loaded, viterbi):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 3))
    t = np.arange(len(dice))
    ax.fill_between(t, 0, dice, step="mid", color="0.85", label="loaded die in play")
    ax.plot(t, p_loaded, label="p(loaded | rolls)")
    ax.plot(t, viterbi * 0.95, ":", label="Viterbi path")
    ax.set_xlabel("roll")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out)
    os.close(fd)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, os.path.join(out, "casino.png"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rolls", type=int, default=300)
    parser.add_argument("--em-iter", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for casino.png")
    main(parser.parse_args())
