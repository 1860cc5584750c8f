"""Server settings: defaults, overridden by SMALLGUARD_* environment variables, then by flags."""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


def default_model_repository() -> Path:
    """The model repository shipped inside the package (the repo's models/ in a checkout)."""
    return Path(str(importlib.resources.files("smallguard.models")))


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="[::]", metadata={"env": "SMALLGUARD_HOST", "help": "address to bind"})
    port: int = field(default=50051, metadata={"env": "SMALLGUARD_PORT", "help": "port to bind (0: any free)"})
    model_repository: Path = field(default_factory=default_model_repository, metadata={
        "env": "SMALLGUARD_MODEL_REPOSITORY", "help": "folder of bundles (default: the shipped models)"})
    workers: int = field(default=1, metadata={
        "env": "SMALLGUARD_WORKERS", "help": "server processes sharing the port (SO_REUSEPORT)"})
    pin_workers: int = field(default=1, metadata={
        "env": "SMALLGUARD_PIN_WORKERS", "help": "1: with --workers N, keep each worker on one CPU of those the server "
                                                 "may use, a different one each while there are enough; 0: let the "
                                                 "OS move them"})
    max_concurrent_rpcs: int = field(default=256, metadata={
        "env": "SMALLGUARD_MAX_CONCURRENT_RPCS",
        "help": "in-flight RPCs per process before RESOURCE_EXHAUSTED; sixteen threads run them, more while calls "
                "wait behind stuck ones"})
    grace_seconds: float = field(default=10.0, metadata={
        "env": "SMALLGUARD_GRACE_SECONDS", "help": "on SIGTERM, how long in-flight requests may finish"})
    drain_seconds: float = field(default=1.0, metadata={
        "env": "SMALLGUARD_DRAIN_SECONDS", "help": "on SIGTERM, how long to keep serving after health says "
                                                   "NOT_SERVING, before refusing new calls (part of the grace)"})
    max_request_bytes: int = field(default=4 * 1024 * 1024, metadata={
        "env": "SMALLGUARD_MAX_REQUEST_BYTES", "help": "larger Predict or PredictBatch requests get INVALID_ARGUMENT"})
    max_batch_items: int = field(default=1024, metadata={
        "env": "SMALLGUARD_MAX_BATCH_ITEMS", "help": "PredictBatch calls with more items get INVALID_ARGUMENT"})
    verifier_threads: int = field(default=8, metadata={
        "env": "SMALLGUARD_VERIFIER_THREADS", "help": "threads that run verifiers under their time budget"})
    intra_op_threads: int = field(default=1, metadata={
        "env": "SMALLGUARD_INTRA_OP_THREADS", "help": "onnxruntime threads per model run"})
    metrics_port: int = field(default=0, metadata={
        "env": "SMALLGUARD_METRICS_PORT", "help": "port of the Prometheus /metrics endpoint (0: off)"})
    metrics_host: str = field(default="127.0.0.1", metadata={
        "env": "SMALLGUARD_METRICS_HOST", "help": "address the /metrics endpoint binds: loopback unless told "
                                                  "otherwise (0.0.0.0 for a Prometheus on another machine)"})
    console_port: int = field(default=0, metadata={
        "env": "SMALLGUARD_CONSOLE_PORT", "help": "port of the review console, a web page of the review queue (0: "
                                                  "off; with --workers, the first worker serves it)"})
    console_host: str = field(default="127.0.0.1", metadata={
        "env": "SMALLGUARD_CONSOLE_HOST", "help": "address the review console binds: loopback unless told otherwise"})
    store: str = field(default="", metadata={
        "env": "SMALLGUARD_STORE", "help": "database of decisions, feedback and review cases: sqlite:///PATH or "
                                           "postgresql://USER:PASSWORD@HOST/DB (default: a SQLite file in "
                                           "$XDG_STATE_HOME/smallguard, else ~/.local/state/smallguard)"})
    store_retention_days: float = field(default=30.0, metadata={
        "env": "SMALLGUARD_STORE_RETENTION_DAYS", "help": "decisions (and their feedback) older than this are "
                                                          "deleted"})
    decision_log_capacity: int = field(default=10_000, metadata={
        "env": "SMALLGUARD_DECISION_LOG_CAPACITY", "help": "decisions buffered per process while the store is "
                                                           "slow or down; past it new ones are dropped (counted)"})
    tls_cert: str = field(default="", metadata={
        "env": "SMALLGUARD_TLS_CERT", "help": "PEM certificate chain: serve gRPC over TLS (with --tls-key; re-read "
                                              "when the files change), and /metrics over HTTPS"})
    tls_key: str = field(default="", metadata={"env": "SMALLGUARD_TLS_KEY", "help": "PEM private key of --tls-cert"})
    tls_client_ca: str = field(default="", metadata={
        "env": "SMALLGUARD_TLS_CLIENT_CA", "help": "PEM CA certificates: require client certificates they signed "
                                                   "(mutual TLS)"})
    reflection: int = field(default=1, metadata={
        "env": "SMALLGUARD_REFLECTION", "help": "1: serve gRPC server reflection (generic tools need no proto); 0: "
                                                "do not (production: callers have the proto)"})
    tokens_file: str = field(default="", metadata={
        "env": "SMALLGUARD_TOKENS_FILE", "help": "YAML file of bearer-token hashes and their roles; calls must "
                                                 "carry one (re-read when it changes; empty: no authentication)"})
    jwks_file: str = field(default="", metadata={
        "env": "SMALLGUARD_JWKS_FILE", "help": "JSON Web Key Set: accept JWT bearer tokens its keys signed, with "
                                               "their 'roles' claim (re-read when it changes)"})
    jwt_audience: str = field(default="", metadata={
        "env": "SMALLGUARD_JWT_AUDIENCE", "help": "the 'aud' a JWT must name (empty: not checked)"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        raw = {f.name: environ[f.metadata["env"]] for f in dataclasses.fields(cls) if environ.get(f.metadata["env"])}
        return cls().updated(raw, lambda name: _FIELDS[name].metadata["env"])

    def updated(self, raw: Mapping[str, str], label: Callable[[str], str] = lambda name: name) -> Settings:
        """A copy with the named fields parsed from text; errors name ``label(field)``."""
        return dataclasses.replace(self, **{name: _parse(name, value, label(name)) for name, value in raw.items()})

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_TYPES: dict[str, Callable[[str], object]] = {
    "host": str, "metrics_host": str, "console_host": str, "tokens_file": str, "jwks_file": str,
    "jwt_audience": str, "tls_cert": str, "tls_key": str, "tls_client_ca": str, "model_repository": Path,
    "grace_seconds": float, "drain_seconds": float, "store": str, "store_retention_days": float,
}


def _parse(name: str, raw: str, label: str) -> object:
    kind = _TYPES.get(name, int)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{label}={raw!r}: expected {getattr(kind, '__name__', kind)}") from None
