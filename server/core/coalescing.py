"""Concurrent calls for one model served together: the calls that are ready when the model is free run as one batch.

A single Predict pays the whole path alone: the model run, calibration, the verifiers, drift. Through the
batch path (one model run, each step once over all the items) eight calls cost about half as much each,
with the same decision for every one (``PredictBatch`` is held to that). So under load the calls that are
ready at once are served together: a call that finds the model busy waits for the thread serving it, and
the calls that arrived meanwhile are then served by one of them, together. Nothing waits for a batch to
fill and no call waits on a timer: a lone caller is served at once and alone (as in Triton's dynamic
batcher with no queue delay).

On one core the threads take turns holding the interpreter lock, and a thread lets go of it only when it
blocks: a call that finds the model free would be served alone before the others ever got there. So when
calls have been arriving while the model was busy, a call that finds it free first yields the CPU once
(``sched_yield``), which lets the threads whose calls are ready come up to the model, and then serves
itself with them. When a yield brings no one, the next call serves itself at once: a caller alone pays for
one yield at most, after a busy spell.

If serving a batch fails as a whole (a bug: the batch path gives each call its own error), each call is served
again alone; what the batch path had already done for them (their drift observations, their spans) is then done
twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


_NOT_SERVED: Any = object()  # a call's result until it has one (a result may be any value, None included)
_yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))  # os.sched_yield is POSIX's


class _Waiting(Generic[T, R]):
    """A call served in a batch: its result or error, and the batch itself for the call that serves it."""

    __slots__ = ("batch", "error", "item", "released", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R = _NOT_SERVED
        self.error: BaseException | None = None
        self.released = threading.Lock()  # held until this call's result is in, or it must serve a batch
        self.released.acquire()
        self.batch: list[_Waiting[T, R]] | None = None


class Coalescer(Generic[T, R]):
    """One model's calls: each alone while they come one at a time, in batches while they come together."""

    def __init__(self, one: Callable[[T], R], many: Callable[[Sequence[T]], Sequence[R | BaseException]],
                 served_together: Callable[[int], None] = lambda calls: None) -> None:
        self._one = one  # one call, alone: its result, or it raises
        self._many = many  # calls together: a result or an error for each, in order
        self._served_together = served_together  # told the size of each batch of two calls or more
        self._lock = threading.Lock()
        self._arrived: list[_Waiting[T, R]] = []  # calls waiting for the model
        self._busy = False  # a thread is serving a call or a batch
        self._crowded = False  # calls have been arriving while the model was busy: gather before serving

    def run(self, item: T) -> R:
        """``item``'s result, served alone or with the calls beside it; raises what serving it raised."""
        with self._lock:
            if self._busy:
                waiting: _Waiting[T, R] | None = _Waiting(item)
                self._arrived.append(waiting)
                self._crowded = True
            else:
                self._busy = True
                waiting = None
        if waiting is None:
            try:
                waiting = self._gathered(item) if self._crowded else None
                if waiting is None:
                    return self._one(item)
            finally:
                if waiting is None:  # served alone (or gathering failed): the next calls' turn
                    self._hand_on()
        else:
            waiting.released.acquire()
        if waiting.batch is not None:
            try:
                self._serve(waiting.batch)
            finally:
                self._hand_on()
        if waiting.error is not None:
            raise waiting.error
        return waiting.result

    def _gathered(self, item: T) -> _Waiting[T, R] | None:
        """``item`` at the head of the calls that came up while this thread yielded; None when none did. Nothing
        that can fail comes after the calls are taken from the queue: they are this thread's to serve."""
        _yield_cpu()  # lets go of the interpreter lock: the threads with a call ready run up to the model
        mine: _Waiting[T, R] = _Waiting(item)
        batch, empty = [mine], []
        with self._lock:
            arrived, self._arrived = self._arrived, empty
            if not arrived:
                self._crowded = False
                return None
            batch += arrived
        mine.batch = batch
        return mine

    def _serve(self, batch: list[_Waiting[T, R]]) -> None:
        """Every call of ``batch`` gets its result or error, and every one but the first (this thread's) is
        released."""
        try:
            if len(batch) == 1:
                batch[0].result, batch[0].error = _alone(self._one, batch[0].item)
                return
            try:
                results = self._many([waiting.item for waiting in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(batch)} calls")
            except Exception:  # the batch as a whole failed (a bug): each call gets its own chance, alone
                log.exception("%d calls served together failed; serving each alone", len(batch))
                results = [error if error is not None else result
                           for result, error in (_alone(self._one, waiting.item) for waiting in batch)]
            else:
                try:
                    self._served_together(len(batch))
                except Exception:  # a count that failed costs the count, not the calls
                    log.exception("counting %d calls served together failed", len(batch))
            for waiting, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    waiting.error = result
                else:
                    waiting.result = result
        finally:
            for waiting in batch:
                if waiting.result is _NOT_SERVED and waiting.error is None:  # stopped short (a BaseException)
                    waiting.error = RuntimeError("this call's batch stopped before the call was served")
            for waiting in batch[1:]:
                waiting.released.release()

    def _hand_on(self) -> None:
        """Give the calls that arrived meanwhile to the first of them to serve, or mark the model free."""
        with self._lock:
            batch, self._arrived = self._arrived, []
            if not batch:
                self._busy = False
                return
        first = batch[0]
        first.batch = batch
        first.released.release()


def _alone(one: Callable[[T], R], item: T) -> tuple[R, BaseException | None]:
    try:
        return one(item), None
    except Exception as error:
        return _NOT_SERVED, error
