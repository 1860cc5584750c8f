"""Garbage-collection pauses, per thread, so a verifier's time budget can measure the verifier.

A collection stops the thread that triggers it; a verifier running on that thread would otherwise
be charged for the pause and escalated with VERIFIER_ERROR although nothing was wrong. The
callback costs nothing between collections.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any


class GcPauses:
    """Time spent in garbage collection by each thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def in_this_thread_ns(self) -> int:
        """CPU nanoseconds this thread has spent collecting garbage since install."""
        return getattr(self._local, "total", 0)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.thread_time_ns()  # CPU time, the clock the verifier runner charges budgets on
        if phase == "start":
            self._local.started = now
            return
        started = getattr(self._local, "started", None)
        if started is None:
            return
        self._local.total = getattr(self._local, "total", 0) + now - started
