"""TLS and mutual TLS on the gRPC port, with certificates re-read from disk when they change.

grpc asks for the certificate configuration before every new connection's handshake; the files'
modification times are compared then (a stat each), and a changed set is loaded for the next
connections, so a renewed certificate (cert-manager, a cron job) takes effect without a restart
and without dropping the connections already open. A file that cannot be read at that moment
keeps the certificates loaded before, and says why in the log.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """The TLS settings or files are not usable; the message names the setting or the file."""


class CertificateFiles:
    """The server's certificate chain, key and (for mutual TLS) client CA, reloaded when a file changes."""

    def __init__(self, cert: str, key: str, client_ca: str = "") -> None:
        if not cert or not key:
            raise TlsConfigError("--tls-cert and --tls-key go together: give both, or neither")
        self._paths = tuple(Path(p) for p in (cert, key, client_ca) if p)
        self.mutual = bool(client_ca)
        self._lock = threading.Lock()
        self._stamps = self._stat()
        self.configuration = self._load()  # raises TlsConfigError at start-up

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self.configuration, self.fetch,
                                                   require_client_authentication=self.mutual)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpc before each handshake: a new configuration when a file changed, else None."""
        stamps = self._stat()
        with self._lock:
            if stamps == self._stamps:
                return None
            self._stamps = stamps
            try:
                self.configuration = self._load()
            except TlsConfigError as exc:
                log.error("TLS certificates not re-read, the ones loaded before stay: %s", exc)
                return None
        log.info("TLS certificates re-read from %s", ", ".join(map(str, self._paths)))
        return self.configuration

    def _stat(self) -> tuple[tuple[int, int] | None, ...]:
        stamps = []
        for path in self._paths:
            try:
                stat = path.stat()
                stamps.append((stat.st_mtime_ns, stat.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        texts = []
        for path in self._paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise TlsConfigError(f"{path}: cannot be read: {exc.strerror}") from None
            if b"-----BEGIN" not in data:
                raise TlsConfigError(f"{path}: not a PEM file")
            texts.append(data)
        cert, key, *ca = texts
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca[0] if ca else None)
