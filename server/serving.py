"""The gRPC server: Guard service, health, reflection and tracing on one port (and metrics).

A sync ``grpc.server`` with a thread pool, chosen by measurement (see README: with grpcio
1.85 and a small ONNX model it served about 1.7x the requests of grpc.aio on one core).
More cores: more processes on the same port (SO_REUSEPORT), see ``smallguard.server.cli``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import filters, server_interceptor
from opentelemetry.metrics import MeterProvider

from smallguard.server.config import Settings
from smallguard.server.feedback import Feedback
from smallguard.server.feedback_record import PredictionRecord
from smallguard.server.guard import Guard
from smallguard.server.metrics import GuardMetrics
from smallguard.server.repository import ModelRepository
from smallguard.server.service import SERVICE_NAME, GuardService
from smallguard.server.telemetry import MetricsExport, configure_metrics
from smallguard.server.verification import VerifierRunner
from smallguard.verifiers import VerifierRegistry

log = logging.getLogger(__name__)

# grpc's own limit sits well above --max-request-bytes so that the service, not the
# transport, answers an oversized request (with a message that names the limit).
_TRANSPORT_LIMIT = 64 * 1024 * 1024


class GuardServer:
    """A running smallguard server: ``start()``, ``port``, ``stop(grace)``."""

    def __init__(self, guard: Guard, settings: Settings, metrics_export: MetricsExport | None = None) -> None:
        self._settings = settings
        self._guard = guard
        self.metrics_export = metrics_export  # owned: shut down (flushed) by stop()
        self._pool = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="smallguard-rpc")
        # Health probes and reflection every few seconds would drown the traces.
        untraced = filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection"))
        self._server = grpc.server(
            self._pool,
            interceptors=[server_interceptor(filter_=filters.negate(untraced))],
            options=[
                ("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", _TRANSPORT_LIMIT),
                ("grpc.max_send_message_length", _TRANSPORT_LIMIT),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self._server.add_generic_rpc_handlers((GuardService(guard, settings.max_request_bytes).handler(),))
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self._server)
        self._port = self._server.add_insecure_port(settings.address)
        if self._port == 0:
            raise OSError(f"cannot bind {settings.address}")

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        self._server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", SERVICE_NAME, *(model.spec.name for model in self._guard.repository)):
            self.health.set(service, serving)
        # A drifted model's own service reports NOT_SERVING (it still answers; overall health stays SERVING).
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        for model in self._guard.repository:
            if model.drift is not None:
                model.drift.subscribe(lambda snapshot, name=model.spec.name: self.health.set(
                    name, not_serving if snapshot.drifted else serving))
        log.info("serving %d model(s) on %s (port %d)", len(self._guard.repository), self._settings.address,
                 self._port)

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight ones finish within ``grace`` seconds."""
        self.health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._guard.close()
        if self.metrics_export is not None:
            self.metrics_export.shutdown()

    def wait(self) -> None:
        self._server.wait_for_termination()


def build_guard(settings: Settings, registry: VerifierRegistry | None = None,
                metrics: GuardMetrics | None = None) -> Guard:
    """Discover verifiers and load every bundle: the core, ready for any transport."""
    registry = VerifierRegistry.discover() if registry is None else registry
    if settings.feedback_capacity < 1 or settings.feedback_max_age_seconds <= 0:
        raise ValueError(f"--feedback-capacity must be >= 1 and --feedback-max-age-seconds > 0, got "
                         f"{settings.feedback_capacity} and {settings.feedback_max_age_seconds}")
    repository = ModelRepository.load(settings.model_repository, registry, settings.intra_op_threads)
    metrics = GuardMetrics() if metrics is None else metrics
    record = PredictionRecord(settings.feedback_capacity, settings.feedback_max_age_seconds)
    return Guard(repository, VerifierRunner(settings.verifier_threads), metrics, Feedback(repository, metrics, record))


def create_server(settings: Settings, registry: VerifierRegistry | None = None,
                  meter_provider: MeterProvider | None = None) -> GuardServer:
    """The core behind a gRPC server bound to its port (not yet started).

    Metrics go to ``meter_provider`` when one is given (the caller owns it: no endpoint is opened
    and nothing is shut down); otherwise to the exporters that ``--metrics-port`` and the OTEL_*
    environment ask for, owned by the server, or nowhere (the no-op meter) when they ask for none.
    """
    export = configure_metrics(settings) if meter_provider is None else None
    provider = export.provider if export is not None else meter_provider
    try:
        return GuardServer(build_guard(settings, registry, GuardMetrics.from_provider(provider)), settings, export)
    except BaseException:
        if export is not None:
            export.shutdown()
        raise
