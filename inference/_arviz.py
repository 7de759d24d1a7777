"""ArviZ, imported once the way every caller here needs it.

ArviZ 0.23 warns, once a day per user, that a refactor is coming (a ``FutureWarning`` printed by its
``__init__``). A person running ``genzoo compare`` reads it in the middle of the progress bars and
can do nothing about it: the warning concerns ArviZ's own interface, which only this package
calls. It is silenced here, by its text, for the import alone; any other warning passes.
"""

from __future__ import annotations

import warnings

_REFACTOR_NOTICE = r"\s*ArviZ is undergoing a major refactor"


def arviz():
    """The ``arviz`` module, imported without its refactor notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_REFACTOR_NOTICE, category=FutureWarning)
        import arviz as az
    return az
