"""Attacks on availability: while they go on, a canary's Predict and Health/Check must be answered.

- Calls that send their headers and never their body (slowloris): grpc's sync server reads a body on a
  pool thread, so with a pool smaller than the calls it admits, 8 such calls took every thread and every
  other caller, Health/Check included, waited past its deadline. The pool now adds a thread for each call
  that is stuck (thread_pool), one connection may open at most STREAMS_PER_CONNECTION streams, and past
  --max-concurrent-rpcs a call is refused at once.
- The costliest invoice texts under the length limit, sent again and again by 8 callers: they once took
  seconds each (parsing grew ~4x per doubling of length) and starved everyone else for a minute."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smallguard.server.transport.server import STREAMS_PER_CONNECTION
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import MODELS, Running, digits_request, digits_rows, start_server

PREDICT = "/smallguard.v1.Guard/Predict"


class HalfSent:
    """``calls`` Predict calls on ``connections`` connections of their own, each sending its headers and then
    nothing, until ``release()``."""

    def __init__(self, address: str, calls: int, connections: int = 1) -> None:
        self._release = threading.Event()
        self._channels = [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                          for _ in range(connections)]
        self.futures = [self._channels[i % connections].stream_unary(PREDICT).future(self._never())
                        for i in range(calls)]

    def _never(self) -> Iterator[bytes]:
        self._release.wait()
        return
        yield b""  # a generator that never yields: grpc sends the headers and waits for a body

    def release(self) -> None:
        self._release.set()
        for future in self.futures:
            future.cancel()
        for channel in self._channels:
            channel.close()


def held(server: Running, calls: int, connections: int = 1) -> HalfSent:
    half_sent = HalfSent(server.address, calls, connections)
    time.sleep(0.5)  # the headers reach the server
    return half_sent


def canary(server: Running) -> None:
    """A Predict and a Health/Check, as a load balancer and a caller would send them, each with a deadline."""
    good = server.stub.Predict(digits_request(digits_rows()[0]["pixels"]), timeout=5)
    assert good.decision in (pb.ANSWER, pb.ABSTAIN, pb.ESCALATE)
    health = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    running = start_server(MODELS)
    yield running
    running.stop()


@pytest.mark.parametrize(("calls", "connections"), [(8, 1), (150, 3)])
def test_half_sent_calls_do_not_stop_other_callers(server: Running, calls: int, connections: int) -> None:
    attacker = held(server, calls, connections)
    try:
        for _ in range(5):
            canary(server)
    finally:
        attacker.release()
    canary(server)


def test_one_connection_cannot_take_every_call_slot() -> None:
    """Past STREAMS_PER_CONNECTION, a connection's calls wait in the client: the server never admits them,
    so a limit just above that share still has a slot for another connection's caller."""
    limited = start_server(MODELS, max_concurrent_rpcs=STREAMS_PER_CONNECTION + 2)
    attacker = held(limited, STREAMS_PER_CONNECTION + 30)
    try:
        canary(limited)
    finally:
        attacker.release()
        limited.stop()


COSTLY_TEXTS = ("$ " * 1990, "(1.00)" * 660, "Total 1.00\n" * 360)  # under the 4,000-character limit


def test_callers_of_the_costliest_texts_do_not_stop_other_callers(server: Running) -> None:
    stop = threading.Event()
    outcomes: list[str] = []

    def send_costly(index: int) -> None:
        with grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = guard_pb2_grpc.GuardStub(channel)
            while not stop.is_set():
                request = pb.PredictRequest(model="invoice-extractor", text=COSTLY_TEXTS[index % len(COSTLY_TEXTS)])
                try:
                    stub.Predict(request, timeout=1)
                    outcomes.append("OK")
                except grpc.RpcError as error:
                    outcomes.append(error.code().name)
                index += 1

    attackers = [threading.Thread(target=send_costly, args=(i,)) for i in range(8)]
    for attacker in attackers:
        attacker.start()
    try:
        time.sleep(0.5)
        for _ in range(5):
            canary(server)
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join(timeout=30)
    assert outcomes and set(outcomes) <= {"OK", "DEADLINE_EXCEEDED"}


def test_past_the_limit_a_call_is_refused_at_once() -> None:
    limited = start_server(MODELS, max_concurrent_rpcs=4)
    attacker = held(limited, 4)
    try:
        deadline = time.monotonic() + 10
        while True:  # answered only while some of the four half-sent calls have not reached the server yet
            try:
                limited.stub.Predict(digits_request(digits_rows()[0]["pixels"]), timeout=30)
            except grpc.RpcError as refused:
                assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # not a wait until the deadline
                break
            assert time.monotonic() < deadline, "four half-sent calls held, and a fifth call was still answered"
            time.sleep(0.05)
    finally:
        attacker.release()
    deadline = time.monotonic() + 10
    while True:  # the slots come back once the attacker leaves
        try:
            canary(limited)
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
            time.sleep(0.1)
    limited.stop()
