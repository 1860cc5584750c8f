"""Ground truth for past predictions: the Feedback call and the per-model accuracy tallies over the store
(``collector``), and the statistics that judge calibration against the truth (``stats``)."""

from smallguard.server.observability.feedback.collector import (
    Feedback,
    FeedbackCall,
    FeedbackResult,
    FeedbackSummary,
)
from smallguard.server.observability.feedback.stats import AccuracyCheck, check_accuracy

__all__ = [
    "AccuracyCheck",
    "Feedback",
    "FeedbackCall",
    "FeedbackResult",
    "FeedbackSummary",
    "check_accuracy",
]
