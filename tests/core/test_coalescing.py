"""The coalescer: calls that arrive while the model is busy are served together, each with its own answer."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from smallguard.server.core.coalescing import Coalescer


class Model:
    """``one`` and ``many`` of a coalescer, recording how each call was served. ``one`` of the item ``hold``
    waits until ``release`` is set, so the calls after it arrive while the model is busy."""

    def __init__(self, hold: object = None) -> None:
        self.hold, self.release, self.holding = hold, threading.Event(), threading.Event()
        self.alone: list[object] = []
        self.batches: list[list[object]] = []
        self.together: list[int] = []

    def one(self, item: object) -> str:
        self.alone.append(item)
        if item == self.hold:
            self.holding.set()
            assert self.release.wait(10)
        if item == "bad":
            raise ValueError("bad item")
        return f"answer {item}"

    def many(self, items: Sequence[object]) -> list[str | Exception]:
        self.batches.append(list(items))
        return [ValueError("bad item") if item == "bad" else f"answer {item}" for item in items]

    def coalescer(self) -> Coalescer:
        return Coalescer(self.one, self.many, self.together.append)


def arrive_while_busy(model: Model, coalescer: Coalescer, items: list[object]) -> dict[object, object]:
    """Serve ``model.hold``; while it is being served, call with each of ``items`` from threads of their own;
    then let it finish. What each call returned or raised, by item."""
    outcomes: dict[object, object] = {}

    def call(item: object) -> None:
        try:
            outcomes[item] = coalescer.run(item)
        except Exception as error:
            outcomes[item] = error

    first = threading.Thread(target=call, args=(model.hold,))
    first.start()
    assert model.holding.wait(10)
    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(coalescer._arrived) < len(items):  # every one of them waits for the model
        assert time.monotonic() < deadline, "the calls did not all wait for the busy model"
        time.sleep(0.001)
    model.release.set()
    for thread in [first, *threads]:
        thread.join(10)
        assert not thread.is_alive()
    return outcomes


def test_a_caller_alone_is_served_alone() -> None:
    model = Model()
    coalescer = model.coalescer()
    assert [coalescer.run(i) for i in range(20)] == [f"answer {i}" for i in range(20)]
    assert model.alone == list(range(20))
    assert model.batches == [] and model.together == []


def test_calls_that_arrive_while_the_model_is_busy_are_served_together_each_with_its_answer() -> None:
    model = Model(hold="first")
    coalescer = model.coalescer()
    outcomes = arrive_while_busy(model, coalescer, list(range(7)))
    assert outcomes == {"first": "answer first", **{i: f"answer {i}" for i in range(7)}}
    assert model.alone == ["first"]
    assert [sorted(batch) for batch in model.batches] == [list(range(7))]  # one batch, whatever their order
    assert model.together == [7]
    assert coalescer.run("later") == "answer later"  # the model is free again


def test_an_item_that_fails_raises_in_its_own_call_only() -> None:
    model = Model(hold="first")
    outcomes = arrive_while_busy(model, model.coalescer(), ["a", "bad", "b"])
    assert isinstance(outcomes["bad"], ValueError) and str(outcomes["bad"]) == "bad item"
    assert (outcomes["a"], outcomes["b"]) == ("answer a", "answer b")


@pytest.mark.parametrize("failure", ["raises", "wrong count"])
def test_a_batch_that_fails_as_a_whole_serves_each_call_alone(failure: str, caplog: pytest.LogCaptureFixture) -> None:
    model = Model(hold="first")

    def many(items: Sequence[object]) -> list[str]:
        if failure == "raises":
            raise RuntimeError("a bug in the batch path")
        return ["one answer for all"]
    coalescer = Coalescer(model.one, many, model.together.append)
    outcomes = arrive_while_busy(model, coalescer, ["a", "bad", "b"])
    assert (outcomes["a"], outcomes["b"]) == ("answer a", "answer b")
    assert isinstance(outcomes["bad"], ValueError)
    assert sorted(model.alone[1:]) == ["a", "b", "bad"]
    assert model.together == []  # not counted as served together
    assert "served together failed; serving each alone" in caplog.text


def test_a_count_that_fails_costs_the_count_not_the_calls(caplog: pytest.LogCaptureFixture) -> None:
    model = Model(hold="first")

    def count(calls: int) -> None:
        raise RuntimeError("the metric broke")
    outcomes = arrive_while_busy(model, Coalescer(model.one, model.many, count), ["a", "b", "c"])
    assert outcomes == {"first": "answer first", "a": "answer a", "b": "answer b", "c": "answer c"}
    assert len(model.batches) == 1 and model.alone == ["first"]  # served once, together
    assert "counting 3 calls served together failed" in caplog.text


def test_a_result_of_none_is_a_result() -> None:
    model = Model(hold="first")
    coalescer = Coalescer(model.one, lambda items: [None] * len(items))
    outcomes = arrive_while_busy(model, coalescer, ["a", "b", "c"])
    assert outcomes == {"first": "answer first", "a": None, "b": None, "c": None}


def test_a_batch_stopped_by_a_base_exception_releases_every_waiting_call() -> None:
    class Stop(BaseException):
        pass

    model = Model(hold="first")

    def many(items: Sequence[object]) -> list[str]:
        raise Stop
    coalescer = Coalescer(model.one, many)
    outcomes: dict[object, object] = {}
    original = threading.excepthook
    threading.excepthook = lambda args: outcomes.setdefault("escaped", args.exc_type)  # the serving thread's
    try:
        outcomes.update(arrive_while_busy(model, coalescer, ["a", "b", "c"]))
    finally:
        threading.excepthook = original
    assert outcomes.pop("escaped") is Stop
    assert outcomes.pop("first") == "answer first"
    # the thread that served the batch ended with Stop; the others were released with an error, none hangs
    assert all(isinstance(value, RuntimeError) for value in outcomes.values()), outcomes
    assert len(outcomes) == 2


def test_under_load_every_call_gets_its_own_answer_and_the_model_ends_free() -> None:
    served: list[object] = []

    def one(item: int) -> int:
        served.append(item)
        time.sleep(random.random() / 2000)  # lets go of the interpreter lock, as a model run does
        return item * 2

    def many(items: Sequence[int]) -> list[int]:
        served.extend(items)
        time.sleep(random.random() / 1000)
        return [item * 2 for item in items]
    together: list[int] = []
    coalescer = Coalescer(one, many, together.append)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(coalescer.run, range(4000)))
    assert results == [i * 2 for i in range(4000)]
    assert sorted(served) == list(range(4000))  # each call served exactly once
    assert together and sum(together) <= 4000 and min(together) >= 2
    assert not coalescer._busy and not coalescer._arrived
