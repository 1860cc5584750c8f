"""The smallguard client: ``Client("host:port").predict(model, text=... | pixels=... | inputs=...)``."""

from smallguard.client.client import CallError, Client, batch_request, predict_request
from smallguard.client.results import FeedbackResult, Field, ItemError, ModelSummary, Reason, Result, Review, Tier

__all__ = ["CallError", "Client", "FeedbackResult", "Field", "ItemError", "ModelSummary", "Reason", "Result", "Review",
           "Tier", "batch_request", "predict_request"]
