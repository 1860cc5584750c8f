"""Ground truth for past predictions: the record they are matched against (``record``), the per-model
accuracy tallies and the Feedback call (``collector``), and the statistics that judge calibration
against the truth (``stats``)."""

from smallguard.server.observability.feedback.collector import (
    Feedback,
    FeedbackCall,
    FeedbackResult,
    FeedbackSummary,
)
from smallguard.server.observability.feedback.record import PredictionRecord
from smallguard.server.observability.feedback.stats import AccuracyCheck, check_accuracy

__all__ = [
    "AccuracyCheck",
    "Feedback",
    "FeedbackCall",
    "FeedbackResult",
    "FeedbackSummary",
    "PredictionRecord",
    "check_accuracy",
]
