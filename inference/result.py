"""One small record for the output of every inference and learning method."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

EVIDENCE_KINDS = ("exact", "lower_bound", "estimate")
#: packages whose objects (fitted models in ``Result.params``) :meth:`Result.to_json` writes: by
#: their ``to_dict`` / ``from_dict`` pair where the class has one, else by their attributes
MODEL_PACKAGES = ("pgm", "inference", "deep")


def _to_numpy(tree):
    """Arrays (NumPy, JAX, torch) to NumPy, recursively through dicts, lists and tuples."""
    if isinstance(tree, Mapping):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_numpy(v) for v in tree)
    if hasattr(tree, "detach"):  # torch
        return tree.detach().cpu().numpy()
    if hasattr(tree, "__array__") and not isinstance(tree, (np.ndarray, np.generic)):
        return np.asarray(tree)
    return tree


@dataclasses.dataclass(frozen=True)
class Result:
    """What a method produced, with how long it took and how well it went.

    Attributes:
        method: name of the method, e.g. ``"exact"``, ``"loopy_bp"``, ``"nuts"``.
        marginals: site -> array of posterior marginal probabilities
            :math:`p(x_s = k \\mid e)`, last axis over the states of the site.
        samples: site -> array with a leading sample axis (draws from the posterior or model).
        params: learned parameters (a pytree of arrays, or a model object).
        map: site -> value of the most probable assignment (MAP / MPE / Viterbi path).
        log_evidence: :math:`\\log p(e)`, exact or a bound or an estimate as ``log_evidence_kind`` says.
        log_evidence_kind: one of ``"exact"``, ``"lower_bound"``, ``"estimate"`` (None when absent).
        history: the objective per step (log-likelihood for EM, loss for SVI), oldest first.
        seconds: wall-clock seconds of the run.
        diagnostics: anything else worth reporting (convergence, acceptance rate, R-hat, ESS...).
    """

    method: str
    marginals: dict[str, Any] = dataclasses.field(default_factory=dict)
    samples: dict[str, Any] = dataclasses.field(default_factory=dict)
    params: Any = None
    map: dict[str, Any] = dataclasses.field(default_factory=dict)
    log_evidence: float | None = None
    log_evidence_kind: str | None = None
    history: Any = None
    seconds: float = 0.0
    diagnostics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.log_evidence_kind is not None and self.log_evidence_kind not in EVIDENCE_KINDS:
            raise ValueError(
                f"log_evidence_kind must be one of {EVIDENCE_KINDS}, got {self.log_evidence_kind!r}"
            )
        if self.log_evidence is not None and self.log_evidence_kind is None:
            raise ValueError("a log_evidence needs its log_evidence_kind (exact, lower_bound, estimate)")

    # ------------------------------------------------------------------ arviz
    def to_arviz(self):
        """The samples as an ``arviz.InferenceData`` (posterior group).

        The leading sample axis is split into ``(chain, draw)`` using ``diagnostics["num_chains"]``
        (one chain when absent).
        """
        if not self.samples:
            raise ValueError(f"Result of method {self.method!r} holds no samples to convert")
        from inference._arviz import arviz

        az = arviz()

        chains = int(self.diagnostics.get("num_chains", 1))
        posterior = {}
        for site, value in _to_numpy(self.samples).items():
            value = np.asarray(value)
            n = value.shape[0]
            if n % chains:
                raise ValueError(f"site {site!r}: {n} samples do not split into {chains} chains")
            posterior[site] = value.reshape((chains, n // chains) + value.shape[1:])
        return az.from_dict(posterior=posterior)

    # ------------------------------------------------------------------- json
    def to_json(self) -> str:
        """A JSON string that :meth:`from_json` reads back into an equal Result: arrays keep their
        dtype and every bit (floats as Python's shortest round-trip repr), inf / nan included; a
        fitted model in ``params`` (an object of a :data:`MODEL_PACKAGES` class) is written by its
        ``to_dict`` or its attributes and rebuilt as an object of the same class."""
        return json.dumps(_encode(dataclasses.asdict(self) | {"params": self.params}))

    @classmethod
    def from_json(cls, text: str) -> "Result":
        data = _decode(json.loads(text))
        return cls(**data)

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"method: {self.method}  ({self.seconds:.3f} s)"]
        if self.log_evidence is not None:
            lines.append(f"log evidence ({self.log_evidence_kind}): {self.log_evidence:.6f}")
        for name, field in (("marginals", self.marginals), ("samples", self.samples), ("map", self.map)):
            if field:
                lines.append(f"{name}: {len(field)} sites")
        if self.history is not None and len(self.history):
            lines.append(f"objective: {float(self.history[0]):.6g} -> {float(self.history[-1]):.6g}")
        return "\n".join(lines)


def _encode(obj):
    obj = _to_numpy(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return {"__ndarray__": [_encode(x) for x in obj.tolist()], "dtype": "object", "shape": list(obj.shape)}
        flat = [_encode_scalar(x) for x in obj.ravel().tolist()]
        return {"__ndarray__": flat, "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return _encode(np.asarray(obj))
    if isinstance(obj, Mapping):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(x) for x in obj]}
    if isinstance(obj, list):
        return [_encode(x) for x in obj]
    if isinstance(obj, float):
        return _encode_scalar(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    cls = type(obj)
    if cls.__module__.split(".")[0] in MODEL_PACKAGES:
        path = f"{cls.__module__}:{cls.__qualname__}"
        if hasattr(obj, "to_dict") and hasattr(cls, "from_dict"):
            return {"__object__": path, "dict": _encode(obj.to_dict())}
        if hasattr(obj, "__dict__"):
            return {"__object__": path, "state": _encode(vars(obj))}
    raise TypeError(f"cannot write a {cls.__name__} to JSON")


def _encode_scalar(x):
    if isinstance(x, float) and not math.isfinite(x):
        return {"__float__": repr(x)}
    return x


def _decode(obj):
    if isinstance(obj, list):
        return [_decode(x) for x in obj]
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            if obj["dtype"] == "object":
                return np.array([_decode(x) for x in obj["__ndarray__"]], dtype=object).reshape(obj["shape"])
            values = [_decode(x) for x in obj["__ndarray__"]]
            return np.array(values, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
        if "__dict__" in obj:
            return {_hashable(_decode(k)): _decode(v) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(x) for x in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__object__" in obj:
            return _decode_object(obj)
        raise ValueError(f"unknown JSON object in a Result: keys {sorted(obj)}")
    return obj


def _decode_object(obj):
    """A model object written by :func:`_encode`: its class imported by name (only from
    :data:`MODEL_PACKAGES`), then ``from_dict`` or its attributes restored as they were."""
    import importlib

    module, _, qualname = obj["__object__"].partition(":")
    if module.split(".")[0] not in MODEL_PACKAGES:
        raise ValueError(f"a Result's JSON names the class {obj['__object__']!r}, outside {MODEL_PACKAGES}")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    if "dict" in obj:
        return cls.from_dict(_decode(obj["dict"]))
    instance = cls.__new__(cls)
    instance.__dict__.update(_decode(obj["state"]))
    return instance


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key
