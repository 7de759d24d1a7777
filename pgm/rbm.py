"""Restricted Boltzmann machines: a bipartite Markov random field of binary units.

Visible units :math:`v \\in \\{0, 1\\}^{D}` and hidden units :math:`h \\in \\{0, 1\\}^{H}` with energy

.. math::

    E(v, h) = -v^\\top W h - b^\\top v - c^\\top h, \\qquad p(v, h) = e^{-E(v, h)} / Z.

No edges within a layer, so each layer given the other factorises,
:math:`p(h_j = 1 \\mid v) = \\sigma(c_j + v^\\top W_{:j})`, and a layer sums out in closed form:

.. math::

    \\log \\sum_h e^{-E(v, h)} = b^\\top v + \\sum_j \\operatorname{softplus}(c_j + v^\\top W_{:j})
        = -F(v) \\quad \\text{(the free energy)}.

So :math:`\\log Z = \\log \\sum_v e^{-F(v)}` enumerates :math:`2^D` visible states, or symmetrically
:math:`2^H` hidden ones: :meth:`RBM.log_partition` sums the larger layer out analytically and
enumerates the smaller one (exact up to ~25 units on the smaller side), which gives exact
log-likelihoods :math:`\\log p(v) = -F(v) - \\log Z` for an RBM with a small hidden layer. Larger
ones need annealed importance sampling (``inference.ais.rbm_log_partition``).

::

    h_1    h_2   ...   h_H        every v_i joined to every h_j by W_ij
     | \\  / |  \\       |
    v_1    v_2   ...   v_D

References:
    Smolensky (1986). Information processing in dynamical systems: foundations of harmony theory.
    Hinton (2002). Training products of experts by minimizing contrastive divergence.
    Salakhutdinov and Murray (2008). On the quantitative analysis of deep belief networks.

Example:
    >>> import numpy as np
    >>> from pgm.rbm import RBM
    >>> rbm = RBM(np.zeros((3, 2)), np.zeros(3), np.zeros(2))   # uniform: Z = 2^5
    >>> bool(np.isclose(rbm.log_partition(), 5 * np.log(2)))
    True
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from inference.errors import DataError, MemoryBudgetError, ModelError
from inference.factors import Factor, FactorGraph
from inference.rng import as_key

__all__ = ["RBM", "binary_states"]

MAX_ENUMERATED_UNITS = 26
"""The smaller layer may have at most this many units for exact enumeration (2^26 states)."""


def binary_states(n: int) -> np.ndarray:
    """All :math:`2^n` binary vectors, ``(2^n, n)`` float64, first unit as the most significant bit."""
    codes = np.arange(2**n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.float64)


@functools.partial(jax.jit, static_argnames=("n", "chunk"))
def _enumerated_log_z(w, b, c, n: int, chunk: int):
    """log sum over the 2^n states x of the small layer of exp(a'x + sum softplus(d + W x)),
    where (w, b, c) are oriented so that the small layer has bias ``b`` (n,) and weights ``w`` (m, n)."""
    bits = jnp.arange(n - 1, -1, -1)
    blocks = max(1, 2**n // chunk)
    size = min(chunk, 2**n)

    def block(carry, k):
        codes = k * size + jnp.arange(size)
        x = ((codes[:, None] >> bits) & 1).astype(w.dtype)  # (S, n)
        terms = x @ b + jnp.sum(jax.nn.softplus(x @ w.T + c), axis=-1)  # (S,)
        return jnp.logaddexp(carry, jax.scipy.special.logsumexp(terms)), None

    total, _ = jax.lax.scan(block, jnp.asarray(-jnp.inf, w.dtype), jnp.arange(blocks))
    return total


class RBM:
    """A binary RBM with weights ``(n_visible, n_hidden)``, :math:`E(v, h) = -v^\\top W h - b^\\top v - c^\\top h`.

    Args:
        weights: :math:`W`, shape ``(D, H)``.
        visible_bias: :math:`b`, shape ``(D,)``.
        hidden_bias: :math:`c`, shape ``(H,)``.

    Raises:
        ModelError: wrong shapes (naming the argument and both shapes), a zero-sized layer, or a
            NaN / infinite parameter (naming the entry).

    Example:
        >>> rbm = RBM.random(0, 4, 3, scale=0.1)
        >>> rbm.weights.shape, rbm.log_prob(np.ones((2, 4))).shape
        ((4, 3), (2,))
    """

    def __init__(self, weights, visible_bias, hidden_bias):
        w = self._array(weights, "weights")
        if w.ndim != 2:
            raise ModelError(f"weights must have shape (n_visible, n_hidden), got {w.shape}")
        if 0 in w.shape:
            raise ModelError(f"weights has shape {w.shape}: both layers need at least one unit")
        b = self._array(visible_bias, "visible_bias")
        c = self._array(hidden_bias, "hidden_bias")
        if b.shape != (w.shape[0],):
            raise ModelError(f"visible_bias has shape {b.shape}, expected ({w.shape[0]},) to match weights {w.shape}")
        if c.shape != (w.shape[1],):
            raise ModelError(f"hidden_bias has shape {c.shape}, expected ({w.shape[1]},) to match weights {w.shape}")
        self.weights, self.visible_bias, self.hidden_bias = w, b, c

    @staticmethod
    def _array(x, name) -> np.ndarray:
        try:
            a = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelError(f"{name} is not an array of numbers") from None
        bad = ~np.isfinite(a)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelError(f"{name} entry {where} is {float(a[where])!r}; RBM parameters must be finite")
        return a

    @classmethod
    def random(cls, key, n_visible: int, n_hidden: int, scale: float = 0.01) -> "RBM":
        """Weights :math:`\\mathcal N(0, \\text{scale}^2)`, zero biases (Hinton, 2010, section 8)."""
        w = scale * jax.random.normal(as_key(key), (int(n_visible), int(n_hidden)), dtype=jnp.float64)
        return cls(np.asarray(w), np.zeros(int(n_visible)), np.zeros(int(n_hidden)))

    @property
    def n_visible(self) -> int:
        return self.weights.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.weights.shape[1]

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameters as a pytree ``{"weights", "visible_bias", "hidden_bias"}``."""
        return {"weights": self.weights, "visible_bias": self.visible_bias, "hidden_bias": self.hidden_bias}

    def __repr__(self) -> str:
        return f"RBM(n_visible={self.n_visible}, n_hidden={self.n_hidden})"

    # ------------------------------------------------------------------ scoring
    def _visible(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if v.ndim < 1 or v.shape[-1] != self.n_visible:
            raise DataError(f"visible data must have shape (..., {self.n_visible}), got {v.shape}")
        if not np.all((v == 0) | (v == 1)):
            raise DataError("visible data must be binary (0 or 1)")
        return v

    def energy(self, v, h) -> np.ndarray:
        """:math:`E(v, h)` for broadcastable ``v (..., D)`` and ``h (..., H)``."""
        v, h = np.asarray(v, dtype=np.float64), np.asarray(h, dtype=np.float64)
        return -np.einsum("...i,ij,...j->...", v, self.weights, h) - v @ self.visible_bias - h @ self.hidden_bias

    def free_energy(self, v) -> np.ndarray:
        """:math:`F(v) = -b^\\top v - \\sum_j \\operatorname{softplus}(c_j + v^\\top W_{:j})`."""
        v = self._visible(v)
        return -(v @ self.visible_bias) - np.logaddexp(0.0, v @ self.weights + self.hidden_bias).sum(-1)

    def log_partition(self, chunk: int = 2**14) -> float:
        """:math:`\\log Z` exactly: the larger layer summed out in closed form, the smaller one
        enumerated (:math:`2^{\\min(D, H)}` terms, in blocks of ``chunk``, one jitted scan).

        Raises:
            MemoryBudgetError: the smaller layer has more than ``MAX_ENUMERATED_UNITS`` units
                (use AIS: ``inference.ais.rbm_log_partition``).
        """
        n = min(self.n_visible, self.n_hidden)
        if n > MAX_ENUMERATED_UNITS:
            raise MemoryBudgetError(
                f"exact log Z enumerates 2^{n} states of the smaller layer (max {MAX_ENUMERATED_UNITS} units); "
                f"use inference.ais.rbm_log_partition"
            )
        if self.n_hidden <= self.n_visible:  # enumerate h: a = c, sum out v with biases b
            w, a, d = self.weights, self.hidden_bias, self.visible_bias
        else:  # enumerate v
            w, a, d = self.weights.T, self.visible_bias, self.hidden_bias
        chunk = int(min(2**n, 1 << max(0, int(chunk) - 1).bit_length()))
        return float(_enumerated_log_z(jnp.asarray(w), jnp.asarray(a), jnp.asarray(d), n, chunk))

    def log_prob(self, v, log_z: float | None = None) -> np.ndarray:
        """:math:`\\log p(v) = -F(v) - \\log Z` (exact when ``log_z`` is; computed if not given)."""
        if log_z is None:
            log_z = self.log_partition()
        return -self.free_energy(v) - log_z

    def marginals(self) -> dict[str, np.ndarray]:
        """Exact :math:`p(v_i = 1)` and :math:`p(h_j = 1)`: the smaller layer enumerated, the other
        given it in closed form. ``{"visible": (D,), "hidden": (H,)}``."""
        n = min(self.n_visible, self.n_hidden)
        if n > 20:
            raise MemoryBudgetError(f"exact marginals enumerate 2^{n} states; the smaller layer has {n} > 20 units")
        if self.n_hidden <= self.n_visible:
            h = binary_states(self.n_hidden)  # (S, H)
            logits = h @ self.weights.T + self.visible_bias  # (S, D)
            log_w = h @ self.hidden_bias + np.logaddexp(0.0, logits).sum(-1)
            p = np.exp(log_w - log_w.max())
            p /= p.sum()
            return {"visible": p @ _sigmoid(logits), "hidden": p @ h}
        v = binary_states(self.n_visible)
        logits = v @ self.weights + self.hidden_bias
        log_w = v @ self.visible_bias + np.logaddexp(0.0, logits).sum(-1)
        p = np.exp(log_w - log_w.max())
        p /= p.sum()
        return {"visible": p @ v, "hidden": p @ _sigmoid(logits)}

    # ------------------------------------------------------------------ structure
    @property
    def visible_names(self) -> tuple[str, ...]:
        return tuple(f"v[{i}]" for i in range(self.n_visible))

    @property
    def hidden_names(self) -> tuple[str, ...]:
        return tuple(f"h[{j}]" for j in range(self.n_hidden))

    def factor_graph(self) -> FactorGraph:
        """The bipartite factor graph: unary factors :math:`(0, b_i)`, :math:`(0, c_j)` and a pair
        factor :math:`[[0, 0], [0, W_{ij}]]` per visible-hidden edge; states ``("0", "1")``. Its
        treewidth is :math:`\\min(D, H)`, so the exact engine handles small layers."""
        states = {n: ("0", "1") for n in self.visible_names + self.hidden_names}
        factors = [Factor((n,), np.array([0.0, b])) for n, b in zip(self.visible_names, self.visible_bias)]
        factors += [Factor((n,), np.array([0.0, c])) for n, c in zip(self.hidden_names, self.hidden_bias)]
        for i, vn in enumerate(self.visible_names):
            for j, hn in enumerate(self.hidden_names):
                factors.append(Factor((vn, hn), np.array([[0.0, 0.0], [0.0, self.weights[i, j]]])))
        return FactorGraph(states, factors)

    def model(self, v=None):
        """The NumPyro program: uniform Bernoulli sites ``v`` (observed when given) and ``h``
        (enumerable), and the energy as ``numpyro.factor("energy", -E(v, h))``.

        ::

            v ~ Bernoulli(1/2)^D,  h ~ Bernoulli(1/2)^H,  factor(v'Wh + b'v + c'h)
        """
        obs = None if v is None else jnp.asarray(self._visible(v))
        batch = () if obs is None else obs.shape[:-1]
        vis = numpyro.sample("v", dist.Bernoulli(0.5 * jnp.ones(batch + (self.n_visible,))).to_event(1), obs=obs)
        hid = numpyro.sample("h", dist.Bernoulli(0.5 * jnp.ones(batch + (self.n_hidden,))).to_event(1))
        w, b, c = jnp.asarray(self.weights), jnp.asarray(self.visible_bias), jnp.asarray(self.hidden_bias)
        numpyro.factor("energy", jnp.einsum("...i,ij,...j->...", vis, w, hid) + vis @ b + hid @ c)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))
