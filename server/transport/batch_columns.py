"""A PredictBatch answered in columns (``BATCH_LAYOUT_COLUMNS``): each field of the items' decisions is one
repeated field of ``BatchColumns``, entry i item i's.

An item answered as a PredictResponse is a message of its own, filled field by field: about 3.4 us of CPU an
item to build and encode at the server, a seventh of what a stacked item cost in all. In columns, the numbers
are packed arrays and the strings one repeated field each, which protobuf fills in C from a list (1.2 us an
item); reasons and verifier results are listed once for the items answered alike. A caller that holds its
items as arrays reads them back as arrays; ``client.columns.results_of`` rebuilds each item's PredictResponse,
equal to what the default layout gives (the tests compare them on every path).

Two builders over one filler: ``stacked_columns`` for a batch served over arrays (``core.stacked_batch``),
``outcome_columns`` for a batch served item by item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from smallguard.server.domain.errors import GuardError, InvalidInputError, echoed
from smallguard.server.domain.predictions import BatchOutcome, PredictOutcome, Reason, VerifierOutcome
from smallguard.server.transport.converters import (
    DECISION_VALUE,
    REASON_VALUE,
    STATUS_VALUE,
    status_of,
    tier_result,
)
from smallguard.v1 import guard_pb2 as pb
from smallguard.verifiers import ModelKind, Prediction


def stacked_columns(outcome: BatchOutcome) -> pb.PredictBatchResponse:
    """The response in columns to a batch served over arrays: its items were all answered by the model."""
    response = pb.PredictBatchResponse()
    columns = response.columns
    columns.model, columns.model_version, columns.trace_id = outcome.model, outcome.model_version, outcome.trace_id
    count = len(outcome.request_ids)
    _fill(columns, outcome.request_ids, outcome.decisions, outcome.predictions, outcome.confidences,
          outcome.raw_confidences, [outcome.threshold] * count, [outcome.model] * count, outcome.reasons,
          outcome.verifiers)
    return response


def outcome_columns(results: Sequence[PredictOutcome | GuardError], model: str, version: str,
                    on_error: Callable[[str], None]) -> pb.PredictBatchResponse:
    """The response in columns to a batch served item by item: what ``wire.batch_results_bytes`` gives
    as results (an error names its item, and ``on_error`` hears its status code's name). ``model`` and
    ``version`` name the batch's model when no item was served."""
    response = pb.PredictBatchResponse()
    columns = response.columns
    served = [result for result in results if isinstance(result, PredictOutcome)]
    if any(item.prediction.kind is not ModelKind.CLASSIFIER for item in served):  # a reload made it an extractor
        raise InvalidInputError(f"BATCH_LAYOUT_COLUMNS answers a classifier's batch, and model {echoed(model)} is "
                                "now an extractor; ask for BATCH_LAYOUT_RESULTS", "layout")
    first = served[0] if served else None
    columns.model = model if first is None else first.model
    columns.model_version = version if first is None else first.model_version
    columns.trace_id = "" if first is None else first.trace_id
    items = []
    for index, result in enumerate(results):
        if isinstance(result, PredictOutcome):
            items.append(result)
            if result.tiers:
                columns.tiers.add(item=index, tiers=[tier_result(entry) for entry in result.tiers])
            continue
        code = status_of(result).name
        on_error(code)
        columns.errors.add(item=index, error=pb.ItemError(code=code, message=f"items[{index}].{result}"))
        items.append(None)
    _fill(columns, *zip(*[_entry(item) for item in items], strict=True))
    if any(item.tiers for item in served):
        columns.costs.extend([0.0 if item is None else item.cost for item in items])
        columns.review_cases.extend([0 if item is None else item.review_case for item in items])
    return response


def _entry(item: PredictOutcome | None) -> tuple[Any, ...]:
    """An item's values in the order ``_fill`` takes its columns (an item not served: empty ones)."""
    if item is None:
        return "", None, None, 0.0, 0.0, 0.0, "", (), ()
    return (item.request_id, item.decision, item.prediction, item.confidence, item.raw_confidence, item.threshold,
            item.answered_by or item.model, item.reasons, item.verifiers)


def _fill(columns: pb.BatchColumns, request_ids: Sequence[str], decisions: Sequence[Any],
          predictions: Sequence[Prediction | None], confidences: Sequence[float], raw_confidences: Sequence[float],
          thresholds: Sequence[float], answered_by: Sequence[str], reasons: Sequence[Sequence[Reason]],
          verifiers: Sequence[Sequence[VerifierOutcome]]) -> None:
    """Fill the per-item columns, one call into protobuf each (an item not served has a decision and a
    prediction of None)."""
    columns.request_ids.extend(request_ids)
    value = DECISION_VALUE
    columns.decisions.extend([0 if decision is None else value[decision] for decision in decisions])
    columns.labels.extend(["" if prediction is None else prediction.label or "" for prediction in predictions])
    columns.probabilities.extend([0.0 if prediction is None else prediction.probability for prediction in predictions])
    columns.confidences.extend(confidences)
    columns.raw_confidences.extend(raw_confidences)
    columns.thresholds.extend(thresholds)
    columns.answered_by.extend(answered_by)
    tops = [() if prediction is None else prediction.top_k for prediction in predictions]
    columns.top_k_counts.extend(map(len, tops))
    columns.top_k_labels.extend([score.label for top in tops for score in top])
    columns.top_k_probabilities.extend([score.probability for top in tops for score in top])
    reason_lists, verifier_lists = columns.reason_lists, columns.verifier_lists

    def add_reasons(entries: Sequence[Reason]) -> None:
        add = reason_lists.add().reasons.add
        for r in entries:
            add(code=REASON_VALUE[r.code], verifier=r.verifier, message=r.message)

    def add_verifiers(outcomes: Sequence[VerifierOutcome]) -> None:
        add = verifier_lists.add().verifiers.add
        for o in outcomes:
            add(name=o.name, use=o.use, status=STATUS_VALUE[o.status], message=o.message,
                on_fail=DECISION_VALUE[o.on_fail], duration_ms=o.duration_ms)

    columns.reasons.extend(_listed(reasons, _reason_fields, add_reasons))
    columns.verifiers.extend(_listed(verifiers, _verifier_fields, add_verifiers))


def _listed(lists: Sequence[Sequence[Any]], fields: Callable[[Any], tuple[Any, ...]],
            add: Callable[[Sequence[Any]], object]) -> list[int]:
    """Each item's index among the distinct lists of ``lists``, calling ``add(list)`` for each distinct one in
    order. Items answered alike share one list object; lists equal in content (``fields`` of each entry: a
    verifier's same answer for two labels) are listed once too, compared once per object."""
    ids = list(map(id, lists))
    objects = dict(zip(ids, lists, strict=True))  # in the order first seen
    by_content: dict[tuple[Any, ...], int] = {}
    place_of = {}
    for key, entry in objects.items():
        content = tuple(map(fields, entry))
        place = by_content.get(content)
        if place is None:
            place = by_content[content] = len(by_content)
            add(entry)
        place_of[key] = place
    return list(map(place_of.__getitem__, ids))


def _reason_fields(r: Reason) -> tuple[Any, ...]:  # an Enum's hash is Python code: its value's is not
    return r.code._value_, r.message, r.verifier


def _verifier_fields(o: VerifierOutcome) -> tuple[Any, ...]:
    return o.name, o.use, o.status._value_, o.message, o.on_fail._value_, o.duration_ms
