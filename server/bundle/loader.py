"""Loading a bundle folder at start-up: its spec, ONNX session, adapter, calibration, verifiers and
drift monitor, each checked, or one BundleError naming the file and the problem.

A server that silently skips a model is worse than one that does not start, so the first part
that cannot load refuses the bundle. What the parts become per request (the model's head, the
Guard) is the core's business: ``smallguard.server.core.models``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from smallguard.server.bundle.adapter import Adapter, load_adapter
from smallguard.server.bundle.bundle_file import read_bundle
from smallguard.server.bundle.onnx_session import OnnxModel
from smallguard.server.calibration import Calibration, CalibrationError, load_calibration
from smallguard.server.domain.bundle_spec import BUNDLE_FILE, BundleSpec, VerifierSpec
from smallguard.server.domain.errors import BundleError
from smallguard.server.observability.drift import DriftMonitor, DriftReferenceError, load_monitor
from smallguard.verifiers import BundleInfo, Verifier, VerifierRegistry


@dataclass(frozen=True, slots=True)
class BoundVerifier:
    """A bundle's verifier entry with the verifier object built from its params."""

    spec: VerifierSpec
    verifier: Verifier
    inline: bool  # the verifier declares ``inline = True``: run on the request's thread (see core.verifier_runner)


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    """Every part of one bundle, loaded and checked against the others."""

    spec: BundleSpec
    onnx: OnnxModel
    adapter: Adapter | None  # extractors only
    calibration: Calibration | None
    verifiers: tuple[BoundVerifier, ...]
    distributions: Mapping[str, str]  # verifier name -> "dist==version"
    drift: DriftMonitor | None  # None: no reference profile, drift is not monitored


def load_bundle(folder: Path, registry: VerifierRegistry, intra_op_threads: int) -> LoadedBundle:
    """Load one bundle folder; raise BundleError naming the file and the problem."""
    spec = read_bundle(folder)
    calibration = None
    if spec.calibration_path is not None:
        try:
            calibration = load_calibration(spec.calibration_path)
        except CalibrationError as exc:
            raise BundleError(exc.problem, spec.calibration_path) from None
    verifiers = []
    info = BundleInfo(spec.name, spec.kind, spec.fields, spec.labels)
    for entry in spec.verifiers:
        try:
            verifier = registry.build(entry.use, entry.params, info)
            verifiers.append(BoundVerifier(entry, verifier, getattr(verifier, "inline", False) is True))
        except Exception as exc:  # unknown name, bad params, or a factory that blew up
            raise BundleError(f"verifier {entry.name!r}: {exc}", spec.file) from None
    onnx = OnnxModel(spec, intra_op_threads=intra_op_threads)
    adapter = None
    if spec.is_extractor:
        assert spec.adapter_path is not None  # bundle_file requires one for an extractor
        adapter = load_adapter(spec.adapter_path, spec.fields)
        if calibration is not None:
            missing = [name for name in spec.fields if name not in calibration.fields]
            if missing:
                raise BundleError(f"no calibration for field(s) {', '.join(missing)}",
                                  spec.calibration_path or spec.folder)
    elif onnx.output_width not in (-1, len(spec.labels)):
        raise BundleError(f"output {spec.output_name!r} has {onnx.output_width} columns but bundle.yaml lists "
                          f"{len(spec.labels)} labels", spec.model_path)
    distributions = {entry.name: registry.distribution(entry.use) for entry in spec.verifiers}
    try:
        drift = load_monitor(spec)
    except DriftReferenceError as exc:
        raise BundleError(exc.problem, exc.where or spec.folder) from None
    return LoadedBundle(spec, onnx, adapter, calibration, tuple(verifiers), distributions, drift)


def bundle_folders(root: Path) -> list[Path]:
    """Sub-folders that hold a bundle.yaml; hidden and private folders are not bundles."""
    if not root.is_dir():
        raise BundleError("the model repository folder does not exist", root)
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / BUNDLE_FILE).is_file())
