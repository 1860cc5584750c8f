"""The verifier contract: what a verifier sees, and what it answers.

A verifier is a small, pure, deterministic check of one prediction and the request's
context. It is built once per bundle entry from that entry's ``params`` and then called
for every prediction, possibly from several threads at once, so it must not keep
per-call state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class ModelKind(enum.StrEnum):
    CLASSIFIER = "classifier"
    EXTRACTOR = "extractor"


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    probability: float


@dataclass(frozen=True, slots=True)
class ExtractedField:
    """One extracted field. ``value`` is None when the model found nothing for it."""

    name: str
    value: str | None
    confidence: float
    raw_confidence: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the model said, after calibration; read-only for verifiers.

    A classifier fills ``label``, ``probability`` and ``top_k``; an extractor fills ``fields``.
    ``value(name)`` reads either uniformly: a field's value, or the label under ``"label"``.
    """

    kind: ModelKind
    label: str | None = None
    probability: float = 0.0
    top_k: tuple[LabelScore, ...] = ()
    fields: Mapping[str, ExtractedField] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        if name == "label" and self.kind == ModelKind.CLASSIFIER:
            return self.label
        extracted = self.fields.get(name)
        return None if extracted is None else extracted.value


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What a verifier may know of the bundle it checks: given to a factory that has a ``bundle`` parameter
    (the ``rule`` verifier declares the bundle's fields as typed variables with it)."""

    name: str
    kind: ModelKind
    fields: tuple[str, ...] = ()  # an extractor's
    labels: tuple[str, ...] = ()  # a classifier's


class Status(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"  # set by the runner, never returned by a verifier


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A verifier's answer: passed, failed or skipped, with a message a person can act on."""

    status: Status
    message: str = ""

    @classmethod
    def passed(cls, message: str = "") -> CheckResult:
        return cls(Status.PASSED, message)

    @classmethod
    def failed(cls, message: str) -> CheckResult:
        return cls(Status.FAILED, message)

    @classmethod
    def skipped(cls, message: str) -> CheckResult:
        return cls(Status.SKIPPED, message)


@runtime_checkable
class Verifier(Protocol):
    """A check built from a bundle's params: ``factory(**params)`` returns one.

    The entry point in group ``smallguard.verifiers`` names the factory (usually the class).
    The factory raises ``ValueError`` or ``TypeError`` for bad params, so a bundle with a
    mistake in its ``params`` is refused at start-up rather than at the first request.

    Optionally, a class attribute ``inline = True`` promises that ``check`` is pure, takes well
    under its time budget and never blocks (no I/O, no locks, no sleeping). The server then calls
    it on the request's own thread, which saves a thread hand-off per check; its CPU time is
    measured against the budget, but it cannot be cut short. Without it, ``check`` runs on a pool
    thread and the request stops waiting for it when the budget is spent.

    An inline verifier may also define ``check_many(predictions, contexts)`` (two tuples), returning for
    each item of a batch what ``check`` returns for it. When every verifier of the bundle is inline, a
    batch is then one call, timed as a whole, each item charged an equal share; when the whole takes
    longer than one item's budget, or the call raises or answers another number of items, the items are
    checked one by one with ``check``.
    """

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult: ...
