"""The SDK's tracer provider with spans that cost a fraction of its own: what ``smallguard serve`` installs.

A Predict that is traced makes three spans (the gRPC call, the model run, the verifiers). With the SDK's own
spans, tracing took about 124 us of a request's CPU in process, more than the guard's whole work: each span
builds a locked, bounded attribute container that re-validates every value, a lock of its own, a bounded
list for events and another for links, a copy of itself when it ends, and a generator-based context manager
around it all. ``LeanTracerProvider`` is the SDK's ``TracerProvider`` (its sampler, resource, limits, span
processors and exporters, all configured by the same OTEL_* variables) whose tracers make ``LeanSpan``s:

- attributes live in a plain dict; values of the plain types (str, bool, int, float, bytes, None) are stored
  as they are, anything else goes through the SDK's own cleaning function, and the SDK's limits apply as in
  its bounded container (the oldest attribute dropped past the count limit; strings cut past the length);
- events and links get the SDK's bounded lists only when a span has some;
- a span that ends is handed to the processors as it is (nothing can change it once ended), not copied;
- ``start_as_current_span`` is a small class instead of two nested generators.

Everything else is the SDK's: a ``LeanSpan`` is an SDK ``Span`` (events, links, status, exceptions,
``to_json``), so the SDK's processors and exporters take it as they take their own.
``tests/observability/test_lean_spans.py`` runs the same calls through both providers and compares what
they export, span by span, and would fail on an SDK release that changed the internals used here. A server
does not wait for a test: ``checked_provider`` runs a few spans through both at start-up and keeps the SDK's
own where they differ.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import _clean_attribute_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, Tracer, TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.util import types

log = logging.getLogger(__name__)
_SDK_LOG = logging.getLogger("opentelemetry.sdk.trace")  # the SDK's warnings, from the SDK's logger
_ATTRIBUTES_LOG = logging.getLogger("opentelemetry.attributes")

_PLAIN = frozenset({str, bool, int, float, bytes, type(None)})  # stored as they are, as the SDK stores them
_PLAIN_NOT_STR = _PLAIN - {str}  # with a string length limit, strings go through the SDK's cleaning
_SEQUENCES = frozenset({list, tuple})
_NONE_YET: tuple[()] = ()  # a span's events, or links, until it gets one
_UNSET = Status(StatusCode.UNSET)


class LeanTracerProvider(TracerProvider):
    """The SDK's ``TracerProvider`` whose tracers make ``LeanSpan``s."""

    def get_tracer(self, instrumenting_module_name: str, instrumenting_library_version: str | None = None,
                   schema_url: str | None = None, attributes: types.Attributes = None) -> trace_api.Tracer:
        tracer = super().get_tracer(instrumenting_module_name, instrumenting_library_version, schema_url,
                                    attributes)
        if type(tracer) is Tracer:  # the SDK's (not its no-op tracer when OTEL_SDK_DISABLED): same state, our
            tracer.__class__ = LeanTracer  # methods; the provider keeps it in its cache, so once per scope
        return tracer


class LeanTracer(Tracer):
    """The SDK's ``Tracer`` (one per instrumentation scope) making ``LeanSpan``s; only made by the provider."""

    def start_as_current_span(self, name: str, context: context_api.Context | None = None,  # type: ignore[override]
                              kind: SpanKind = SpanKind.INTERNAL, attributes: types.Attributes = None,
                              links: Sequence[trace_api.Link] | None = (), start_time: int | None = None,
                              record_exception: bool = True, set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> CurrentSpan:
        return CurrentSpan(self, (name, context, kind, attributes, links, start_time, record_exception,
                                  set_status_on_exception), end_on_exit)

    def start_span(self, name: str, context: context_api.Context | None = None,
                   kind: SpanKind = SpanKind.INTERNAL, attributes: types.Attributes = None,
                   links: Sequence[trace_api.Link] | None = (), start_time: int | None = None,
                   record_exception: bool = True, set_status_on_exception: bool = True) -> trace_api.Span:
        """The SDK's ``Tracer.start_span``, step for step, with a ``LeanSpan`` where it makes its own."""
        links = links or ()
        parent = trace_api.get_current_span(context).get_span_context()
        if parent is not None and not isinstance(parent, SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        if not self._tracer_config.is_enabled:
            return trace_api.NonRecordingSpan(context=parent)
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self.id_generator.generate_trace_id()
            random_trace_id = self.id_generator.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        if self.sampler is sampling.DEFAULT_ON:  # the default (parentbased_always_on), decided as it decides
            decision = (Decision.RECORD_AND_SAMPLE if parent is None or parent.trace_flags.sampled
                        else Decision.DROP)
            trace_state = None if parent is None else parent.trace_state
            initial = attributes if decision is Decision.RECORD_AND_SAMPLE else None
        else:
            sampled = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision, trace_state, initial = sampled.decision, sampled.trace_state, sampled.attributes
        flags = TraceFlags.SAMPLED if decision.is_sampled() else TraceFlags.DEFAULT
        if random_trace_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        span_context = SpanContext(trace_id, self.id_generator.generate_span_id(), is_remote=False,
                                   trace_flags=TraceFlags(flags), trace_state=trace_state)
        record_end_metrics = self._tracer_metrics.start_span(parent, decision)
        if not decision.is_recording():
            return trace_api.NonRecordingSpan(context=span_context)
        span = LeanSpan(name, span_context, parent, self, kind, links, record_exception, set_status_on_exception,
                        record_end_metrics)
        if initial:
            span._put_all(initial)
        span._start_time = start_time if start_time is not None else time_ns()
        self.span_processor.on_start(span, parent_context=context)
        return span


class LeanSpan(Span):
    """An SDK ``Span`` with plain-dict attributes, lazy events and links, and no copy at its end."""

    def __init__(self, name: str, context: SpanContext, parent: SpanContext | None, tracer: Tracer,
                 kind: SpanKind, links: Sequence[trace_api.Link], record_exception: bool,
                 set_status_on_exception: bool, record_end_metrics: Callable[[], None] | None) -> None:
        # Every field the SDK's Span and ReadableSpan read, set here instead of through their constructors.
        limits = tracer._span_limits
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._parent = parent
        self._start_time: int | None = None
        self._end_time: int | None = None
        self._resource = tracer.resource
        self._status = _UNSET  # a Status never changes: set_status replaces it
        self._sampler = tracer.sampler
        self._trace_config = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._span_processor = tracer.span_processor
        self._limits = limits
        self._lock = threading.Lock()  # the SDK's own methods (events, status, name) take it
        self._record_end_metrics = record_end_metrics
        self._attributes: dict[str, Any] = {}
        self._dropped = 0
        self._most = limits.max_span_attributes
        self._longest = limits.max_span_attribute_length
        self._plain = _PLAIN if self._longest is None else _PLAIN_NOT_STR
        self._events = _NONE_YET  # type: ignore[assignment]
        self._links = self._new_links(links) if links else _NONE_YET  # type: ignore[assignment]

    # ------------------------------------------------------------------------------ attributes

    @property
    def dropped_attributes(self) -> int:
        return self._dropped

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is None:
            if not key or (type(key) is not str and not isinstance(key, str)):  # dropped and counted, as the SDK's
                _ATTRIBUTES_LOG.warning("invalid key `%s`. must be non-empty string. Dropping key from attributes.",
                                        key)
                self._dropped += 1
                return
            if type(value) not in self._plain:
                value = self._cleaned(value)
            with self._lock:  # as the SDK's: no change once ended, when an exporter may be reading the attributes
                if self._end_time is None:
                    self._put(key, value)
                    return
        _SDK_LOG.warning("Setting attribute on ended span.")

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is None:
                self._put_all(attributes)
                return
        _SDK_LOG.warning("Setting attribute on ended span.")

    def _put_all(self, attributes: Mapping[str, types.AnyValue]) -> None:
        plain, cleaned = self._plain, self._cleaned
        pairs = []
        for key, value in attributes.items():
            if not key or (type(key) is not str and not isinstance(key, str)):
                # the SDK's rule for a mapping, whole: a key made a str or dropped (and counted), and two keys that
                # become one string kept once, where the first was, with the last one's value
                made = _clean_attribute_value(attributes, self._longest)
                self._dropped += len(attributes) - len(made)
                pairs = list(made.items())
                break
            pairs.append((key, value if type(value) in plain else cleaned(value)))
        for key, value in pairs:
            self._put(key, value)

    def _cleaned(self, value: Any) -> types.AnyValue:
        """A value that is not of a plain type as the SDK cleans it; a list or tuple of plain values (the
        verifiers' names, the reasons' codes) becomes a tuple without the SDK's recursion."""
        if type(value) in _SEQUENCES:
            plain = self._plain
            for item in value:
                if type(item) not in plain:
                    return _clean_attribute_value(value, self._longest)
            return tuple(value)
        return _clean_attribute_value(value, self._longest)

    def _put(self, key: str, value: types.AnyValue) -> None:
        """The SDK's ``BoundedAttributes`` rule: a key set again moves to the end; past the limit the oldest
        attribute is dropped and counted."""
        attributes = self._attributes
        if key in attributes:
            del attributes[key]
        elif self._most is not None and len(attributes) >= self._most:
            if self._most == 0:
                self._dropped += 1
                return
            _ATTRIBUTES_LOG.warning("Attributes dict is full. Dropping the oldest key-value pair from attributes "
                                    "to make space for the new key-value pair.")
            del attributes[next(iter(attributes))]
            self._dropped += 1
        attributes[key] = value

    # ------------------------------------------------------------------------------ events and links

    def _add_event(self, event: Any) -> None:
        with self._lock:
            if self._end_time is not None:
                _SDK_LOG.warning("Tried calling _add_event on an ended span.")
                return
            if self._events is _NONE_YET:
                self._events = self._new_events()
            self._events.append(event)

    def _add_link(self, link: trace_api.Link) -> None:
        with self._lock:
            if self._end_time is not None:
                _SDK_LOG.warning("Tried calling _add_link on an ended span.")
                return
            if self._links is _NONE_YET:
                self._links = self._new_links(())
            self._links.append(link)

    # ------------------------------------------------------------------------------ its end

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                _SDK_LOG.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        if self._record_end_metrics:
            self._record_end_metrics()
        processor = self._span_processor
        processor._on_ending(self)
        processor.on_end(self)  # not a copy: an ended span refuses every change


# where start_as_current_span's flags are in the arguments CurrentSpan keeps for start_span
_RECORD_EXCEPTION, _SET_STATUS_ON_EXCEPTION = 6, 7


class CurrentSpan:
    """``start_as_current_span``'s context manager (and decorator), as the SDK's behaves: the span starts on
    entry and is the current span inside; an ``Exception`` leaving it is recorded on the span and sets its
    status to ERROR (each as asked); on exit the context is restored, then the span ends."""

    __slots__ = ("_end_on_exit", "_span", "_start", "_token", "_tracer")

    def __init__(self, tracer: LeanTracer, start: tuple[Any, ...], end_on_exit: bool) -> None:
        self._tracer, self._start, self._end_on_exit = tracer, start, end_on_exit
        self._span: trace_api.Span | None = None

    def __enter__(self) -> trace_api.Span:
        if self._span is not None:  # the SDK's generator-based one cannot be entered twice either
            raise RuntimeError("a start_as_current_span context is entered once; call start_as_current_span again")
        span = self._span = self._tracer.start_span(*self._start)
        self._token = context_api.attach(context_api.set_value(_SPAN_KEY, span))
        return span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        span = self._span
        try:
            context_api.detach(self._token)
            if isinstance(error, Exception) and span.is_recording():
                if self._start[_RECORD_EXCEPTION]:
                    span.record_exception(error)
                if self._start[_SET_STATUS_ON_EXCEPTION]:
                    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        finally:
            if self._end_on_exit:
                span.end()

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """As a decorator: a span of its own for each call (and each await of a coroutine function)."""
        tracer, start, end_on_exit = self._tracer, self._start, self._end_on_exit
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def traced_coroutine(*args: Any, **kwargs: Any) -> Any:
                with CurrentSpan(tracer, start, end_on_exit):
                    return await function(*args, **kwargs)
            return traced_coroutine

        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with CurrentSpan(tracer, start, end_on_exit):
                return function(*args, **kwargs)
        return traced


# ---------------------------------------------------------------------------------- the start-up check


def checked_provider(resource: Resource) -> TracerProvider:
    """A ``LeanTracerProvider`` if, on the SDK installed here, its spans come out as the SDK's own do; else the
    SDK's provider, with a warning. The lean spans use the SDK's internals, which a release may change: a server
    on such a release then traces at the SDK's cost instead of failing or exporting something else. The check
    runs a few spans through both providers (about 5 ms)."""
    try:
        lean, sdk = _check_run(LeanTracerProvider), _check_run(TracerProvider)
        if lean == sdk:
            return LeanTracerProvider(resource=resource)
        reason = f"its spans differ from the SDK's:\n  lean: {lean}\n  SDK:  {sdk}"
    except Exception as error:  # an attribute renamed, a signature changed: any of them means the same
        reason = f"{type(error).__name__}: {error}"
    log.warning("tracing: the lean spans do not fit opentelemetry-sdk %s (%s); using the SDK's own spans",
                _sdk_version(), reason)
    return TracerProvider(resource=resource)


class _Counting(IdGenerator):
    """The same ids for the same calls, so that two providers' spans compare equal."""

    def __init__(self) -> None:
        self._next = 0

    def generate_span_id(self) -> int:
        self._next += 1
        return self._next

    def generate_trace_id(self) -> int:
        self._next += 1
        return self._next << 64 | 0x5EED


def _check_run(made: type[TracerProvider]) -> list[tuple[Any, ...]]:
    exporter = InMemorySpanExporter()
    provider = made(id_generator=_Counting(), sampler=sampling.DEFAULT_ON, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("smallguard.check", "1")
    remote = trace_api.set_span_in_context(trace_api.NonRecordingSpan(SpanContext(
        7 << 64, 9, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    with tracer.start_as_current_span("server", context=remote, kind=SpanKind.SERVER,
                                      attributes={"a": "x", "b": 1}) as server:
        with tracer.start_as_current_span("child") as child:
            child.set_attribute("c", 1.5)
            child.add_event("event", {"d": True})
        try:
            with tracer.start_as_current_span("raises"):
                raise ValueError("checked")
        except ValueError:
            pass
        server.set_attributes({"e": ["f", "g"], "a": "y", "h": None})
        server.set_status(StatusCode.OK)
    provider.shutdown()
    return [(span.name, span.kind, span.context, span.parent, list(span.attributes.items()),
             [(event.name, {k: v for k, v in event.attributes.items() if k != "exception.stacktrace"})
              for event in span.events],
             span.status.status_code, span.status.description, span.dropped_attributes, span.dropped_events,
             span.instrumentation_scope, span.start_time is not None and span.end_time is not None)
            for span in exporter.get_finished_spans()]


def _sdk_version() -> str:
    try:
        return importlib.metadata.version("opentelemetry-sdk")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"
