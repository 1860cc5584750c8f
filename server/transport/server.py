"""The gRPC server: Guard service, health, reflection and tracing on one port (and metrics).

A sync ``grpc.server`` with a thread pool, chosen by measurement (see README: with grpcio
1.85 and a small ONNX model it served about 1.7x the requests of grpc.aio on one core).
More cores: more processes on the same port (SO_REUSEPORT), see ``smallguard.server.cli``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from smallguard.server.core.guard import Guard, ReloadOffError
from smallguard.server.observability.telemetry import MetricsExport
from smallguard.server.settings import Settings
from smallguard.server.transport.auth import TokenAuth
from smallguard.server.transport.server_spans import tracing_interceptor
from smallguard.server.transport.servicer import SERVICE_NAME, GuardService, health_handler
from smallguard.server.transport.thread_pool import ElasticThreadPool
from smallguard.server.transport.tls import CertificateFiles

log = logging.getLogger(__name__)

STORE_HEALTH = "smallguard.store"


class Companion(Protocol):
    """Something served beside gRPC for as long as it is (the review console)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...  # the health service name that follows the store

# grpc's own limit sits well above --max-request-bytes so that the service, not the
# transport, answers an oversized request (with a message that names the limit).
_TRANSPORT_LIMIT = 64 * 1024 * 1024
# On stop, how long no call must arrive before grpc shuts down (what arrives after is cancelled by grpc).
_QUIET_S = 0.1
_REFUSING_MAX_S = 1.0
# HTTP/2 MAX_CONCURRENT_STREAMS: the calls one connection may have in the server at once (the rest wait in
# the client), so that a single connection cannot take every place --max-concurrent-rpcs gives.
STREAMS_PER_CONNECTION = 100
# The threads that run calls when none is stuck. Sixteen, against the bare server's eight: a call reaches the
# model only on a thread, and the calls that reach it together are served as one batch (core/coalescing.py), so
# more threads make larger batches (2026-12-04, make bench-ab at 64 in flight: 255 against 289 us of CPU per
# request with 8; 32 threads did no better, 64 worse).
WORKING_THREADS = 16
# Health probes and reflection every few seconds would drown the traces: their calls get no server span.
_UNTRACED = ("/grpc.health.v1.Health", "/grpc.reflection")


def _traced(details: grpc.HandlerCallDetails) -> bool:
    """The tracing interceptor's filter: a prefix test on the method name, as the instrumentation's own
    ``negate(any_of(health_check(), service_prefix(...)))`` decides, without its isinstance checks against
    typing protocols (about 40 us of the server's core on every call)."""
    return not details.method.startswith(_UNTRACED)


class GuardServer:
    """A running smallguard server: ``start()``, ``port``, ``stop(grace)``."""

    def __init__(self, guard: Guard, settings: Settings, metrics_export: MetricsExport | None, tracing: bool,
                 reload: Callable[[], list[str]] | None = None) -> None:
        self._settings = settings
        self._reload = reload  # loads the model repository again (the assembly's); None: models are fixed
        self._reloading = threading.Lock()
        self.companions: list[Companion] = []  # served beside gRPC, started and stopped with it (the console)
        self._guard = guard
        self.metrics_export = metrics_export  # owned: shut down (flushed) by stop()
        # A few threads do the work; more are added only while calls are stuck (a body that never comes, a tier
        # that waits on the network), up to one for every call admitted: see thread_pool.
        self._pool = ElasticThreadPool(min(WORKING_THREADS, settings.max_concurrent_rpcs),
                                       settings.max_concurrent_rpcs, name="smallguard-rpc")
        interceptors: list[grpc.ServerInterceptor] = []
        self._auth = None
        if settings.tokens_file or settings.jwks_file:  # first: a refused call does no other work
            self._auth = TokenAuth(Path(settings.tokens_file) if settings.tokens_file else None,
                                   Path(settings.jwks_file) if settings.jwks_file else None, settings.jwt_audience,
                                   guard.record_refused_call)
            interceptors.append(self._auth)
        if tracing:  # the server span of each call, continuing the caller's W3C trace context
            interceptors.append(tracing_interceptor(_traced))
        self._server = grpc.server(
            self._pool,
            interceptors=interceptors,
            options=[
                ("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", _TRANSPORT_LIMIT),
                ("grpc.max_send_message_length", _TRANSPORT_LIMIT),
                # One connection cannot take every call slot: its streams past this wait in the client.
                ("grpc.max_concurrent_streams", STREAMS_PER_CONNECTION),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self._service = GuardService(guard, settings.max_request_bytes, settings.max_batch_items,
                                     self.reload if reload is not None else None)
        # Registered with grpc's core (as generated code registers them): a call finds its handler by the tag
        # the core gives it, not by asking each generic handler in Python on grpc's one polling thread.
        self._server.add_registered_method_handlers(SERVICE_NAME, self._service.method_handlers())
        self.health = health.HealthServicer()
        self._server.add_generic_rpc_handlers((health_handler(self.health),))
        if settings.reflection:
            reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                                self._server)
        if settings.tls_cert or settings.tls_key or settings.tls_client_ca:
            files = CertificateFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
            self._port = self._server.add_secure_port(settings.address, files.credentials())
        else:
            self._port = self._server.add_insecure_port(settings.address)
        if self._port == 0:
            raise OSError(f"cannot bind {settings.address}")

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        self._server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        names = self._guard.model_names()
        for service in ("", SERVICE_NAME, *names):
            self.health.set(service, serving)
        # A drifted model's own service reports NOT_SERVING (it still answers; overall health stays SERVING).
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        self._guard.on_drift_change(lambda name, drifted: self.health.set(name, not_serving if drifted else serving))
        # The store's own service says whether decisions are being logged (Predict serves either way).
        self.health.set(STORE_HEALTH, serving)
        self._guard.on_store_health(lambda up, _reason: self.health.set(STORE_HEALTH, serving if up else not_serving))
        for companion in self.companions:
            companion.start()
        log.info("serving %d model(s) on %s (port %d)", len(names), self._settings.address, self._port)

    def stop(self, grace: float | None = None, drain: float = 0.0) -> None:
        """Stop within ``grace`` seconds (None: wait for every call) without failing a call in flight.

        Health reports NOT_SERVING at once, and the server keeps serving for ``drain`` seconds, so that load
        balancers and health-checking clients move their traffic away. Then every new call is refused at once
        with UNAVAILABLE (safe to send again), which also empties the calls the transport has accepted but not
        yet handed to a thread: grpc cancels those when it shuts down. Once no call has arrived for a moment
        (or after at most a second of refusals, against clients that keep sending), grpc stops, letting the
        calls in flight finish within what is left of the grace."""
        started = time.monotonic()
        deadline = None if grace is None else started + grace
        self.health.enter_graceful_shutdown()
        if drain > 0:
            time.sleep(drain if deadline is None else max(0.0, min(drain, deadline - time.monotonic())))
        self._service.refusing = True
        refusing_since = self._service.last_refused = time.monotonic()
        limit = refusing_since + _REFUSING_MAX_S if deadline is None else min(refusing_since + _REFUSING_MAX_S,
                                                                              deadline)
        while time.monotonic() - self._service.last_refused < _QUIET_S and time.monotonic() < limit:
            time.sleep(_QUIET_S / 5)
        self._server.stop(None if deadline is None else max(0.0, deadline - time.monotonic())).wait()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for companion in self.companions:
            companion.stop()
        if self._auth is not None:
            self._auth.close()
        self._guard.close()
        if self.metrics_export is not None:
            self.metrics_export.shutdown()

    def reload(self) -> list[str]:
        """Load the model repository again and serve it without dropping a request (one reload at a time);
        health follows: new models SERVING, models no longer loaded SERVICE_UNKNOWN. Raises BundleError (the
        models served stay as they were)."""
        if self._reload is None:
            raise ReloadOffError("this server cannot reload its models")
        with self._reloading:
            before = set(self._guard.model_names())
            names = self._reload()
            for name in names:
                self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
            for name in before - set(names):
                self.health.set(name, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return names

    @property
    def auth(self) -> TokenAuth | None:
        """The bearer-token check, when the server has tokens (--tokens-file, --jwks-file)."""
        return self._auth

    def wait(self) -> None:
        self._server.wait_for_termination()

