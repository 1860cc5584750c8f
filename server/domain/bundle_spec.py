"""What a model bundle declares: its inputs, outputs, policy and verifiers, as checked values.

``smallguard.server.bundle.bundle_file`` reads them from bundle.yaml; every layer above reads them
from here, so the shape of a bundle is defined once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallguard.server.domain.predictions import Decision
from smallguard.server.domain.tier_spec import TierSpec
from smallguard.verifiers import ModelKind

BUNDLE_FILE = "bundle.yaml"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared input, per example (the runtime adds the batch dimension)."""

    name: str
    kind: str = "tensor"  # "tensor" or "text"
    dtype: str = "float32"
    shape: tuple[int, ...] = ()
    min: float | None = None
    max: float | None = None
    max_chars: int = 0


@dataclass(frozen=True, slots=True)
class VerifierSpec:
    name: str
    use: str
    params: Mapping[str, Any]
    on_fail: Decision


@dataclass(frozen=True, slots=True)
class Policy:
    on_low_confidence: Decision = Decision.ABSTAIN
    top_k: int = 3
    verifier_timeout_ms: float = 100.0
    threshold: float | None = None  # only for uncalibrated bundles; otherwise calibration.json has it


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """How ground-truth feedback is judged (``feedback:`` in bundle.yaml; see observability/feedback/stats.py)."""

    tolerance: float = 0.05  # the |observed - estimated| accuracy gap the bundle tolerates
    alpha: float = 0.05  # level of the test; the observed accuracy's interval is 1 - alpha
    min_labelled: int = 30  # labelled answered predictions before the test may say "drifted"
    window: int = 1000  # the most recent labelled answered predictions that are compared


@dataclass(frozen=True, slots=True)
class DriftPolicy:
    """Live drift against the reference profile (``drift:`` in bundle.yaml; see server/observability/drift/)."""

    reference: str = "reference.json"  # in the bundle folder; missing: no drift monitoring
    window: int = 500  # the most recent predictions compared with the reference
    min_samples: int = 100  # predictions in the window before any score is reported
    psi_limit: float = 0.2  # confidence and input PSI past this: drifted
    escalation_rate_limit: float = 0.1  # live escalation rate minus the reference's past this: drifted
    abstention_rate_limit: float = 0.1  # live abstention rate minus the reference's past this: drifted
    on_drift: str = "none"  # or "escalate": while drifted, what would be ANSWER is ESCALATE (DRIFT)


@dataclass(frozen=True, slots=True)
class BundleSpec:
    folder: Path
    name: str
    version: str
    kind: ModelKind
    description: str
    model_path: Path
    inputs: tuple[InputSpec, ...]
    output_name: str  # classifier only; an extractor's adapter reads the outputs it needs
    output_type: str  # "probabilities" or "logits"
    labels: tuple[str, ...]  # classifier only
    calibration_path: Path | None  # None: the bundle opted out of calibration
    policy: Policy
    verifiers: tuple[VerifierSpec, ...] = field(default=())
    adapter_path: Path | None = None  # extractor only: encodes text for the model, decodes fields
    fields: tuple[str, ...] = ()  # extractor only
    feedback: FeedbackPolicy = field(default_factory=FeedbackPolicy)
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    escalation: tuple[TierSpec, ...] = ()  # tried in order while the decision is ESCALATE
    log_inputs: str = "hash"  # decision_log.inputs: how much of each input the decision log keeps (none, hash, full)

    @property
    def file(self) -> Path:
        return self.folder / BUNDLE_FILE

    @property
    def is_extractor(self) -> bool:
        """The one test of a model's kind: an extractor reads text and returns fields, a classifier a label."""
        return self.kind is ModelKind.EXTRACTOR
