"""An extractor bundle's adapter: the bundle's own Python that turns text into the model's
tensors and the model's outputs into typed field values.

Tokenisation and normalisation belong to the model (they were fixed when it was trained),
so they ship in the bundle folder beside model.onnx, as Triton's Python backend keeps a
model.py beside its model. The module is loaded once, at start-up, from the bundle's
``adapter:`` file, and must define::

    FIELDS: tuple[str, ...]
    def encode(text: str) -> dict[str, numpy.ndarray]          # the model's feeds
    def decode(text: str, outputs: dict[str, numpy.ndarray]) -> dict[str, tuple[str | None, float]]

``decode`` gives each field's typed value (None when absent) and a raw score in [0, 1].
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from smallguard.server.domain.errors import BundleError

RawField = tuple[str | None, float]


@dataclass(frozen=True, slots=True)
class Adapter:
    path: Path
    fields: tuple[str, ...]
    _encode: Callable[[str], Mapping[str, np.ndarray]]
    _decode: Callable[[str, Mapping[str, np.ndarray]], Mapping[str, RawField]]

    def encode(self, text: str) -> dict[str, np.ndarray]:
        return dict(self._encode(text))

    def decode(self, text: str, outputs: Mapping[str, np.ndarray]) -> dict[str, RawField]:
        """Every field's value and raw score, checked: an adapter bug is an error here, not a wrong answer."""
        decoded = self._decode(text, outputs)
        missing = [name for name in self.fields if name not in decoded]
        if missing:
            raise ValueError(f"{self.path}: decode() returned no entry for field(s) {', '.join(missing)}")
        checked = {}
        for name in self.fields:
            value, score = decoded[name]
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{self.path}: decode() gave field {name!r} the value {value!r}; expected str or None")
            score = float(score)
            if not math.isfinite(score) or not 0.0 <= score <= 1.0:
                raise ValueError(f"{self.path}: decode() gave field {name!r} the score {score}; expected [0, 1]")
            checked[name] = (value, score)
        return checked


def load_adapter(path: Path, fields: tuple[str, ...]) -> Adapter:
    """Import the adapter module from its file; raise BundleError naming it and the problem."""
    module = _import(path)
    declared = getattr(module, "FIELDS", None)
    if not isinstance(declared, tuple | list) or tuple(declared) != fields:
        raise BundleError(f"FIELDS is {declared!r}; bundle.yaml lists fields {list(fields)} (same order)", path)
    for name in ("encode", "decode"):
        if not callable(getattr(module, name, None)):
            raise BundleError(f"defines no function {name}(); an adapter needs encode(text) and "
                              "decode(text, outputs)", path)
    return Adapter(path, fields, module.encode, module.decode)


def _import(path: Path) -> ModuleType:
    # A name unique to the file, so two bundles' adapters never share a module.
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"smallguard_adapter_{digest}", path)
    if spec is None or spec.loader is None:
        raise BundleError("cannot be imported as a Python module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look a class's module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the bundle's code may raise anything on import
        del sys.modules[spec.name]
        raise BundleError(f"importing it raised {type(exc).__name__}: {exc}", path) from None
    return module
