"""TLS and mutual TLS on a real server: certificates from a test CA made here (cryptography); a plaintext
client cannot call, a client without a certificate cannot call a mutual-TLS server, and a renewed
certificate is served to new connections without a restart."""

from __future__ import annotations

import datetime
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smallguard.client import CallError, Client
from smallguard.server.assembly import create_server
from smallguard.server.settings import Settings
from smallguard.server.transport.server import GuardServer
from smallguard.server.transport.tls import TlsConfigError
from tests.conftest import MODELS, SMALLGUARD, free_port


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
          | None, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .issuer_name(name if issuer is None else issuer[0].subject)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return builder.sign(key if issuer is None else issuer[1], hashes.SHA256())


def _pki(folder: Path, tag: str) -> dict[str, Path]:
    """A CA, a server certificate for localhost and a client certificate, as PEM files."""
    ca_key = _key()
    ca = _cert(f"test CA {tag}", ca_key, None, ca=True)
    server_key, client_key = _key(), _key()
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM),
             "cert": _cert("localhost", server_key, (ca, ca_key), server=True).public_bytes(serialization.Encoding.PEM),
             "key": _pem(server_key),
             "client_cert": _cert("client", client_key, (ca, ca_key)).public_bytes(serialization.Encoding.PEM),
             "client_key": _pem(client_key)}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{tag}-{name}.pem"
        paths[name].write_bytes(data)
    return paths


def _serve(pki: dict[str, Path], mutual: bool) -> GuardServer:
    settings = Settings(host="127.0.0.1", port=0, model_repository=MODELS, tls_cert=str(pki["cert"]),
                        tls_key=str(pki["key"]), tls_client_ca=str(pki["ca"]) if mutual else "")
    server = create_server(settings)
    server.start()
    return server


def _client(server: GuardServer, pki: dict[str, Path], with_cert: bool = False) -> Client:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki["client_key"].read_bytes() if with_cert else None,
        certificate_chain=pki["client_cert"].read_bytes() if with_cert else None)
    return Client(f"localhost:{server.port}", credentials=credentials, timeout=10, retries=0)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return _pki(tmp_path, "one")


@pytest.fixture
def tls_server(pki: dict[str, Path]) -> Iterator[GuardServer]:
    server = _serve(pki, mutual=False)
    yield server
    server.stop(0)


def test_tls_serves_clients_that_trust_its_ca_and_refuses_plaintext(tls_server: GuardServer, pki) -> None:
    with _client(tls_server, pki) as client:
        assert {m.name for m in client.models()} >= {"digits"}
    with Client(f"localhost:{tls_server.port}", timeout=3, retries=0) as plaintext, pytest.raises(CallError) as caught:
        plaintext.models()
    assert caught.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_mutual_tls_needs_a_client_certificate_from_the_ca(pki) -> None:
    server = _serve(pki, mutual=True)
    try:
        with _client(server, pki, with_cert=True) as client:
            assert client.models()
        with _client(server, pki, with_cert=False) as client, pytest.raises(CallError) as caught:
            client.models()
        assert caught.value.code == "UNAVAILABLE"
    finally:
        server.stop(0)


def test_a_renewed_certificate_is_served_without_a_restart(tls_server: GuardServer, pki, tmp_path: Path) -> None:
    renewed = _pki(tmp_path, "two")  # another CA: a client trusting only it sees the change
    with _client(tls_server, renewed) as client, pytest.raises(CallError):
        client.models()
    time.sleep(0.01)  # a distinct modification time
    pki["cert"].write_bytes(renewed["cert"].read_bytes())
    pki["key"].write_bytes(renewed["key"].read_bytes())
    with _client(tls_server, renewed) as client:  # a new connection: grpc asks for the configuration again
        assert client.models()


def test_half_a_tls_configuration_refuses_start_up(pki) -> None:
    with pytest.raises(TlsConfigError, match="--tls-cert and --tls-key go together"):
        create_server(Settings(host="127.0.0.1", port=0, model_repository=MODELS, tls_cert=str(pki["cert"])))
    (pki["key"]).write_text("not a key")
    with pytest.raises(TlsConfigError, match="not a PEM file"):
        create_server(Settings(host="127.0.0.1", port=0, model_repository=MODELS, tls_cert=str(pki["cert"]),
                               tls_key=str(pki["key"])))


@pytest.mark.parametrize("mutual", [False, True])
def test_the_metrics_endpoint_serves_https_with_the_same_certificate(pki, mutual: bool) -> None:
    """With --tls-cert the /metrics endpoint is HTTPS too (and, with --tls-client-ca, asks for a client
    certificate), so a scrape cannot be read or forged on the way."""
    port, metrics_port = free_port(), free_port()
    args = ["--port", str(port), "--metrics-port", str(metrics_port), "--tls-cert", str(pki["cert"]),
            "--tls-key", str(pki["key"])] + (["--tls-client-ca", str(pki["ca"])] if mutual else [])
    env = {**os.environ, "SMALLGUARD_HOST": "127.0.0.1"}
    trusted = ssl.create_default_context(cafile=str(pki["ca"]))
    if mutual:
        trusted.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    with subprocess.Popen([*SMALLGUARD, "serve", *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as process:
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    scraped = httpx.get(f"https://localhost:{metrics_port}/metrics", verify=trusted, timeout=5)
                    break
                except httpx.ConnectError:
                    assert process.poll() is None and time.monotonic() < deadline
                    time.sleep(0.2)
            assert scraped.status_code == 200 and "process_cpu_seconds_total" in scraped.text
            with pytest.raises(httpx.HTTPError):  # plaintext gets no metrics
                httpx.get(f"http://localhost:{metrics_port}/metrics", timeout=5)
            if mutual:
                with pytest.raises(httpx.HTTPError):  # nor does a scraper without a client certificate
                    httpx.get(f"https://localhost:{metrics_port}/metrics",
                              verify=ssl.create_default_context(cafile=str(pki["ca"])), timeout=5)
        finally:
            process.kill()
            process.wait()
