"""The model repository: every bundle in a folder, loaded, checked and warmed up at start-up.

Loading is all or nothing: the first bundle that cannot load stops start-up with a message
naming its file and the problem, because a server that silently skips a model is worse than
one that does not start. ``scan`` reports every bundle's state for ``smallguard models``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smallguard.server.adapter import load_adapter
from smallguard.server.bundle import BUNDLE_FILE, BundleSpec, read_bundle
from smallguard.server.calibration import Calibration, CalibrationError, load_calibration
from smallguard.server.classifier import ClassifierHead
from smallguard.server.drift import DriftMonitor, DriftReferenceError, load_monitor
from smallguard.server.errors import BundleError, ModelNotFoundError
from smallguard.server.extractor import ExtractorHead
from smallguard.server.runtime import OnnxModel
from smallguard.server.verification import BoundVerifier
from smallguard.verifiers import VerifierRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    spec: BundleSpec
    onnx: OnnxModel
    head: ClassifierHead | ExtractorHead
    calibration: Calibration | None
    verifiers: tuple[BoundVerifier, ...]
    distributions: Mapping[str, str]  # verifier name -> "dist==version"
    drift: DriftMonitor | None = None  # None: no reference profile, drift is not monitored

    @property
    def threshold(self) -> float:
        if self.calibration is not None:
            return self.calibration.threshold
        return self.spec.policy.threshold or 0.0


def load_bundle(folder: Path, registry: VerifierRegistry, intra_op_threads: int = 1) -> LoadedModel:
    """Load one bundle folder; raise BundleError naming the file and the problem."""
    spec = read_bundle(folder)
    calibration = None
    if spec.calibration_path is not None:
        try:
            calibration = load_calibration(spec.calibration_path)
        except CalibrationError as exc:
            raise BundleError(spec.calibration_path, str(exc)) from None
    verifiers = []
    for entry in spec.verifiers:
        try:
            verifiers.append(BoundVerifier(entry, registry.build(entry.use, entry.params)))
        except Exception as exc:  # unknown name, bad params, or a factory that blew up
            raise BundleError(spec.file, f"verifier {entry.name!r}: {exc}") from None
    onnx = OnnxModel(spec, intra_op_threads=intra_op_threads)
    head = _head(spec, onnx, calibration)
    distributions = {entry.name: registry.distribution(entry.use) for entry in spec.verifiers}
    try:
        drift = load_monitor(spec)
    except DriftReferenceError as exc:
        raise BundleError(exc.path or spec.folder, exc.problem) from None
    return LoadedModel(spec, onnx, head, calibration, tuple(verifiers), distributions, drift)


def _head(spec: BundleSpec, onnx: OnnxModel, calibration: Calibration | None) -> ClassifierHead | ExtractorHead:
    """The head for the bundle's kind, checked against the model and warmed up on one example."""
    if spec.adapter_path is None:
        if onnx.output_width not in (-1, len(spec.labels)):
            raise BundleError(spec.model_path, f"output {spec.output_name!r} has {onnx.output_width} columns but "
                                               f"bundle.yaml lists {len(spec.labels)} labels")
        onnx.warm_up(spec.inputs)
        return ClassifierHead(onnx, spec.labels, spec.output_type, calibration, spec.policy.top_k)
    adapter = load_adapter(spec.adapter_path, spec.fields)
    if calibration is not None:
        missing = [name for name in spec.fields if name not in calibration.fields]
        if missing:
            raise BundleError(spec.calibration_path or spec.folder, f"no calibration for field(s) {', '.join(missing)}")
    head = ExtractorHead(onnx, adapter, calibration)
    try:
        head.predict({spec.inputs[0].name: np.array(["Invoice 1 total 1.00"], dtype=object)})
    except Exception as exc:  # the adapter is the bundle's own code: any failure refuses the bundle
        raise BundleError(spec.adapter_path, f"warm-up run failed: {type(exc).__name__}: {exc}") from None
    return head


def bundle_folders(root: Path) -> list[Path]:
    """Sub-folders that hold a bundle.yaml; hidden and private folders are not bundles."""
    if not root.is_dir():
        raise BundleError(root, "the model repository folder does not exist")
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / BUNDLE_FILE).is_file())


def scan(root: Path, registry: VerifierRegistry) -> list[tuple[Path, LoadedModel | BundleError]]:
    """Try every bundle; report each one's model or the reason it would be refused."""
    results: list[tuple[Path, LoadedModel | BundleError]] = []
    for folder in bundle_folders(root):
        try:
            results.append((folder, load_bundle(folder, registry)))
        except BundleError as exc:
            results.append((folder, exc))
    return results


class ModelRepository:
    """The loaded models by name; read-only once built, so request threads share it freely."""

    def __init__(self, models: Mapping[str, LoadedModel]) -> None:
        self._models = dict(models)

    @classmethod
    def load(cls, root: Path, registry: VerifierRegistry, intra_op_threads: int = 1) -> ModelRepository:
        models: dict[str, LoadedModel] = {}
        for folder in bundle_folders(root):
            model = load_bundle(folder, registry, intra_op_threads)
            name = model.spec.name
            if name in models:
                raise BundleError(model.spec.file, f"model name {name!r} is already used by "
                                                   f"{models[name].spec.file}")
            models[name] = model
            log.info("loaded model %s %s from %s", name, model.spec.version, folder)
        if not models:
            raise BundleError(root, f"no bundles found: expected sub-folders holding a {BUNDLE_FILE}")
        return cls(models)

    def get(self, name: str, version: str = "") -> LoadedModel:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFoundError(f"no model named {name!r}; loaded models: {known}")
        if version and version != model.spec.version:
            raise ModelNotFoundError(f"model {name!r} is loaded at version {model.spec.version}, "
                                     f"not {version!r}")
        return model

    def __iter__(self) -> Iterator[LoadedModel]:
        return iter(self._models[name] for name in sorted(self._models))

    def __len__(self) -> int:
        return len(self._models)
