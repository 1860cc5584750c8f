"""The smallguard client: ``Client("host:port").predict(model, text=... | pixels=... | inputs=...)``."""

from smallguard.client.client import CallError, Client, batch_request, predict_request
from smallguard.client.columns import BatchArrays, arrays_of, results_of
from smallguard.client.results import FeedbackResult, Field, ItemError, ModelSummary, Reason, Result, Review, Tier

__all__ = ["BatchArrays", "CallError", "Client", "FeedbackResult", "Field", "ItemError", "ModelSummary", "Reason",
           "Result", "Review", "Tier", "arrays_of", "batch_request", "predict_request", "results_of"]
