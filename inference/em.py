"""Expectation-maximisation for any model that declares its sufficient statistics.

EM maximises :math:`\\log p(x \\mid \\theta)` for data :math:`x` with latent (or missing) parts
:math:`z` by alternating

1. **E-step**: the expected sufficient statistics under the posterior at the current parameters,
   :math:`\\bar s = \\mathbb{E}_{p(z \\mid x, \\theta_t)}[s(x, z)]`, computed by exact inference
   (``inference.exact`` for Bayesian networks, forward-backward for HMMs, responsibilities for
   mixtures). The same pass yields :math:`\\log p(x \\mid \\theta_t)`.
2. **M-step**: the closed-form maximiser :math:`\\theta_{t+1} = \\arg\\max_\\theta
   \\mathbb{E}[\\log p(x, z \\mid \\theta)] + \\log p(\\theta)`, a function of :math:`\\bar s` only.

Each step cannot decrease :math:`\\log p(x \\mid \\theta) + \\log p(\\theta)` (Dempster, Laird and
Rubin, 1977); :func:`fit` checks that it does not, up to floating-point rounding.

The model contract, :class:`inference.protocols.EMModel` (methods looked up on the model, no base
class needed):

- ``model.expected_stats(data) -> (stats, loglik)``: the E-step; ``stats`` is any pytree.
- ``model.from_stats(stats, **options) -> model``: the M-step, returning a new model.
- ``model.log_prior(**options) -> float`` (optional): the log prior density of the parameters that
  ``from_stats`` maximises with (a Dirichlet smoothing, say); 0 when absent.
- ``model.data_is_complete(data) -> bool`` (optional): with complete data one M-step gives the
  maximum-likelihood estimate and the loop stops there.
- ``model.prepare_data(data)`` (optional): checks and converts the data once, before the loop
  (a device copy, say); every E-step then receives what it returns. The models that
  ``from_stats`` returns must accept it too.

References:
    Dempster, Laird and Rubin (1977). Maximum likelihood from incomplete data via the EM algorithm.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from inference.errors import ModelError, MonotonicityError
from inference.protocols import EMModel
from inference.result import Result


def _objective(model, loglik, options):
    prior = getattr(model, "log_prior", None)
    return float(loglik) + (float(prior(**options)) if prior is not None else 0.0)


def fit(
    model,
    data,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    progress: bool = False,
    check_monotone: bool = True,
    **options,
) -> Result:
    """Run EM from ``model``'s parameters until the objective gains less than ``tol`` per datum.

    Args:
        model: a model with ``expected_stats`` and ``from_stats`` (see the module docstring).
        data: whatever the model's ``expected_stats`` reads.
        max_iter: the most E/M iterations.
        tol: stop when the objective improves by less than ``tol * n`` where ``n`` is
            ``len(data)`` when it has one, else 1.
        progress: show a progress bar.
        check_monotone: raise :class:`MonotonicityError` if the objective decreases by more
            than rounding (``1e-8 * max(1, |objective|)``).
        options: passed to ``from_stats`` and ``log_prior`` (e.g. a Dirichlet pseudo-count).

    Returns:
        ``Result(method="em", params=<fitted model>, history=<objective per iteration>,
        log_evidence=<final log-likelihood>, log_evidence_kind="exact")``. ``history[t]`` is the
        objective at the parameters after ``t`` M-steps (``history[0]``: the initial model).
    """
    missing = [name for name in ("expected_stats", "from_stats") if not callable(getattr(model, name, None))]
    if missing or not isinstance(model, EMModel):  # the declared contract (inference.protocols)
        raise ModelError(
            f"{type(model).__name__} does not declare its sufficient statistics: "
            f"EM needs model.{(missing or ['expected_stats'])[0]}(...) (see inference.protocols.EMModel)"
        )
    start = time.perf_counter()
    try:
        scale = max(1, len(data))
    except TypeError:
        scale = 1
    prepare = getattr(model, "prepare_data", None)
    if callable(prepare):
        data = prepare(data)
    complete = bool(getattr(model, "data_is_complete", lambda d: False)(data))

    stats, loglik = model.expected_stats(data)
    # The starting point may have zero prior density (a Dirichlet prior at a table with zeros):
    # -inf is a valid start that any M-step improves on; NaN is not.
    history = [_objective_checked(model, loglik, options, allow_minus_inf=True)]
    logliks = [float(loglik)]
    converged = False
    bar = tqdm(total=max_iter, desc="EM", disable=not progress, leave=False)
    for _ in range(1 if complete else max_iter):
        model = model.from_stats(stats, **options)
        stats, loglik = model.expected_stats(data)
        history.append(_objective_checked(model, loglik, options))
        logliks.append(float(loglik))
        bar.update(1)
        bar.set_postfix(objective=f"{history[-1]:.6g}")
        gain = history[-1] - history[-2] if np.isfinite(history[-2]) else np.inf
        if check_monotone and gain < -1e-8 * max(1.0, abs(history[-2])):
            bar.close()
            raise MonotonicityError(
                f"EM objective decreased at iteration {len(history) - 1}: "
                f"{history[-2]:.12g} -> {history[-1]:.12g}"
            )
        if complete or (np.isfinite(history[-2]) and gain < tol * scale):
            converged = True
            break
    bar.close()
    return Result(
        method="em",
        params=model,
        log_evidence=logliks[-1],
        log_evidence_kind="exact",
        history=np.asarray(history),
        seconds=time.perf_counter() - start,
        diagnostics={"iterations": len(history) - 1, "converged": converged, "complete_data": complete},
    )


def _objective_checked(model, loglik, options, allow_minus_inf=False):
    value = _objective(model, loglik, options)
    if allow_minus_inf and value == -np.inf:
        return value
    if not np.isfinite(value):
        raise MonotonicityError(f"EM objective is not finite ({value}); check the data and the initial model")
    return value
