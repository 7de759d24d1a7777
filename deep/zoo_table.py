"""One table of the deep zoo: every family on the same data, measured on the same axes.

The courses' lesson is that no family wins on every axis. This module trains each family of the
zoo (its own trainer, through the one loop) on the same draws of three 2-D densities of
:mod:`deep.densities` (``8gaussians``, ``checkerboard``, PacGAN's ``ring``) and on scikit-learn's
8 x 8 digits (binarised for VAE, IWAE, NADE, MADE; 17 grey levels for the others, see
:mod:`deep.zoo_table_digits`), and scores every trained model on the same held-out draws:

- **NLL** (nats per point; per image on digits) with its kind: ``exact`` (flows, NADE, MADE),
  ``bound`` (VAE / IWAE: the IWAE bound with :math:`K` particles; DDPM: its variational bound; the
  flows on dequantised digits: :math:`-\\log P(k) \\le -\\log p(v) + D \\log L`), ``quadrature``
  (the EBM: :math:`E(x) + \\log Z` with :math:`\\log Z` by the midpoint rule on a grid, exact up to
  the grid), ``ode`` (score SDE and flow matching: the probability-flow ODE's change of variables,
  exact up to the solver's tolerance; on digits ``ode (Hutchinson)``, the divergence estimated
  without bias), ``estimate (AIS)`` (the digits EBM: :math:`\log Z` by annealed importance sampling).
- **KL** :math:`= \\mathrm{NLL} - H(p)` on the 2-D densities, whose entropy :math:`H(p)` is known:
  an unbiased estimate of :math:`\\mathrm{KL}(p \\,\\|\\, q)` from the test draws (an upper bound on
  it in expectation where the NLL is a bound).
- **MMD** (squared, Gaussian kernel, median bandwidth; :func:`inference.evaluate.mmd`) and **W2**
  (the exact 2-Wasserstein distance by optimal assignment, :func:`inference.evaluate.wasserstein2`)
  of ``n_eval`` model samples against ``n_eval`` fresh true points, for every family on 2-D, so
  implicit models (GANs) sit in the same table as likelihood models; on digits the MMD of
  ``n_eval`` draws against the held-out images in pixel space.
- **modes**: modes captured (:func:`inference.evaluate.mode_coverage`: a mode with at least one
  sample within 3 sd) on the Gaussian mixtures (8 Gaussians and the ring, 8 modes each); on digits
  the classes (0-10) a digit classifier assigns to at least 1% of the draws.
- **train s**, **s / 1k samples** (wall seconds to draw 1,000 samples) and **NFE**, network
  evaluations per sample: 1 for a flow's inverse pass, a GAN's generator and a VAE's decoder; D for
  MAF's inverse and for NADE / MADE (one per coordinate); the Langevin steps of the EBM (one energy
  gradient each); T for DDPM; the Euler-Maruyama steps of the reverse SDE; the adaptive solver's
  count for flow matching.

:func:`run_family` returns a :class:`~inference.result.Result` whose ``diagnostics["rows"]`` hold
one dict per dataset (keys :data:`COLUMNS`) and ``diagnostics["sample_sets"]`` the samples drawn:
``(n_eval, 2)`` arrays for the densities, ``(digit_samples, 8, 8)`` arrays in [0, 1] for digits;
``diagnostics["estimators"]`` the standard errors (and AIS figures) of the estimated digits NLLs.

Example:
    >>> import dataclasses
    >>> from deep.zoo_table import QUICK, make_data, run_family
    >>> sizes = dataclasses.replace(QUICK, steps=5, n_train=256, n_eval=64)
    >>> r = run_family("gan", make_data(sizes, ("ring",), seed=0), sizes, seed=0)
    >>> [row["dataset"] for row in r.diagnostics["rows"]], r.diagnostics["sample_sets"]["ring"].shape
    (['ring'], (64, 2))
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from inference.errors import UnknownNameError
from inference.result import Result

__all__ = ["FAMILIES", "LABELS", "DENSITIES", "DIGITS_BINARY", "DIGITS_GREY", "DATASETS", "COLUMNS", "NOTES",
           "Sizes", "QUICK", "FULL", "Fitted", "make_data", "score_2d", "run_family", "datasets_of"]

FAMILIES = ("vae", "iwae", "nade", "made", "realnvp", "maf", "nsf", "glow", "gan", "wgan_gp", "ebm", "ddpm",
            "score_sde", "flow_matching")
LABELS = {"vae": "VAE", "iwae": "IWAE", "nade": "NADE", "made": "MADE", "realnvp": "RealNVP", "maf": "MAF",
          "nsf": "NSF", "glow": "Glow", "gan": "GAN", "wgan_gp": "WGAN-GP", "ebm": "EBM", "ddpm": "DDPM",
          "score_sde": "score SDE", "flow_matching": "flow matching"}
DENSITIES = ("8gaussians", "checkerboard", "ring")
DIGITS_BINARY = "digits (binary)"
DIGITS_GREY = "digits (17 levels)"
DATASETS = DENSITIES + (DIGITS_BINARY, DIGITS_GREY)
COLUMNS = ("dataset", "NLL", "NLL kind", "KL", "MMD", "W2", "modes", "train s", "s / 1k samples", "NFE")

_DIGIT_FAMILIES = {f: DIGITS_BINARY if f in ("vae", "iwae", "nade", "made") else DIGITS_GREY for f in FAMILIES}
_NO_2D = ("nade", "made", "glow")

#: What the table leaves out and why, one line per family concerned (the table's footnote).
_BINARY = "VAE, IWAE: Bernoulli decoders on binarised digits (no dequantised-digits row)."
_AR = "NADE, MADE: binary models, so binarised digits only (pixel > 8 of 0..16)."
_LOGIT = ("DDPM, score SDE, flow matching, EBM on digits: 64-D vectors in the flows' logit space "
          "y = logit(0.05 + 0.9 v) of the dequantised pixels v = (k + u) / 17 (4 dequantisations per training "
          "image); their log p(y) is mapped to log p(v) by the flows' change of variables, so their NLL is the same "
          "bound as the flows'.")
_GANS = "GAN, WGAN-GP on digits: unconditional, on the grey pixels scaled to [-1, 1]; no likelihood."
NOTES = {
    "vae": _BINARY, "iwae": _BINARY, "nade": _AR, "made": _AR,
    "realnvp": "RealNVP, MAF, NSF: dense flows on the 64 dequantised pixels (after the logit), no binarised row.",
    "maf": "RealNVP, MAF, NSF: dense flows on the 64 dequantised pixels (after the logit), no binarised row.",
    "nsf": "RealNVP, MAF, NSF: dense flows on the 64 dequantised pixels (after the logit), no binarised row.",
    "glow": "Glow: a convolutional image flow, so dequantised digits only.",
    "gan": _GANS, "wgan_gp": _GANS, "ebm": _LOGIT, "ddpm": _LOGIT, "score_sde": _LOGIT, "flow_matching": _LOGIT,
}
_DIGITS_NOTE = ("digits: MMD of n_eval draws (quantised back to the 17 grey levels) against the held-out images "
                "(binarised for the binary rows) in pixel space [0, 1]; modes = digit classes (0-10) that a logistic "
                "regression trained on the training images assigns to at least 1% of the draws.")
_KIND_NOTES = {
    "bound": "NLL kind 'bound': VAE / IWAE the IWAE bound (K particles), DDPM its variational bound, flows on "
             "dequantised digits the bound -log P(k) <= -log p(v) + D log 17; KL is then an upper bound.",
    "quadrature": "NLL kind 'quadrature': the EBM's E(x) + log Z, log Z by the midpoint rule on a grid (exact up to "
                  "the grid).",
    "ode": "NLL kind 'ode': the probability-flow ODE's likelihood (dopri5, tolerance 1e-4), exact up to the solver.",
    "ode (Hutchinson)": "NLL kind 'ode (Hutchinson)': the probability-flow ODE's likelihood (dopri5, tolerance 1e-4) "
                        "with the divergence by Hutchinson's estimator (Rademacher probes): unbiased for log p.",
    "estimate (AIS)": "NLL kind 'estimate (AIS)': E(y) + log Z, log Z by annealed importance sampling (MALA moves) "
                      "from N(0, 2^2 I): log Z is low on average (Jensen), so this NLL is optimistic; left out "
                      "('-') when the weights' ESS is under 5.",
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The sizes of one table (the same for every family).

    Attributes:
        steps: Adam steps of every 2-D model (GANs: generator updates).
        hidden: hidden width of every 2-D network (two layers; diffusion and flow matching: three).
        n_train: training draws of each density.
        n_eval: model samples and fresh true points for MMD and W2, and test points for the NLL.
        digits_steps: Adam steps of NADE, MADE and the image flows.
        digits_hidden: hidden units of NADE / MADE and of the image flows' couplings.
        vae_epochs: epochs of the digits VAE / IWAE.
        k_iwae: particles of the IWAE bound that scores every VAE / IWAE.
        T: DDPM's steps.
        sde_steps: Euler-Maruyama steps of the reverse SDE.
        langevin_steps: Langevin steps that draw the EBM's samples.
        glow_steps: Glow's steps of flow per level.
        digit_samples: images kept per digits model for the report's grid (MMD and modes use ``n_eval``).
        digits_layers: layers of the dense digits flows (RealNVP, MAF, NSF).
        probes: Hutchinson probes per test image of the 64-D ODE likelihoods.
        ais_chains, ais_betas: AIS chains and temperatures of the digits EBM's :math:`\log Z`.
        threads: torch and BLAS threads while a family trains and samples (restored afterwards): these
            networks are tiny, and on a shared machine a second thread mostly spins.
    """

    steps: int
    hidden: int
    n_train: int
    n_eval: int
    digits_steps: int
    digits_hidden: int
    vae_epochs: int
    k_iwae: int = 50
    T: int = 1000
    sde_steps: int = 250
    langevin_steps: int = 300
    glow_steps: int = 2
    digit_samples: int = 64
    digits_layers: int = 6
    probes: int = 2
    ais_chains: int = 200
    ais_betas: int = 500
    threads: int = 1

    def describe(self) -> str:
        return (f"{self.steps} steps of width-{self.hidden} networks on {self.n_train} draws per density; "
                f"digits: {self.digits_steps} steps (VAE / IWAE {self.vae_epochs} epochs); W2 / MMD of "
                f"{self.n_eval} samples against {self.n_eval} fresh true points")


QUICK = Sizes(steps=300, hidden=32, n_train=5000, n_eval=1000, digits_steps=300, digits_hidden=64, vae_epochs=3,
              k_iwae=20, T=200, sde_steps=100, langevin_steps=200, digits_layers=2)
FULL = Sizes(steps=1000, hidden=64, n_train=10000, n_eval=1000, digits_steps=1000, digits_hidden=100,
             vae_epochs=10, k_iwae=50, T=1000, sde_steps=250, langevin_steps=300, ais_chains=500, ais_betas=2000)


def datasets_of(family: str) -> tuple[str, ...]:
    """The datasets ``family`` is measured on (see :data:`NOTES` for those left out)."""
    if family not in FAMILIES:
        raise UnknownNameError(f"unknown deep family {family!r}; the table has: {', '.join(FAMILIES)}")
    return (() if family in _NO_2D else DENSITIES) + ((_DIGIT_FAMILIES[family],) if family in _DIGIT_FAMILIES else ())


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A trained model as the table sees it.

    Attributes:
        sample: ``(n, seed) -> samples`` (torch or NumPy; (n, 2) points or (n, 64) pixels in [0, 1]).
        log_prob: ``x_test -> per-point log-likelihood`` in nats (or its bound), or None.
        nll_kind: ``"exact"``, ``"bound"``, ``"quadrature"`` or ``"ode"`` (None without log_prob).
        nfe: network evaluations per sample, or a callable reading it off the last draw.
        train_seconds: wall seconds of training.
        model: the trained model itself (kept on the Result's ``params``).
    """

    sample: Callable
    log_prob: Callable | None
    nll_kind: str | None
    nfe: float | Callable
    train_seconds: float
    model: object = None


def make_data(sizes: Sizes, datasets: Sequence[str], seed: int) -> dict:
    """The shared data: per density ``{"train", "truth", "test"}`` tensors (``truth`` and ``test``:
    ``n_eval`` fresh draws each), per digits dataset ``{"train", "test"}`` arrays (80/20 split)."""
    from deep.densities import get

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise UnknownNameError(f"unknown dataset {unknown[0]!r}; the table has: {', '.join(DATASETS)}")
    data = {}
    for name in datasets:
        if name in DENSITIES:
            gen = torch.Generator().manual_seed(seed)
            density = get(name)
            data[name] = {"density": density, "train": density.sample(sizes.n_train, gen),
                          "truth": density.sample(sizes.n_eval, gen), "test": density.sample(sizes.n_eval, gen)}
        else:
            from deep.data import split
            from genzoo.data import digits

            images = digits(binarize=name == DIGITS_BINARY)["images"]
            data[name] = split(images, seed=seed) | {"all": images}
    return data


# --------------------------------------------------------------------------- 2-D fitters
def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _vae_2d(iwae: bool):
    def fit(x, sizes, seed):
        from deep.train import train
        from deep.vae import IWAE, VAE
        from inference.likelihood import iwae_bound
        from inference.train import isolated

        with isolated(seed):
            cls = IWAE if iwae else VAE
            vae = cls((2,), z_dim=2, hidden=(sizes.hidden, sizes.hidden), likelihood="gaussian", data_range=None,
                      name=f"table_{'iwae' if iwae else 'vae'}")
        _, secs = _timed(train, vae, {"x": x.numpy()}, seed=seed, steps=sizes.steps, batch_size=256,
                         learning_rate=3e-3)

        def log_prob(t):
            return iwae_bound(vae.model, vae.guide, {"x": t}, num_particles=sizes.k_iwae,
                              seed=seed + 1).diagnostics["per_datum"]

        return Fitted(lambda n, s: vae.sample(s, n, mean=False), log_prob, "bound", 1, secs, vae)

    return fit


def _flow_2d(kind: str):
    def fit(x, sizes, seed):
        from deep.flows.fit import fit_flow, make_flow

        flow = make_flow(kind, 2, hidden=(sizes.hidden, sizes.hidden), num_layers=4, seed=seed)
        _, secs = _timed(fit_flow, flow, x, seed=seed, steps=sizes.steps, batch_size=256, lr=2e-3)
        nfe = 2 if kind == "maf" else 1  # MAF inverts coordinate by coordinate: D = 2 passes
        return Fitted(lambda n, s: flow.sample((n,), s), flow.log_prob, "exact", nfe, secs, flow)

    return fit


def _gan_2d(loss: str):
    def fit(x, sizes, seed):
        from deep.gan_steps import train_gan

        result, secs = _timed(train_gan, x, seed=seed, steps=sizes.steps, loss=loss, batch_size=256, lr=1e-3,
                              hidden=(sizes.hidden, sizes.hidden))
        gan = result.params
        return Fitted(lambda n, s: gan.sample(s, n), None, None, 1, secs, gan)

    return fit


def _ebm_2d(x, sizes, seed, *, box: float):
    from deep.ebm import langevin_samples, log_partition_2d, train_ebm

    result, secs = _timed(train_ebm, x, "dsm", seed=seed, steps=sizes.steps, batch_size=256, lr=3e-3,
                          hidden=(sizes.hidden, sizes.hidden), sigma=0.1, box=box)
    energy = result.params
    # Cells h = 2 box / 400 <= 0.03: DSM at noise 0.1 learns the log of p smoothed by N(0, 0.1^2), and the
    # midpoint rule on a bump of width s errs by about exp(-2 pi^2 s^2 / h^2) < e^-200 there.
    log_z = log_partition_2d(energy, box=box, cells=400)

    def log_prob(t):
        with torch.no_grad():
            return -(energy(t).double() + log_z)

    def sample(n, s):
        return langevin_samples(energy, n, s, num_steps=sizes.langevin_steps, step_size=5e-3, box=box)

    return Fitted(sample, log_prob, "quadrature", sizes.langevin_steps, secs, energy)


def _diffusion_2d(kind: str):
    def fit(x, sizes, seed):
        from deep.diffusion.recipes import train

        model, secs = _timed(train, {"ddpm": "ddpm", "score_sde": "subvp", "flow_matching": "fm_ot"}[kind], x,
                             seed=seed, steps=sizes.steps, hidden=(sizes.hidden,) * 3, T=sizes.T)
        if kind == "ddpm":
            terms = None if model.T <= 200 else 50  # an unbiased estimate of the sum of the middle KL terms
            return Fitted(lambda n, s: model.sample(n, generator=s),
                          lambda t: model.bound(t, generator=seed + 1, num_terms=terms), "bound", model.T, secs, model)
        ode = {"method": "dopri5", "atol": 1e-4, "rtol": 1e-4}

        def log_prob(t):
            return model.log_prob(t, **ode).log_prob

        if kind == "score_sde":
            return Fitted(lambda n, s: model.reverse_sde_sample(n, generator=s, num_steps=sizes.sde_steps), log_prob,
                          "ode", sizes.sde_steps, secs, model)
        last = {}

        def sample(n, s):
            out = model.sample(n, generator=s, **ode)
            last["nfe"] = out.nfe
            return out.x

        return Fitted(sample, log_prob, "ode", lambda: last["nfe"], secs, model)

    return fit


_FIT_2D = {"vae": _vae_2d(False), "iwae": _vae_2d(True), "realnvp": _flow_2d("realnvp"), "maf": _flow_2d("maf"),
           "nsf": _flow_2d("nsf"), "gan": _gan_2d("gan"), "wgan_gp": _gan_2d("wgan_gp"),
           "ddpm": _diffusion_2d("ddpm"), "score_sde": _diffusion_2d("score_sde"),
           "flow_matching": _diffusion_2d("flow_matching")}


# --------------------------------------------------------------------------- scoring
def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def score_2d(fitted: Fitted, data: Mapping, sizes: Sizes, seed: int) -> tuple[dict, np.ndarray]:
    """One table row of ``fitted`` on a density's ``data`` (:func:`make_data`) and the samples it drew."""
    from inference.evaluate import mmd, mode_coverage, wasserstein2

    density = data["density"]
    raw, sample_s = _timed(fitted.sample, sizes.n_eval, seed + 2)
    x = _numpy(raw)
    finite = np.isfinite(x).all(1)
    truth = _numpy(data["truth"])
    row = dict.fromkeys(COLUMNS)
    row["dataset"] = density.name
    if fitted.log_prob is not None:
        lp = _numpy(fitted.log_prob(data["test"]))
        row["NLL"] = float(-lp.mean())
        row["NLL kind"] = fitted.nll_kind
        row["KL"] = row["NLL"] - density.entropy()
    if finite.all():
        row["MMD"] = mmd(x, truth)
        row["W2"] = wasserstein2(x, truth)
    else:  # a diverged sampler: the distances are infinite, the row says so rather than failing
        row["MMD"] = row["W2"] = math.inf
    if density.modes is not None:
        covered = mode_coverage(x[finite], density.modes, density.mode_std) if finite.any() else None
        row["modes"] = covered["modes_captured"] if covered else 0
    row["train s"] = fitted.train_seconds
    row["s / 1k samples"] = sample_s * 1000 / sizes.n_eval
    row["NFE"] = float(fitted.nfe() if callable(fitted.nfe) else fitted.nfe)
    return row, x


def _score_digits(family: str, name: str, parts: Mapping, sizes: Sizes, seed: int) -> tuple[dict, np.ndarray, dict]:
    """One digits row (:mod:`deep.zoo_table_digits`), the report's images (digit_samples, 8, 8), the fit."""
    from deep.zoo_table_digits import classes_covered, fit_digits_family, to_pixels
    from inference.evaluate import mmd

    fit = fit_digits_family(family, parts, sizes, seed)
    raw, sample_s = _timed(fit["sample"], sizes.n_eval, seed + 2)
    pixels = to_pixels(raw, fit["space"])  # (n_eval, 64) in [0, 1]
    binary = name == DIGITS_BINARY
    row = dict.fromkeys(COLUMNS)
    row.update({"dataset": name, "MMD": mmd(pixels, parts["test"].reshape(len(parts["test"]), -1)),
                "modes": classes_covered(pixels, binary=binary, seed=seed), "train s": fit["train s"],
                "s / 1k samples": sample_s * 1000 / sizes.n_eval,
                "NFE": float(fit["nfe"]() if callable(fit["nfe"]) else fit["nfe"])})
    if fit["nll"] is not None:
        row.update({"NLL": float(np.mean(fit["nll"])), "NLL kind": fit["nll_kind"]})
    return row, pixels[:sizes.digit_samples].reshape(-1, 8, 8), fit


def _ais_text(ais) -> str:
    if ais is None:
        return "."
    return (f"; AIS log Z {ais['log_z']:.4g} +- {ais['standard_error']:.2g}, weights' ESS {ais['ess']:.3g} of "
            f"the chains, MALA acceptance {ais['acceptance']:.2f}.")


def run_family(family: str, data: Mapping, sizes: Sizes, *, seed: int, datasets: Sequence[str] | None = None,
               progress: bool = False) -> Result:
    """Train ``family`` on each of its datasets present in ``data`` (:func:`make_data`) and score it.

    Returns ``Result(method=family, params={dataset: trained model}, seconds=total,
    diagnostics={"rows": [...], "sample_sets": {...}, "notes": [...], "sizes": {...}})``; see the
    module docstring for the columns.
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from inference.train import _threads  # the loop's own set-and-restore of torch's thread count

    names = [d for d in datasets_of(family) if d in data and (datasets is None or d in datasets)]
    if not names:  # say so in the table's notes rather than fail the other families' run
        return Result(method=family, seconds=0.0, diagnostics={
            "rows": [], "sample_sets": {}, "notes": [f"{LABELS[family]}: not run (it is measured on "
                                                     f"{', '.join(datasets_of(family))}; none was chosen)."]})
    rows, sets, models, notes, estimators = [], {}, {}, [], {}
    start = time.perf_counter()
    # BLAS threads too (the digits classifier, MMD): two OpenBLAS threads on a shared machine spun 25x the CPU
    with _threads(sizes.threads), threadpool_limits(sizes.threads):
        for name in tqdm(names, desc=LABELS[family], disable=not progress, leave=False):
            if name in DENSITIES:
                x = data[name]["train"]
                box = float(data[name]["density"].box) + 1.0
                fitted = _ebm_2d(x, sizes, seed, box=box) if family == "ebm" else _FIT_2D[family](x, sizes, seed)
                row, samples = score_2d(fitted, data[name], sizes, seed)
            else:
                row, samples, fit = _score_digits(family, name, data[name], sizes, seed)
                fitted = Fitted(fit["sample"], None, fit["nll_kind"], fit["nfe"], fit["train s"], fit["model"])
                if "nll_se" in fit:
                    estimators[name] = {k: fit[k] for k in ("nll_se", "ais") if k in fit}
                    nll = "-" if row["NLL"] is None else f"{row['NLL']:.4g}"
                    notes.append(f"{LABELS[family]} on {name}: NLL {nll} +- {fit['nll_se']:.2g} "
                                 f"(the estimator's standard error)" + _ais_text(fit.get("ais")))
            rows.append(row)
            models[name] = fitted.model
            sets[name] = samples
    notes = ([NOTES[family]] if family in NOTES else []) + notes
    notes += [_DIGITS_NOTE] if any(r["dataset"] in (DIGITS_BINARY, DIGITS_GREY) for r in rows) else []
    notes += [_KIND_NOTES[k] for k in dict.fromkeys(r["NLL kind"] for r in rows) if k in _KIND_NOTES]
    return Result(method=family, params=models, seconds=time.perf_counter() - start,
                  diagnostics={"rows": rows, "sample_sets": sets, "notes": notes, "sizes": dataclasses.asdict(sizes),
                               "estimators": estimators})
