"""Protobuf messages of the Feedback RPC and the FeedbackSummary to the core's types and back."""

from __future__ import annotations

from smallguard.server.core.request_ids import checked_request_id
from smallguard.server.observability.feedback.collector import FeedbackCall, FeedbackResult, FeedbackSummary
from smallguard.server.observability.feedback.stats import AccuracyCheck
from smallguard.v1 import guard_pb2 as pb


def feedback_call(request: pb.FeedbackRequest) -> FeedbackCall:
    return FeedbackCall(request_id=checked_request_id(request.request_id), model=request.model, label=request.label,
                        fields=dict(request.fields) or None)


def feedback_response(result: FeedbackResult) -> pb.FeedbackResponse:
    return pb.FeedbackResponse(
        request_id=result.request_id, model=result.model, model_version=result.version,
        decision=pb.Decision.Value(result.decision.name), correct=result.correct,
        wrong_fields=list(result.wrong_fields), counted=result.counted, duplicate=result.duplicate)


def feedback_summary(summary: FeedbackSummary) -> pb.FeedbackSummary:
    policy = summary.policy
    return pb.FeedbackSummary(
        accuracy=_check(summary.accuracy),
        calibration_drifted=summary.accuracy.drifted,
        explanation=summary.explanation,
        fields=[pb.FieldAccuracy(name=name, accuracy=_check(check)) for name, check in summary.fields],
        matched=summary.matched,
        tolerance=policy.tolerance, alpha=policy.alpha, min_labelled=policy.min_labelled, window=policy.window)


def _check(check: AccuracyCheck) -> pb.AccuracyCheck:
    return pb.AccuracyCheck(labelled=check.labelled, observed=check.observed, estimated=check.estimated,
                            gap=check.gap, observed_low=check.low, observed_high=check.high,
                            significant=check.significant, drifted=check.drifted)
