"""Helpers shared by the zoo's entry modules (an underscore module: not an entry itself)."""

from __future__ import annotations

from genzoo.registry import RunConfig

__all__ = ["run_key", "seed_key", "parse_evidence", "state_method", "reference_draws"]


def run_key(config: RunConfig):
    """The JAX key of a run: ``config.seed`` through :func:`inference.rng.as_key`, so a bad seed is a
    :class:`~inference.errors.DataError` naming ``seed``."""
    from inference.rng import as_key

    return as_key(config.seed, "seed")


def seed_key(seed):
    """The JAX key of an int seed or a key (``genzoo sample``'s ``seed``), via :func:`inference.rng.as_key`."""
    from inference.rng import as_key

    return as_key(seed, "seed")


def parse_evidence(text: str) -> dict[str, str]:
    """``"A=yes,B=no"`` -> ``{"A": "yes", "B": "no"}``; empty text -> ``{}``.

    Example:
        >>> parse_evidence("xray=yes, dysp=no")
        {'xray': 'yes', 'dysp': 'no'}
    """
    evidence = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            from inference.errors import EvidenceError

            raise EvidenceError(f"evidence item {item!r} is not of the form VARIABLE=STATE")
        var, state = (s.strip() for s in item.split("=", 1))
        if var in evidence:
            from inference.errors import EvidenceError

            raise EvidenceError(f"evidence gives variable {var!r} twice ({var}={evidence[var]}, {var}={state})")
        evidence[var] = state
    return evidence



_STATE_METHODS = {"gibbs": "gibbs", "cavi": "mean_field", "adam": "svi_states"}


def state_method(kind: str, graph_of):
    """A method on the latent states' posterior given known parameters, as a factor graph
    ``graph_of(problem)`` whose variables are ``"z[0]"`` ... ``"z[n-1]"``: Gibbs sampling (``"gibbs"``,
    4 chains, ``--steps`` draws each, default 500), mean field by CAVI (``"cavi"``) or Adam on the same
    mean-field ELBO (``"adam"``). The Result's marginals are stacked as the exact method's
    ``{"z": (n, K)}``."""
    import dataclasses

    import numpy as np

    def run(problem, config):
        from inference import gibbs, meanfield

        graph = graph_of(problem)
        key, steps = run_key(config), config.steps
        if kind == "gibbs":
            result = gibbs.gibbs(graph, key, steps or 500, burn_in=100, chains=4)
        else:
            result = meanfield.mean_field(graph, key=key, steps=steps, method=kind, learning_rate=0.1)
        n = len(graph.states)
        marginals = np.stack([np.asarray(result.marginals[f"z[{t}]"]) for t in range(n)])
        return dataclasses.replace(result, method=_STATE_METHODS[kind], marginals={"z": marginals}, samples={})

    return run


def reference_draws(default: int, steps: int | None) -> int:
    """Draws per chain of a reference run: ``default``, or five times the ``--steps`` the methods it
    judges are given (a reference as short as those methods would judge nothing)."""
    return default if steps is None else 5 * int(steps)
