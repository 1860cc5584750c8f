"""`smallguard models`: every bundle in a repository, and whether it would load (and why not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smallguard.server.bundle.loader import bundle_folders, load_bundle
from smallguard.server.core.models import LoadedModel
from smallguard.server.domain.errors import BundleError
from smallguard.server.settings import Settings
from smallguard.verifiers import VerifierRegistry


def add_models_command(commands: Any) -> None:
    """Register the sub-command (``commands`` is the parser's sub-parsers object)."""
    parser = commands.add_parser("models", help="list the bundles in a repository and whether they load")
    parser.set_defaults(run=lambda _args, settings: models_command(settings))
    parser.add_argument("--model-repository", dest="model_repository", default=None,
                        help="folder of bundles (default: the shipped models)")


def scan(root: Path, registry: VerifierRegistry, settings: Settings) -> list[tuple[Path, LoadedModel | BundleError]]:
    """Try every bundle, as ``serve`` would load it; report each one's model or the reason it would be refused."""
    results: list[tuple[Path, LoadedModel | BundleError]] = []
    for folder in bundle_folders(root):
        try:
            results.append((folder, LoadedModel.ready(load_bundle(folder, registry, settings.intra_op_threads))))
        except BundleError as exc:
            results.append((folder, exc))
    return results


def models_command(settings: Settings) -> int:
    registry = VerifierRegistry.discover()
    root = Path(settings.model_repository)
    print(f"model repository: {root}")
    print(f"verifiers: {', '.join(registry.names())}")
    for name, problem in sorted(registry.failures.items()):
        print(f"verifier {name} unavailable: {problem}")
    try:
        results = scan(root, registry, settings)
    except Exception as exc:
        print(f"cannot read the repository: {exc}")
        return 2
    refused = 0
    for folder, result in results:
        if isinstance(result, BundleError):
            refused += 1
            print(f"  REFUSED {folder.name}: {result}")
            continue
        spec = result.spec
        calibration = (f"{result.calibration.method}, threshold {result.threshold:.4f}"
                       if result.calibration else "UNCALIBRATED (opted out)")
        verifiers = ", ".join(f"{v.spec.name}({v.spec.on_fail.name.lower()})" for v in result.verifiers) or "none"
        print(f"  OK      {spec.name} {spec.version} [{spec.kind.value}] calibration: {calibration}; "
              f"verifiers: {verifiers}")
    if not results:
        print("  no bundles found")
    return 1 if refused or not results else 0


