"""An RBM trained by persistent contrastive divergence on binarised digits, scored exactly.

scikit-learn's 8 x 8 digits (1,797 images, shipped with scikit-learn) are binarised at half
intensity and split into training and test images. We train

- a small RBM (16 hidden units) by PCD-1 and score the test images *exactly*:
  log p(v) = -F(v) - log Z, with log Z summing the 64 visible units out in closed form and
  enumerating the 2^16 hidden states (pgm.rbm.RBM.log_partition);
- scikit-learn's BernoulliRBM with the same sizes, learning rate, batch size and epochs: its own
  pseudo-likelihood (score_samples), and *our* exact log-likelihood of its weights;
- a larger RBM (default 64 hidden units) whose log Z is out of reach of enumeration on the
  visible side (2^64) but not on the hidden side only when small: we estimate it by annealed
  importance sampling (inference.ais), the way Salakhutdinov and Murray (2008) do, and check the
  AIS estimate against the exact value on the small RBM first.

A grid of samples (block Gibbs from random starts) goes to a PNG.

    python examples/rbm_digits.py
    python examples/rbm_digits.py --epochs 2 --large-hidden 20 --ais-betas 100   # seconds

Takes about 1 minute on a 2-core CPU at the defaults.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from inference.ais import rbm_log_partition
from inference.mrf_learning import rbm_contrastive_divergence, rbm_sample
from pgm.rbm import RBM


def load_digits_binary(seed: int, test_fraction: float = 0.2):
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.float64)  # (1797, 64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    return x[order[n_test:]], x[order[:n_test]]


def train(x, hidden, args, seed):
    init = RBM.random(seed, x.shape[1], hidden, scale=0.01).params
    r = rbm_contrastive_divergence(seed, x, init, epochs=args.epochs, batch_size=args.batch_size,
                                   learning_rate=args.learning_rate, persistent=True)
    return RBM(*r.params), r.seconds


def main(args):
    train_x, test_x = load_digits_binary(args.seed)
    # 1. the small RBM: exact test log-likelihood, and AIS checked against it
    small, seconds = train(train_x, args.small_hidden, args, args.seed)
    log_z = small.log_partition()
    exact_ll = float(small.log_prob(test_x, log_z).mean())
    ais = rbm_log_partition(args.seed, small.weights, small.visible_bias, small.hidden_bias,
                            num_chains=args.ais_chains, num_betas=args.ais_betas,
                            base_visible_bias=_base_bias(train_x))
    print(f"ours, {args.small_hidden} hidden, PCD-1 ({seconds:.1f} s): exact test log-likelihood {exact_ll:.3f} nats/image"
          f"  (log Z exact {log_z:.3f}, AIS {ais.log_evidence:.3f} +- {ais.diagnostics['stderr']:.3f})")
    # 2. scikit-learn's BernoulliRBM, same sizes: its pseudo-likelihood and our exact log-likelihood
    from sklearn.neural_network import BernoulliRBM

    start = time.perf_counter()
    peer = BernoulliRBM(n_components=args.small_hidden, learning_rate=args.learning_rate, batch_size=args.batch_size,
                        n_iter=args.epochs, random_state=args.seed).fit(train_x)
    peer_seconds = time.perf_counter() - start
    theirs = RBM(peer.components_.T, peer.intercept_visible_, peer.intercept_hidden_)
    peer_ll = float(theirs.log_prob(test_x).mean())
    peer_pl = float(peer.score_samples(test_x).mean())
    ours_pl = _pseudo_likelihood(small, test_x)
    print(f"sklearn BernoulliRBM, {args.small_hidden} hidden ({peer_seconds:.1f} s): exact test log-likelihood "
          f"{peer_ll:.3f}; its pseudo-likelihood {peer_pl:.3f} (one random site x 64; ours on the same footing {ours_pl:.3f})")
    # 3. a larger RBM, log Z by AIS
    large, seconds = train(train_x, args.large_hidden, args, args.seed + 1)
    ais_large = rbm_log_partition(args.seed + 1, large.weights, large.visible_bias, large.hidden_bias,
                                  num_chains=args.ais_chains, num_betas=args.ais_betas,
                                  base_visible_bias=_base_bias(train_x))
    large_ll = float(large.log_prob(test_x, ais_large.log_evidence).mean())
    print(f"ours, {args.large_hidden} hidden ({seconds:.1f} s): AIS test log-likelihood {large_ll:.3f} "
          f"(log Z {ais_large.log_evidence:.3f} +- {ais_large.diagnostics['stderr']:.3f}, an estimate)")
    if args.out:
        _save_samples(large, args)
    return {"exact_ll": exact_ll, "peer_ll": peer_ll, "peer_pl": peer_pl, "large_ll": large_ll,
            "log_z": log_z, "ais": ais.log_evidence, "ais_stderr": ais.diagnostics["stderr"]}


def _base_bias(x):
    """Salakhutdinov and Murray's base-rate visible biases: the log-odds of the pixel means."""
    p = (x.sum(0) + 1.0) / (len(x) + 2.0)
    return np.log(p / (1 - p))


def _pseudo_likelihood(rbm: RBM, x) -> float:
    """BernoulliRBM's score_samples on our model: 64 x log p(v_i | v_-i) for one random site i."""
    rng = np.random.default_rng(0)
    i = rng.integers(0, x.shape[1], size=len(x))
    flipped = x.copy()
    flipped[np.arange(len(x)), i] = 1 - flipped[np.arange(len(x)), i]
    f, f_flip = rbm.free_energy(x), rbm.free_energy(flipped)
    return float(np.mean(x.shape[1] * -np.logaddexp(0.0, -(f_flip - f))))


def _save_samples(rbm: RBM, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    draws = rbm_sample(args.seed, rbm.params, 64, steps=args.sample_steps).samples["v_mean"]
    fig, axes = plt.subplots(8, 8, figsize=(5, 5))
    for ax, image in zip(axes.ravel(), draws):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    fig.suptitle(f"RBM samples ({args.large_hidden} hidden, {args.sample_steps} Gibbs steps)", fontsize=9)
    fig.savefig(args.out, dpi=100)
    print(f"samples: {args.out}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small-hidden", type=int, default=16)
    p.add_argument("--large-hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--ais-chains", type=int, default=100)
    p.add_argument("--ais-betas", type=int, default=2000)
    p.add_argument("--sample-steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rbm_digits.png", help="PNG path ('' for none)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
