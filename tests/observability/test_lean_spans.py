"""The lean tracer provider exports what the SDK's own exports, call for call.

Each scenario runs twice, through the SDK's ``TracerProvider`` and through ``LeanTracerProvider``, each with
the same resource, limits, sampler and a counting id generator (so both give the same ids), and what each
exported is encoded by the OTLP exporter's own encoder and compared as one protobuf message: names, kinds,
parents, every attribute in order, events, links, statuses, dropped counts, flags and trace states. Only the
clock (start and end times) and the frames of exception stack traces differ, and are blanked.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import Callable

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    NoOpTracer,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from smallguard.server.observability.lean_spans import LeanSpan, LeanTracer, LeanTracerProvider, checked_provider

REMOTE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                     trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "x1")]))
REMOTE_NOT_SAMPLED = SpanContext(0x1AF7651916CD43DD8448EB211C80319C, 0xC7AD6B7169203331, is_remote=True,
                                 trace_flags=TraceFlags(0))


class Counting(IdGenerator):
    """Ids in order, so that two providers given the same calls give the same ids."""

    def __init__(self) -> None:
        self._spans, self._traces = itertools.count(1), itertools.count(0x1000)

    def generate_span_id(self) -> int:
        return next(self._spans)

    def generate_trace_id(self) -> int:
        return next(self._traces) * 0x9E3779B97F4A7C15  # spread over the bits, as a random id would be


class Boom(BaseException):
    """Not an Exception: the SDK records nothing on the span for it, only ends it."""


class Opaque:
    def __str__(self) -> str:
        return "opaque"


Scenario = Callable[[Tracer], None]


class RandomCounting(Counting):
    """Ids in order that say they are random: spans get the RANDOM_TRACE_ID flag."""

    def is_trace_id_random(self) -> bool:
        return True


class Key(enum.StrEnum):  # a str subclass as a key: the SDK keeps it
    MODEL = "smallguard.model.name"


def exported(made: type[TracerProvider], scenario: Scenario, limits: SpanLimits | None = None,
             sampler: sampling.Sampler | None = None, ids: type[IdGenerator] = Counting) -> ExportTraceServiceRequest:
    exporter = InMemorySpanExporter()
    provider = made(resource=Resource.create({"service.name": "smallguard"}), span_limits=limits,
                    sampler=sampler, id_generator=ids(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scenario(provider.get_tracer("smallguard", "1.0", attributes={"scope.flag": True}))
    request = encode_spans(exporter.get_finished_spans())
    for group in request.resource_spans:
        for scope in group.scope_spans:
            for span in scope.spans:
                span.start_time_unix_nano = span.end_time_unix_nano = 0
                for event in span.events:
                    event.time_unix_nano = 0
                    for pair in event.attributes:
                        if pair.key == "exception.stacktrace":  # the frames differ: the SDK's generators
                            pair.value.string_value = pair.value.string_value.splitlines()[-1]
    return request


def assert_same(scenario: Scenario, limits: SpanLimits | None = None, sampler: sampling.Sampler | None = None,
                spans: int | None = None, ids: type[IdGenerator] = Counting) -> None:
    theirs = exported(TracerProvider, scenario, limits, sampler, ids)
    ours = exported(LeanTracerProvider, scenario, limits, sampler, ids)
    assert ours == theirs, f"lean:\n{ours}\nSDK:\n{theirs}"
    if spans is not None:
        assert sum(len(s.spans) for g in ours.resource_spans for s in g.scope_spans) == spans


def test_a_predict_like_trace_is_exported_as_the_sdk_exports_it() -> None:
    def scenario(tracer: Tracer) -> None:
        remote = set_span_in_context(NonRecordingSpan(REMOTE))
        with tracer.start_as_current_span("/smallguard.v1.Guard/Predict", context=remote, kind=SpanKind.SERVER,
                                          attributes={"rpc.system": "grpc", "rpc.grpc.status_code": 0,
                                                      "rpc.peers": ["a", "b"]}) as server:
            with tracer.start_as_current_span("smallguard.model.run") as model:
                model.set_attribute("smallguard.model.name", "digits")
                assert get_current_span() is model
            with tracer.start_as_current_span("smallguard.verifiers.run") as verifiers:
                verifiers.set_attributes({"smallguard.verifiers.count": 2, "smallguard.verifiers.failed": ["sum"],
                                          "smallguard.verifiers.errored": []})
            assert get_current_span() is server
            server.set_attributes({
                "smallguard.decision": "ANSWER", "smallguard.reasons": ("LOW_CONFIDENCE",),
                "smallguard.confidence": 0.93, "smallguard.flag": False, "smallguard.count": 3,
                "smallguard.bytes": b"\x00\x01", "smallguard.none": None, "smallguard.ints": [1, 2],
                "smallguard.mapping": {"a": 1, 2: "two"}, "smallguard.object": Opaque(),
                "smallguard.holes": ["a", None],
            })
            server.set_attribute("rpc.grpc.status_code", 3)  # set again: it moves to the end, as in the SDK
            server.set_attribute("smallguard.object.alone", Opaque())
        assert get_current_span() is not server
    assert_same(scenario, spans=3)
    assert_same(scenario, spans=3, ids=RandomCounting)


def test_keys_that_are_empty_or_not_strings_are_handled_as_the_sdk_handles_them(
        caplog: pytest.LogCaptureFixture) -> None:
    def scenario(tracer: Tracer) -> None:
        span = tracer.start_span("keys", attributes={"": 1, "kept": 2})
        span.set_attribute("", "dropped")
        span.set_attribute(5, "dropped")  # type: ignore[arg-type]
        span.set_attributes({7: "made a string", "": "dropped", "fine": 1.5, Opaque(): "named"})  # type: ignore[dict-item]
        span.end()
    with caplog.at_level(logging.WARNING):
        assert_same(scenario, spans=1)
    assert "invalid key" in caplog.text


def test_keys_that_are_str_subclasses_or_become_one_string_are_kept_as_the_sdk_keeps_them() -> None:
    def scenario(tracer: Tracer) -> None:
        span = tracer.start_span("subclass", attributes={Key.MODEL: "digits", "1": "first", 1: "last", "m": 2})
        span.set_attribute(Key.MODEL, "again")
        span.set_attributes({Key.MODEL: "batch", "2": "a", 2: "b", "n": 3.5, Opaque(): "named"})
        span.end()
    assert_same(scenario, spans=1)


def test_events_links_statuses_and_names_are_the_sdks() -> None:
    def scenario(tracer: Tracer) -> None:
        with tracer.start_as_current_span("parent") as parent:
            parent.add_event("checked", {"verifier": "label-allowed", "passed": True})
            parent.add_event("bare")
            parent.add_link(REMOTE, {"why": "caller"})
            parent.add_link(SpanContext(0, 0, is_remote=False))  # invalid and bare: the SDK ignores it
            parent.set_status(StatusCode.OK)
            parent.set_status(Status(StatusCode.ERROR, "ignored after OK"))
            parent.update_name("renamed")
        linked = tracer.start_span("linked", kind=SpanKind.CLIENT, links=[Link(REMOTE, {"a": 1}),
                                                                          Link(parent.get_span_context())],
                                   start_time=1_000)
        linked.set_status(Status(StatusCode.ERROR, "failed on purpose"))
        linked.end(end_time=2_000)
        for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
            tracer.start_span(f"kind {kind.name}", kind=kind).end()
    assert_same(scenario, spans=5)


def test_an_ended_span_refuses_changes_as_the_sdks_does(caplog: pytest.LogCaptureFixture) -> None:
    def scenario(tracer: Tracer) -> None:
        span = tracer.start_span("ended", attributes={"before": 1})
        span.end()
        span.set_attribute("after", 2)
        span.set_attributes({"after": 3})
        span.add_event("late")
        span.add_link(REMOTE)
        span.set_status(StatusCode.ERROR)
        span.update_name("late name")
        span.end()
        assert not span.is_recording()
    with caplog.at_level(logging.WARNING):
        assert_same(scenario, spans=1)
    assert "ended span" in caplog.text


def test_exceptions_are_recorded_as_the_sdk_records_them() -> None:
    def scenario(tracer: Tracer) -> None:
        with tracer.start_as_current_span("outer"):
            with pytest.raises(ValueError), tracer.start_as_current_span("raises"):
                raise ValueError("a verifier raised")
            with pytest.raises(KeyError), tracer.start_as_current_span("quiet", record_exception=False,
                                                                       set_status_on_exception=False):
                raise KeyError("not recorded")
            with pytest.raises(Boom), tracer.start_as_current_span("interrupted"):
                raise Boom
            span = tracer.start_span("by hand")
            span.record_exception(RuntimeError("noted"), {"extra": 1}, escaped=True)
            span.end()
            with pytest.raises(ZeroDivisionError), tracer.start_span("as a context manager"):
                _ = 1 / 0
    assert_same(scenario, spans=6)


def test_decorators_and_spans_left_open_are_the_sdks() -> None:
    def scenario(tracer: Tracer) -> None:
        @tracer.start_as_current_span("decorated")
        def work(x: int) -> int:
            get_current_span().set_attribute("x", x)
            return x * 2

        @tracer.start_as_current_span("awaited")
        async def later(x: int) -> int:
            get_current_span().set_attribute("x", x)
            await asyncio.sleep(0)
            return x + 1

        @tracer.start_as_current_span("decorated and raising")
        def fails() -> None:
            raise LookupError("from a decorated function")

        assert work(2) == 4 and work(3) == 6
        with pytest.raises(LookupError):
            fails()
        once = tracer.start_as_current_span("entered once")
        with once:
            pass
        with pytest.raises((RuntimeError, AttributeError)), once:  # the SDK's, a generator's, cannot either
            pass
        assert asyncio.run(later(1)) == 2
        with tracer.start_as_current_span("left open", end_on_exit=False) as open_span:
            assert open_span.is_recording()
        assert open_span.is_recording()
        open_span.set_attribute("closed by hand", True)
        open_span.end()
    assert_same(scenario, spans=6)


def test_limits_drop_and_cut_as_the_sdks_do() -> None:
    def scenario(tracer: Tracer) -> None:
        span = tracer.start_span("limited", attributes={"a": "truncated here", "b": 2},
                                 links=[Link(REMOTE, {"a": 1, "b": 2}), Link(REMOTE)])
        span.set_attributes({"c": 3, "d": ["long value", "x"], "b": 4})
        span.set_attribute("e", "also truncated")
        span.add_event("first", {"x": 1, "y": 2})
        span.add_event("second")
        span.end()
        nothing = tracer.start_span("no attributes at all", attributes={"a": 1})
        nothing.end()
    limits = SpanLimits(max_span_attributes=3, max_events=1, max_links=1, max_event_attributes=1,
                        max_link_attributes=1, max_attribute_length=4, max_span_attribute_length=5)
    assert_same(scenario, limits, spans=2)
    assert_same(scenario, SpanLimits(max_span_attributes=0), spans=2)


@pytest.mark.parametrize("sampler", [sampling.DEFAULT_ON, sampling.ALWAYS_ON, sampling.ALWAYS_OFF,
                                     sampling.DEFAULT_OFF, sampling.ParentBasedTraceIdRatio(0.5),
                                     sampling.TraceIdRatioBased(0.5)], ids=lambda s: s.get_description())
def test_sampling_decides_as_the_sdks_samplers_decide(sampler: sampling.Sampler) -> None:
    def scenario(tracer: Tracer) -> None:
        for parent in (None, REMOTE, REMOTE_NOT_SAMPLED):
            context = None if parent is None else set_span_in_context(NonRecordingSpan(parent))
            for i in range(6):
                with tracer.start_as_current_span(f"span {i}", context=context, attributes={"i": i}) as span:
                    tracer.start_span("child").end()
                    assert span.get_span_context().trace_flags.sampled == span.is_recording()
    assert_same(scenario, sampler=sampler)


def test_spans_are_lean_and_a_disabled_sdk_stays_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = LeanTracerProvider(shutdown_on_exit=False)
    assert isinstance(provider.get_tracer("smallguard").start_span("lean"), LeanSpan)
    assert provider.get_tracer("smallguard") is provider.get_tracer("smallguard")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(LeanTracerProvider(shutdown_on_exit=False).get_tracer("smallguard"), NoOpTracer)


def test_an_sdk_the_lean_spans_do_not_fit_gets_its_own_spans(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """At start-up the server checks the lean spans against the installed SDK, and falls back to the SDK's
    provider, saying so, when an SDK release changed what they rely on."""
    resource = Resource.create({"service.name": "checked"})
    fits = checked_provider(resource)
    assert type(fits) is LeanTracerProvider and fits.resource is resource
    assert "lean spans do not fit" not in caplog.text

    def renamed(self: Tracer, *args: object, **kwargs: object) -> None:
        raise AttributeError("'Tracer' object has no attribute '_span_limits'")
    monkeypatch.setattr(LeanTracer, "start_span", renamed)
    with caplog.at_level(logging.WARNING):
        fallen_back = checked_provider(resource)
    assert type(fallen_back) is TracerProvider and fallen_back.resource is resource
    assert "lean spans do not fit opentelemetry-sdk" in caplog.text and "_span_limits" in caplog.text

    monkeypatch.undo()
    caplog.clear()
    monkeypatch.setattr(LeanSpan, "_put", lambda self, key, value: None)  # runs, but loses every attribute
    with caplog.at_level(logging.WARNING):
        assert type(checked_provider(resource)) is TracerProvider
    assert "its spans differ from the SDK's" in caplog.text
