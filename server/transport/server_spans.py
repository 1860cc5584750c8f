"""The server span of each traced call: the span opentelemetry-instrumentation-grpc's server interceptor makes,
made at less cost.

The instrumentation's interceptor builds a new method handler and two generator-based context managers for
every call (the handler on grpc's one polling thread), and asks grpc for the peer's address twice. Here each
method's handler is wrapped once, and the peer is asked once. The span is the instrumentation's: its tracer
(scope name, version and schema), name, kind, attributes (the names of its releases 0.51b0 to 0.66b2, before the
stable RPC conventions), the caller's context extracted from the metadata, the status codes and exceptions
recorded by its servicer-context wrapper. One difference, on purpose: a peer address without a port is logged
and its attributes left out, where the instrumentation's parsing raises and fails the call. Streaming methods
(reflection, which is not traced anyway) go to the instrumentation's own interceptor.
``tests/transport/test_server_spans.py`` serves the same calls under both and compares the spans.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import server_interceptor
from opentelemetry.instrumentation.grpc.version import __version__
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

try:  # the instrumentation's servicer-context wrapper (a status code and error status on the span for an abort)
    from opentelemetry.instrumentation.grpc._server import _OpenTelemetryServicerContext
except ImportError:  # a release that moved it: tracing_interceptor falls back to the instrumentation's interceptor
    _OpenTelemetryServicerContext = None

log = logging.getLogger(__name__)
_SCOPE = "opentelemetry.instrumentation.grpc"  # the instrumentation's tracer: spans keep its scope
_SCHEMA = "https://opentelemetry.io/schemas/1.11.0"
_LOCALHOST = ("[::1]", "127.0.0.1")

Handler = grpc.RpcMethodHandler


def tracing_interceptor(traced: Callable[[grpc.HandlerCallDetails], bool]) -> grpc.ServerInterceptor:
    """``ServerSpans``, or the instrumentation's own interceptor (the same spans, at its cost) on a release of
    opentelemetry-instrumentation-grpc without the wrapper it uses."""
    if _OpenTelemetryServicerContext is None:
        log.warning("tracing: opentelemetry-instrumentation-grpc %s has no servicer-context wrapper where this "
                    "server looks for it; using its own interceptor", __version__)
        return server_interceptor(filter_=traced)
    return ServerSpans(traced)


class ServerSpans(grpc.ServerInterceptor):
    """A SERVER span around each call that ``traced`` accepts, continuing the caller's trace context."""

    def __init__(self, traced: Callable[[grpc.HandlerCallDetails], bool]) -> None:
        self._traced = traced
        self._tracer = trace.get_tracer(_SCOPE, __version__, schema_url=_SCHEMA)
        self._streaming = server_interceptor(filter_=traced)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}  # method -> (its handler, that handler wrapped)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
                          details: grpc.HandlerCallDetails) -> Handler | None:
        if not is_instrumentation_enabled() or not self._traced(details):
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        if handler.request_streaming or handler.response_streaming:
            return self._streaming.intercept_service(lambda _: handler, details)
        method = details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = grpc.unary_unary_rpc_method_handler(self._spanned(handler.unary_unary, method),
                                                      request_deserializer=handler.request_deserializer,
                                                      response_serializer=handler.response_serializer)
        self._wrapped[method] = (handler, wrapped)  # a reload that registers new handlers replaces the entry
        return wrapped

    def _spanned(self, behavior: Callable[[Any, grpc.ServicerContext], Any],
                 method: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        named: dict[str, Any] = {"rpc.system": "grpc", "rpc.grpc.status_code": grpc.StatusCode.OK.value[0]}
        if method:
            service, name = method.lstrip("/").split("/", 1)
            named |= {"rpc.method": name, "rpc.service": service}
        start_span = self._tracer.start_as_current_span

        def spanned(request: Any, context: grpc.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            token = None
            if metadata:  # the caller's trace context, or else an empty one: each call's span is the caller's
                token = context_api.attach(propagate.extract(metadata))  # child or a root, whatever is current
            try:
                attributes = dict(named)
                if "user-agent" in metadata:
                    attributes["rpc.user_agent"] = metadata["user-agent"]
                attributes |= _peer(context.peer())
                with start_span(method, kind=trace.SpanKind.SERVER, attributes=attributes,
                                set_status_on_exception=False) as span:
                    try:
                        return behavior(request, _OpenTelemetryServicerContext(context, span))
                    except Exception as error:
                        if type(error) is not Exception:  # a bare Exception is grpc's abort, recorded by the context
                            span.record_exception(error)
                        raise
            finally:
                if token is not None:
                    context_api.detach(token)

        return spanned


def _peer(peer: str) -> dict[str, str]:
    """The instrumentation's peer attributes: ``ipv4:127.0.0.1:57284``, ``ipv6:[::1]:57284`` (the first of a
    comma-separated list) split into address and port; nothing for a Unix socket."""
    if peer.startswith("unix:"):
        return {}
    try:
        ip, port = peer.split(",")[0].split(":", 1)[1].rsplit(":", 1)
    except (IndexError, ValueError):
        log.warning("Failed to parse peer address '%s'", peer)
        return {}
    ip = unquote(ip)
    if ip in _LOCALHOST:
        return {"net.peer.ip": ip, "net.peer.port": port, "net.peer.name": "localhost"}
    return {"net.peer.ip": ip, "net.peer.port": port}
