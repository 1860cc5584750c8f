"""The escalation tier contract, and what guards every tier alike: its circuit breaker and its retries.

A tier kind (an in-process bundle, a remote guard, an OpenAI-compatible endpoint) implements
``Tier.ask``: one answer for one request within a time budget, or a ``TierError`` that says what
went wrong in words an operator can act on. The cascade (``core.cascade``) verifies the answer and
decides; the kinds never decide for the bundle.

Why not pybreaker: its breaker holds one lock for the whole guarded call, so calls through one
breaker would run one at a time; a tier must serve its concurrency limit at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from smallguard.server.domain.predictions import Decision, FieldBelowThreshold, PredictCall, Reason
from smallguard.server.domain.tier_spec import CircuitPolicy, TierSpec
from smallguard.verifiers import Prediction

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TierAnswer:
    """A tier's prediction with its own judgement of it, before the bundle's verifiers.

    ``decision`` and ``reasons`` are the tier's own (its threshold, a remote guard's decision);
    ``calibrated`` False means ``confidence`` is no probability (an LLM), and such an answer may
    stand only when the bundle opts in."""

    prediction: Prediction
    calibrated: bool
    confidence: float
    raw_confidence: float
    threshold: float
    decision: Decision
    reasons: tuple[Reason, ...] = ()
    low_fields: tuple[FieldBelowThreshold, ...] = ()
    calls: int = 1


class TierError(Exception):
    """A tier that failed: timed out, refused, was down, or answered something the bundle cannot use.

    ``calls`` counts the requests that reached the wire (they cost even when they fail);
    ``retry_after`` is set for a failure the tier says is safe to retry (seconds to wait, or 0)."""

    def __init__(self, message: str, *, calls: int = 1, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.calls = calls
        self.retry_after = retry_after


class Tier(Protocol):
    spec: TierSpec

    def ask(self, call: PredictCall, request_id: str, timeout_s: float) -> TierAnswer:
        """The tier's answer to ``call`` within ``timeout_s`` seconds; TierError when there is none."""
        ...

    def close(self) -> None: ...


class CircuitBreaker:
    """Closed: calls go through. After ``failures`` failed calls in a row: open, no calls for
    ``open_seconds``. Then half-open: one trial call; its success closes the circuit, its failure
    opens it again. Thread-safe; the lock is held only to read or update the state."""

    def __init__(self, policy: CircuitPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial call is in flight

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self._policy.open_seconds else "half-open"

    def allow(self) -> bool:
        """May a call go through now? (In half-open, only the one trial call may.)"""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._trial:
                self._trial = True
                return True
            return False

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self._policy.failures:
                self._opened_at, self._trial = self._clock(), False

    def reopens_in(self) -> float:
        """Seconds until an open circuit lets a trial call through (0 when it is not open)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._policy.open_seconds - (self._clock() - self._opened_at))


def with_retries(attempt: Callable[[float], T], retries: int, deadline: float,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[T, int]:
    """``attempt(timeout_s)`` until it succeeds, at most ``1 + retries`` times, all before ``deadline``
    (time.monotonic); returns its result and the calls made. Only a TierError with ``retry_after`` set
    is retried, after the wait the tier asked for or an exponential backoff with jitter (50 ms,
    100 ms, ...), whichever is longer; a wait that would pass the deadline ends the retries. The
    TierError raised counts every call."""
    calls = 0
    for number in range(retries + 1):
        try:
            return attempt(max(deadline - time.monotonic(), 0.001)), calls + 1
        except TierError as error:
            calls += error.calls
            wait = None if error.retry_after is None else max(error.retry_after,
                                                              0.05 * 2 ** number * (0.5 + random.random()))
            if wait is None or number == retries or time.monotonic() + wait >= deadline:
                raise TierError(str(error) if calls == 1 else f"{error} (after {calls} attempts)",
                                calls=calls) from None
            sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")
