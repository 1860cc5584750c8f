"""smallguard.client against a real server on loopback, and `smallguard predict` from the shell."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from smallguard.client import CallError, Client, ItemError, batch_request, predict_request
from smallguard.server.assembly import create_server
from smallguard.server.settings import Settings
from smallguard.v1 import guard_pb2 as pb
from tests.conftest import MODELS, SMALLGUARD, Running, digits_rows, free_port

INVOICE = json.loads((MODELS / "invoice-extractor" / "data" / "test.jsonl").read_text().splitlines()[0])


def test_predict_a_classifier_from_pixels_and_an_extractor_from_text(shipped: Running) -> None:
    row = digits_rows()[0]
    with Client(shipped.address) as client:
        digit = client.predict("digits", pixels=row["pixels"], context={"allowed_labels": "0,1,2,3,4,5,6,7,8,9"})
        invoice = client.predict("invoice-extractor", text=INVOICE["text"], request_id="client-1")
    assert digit.model == "digits" and digit.label == row["label"] and digit.decision in ("ANSWER", "ABSTAIN")
    assert digit.value("label") == row["label"] and len(digit.top_k) == 3
    assert [v.status for v in digit.verifiers] == ["PASSED"]
    assert invoice.request_id == "client-1" and set(invoice.fields) == set(INVOICE["fields"])
    assert invoice.answered and invoice.value("total") == INVOICE["fields"]["total"]
    assert invoice.answered_by == "invoice-extractor" and invoice.tiers == () and invoice.cost == 0


def test_the_cascade_and_its_caps_come_back_typed(shipped: Running) -> None:
    # the last half of unseen.jsonl is the dot-leader layout, which the small model escalates
    unseen = json.loads((MODELS / "invoice-extractor" / "data" / "unseen.jsonl").read_text().splitlines()[-1])
    with Client(shipped.address) as client:
        cascaded = client.predict("invoice-extractor", text=unseen["text"])
        capped = client.predict("invoice-extractor", text=unseen["text"], max_tier=0)
    assert [(t.name, t.kind) for t in cascaded.tiers] == [("invoice-extractor", "model"), ("large", "bundle")]
    assert cascaded.cost == 1.0 and cascaded.tiers[1].calls == 1
    assert capped.tiers == () and capped.decision == "ESCALATE"


def test_tensors_of_any_dtype_go_as_raw_little_endian_bytes() -> None:
    request = predict_request("m", inputs={"x": np.arange(6, dtype=np.int64).reshape(2, 3),
                                            "y": np.array([True, False])})
    x, y = request.inputs
    assert (x.name, x.dtype, list(x.shape)) == ("x", pb.INT64, [2, 3])
    assert np.frombuffer(x.raw_contents, dtype="<i8").tolist() == [0, 1, 2, 3, 4, 5]
    assert (y.dtype, y.raw_contents) == (pb.BOOL, b"\x01\x00")
    with pytest.raises(ValueError, match="exactly one of text, pixels or inputs"):
        predict_request("m", text="a", pixels=[1.0])
    with pytest.raises(ValueError, match="dtype complex128"):
        predict_request("m", inputs={"z": np.zeros(2, dtype=complex)})


def test_batch_feedback_and_models(shipped: Running) -> None:
    rows = digits_rows()[:3]
    with Client(shipped.address) as client:
        results = client.predict_batch("digits", [{"pixels": rows[0]["pixels"]}, {"pixels": [1.0] * 63},
                                                  {"pixels": rows[2]["pixels"], "request_id": "batch-2"}])
        assert isinstance(results[1], ItemError) and results[1].code == "INVALID_ARGUMENT"
        assert "items[1]" in results[1].message
        assert results[2].request_id == "batch-2" and results[0].label == rows[0]["label"]
        verdict = client.feedback("batch-2", label=rows[2]["label"])
        assert verdict.correct and verdict.model == "digits" and not verdict.duplicate
        assert client.feedback("batch-2", label=rows[2]["label"]).duplicate
        names = {m.name: m for m in client.models()}
        assert {"digits", "invoice-extractor", "invoice-extractor-large"} <= set(names)
        assert names["invoice-extractor"].tiers == ("large", "people") and names["digits"].kind == "CLASSIFIER"
        assert client.model("digits").calibrated


def test_a_stacked_batch_answers_as_the_items_do(shipped: Running) -> None:
    rows = digits_rows()[:8]
    contexts = [{"allowed_labels": "1,2,3" if i % 3 == 0 else "0,1,2,3,4,5,6,7,8,9"} for i in range(8)]
    with Client(shipped.address) as client:
        rest = [{"request_id": f"s-{i}", "context": c} for i, c in enumerate(contexts)]
        stacked = client.predict_batch("digits", rest, pixels=np.array([row["pixels"] for row in rows]))
        items = client.predict_batch("digits", [{"pixels": row["pixels"], "request_id": f"s-{i}", "context": c}
                                                for i, (row, c) in enumerate(zip(rows, contexts, strict=True))])

        def seen(results: list) -> list[tuple]:
            return [(r.request_id, r.decision, r.label, r.top_k, r.confidence, r.reasons) for r in results]
        assert seen(stacked) == seen(items)
        assert {"ANSWER", "ESCALATE"} <= {r.decision for r in stacked}  # type: ignore[union-attr]
        in_columns = client.predict_batch("digits", rest, pixels=np.array([row["pixels"] for row in rows]),
                                          columns=True)
        assert seen(in_columns) == seen(items)
        assert [r.verifiers for r in in_columns] == [r.verifiers for r in items]  # type: ignore[union-attr]
        arrays = client.predict_arrays("digits", rest, pixels=np.array([row["pixels"] for row in rows]))
        assert arrays.labels == [r.label for r in items]  # type: ignore[union-attr]
        assert list(arrays.answered) == [r.answered for r in items]  # type: ignore[union-attr]
        assert arrays.answered.any() and not arrays.answered.all() and arrays.errors == {}
        assert np.array_equal(arrays.confidences, [r.confidence for r in items])  # type: ignore[union-attr]
        assert [tuple(zip(labels, p, strict=True)) for labels, p in zip(
            arrays.top_k_labels.tolist(), arrays.top_k_probabilities.tolist(), strict=True)] == [
            r.top_k for r in items]  # type: ignore[union-attr]
        one_bad = client.predict_arrays("digits", [{"pixels": rows[0]["pixels"]}, {"pixels": [1.0] * 63}])
        assert list(one_bad.errors) == [1] and one_bad.errors[1].code == "INVALID_ARGUMENT"
        assert one_bad.labels[0] == rows[0]["label"] and one_bad.labels[1] == "" and not one_bad.answered[1]
        with pytest.raises(CallError) as extractor:
            client.predict_arrays("invoice-extractor", [{"text": "Invoice 7 total 1.00"}])
        assert extractor.value.code == "INVALID_ARGUMENT" and "layout" in extractor.value.message
        mixed = client.predict_batch("digits", [{"pixels": rows[0]["pixels"]}, {"pixels": [1.0] * 63}], columns=True)
        assert isinstance(mixed[1], ItemError) and mixed[1].code == "INVALID_ARGUMENT"
        assert mixed[1].message.startswith("items[1].")
        assert mixed[0].label == rows[0]["label"]  # type: ignore[union-attr]
        by_name = client.predict_batch("digits", inputs={"pixels": np.array([rows[0]["pixels"]], dtype=np.float32)})
        assert by_name[0].label == rows[0]["label"]  # type: ignore[union-attr]
        images = client.predict_batch("digits", pixels=np.array([row["pixels"] for row in rows]).reshape(8, 8, 8))
        assert [r.label for r in images] == [r.label for r in items]  # type: ignore[union-attr]  # rows of 8x8
    request = batch_request("digits", pixels=[[0.0] * 64] * 2)
    assert list(request.inputs[0].shape) == [2, 64] and len(request.inputs[0].raw_contents) == 2 * 64 * 4
    with pytest.raises(ValueError, match="carries no input of its own"):
        batch_request("digits", [{"pixels": [0.0] * 64}], pixels=[[0.0] * 64])
    with pytest.raises(ValueError, match="not both"):
        batch_request("digits", pixels=[[0.0] * 64], inputs={"pixels": [[0.0] * 64]})
    with pytest.raises(ValueError, match="give the items"):
        batch_request("digits")
    with pytest.raises(ValueError, match="at least one stacked input"):
        batch_request("digits", inputs={})
    assert list(batch_request("digits", pixels=[0.0] * 64).inputs[0].shape) == [1, 64]  # one row: one item
    assert batch_request("digits", [{"model": "digits"}], pixels=[[0.0] * 64]).items[0].model == "digits"


def test_errors_are_typed_with_the_servers_message(shipped: Running) -> None:
    with Client(shipped.address) as client, pytest.raises(CallError) as caught:
        client.predict("no-such-model", text="x")
    assert caught.value.code == "NOT_FOUND" and "no model named 'no-such-model'" in caught.value.message
    with Client(f"127.0.0.1:{free_port()}", timeout=0.5, retries=0) as client, pytest.raises(CallError) as caught:
        client.models()
    assert caught.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_unavailable_is_retried_within_the_deadline(shipped: Running) -> None:
    """A server draining on SIGTERM refuses new calls with UNAVAILABLE (safe to send again): gRPC's retry policy
    sends the call again after a backoff, and here the server has come back by then."""
    service = shipped.server._service  # the test plays the drain: the next two calls are refused

    class RefuseTwice:
        left = 2

        def __bool__(self) -> bool:
            self.left -= 1
            return self.left >= 0

    service.refusing = RefuseTwice()
    try:
        with Client(shipped.address, timeout=20, retries=2) as client:
            assert client.models()  # the third attempt
        assert service.refusing.left < 0
    finally:
        service.refusing = False
    with Client(shipped.address, timeout=20, retries=0) as client:
        service.refusing = True
        try:
            with pytest.raises(CallError) as caught:
                client.models()
        finally:
            service.refusing = False
    assert caught.value.code == "UNAVAILABLE" and "shutting down" in caught.value.message


def test_wait_for_ready_waits_for_a_server_that_is_not_up_yet() -> None:
    port = free_port()
    server = create_server(Settings(host="127.0.0.1", port=port, model_repository=MODELS))
    timer = threading.Timer(0.5, server.start)
    started = time.monotonic()
    timer.start()
    try:
        with Client(f"127.0.0.1:{port}", timeout=20, wait_for_ready=True) as client:
            assert client.models()
            assert time.monotonic() - started >= 0.5  # answered once the server was up, not refused before
    finally:
        timer.join()
        server.stop(0)


def test_smallguard_predict_prints_the_decision_and_the_json(shipped: Running, tmp_path: Path) -> None:
    base = [*SMALLGUARD, "predict", "invoice-extractor", "--address", shipped.address]
    shown = subprocess.run(base, input=INVOICE["text"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("ANSWER  invoice-extractor 1.0.0")
    assert f"  total: {INVOICE['fields']['total']}" in shown.stdout

    as_json = subprocess.run([*base, "--json", "--max-tier", "0"], input=INVOICE["text"], capture_output=True,
                             text=True, timeout=60)
    assert json.loads(as_json.stdout)["decision"] == "ANSWER"

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"inputs": [{"name": "pixels", "dtype": "FLOAT32", "shape": [64],
                                               "contents": {"float_contents": digits_rows()[0]["pixels"]}}]}))
    digit = subprocess.run([*SMALLGUARD, "predict", "digits", "--address", shipped.address, "--request",
                            str(request), "--context", "allowed_labels=none"], capture_output=True, text=True,
                           timeout=60)
    assert digit.returncode == 1 and digit.stdout.startswith("ESCALATE")  # the label is not allowed
    assert "reason VERIFIER_FAILED [label-allowed]" in digit.stdout

    missing = subprocess.run([*SMALLGUARD, "predict", "nope", "--address", shipped.address], input="x",
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "NOT_FOUND" in missing.stderr
