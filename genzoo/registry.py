"""The catalogue: model name -> how to build it, its default data, and the methods that apply.

An entry never holds results or state; it knows how to make a :class:`Problem` (a model plus its
data, from the options a user gives) and which functions of :mod:`inference` run on it.
Adding a model to the zoo is adding one file ``genzoo/zoo/<name>.py`` that defines a module-level
``ENTRY`` (a :class:`ModelEntry`) or ``ENTRIES`` (a tuple of them); :mod:`genzoo.zoo` finds it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from inference.errors import DataError, GenzooError, ModelError, UnknownNameError
from inference.result import Result


@dataclasses.dataclass(frozen=True)
class Option:
    """A model option settable from the command line as ``--name value``."""

    default: Any
    help: str
    type: Callable[[str], Any] = str

    def parse(self, value: Any, name: str) -> Any:
        """``value`` converted by ``type`` when it is text (from the command line), or a
        :class:`~inference.errors.DataError` naming ``name`` and the type expected."""
        if not isinstance(value, str):
            return value
        try:
            return self.type(value)
        except GenzooError:
            raise
        except (TypeError, ValueError) as err:
            expected = {int: "an integer", float: "a number"}.get(self.type, getattr(self.type, "__name__", "a value"))
            raise DataError(f"{name} expects {expected}, got {value!r}") from err


@dataclasses.dataclass(frozen=True)
class Problem:
    """A model with the data it is asked about.

    Attributes:
        model: the model object (a ``BayesNet``, an ``HMM``...).
        data: what the methods condition on (evidence for a BN, observations for an HMM).
        description: one line saying what the problem is, for tables and plots.
        program_kwargs: keyword arguments that make ``model.model(**program_kwargs)`` runnable, for
            rendering the program's graph.
        state_names: site -> the names of its states (``{"z": ("fair", "loaded")}``), for printing
            marginals; a model's own ``states`` (a Bayesian network's) is read where this is empty.
    """

    model: Any
    data: Any = None
    description: str = ""
    program_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    state_names: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What a user sets for one run: the seed of all randomness, a step / sample budget, a progress bar."""

    seed: int = 0
    steps: int | None = None
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Method:
    """One way of answering a problem.

    ``kind`` says what the Result holds: ``"marginals"`` (posterior marginals, comparable with the
    exact ones), ``"posterior"`` (a continuous posterior: samples or stated moments, comparable with
    the reference's), ``"bound"`` (a bound or estimate of the log-evidence), ``"map"`` (a most probable assignment), ``"fit"`` (learned parameters),
    ``"samples"``.
    """

    name: str
    description: str
    fn: Callable[[Problem, RunConfig], Result]
    kind: str = "marginals"


@dataclasses.dataclass(frozen=True)
class Question:
    """One question a comparison answers, and the method whose answer the others are measured against.

    A model can be asked several things: an HMM's state posterior given known parameters is one
    question (forward-backward answers it exactly), learning its parameters from the data another
    (a long NUTS run is the reference). ``genzoo compare`` prints one table per question, each titled.

    Attributes:
        name: a short tag (``"states"``), used in run-folder names and ``metrics.json``.
        title: what the table answers, one line.
        methods: the methods that answer it, the reference among them.
        reference: the method the others are measured against.
    """

    name: str
    title: str
    methods: tuple[str, ...]
    reference: str


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model of the zoo.

    Attributes:
        name: the registry key (``genzoo run NAME``).
        family: e.g. ``"Bayesian network"``.
        description: one line.
        dataset: what the default problem is made of (embedded data or a simulation).
        make_problem: ``(options, seed) -> Problem``.
        methods: the methods that apply, in display order.
        exact_method: the name of the method whose answer is exact, or None.
        options: the options ``make_problem`` reads.
        sample: ``(problem, seed, n) -> dict of arrays | image array``, draws from the model.
        graph: ``(option values) -> graph spec`` (as :func:`genzoo.render.graph_spec` returns), for
            ``genzoo info --render`` where tracing the problem's program would not do: a model that
            must be trained first (the spec comes from the untrained program) or whose traced program
            has no drawable DAG. None: the problem's ``model.model(**program_kwargs)`` is traced.
        doc: the object whose docstring teaches the model (its class).
        quick: options and ``steps`` for ``genzoo compare --all`` (the zoo's report card at small sizes),
            e.g. ``{"network": "asia", "steps": 2000}``.
        order: the display position in ``genzoo list`` (smaller first; ties keep the discovery order,
            module name then position in the module's ``ENTRIES``).
        questions: where the methods answer different questions, one :class:`Question` each (every
            method in exactly one); empty: one question, answered exactly by ``exact_method``.
    """

    name: str
    family: str
    description: str
    dataset: str
    make_problem: Callable[[Mapping[str, Any], int], Problem]
    methods: tuple[Method, ...]
    exact_method: str | None = None
    options: Mapping[str, Option] = dataclasses.field(default_factory=dict)
    sample: Callable[[Problem, int, int], Any] | None = None
    graph: Callable[[Mapping[str, Any]], dict] | None = None
    doc: Any = None
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    order: int = 100
    questions: tuple[Question, ...] = ()

    def __post_init__(self):
        names = [m.name for m in self.methods]
        if self.questions:
            asked = [m for q in self.questions for m in q.methods]
            stray = sorted(set(asked) - set(names)) or sorted(n for n in set(asked) if asked.count(n) > 1) \
                or sorted(set(names) - set(asked))
            if stray or any(q.reference not in q.methods for q in self.questions):
                raise ModelError(f"model {self.name!r}: every method must answer exactly one question, and each "
                                 f"question's reference must be one of its methods (check {stray or 'the references'})")

    def doc_object(self) -> Any:
        """The object whose docstring teaches the model (usually its class): ``doc``, or what ``doc``
        returns where it is a function (an entry imports its model's module only when asked)."""
        import inspect

        return self.doc() if callable(self.doc) and not inspect.isclass(self.doc) else self.doc

    def question_of(self, method: str) -> Question | None:
        """The question ``method`` answers (None for an entry of one question)."""
        return next((q for q in self.questions if method in q.methods), None)

    def reference_of(self, method: str) -> str | None:
        """The method ``method`` is measured against: its question's reference, else ``exact_method``."""
        question = self.question_of(method)
        return question.reference if question is not None else self.exact_method

    def method(self, name: str) -> Method:
        for method in self.methods:
            if method.name == name:
                return method
        raise UnknownNameError(
            f"model {self.name!r} has no method {name!r}; its methods: "
            + ", ".join(m.name for m in self.methods)
        )

    def problem(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> Problem:
        """The problem for these options (defaults filled in; unknown options rejected)."""
        return self.make_problem(self.values(options), seed)

    def values(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option's value: those given (text converted by the option's type), defaults for
        the rest; an unknown option or a value of the wrong type is a typed error naming it."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(f"--{k}" for k in self.options) or "none"
            raise UnknownNameError(f"model {self.name!r} has no option --{unknown[0]}; its options: {known}")
        values = {k: opt.default for k, opt in self.options.items()}
        for key, value in options.items():
            values[key] = self.options[key].parse(value, f"model {self.name!r}: option --{key}")
        return values

    @property
    def comparable_methods(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.methods if m.kind in ("marginals", "posterior", "bound"))


def lookup(name: str, entries: Mapping[str, ModelEntry]) -> ModelEntry:
    if name not in entries:
        raise UnknownNameError(f"unknown model {name!r}; the zoo has: {', '.join(entries)}")
    return entries[name]
