"""The gRPC server's threads: a few that do the work, and more only while calls are stuck.

grpc's sync server reads a call's body on a pool thread, and a handler may wait on the network (an
escalation tier). A fixed pool smaller than the calls admitted can then be held whole by calls that do
nothing: a client that sends its headers and never its body (slowloris) blocked every caller with a pool of 8.
A thread for every call admitted closes that hole, but costs a context switch more per call under load (6.0
against 4.2 at 64 in flight), as each call wakes a thread of its own.

This pool keeps ``core`` threads, which take calls from one queue as they finish the last (under load, without
waking anyone), and counts a thread whose call has run for ``stuck_after_s`` as stuck. Every half
``stuck_after_s`` a watcher looks: while calls wait and fewer than ``core`` threads are free of a stuck call, it
starts threads up to ``limit``: as many as make up ``core`` free ones while the queue still moves, and one for
every call waiting when nothing was taken from the queue since its last look (a burst of stuck calls). A
thread beyond ``core`` ends once more than ``core`` threads are free of a stuck call again, or after ``idle_s``
with nothing to do. So however many stuck calls arrive at once, the calls behind them wait about
``1.5 * stuck_after_s`` more (and the time to start the threads), and never lose their place; a client that sends
such a burst again and again costs the others that delay each time.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

log = logging.getLogger(__name__)

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class ElasticThreadPool(Executor):
    """An executor with ``core`` threads that grows to ``limit`` while its threads are stuck (see the module).

    Its threads are daemons: at interpreter exit a call still running (one waiting on a tier after its caller
    left) does not hold the process; the server's stop has let the calls in flight finish before that."""

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
        self.started = 0  # threads the pool has started (or tried to), in all: how much it churns
        self._taken = 0  # calls the threads have taken from the queue, ever
        self._taken_at_last_look = 0  # the watcher's own: whether the queue moved between two of its looks
        self._numbers = itertools.count(1)
        self._shut = False
        self._watcher: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def size(self) -> int:
        """How many threads the pool has now."""
        return len(self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)``. A thread is started here only while the pool has fewer than ``core``
        and none waits for work (grpc calls this on its polling thread: threads start outside the lock)."""
        future: Future[Any] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new work after the pool is shut down")
            self._work.put((future, fn, args, kwargs))
            new = self._reserve(1) if self._idle == 0 and len(self._threads) < self.core else []
            watcher = None
            if self._watcher is None:
                watcher = self._watcher = threading.Thread(target=self._watch, name=f"{self._name}-watcher",
                                                           daemon=True)
        if watcher is not None:
            self._start([watcher])
        self._start(new)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; with ``cancel_futures`` cancel those not started. Each thread ends after its call."""
        cancelled = []
        with self._lock:
            self._shut = True
            threads = list(self._threads)
            while cancel_futures:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    cancelled.append(item[0])
            for _ in threads:
                self._work.put(None)
        self._stopped.set()
        for future in cancelled:  # outside the lock: a future's callbacks (grpc's) take locks of their own
            future.cancel()
        if wait:
            watcher = self._watcher
            if watcher is not None and watcher.ident is not None:
                watcher.join()  # no thread is reserved after this
            while remaining := [thread for thread in list(self._threads) if thread is not threading.current_thread()]:
                for thread in remaining:
                    if thread.ident is None:
                        time.sleep(0.001)  # reserved, being started (or taken out of the count if it cannot be)
                    else:
                        thread.join()

    # ------------------------------------------------------------------------------ threads

    def _reserve(self, count: int) -> list[threading.Thread]:
        """``count`` new workers, counted in the pool but not started (the lock held)."""
        threads = []
        for _ in range(count):
            number = next(self._numbers)
            thread = threading.Thread(target=self._work_on, args=(number,), name=f"{self._name}_{number}",
                                      daemon=True)
            self._threads.add(thread)
            threads.append(thread)
        self.started += count
        return threads

    def _start(self, threads: list[threading.Thread]) -> None:
        """Start ``threads`` (the lock not held: a start waits for the new thread). When the system refuses one (a
        limit on processes or memory), it and the rest are taken out of the count and logged; the pool goes on
        with the threads it has, and the watcher tries again at its next look."""
        for index, thread in enumerate(threads):
            try:
                thread.start()
            except BaseException as error:  # MemoryError as well as RuntimeError: never a thread counted, not run
                with self._lock:
                    self._threads.difference_update(threads[index:])
                    if self._watcher in threads[index:]:
                        self._watcher = None  # the next submit starts one again
                log.error("thread pool %s: cannot start a thread (%s); %d threads serve", self._name,
                          error or type(error).__name__, len(self._threads))
                return

    def _unstuck(self, now: float) -> int:
        """Threads whose call (if any) has run for less than ``stuck_after_s``."""
        since = now - self.stuck_after_s
        return len(self._threads) - sum(1 for started in list(self._running.values()) if started < since)

    def _work_on(self, number: int) -> None:
        """Take calls until shutdown; a thread beyond ``core`` also ends when enough others are free or it had
        nothing to do for ``idle_s``. The size is read without the lock first (with no thread beyond ``core``,
        the common case, that is all), and again under the lock that lets the thread go, so that two threads
        cannot both leave on one count."""
        running, work, me = self._running, self._work, threading.current_thread()
        try:
            while True:
                with self._lock:
                    self._idle += 1
                try:
                    item = work.get() if len(self._threads) <= self.core else work.get(timeout=self.idle_s)
                except queue.Empty:
                    item = None  # a thread beyond core with nothing to do for idle_s
                with self._lock:
                    self._idle -= 1
                    if item is not None:
                        self._taken += 1
                    if item is None and (self._shut or len(self._threads) > self.core):
                        self._threads.discard(me)
                        return
                if item is None:
                    continue  # idle_s passed, but the others ended meanwhile: this one is needed
                future, fn, args, kwargs = item
                del item
                if future.set_running_or_notify_cancel():
                    running[number] = time.monotonic()  # the watcher reads these without the lock (a copy)
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:  # the future carries it, as concurrent.futures does
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
                    finally:
                        running.pop(number, None)
                del future, fn, args, kwargs  # nothing of the call is kept while the thread waits
                if len(self._threads) > self.core:
                    with self._lock:
                        if len(self._threads) > self.core and self._unstuck(time.monotonic()) > self.core:
                            self._threads.discard(me)  # enough threads are free again
                            return
        finally:
            with self._lock:
                self._threads.discard(me)  # however the loop ended

    def _watch(self) -> None:
        """Every half ``stuck_after_s`` until shutdown: grow the pool if calls wait behind stuck ones. An error
        here is logged and the watch goes on: without it, stuck calls would hold the others back."""
        while not self._stopped.wait(self.stuck_after_s / 2):
            try:
                self._grow()
            except Exception:
                log.exception("thread pool %s: the watcher failed; it goes on", self._name)

    def _grow(self) -> None:
        """Make up the threads free of a stuck call to ``core``, one for one while the queue still moves (a call
        waiting on a tier beside others that run); a thread for every call waiting when nothing was taken from
        the queue since the last look (a burst of stuck calls holds every thread: taken at once, not ``core`` a
        round)."""
        waiting = self._work.qsize()
        with self._lock:
            moved, self._taken_at_last_look = self._taken != self._taken_at_last_look, self._taken
            if not waiting:
                return
            unstuck = self._unstuck(time.monotonic())
            if self._shut or self._idle or unstuck >= self.core:
                return  # a free thread is about to take the call, or enough threads are free of a stuck one
            held = not moved and unstuck < len(self._threads)  # stuck calls hold every thread that could take one
            count = waiting if held else self.core - unstuck
            new = self._reserve(min(count, waiting, self.limit - len(self._threads)))
        self._start(new)
