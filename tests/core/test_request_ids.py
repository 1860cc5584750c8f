"""Request ids: 32 hex digits, time first (the store's index appends them), then 80 random bits."""

from __future__ import annotations

import re
import threading
import time

from smallguard.server.core.request_ids import new_request_id


def test_an_id_is_its_millisecond_then_random_digits() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_request_id() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert all(before <= int(i[:12], 16) <= after for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({i[12:] for i in ids}) == len(ids)  # the random part alone never repeats either
    assert len({i[12] for i in ids}) > 8  # and is random: its first digit takes many values


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_request_id()
    time.sleep(0.003)
    second = new_request_id()
    assert first[:12] < second[:12] and first < second


def test_ids_made_on_many_threads_at_once_are_all_different() -> None:
    found: list[str] = []
    threads = [threading.Thread(target=lambda: found.extend(new_request_id() for _ in range(600))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 2400
