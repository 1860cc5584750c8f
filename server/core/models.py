"""The served models: each bundle's parts with the head that runs them per request, by name.

``LoadedModel.ready`` turns a loaded bundle into a model that can answer: it builds the head for
the bundle's kind and warms it up on one example, so the first real request does not pay for
lazy set-up and an adapter that cannot run refuses the bundle at start-up, not on a caller.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from smallguard.server.bundle.loader import BoundVerifier, LoadedBundle
from smallguard.server.bundle.onnx_session import OnnxModel
from smallguard.server.calibration import Calibration
from smallguard.server.core.classifier import ClassifierHead
from smallguard.server.core.extractor import ExtractorHead
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.errors import BundleError, ModelNotFoundError, echoed
from smallguard.server.observability.drift import DriftMonitor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    spec: BundleSpec
    onnx: OnnxModel
    head: ClassifierHead | ExtractorHead
    calibration: Calibration | None
    verifiers: tuple[BoundVerifier, ...]
    distributions: Mapping[str, str]  # verifier name -> "dist==version"
    drift: DriftMonitor | None  # None: no reference profile, drift is not monitored
    # Whether concurrent calls may be served as one batch: a classifier whose rows get the same floats in a
    # batch as alone (checked at load), every verifier inline (a batch must not wait on a plugin's pool thread).
    # An extractor's head runs the model once per text anyway: batching its calls would only queue them.
    batches_exactly: bool = False

    @classmethod
    def ready(cls, bundle: LoadedBundle) -> LoadedModel:
        """The bundle with its head, warmed up; BundleError when the warm-up run fails."""
        spec = bundle.spec
        head: ClassifierHead | ExtractorHead
        if bundle.adapter is None:
            head = ClassifierHead(bundle.onnx, spec.labels, spec.output_type, bundle.calibration, spec.policy.top_k)
            example, where = bundle.onnx.example(spec.inputs), spec.model_path
        else:
            head = ExtractorHead(bundle.onnx, bundle.adapter, bundle.calibration)
            example = {spec.inputs[0].name: np.array(["Invoice 1 total 1.00"], dtype=object)}
            where = bundle.adapter.path
        try:  # through the head, so an output it cannot read refuses the bundle here, not on every request
            head.predict(example)
        except Exception as exc:  # an adapter is the bundle's own code: any failure refuses the bundle
            raise BundleError(f"warm-up run failed: {type(exc).__name__}: {exc}", where) from None
        exact = (isinstance(head, ClassifierHead) and all(bound.inline for bound in bundle.verifiers)
                 and _rows_stand_alone(head, bundle.onnx.probes(spec.inputs), spec))
        return cls(spec, bundle.onnx, head, bundle.calibration, bundle.verifiers, bundle.distributions, bundle.drift,
                   exact)

    @property
    def threshold(self) -> float:
        if self.calibration is not None:
            return self.calibration.threshold
        return self.spec.policy.threshold or 0.0


BATCH_SIZES = (2, 3, 5, 8, 16, 64)  # the batches a load checks: the sizes concurrent calls make, and more


def _rows_stand_alone(head: ClassifierHead, probes: dict[str, np.ndarray] | None, spec: BundleSpec) -> bool:
    """Whether every row of a batch gets from the head (the model run, calibration, top k) the very result it
    gets alone, in batches of each of BATCH_SIZES rows that one run may take. Calls are served together only for
    such a model: otherwise a caller's confidence could depend on who else was calling."""
    if probes is None:
        return False
    rows = len(next(iter(probes.values())))
    try:
        alone = [head.predict({name: values[i:i + 1] for name, values in probes.items()}) for i in range(rows)]
        for size in (size for size in BATCH_SIZES if size <= rows):
            if head.predict_batch({name: values[:size] for name, values in probes.items()}) != alone[:size]:
                log.info("%s: a row's result in a batch of %d differs from its result alone; its concurrent calls "
                         "are each served alone", spec.name, size)
                return False
    except Exception as exc:  # the probes are not this model's kind of input: serve its calls one by one
        log.info("%s: its batches could not be checked (%s: %s); its concurrent calls are each served alone",
                 spec.name, type(exc).__name__, exc)
        return False
    return True


class ModelRepository:
    """The loaded models by name; read-only once built, so request threads share it freely."""

    def __init__(self, models: Mapping[str, LoadedModel]) -> None:
        self._models = dict(models)

    def get(self, name: str, version: str = "") -> LoadedModel:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFoundError(f"no model named {echoed(name)}; loaded models: {known}")
        if version and version != model.spec.version:
            raise ModelNotFoundError(f"model {name!r} is loaded at version {model.spec.version}, "
                                     f"not {echoed(version)}")
        return model

    def specs(self) -> dict[str, BundleSpec]:
        return {name: model.spec for name, model in self._models.items()}

    def __iter__(self) -> Iterator[LoadedModel]:
        return iter(self._models[name] for name in sorted(self._models))

    def __len__(self) -> int:
        return len(self._models)
