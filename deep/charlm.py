"""Character-level language models: unigram and bigram counts, an LSTM, a causal transformer.

Every model here is an autoregressive distribution over the next character,

.. math::

    p(x_{1:T} \\mid x_0) = \\prod_{t=1}^{T} p(x_t \\mid x_{<t}),

with one interface (:class:`CharLM`): ``forward(ids (B, T), cache=None) -> (logits (B, T, V),
cache)`` where ``logits[:, t]`` scores :math:`x_{t+1}` given :math:`x_{\\le t}`, and ``cache`` is
whatever lets the next call continue the sequence one token at a time (nothing for the counts,
the hidden state for the LSTM, the key-value cache for the transformer,
:class:`deep.transformer.TransformerLM`). From that interface alone:

- :meth:`CharLM.log_prob`: the exact :math:`\\log p(x_{1:T} \\mid x_0)` of each window, one pass;
- :meth:`CharLM.model`: the Pyro program, one categorical site ``c_t`` per character with
  ``obs=``, run a token at a time through the cache::

      #   x_0 --> c_1 --> c_2 --> ... --> c_T        (each c_t given everything before it)

- :func:`sample_next` and :func:`generate`: sampling with temperature :math:`\\tau`, top-k and
  top-p (nucleus) truncation, from a prompt, with or without the cache (the same tokens);
- :func:`nats_per_char`: held-out cross-entropy in nats (divide by :math:`\\log 2` for bits).

The count models are exact maximum-likelihood estimates with add-:math:`\\alpha` smoothing,
:math:`p(b \\mid a) = (n_{ab} + \\alpha) / (n_{a\\cdot} + \\alpha V)`.

References:
    Shannon (1951). Prediction and entropy of printed English. Bell System Technical Journal.
    Hochreiter and Schmidhuber (1997). Long short-term memory. Neural Computation.
    Karpathy (2015). The unreasonable effectiveness of recurrent neural networks (char-rnn).
    Holtzman, Buys, Du, Forbes and Choi (2020). The curious case of neural text degeneration. ICLR
        (top-p sampling).

Example:
    >>> import torch
    >>> from deep.charlm import BigramLM, generate
    >>> from deep.text_data import CharVocab
    >>> text = "abracadabra " * 20
    >>> vocab = CharVocab.from_text(text)
    >>> lm = BigramLM.from_ids(vocab.encode(text), vocab.size, alpha=0.01)
    >>> generate(lm, vocab, "abr", 8, generator=0, top_k=1)
    'abrabrab'
"""

from __future__ import annotations

import math
import numbers

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from inference.errors import DataError, ModelError
from inference.likelihood import seeded
from inference.rng import as_generator

__all__ = ["CharLM", "UnigramLM", "BigramLM", "LSTMLM", "sample_next", "generate", "nats_per_char",
           "lm_loss", "build_lm"]


class CharLM(nn.Module):
    """The interface of every character model (see the module docstring)."""

    vocab_size: int

    def check_ids(self, ids, name: str = "x") -> torch.Tensor:
        ids = torch.as_tensor(ids)
        if ids.dim() != 2 or ids.is_floating_point() or ids.is_complex():
            raise DataError(f"{name}: expected integer character ids of shape (B, T), got shape "
                            f"{tuple(ids.shape)} and dtype {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise DataError(f"{name}: ids must lie in [0, {self.vocab_size - 1}], got min {int(ids.min())} "
                            f"and max {int(ids.max())}")
        return ids.long().to(self._device())

    def _device(self):
        return next(iter(self.buffers()), next(iter(self.parameters()), torch.empty(0))).device

    def log_prob(self, x) -> torch.Tensor:
        """:math:`\\log p(x_{1:T} \\mid x_0)` per row of ``x`` (B, T + 1), in nats, (B,): one pass."""
        x = self.check_ids(x)
        if x.shape[1] < 2:
            raise DataError(f"x: need at least 2 characters per row (a context and a target), got {x.shape[1]}")
        logits, _ = self(x[:, :-1])  # (B, T, V)
        return -F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").sum(1)  # (B,)

    def model(self, x=None, first=None, length: int | None = None):
        """The Pyro program: given the first character of each row, sites ``c_1 .. c_T``, each
        categorical given everything before it (through the cache, one token per step).
        ``x`` (B, T + 1) is observed through ``obs=``; or ``first`` (B,) ids and ``length`` T draw."""
        pyro.module(type(self).__name__, self)
        if x is not None:
            x = self.check_ids(x)
            first, length = x[:, 0], x.shape[1] - 1
        else:
            first = self.check_ids(torch.as_tensor(first).reshape(-1, 1), "first")[:, 0]
            if length is None or int(length) < 1:
                raise DataError(f"length must be >= 1 when no data x is given, got {length!r}")
        out, token, cache = [first], first[:, None], None  # (B, 1)
        with pyro.plate("data", first.shape[0]):
            for t in range(1, int(length) + 1):
                logits, cache = self(token, cache)  # (B, 1, V)
                c = pyro.sample(f"c_{t}", dist.Categorical(logits=logits[:, -1]), obs=None if x is None else x[:, t])
                out.append(c)
                token = c[:, None]
        return torch.stack(out, 1)  # (B, T + 1)


class UnigramLM(CharLM):
    """Characters independent of their context: :math:`p(c) = (n_c + \\alpha) / (N + \\alpha V)`."""

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.vocab_size = int(log_probs.shape[0])
        self.register_buffer("log_probs", log_probs)  # (V,)
        self.config = {"kind": "unigram", "vocab_size": self.vocab_size}

    @classmethod
    def from_ids(cls, ids, vocab_size: int, alpha: float = 1.0) -> "UnigramLM":
        ids = _check_corpus(ids, vocab_size)
        counts = torch.bincount(ids, minlength=vocab_size).double() + _check_alpha(alpha)  # (V,)
        return cls((counts / counts.sum()).log())

    def forward(self, ids, cache=None):
        return self.log_probs.expand(*ids.shape, self.vocab_size), None  # (B, T, V)


class BigramLM(CharLM):
    """The previous character alone: :math:`p(b \\mid a) = (n_{ab} + \\alpha) / (n_{a\\cdot} + \\alpha V)`."""

    def __init__(self, log_table: torch.Tensor):
        super().__init__()
        self.vocab_size = int(log_table.shape[0])
        self.register_buffer("log_table", log_table)  # (V, V): row = previous character
        self.config = {"kind": "bigram", "vocab_size": self.vocab_size}

    @classmethod
    def from_ids(cls, ids, vocab_size: int, alpha: float = 1.0) -> "BigramLM":
        ids = _check_corpus(ids, vocab_size)
        pairs = ids[:-1] * vocab_size + ids[1:]  # (N - 1,)
        counts = torch.bincount(pairs, minlength=vocab_size ** 2).double().reshape(vocab_size, vocab_size)
        counts = counts + _check_alpha(alpha)
        return cls((counts / counts.sum(1, keepdim=True)).log())

    def forward(self, ids, cache=None):
        return self.log_table[ids], None  # (B, T, V)


class LSTMLM(CharLM):
    """Embedding -> LSTM (``layers`` x ``width``) -> linear logits; the cache is the (h, c) state."""

    def __init__(self, vocab_size: int, width: int = 256, layers: int = 1, *, seed, device="cpu"):
        super().__init__()
        for value, name in ((vocab_size, "vocab_size"), (width, "width"), (layers, "layers")):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        self.vocab_size = int(vocab_size)
        self.config = {"kind": "lstm", "vocab_size": self.vocab_size, "width": int(width), "layers": int(layers)}
        with seeded(as_generator(seed)):
            self.embed = nn.Embedding(self.vocab_size, int(width))
            self.lstm = nn.LSTM(int(width), int(width), int(layers), batch_first=True)
            self.head = nn.Linear(int(width), self.vocab_size)
        self.to(device)

    def forward(self, ids, cache=None):
        h, state = self.lstm(self.embed(ids), cache)  # (B, T, W)
        return self.head(h), state  # (B, T, V)


def build_lm(kind: str, vocab_size: int, *, seed, device="cpu", **sizes) -> CharLM:
    """A neural model by name: ``"lstm"`` (sizes: width, layers) or ``"transformer"`` (layers,
    heads, width, context)."""
    if kind == "lstm":
        return LSTMLM(vocab_size, **sizes, seed=seed, device=device)
    if kind == "transformer":
        from deep.transformer import TransformerLM

        return TransformerLM(vocab_size, **sizes, seed=seed, device=device)
    raise ModelError(f"unknown language model {kind!r}; choose 'lstm' or 'transformer'")


# --------------------------------------------------------------------------- training and evaluation
def lm_loss(lm: CharLM, batch, generator=None) -> torch.Tensor:
    """Mean cross-entropy in nats of the windows ``batch["x"]`` (B, T + 1): inputs ``[:, :-1]``,
    targets ``[:, 1:]`` (the loss function of :class:`inference.train.LossStep`)."""
    x = batch["x"]  # (B, T + 1)
    logits, _ = lm(x[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


@torch.no_grad()
def nats_per_char(lm: CharLM, windows: torch.Tensor, batch_size: int = 256) -> float:
    """Held-out cross-entropy :math:`-\\frac1{NT} \\sum \\log p(x_t \\mid x_{<t})` in nats per
    character over windows (N, T + 1); bits per character are this over :math:`\\log 2`."""
    windows = lm.check_ids(windows, "windows")
    was_training = lm.training
    lm.eval()
    total, count = 0.0, 0
    for start in range(0, windows.shape[0], int(batch_size)):
        chunk = windows[start:start + int(batch_size)]
        total -= float(lm.log_prob(chunk).double().sum())
        count += chunk.shape[0] * (chunk.shape[1] - 1)
    lm.train(was_training)
    return total / count


# --------------------------------------------------------------------------- sampling
def _check_sampling(temperature, top_k, top_p, vocab_size):
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or \
            not math.isfinite(temperature) or temperature <= 0:
        raise DataError(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise DataError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0.0 < top_p <= 1.0):
        raise DataError(f"top_p must lie in (0, 1] or be None, got {top_p!r}")


def sample_next(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """One token per row from logits (B, V): scaled by :math:`1/\\tau`, restricted to the ``top_k``
    most likely tokens and to the smallest set whose probability reaches ``top_p`` (the most
    likely token always stays), renormalised. Returns ids (B,)."""
    _check_sampling(temperature, top_k, top_p, logits.shape[-1])
    logits = logits / temperature  # (B, V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, int(top_k), -1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, -1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the tokens ranked above
        drop_sorted = before >= top_p  # keep a token while the ones above it fall short of top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    probs = logits.softmax(-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)


@torch.no_grad()
def generate(lm: CharLM, vocab, prompt: str, length: int, generator, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True) -> str:
    """``length`` characters after ``prompt``, drawn one at a time (:func:`sample_next`).

    With ``use_cache`` each new character costs one step of the model (the cache carries the
    context); without it every step re-reads the whole text. The two draw the same characters.
    """
    if not isinstance(prompt, str) or not prompt:
        raise DataError(f"prompt: give at least one character to start from, got {prompt!r}")
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
        raise DataError(f"length must be a non-negative integer, got {length!r}")
    _check_sampling(temperature, top_k, top_p, vocab.size)
    if vocab.size != lm.vocab_size:
        raise ModelError(f"vocab has {vocab.size} characters but the model {lm.vocab_size}")
    device = lm._device()
    generator = as_generator(generator, device)
    was_training = lm.training
    lm.eval()
    ids = vocab.encode(prompt, name="prompt").to(device)[None]  # (1, P)
    logits, cache = lm(ids)
    out = []
    for t in range(int(length)):
        nxt = sample_next(logits[:, -1], generator, temperature, top_k, top_p)  # (1,)
        out.append(int(nxt))
        ids = torch.cat([ids, nxt[:, None]], 1)  # (1, P + t + 1)
        if t + 1 < length:
            logits, cache = lm(nxt[:, None], cache) if use_cache else lm(ids)
    lm.train(was_training)
    return vocab.decode(out) if out else ""


# --------------------------------------------------------------------------- checks
def _check_corpus(ids, vocab_size: int) -> torch.Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.is_floating_point():
        raise DataError(f"ids: expected a 1-D integer sequence, got shape {tuple(ids.shape)} and dtype {ids.dtype}")
    if ids.numel() < 2:
        raise DataError(f"ids: counting needs a corpus of at least 2 characters, got {ids.numel()}")
    if int(ids.min()) < 0 or int(ids.max()) >= int(vocab_size):
        raise DataError(f"ids: must lie in [0, {int(vocab_size) - 1}], got min {int(ids.min())} "
                        f"and max {int(ids.max())}")
    return ids.long()


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0 or not math.isfinite(alpha):
        raise DataError(f"alpha (the smoothing count) must be a finite number > 0, got {alpha!r}")
    return float(alpha)
