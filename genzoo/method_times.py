"""The seconds each method took in the last ``genzoo compare``, so that the next one starts the longest first.

Methods side by side (:class:`genzoo.compare.Workers`) finish soonest when the longest start first
(longest processing time first, Graham 1969): the catalogue's order put the casino HMM's short NUTS
run last, and the other process waited for it. How long a method takes is known only from a run, so
each ``compare`` keeps its methods' seconds, per entry, in ``method-seconds.json`` under the cache
folder (:func:`inference.io.cache_root`; ``GENZOO_CACHE=off`` keeps nothing, and the order is then
the catalogue's). The order changes no figure: every method draws its randomness from the seed alone.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Mapping

from inference.io import atomic_write, cache_root

__all__ = ["MethodTimes", "longest_first"]


class MethodTimes:
    """Seconds per method of each entry, in a JSON file ``{entry: {method: seconds}}``."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)

    @classmethod
    def default(cls) -> "MethodTimes | None":
        """The file in the user's cache folder, or None where ``GENZOO_CACHE=off``."""
        root = cache_root()
        return None if root is None else cls(root / "method-seconds.json")

    def _read(self) -> dict:
        try:
            table = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: no timings (the file is only a hint)
            return {}
        return table if isinstance(table, dict) else {}

    def of(self, entry: str) -> dict[str, float]:
        """``{method: seconds}`` of ``entry``'s last runs (empty where none is known)."""
        known = self._read().get(entry, {})
        if not isinstance(known, dict):
            return {}
        return {str(k): float(v) for k, v in known.items() if isinstance(v, (int, float))}

    def record(self, entry: str, seconds: Mapping[str, float]) -> None:
        """Keep ``seconds`` as ``entry``'s latest (other methods' and entries' are kept); a file that
        cannot be written is left as it is (the timings are only a hint)."""
        table = self._read()
        known = table.get(entry) if isinstance(table.get(entry), dict) else {}
        table[entry] = {**known, **{str(k): round(float(v), 3) for k, v in seconds.items()}}
        try:
            atomic_write(self.path, json.dumps(table, indent=1, sort_keys=True))
        except OSError:
            pass


def longest_first(names: list[str], seconds: Mapping[str, float], first: set[str] = frozenset()) -> list[str]:
    """``names`` in the order to start them: those in ``first`` (references), then any without a known
    time (it may be long), then the rest by their ``seconds``, longest first; ties keep ``names``' order.

    Example:
        >>> longest_first(["exact", "gibbs", "nuts", "new", "ref"], {"exact": 0.2, "gibbs": 1.3, "nuts": 6.6},
        ...               first={"ref"})
        ['ref', 'new', 'nuts', 'gibbs', 'exact']
    """
    def rank(name):
        return (name not in first, name in seconds, -seconds.get(name, 0.0))

    return sorted(names, key=rank)
