"""Maximum-likelihood training of a flow through the shared loop, and its exact test scores.

Training minimises the mean negative log-likelihood :math:`-\\frac1B \\sum_b \\log q_\\theta(x_b)`
through :func:`inference.train.fit` (one :class:`~inference.train.LossStep`, Adam): the loop owns
minibatches, the device, checkpoints, the NaN guard and the history. On a density :math:`p` with a
closed-form log-density and entropy (:mod:`deep.densities`) the test NLL over fresh draws of
:math:`p` gives the divergence exactly in expectation,

.. math::

    \\mathrm{KL}(p \\,\\|\\, q_\\theta) = \\mathbb E_p[-\\log q_\\theta(x)] - H(p),

reported with the standard error of the mean NLL (the same for the KL, :math:`H(p)` being exact).

Example:
    >>> from deep.densities import get
    >>> from deep.flows import RealNVP
    >>> from deep.flows.fit import fit_flow, density_scores
    >>> p = get("8gaussians")
    >>> flow = RealNVP(2, hidden=(16, 16), num_layers=2, seed=0)
    >>> result = fit_flow(flow, p.sample(512, generator=1), seed=0, steps=20, batch_size=128)
    >>> scores = density_scores(result.params, p, n=1000, generator=2)
    >>> sorted(scores)
    ['kl', 'kl_se', 'nll', 'nll_se']
"""

from __future__ import annotations

import math
import time

import torch

from deep.flows.base import Flow, check_vectors
from inference.errors import DataError, UnknownNameError
from inference.result import Result
from inference.rng import as_generator

__all__ = ["nll_loss", "fit_flow", "density_scores", "make_flow", "train_on_density", "log_density_grid", "FLOWS_2D"]

FLOWS_2D = ("realnvp", "maf", "nsf")


def nll_loss(flow: Flow, batch, generator=None) -> torch.Tensor:
    """:math:`-\\frac1B \\sum_b \\log q(x_b)`: the loss function of :class:`~inference.train.LossStep`."""
    return flow.loss(batch, generator)


def fit_flow(flow: Flow, x, *, seed: int, steps: int, batch_size: int = 256, lr: float = 1e-3,
             device=None, checkpoint=None, checkpoint_every: int | None = None, progress: bool = False,
             clip: float | None = None) -> Result:
    """Train ``flow`` on ``x`` (N, D) by maximum likelihood through :func:`inference.train.fit`.

    Returns the loop's :class:`Result` (``params`` is the trained flow, ``history`` the NLL per step).
    """
    from inference.train import LossStep, fit

    x = check_vectors(x, flow.dim, "x", finite=False)  # NaN rows are the loop's to report (step and rows)
    step = LossStep(flow, nll_loss, lr=lr, clip=clip, name="nll")
    return fit(step, {"x": x}, seed=seed, steps=steps, batch_size=batch_size, device=device,
               checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress)


def density_scores(flow: Flow, density, *, n: int, generator, chunk: int = 4096) -> dict[str, float]:
    """Test NLL (nats) over ``n`` fresh draws of ``density`` and :math:`\\mathrm{KL}(p\\|q) = \\mathrm{NLL} - H(p)`,
    each with its standard error."""
    if n < 2:
        raise DataError(f"n must be at least 2 for a standard error, got {n}")
    x = density.sample(n, as_generator(generator))  # (n, 2)
    with torch.no_grad():
        nll = torch.cat([-flow.log_prob(c).double() for c in x.split(chunk)])  # (n,)
    mean, se = float(nll.mean()), float(nll.std() / math.sqrt(n))
    return {"nll": mean, "nll_se": se, "kl": mean - density.entropy(), "kl_se": se}


def make_flow(kind: str, dim: int, *, hidden=(64, 64), num_layers: int = 4, bins: int = 8, bound: float = 5.0,
              init: str = "identity", seed, device="cpu") -> Flow:
    """A fresh ``"realnvp"``, ``"maf"`` or ``"nsf"`` flow on :math:`\\mathbb R^{dim}` (``init``: ``"identity"``
    or ``"random"``, :func:`~deep.flows.base.init_last_layer`)."""
    from deep.flows import MAF, NSF, RealNVP

    if kind == "realnvp":
        return RealNVP(dim, hidden, num_layers, init=init, seed=seed, device=device)
    if kind == "maf":
        return MAF(dim, hidden, num_layers, init=init, seed=seed, device=device)
    if kind == "nsf":
        return NSF(dim, hidden, num_layers, bins, bound, init=init, seed=seed, device=device)
    raise UnknownNameError(f"unknown flow {kind!r}; choose one of {FLOWS_2D}")


def train_on_density(kind: str, density_name: str, *, seed: int, steps: int, n_train: int = 10_000,
                     n_test: int = 10_000, batch_size: int = 256, lr: float = 1e-3, hidden=(64, 64),
                     num_layers: int = 4, bins: int = 8, progress: bool = False) -> Result:
    """Fit a ``kind`` flow to ``n_train`` draws of a 2-D density and score it on ``n_test`` fresh draws.

    Returns ``Result(params=flow, history=NLL per step, diagnostics={"scores": ...})`` with scores
    ``"test NLL"``, ``"KL"`` and ``"KL se"`` where the density has a closed form, and ``"MMD"``
    (squared, Gaussian kernel, median bandwidth; 2,000 draws each) for the two moons, plus the
    training ``"seconds"``.
    """
    from deep.densities import get
    from inference import train  # noqa: F401 - imported before the clock starts
    from inference.evaluate import mmd

    density = get(density_name)
    generator = as_generator(seed)
    flow = make_flow(kind, 2, hidden=hidden, num_layers=num_layers, bins=bins, seed=generator)
    train = density.sample(n_train, generator)  # (N, 2)
    start = time.perf_counter()
    result = fit_flow(flow, train, seed=seed, steps=steps, batch_size=batch_size, lr=lr, progress=progress)
    seconds = time.perf_counter() - start
    if density_name == "moons":
        draws = result.params.sample((2000,), generator).cpu().numpy()
        scores = {"MMD": mmd(draws, density.sample(2000, generator).numpy())}
    else:
        s = density_scores(result.params, density, n=n_test, generator=generator)
        scores = {"test NLL": s["nll"], "KL": s["kl"], "KL se": s["kl_se"]}
    scores["seconds"] = seconds
    return Result(method=kind, params=result.params, history=result.history, seconds=seconds,
                  diagnostics={"scores": scores, "density": density_name, "steps": steps})


def log_density_grid(flow: Flow, box: float = 5.0, points: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grid (points, points, 2), log q on it (points, points))`` over :math:`[-box, box]^2`, for heat maps."""
    g = torch.linspace(-box, box, points)
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1)  # (P, P, 2)
    with torch.no_grad():
        values = flow.log_prob(grid.reshape(-1, 2)).reshape(points, points)  # (P, P)
    return grid, values
