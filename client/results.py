"""What the client returns: plain, typed values built from the responses, so callers never touch protobuf."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smallguard.v1 import guard_pb2 as pb


@dataclass(frozen=True, slots=True)
class Reason:
    code: str  # LOW_CONFIDENCE, VERIFIER_FAILED, VERIFIER_ERROR, UNCALIBRATED, DRIFT, TIER_ERROR
    message: str
    verifier: str = ""  # the verifier (or tier) it is about


@dataclass(frozen=True, slots=True)
class VerifierResult:
    name: str
    status: str  # PASSED, FAILED, ERROR, SKIPPED
    message: str


@dataclass(frozen=True, slots=True)
class Field:
    value: str | None  # None: the model found nothing for this field
    confidence: float


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier of the cascade that tried the request: the small model (kind "model") or an escalation tier."""

    name: str
    kind: str
    decision: str
    calibrated: bool
    confidence: float
    reasons: tuple[Reason, ...]
    latency_ms: float
    cost: float
    calls: int


@dataclass(frozen=True, slots=True)
class Result:
    """One Predict's answer. ``answered`` says whether the prediction may be used."""

    request_id: str
    model: str
    model_version: str
    decision: str  # ANSWER, ABSTAIN or ESCALATE
    confidence: float
    threshold: float
    label: str | None  # a classifier's
    top_k: tuple[tuple[str, float], ...]
    fields: Mapping[str, Field]  # an extractor's
    reasons: tuple[Reason, ...]
    verifiers: tuple[VerifierResult, ...]
    answered_by: str
    tiers: tuple[Tier, ...]
    cost: float
    trace_id: str
    response: Any = field(repr=False, compare=False, default=None)  # the PredictResponse, for what is not here
    review_case: int = 0  # the review case opened for the request (a person will answer: Client.wait_for_review)

    @property
    def answered(self) -> bool:
        return self.decision == "ANSWER"

    def value(self, name: str) -> str | None:
        """A field's value, or the label under ``"label"``."""
        if name == "label" and self.label is not None:
            return self.label
        found = self.fields.get(name)
        return None if found is None else found.value

    @classmethod
    def of(cls, response: pb.PredictResponse) -> Result:
        which = response.WhichOneof("prediction")
        classification = response.classification if which == "classification" else None
        return cls(
            request_id=response.request_id, model=response.model, model_version=response.model_version,
            decision=pb.Decision.Name(response.decision), confidence=response.confidence,
            threshold=response.threshold,
            label=classification.label if classification is not None else None,
            top_k=tuple((s.label, s.probability) for s in classification.top_k) if classification is not None else (),
            fields={f.name: Field(f.value if f.present else None, f.confidence)
                    for f in response.extraction.fields} if which == "extraction" else {},
            reasons=_reasons(response.reasons),
            verifiers=tuple(VerifierResult(v.name, pb.VerifierResult.Status.Name(v.status), v.message)
                            for v in response.verifiers),
            answered_by=response.answered_by or response.model,
            tiers=tuple(Tier(t.name, t.kind, pb.Decision.Name(t.decision), t.calibrated, t.confidence,
                             _reasons(t.reasons), t.latency_ms, t.cost, t.calls) for t in response.tiers),
            cost=response.cost, trace_id=response.trace_id, response=response, review_case=response.review_case)


@dataclass(frozen=True, slots=True)
class Review:
    """A review case as last seen: ``state`` RESOLVED (with the person's ``label`` or ``fields``) or DISMISSED
    (with a ``note``), or still OPEN or CLAIMED when the wait ran out."""

    case_id: int
    request_id: str
    state: str
    label: str | None
    fields: Mapping[str, str]
    reviewer: str  # who claimed or closed it
    note: str

    @property
    def resolved(self) -> bool:
        return self.state == "RESOLVED"

    @classmethod
    def of(cls, case: pb.ReviewCase) -> Review:
        return cls(case.id, case.request_id, case.state, case.label or None, dict(case.fields),
                   case.closed_by or case.claimed_by, case.note)


@dataclass(frozen=True, slots=True)
class ItemError:
    """A PredictBatch item the server could not serve; the other items were."""

    index: int
    code: str  # the gRPC status code's name, as for a single Predict
    message: str


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    request_id: str
    model: str
    decision: str
    correct: bool
    wrong_fields: tuple[str, ...]
    counted: bool  # entered the model's accuracy tally
    duplicate: bool  # the same truth was already recorded


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    version: str
    kind: str  # CLASSIFIER or EXTRACTOR
    labels: tuple[str, ...]
    fields: tuple[str, ...]
    calibrated: bool
    threshold: float
    tiers: tuple[str, ...]  # the escalation tiers, in order
    info: Any = field(repr=False, compare=False, default=None)  # the ModelInfo message

    @classmethod
    def of(cls, info: pb.ModelInfo) -> ModelSummary:
        return cls(info.name, info.version, pb.ModelInfo.Kind.Name(info.kind), tuple(info.labels), tuple(info.fields),
                   info.calibration.calibrated, info.calibration.threshold, tuple(t.name for t in info.tiers), info)


def _reasons(reasons: Any) -> tuple[Reason, ...]:
    return tuple(Reason(pb.Reason.Code.Name(r.code), r.message, r.verifier) for r in reasons)
