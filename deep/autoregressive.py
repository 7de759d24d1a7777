"""Ready-made runs of the autoregressive models, the functions behind ``genzoo compare nade`` and
``genzoo compare / sample charlm``.

They take arrays and text (the caller loads the data), train through the one loop
(:func:`inference.train.fit`) and return :class:`~inference.result.Result` records whose
``log_evidence`` is the held-out total in nats with its kind, and whose ``diagnostics["scores"]``
hold the figures a table shows.

Binary vectors (NADE, MADE and the classical baseline):

- :func:`fit_density` trains a :class:`~deep.nade.NADE` or :class:`~deep.made.MADE` by maximum
  likelihood (each model's ``loss``: order-agnostic when it is so configured);
- :func:`bernoulli_mixture_em`: the mixture of Bernoullis
  :math:`p(x) = \\sum_k \\pi_k \\prod_d \\theta_{kd}^{x_d} (1 - \\theta_{kd})^{1 - x_d}` fitted by the
  zoo's one EM (:func:`inference.em.fit`) on :class:`pgm.naive_bayes.NaiveBayes` with every class
  label latent (a naive Bayes model without labels *is* a mixture of Bernoullis);
- :func:`nll_result`: test NLL in nats and bits per dimension (exact or a bound), and, for
  :math:`D \\le 12`, :math:`\\log \\sum_{x \\in \\{0,1\\}^D} p(x)` by enumeration (0 for a normalised model);
- :func:`crop`: the central 12 pixels (3 x 4) of 8 x 8 images, where enumeration is cheap.

Characters: :func:`prepare_corpus` (vocabulary, train and validation windows),
:func:`train_lm` (a neural model through the loop, or the counts), :func:`lm_result`.

Example:
    >>> import numpy as np
    >>> from deep.nade import NADE
    >>> x = (np.random.default_rng(0).random((64, 6)) < 0.3).astype(np.float32)
    >>> fitted = fit_density(NADE(6, 8, seed=0), x, seed=0, steps=20, batch_size=32)
    >>> r = nll_result("nade", fitted.params.log_prob, x, exact=True)
    >>> r.log_evidence_kind, abs(r.diagnostics["scores"]["log sum p (enum)"]) < 1e-5
    ('exact', True)
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Callable

import numpy as np
import torch

from inference.errors import DataError
from inference.result import Result

__all__ = ["crop", "fit_density", "bernoulli_mixture_em", "nll_result", "enumerated_log_total",
           "prepare_corpus", "train_lm", "lm_result", "NANOGPT_BABY"]

#: nanoGPT's CPU configuration for Shakespeare characters (README, "I only have a macbook").
NANOGPT_BABY = {"layers": 4, "heads": 4, "width": 128, "context": 64, "batch_size": 12, "steps": 2000,
                "lr": 1e-3}


# --------------------------------------------------------------------------- binary vectors
def crop(images, pixels: int = 64) -> np.ndarray:
    """The central ``pixels`` of 8 x 8 images, flattened: 64 (all) or 12 (rows 2-4, columns 2-5)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise DataError(f"images: expected shape (N, 8, 8), got {images.shape}")
    if pixels == 64:
        return images.reshape(len(images), 64)
    if pixels == 12:
        return images[:, 2:5, 2:6].reshape(len(images), 12)
    raise DataError(f"pixels must be 64 (the whole image) or 12 (the central 3 x 4 crop), got {pixels}")


def fit_density(model, x, *, seed: int, steps: int, batch_size: int = 100, lr: float = 1e-3, device=None,
                progress: bool = False, checkpoint=None) -> Result:
    """Maximum likelihood for ``model`` (anything with ``loss(batch, generator)``) on binary rows
    ``x`` (N, D) through :func:`inference.train.fit`; ``params`` is the trained model."""
    from inference.train import LossStep, fit

    step = LossStep(model, lambda m, batch, generator: m.loss(batch, generator), lr=lr, name="nll")
    return fit(step, {"x": torch.as_tensor(np.asarray(x, dtype=np.float32))}, seed=seed, steps=steps,
               batch_size=batch_size, device=device, progress=progress, checkpoint=checkpoint)


def bernoulli_mixture_em(x, n_components: int, *, seed: int, max_iter: int = 200, alpha: float = 1.0,
                         tol: float = 1e-6) -> Result:
    """A mixture of ``n_components`` Bernoulli products by EM (module docstring); the start is
    uniform weights and :math:`\\theta_{kd} \\sim U(0.25, 0.75)` from ``seed``; ``alpha`` is the
    Beta(:math:`\\alpha + 1, \\alpha + 1`) smoothing of the M-step. ``params`` is the fitted
    :class:`~pgm.naive_bayes.NaiveBayes`, whose ``log_prob`` is the mixture's."""
    from inference import em
    from pgm.naive_bayes import LabelledData, NaiveBayes

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not np.all((x == 0) | (x == 1)):
        raise DataError("x: the mixture of Bernoullis needs 0/1 rows of shape (N, D)")
    if int(n_components) < 1:
        raise DataError(f"n_components must be >= 1, got {n_components}")
    rng = np.random.default_rng(seed)
    start = NaiveBayes(np.full(n_components, 1.0 / n_components), "bernoulli",
                       {"probs": rng.uniform(0.25, 0.75, (n_components, x.shape[1]))}, alpha=alpha)
    return em.fit(start, LabelledData(x, -np.ones(len(x), dtype=np.int64)), max_iter=max_iter, tol=tol,
                  alpha=alpha)


def enumerated_log_total(log_prob: Callable, dim: int, chunk: int = 4096) -> float:
    """:math:`\\log \\sum_{x \\in \\{0,1\\}^D} p(x)` by enumerating all :math:`2^D` vectors (D <= 16)."""
    if dim > 16:
        raise DataError(f"enumeration over 2^{dim} vectors is too large (at most 16 dimensions)")
    table = np.array(list(itertools.product((0.0, 1.0), repeat=dim)), dtype=np.float32)
    parts = [np.asarray(_numpy(log_prob(table[i:i + chunk])), dtype=np.float64) for i in range(0, len(table), chunk)]
    values = np.concatenate(parts)
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))


def _numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value)


def nll_result(method: str, log_prob: Callable | None, x_test, *, exact: bool, seconds: float = 0.0,
               log_probs=None, train_seconds: float | None = None) -> Result:
    """Test NLL of ``x_test`` (N, D): ``log_evidence`` the total in nats (kind ``exact`` or
    ``lower_bound``), ``diagnostics["scores"]``: ``"NLL (nats)"`` per vector, ``"bits/dim"``,
    ``"train s"`` and, for D <= 12 and an exact model, ``"log sum p (enum)"``."""
    from inference.likelihood import bits_per_dim

    x_test = np.asarray(x_test, dtype=np.float32)
    start = time.perf_counter()
    with torch.no_grad():
        values = np.asarray(_numpy(log_prob(x_test) if log_probs is None else log_probs), dtype=np.float64)
        dim = x_test.shape[1]
        scores = {"NLL (nats)": float(-values.mean()), "bits/dim": bits_per_dim(values, dim)}
        if exact and dim <= 12 and log_prob is not None:
            scores["log sum p (enum)"] = enumerated_log_total(log_prob, dim)
    if train_seconds is not None:
        scores["train s"] = float(train_seconds)
    return Result(method=method, log_evidence=float(values.sum()),
                  log_evidence_kind="exact" if exact else "lower_bound",
                  seconds=seconds + time.perf_counter() - start,
                  diagnostics={"scores": scores, "mean": float(values.mean())})


# --------------------------------------------------------------------------- characters
def prepare_corpus(text: str, *, block: int = 64, val_fraction: float = 0.1, max_train_windows: int | None = None,
                   max_val_windows: int | None = None) -> dict:
    """``{"vocab", "train_ids", "train", "val"}``: the vocabulary of the whole text, the training
    characters' ids, and windows (N, block + 1) of the first ``1 - val_fraction`` (train) and the rest (val)."""
    from deep.text_data import CharVocab, split_text, windows

    vocab = CharVocab.from_text(text)
    train_text, val_text = split_text(text, val_fraction)
    train_ids = vocab.encode(train_text)
    return {"vocab": vocab, "train_ids": train_ids,
            "train": windows(train_ids, block, max_train_windows),
            "val": windows(vocab.encode(val_text), block, max_val_windows)}


def train_lm(kind: str, corpus: dict, *, seed: int, steps: int = 2000, batch_size: int = 12, lr: float = 1e-3,
             device=None, progress: bool = False, checkpoint=None, alpha: float = 1.0, num_threads: int | None = None,
             **sizes) -> Result:
    """A character model on ``corpus`` (:func:`prepare_corpus`): ``"unigram"`` / ``"bigram"`` by
    counting the training characters (smoothing ``alpha``), ``"lstm"`` / ``"transformer"`` through
    :func:`inference.train.fit` (Adam, gradients clipped at norm 1 as nanoGPT does) on
    ``num_threads`` torch threads (None: torch's setting)."""
    from deep.charlm import BigramLM, UnigramLM, build_lm, lm_loss
    from inference.train import LossStep, fit

    start = time.perf_counter()
    vocab = corpus["vocab"]
    if kind in ("unigram", "bigram"):
        cls = UnigramLM if kind == "unigram" else BigramLM
        lm = cls.from_ids(corpus["train_ids"], vocab.size, alpha)
        return Result(method=f"count:{kind}", params=lm, seconds=time.perf_counter() - start)
    lm = build_lm(kind, vocab.size, seed=seed, device=device or "cpu", **sizes)
    return fit(LossStep(lm, lm_loss, lr=lr, clip=1.0, name="nats"), {"x": corpus["train"]}, seed=seed, steps=steps,
               batch_size=batch_size, device=device, progress=progress, checkpoint=checkpoint, num_threads=num_threads)


def lm_result(method: str, lm, val_windows, *, train_seconds: float) -> Result:
    """Validation nats and bits per character of ``lm``; ``log_evidence`` is the exact total
    :math:`\\sum \\log p(x_t \\mid x_{<t})` over the windows' targets."""
    from deep.charlm import nats_per_char

    start = time.perf_counter()
    nats = nats_per_char(lm, val_windows)
    targets = val_windows.shape[0] * (val_windows.shape[1] - 1)
    return Result(method=method, log_evidence=-nats * targets, log_evidence_kind="exact",
                  seconds=train_seconds + time.perf_counter() - start,
                  diagnostics={"scores": {"val nats/char": nats, "val bits/char": nats / math.log(2.0),
                                          "train s": train_seconds}, "targets": targets})
