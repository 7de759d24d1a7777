"""The zoo's entries: one module per model, found automatically.

Every module of this package whose name does not start with an underscore is an entry module: it
defines, at module level, either ``ENTRY`` (one :class:`~genzoo.registry.ModelEntry`) or
``ENTRIES`` (a tuple of them, for a family of small models such as the conjugate ones). Importing
:mod:`genzoo.zoo` imports each entry module and collects what they declare into

- :data:`ENTRIES`: ``{name: ModelEntry}`` in display order (the entries' ``order``, then module
  name, then position in a module's ``ENTRIES``), what ``genzoo list``, ``run``, ``compare`` and
  ``sample`` read;
- :data:`DEFAULT_MODEL`: ``"bayesnet"``.

Modules starting with ``_`` (``_common``) hold helpers shared by entries and are not entries.

How to add a model
------------------
Drop ONE new file ``genzoo/zoo/<name>.py``; no shared list is edited. Import model code inside the
functions (never at module level), so that ``genzoo list`` stays fast and a missing optional
package only fails the model that needs it. The entry says what the problem is (``make_problem``),
which methods apply (each a thin call into :mod:`inference` or the model: no algorithm lives in
the catalogue) and the defaults (``options``, ``quick``)::

    # genzoo/zoo/coin.py
    from genzoo.registry import Method, ModelEntry, Option, Problem
    from genzoo.zoo._common import run_key


    def _problem(options, seed):
        import numpy as np

        from pgm.conjugate import BetaBernoulli

        x = (np.random.default_rng(seed).random(options["n"]) < 0.3).astype(float)
        return Problem(model=BetaBernoulli(1.0, 1.0), data={"x": x}, description=f"{len(x)} flips")


    def _nuts(problem, config):
        from inference import mcmc

        return mcmc.nuts(problem.model.model, problem.data, key=run_key(config), num_samples=config.steps or 500)


    ENTRY = ModelEntry(
        name="coin",
        family="conjugate / teaching model",
        description="a coin's bias from its flips",
        dataset="simulated flips",
        make_problem=_problem,
        methods=(Method("nuts", "NUTS (NumPyro)", _nuts, kind="posterior"),),
        options={"n": Option(50, "number of flips", int)},
        quick={"steps": 200},
        order=100,  # after the classical models; 0 is the default model
    )

Two modules declaring the same name, or an entry module with neither ``ENTRY`` nor ``ENTRIES``, is
an error raised when the package is imported (a :class:`~inference.errors.ModelError` naming the
module).

Example:
    >>> from genzoo.zoo import DEFAULT_MODEL, ENTRIES
    >>> DEFAULT_MODEL, next(iter(ENTRIES))
    ('bayesnet', 'bayesnet')
"""

from __future__ import annotations

import importlib
import pkgutil

from genzoo.registry import ModelEntry
from genzoo.zoo._common import parse_evidence
from inference.errors import ModelError

__all__ = ["ENTRIES", "DEFAULT_MODEL", "discover", "parse_evidence"]


def discover(path=None, package: str | None = None) -> dict[str, ModelEntry]:
    """Import every entry module of ``package`` (found on ``path``; default: this package) and return
    ``{name: entry}`` in display order."""
    path = __path__ if path is None else path
    package = __name__ if package is None else package
    found: list[tuple[int, int, ModelEntry, str]] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        if hasattr(module, "ENTRY") == hasattr(module, "ENTRIES"):
            raise ModelError(f"zoo module {module.__name__} must define exactly one of ENTRY (a ModelEntry) "
                             "or ENTRIES (a tuple of ModelEntry)")
        declared = (module.ENTRY,) if hasattr(module, "ENTRY") else tuple(module.ENTRIES)
        for entry in declared:
            if not isinstance(entry, ModelEntry):
                raise ModelError(f"zoo module {module.__name__} declares {entry!r}, which is not a ModelEntry")
            found.append((entry.order, len(found), entry, module.__name__))
    entries: dict[str, ModelEntry] = {}
    owner: dict[str, str] = {}
    for _, _, entry, module_name in sorted(found, key=lambda item: item[:2]):
        if entry.name in entries:
            raise ModelError(f"zoo model name {entry.name!r} is declared by both {owner[entry.name]} and {module_name}")
        entries[entry.name] = entry
        owner[entry.name] = module_name
    return entries


ENTRIES: dict[str, ModelEntry] = discover()
DEFAULT_MODEL = "bayesnet"
