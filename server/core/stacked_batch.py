"""A PredictBatch of a classifier served over arrays: its items' tensors stacked (row i of each input is item
i's), as the caller sent them or as the transport stacked items sent one per message that were alike, with
each item's own request id and context when it has them.

Such a batch needs no call, feeds, head result or outcome object per item, and building them was most of
what an item cost: the rows are checked at once (two reductions an input), the model runs once, the head
gives its columns, the verifiers run over each row's Prediction (the SDK's type: what a verifier reads) and
context, the policy decides each item from the verifiers' verdict worked out once per distinct outcome, drift
takes the batch as one entry, and the metrics, the decision log and the response read the columns (README,
"Batches").

``serve`` returns None when the batch is not one it serves, and the guard then serves it item by item
(``batch_steps``), as every other batch: a row that fails the checks (that path names each row's problem in
its result), a model that is not a classifier, has escalation tiers or a fixed batch size smaller than the
batch, scores that hold a NaN, a run or a verifier that raises (that path retries item by item), and a traced
call (that path builds the span tree). ``tests/core/test_stacked_batch.py`` checks that both paths give the
same decisions, reasons, verifier results, drift, metrics, decision log and response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from smallguard.server.core.classifier import ClassifierHead
from smallguard.server.core.inputs import stacked_feeds
from smallguard.server.core.models import LoadedModel
from smallguard.server.core.policy import decide_many, escalate_when_drifted
from smallguard.server.core.request_ids import new_batch_ids, new_request_id
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.predictions import BatchOutcome, TensorInput

log = logging.getLogger(__name__)
_NO_CONTEXT: Mapping[str, str] = {}


def takes(model: LoadedModel) -> bool:
    """Whether the model's batches may be served over arrays: a classifier's, without escalation tiers."""
    return not model.spec.escalation and isinstance(model.head, ClassifierHead)


def serve(runner: VerifierRunner, model: LoadedModel, tensors: Sequence[TensorInput], trace_id: str,
          request_ids: Sequence[str] | None = None,
          contexts: Sequence[Mapping[str, str]] | None = None) -> BatchOutcome | None:
    """The batch's outcomes, or None when it is one to serve item by item (and nothing was recorded). Items
    without ``request_ids`` of their own get ids that name the batch (``new_batch_ids``); with them, an item
    whose id is "" gets one of its own."""
    spec = model.spec
    head = model.head
    if not takes(model):
        return None
    assert isinstance(head, ClassifierHead)
    feeds = stacked_feeds(spec.inputs, tensors)
    if feeds is None:
        return None
    count = len(next(iter(feeds.values())))
    if count == 0 or (model.onnx.batch_limit is not None and count > model.onnx.batch_limit):
        return None
    try:
        columns = head.predict_columns(feeds)
        if columns is None:
            return None
        outcomes = runner.run_many(model.verifiers, columns.predictions, contexts or [_NO_CONTEXT] * count,
                                   spec.policy.verifier_timeout_ms)
    except Exception:  # served again item by item, where each item's failure is its own
        log.warning("model %s: a stacked batch failed as a whole; serving its items one by one", spec.name,
                    exc_info=True)
        return None
    decisions, reasons = decide_many(columns.confidences, model.threshold, spec.policy.on_low_confidence, outcomes,
                                     model.calibration is not None)
    if model.drift is not None:  # observed before the drift rule: its own escalations are not drift
        model.drift.observe_stacked(feeds, columns.confidences, decisions)
        if model.drift.escalating:
            message = model.drift.message
            drifted = [escalate_when_drifted(decision, why, message) for decision, why in zip(decisions, reasons,
                                                                                               strict=True)]
            decisions, reasons = [decision for decision, _ in drifted], [why for _, why in drifted]
    if request_ids is None:
        key, ids = new_batch_ids(count)
    else:
        key, ids = "", [request_id or new_request_id() for request_id in request_ids]
    return BatchOutcome(spec.name, spec.version, model.threshold, trace_id, ids, decisions,
                        columns.predictions, columns.confidences, columns.raw_confidences, reasons, list(outcomes), key)
