"""A sigmoid belief network small enough for its exact log-likelihood.

Binary units in layers, top to bottom, each unit its own Pyro site so that every latent can be
enumerated (``infer={"enumerate": "parallel"}``, as Pyro's ``TraceEnum_ELBO`` requires)::

    #   +------------------------------ data (B) --+
    #   |  h1_j ~ Bernoulli(sigmoid(b1_j))          |   j < L1   (top layer)
    #   |    |                                      |
    #   |    v                                      |
    #   |  h2_j ~ Bernoulli(sigmoid(W2_j h1 + b2_j)) |   j < L2
    #   |    |                                      |
    #   |    v                                      |
    #   |  x_d ~ Bernoulli(sigmoid(W_d h2 + c_d))    |   the D pixels, one site "x"
    #   +-------------------------------------------+

With :math:`L = \\sum_l L_l \\le 12` latents the marginal likelihood is a sum over
:math:`2^L \\le 4096` configurations,

.. math::

    \\log p(x) = \\log \\sum_{h \\in \\{0,1\\}^L} p(h)\\, p(x \\mid h),

computed through the program itself (:func:`inference.likelihood.trace_log_joint`, all
configurations in one vectorised run), so that the ELBO and the IWAE bounds of any guide can be
checked against the exact value: :math:`\\mathrm{ELBO} \\le \\mathbb E[\\mathcal L_K] \\le \\log p(x)`.
The guide runs upwards, :math:`q(h_{\\text{last}} \\mid x) \\cdots q(h_1 \\mid h_2)`, each layer a
factorised Bernoulli with sigmoid-affine means. Its exact ELBO and the :math:`\\chi^2` divergence
:math:`\\chi^2(p(h \\mid x) \\,\\|\\, q) = \\sum_h p(h \\mid x)^2 / q(h \\mid x) - 1` that sets the IWAE's
bias :math:`\\approx \\chi^2 / 2K` are enumerated the same way.

References:
    Neal (1992). Connectionist learning of belief networks. Artificial Intelligence.
    Mnih and Gregor (2014). Neural variational inference and learning in belief networks. ICML.

Example:
    >>> import numpy as np, torch
    >>> from deep.sbn import SigmoidBeliefNet
    >>> sbn = SigmoidBeliefNet(x_dim=6, layers=(2, 3))
    >>> x = torch.tensor(sbn.sample(seed=0, n=5))
    >>> bool(np.all(sbn.exact_elbo(x) <= sbn.log_prob(x) + 1e-9))
    True
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from deep.data import check_images
from deep.nets import isolated
from inference.errors import DataError, ModelError
from inference.likelihood import trace_log_joint

__all__ = ["SigmoidBeliefNet", "MAX_LATENTS"]

MAX_LATENTS = 12


class SigmoidBeliefNet(nn.Module):
    """Sigmoid belief net with latent layers ``layers`` (top first) over ``x_dim`` binary pixels.

    Parameters (``state_dict``): ``top_logits`` (L1,), ``weights.i`` / ``biases.i`` of each
    lower layer and of the pixels (the model's :math:`\\theta`), and ``guide_layers.*`` (the guide's
    :math:`\\phi`). The guide reads data as float32 0/1 pixels (B, D).
    """

    def __init__(self, x_dim: int = 64, layers: Sequence[int] = (4, 8), *, name: str = "sbn"):
        super().__init__()
        self.layers = tuple(int(v) for v in layers)
        if not self.layers or min(self.layers) < 1:
            raise ModelError(f"layers must be positive sizes, got {layers}")
        if sum(self.layers) > MAX_LATENTS:
            raise ModelError(f"at most {MAX_LATENTS} latent units for exact enumeration, got {sum(self.layers)}")
        self.x_dim, self.name = int(x_dim), name
        sizes = self.layers + (self.x_dim,)
        self.top_logits = nn.Parameter(torch.zeros(self.layers[0]))
        self.down = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        ups = tuple(reversed(sizes))  # (D, L_last, ..., L1)
        self.up = nn.ModuleList(nn.Linear(a, b) for a, b in zip(ups[:-1], ups[1:]))
        self.config = {"x_dim": self.x_dim, "layers": list(self.layers), "name": name}

    @property
    def num_latents(self) -> int:
        return sum(self.layers)

    def _site(self, layer: int, j: int) -> str:
        return f"h{layer + 1}_{j}"

    def latent_sites(self) -> list[str]:
        return [self._site(i, j) for i, size in enumerate(self.layers) for j in range(size)]

    # ------------------------------------------------------------------ programs
    def model(self, x=None, n: int | None = None):
        """:math:`p(h, x)`, top layer first; ``x=None`` draws ``n`` images."""
        pyro.module(f"{self.name}_model", nn.ModuleList([self.down]))
        if x is not None:
            x = check_images(x, (self.x_dim,), binary=True, name="x").to(self.top_logits.dtype)  # (B, D)
        batch = x.shape[0] if x is not None else _positive(n)
        with pyro.plate("data", batch):
            logits = self.top_logits.expand(batch, -1)  # (B, L1)
            for i, size in enumerate(self.layers):
                units = [pyro.sample(self._site(i, j), dist.Bernoulli(logits=logits[..., j]),
                                     infer={"enumerate": "parallel"}) for j in range(size)]
                h = torch.stack(torch.broadcast_tensors(*units), -1)  # (..., B, L_i)
                logits = self.down[i](h)  # (..., B, L_{i+1} or D)
            return pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x=None, n: int | None = None):
        """:math:`q(h \\mid x)`: bottom latent layer from the pixels, each layer from the one below."""
        pyro.module(f"{self.name}_guide", self.up)
        if x is None:
            raise DataError("the guide needs the images x")
        h = x.reshape(x.shape[0], self.x_dim).to(self.top_logits.dtype)  # (B, D)
        with pyro.plate("data", x.shape[0]):
            for k, i in enumerate(reversed(range(len(self.layers)))):
                logits = self.up[k](h)  # (..., B, L_i)
                units = [pyro.sample(self._site(i, j), dist.Bernoulli(logits=logits[..., j]))
                         for j in range(self.layers[i])]
                h = torch.stack(torch.broadcast_tensors(*units), -1)

    # ------------------------------------------------------------------ enumeration
    def configurations(self) -> dict[str, torch.Tensor]:
        """Every assignment of the latents: site -> (2^L, 1) values (one column per configuration)."""
        table = torch.tensor(list(itertools.product((0.0, 1.0), repeat=self.num_latents)),
                             dtype=self.top_logits.dtype)  # (C, L)
        return {site: table[:, i:i + 1] for i, site in enumerate(self.latent_sites())}

    def _log_joint_and_q(self, x):
        x = check_images(x, (self.x_dim,), binary=True, name="x").to(self.top_logits.dtype)
        configs = self.configurations()
        c = 2 ** self.num_latents
        with isolated():
            log_joint = trace_log_joint(self.model, configs, c, x=x)  # (C, B)
            log_q = trace_log_joint(self.guide, configs, c, x=x)  # (C, B)
        return log_joint.double(), log_q.double()

    def log_prob(self, x) -> np.ndarray:
        """Exact :math:`\\log p(x_b)` per image, by enumerating all :math:`2^L` latent configurations."""
        with torch.no_grad():
            log_joint, _ = self._log_joint_and_q(x)
            return torch.logsumexp(log_joint, 0).numpy()

    def exact_elbo(self, x) -> np.ndarray:
        """The guide's ELBO per image, :math:`\\sum_h q(h \\mid x) [\\log p(x, h) - \\log q(h \\mid x)]`, exactly."""
        with torch.no_grad():
            return self._elbo(*self._log_joint_and_q(x)).numpy()

    def chi_square(self, x) -> np.ndarray:
        """:math:`\\chi^2(p(h \\mid x) \\| q(h \\mid x)) = \\sum_h p(h \\mid x)^2 / q(h \\mid x) - 1` per image;
        the IWAE bias is :math:`\\approx \\chi^2 / 2K` for large :math:`K`."""
        with torch.no_grad():
            log_joint, log_q = self._log_joint_and_q(x)
            log_post = log_joint - torch.logsumexp(log_joint, 0)
            return torch.expm1(torch.logsumexp(2 * log_post - log_q, 0)).numpy()

    @staticmethod
    def _elbo(log_joint, log_q):
        q = log_q.exp()
        return (q * (log_joint - torch.where(q > 0, log_q, torch.zeros_like(log_q)))).sum(0)

    def enumerated_loss(self, batch) -> torch.Tensor:
        """Training loss: minus the exact ELBO per image, differentiable in both the model's and the
        guide's parameters (no score-function noise); ``train(sbn, data, objective=SigmoidBeliefNet.enumerated_loss)``."""
        log_joint, log_q = self._log_joint_and_q(batch["x"])
        return -self._elbo(log_joint, log_q).mean()

    def sample(self, seed, n: int) -> np.ndarray:
        """``n`` pixel vectors (n, D) of 0/1 drawn through the program."""
        with isolated(seed), torch.no_grad():
            return self.model(n=n).numpy().astype(np.float32)  # 0/1 exactly


def _positive(n) -> int:
    if n is None or int(n) < 1:
        raise DataError(f"give the data x or a number of draws n >= 1 (got n={n})")
    return int(n)
