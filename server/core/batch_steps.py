"""Serving many calls of one model at once, a step at a time over all of them: their feeds, one model run per
group of rows, their verifiers and decisions, the drift window, their outcomes.

PredictBatch and the Predict calls that arrive together (``core.coalescing``) both go through these steps
(``core.guard``). Each item keeps its place in ``results``: one that cannot be served gets its own error there,
and the others are served. Nothing here leaves a trace or a record; the guard does that once the outcomes exist.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from smallguard.server.core.inputs import feeds_for_many
from smallguard.server.core.models import LoadedModel
from smallguard.server.core.policy import decide, escalate_when_drifted
from smallguard.server.core.request_ids import new_request_id
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.errors import GuardError, InvalidInputError, ItemFailedError
from smallguard.server.domain.predictions import PredictOutcome

if TYPE_CHECKING:  # names the annotations use
    from smallguard.server.domain.predictions import Decision, HeadResult, PredictCall, Reason, VerifierOutcome

    Results = list[PredictOutcome | GuardError]
    Served = list[tuple[int, PredictCall, dict[str, np.ndarray]]]  # an item's place in the results, call, feeds
    Verdict = tuple[tuple[VerifierOutcome, ...], Decision, tuple[Reason, ...]]  # before the drift rule
    _Ready = list[tuple[int, PredictCall, dict[str, np.ndarray], HeadResult]]

log = logging.getLogger(__name__)

FAILED_ITEM = "internal error while serving this item; the server log has the details"


def fed(spec: BundleSpec, taken: list[tuple[int, PredictCall]], results: Results) -> Served:
    """The calls (with their positions) whose inputs fit, with their feeds; each other one's error goes into its
    place in ``results``."""
    served = []
    for (i, call), feeds in zip(taken, feeds_for_many(spec.inputs, [call for _, call in taken]), strict=True):
        if isinstance(feeds, InvalidInputError):
            results[i] = feeds
        else:
            served.append((i, call, feeds))
    return served


def heads(model: LoadedModel, items: list[dict[str, np.ndarray]]) -> list[HeadResult | GuardError]:
    """The head's result for each item: one model run per group of items whose inputs have the same
    shapes (at most the model's fixed batch size, when it has one). A run that fails is retried item by
    item, so that one item's failure stays its own."""
    names = [item.name for item in model.spec.inputs]
    groups: dict[tuple, list[int]] = {}
    for position, feeds in enumerate(items):
        groups.setdefault(tuple(feeds[name].shape for name in names), []).append(position)
    limit = model.onnx.batch_limit or len(items)
    results: list[HeadResult | GuardError] = [ItemFailedError("not run")] * len(items)
    for positions in groups.values():
        for start in range(0, len(positions), limit):
            chunk = positions[start:start + limit]
            try:
                batch = {name: np.concatenate([items[p][name] for p in chunk]) for name in names}
                for position, head in zip(chunk, model.head.predict_batch(batch), strict=True):
                    results[position] = head
            except Exception:
                for position in chunk:
                    results[position] = _one_head(model, items[position])
    return results


def _one_head(model: LoadedModel, feeds: dict[str, np.ndarray]) -> HeadResult | GuardError:
    try:
        return model.head.predict(feeds)
    except Exception:
        log.exception("model %s failed on one item of a batch", model.spec.name)
        return ItemFailedError("internal error while running the model on this item; the server log has the "
                               "details")


def judged(runner: VerifierRunner, model: LoadedModel, served: Served, item_heads: list[HeadResult | GuardError],
           trace_ids: Sequence[str], results: Results) -> list[tuple[int, PredictCall, PredictOutcome]]:
    """The served items' outcomes from their heads (before escalation), with their positions; an item whose
    head or judging failed gets its error in ``results`` instead. ``trace_ids``: by position."""
    ready: _Ready = []
    for (i, call, feeds), head in zip(served, item_heads, strict=True):
        if isinstance(head, GuardError):
            results[i] = head
        else:
            ready.append((i, call, feeds, head))
    verdicts = []
    for item, verdict in zip(ready, _judge_many(runner, model, ready), strict=True):
        if verdict is None:
            results[item[0]] = ItemFailedError(FAILED_ITEM)
        else:
            verdicts.append((item, verdict))
    return [(i, call, outcome) for ((i, call, _, _), _), outcome
            in zip(verdicts, _outcomes(model, verdicts, trace_ids), strict=True)]


def _judge_many(runner: VerifierRunner, model: LoadedModel, items: _Ready) -> list[Verdict | None]:
    """Each item's verifier outcomes and policy decision, a step at a time over all of them. Nothing here
    leaves a trace, so when the batch fails it is judged again item by item, and only the item that fails
    (None, logged) is lost."""
    spec = model.spec
    try:
        verdicts = runner.run_many(model.verifiers, [head.prediction for _, _, _, head in items],
                                   [call.context for _, call, _, _ in items], spec.policy.verifier_timeout_ms)
        return [(outcomes, *policy(model, head, outcomes))
                for (_, _, _, head), outcomes in zip(items, verdicts, strict=True)]
    except Exception:
        log.exception("batch of model %s: judging the items together failed; judging them one by one", spec.name)
    one_by_one: list[Verdict | None] = []
    for i, call, _, head in items:
        try:
            outcomes = runner.run(model.verifiers, head.prediction, call.context, spec.policy.verifier_timeout_ms)
            one_by_one.append((outcomes, *policy(model, head, outcomes)))
        except Exception:
            log.exception("batch item %d of model %s failed", i, spec.name)
            one_by_one.append(None)
    return one_by_one


def policy(model: LoadedModel, head: HeadResult,
           outcomes: tuple[VerifierOutcome, ...]) -> tuple[Decision, tuple[Reason, ...]]:
    """The decision and its reasons for one item, from its head and verifier outcomes (before the drift rule)."""
    return decide(head.confidence, model.threshold, model.spec.policy.on_low_confidence, outcomes,
                  model.calibration is not None, head.low_fields)


def _outcomes(model: LoadedModel, verdicts: list[tuple[tuple[int, PredictCall, dict[str, np.ndarray], HeadResult],
                                                       Verdict]],
              trace_ids: Sequence[str]) -> list[PredictOutcome]:
    """The judged items into the drift window, once, then their outcomes. The drift state is read after the
    batch is observed: every item of a batch gets the same drift rule."""
    spec = model.spec
    if model.drift is not None and verdicts:  # observed before the drift rule: its own escalations are not drift
        model.drift.observe_many([feeds for (_, _, feeds, _), _ in verdicts],
                                 [head.confidence for (_, _, _, head), _ in verdicts],
                                 [decision for _, (_, decision, _) in verdicts])
        if model.drift.escalating:
            message = model.drift.message
            verdicts = [(item, (outcomes, *escalate_when_drifted(decision, reasons, message)))
                        for item, (outcomes, decision, reasons) in verdicts]
    return [PredictOutcome(call.request_id or new_request_id(), spec.name, spec.version, decision, head.prediction,
                           head.confidence, head.raw_confidence, model.threshold, reasons, outcomes, trace_ids[i])
            for (i, call, _, head), (outcomes, decision, reasons) in verdicts]
