"""Bearer tokens on a real server: no token or an unknown one is UNAUTHENTICATED, a token without the RPC's
role is PERMISSION_DENIED, health stays open, a revoked token stops working without a restart, and no
message or log repeats a token."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from smallguard.client import CallError, Client
from smallguard.server.assembly import create_server
from smallguard.server.settings import Settings
from smallguard.server.transport.auth import TokenFileError, read_tokens
from tests.conftest import MODELS, by, digits_rows, points

PREDICT_ONLY, LABELLER, ADMIN = "tok-predict-1f2e", "tok-label-9a8b", "tok-admin-77cc"


def _entry(name: str, token: str, roles: list[str]) -> str:
    return f"  - {{name: {name}, sha256: {hashlib.sha256(token.encode()).hexdigest()}, roles: {roles}}}\n"


def _write(path: Path, *entries: str) -> None:
    path.write_text("tokens:\n" + "".join(entries))


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[str, Path, InMemoryMetricReader]]:
    tokens = tmp_path / "tokens.yaml"
    _write(tokens, _entry("checkout", PREDICT_ONLY, ["predict"]),
           _entry("labellers", LABELLER, ["predict", "feedback"]), _entry("ops", ADMIN, ["admin"]))
    reader = InMemoryMetricReader()
    server = create_server(Settings(host="127.0.0.1", port=0, model_repository=MODELS, tokens_file=str(tokens)),
                           meter_provider=MeterProvider(metric_readers=[reader]))
    server.start()
    yield f"127.0.0.1:{server.port}", tokens, reader
    server.stop(0)


def test_calls_need_a_token_with_the_rpcs_role(secured, caplog: pytest.LogCaptureFixture) -> None:
    address, _, reader = secured
    pixels = digits_rows()[0]["pixels"]
    for token in (None, "not-a-token"):
        with Client(address, token=token) as client, pytest.raises(CallError) as caught:
            client.predict("digits", pixels=pixels)
        assert caught.value.code == "UNAUTHENTICATED" and "not-a-token" not in caught.value.message
    with Client(address, token=PREDICT_ONLY) as client:
        answer = client.predict("digits", pixels=pixels, request_id="auth-1")
        assert client.models()
        with pytest.raises(CallError) as caught:
            client.feedback("auth-1", label=answer.label)
    assert caught.value.code == "PERMISSION_DENIED" and "'checkout'" in caught.value.message
    assert "'feedback'" in caught.value.message and PREDICT_ONLY not in caught.value.message
    with Client(address, token=LABELLER) as client:
        assert client.feedback("auth-1", label=answer.label).correct
    with Client(address, token=ADMIN) as client:
        assert client.feedback("auth-1", label=answer.label).duplicate  # admin holds every role
    with grpc.insecure_channel(address) as channel:  # health: open, for probes
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    refused = by(points(reader)["smallguard.auth.refused"], "smallguard.auth.reason", "rpc.method")
    assert refused[("unauthenticated", "Predict")] == 2 and refused[("permission_denied", "Feedback")] == 1
    assert not any(token in record.getMessage() for record in caplog.records
                   for token in (PREDICT_ONLY, LABELLER, ADMIN, "not-a-token"))


def test_a_revoked_token_stops_working_without_a_restart(secured) -> None:
    address, tokens, _ = secured
    with Client(address, token=PREDICT_ONLY) as client:
        assert client.models()
        _write(tokens, _entry("labellers", LABELLER, ["predict", "feedback"]))  # checkout's line removed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.models()
            except CallError as error:
                assert error.code == "UNAUTHENTICATED"
                break
            time.sleep(0.1)
        else:
            pytest.fail("the revoked token still worked 10 s after the file changed")
    with Client(address, token=LABELLER) as client:
        assert client.models()


def test_a_broken_tokens_file_keeps_the_tokens_read_before(secured, caplog: pytest.LogCaptureFixture) -> None:
    address, tokens, _ = secured
    with caplog.at_level(logging.ERROR):
        tokens.write_text("tokens: [{name: x, sha256: nothex, roles: [predict]}]\n")
        deadline = time.monotonic() + 10
        while not any("tokens file not re-read" in record.getMessage() for record in caplog.records):
            assert time.monotonic() < deadline, "the broken tokens file was not reported within 10 s"
            time.sleep(0.1)
    with Client(address, token=PREDICT_ONLY) as client:
        assert client.models()  # the tokens read before still work


@pytest.mark.parametrize(("text", "problem"), [
    ("tokens: {}\n", "expected a mapping with a list under 'tokens'"),
    ("tokens: [{name: a, sha256: abc, roles: [predict]}]\n", "tokens[0].sha256: expected the 64 hex digits"),
    (f"tokens: [{{sha256: {'a' * 64}, roles: [root]}}]\n", "tokens[0].roles: expected a non-empty list"),
    (f"tokens: [{{sha256: {'a' * 64}, roles: [predict]}}, {{sha256: {'a' * 64}, roles: [feedback]}}]\n",
     "tokens[1]: the same token is listed twice"),
])
def test_a_bad_tokens_file_is_refused_naming_the_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(TokenFileError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        read_tokens(path)


# ------------------------------------------------------------------ JWTs against a JSON Web Key Set


def _jwks(path: Path, *keys: tuple[str, Any]) -> None:
    entries = []
    for kid, key in keys:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        entries.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    path.write_text(json.dumps({"keys": entries}))


def _jwt(key: Any, kid: str, roles: list[str], *, expires_in: float = 300, audience: str = "smallguard",
         sub: str = "billing-job") -> str:
    claims = {"sub": sub, "roles": roles, "aud": audience, "exp": int(time.time() + expires_in)}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def test_jwts_signed_by_a_key_of_the_set_are_accepted_with_their_roles(tmp_path: Path) -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    _jwks(jwks, ("k1", key))
    server = create_server(Settings(host="127.0.0.1", port=0, model_repository=MODELS, jwks_file=str(jwks),
                                    jwt_audience="smallguard"))
    server.start()
    address = f"127.0.0.1:{server.port}"
    pixels = digits_rows()[0]["pixels"]
    try:
        with Client(address, token=_jwt(key, "k1", ["predict"])) as client:
            answer = client.predict("digits", pixels=pixels, request_id="jwt-1")
            with pytest.raises(CallError) as caught:
                client.feedback("jwt-1", label=answer.label)
        assert caught.value.code == "PERMISSION_DENIED" and "'billing-job'" in caught.value.message
        refusals = {
            "expired": (_jwt(key, "k1", ["predict"], expires_in=-60), "Signature has expired"),
            "forged": (_jwt(other, "k1", ["predict"]), "Signature verification failed"),
            "unknown key": (_jwt(other, "k9", ["predict"]), "its key is not in the key set"),
            "audience": (_jwt(key, "k1", ["predict"], audience="someone-else"), "Audience doesn't match"),
            "no roles": (jwt.encode({"sub": "x", "aud": "smallguard", "exp": int(time.time()) + 60}, key,
                                    algorithm="ES256", headers={"kid": "k1"}), "no 'roles' list"),
        }
        for case, (token, reason) in refusals.items():
            with Client(address, token=token) as client, pytest.raises(CallError) as caught:
                client.models()
            assert caught.value.code == "UNAUTHENTICATED" and reason in caught.value.message, case
            assert token not in caught.value.message
        # key rotation: the set is re-read; tokens of the old key stop working, the new key's work
        _jwks(jwks, ("k2", other))
        deadline = time.monotonic() + 10
        with Client(address, token=_jwt(other, "k2", ["feedback", "predict"])) as client:
            while True:
                try:
                    assert client.feedback("jwt-1", label=answer.label).correct
                    break
                except CallError:
                    assert time.monotonic() < deadline, "the new key set was not read within 10 s"
                    time.sleep(0.1)
        with Client(address, token=_jwt(key, "k1", ["predict"])) as client, pytest.raises(CallError):
            client.models()
    finally:
        server.stop(0)


def test_a_caller_who_reuses_a_request_id_cannot_replace_the_first_callers_record(secured) -> None:
    """Mallory (a predict token) sends a Predict with an id another caller already used: it is answered and
    logged (the audit names both callers), but the id's feedback still judges the first caller's decision."""
    address, _, _ = secured
    rows = digits_rows()
    with Client(address, token=LABELLER) as labeller, Client(address, token=PREDICT_ONLY) as mallory:
        first = labeller.predict("digits", pixels=rows[0]["pixels"], request_id="order-1234")
        other = next(row for row in rows if mallory.predict("digits", pixels=row["pixels"]).label != first.label)
        assert mallory.predict("digits", pixels=other["pixels"], request_id="order-1234").label != first.label
        judged = labeller.feedback("order-1234", label=first.label)
    assert judged.correct  # against the labeller's decision; mallory's answered another label
    store = sqlite3.connect(Path(os.environ["XDG_STATE_HOME"]) / "smallguard" / "store.sqlite3")
    deadline = time.monotonic() + 10
    while True:  # the decision log writes within a flush interval
        callers = [json.loads(details).get("caller") for (details,) in store.execute(
            "SELECT details FROM decisions WHERE request_id = 'order-1234' ORDER BY at")]
        if len(callers) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    store.close()
    assert callers == ["labellers", "checkout"]
