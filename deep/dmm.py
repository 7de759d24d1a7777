"""A deep Markov model for polyphonic music (Krishnan, Shalit and Sontag 2017).

A latent Markov chain with neural transitions and emissions over 88-key piano rolls::

    #   +------------------------------------------- data (B sequences) --+
    #   |  z_0 (learned) --> z_1 --> z_2 --> ... --> z_T                   |
    #   |                     |       |               |                    |
    #   |                     v       v               v                    |
    #   |                    x_1     x_2     ...     x_T    (88 binary keys)|
    #   +------------------------------------------------------------------+

.. math::

    z_t \\mid z_{t-1} \\sim \\mathcal N(\\mu_\\theta(z_{t-1}), \\mathrm{diag}\\,\\sigma_\\theta(z_{t-1})^2),
    \\qquad x_{t,k} \\mid z_t \\sim \\mathrm{Bernoulli}(\\pi_\\theta(z_t)_k)

(or, with ``likelihood="gaussian"``, :math:`x_t \\mid z_t \\sim \\mathcal N(m_\\theta(z_t), \\mathrm{diag}\\,
s^2)`; with linear networks that model is a linear dynamical system, whose likelihood a Kalman
filter gives exactly: the tests use it as the oracle),

with the gated transition of the paper (``GatedTransition``: a gate mixes a linear and a
non-linear proposal of the mean) and an MLP ``Emitter``. The structured inference network
follows the posterior's dependencies, :math:`q(z_t \\mid z_{t-1}, x_{t:T})`: a GRU runs backwards
over the sequence and a ``Combiner`` mixes its state with :math:`z_{t-1}`. Sequences of different
lengths share a minibatch padded to the longest; steps past a sequence's end are masked out of
every log-density (``poutine.mask``).

Pyro's programs are sequential in time (``pyro.markov`` over the steps), so each step is one
batched network call over the B sequences.

References:
    Krishnan, Shalit and Sontag (2017). Structured inference networks for nonlinear state space
        models. AAAI.
    Boulanger-Lewandowski, Bengio and Vincent (2012). Modeling temporal dependencies in
        high-dimensional sequences. ICML (the JSB chorales benchmark).

Example:
    >>> import numpy as np
    >>> from deep.dmm import DMM, pad_rolls
    >>> rolls = [np.eye(88, dtype=np.uint8)[[40, 44, 47, 40]], np.eye(88, dtype=np.uint8)[[43, 47]]]
    >>> data = pad_rolls(rolls)
    >>> data["x"].shape, data["lengths"].tolist()
    (torch.Size([2, 4, 88]), [4, 2])
    >>> dmm = DMM(z_dim=4, transition_dim=8, emission_dim=8, rnn_dim=8)
    >>> from deep.train import train
    >>> result = train(dmm, data, seed=0, steps=2, batch_size=2)
    >>> len(result.history)
    2
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from deep.music import NUM_KEYS
from inference.errors import DataError

__all__ = ["DMM", "Emitter", "GatedTransition", "Combiner", "pad_rolls"]


class Emitter(nn.Module):
    """:math:`p(x_t \\mid z_t)`: an MLP from (..., Z) to the logits of 88 keys (``"bernoulli"``) or to
    the means of a Gaussian with a learned scale per dimension (``"gaussian"``)."""

    def __init__(self, x_dim: int, z_dim: int, emission_dim: int, likelihood: str = "bernoulli"):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise DataError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.likelihood = likelihood
        self.net = nn.Sequential(nn.Linear(z_dim, emission_dim), nn.ReLU(), nn.Linear(emission_dim, emission_dim),
                                 nn.ReLU(), nn.Linear(emission_dim, x_dim))
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(x_dim))

    def forward(self, z):
        return self.net(z)  # logits or means (..., X)

    def distribution(self, z):
        out = self(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        return dist.Normal(out, self.log_scale.exp().expand(out.shape)).to_event(1)


class GatedTransition(nn.Module):
    """:math:`(\\mu, \\sigma)` of :math:`p(z_t \\mid z_{t-1})`: a gate :math:`g` mixes a linear proposal
    :math:`Az + b` and a non-linear one :math:`h(z)`, :math:`\\mu = (1 - g)(Az + b) + g\\, h(z)`,
    :math:`\\sigma = \\mathrm{softplus}(W \\mathrm{relu}(h(z)))`."""

    def __init__(self, z_dim: int, transition_dim: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z_dim, transition_dim), nn.ReLU(), nn.Linear(transition_dim, z_dim),
                                  nn.Sigmoid())
        self.proposed = nn.Sequential(nn.Linear(z_dim, transition_dim), nn.ReLU(), nn.Linear(transition_dim, z_dim))
        self.linear = nn.Linear(z_dim, z_dim)
        self.to_scale = nn.Linear(z_dim, z_dim)
        nn.init.eye_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, z):
        gate = self.gate(z)  # (..., Z)
        proposed = self.proposed(z)
        loc = (1 - gate) * self.linear(z) + gate * proposed
        scale = nn.functional.softplus(self.to_scale(torch.relu(proposed))) + 1e-4
        return loc, scale


class Combiner(nn.Module):
    """:math:`q(z_t \\mid z_{t-1}, h_t)`: :math:`\\tfrac12(\\tanh(W z_{t-1}) + h_t)` mapped to a loc and a scale."""

    def __init__(self, z_dim: int, rnn_dim: int):
        super().__init__()
        self.z_to_hidden = nn.Linear(z_dim, rnn_dim)
        self.to_loc = nn.Linear(rnn_dim, z_dim)
        self.to_scale = nn.Linear(rnn_dim, z_dim)

    def forward(self, z_prev, h_rnn):
        h = 0.5 * (torch.tanh(self.z_to_hidden(z_prev)) + h_rnn)
        return self.to_loc(h), nn.functional.softplus(self.to_scale(h)) + 1e-4


def pad_rolls(rolls, max_length: int | None = None) -> dict:
    """Piano rolls (list of (T_i, 88)) as the DMM's data: ``{"x": float32 (B, T, 88), "lengths":
    int64 (B,)}``, padded with zeros to the longest (optionally cut to ``max_length`` steps)."""
    if not len(rolls):
        raise DataError("no sequence to pad")
    cut = [np.asarray(r)[:max_length] if max_length else np.asarray(r) for r in rolls]
    for i, r in enumerate(cut):
        if r.ndim != 2 or r.shape[1] != NUM_KEYS or len(r) == 0:
            raise DataError(f"roll {i}: expected a non-empty (T, {NUM_KEYS}) array, got shape {r.shape}")
        if not np.all((r == 0) | (r == 1)):
            raise DataError(f"roll {i}: piano-roll entries must be 0 or 1")
    t_max = max(len(r) for r in cut)
    x = np.zeros((len(cut), t_max, NUM_KEYS), np.float32)
    for i, r in enumerate(cut):
        x[i, : len(r)] = r
    return {"x": torch.from_numpy(x), "lengths": torch.tensor([len(r) for r in cut], dtype=torch.int64)}


def _reverse(x, lengths):
    """Each sequence reversed within its own length (padding stays at the end)."""
    t = torch.arange(x.shape[1])
    index = torch.where(t[None, :] < lengths[:, None], lengths[:, None] - 1 - t[None, :], t[None, :])  # (B, T)
    return x.gather(1, index[..., None].expand(x.shape))


class DMM(nn.Module):
    """Deep Markov model over 88-key piano rolls; data ``x`` (B, T, 88) and ``lengths`` (B,)."""

    objective = "elbo"

    def __init__(self, x_dim: int = NUM_KEYS, z_dim: int = 32, transition_dim: int = 64, emission_dim: int = 64,
                 rnn_dim: int = 128, *, likelihood: str = "bernoulli", name: str = "dmm"):
        super().__init__()
        self.x_dim, self.z_dim, self.name, self.likelihood = int(x_dim), int(z_dim), name, likelihood
        self.emitter = Emitter(self.x_dim, self.z_dim, emission_dim, likelihood)
        self.transition = GatedTransition(self.z_dim, transition_dim)
        self.combiner = Combiner(self.z_dim, rnn_dim)
        self.rnn = nn.GRU(self.x_dim, rnn_dim, batch_first=True)
        self.z_0 = nn.Parameter(torch.zeros(self.z_dim))
        self.z_q_0 = nn.Parameter(torch.zeros(self.z_dim))
        self.config = {"x_dim": self.x_dim, "z_dim": self.z_dim, "transition_dim": transition_dim,
                       "emission_dim": emission_dim, "rnn_dim": rnn_dim, "name": name}
        if likelihood != "bernoulli":
            self.config["likelihood"] = likelihood

    def _check(self, x, lengths):
        if x is None or lengths is None:
            raise DataError("the DMM needs the piano rolls x (B, T, 88) and their lengths (B,)")
        if x.dim() != 3 or x.shape[2] != self.x_dim:
            raise DataError(f"x: expected (B, T, {self.x_dim}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise DataError("x has NaN or infinite entries")
        if lengths.shape != x.shape[:1] or int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]:
            raise DataError(f"lengths must be (B,) in 1..{x.shape[1]}, got {lengths.tolist()}")
        return (x if x.is_floating_point() else x.to(torch.float32)), lengths

    def model(self, x=None, lengths=None):
        """:math:`p(x_{1:T}, z_{1:T}) = \\prod_t p(z_t \\mid z_{t-1}) p(x_t \\mid z_t)`, masked past each length."""
        pyro.module(f"{self.name}_model", nn.ModuleList([self.emitter, self.transition]))
        x, lengths = self._check(x, lengths)
        batch, steps = x.shape[:2]
        z_prev = self.z_0.expand(batch, self.z_dim)
        with pyro.plate("data", batch):
            for t in pyro.markov(range(steps)):
                with poutine.mask(mask=t < lengths):  # (B,)
                    loc, scale = self.transition(z_prev)
                    z_t = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1))  # (..., B, Z)
                    pyro.sample(f"x_{t + 1}", self.emitter.distribution(z_t), obs=x[:, t])  # (..., B, X)
                z_prev = z_t

    def guide(self, x=None, lengths=None):
        """:math:`q(z_{1:T} \\mid x) = \\prod_t q(z_t \\mid z_{t-1}, x_{t:T})`, a backward GRU and the Combiner."""
        pyro.module(f"{self.name}_guide", nn.ModuleList([self.rnn, self.combiner]))
        x, lengths = self._check(x, lengths)
        batch, steps = x.shape[:2]
        h, _ = self.rnn(_reverse(x, lengths))  # (B, T, H) over the reversed sequence
        h = _reverse(h, lengths)  # h[:, t] summarises x[:, t:]
        z_prev = self.z_q_0.expand(batch, self.z_dim)
        with pyro.plate("data", batch):
            for t in pyro.markov(range(steps)):
                with poutine.mask(mask=t < lengths):
                    loc, scale = self.combiner(z_prev, h[:, t])
                    z_prev = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1))

    def sample(self, seed, steps: int, n: int = 1) -> np.ndarray:
        """``n`` piano rolls of ``steps`` steps drawn through the program, (n, steps, 88) of 0/1."""
        from deep.nets import isolated

        zeros = torch.zeros(n, steps, self.x_dim)
        lengths = torch.full((n,), steps, dtype=torch.int64)
        with isolated(seed), torch.no_grad():
            trace = poutine.trace(poutine.uncondition(self.model)).get_trace(x=zeros, lengths=lengths)
        return np.stack([trace.nodes[f"x_{t + 1}"]["value"].numpy() for t in range(steps)], 1)
