"""A PredictBatch answered in columns (``BATCH_LAYOUT_COLUMNS``): each field of the items' decisions is one
repeated field of ``BatchColumns``, entry i item i's.

An item answered as a PredictResponse is a message of its own, filled field by field: about 3.2 us of CPU an
item at the server, which was a seventh of what a stacked item cost in all. In columns, the numbers are packed
arrays and the strings one repeated field each, which protobuf fills in C from a list; reasons and verifier
results are listed once for the items answered alike. A caller that holds its items as arrays reads them back
as arrays; ``client.columns.results_of`` rebuilds each item's PredictResponse, equal to what the default
layout gives (``tests/transport/test_batch_columns.py``).

Two builders: ``stacked_columns`` from a batch served over arrays (``core.stacked_batch``), and
``columns_of_results`` for a batch served item by item, whose results it turns into columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from smallguard.server.domain.predictions import BatchOutcome, Reason, VerifierOutcome
from smallguard.server.transport.converters import DECISION_VALUE, REASON_VALUE, STATUS_VALUE
from smallguard.v1 import guard_pb2 as pb


def _reason_fields(r: Reason) -> tuple[Any, ...]:  # an Enum's hash is Python code: its value's is not
    return r.code._value_, r.message, r.verifier


def _verifier_fields(o: VerifierOutcome) -> tuple[Any, ...]:
    return o.name, o.use, o.status._value_, o.message, o.on_fail._value_, o.duration_ms


def stacked_columns(outcome: BatchOutcome) -> pb.PredictBatchResponse:
    """The response in columns to a batch served over arrays: its items were all answered by the model."""
    response = pb.PredictBatchResponse()
    columns = response.columns
    columns.model = outcome.model
    columns.model_version = outcome.model_version
    columns.trace_id = outcome.trace_id
    count = len(outcome.request_ids)
    columns.request_ids.extend(outcome.request_ids)
    value = DECISION_VALUE
    columns.decisions.extend([value[decision] for decision in outcome.decisions])
    predictions = outcome.predictions
    columns.labels.extend([prediction.label for prediction in predictions])
    columns.probabilities.extend([prediction.probability for prediction in predictions])
    columns.confidences.extend(outcome.confidences)
    columns.raw_confidences.extend(outcome.raw_confidences)
    columns.thresholds.extend([outcome.threshold] * count)
    columns.answered_by.extend([outcome.model] * count)
    tops = [prediction.top_k for prediction in predictions]
    columns.top_k_counts.extend(map(len, tops))
    columns.top_k_labels.extend([score.label for top in tops for score in top])
    columns.top_k_probabilities.extend([score.probability for top in tops for score in top])
    reason_lists, verifier_lists = columns.reason_lists, columns.verifier_lists

    def add_reasons(reasons: Sequence[Reason]) -> None:
        add = reason_lists.add().reasons.add
        for r in reasons:
            add(code=REASON_VALUE[r.code], verifier=r.verifier, message=r.message)

    def add_verifiers(outcomes: Sequence[VerifierOutcome]) -> None:
        add = verifier_lists.add().verifiers.add
        for o in outcomes:
            add(name=o.name, use=o.use, status=STATUS_VALUE[o.status], message=o.message,
                on_fail=DECISION_VALUE[o.on_fail], duration_ms=o.duration_ms)

    columns.reasons.extend(_listed(outcome.reasons, _reason_fields, add_reasons))
    columns.verifiers.extend(_listed(outcome.verifiers, _verifier_fields, add_verifiers))
    return response


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


def columns_of_results(results: Sequence[pb.PredictBatchResult], model: str,
                       version: str) -> pb.PredictBatchResponse:
    """The response in columns holding what ``results`` (one per item, the default layout) hold. ``model`` and
    ``version`` name the batch's model when no item was served."""
    response = pb.PredictBatchResponse()
    columns = response.columns
    served = [result.response for result in results if result.WhichOneof("result") == "response"]
    columns.model, columns.model_version = (served[0].model, served[0].model_version) if served else (model, version)
    columns.trace_id = served[0].trace_id if served else ""
    reason_lists: dict[bytes, int] = {}
    verifier_lists: dict[bytes, int] = {}
    cascade = any(item.tiers for item in served)
    for index, result in enumerate(results):
        if result.WhichOneof("result") == "error":
            columns.errors.add(item=index, error=result.error)
            item = pb.PredictResponse()
        else:
            item = result.response
        columns.request_ids.append(item.request_id)
        columns.decisions.append(item.decision)
        answer = item.classification
        columns.labels.append(answer.label)
        columns.probabilities.append(answer.probability)
        columns.confidences.append(item.confidence)
        columns.raw_confidences.append(item.raw_confidence)
        columns.thresholds.append(item.threshold)
        columns.answered_by.append(item.answered_by)
        columns.top_k_counts.append(len(answer.top_k))
        columns.top_k_labels.extend([score.label for score in answer.top_k])
        columns.top_k_probabilities.extend([score.probability for score in answer.top_k])
        columns.reasons.append(_place(reason_lists, pb.ReasonList(reasons=item.reasons), columns.reason_lists))
        columns.verifiers.append(_place(verifier_lists, pb.VerifierResultList(verifiers=item.verifiers),
                                        columns.verifier_lists))
        if cascade:
            columns.costs.append(item.cost)
            columns.review_cases.append(item.review_case)
        if item.tiers:
            columns.tiers.add(item=index, tiers=item.tiers)
    return response


def _place(places: dict[bytes, int], entry: pb.ReasonList | pb.VerifierResultList,
           into: RepeatedCompositeFieldContainer[Any]) -> int:
    """``entry``'s index among the distinct lists listed ``into`` so far, listing it there when it is new."""
    key = entry.SerializeToString(deterministic=True)
    place = places.get(key)
    if place is None:
        place = places[key] = len(places)
        into.append(entry)
    return place
