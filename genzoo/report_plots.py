"""The pictures of a run report (:mod:`genzoo.report`), each a matplotlib figure drawn with Agg.

- :func:`error_figure`: error against seconds, one point per approximate method. A method whose
  error is below :data:`ROUNDING` (the exact method against itself, a junction tree) would sit
  at zero, which a log axis cannot show and which used to stretch the axis over sixteen decades;
  such a method is drawn as a dashed vertical line at its seconds instead, labelled, so the error
  axis spans only the errors that are not rounding.
- marginals: for discrete models, grouped bars per variable, one bar per method (reference first);
  for a long hidden chain (an HMM's states), p(state) against the step, one line per method.
- densities: for continuous posteriors, each method's sample histogram over the reference's
  (its samples filled grey where it has samples; its mean +- one sd as a line and a band).
- sample sets: ``Result.diagnostics["sample_sets"] = {dataset: array}``; (n, 2) arrays are drawn
  over the true density of :mod:`deep.densities` where ``dataset`` names one, (n, h, w) arrays as
  an image grid.
- the objective per step, one panel per method that has a history.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

__all__ = ["ROUNDING", "ERROR_CAPTION", "SCORES_CAPTION", "has_errors", "has_figure", "png", "error_figure",
           "result_pictures"]

#: Errors below this are float rounding, not approximation: probabilities summed in float64 over
#: at most ~10^5 terms carry a relative rounding error of at most 10^5 * 2^-53 ~ 1e-11, and a
#: standardised mean error of a closed form against itself is 0 or ~1e-15; 1e-10 clears both.
ROUNDING = 1e-10
MAX_PANELS = 12  # variables / components drawn; the caption names them and how many were left out
MAX_POINTS = 2000  # points per scatter (the scatter of 2,000 points already shows the density)
ERROR_CAPTION = (f"one point per approximate method; a method whose error is below {ROUNDING:.0e} (float rounding: "
                 "the exact method itself, an exact algorithm) is a dashed vertical line at its seconds instead "
                 "of a point at zero, so the error axis spans only the approximation errors")
SCORES_CAPTION = "no exact answer to measure errors against: the methods' own first two scores against seconds"


def has_errors(rows: Sequence) -> bool:
    """Whether the rows were measured against an exact or reference answer."""
    return any(r.max_z_mean is not None or r.max_abs_marginal is not None for r in rows)


def has_figure(rows: Sequence) -> bool:
    """Whether :func:`error_figure` has anything to draw: errors, or the methods' scores (the long
    tables of several datasets per method, ``compare deep``, have neither)."""
    return has_errors(rows) or any(r.scores for r in rows)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, dpi: int = 90) -> bytes:
    """``fig`` as PNG bytes (the figure is closed)."""
    plt = _plt()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)  # laid out already: a tight bbox would draw it twice
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def error_figure(rows: Sequence, title: str, reference: str | None = None):
    """Error against seconds (both log axes), one panel per error: the marginal or standardised-mean
    error and the log-evidence error against the exact answer, or, where there is no exact answer,
    the methods' first two scores (seconds and counts of steps left out). Returns the figure."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    moments = any(r.max_z_mean is not None for r in rows)
    errors = has_errors(rows)
    names = [n for n in dict.fromkeys(n for r in rows for n in r.scores)
             if not (n.endswith("_s") or "seconds" in n or n == "steps" or n.endswith("_se") or n.endswith(" se"))]
    if errors or not names:
        panels = [("max_z_mean", "max |Δ mean| / sd vs reference") if moments else
                  ("max_abs_marginal", "max |Δ marginal| vs exact"),
                  ("abs_log_evidence", "|Δ log evidence| vs exact")]
    else:
        panels = [(n, n) for n in names[:2]]
    warm = any(r.seconds != r.first_seconds for r in rows)
    colours = {r.method: f"C{i % 10}" for i, r in enumerate(rows)}
    for ax, (field, label) in zip(axes, panels):
        is_error = field in ("max_z_mean", "max_abs_marginal", "abs_log_evidence")
        points, lines = [], []
        for row in rows:
            value = getattr(row, field) if is_error else row.scores.get(field)
            if not _finite(value):
                continue
            seconds = max(row.seconds, 1e-6)
            (lines if is_error and value < ROUNDING else points).append((row.method, seconds, float(value)))
        for method, x, y in points:
            ax.scatter(x, y, s=40, color=colours[method], zorder=3)
            ax.annotate(method, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        for method, x, _ in lines:
            tag = " (reference)" if method == reference else ""
            ax.axvline(x, ls="--", lw=1, color=colours[method])
            ax.annotate(f"{method}{tag}: error < {ROUNDING:.0e}", (x, 0.98), xycoords=("data", "axes fraction"),
                        textcoords="offset points", xytext=(-3, 0), rotation=90, va="top", ha="right", fontsize=7,
                        color=colours[method])
        ax.set_xscale("log")
        ys = [y for _, _, y in points]
        log_y = bool(ys) and all(y > 0 for y in ys)  # coherence scores are negative
        ax.set_yscale("log" if log_y else "linear")
        if log_y:  # room above the top label, a little below the lowest point
            ax.set_ylim(min(ys) / 2, max(ys) * 4)
        if not ys:
            ax.set_yticks([])
            empty = "no method off the exact answer by more than rounding" if lines else "no method has this figure"
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", fontsize=8, color="0.4")
        xs = [x for _, x, _ in points + lines]
        if xs:
            ax.set_xlim(min(xs) / 2, max(xs) * 3)
        ax.set_xlabel("seconds (compiled)" if warm else "seconds")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.13, top=0.88, wspace=0.32)  # fixed: no second draw
    return fig


def _grid(n: int, columns: int, size=(2.6, 2.2), legend: bool = False, **kwargs):
    """``n`` panels of ``size`` inches, ``columns`` to a row, with fixed margins in inches (a tight
    layout would draw every figure once more to measure its text). Returns (figure, the n axes)."""
    plt = _plt()
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    width, height = size[0] * cols, size[1] * rows + (0.35 if legend else 0.0)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, **kwargs)
    top = 0.3 + (0.35 if legend else 0.0)  # inches: panel titles, and the legend above them
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.1 / width, bottom=0.5 / height, top=1 - top / height,
                        wspace=0.3, hspace=0.6)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()[:n]


def _shown(labels: Sequence[str], total: int, what: str) -> str:
    listed = ", ".join(labels)
    more = f"; the other {total - len(labels)} are left out" if total > len(labels) else ""
    return f"{len(labels)} of {total} {what}: {listed}{more}"


def _marginal_panels(results, problem):
    """[(label, state names, {method: probs})] for the first MAX_PANELS unobserved variables, and the total."""
    data = getattr(problem, "data", None)
    observed = set(data) if isinstance(data, dict) else set()
    states = getattr(getattr(problem, "model", None), "states", None)
    named = dict(getattr(problem, "state_names", None) or {})  # a site's states, for each of its variables
    panels, total = [], 0
    for site, first in results[0].marginals.items():
        if site in observed:
            continue
        first = np.asarray(first, dtype=np.float64)
        for idx in np.ndindex(first.shape[:-1]):
            total += 1
            if len(panels) == MAX_PANELS:
                continue
            label = site + (f"[{','.join(map(str, idx))}]" if idx else "")
            names = states.get(site) if isinstance(states, dict) and not idx else None
            if names is None and len(named.get(site, ())) == first.shape[-1]:
                names = [str(n) for n in named[site]]
            probs = {}
            for r in results:
                value = r.marginals.get(site)
                if value is not None and np.shape(value) == first.shape:
                    probs[r.method] = np.asarray(value, dtype=np.float64)[idx]
            panels.append((label, names or [str(k) for k in range(first.shape[-1])], probs))
    return panels, total


def _chain_sites(results, problem) -> list[str]:
    """The unobserved sites that are a hidden chain's states over time: a model with a ``chain``
    method (:class:`~inference.protocols.ChainModel`, an HMM) whose marginals are (T, K) with more
    steps than :data:`MAX_PANELS`. Empty where any other site is unobserved (bars then show them all)."""
    if not callable(getattr(getattr(problem, "model", None), "chain", None)):
        return []
    data = getattr(problem, "data", None)
    observed = set(data) if isinstance(data, dict) else set()
    shapes = {site: np.shape(v) for site, v in results[0].marginals.items() if site not in observed}
    sites = [site for site, shape in shapes.items() if len(shape) == 2 and shape[0] > MAX_PANELS]
    return sites if len(sites) == len(shapes) else []


def chain_figure(results, problem, sites):
    """p(site[t] = state) against t, one line per method, one panel per state (for two states, the
    second alone: the first is its complement): every step of a long chain, where bars would show
    its first :data:`MAX_PANELS`. Returns (figure, caption)."""
    methods = [r.method for r in results]
    named = dict(getattr(problem, "state_names", None) or {})
    panels = []  # (site, state index, state name)
    for site in sites:
        K = np.shape(results[0].marginals[site])[-1]
        names = [str(n) for n in named[site]] if len(named.get(site, ())) == K else [str(k) for k in range(K)]
        panels += [(site, k, names[k]) for k in ([1] if K == 2 else range(K))]
    shown = panels[:MAX_PANELS]
    fig, axes = _grid(len(shown), 1, (9.0, 2.0), legend=True, sharex=True)
    for ax, (site, k, name) in zip(axes, shown):
        for j, r in enumerate(results):
            value = r.marginals.get(site)
            if value is not None and np.shape(value) == np.shape(results[0].marginals[site]):
                probs = np.asarray(value, dtype=np.float64)[:, k]
                ax.plot(np.arange(len(probs)), probs, color=f"C{j % 10}", lw=1.6 if j == 0 else 0.9,
                        alpha=1.0 if j == 0 else 0.85, zorder=3 if j == 0 else 2, label=r.method)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"p({site}[t] = {name})", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("t", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(methods), 7), fontsize=8, frameon=False)
    steps = ", ".join(f"{site}: {np.shape(results[0].marginals[site])[0]} steps" for site in sites)
    more = f"; the other {len(panels) - len(shown)} states are left out" if len(panels) > len(shown) else ""
    return fig, f"posterior state probabilities at every step ({steps}), first method ({methods[0]}) drawn thickest, on top{more}"


def marginals_figure(results, problem):
    """Grouped bars: per variable, per state, one bar per method; for a long hidden chain (an HMM's
    states), lines over time instead (:func:`chain_figure`). Returns (figure, caption) or None."""
    results = [r for r in results if r.marginals]
    if not results:
        return None
    chain_sites = _chain_sites(results, problem)
    if chain_sites:
        return chain_figure(results, problem, chain_sites)
    panels, total = _marginal_panels(results, problem)
    if not panels:
        return None
    methods = [r.method for r in results]
    fig, axes = _grid(len(panels), 4, (3.0, 2.3), legend=True, sharey=True)
    width = 0.8 / len(methods)
    for ax, (label, names, probs) in zip(axes, panels):
        k = np.arange(len(names))
        for j, method in enumerate(methods):
            if method in probs:
                ax.bar(k - 0.4 + (j + 0.5) * width, probs[method], width, color=f"C{j % 10}", label=method)
        ax.set_xticks(k, [str(n)[:8] for n in names], fontsize=7, rotation=30 if len(names) > 3 else 0)
        ax.set_ylim(0, 1.05)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(methods), 7), fontsize=8, frameon=False)
    caption = (f"posterior marginals, first method ({methods[0]}) first; "
               + _shown([p[0] for p in panels], total, "unobserved variables"))
    return fig, caption


def _components(results):
    """[(label, {method: 1-D draws})] for the first MAX_PANELS scalar components of the sampled sites, and the total."""
    sites = list(dict.fromkeys(s for r in results for s in r.samples))
    panels, total = [], 0
    for site in sites:
        arrays = {r.method: np.asarray(r.samples[site], dtype=np.float64) for r in results if site in r.samples}
        shape = next(iter(arrays.values())).shape[1:]
        for idx in np.ndindex(shape):
            total += 1
            if len(panels) < MAX_PANELS:
                label = site + (f"[{','.join(map(str, idx))}]" if idx else "")
                panels.append((site, idx, label, {m: a[(slice(None), *idx)] for m, a in arrays.items()
                                                  if a.shape[1:] == shape}))
    return panels, total


def densities_figure(results, reference):
    """Histograms of every method's draws per component over the reference's. Returns (figure, caption) or None."""
    from genzoo.compare import posterior_moments

    sampled = [r for r in results if r.samples]
    if not sampled:
        return None
    panels, total = _components(sampled)
    moments = posterior_moments(reference) if reference is not None else {}
    fig, axes = _grid(len(panels), 4, (3.0, 2.3), legend=True)
    colours = {r.method: f"C{i % 10}" for i, r in enumerate(results)}
    for ax, (site, idx, label, draws) in zip(axes, panels):
        pooled = np.concatenate([d[np.isfinite(d)] for d in draws.values()])
        lo, hi = np.percentile(pooled, [0.5, 99.5]) if len(pooled) else (0.0, 1.0)
        if site in moments:
            mu, sd = (float(np.asarray(v)[idx]) for v in moments[site])
            lo, hi = min(lo, mu - 3 * sd), max(hi, mu + 3 * sd)
            ax.axvspan(mu - sd, mu + sd, color="0.85", zorder=0)
            ax.axvline(mu, color="black", lw=1)
        bins = np.linspace(lo, hi, 41) if hi > lo else 40
        for method, d in draws.items():
            if reference is not None and method == reference.method:
                ax.hist(d, bins=bins, density=True, color="0.6", alpha=0.6, label=method)
            else:
                ax.hist(d, bins=bins, density=True, histtype="step", lw=1.4, color=colours[method], label=method)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=min(len(handles), 7), fontsize=8,
               frameon=False)
    ref = (f"; black line and grey band: the reference ({reference.method}) mean +- one sd"
           if reference is not None and moments else "")
    caption = "posterior draws per component, histograms on common bins" + ref + "; " + _shown(
        [p[2] for p in panels], total, "components")
    return fig, caption


def sample_set_figures(results):
    """One figure per dataset of ``diagnostics["sample_sets"]``: [(dataset, figure, caption)]."""
    sets: dict[str, list] = {}
    for r in results:
        for name, value in (r.diagnostics.get("sample_sets") or {}).items():
            sets.setdefault(str(name), []).append((r.method, np.asarray(value, dtype=np.float64)))
    out = []
    for name, items in sets.items():
        points = [(m, a) for m, a in items if a.ndim == 2 and a.shape[1] == 2]
        images = [(m, a) for m, a in items if a.ndim == 3]
        if points:
            out.append((name, *_points_figure(name, points)))
        if images:
            out.append((name, *_images_figure(name, images)))
    return out


def _points_figure(name, items):
    from deep.densities import NAMES, get

    density = get(name) if name in NAMES else None
    fig, axes = _grid(len(items), 5, (2.3, 2.3))
    for ax, (method, a) in zip(axes, items):
        a = a[:MAX_POINTS]
        if density is not None:
            from deep.plots import scatter_over_density

            scatter_over_density(ax, density, a, title=method)
        else:
            ax.scatter(a[:, 0], a[:, 1], s=1, alpha=0.5, color="C3")
            ax.set_title(method, fontsize=7)
        ax.title.set_fontsize(9)
    over = f"over the true density of {name} (grey)" if density is not None else "(no known density to draw under them)"
    return fig, f"up to {MAX_POINTS} samples of each method (red) {over}"


def _images_figure(name, items):
    from deep.plots import image_grid

    fig, axes = _grid(len(items), 4, (2.6, 2.8))
    for ax, (method, a) in zip(axes, items):
        ax.imshow(image_grid(np.clip(a[:36], 0.0, 1.0), nrow=6, fill=0.0), cmap="gray_r", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_title(method, fontsize=9)
        ax.axis("off")
    return fig, f"the first 36 sampled images of each method ({name}), values clipped to [0, 1]"


def history_figure(results):
    """The objective per step, one panel per method with a history. Returns (figure, caption) or None."""
    runs = [r for r in results if r.history is not None and len(r.history) > 1]
    if not runs:
        return None
    fig, axes = _grid(len(runs[:15]), 5, (2.6, 2.0))
    for ax, r in zip(axes, runs[:15]):
        ax.plot(np.asarray(r.history, dtype=np.float64), lw=1)
        ax.set_title(r.method, fontsize=9)
        ax.tick_params(labelsize=7)
    more = f"; {len(runs) - 15} more left out" if len(runs) > 15 else ""
    return fig, "the objective each method optimised (its own scale), against the step" + more


def result_pictures(results, problem, *, reference, posterior: bool, history_png: bytes | None = None) -> list:
    """The report's pictures of ``results`` (reference first where there is one). A picture that
    cannot be drawn becomes a line saying why; it never takes the others, or the report, with it."""
    from genzoo.report import Picture

    def drawn(title, make):
        try:
            made = make()
        except Exception as err:  # noqa: BLE001 - one failed picture must not cost the whole report
            return [Picture(title, None, f"{title.lower()}: not drawn ({type(err).__name__}: {err})")]
        return [] if made is None else [Picture(title, png(made[0]), made[1])]

    pictures = drawn("Marginals", lambda: marginals_figure(results, problem))
    if posterior:
        pictures += drawn("Posterior densities", lambda: densities_figure(results, reference))
    try:
        sets = sample_set_figures(results)
    except Exception as err:  # noqa: BLE001 - as above
        sets, pictures = [], pictures + [Picture("Samples", None, f"samples: not drawn ({type(err).__name__}: {err})")]
    pictures += [Picture(f"Samples: {name}", png(fig), caption) for name, fig, caption in sets]
    if history_png is not None:
        return pictures + [Picture("Objective per step", history_png, "the objective against the step")]
    return pictures + drawn("Objective per step", lambda: history_figure(results))
