"""The gRPC server's threads: a few that do the work, and more only for calls that are stuck.

grpc's sync server reads a call's body on a pool thread, and a handler may wait on the network (an
escalation tier). A fixed pool smaller than the calls admitted can then be held whole by calls that do
nothing: a client that sends its headers and never its body (slowloris) blocked every caller with a pool of 8.
A thread for every call admitted closes that hole, but costs a context switch more per call under load (6.0
against 4.2 at 64 in flight), as each call wakes a thread of its own.

This pool keeps ``core`` threads, which take calls from one queue as they finish the last (under load, without
waking anyone), and counts a thread whose call has run for ``stuck_after_s`` as stuck. While calls wait and
fewer than ``core`` threads are not stuck, a watcher adds threads, up to ``limit``. A thread beyond ``core``
ends once the others that are not stuck are ``core`` again, or after ``idle_s`` with nothing to do. So a stuck
call costs the others at most about ``stuck_after_s`` of waiting, and never their place.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_Item = tuple[Future, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class ElasticThreadPool(Executor):
    """An executor with ``core`` threads that grows to ``limit`` while its threads are stuck (see the module)."""

    def __init__(self, core: int, limit: int, *, stuck_after_s: float = 0.05, idle_s: float = 10.0,
                 name: str = "pool") -> None:
        if not 1 <= core <= limit or stuck_after_s <= 0 or idle_s <= 0:
            raise ValueError(f"need 1 <= core <= limit, stuck_after_s > 0 and idle_s > 0, got core={core}, "
                             f"limit={limit}, stuck_after_s={stuck_after_s}, idle_s={idle_s}")
        self.core, self.limit, self.stuck_after_s, self.idle_s = core, limit, stuck_after_s, idle_s
        self._name = name
        self._work: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running: dict[int, float] = {}  # thread number -> when it took the call it runs now
        self._threads: set[threading.Thread] = set()
        self._idle = 0  # threads waiting for work
        self._numbers = itertools.count(1)
        self._shut = False
        self._watcher: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def size(self) -> int:
        """How many threads the pool has now."""
        return len(self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new work after the pool is shut down")
            self._work.put((future, fn, args, kwargs))
            if self._idle == 0 and len(self._threads) < self.core:
                self._add_thread()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut = True
            threads = list(self._threads)
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in threads:
                self._work.put(None)
        self._stopped.set()
        if wait:
            for thread in threads:
                thread.join()
            if self._watcher is not None:
                self._watcher.join()

    # ------------------------------------------------------------------------------ threads

    def _add_thread(self) -> None:
        """One more worker (the lock held). The first beyond what ``submit`` starts brings the watcher."""
        number = next(self._numbers)
        thread = threading.Thread(target=self._work_on, args=(number,), name=f"{self._name}_{number}", daemon=True)
        self._threads.add(thread)
        thread.start()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name=f"{self._name}-watcher", daemon=True)
            self._watcher.start()

    def _unstuck(self, now: float) -> int:
        """Threads whose call (if any) has run for less than ``stuck_after_s``."""
        since = now - self.stuck_after_s
        return len(self._threads) - sum(1 for started in list(self._running.values()) if started < since)

    def _work_on(self, number: int) -> None:
        running, work, me = self._running, self._work, threading.current_thread()
        while True:
            with self._lock:
                self._idle += 1
            try:
                item = work.get() if len(self._threads) <= self.core else work.get(timeout=self.idle_s)
            except queue.Empty:
                item = None  # a thread beyond core with nothing to do for idle_s
            with self._lock:
                self._idle -= 1
                if item is None and (self._shut or len(self._threads) > self.core):
                    self._threads.discard(me)  # under the lock that decided it: the others count without it
                    return
            if item is None:
                continue  # the others ended meanwhile: this one is needed
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                running[number] = time.monotonic()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # the future carries it, as concurrent.futures does
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                finally:
                    del running[number]
            del future, fn, args, kwargs, item
            if len(self._threads) > self.core:
                with self._lock:
                    if len(self._threads) > self.core and self._unstuck(time.monotonic()) > self.core:
                        self._threads.discard(me)  # enough threads are free again: this one is no longer needed
                        return

    def _watch(self) -> None:
        """Every half ``stuck_after_s``: while calls wait and too few threads are free, add threads."""
        while not self._stopped.wait(self.stuck_after_s / 2):
            waiting = self._work.qsize()
            if not waiting:
                continue
            with self._lock:
                if self._shut:
                    return
                if self._idle:  # a free thread is about to take it
                    continue
                missing = min(self.core - self._unstuck(time.monotonic()), waiting, self.limit - len(self._threads))
                for _ in range(missing):
                    self._add_thread()
