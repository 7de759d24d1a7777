"""The digits rows of the deep zoo's table (:mod:`deep.zoo_table`): every family on the 8 x 8 digits.

Binary models (VAE, IWAE, NADE, MADE) fit the binarised digits; every other family fits the
grey digits (17 levels :math:`k`), each in the space its own code reads:

- the flows (RealNVP, MAF, NSF, Glow; :func:`deep.flows.digits.fit_digits`) the dequantised pixels
  :math:`v = (k + u) / 17` through the logit transform of :mod:`deep.flows.digits`;
- DDPM, the score SDE, flow matching and the EBM the same logit space as 64-D vectors,
  :math:`y = \\mathrm{logit}(\\alpha + (1 - 2\\alpha) v)` (:class:`deep.flows.digits.LogitTransform`),
  trained on ``copies`` dequantisations of each training image; their log-density of :math:`y`
  becomes one of :math:`v` by the same change of variables as the flows',
  :math:`\\log p_v(v) = \\log p_y(y) + \\log |\\partial y / \\partial v|`, so all grey rows score
  the bound :math:`-\\log P(k) \\le -\\log p_v(v) + D \\log 17` on the same dequantised test images;
- the GANs the pixels in :math:`[-1, 1]` (:func:`deep.gan_steps.digits_data`'s scaling), unconditional.

Every row that samples is scored in pixel space :math:`[0, 1]` (the flows' and the logit-space
models' draws quantised back to a grey level, :math:`k = \\lfloor 17 v \\rfloor`, then :math:`k / 16`):
**MMD** (squared, Gaussian kernel, median bandwidth) of ``n_eval`` draws against the held-out images
(binarised ones for the binary rows), and **modes**: the digit classes that a logistic-regression
classifier trained on the training images (:func:`deep.gan_steps.digit_classifier`) assigns to at
least 1% of the draws (a tenth of a class's share), 0 to 10.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import numpy as np
import torch

__all__ = ["LEVELS", "ALPHA", "grey_levels", "test_points", "logit_data", "fit_digits_family", "to_pixels",
           "classes_covered", "digits_nll"]

LEVELS = 17
ALPHA = 0.05  # the logit transform's alpha, as deep.flows.digits' default
_DIM = 64
_MIN_ESS = 5.0  # fewer effective AIS weights than this: the delta-method standard error means nothing, no NLL


def grey_levels(images) -> torch.Tensor:
    """Integer grey levels :math:`k = \\mathrm{round}(16 x)` of images (N, 8, 8) in [0, 1], as (N, 64) float32."""
    return torch.as_tensor(np.round(np.asarray(images) * (LEVELS - 1)), dtype=torch.float32).reshape(-1, _DIM)


def test_points(parts: Mapping, seed: int) -> torch.Tensor:
    """The dequantised held-out images :math:`v` (N_test, 64): one draw of :math:`u` from ``seed + 1``,
    the same for every grey row."""
    from deep.flows.digits import dequantize_levels

    return dequantize_levels(grey_levels(parts["test"]).long(), LEVELS, seed + 1)


def logit_data(parts: Mapping, seed: int, copies: int = 4) -> torch.Tensor:
    """``copies`` dequantisations of each training image, in logit space: (copies N, 64)."""
    from deep.flows.digits import LogitTransform, dequantize_levels

    k = grey_levels(parts["train"]).long().repeat(copies, 1)
    v = dequantize_levels(k, LEVELS, seed + 3)
    y, _ = LogitTransform(ALPHA).inverse_and_log_det(v)
    return y


def _from_logit(log_prob_y):
    """:math:`\\log p_v(v) = \\log p_y(y) + \\log|\\partial y / \\partial v|` for a log-density of
    logit-space vectors."""
    from deep.flows.digits import LogitTransform

    def log_prob_v(v):
        y, ladj = LogitTransform(ALPHA).inverse_and_log_det(v)
        return _numpy(log_prob_y(y)) + _numpy(ladj)

    return log_prob_v


def _to_unit(y):
    from deep.flows.digits import LogitTransform

    with torch.no_grad():
        v, _ = LogitTransform(ALPHA).forward_and_log_det(torch.as_tensor(_numpy(y), dtype=torch.float32))
    return v


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def to_pixels(x, space: str) -> np.ndarray:
    """Draws (n, 64) of a model in ``space`` (``"binary"``, ``"unit"``: dequantised :math:`v`,
    ``"logit"``, ``"pm1"``: :math:`[-1, 1]`) as pixels (n, 64) in [0, 1]."""
    if space == "logit":
        x, space = _to_unit(x), "unit"
    x = _numpy(x).reshape(-1, _DIM)
    if space == "unit":  # quantise back: k = floor(L v), then k / (L - 1)
        return np.clip(np.floor(np.nan_to_num(x, nan=0.0) * LEVELS), 0, LEVELS - 1) / (LEVELS - 1)
    if space == "pm1":
        x = (x + 1) / 2
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _classifier(binary: bool, seed: int):
    from deep.data import split
    from deep.gan_steps import digit_classifier
    from genzoo.data import digits

    raw = digits(binarize=binary)
    parts = split(raw["images"].reshape(-1, _DIM), raw["labels"], seed=seed)
    return digit_classifier(parts["train"], parts["train_labels"])


def classes_covered(pixels: np.ndarray, *, binary: bool, seed: int) -> int:
    """Digit classes the classifier (trained on the training split of ``seed``) assigns to at least 1% of ``pixels``."""
    predicted = _classifier(binary, seed).predict(np.asarray(pixels).reshape(-1, _DIM))
    counts = np.bincount(predicted, minlength=10)
    return int((counts >= max(1, math.ceil(0.01 * len(predicted)))).sum())


def digits_nll(log_prob_v, v: torch.Tensor) -> np.ndarray:
    """Per-image bound :math:`-\\log p_v(v) + D \\log 17` (nats) of the dequantised test images ``v``."""
    with torch.no_grad():
        lp = _numpy(log_prob_v(v))
    return -lp + _DIM * math.log(LEVELS)


# --------------------------------------------------------------------------- the fitters
def fit_digits_family(family: str, parts: Mapping, sizes, seed: int) -> dict:
    """Train ``family`` on its digits and return ``{"sample": (n, seed) -> draws, "space": the draws' space,
    "nll": per-image NLL (nats, bound or exact) or None, "nll_kind", "nfe", "train s", "model"}`` and, where
    the NLL is estimated, ``"nll_se"`` (its standard error) and ``"ais"`` (the EBM's AIS figures)."""
    from deep.zoo_table import _timed

    if family in ("nade", "made"):
        from deep.autoregressive import fit_density
        from deep.made import MADE
        from deep.nade import NADE

        model = (NADE(_DIM, sizes.digits_hidden, seed=seed) if family == "nade"
                 else MADE(_DIM, (sizes.digits_hidden,), seed=seed))
        _, secs = _timed(fit_density, model, parts["train"].reshape(-1, _DIM), seed=seed, steps=sizes.digits_steps,
                         batch_size=100, lr=3e-3)
        with torch.no_grad():
            lp = _numpy(model.log_prob(torch.as_tensor(parts["test"].reshape(-1, _DIM), dtype=torch.float32)))
        return {"sample": lambda n, s: model.sample(n, s), "space": "binary", "nll": -lp, "nll_kind": "exact",
                "nfe": _DIM, "train s": secs, "model": model}
    if family in ("vae", "iwae"):
        from deep.recipes import compare_bounds, fit

        result, secs = _timed(fit, parts["train"], model=family, seed=seed, epochs=sizes.vae_epochs,
                              hidden=(sizes.digits_hidden,))
        vae = result.params
        (bound,) = compare_bounds(vae, parts["test"], seed=seed + 1, k_iwae=sizes.k_iwae, which=("iwae",))
        # draws, not pixel means: the MMD compares the model's binary images with the binarised test images
        return {"sample": lambda n, s: vae.sample(s, n, mean=False), "space": "binary",
                "nll": -_numpy(bound.diagnostics["per_datum"]), "nll_kind": "bound", "nfe": 1, "train s": secs,
                "model": vae}
    if family in ("realnvp", "maf", "nsf", "glow"):
        from deep.flows.digits import fit_digits

        extra = ({"levels": 2, "glow_steps": sizes.glow_steps} if family == "glow"
                 else {"num_layers": sizes.digits_layers})
        result = fit_digits(family, parts["all"], seed=seed, steps=sizes.digits_steps, hidden=sizes.digits_hidden,
                            **extra)
        flow = result.params
        nfe = _DIM if family == "maf" else 1  # MAF's inverse: D sequential passes per layer
        return {"sample": lambda n, s: flow.sample((n,), s), "space": "unit",
                "nll": digits_nll(flow.log_prob, test_points(parts, seed)), "nll_kind": "bound", "nfe": nfe,
                "train s": result.seconds, "model": flow}
    if family in ("gan", "wgan_gp"):
        from deep.gan_steps import train_gan

        x = torch.as_tensor(parts["train"].reshape(-1, _DIM) * 2 - 1, dtype=torch.float32)  # (N, 64) in [-1, 1]
        result, secs = _timed(train_gan, x, seed=seed, steps=sizes.digits_steps, loss=family, batch_size=128,
                              lr=1e-3, z_dim=16,
                              hidden=(2 * sizes.digits_hidden, 2 * sizes.digits_hidden))
        gan = result.params
        return {"sample": lambda n, s: gan.sample(s, n), "space": "pm1", "nll": None, "nll_kind": None, "nfe": 1,
                "train s": secs, "model": gan}
    if family == "ebm":
        return _ebm_digits(parts, sizes, seed)
    return _diffusion_digits(family, parts, sizes, seed)


def _diffusion_digits(family: str, parts, sizes, seed) -> dict:
    from deep.diffusion.recipes import train
    from deep.zoo_table import _timed

    y = logit_data(parts, seed)
    model, secs = _timed(train, {"ddpm": "ddpm", "score_sde": "subvp", "flow_matching": "fm_ot"}[family], y,
                         seed=seed, steps=sizes.digits_steps, batch_size=128, hidden=(2 * sizes.digits_hidden,) * 3,
                         T=sizes.T)
    v = test_points(parts, seed)
    out = {"space": "logit", "train s": secs, "model": model}
    if family == "ddpm":
        terms = None if model.T <= 200 else 50  # an unbiased estimate of the sum of the middle KL terms
        log_prob_y = functools.partial(model.bound, generator=seed + 1, num_terms=terms)
        return out | {"sample": lambda n, s: model.sample(n, generator=s), "nfe": model.T, "nll_kind": "bound",
                      "nll": digits_nll(_from_logit(log_prob_y), v)}
    # 64-D: the divergence by Hutchinson's estimator, sizes.probes Rademacher probes per image
    ode = {"method": "dopri5", "atol": 1e-4, "rtol": 1e-4}
    y_test, ladj = _logit_of(v)
    lik = model.log_prob(y_test, divergence_method="hutchinson", num_probes=sizes.probes, generator=seed + 4, **ode)
    nll = -_numpy(lik.log_prob) - _numpy(ladj) + _DIM * math.log(LEVELS)
    # the probes' Monte Carlo error of the mean NLL over this test set (images independent)
    se = float(np.sqrt((_numpy(lik.std_error) ** 2).sum()) / len(nll))
    out |= {"nll": nll, "nll_kind": "ode (Hutchinson)", "nll_se": se}
    if family == "score_sde":
        return out | {"sample": lambda n, s: model.reverse_sde_sample(n, generator=s, num_steps=sizes.sde_steps),
                      "nfe": sizes.sde_steps}
    last = {}

    def sample(n, s):
        draw = model.sample(n, generator=s, **ode)
        last["nfe"] = draw.nfe
        return draw.x

    return out | {"sample": sample, "nfe": lambda: last["nfe"]}


def _logit_of(v):
    from deep.flows.digits import LogitTransform

    with torch.no_grad():
        return LogitTransform(ALPHA).inverse_and_log_det(v)


def _ebm_digits(parts, sizes, seed) -> dict:
    from deep.ebm import ais_log_partition, langevin_samples, train_ebm
    from deep.zoo_table import _timed

    y = logit_data(parts, seed)
    box = 3.0  # logit(1 - alpha) = 2.94: every dequantised pixel's logit lies in [-box, box]
    result, secs = _timed(train_ebm, y, "dsm", seed=seed, steps=sizes.digits_steps, batch_size=128, lr=1e-3,
                          hidden=(2 * sizes.digits_hidden,) * 2, sigma=0.3)
    energy = result.params
    # step 0.2: MALA accepts ~80% along the path here; at 0.02 (99%) the chains barely moved and log Z came
    # out ~8 nats low at 200 temperatures (measured on the quick model: 67.0 against 74.4-75.1 with more care).
    ais = ais_log_partition(energy, _DIM, seed + 5, num_chains=sizes.ais_chains, num_betas=sizes.ais_betas,
                            base_scale=2.0, step_size=0.2)
    reliable = ais["ess"] >= _MIN_ESS

    def log_prob_y(t):
        with torch.no_grad():
            return -(energy(t).double() + ais["log_z"])

    def sample(n, s):
        return langevin_samples(energy, n, s, num_steps=sizes.langevin_steps, step_size=1e-2, box=box, dim=_DIM)

    nll = digits_nll(_from_logit(log_prob_y), test_points(parts, seed)) if reliable else None
    return {"sample": sample, "space": "logit", "nll": nll, "nll_kind": "estimate (AIS)" if reliable else None,
            "nll_se": ais["standard_error"], "ais": ais, "nfe": sizes.langevin_steps,
            "train s": secs, "model": energy}
