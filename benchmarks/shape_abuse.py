"""Overload and abuse, the last part of benchmarks/server_shape.py (issue #13).

- Shedding: `smallguard serve --max-concurrent-rpcs 16` with 16 calls in flight, then with 200. For the
  200: the accepted calls' rate, p50 and p99 (against the 16's), and how long a refused call waits for
  its RESOURCE_EXHAUSTED.
- Half-sent calls: a canary (a digits Predict, then a Health/Check, one after the other, a 1 s deadline
  each) alone, then while an attacker holds calls that sent their headers and never their body: 8 of
  them, then 100 on one connection (as many as a connection may open).
- Costly texts: the canary while 8 callers send, again and again, the invoice texts that cost the most
  per character (the issue's reproducers, under the 4,000-character limit) with a 1 s deadline.

The attackers are processes of their own; the canary runs in the benchmark's process, on the load core.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.synchronize import Event
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from shape_load import Job, LoadGenerator, Tally, encoded_requests, split_jobs

from smallguard.v1 import guard_pb2 as pb

PREDICT = "/smallguard.v1.Guard/Predict"
HEALTH = "/grpc.health.v1.Health/Check"
SHED_LIMIT = 16
SHED_IN_FLIGHT = 200
CANARY_DEADLINE_S = 1.0
COSTLY_TEXTS = ("$ " * 1990, "(1.00)" * 660, "Total 1.00\n" * 360)
COSTLY_CALLERS = 8
HALF_SENT = ((8, 1), (100, 1))  # (calls, connections)
# One TCP connection per channel, whatever else this process has open to the same server.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class CanaryFigures:
    """What a canary saw during one attack."""

    attack: str
    calls: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, successful calls
    refusal_latencies: list[float] = field(default_factory=list)  # seconds, calls refused (RESOURCE_EXHAUSTED)
    attacker: dict[str, int] = field(default_factory=dict)  # the attacker's own outcomes, by status

    @property
    def success_rate(self) -> float:
        return self.ok / self.calls if self.calls else float("nan")


@dataclass
class ShedFigures:
    in_flight: int
    tally: Tally  # the load's calls
    seconds: float
    probe: CanaryFigures  # one call at a time beside the load: what a newcomer sees


# ------------------------------------------------------------------------------------ attackers


def _never_sent(release: Event) -> Iterator[bytes]:
    """A request stream that never yields: grpc sends the call's headers and then waits for a body."""
    release.wait()
    return
    yield b""  # a generator, never reached


def _hold_half_sent(target: str, calls: int, connections: int, holding: Event, release: Event) -> None:
    channels = [grpc.insecure_channel(target, options=OWN_CONNECTION) for _ in range(connections)]
    futures = [channels[i % connections].stream_unary(PREDICT).future(_never_sent(release)) for i in range(calls)]
    time.sleep(0.5)  # for the headers to be sent
    holding.set()
    release.wait()
    for future in futures:
        future.cancel()
    for channel in channels:
        channel.close()


def _send_costly_texts(target: str, callers: int, holding: Event, release: Event, outcomes: Any) -> None:
    requests = [pb.PredictRequest(model="invoice-extractor", text=text).SerializeToString() for text in COSTLY_TEXTS]
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def keep_sending(index: int) -> None:
        with grpc.insecure_channel(target, options=OWN_CONNECTION) as channel:
            predict = channel.unary_unary(PREDICT)
            while not release.is_set():
                try:
                    predict(requests[index % len(requests)], timeout=CANARY_DEADLINE_S)
                    outcome = "OK"
                except grpc.RpcError as exc:
                    outcome = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
                with lock:
                    counts[outcome] += 1
                index += 1

    threads = [threading.Thread(target=keep_sending, args=(i,), daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    holding.set()
    for thread in threads:
        thread.join()
    outcomes.update(counts)


@contextlib.contextmanager
def attacking(target: Callable[..., None], *args: Any, cpus: set[int] | None) -> Iterator[dict[str, int]]:
    """An attacker process for the length of the block; yields the attacker's outcomes (filled at the end)."""
    context = get_context("spawn")
    holding, release = context.Event(), context.Event()
    with contextlib.ExitStack() as stack:  # a manager process only for the attacker that reports outcomes
        outcomes = stack.enter_context(context.Manager()).dict() if target is _send_costly_texts else None
        extra = (outcomes,) if outcomes is not None else ()
        process = context.Process(target=_run_pinned, args=(cpus, target, *args, holding, release, *extra),
                                  daemon=True)
        process.start()
        result: dict[str, int] = {}
        try:
            if not holding.wait(60):
                raise RuntimeError("the attacker did not start")
            yield result
        finally:
            release.set()
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
            if outcomes is not None:
                result.update(dict(outcomes))


def _run_pinned(cpus: set[int] | None, target: Callable[..., None], *args: Any) -> None:
    import os

    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    target(*args)


# ------------------------------------------------------------------------------------ the canary


def canary(target: str, attack: str, seconds: float) -> CanaryFigures:
    """A digits Predict then a Health/Check, one after the other, for ``seconds``."""
    figures = CanaryFigures(attack)
    good = encoded_requests("predict")[0]
    check = health_pb2.HealthCheckRequest().SerializeToString()
    with grpc.insecure_channel(target, options=OWN_CONNECTION) as channel:
        calls = [(channel.unary_unary(PREDICT), good), (channel.unary_unary(HEALTH), check)]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for call, body in calls:
                figures.calls += 1
                began = time.monotonic()
                try:
                    call(body, timeout=CANARY_DEADLINE_S)
                except grpc.RpcError as exc:
                    code = exc.code() if isinstance(exc, grpc.Call) else None
                    figures.failures[code.name if code is not None else "UNKNOWN"] += 1
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        figures.refusal_latencies.append(time.monotonic() - began)
                    continue
                figures.ok += 1
                figures.latencies.append(time.monotonic() - began)
    return figures


def under_attacks(target: str, seconds: float, cpus: set[int] | None) -> list[CanaryFigures]:
    """The canary alone, then during each attack."""
    results = [canary(target, "none", seconds)]
    for calls, connections in HALF_SENT:
        with attacking(_hold_half_sent, target, calls, connections, cpus=cpus) as outcomes:
            figures = canary(target, f"{calls} half-sent calls", seconds)
        figures.attacker = outcomes
        results.append(figures)
    with attacking(_send_costly_texts, target, COSTLY_CALLERS, cpus=cpus) as outcomes:
        figures = canary(target, f"{COSTLY_CALLERS} callers of costly texts", seconds)
    figures.attacker = outcomes
    results.append(figures)
    return results


# ------------------------------------------------------------------------------------ shedding


def shedding(target: str, load: LoadGenerator, seconds: float, warmup: float) -> list[ShedFigures]:
    """SHED_LIMIT calls in flight (all accepted), then SHED_IN_FLIGHT against the same limit; each time a
    probe beside the load, one call at a time, times what a newcomer gets: an answer or a refusal. (The
    load's own refusal times include its clients' queueing: a load core busy with 200 callers.)"""
    figures = []
    for in_flight in (SHED_LIMIT, SHED_IN_FLIGHT):
        start = time.monotonic() + 0.3 + warmup
        end = start + seconds

        def job(index: int, share: int, start: float = start, end: float = end) -> Job:
            return Job(target, "predict", share, min(share, 4), start, end, first_row=index * 97)

        load.submit(split_jobs(in_flight, load.size, job))
        time.sleep(max(0.0, start - time.monotonic()))
        probe = canary(target, "probe", end - time.monotonic())
        figures.append(ShedFigures(in_flight, load.collect(timeout=seconds + warmup + 90), seconds, probe))
    return figures


# ------------------------------------------------------------------------------------ the report


def _percentile_ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(shed: list[ShedFigures], attacks: list[CanaryFigures]) -> list[str]:
    lines = [f"overload: smallguard serve --max-concurrent-rpcs {SHED_LIMIT}, pinned as above; the load's calls, "
             "and a probe's beside it (one call at a time)",
             f"{'in flight':>10}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'refused/s':>11}"
             f"{'probe: answered':>17}{'p50 ms':>9}{'refused':>9}{'p50 ms':>9}{'p99 ms':>9}"]
    for f in shed:
        refused = f.tally.errors.get("RESOURCE_EXHAUSTED", 0)
        lines.append(f"{f.in_flight:>10}{f.tally.calls / f.seconds:>12.0f}{_percentile_ms(f.tally.latencies, .5):>9.2f}"
                     f"{_percentile_ms(f.tally.latencies, .99):>9.2f}{refused / f.seconds:>11.0f}"
                     f"{f.probe.ok:>17}{_percentile_ms(f.probe.latencies, .5):>9.2f}"
                     f"{len(f.probe.refusal_latencies):>9}{_percentile_ms(f.probe.refusal_latencies, .5):>9.2f}"
                     f"{_percentile_ms(f.probe.refusal_latencies, .99):>9.2f}")
    if len(shed) == 2 and shed[0].tally.latencies and shed[1].tally.latencies:
        ratio = _percentile_ms(shed[1].tally.latencies, .99) / _percentile_ms(shed[0].tally.latencies, .99)
        lines.append(f"accepted-call p99 at {SHED_IN_FLIGHT} in flight: {ratio:.2f}x the p99 at {SHED_LIMIT}")
    other = {k: v for f in shed for k, v in f.tally.errors.items() if k != "RESOURCE_EXHAUSTED"}
    if other:
        lines.append(f"overload: other errors {other}")
    lines += ["", f"abuse: a canary (digits Predict, then Health/Check, {CANARY_DEADLINE_S:g} s deadline each) "
                  "against smallguard serve (defaults)",
              f"{'attack':<32}{'canary calls':>13}{'succeeded':>11}{'p50 ms':>9}{'p99 ms':>9}  failures; attacker"]
    for f in attacks:
        attacker = ", ".join(f"{k} {v}" for k, v in sorted(f.attacker.items())) or "-"
        lines.append(f"{f.attack:<32}{f.calls:>13}{f.success_rate:>11.1%}{_percentile_ms(f.latencies, .5):>9.2f}"
                     f"{_percentile_ms(f.latencies, .99):>9.2f}  {dict(f.failures) or '-'}; {attacker}")
    return lines


def _summary_ms(values: list[float]) -> dict[str, float]:
    return {"p50": _percentile_ms(values, .5), "p99": _percentile_ms(values, .99), "count": len(values)}


def _canary_json(f: CanaryFigures) -> dict[str, Any]:
    return {"attack": f.attack, "calls": f.calls, "ok": f.ok, "failures": dict(f.failures),
            "latencies_ms": _summary_ms(f.latencies), "refusal_latencies_ms": _summary_ms(f.refusal_latencies),
            "attacker": f.attacker}


def as_json(shed: list[ShedFigures], attacks: list[CanaryFigures]) -> dict[str, Any]:
    return {"shedding": [{"in_flight": f.in_flight, "accepted": f.tally.calls, "seconds": f.seconds,
                          "errors": dict(f.tally.errors), "latencies_ms": _summary_ms(f.tally.latencies),
                          "refusal_latencies_ms": _summary_ms(f.tally.refusal_latencies),
                          "probe": _canary_json(f.probe)} for f in shed],
            "canary": [_canary_json(f) for f in attacks]}
