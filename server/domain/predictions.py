"""What a Predict call asks and what the guard decides: the types every layer shares.

They know nothing of gRPC or protobuf, so the decision path is testable without a network
and a second transport would only need new converters.

The records every Predict builds (the call, its tensors, the head's result, each verifier's outcome,
the reasons and the outcome) are plain slotted dataclasses, not frozen ones: a frozen dataclass sets
each field through ``object.__setattr__``, which made building them cost 5x as much (2.3 against
0.4 us for ten fields), paid several times on every request. They are still never changed once built;
nothing here or in the transports assigns to them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from smallguard.verifiers import Prediction, Status


class Decision(enum.IntEnum):
    """Ordered by severity: the most severe outcome wins."""

    ANSWER = 1
    ABSTAIN = 2
    ESCALATE = 3


class ReasonCode(enum.Enum):
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    VERIFIER_FAILED = "VERIFIER_FAILED"
    VERIFIER_ERROR = "VERIFIER_ERROR"
    UNCALIBRATED = "UNCALIBRATED"
    DRIFT = "DRIFT"
    TIER_ERROR = "TIER_ERROR"
    IN_REVIEW = "IN_REVIEW"  # a review case was opened: a person will answer


@dataclass(slots=True)  # built per request: see the module's note
class Reason:
    code: ReasonCode
    message: str
    verifier: str = ""


@dataclass(slots=True)  # built per request: see the module's note
class VerifierOutcome:
    """One verifier's result on one prediction, as the runner saw it."""

    name: str
    use: str
    status: Status
    message: str
    on_fail: Decision
    duration_ms: float


@dataclass(slots=True)  # built per request: see the module's note
class TensorInput:
    """A tensor as the caller sent it, already decoded into numpy but not yet validated."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    values: np.ndarray


@dataclass(slots=True)  # built per request: see the module's note
class PredictCall:
    model: str
    version: str = ""
    request_id: str = ""
    tensors: tuple[TensorInput, ...] = ()
    text: str = ""
    context: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() by which the caller wants the answer; None: no deadline
    max_tier: int | None = None  # escalation tiers the request may reach (0: the small model only); None: all
    max_cost: float | None = None  # the request's budget in the operators' cost unit; None: no budget
    caller: str = ""  # who asked: the token's name or the JWT's subject ("" when the server has no tokens)


@dataclass(frozen=True, slots=True)
class TierOutcome:
    """What one tier of the cascade said about a request: the small model (kind "model") or an escalation tier.

    ``prediction`` is None when the tier gave none (it failed, or was not called); ``calls`` counts the
    requests sent to it, retries included, and ``cost`` is what they cost."""

    name: str
    kind: str
    decision: Decision
    prediction: Prediction | None
    calibrated: bool
    confidence: float
    raw_confidence: float
    threshold: float
    reasons: tuple[Reason, ...]
    verifiers: tuple[VerifierOutcome, ...]
    latency_ms: float
    cost: float
    calls: int


@dataclass(slots=True)  # built per request: see the module's note
class PredictOutcome:
    request_id: str
    model: str
    model_version: str
    decision: Decision
    prediction: Prediction
    confidence: float
    raw_confidence: float
    threshold: float
    reasons: tuple[Reason, ...]
    verifiers: tuple[VerifierOutcome, ...]
    trace_id: str = ""
    # The cascade, when the request went past the small model (empty when it did not): one entry per
    # tier tried, the small model first. The fields above are then those of the tier named by answered_by.
    tiers: tuple[TierOutcome, ...] = ()
    answered_by: str = ""
    cost: float = 0.0
    review_case: int = 0  # the review case the cascade opened for the request (0: none)


@dataclass(frozen=True, slots=True)
class FieldBelowThreshold:
    name: str
    confidence: float
    threshold: float


@dataclass(slots=True)  # built per request: see the module's note
class HeadResult:
    """A model head's answer: the calibrated prediction and the confidences the policy needs."""

    prediction: Prediction
    confidence: float
    raw_confidence: float
    low_fields: tuple[FieldBelowThreshold, ...] = ()



@dataclass(slots=True)
class BatchOutcome:
    """A batch's outcomes as columns, item i at place i of each: what a batch served over arrays decides
    (``core.stacked_batch``), each item as the PredictOutcome it would have had alone, without the object.
    Its items were answered by the model (no tier was called)."""

    model: str
    model_version: str
    threshold: float
    trace_id: str
    request_ids: list[str]
    decisions: list[Decision]
    predictions: list[Prediction]
    confidences: list[float]
    raw_confidences: list[float]
    reasons: list[tuple[Reason, ...]]
    verifiers: list[tuple[VerifierOutcome, ...]]
    key: str = ""  # the batch's key, which each of its request ids begins with ("" for ids of their own)
