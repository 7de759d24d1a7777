"""Helpers shared by the zoo's entry modules (an underscore module: not an entry itself)."""

from __future__ import annotations

from genzoo.registry import RunConfig

__all__ = ["run_key", "seed_key", "parse_evidence"]


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

