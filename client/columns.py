"""A PredictBatch answer in columns (``BATCH_LAYOUT_COLUMNS``) read back: as arrays, or as the PredictResponse
each item would have had in the default layout."""

from __future__ import annotations

from itertools import accumulate
from typing import NamedTuple

import numpy as np

from smallguard.client.results import ItemError
from smallguard.v1 import guard_pb2 as pb


class BatchArrays(NamedTuple):
    """A batch answered in columns, as numpy arrays of one entry per item (``top_k_*``: one row per item, padded
    with "" and NaN past an item's own entries). ``decisions`` holds the Decision values; ``answered`` says which
    items may be used; ``errors``, the items that were not served, by index."""

    request_ids: list[str]
    decisions: np.ndarray
    labels: list[str]
    confidences: np.ndarray
    raw_confidences: np.ndarray
    top_k_labels: np.ndarray
    top_k_probabilities: np.ndarray
    errors: dict[int, ItemError]

    @property
    def answered(self) -> np.ndarray:
        return self.decisions == pb.ANSWER


def arrays_of(columns: pb.BatchColumns) -> BatchArrays:
    """The columns as arrays, without a Python object per item beyond the strings."""
    counts = np.asarray(columns.top_k_counts, dtype=np.int64)
    width = int(counts.max()) if len(counts) else 0
    labels = np.full((len(counts), width), "", dtype=object)
    probabilities = np.full((len(counts), width), np.nan)
    if len(counts) and (counts == width).all():  # every item has its k entries: one reshape
        labels[:] = np.asarray(columns.top_k_labels, dtype=object).reshape(len(counts), width)
        probabilities[:] = np.asarray(columns.top_k_probabilities).reshape(len(counts), width)
    else:
        rows = np.repeat(np.arange(len(counts)), counts)
        places = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        labels[rows, places] = list(columns.top_k_labels)
        probabilities[rows, places] = list(columns.top_k_probabilities)
    return BatchArrays(list(columns.request_ids), np.asarray(columns.decisions, dtype=np.int32),
                       list(columns.labels), np.asarray(columns.confidences), np.asarray(columns.raw_confidences),
                       labels, probabilities, {entry.item: ItemError(entry.item, entry.error.code, entry.error.message)
                                               for entry in columns.errors})


def results_of(columns: pb.BatchColumns) -> list[pb.PredictBatchResult]:
    """Each item's PredictBatchResult, as the default layout (``BATCH_LAYOUT_RESULTS``) gives it."""
    errors = {entry.item: entry.error for entry in columns.errors}
    tiers = {entry.item: entry.tiers for entry in columns.tiers}
    ends = list(accumulate(columns.top_k_counts))
    results = []
    for i, request_id in enumerate(columns.request_ids):
        result = pb.PredictBatchResult()
        results.append(result)
        if i in errors:
            result.error.CopyFrom(errors[i])
            continue
        item = result.response
        item.request_id = request_id
        item.model = columns.model
        item.model_version = columns.model_version
        item.trace_id = columns.trace_id
        item.decision = columns.decisions[i]
        item.confidence = columns.confidences[i]
        item.raw_confidence = columns.raw_confidences[i]
        item.threshold = columns.thresholds[i]
        item.answered_by = columns.answered_by[i]
        answer = item.classification
        answer.SetInParent()
        answer.label = columns.labels[i]
        answer.probability = columns.probabilities[i]
        for place in range(ends[i] - columns.top_k_counts[i], ends[i]):
            answer.top_k.add(label=columns.top_k_labels[place], probability=columns.top_k_probabilities[place])
        item.reasons.extend(columns.reason_lists[columns.reasons[i]].reasons)
        item.verifiers.extend(columns.verifier_lists[columns.verifiers[i]].verifiers)
        if i in tiers:
            item.tiers.extend(tiers[i])
        if columns.costs:
            item.cost = columns.costs[i]
            item.review_case = columns.review_cases[i]
    return results
