"""A small causal transformer over characters, with a key-value cache that slides.

nanoGPT's CPU "baby" configuration by default: 4 layers, 4 heads, width 128, context 64, no
dropout, no biases, weight tying between the embedding and the output layer. One block::

    #   x --LN--> causal self-attention --(+)--LN--> MLP (4C, GELU) --(+)--> x'
    #   |___________________________________|  |_________________________|   (residual paths)

One change from nanoGPT, so that sampling costs one step per character: positions are **rotary**
(RoPE, Su et al. 2021) instead of learned absolute embeddings, and each query attends to the
``context`` most recent positions (itself included) of its layer. Attention scores with rotary
positions depend only on the distance between query and key,

.. math::

    \\langle R_m q, R_n k \\rangle = \\langle q, R_{n-m} k \\rangle,

so keys rotated once, when cached, stay valid as the window slides: a generated character costs
one forward step through the layers, however long the text. The same model without a cache runs
the whole sequence with the banded causal mask :math:`n \\le m < n + \\text{context}`; for sequences
of at most ``context`` characters (training) that is the plain causal mask. The two are the same
function, so cached and uncached sampling agree token for token.

References:
    Vaswani et al. (2017). Attention is all you need. NeurIPS.
    Radford et al. (2019). Language models are unsupervised multitask learners (GPT-2).
    Su, Lu, Pan, Murtadha, Wen and Liu (2021). RoFormer: enhanced transformer with rotary position
        embedding. arXiv:2104.09864.
    Karpathy (2022). nanoGPT, ``model.py`` and ``config/train_shakespeare_char.py``.

Example:
    >>> import torch
    >>> from deep.transformer import TransformerLM
    >>> lm = TransformerLM(vocab_size=10, layers=2, heads=2, width=16, context=8, seed=0)
    >>> logits, cache = lm(torch.tensor([[1, 2, 3]]))
    >>> logits.shape
    torch.Size([1, 3, 10])
    >>> step, cache = lm(torch.tensor([[4]]), cache)   # one new token, one step
    >>> bool(torch.allclose(step[0, -1], lm(torch.tensor([[1, 2, 3, 4]]))[0][0, -1], atol=1e-5))
    True
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from deep.charlm import CharLM
from inference.errors import DataError, ModelError
from inference.likelihood import seeded
from inference.rng import as_generator

__all__ = ["TransformerLM", "KVCache"]


@dataclasses.dataclass
class KVCache:
    """The rotated keys and values of the last ``context - 1`` positions of every layer,
    each (B, heads, L, head_width), and the absolute position of the next token."""

    keys: list
    values: list
    position: int


def _rotate(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE: rotate consecutive pairs of channels of ``x`` (B, h, T, d) by ``position * freq``."""
    d = x.shape[-1]
    freqs = base ** (-torch.arange(0, d, 2, device=x.device, dtype=x.dtype) / d)  # (d/2,)
    angles = positions.to(x.dtype)[:, None] * freqs  # (T, d/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, h, T, d/2)
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)  # (B, h, T, d)


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, context: int):
        super().__init__()
        self.heads, self.context = heads, context
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x, positions, past=None):
        b, t, c = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(c, -1)  # (B, T, C) each
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, h, T, d)
        q, k = _rotate(q, positions), _rotate(k, positions)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # (B, h, L + T, d)
        key_pos = torch.arange(positions[-1] - k.shape[2] + 1, positions[-1] + 1, device=x.device)  # (L + T,)
        if past is None and t <= self.context:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, d)
        else:
            gap = positions[:, None] - key_pos[None, :]  # (T, L + T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=(gap >= 0) & (gap < self.context))
        first = max(0, k.shape[2] - (self.context - 1))  # the next token sees context - 1 earlier keys
        present = (k[:, :, first:], v[:, :, first:])  # (B, h, <= context - 1, d)
        return self.proj(y.transpose(1, 2).reshape(b, t, c)), present


class Block(nn.Module):
    def __init__(self, width: int, heads: int, context: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)
        self.attn = SelfAttention(width, heads, context)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width, bias=False), nn.GELU(),
                                 nn.Linear(4 * width, width, bias=False))

    def forward(self, x, positions, past=None):
        a, present = self.attn(self.ln1(x), positions, past)
        x = x + a  # (B, T, C)
        return x + self.mlp(self.ln2(x)), present


class TransformerLM(CharLM):
    """A decoder-only transformer over ``vocab_size`` symbols.

    Args:
        vocab_size: :math:`V`.
        layers, heads, width: depth, attention heads, model width :math:`C` (divisible by heads,
            head width even for the rotations).
        context: how many positions (itself included) a query sees, per layer.
        seed: an int or ``torch.Generator`` for the initial weights (GPT-2's: normal(0, 0.02),
            residual projections scaled by :math:`1/\\sqrt{2L}`); the caller's random state is untouched.
        device: where the weights live.

    ``forward(ids (B, T), cache=None) -> (logits (B, T, V), cache)``: with a cache, ``ids`` are
    the next tokens after those the cache holds.
    """

    def __init__(self, vocab_size: int, layers: int = 4, heads: int = 4, width: int = 128, context: int = 64, *,
                 seed, device="cpu"):
        super().__init__()
        for value, name in ((vocab_size, "vocab_size"), (layers, "layers"), (heads, "heads"), (width, "width"),
                            (context, "context")):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if width % heads or (width // heads) % 2:
            raise ModelError(f"width {width} must split into {heads} heads of an even width")
        self.vocab_size, self.context = int(vocab_size), int(context)
        self.config = {"kind": "transformer", "vocab_size": self.vocab_size, "layers": int(layers),
                       "heads": int(heads), "width": int(width), "context": self.context}
        with seeded(as_generator(seed)):
            self.embed = nn.Embedding(self.vocab_size, width)
            self.blocks = nn.ModuleList(Block(width, heads, self.context) for _ in range(layers))
            self.ln_f = nn.LayerNorm(width, bias=False)
            self.head = nn.Linear(width, self.vocab_size, bias=False)
            self.head.weight = self.embed.weight  # weight tying (Press and Wolf 2017), as in GPT-2
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    residual = name.endswith("proj.weight") or name.endswith("mlp.2.weight")
                    std = 0.02 / math.sqrt(2 * layers) if residual else 0.02
                    nn.init.normal_(p, 0.0, std)
        self.to(device)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None):
        if ids.dim() != 2 or ids.shape[1] < 1:
            raise DataError(f"ids: expected shape (B, T) with T >= 1, got {tuple(ids.shape)}")
        start = 0 if cache is None else cache.position
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)  # (T,)
        x = self.embed(ids)  # (B, T, C)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            x, (k, v) = block(x, positions, past)
            keys.append(k)
            values.append(v)
        logits = self.head(self.ln_f(x))  # (B, T, V)
        return logits, KVCache(keys, values, start + ids.shape[1])

