"""The model contracts the inference layer reads, declared as ``typing.Protocol`` classes.

An algorithm knows a program and one of these contracts, never a model class (see DESIGN.md,
"The inference layer"). Each is ``runtime_checkable``: ``isinstance(model, ChainModel)`` says
whether ``model`` has the methods (not their signatures), and that one check is how
:mod:`inference.exact` routes a query and how :func:`inference.em.fit` and the training loop
tell what they were given. No model needs to inherit from them. On a query's hot path use
:func:`conforms` instead: the same answer, decided once per class (an ``isinstance`` check against a
runtime protocol inspects every member each time, tens of microseconds).

=========================  ======================================  ==============================
contract                   methods                                 read by
=========================  ======================================  ==============================
:class:`ChainModel`        ``chain(x, lengths=None)``              ``inference.chain``, ``exact``
:class:`FactorGraphModel`  ``factor_graph()``                      ``exact``, ``bp``, ``gibbs``, ...
:class:`EMModel`           ``expected_stats``, ``from_stats``      ``inference.em.fit``
:class:`PyroModelWithGuide` ``model(*a, **k)``, ``guide(*a, **k)``  ``inference.svi``, the loop
=========================  ======================================  ==============================

Example:
    >>> import numpy as np
    >>> from inference.factors import Factor, FactorGraph
    >>> from inference.protocols import ChainModel, FactorGraphModel
    >>> class Coin:
    ...     def factor_graph(self):
    ...         return FactorGraph({"c": ("h", "t")}, [Factor(("c",), np.log([0.5, 0.5]))], directed=True)
    >>> isinstance(Coin(), FactorGraphModel), isinstance(Coin(), ChainModel)
    (True, False)
"""

from __future__ import annotations

import functools
from typing import Any, Protocol, runtime_checkable

__all__ = ["ChainModel", "FactorGraphModel", "EMModel", "PyroModelWithGuide", "conforms"]


def conforms(obj, protocol) -> bool:
    """``isinstance(obj, protocol)`` for these method-only protocols, cached per class of ``obj``
    (the methods are looked up on the class, as ``issubclass`` does)."""
    return _class_conforms(type(obj), protocol)


@functools.lru_cache(maxsize=512)
def _class_conforms(cls, protocol) -> bool:
    return issubclass(cls, protocol)


@runtime_checkable
class ChainModel(Protocol):
    """A hidden Markov chain: its observations folded into three log-space arrays.

    ``chain(x, lengths=None)`` returns a :class:`~inference.chain.ChainPotentials` for the
    observations ``x`` (one sequence ``(T, ...)`` or a padded batch ``(N, T, ...)`` with
    ``lengths``): :math:`\\log \\pi` (K,), :math:`\\log A` (K, K) and
    :math:`\\log p(x_t \\mid z_t = k)` (N, T, K). Everything :mod:`inference.chain` does
    (forward-backward, Viterbi, forward-filter backward-sample) reads only those arrays.
    """

    def chain(self, x, lengths=None) -> Any:
        """The chain potentials of observations ``x`` (see the class docstring)."""


@runtime_checkable
class FactorGraphModel(Protocol):
    """A discrete model with a factor-graph structure (a Bayesian network, an MRF).

    ``factor_graph()`` returns its :class:`~inference.factors.FactorGraph`: named variables with
    named states and log-tables :math:`\\log \\phi_f(x_{S_f})`, with
    :math:`\\tilde p(x) = \\prod_f \\phi_f(x_{S_f})` (a Bayesian network's CPTs, ``directed=True``).
    Every discrete method (:mod:`inference.exact`, :mod:`inference.bp`, :mod:`inference.gibbs`,
    :mod:`inference.importance`, :mod:`inference.meanfield`) reads only that graph.
    """

    def factor_graph(self) -> Any:
        """The model's factor graph (see the class docstring)."""


@runtime_checkable
class EMModel(Protocol):
    """A model that declares its sufficient statistics, so that EM runs in closed form.

    EM maximises :math:`\\log p(x \\mid \\theta) + \\log p(\\theta)` by alternating

    - ``expected_stats(data) -> (stats, loglik)``: the E-step, :math:`\\bar s =
      \\mathbb{E}_{p(z \\mid x, \\theta)}[s(x, z)]` (any pytree) and :math:`\\log p(x \\mid \\theta)`;
    - ``from_stats(stats, **options) -> EMModel``: the M-step, the maximiser of
      :math:`\\mathbb{E}[\\log p(x, z \\mid \\theta)] + \\log p(\\theta)`, a new model.

    Optional methods, looked up when present: ``log_prior(**options)`` (:math:`\\log p(\\theta)`,
    0 when absent), ``data_is_complete(data)`` (then one M-step is the answer) and
    ``prepare_data(data)`` (checked and converted once, before the loop).
    """

    def expected_stats(self, data) -> tuple[Any, float]:
        """The E-step: ``(expected sufficient statistics, log-likelihood)``."""

    def from_stats(self, stats, **options) -> "EMModel":
        """The M-step: the model whose parameters maximise the expected complete-data objective."""


@runtime_checkable
class PyroModelWithGuide(Protocol):
    """A Pyro model that brings its own variational family (an amortised encoder, say).

    ``model(*args, **kwargs)`` is the generative program :math:`p_\\theta(x, z)` (its data enter
    through ``obs=``), ``guide(*args, **kwargs)`` the program :math:`q_\\phi(z \\mid x)` over the
    same latent sites, called with the same arguments. SVI maximises
    :math:`\\mathbb{E}_q[\\log p_\\theta(x, z) - \\log q_\\phi(z \\mid x)] \\le \\log p_\\theta(x)`.
    """

    def model(self, *args, **kwargs) -> Any:
        """The generative program."""

    def guide(self, *args, **kwargs) -> Any:
        """The variational program over the model's latent sites."""
