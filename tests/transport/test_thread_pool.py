"""The gRPC server's thread pool: ``core`` threads under load, more only while calls are stuck."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from smallguard.server.transport.thread_pool import ElasticThreadPool
from tests.conftest import wait_until


@pytest.fixture
def pool() -> Iterator[ElasticThreadPool]:
    made = ElasticThreadPool(4, 12, stuck_after_s=0.05, idle_s=2.0, name="test-pool")
    yield made
    made.shutdown(wait=True, cancel_futures=True)


def test_short_calls_under_load_keep_the_pool_at_its_core() -> None:
    pool = ElasticThreadPool(4, 12, stuck_after_s=1.0, name="test-pool")  # no call here is stuck, however slow
    sizes: list[int] = []

    def work() -> int:
        time.sleep(0.002)  # short, but long enough that calls queue behind each other
        sizes.append(pool.size)
        assert threading.current_thread().name.startswith("test-pool_")
        return 7

    futures = [pool.submit(work) for _ in range(400)]
    try:
        assert [f.result(timeout=30) for f in futures] == [7] * 400
    finally:
        pool.shutdown()
    assert 1 <= max(sizes) <= 4  # calls queue behind the busy threads: no thread beyond the core, whatever the load


def test_stuck_calls_do_not_hold_back_the_others_and_extra_threads_end_after() -> None:
    pool = ElasticThreadPool(4, 12, stuck_after_s=0.05, idle_s=30.0, name="test-pool")
    release, began = threading.Event(), threading.Semaphore(0)

    def hold() -> bool:
        began.release()
        return release.wait(30)

    stuck = [pool.submit(hold) for _ in range(4)]  # every core thread, as half-sent calls hold them
    try:
        for _ in stuck:
            assert began.acquire(timeout=10)
        quick = [pool.submit(lambda i=i: i * i) for i in range(20)]
        assert [f.result(timeout=10) for f in quick] == [i * i for i in range(20)]  # never, without the watcher
        # the threads started for the calls end, but for the core's four free ones
        wait_until(lambda: pool.size == 8, "8 threads in the pool", timeout=10, interval=0.01)
    finally:
        release.set()
    assert all(f.result(timeout=10) for f in stuck)
    # the threads beyond the core end once the stuck calls are done
    wait_until(lambda: pool.size == 4, "4 threads in the pool", timeout=10, interval=0.01)
    pool.shutdown()


def test_one_stuck_call_among_many_short_ones_costs_a_thread_not_one_per_call() -> None:
    """40 short calls kept in flight on 4 threads, and a 0.3 s call every 100 ms: while the queue moves, a stuck
    call is made up for with one thread. A pool that started a thread for every call waiting whenever one was
    stuck started 744 threads here in 2 s (up to 43 at once); a thread per call, one per call."""
    pool = ElasticThreadPool(4, 64, stuck_after_s=0.05, idle_s=30.0, name="test-pool")
    places = threading.Semaphore(40)
    end = time.monotonic() + 1.5
    sizes: list[int] = []

    def short() -> None:
        time.sleep(0.003)
        sizes.append(pool.size)

    def keep_long_ones_coming() -> None:
        while time.monotonic() < end:
            pool.submit(time.sleep, 0.3)
            time.sleep(0.1)

    feeder = threading.Thread(target=keep_long_ones_coming)
    feeder.start()
    calls = 0
    while time.monotonic() < end:
        assert places.acquire(timeout=10)
        pool.submit(short).add_done_callback(lambda _f: places.release())
        calls += 1
    feeder.join()
    pool.shutdown()
    assert calls > 200  # the short calls went on meanwhile
    assert pool.started < 60
    assert max(sizes) <= 16


def test_a_burst_of_stuck_calls_holds_back_the_calls_behind_it_once_not_in_rounds() -> None:
    """120 stuck calls queued ahead of a quick one: the watcher starts a thread for every call waiting at once.
    Growing by the core each round (4 threads a 75 ms round here), the quick call waited more than 2 s."""
    pool = ElasticThreadPool(4, 200, stuck_after_s=0.05, name="test-pool")
    release = threading.Event()
    stuck = [pool.submit(release.wait, 30) for _ in range(120)]
    try:
        queued = time.monotonic()
        quick = pool.submit(time.monotonic)
        started = quick.result(timeout=10)
        assert started - queued < 1.0
    finally:
        release.set()
    assert all(f.result(timeout=10) for f in stuck)
    pool.shutdown()


def test_a_thread_the_system_refuses_is_not_counted_and_the_call_is_run(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A start that fails (a limit on processes or memory) is logged and taken out of the count; the watcher
    starts another thread for the call that waits."""
    start = threading.Thread.start

    def refuse_the_first(thread: threading.Thread) -> None:
        if thread.name == "test-refused_1":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse_the_first)
    pool = ElasticThreadPool(2, 4, name="test-refused")
    try:
        assert pool.submit(lambda: 5).result(timeout=10) == 5
        assert "cannot start a thread (can't start new thread)" in caplog.text
        assert pool.size == 1
    finally:
        pool.shutdown()


def test_the_pool_never_passes_its_limit(pool: ElasticThreadPool) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        release.wait(30)

    held = [pool.submit(hold) for _ in range(20)]
    try:
        for _ in range(12):
            assert started.acquire(timeout=10)
        time.sleep(0.3)  # several rounds of the watcher: nothing more may start
        assert pool.size == 12
        assert not started.acquire(timeout=0)
    finally:
        release.set()
    for future in held:
        future.result(timeout=10)


def test_futures_carry_results_errors_and_callbacks(pool: ElasticThreadPool) -> None:
    def fail() -> None:
        raise ValueError("no")

    done = threading.Event()
    future = pool.submit(fail)
    future.add_done_callback(lambda _f: done.set())  # grpc counts a call finished this way
    with pytest.raises(ValueError, match="no"):
        future.result(timeout=10)
    assert done.wait(10)
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(timeout=10) == 5


def test_shutdown_cancels_what_waits_and_refuses_more() -> None:
    pool = ElasticThreadPool(1, 1, name="test-pool")
    release, began = threading.Event(), threading.Event()

    def hold() -> bool:
        began.set()
        return release.wait(30)

    running = pool.submit(hold)
    assert began.wait(10)
    waiting = pool.submit(lambda: 1)
    release.set()
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=10) is True
    assert waiting.cancelled() or waiting.result(timeout=10) == 1  # taken before the shutdown, or cancelled
    assert pool.size == 0
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: 1)


@pytest.mark.parametrize(("core", "limit", "stuck_after_s", "idle_s"),
                         [(0, 4, 0.05, 1.0), (5, 4, 0.05, 1.0), (1, 4, 0.0, 1.0), (1, 4, 0.05, 0.0)])
def test_bad_sizes_are_refused(core: int, limit: int, stuck_after_s: float, idle_s: float) -> None:
    with pytest.raises(ValueError, match="core <= limit"):
        ElasticThreadPool(core, limit, stuck_after_s=stuck_after_s, idle_s=idle_s)
