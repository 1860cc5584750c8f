"""PredictBatch over gRPC: one call, one model run, and for each item the decision a single Predict gives."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from smallguard.client.columns import arrays_of, results_of
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import MODELS, Running, digits_request, digits_rows, free_port, serving, start_server
from tests.e2e.test_extractor import invoices

ALL_DIGITS = "0,1,2,3,4,5,6,7,8,9"


def comparable(response: pb.PredictResponse) -> tuple:
    """Everything a caller acts on; trace ids differ by call, and verifier durations are timings."""
    return (response.request_id, response.model, response.model_version, response.decision,
            response.classification.SerializeToString(deterministic=True),
            [(f.name, f.value, f.present, f.confidence, f.raw_confidence) for f in response.extraction.fields],
            response.confidence, response.raw_confidence, response.threshold,
            [(r.code, r.verifier, r.message) for r in response.reasons],
            [(v.name, v.status, v.message, v.on_fail) for v in response.verifiers])


def test_each_item_gets_the_decision_of_a_single_predict(shipped: Running) -> None:
    rows = digits_rows()[:64]
    items = []
    for i, row in enumerate(rows):
        item = digits_request(row["pixels"], request_id=f"batch-{i}",
                              context={"allowed_labels": "0,1,2,3,4,5,6,7" if i % 5 == 0 else ALL_DIGITS})
        item.model = ""  # an item may leave the model to the batch
        items.append(item)
    batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=items))
    assert len(batch.results) == 64 and all(result.HasField("response") for result in batch.results)
    singles = []
    for item in items:
        single = pb.PredictRequest()
        single.CopyFrom(item)
        single.model = "digits"
        singles.append(shipped.stub.Predict(single))
    assert [comparable(r.response) for r in batch.results] == [comparable(s) for s in singles]
    # the batch covers the decisions that matter: answered, held back, and a verifier that failed
    decisions = {r.response.decision for r in batch.results}
    assert {pb.ANSWER, pb.ESCALATE} <= decisions
    assert any(reason.code == pb.Reason.VERIFIER_FAILED for r in batch.results for reason in r.response.reasons)


def test_an_invalid_item_gets_its_own_error_and_the_others_are_served(shipped: Running) -> None:
    rows = digits_rows()[:4]
    short = pb.PredictRequest(inputs=[pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[63],
                                                contents=pb.TensorContents(float_contents=rows[1]["pixels"][:63]))])
    other_model = pb.PredictRequest(model="invoice-extractor", text="Invoice 7 total 1.00")
    items = [digits_request(rows[0]["pixels"]), short, other_model, digits_request(rows[3]["pixels"])]
    batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=items))
    kinds = [result.WhichOneof("result") for result in batch.results]
    assert kinds == ["response", "error", "error", "response"]
    assert batch.results[1].error.code == "INVALID_ARGUMENT"
    assert batch.results[1].error.message == ("items[1].inputs[pixels]: shape [63] does not match; expected float32 "
                                              "tensor of shape [64] with values in [0, 16]")
    assert batch.results[2].error.code == "INVALID_ARGUMENT"
    assert batch.results[2].error.message.startswith("items[2].model: 'invoice-extractor' version '' is not the "
                                                     "batch's model, 'digits'")
    assert batch.results[3].response.classification.label == shipped.stub.Predict(items[3]).classification.label


def test_the_batch_as_a_whole_is_checked_like_a_predict(shipped: Running) -> None:
    item = digits_request(digits_rows()[0]["pixels"])
    with pytest.raises(grpc.RpcError) as empty:
        shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits"))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert empty.value.details() == "items: 0 items; expected 1 to 1024 (--max-batch-items)"
    with pytest.raises(grpc.RpcError) as unknown:
        shipped.stub.PredictBatch(pb.PredictBatchRequest(model="no-such-model", items=[item]))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-model" in unknown.value.details()
    with pytest.raises(grpc.RpcError) as version:
        shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", version="9.9.9", items=[item]))
    assert version.value.code() == grpc.StatusCode.NOT_FOUND and "9.9.9" in version.value.details()
    assert shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=[item])).results[0].HasField(
        "response")  # the server kept serving


def stacked(rows: list[list[float]], dtype: type = np.float32) -> pb.Tensor:
    """The digits of ``rows`` as one stacked input: [items, 64], little-endian raw bytes."""
    array = np.asarray(rows, dtype=dtype)
    return pb.Tensor(name="pixels", dtype=pb.FLOAT32 if dtype is np.float32 else pb.FLOAT64, shape=list(array.shape),
                     raw_contents=array.astype(array.dtype.newbyteorder("<")).tobytes())


def test_stacked_inputs_give_each_row_the_decision_of_a_single_predict(shipped: Running) -> None:
    rows = digits_rows()[:64]
    contexts = [{"allowed_labels": "0,1,2,3,4,5,6,7" if i % 5 == 0 else ALL_DIGITS} for i in range(64)]
    rest = [pb.PredictRequest(request_id=f"stacked-{i}", context=context) for i, context in enumerate(contexts)]
    batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(
        model="digits", inputs=[stacked([row["pixels"] for row in rows])], items=rest))
    singles = [shipped.stub.Predict(digits_request(row["pixels"], request_id=f"stacked-{i}", context=contexts[i]))
               for i, row in enumerate(rows)]
    assert [comparable(r.response) for r in batch.results] == [comparable(s) for s in singles]
    assert {pb.ANSWER, pb.ESCALATE} <= {r.response.decision for r in batch.results}
    # without items: every row is served with the server's own request id, as an item with only its inputs is
    bare = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", inputs=[stacked([r["pixels"]
                                                                                              for r in rows[:5]])]))
    ids = [r.response.request_id for r in bare.results]
    assert len(set(ids)) == 5 and all(ids)
    assert [r.response.classification.label for r in bare.results] == [s.classification.label for s in singles[:5]]


def test_a_bad_row_or_item_of_stacked_inputs_gets_its_own_error(shipped: Running) -> None:
    rows = [row["pixels"] for row in digits_rows()[:4]]
    rows[1] = [float("nan")] * 64
    rows.append(rows[0])
    rest = [pb.PredictRequest(), pb.PredictRequest(), digits_request(rows[0]), pb.PredictRequest(request_id="last"),
            pb.PredictRequest(text="an item's own text")]
    batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", inputs=[stacked(rows)], items=rest))
    assert [result.WhichOneof("result") for result in batch.results] == ["response", "error", "error", "response",
                                                                         "error"]
    assert batch.results[1].error.code == "INVALID_ARGUMENT"
    assert batch.results[1].error.message.startswith("items[1].inputs[pixels]: ") and "NaN" in \
        batch.results[1].error.message
    assert batch.results[2].error.message == ("items[2].inputs: this batch stacks its items' tensors in its inputs: "
                                              "leave the item's inputs empty")
    assert batch.results[4].error.message == ("items[4].text: this batch stacks its items' tensors in its inputs: "
                                              "leave the item's text empty")
    assert batch.results[3].response.request_id == "last"
    assert batch.results[3].response.classification.label == shipped.stub.Predict(
        digits_request(rows[3])).classification.label


@pytest.mark.parametrize(("inputs", "items", "message"), [
    ([pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[0, 64])], 0,
     "inputs[pixels].shape[0]: 0 items; expected 1 to 1024 (--max-batch-items)"),
    ([pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[2000, 64])], 0,
     "inputs[pixels].shape[0]: 2000 items; expected 1 to 1024 (--max-batch-items)"),
    ([stacked([[0.0] * 64] * 3)], 2,
     "items: 2 items for 3 rows of the stacked inputs; expected one item per row (its request_id, context and caps), "
     "or none"),
    ([stacked([[0.0] * 64] * 3), pb.Tensor(name="extra", dtype=pb.FLOAT32, shape=[2, 1],
                                           contents=pb.TensorContents(float_contents=[1.0, 2.0]))], 0,
     "inputs[extra].shape: 2 rows, but inputs[pixels] has 3; every stacked input has one row per item"),
    ([pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[3, 64], raw_contents=b"\0" * 12)], 0,
     "inputs[pixels].raw_contents: 12 bytes; shape [3, 64] of float32 needs 768"),
    ([pb.Tensor(name="pixels", dtype=pb.FLOAT32)], 0,
     "inputs[pixels].shape: [] has no first dimension; a stacked input's shape is [items, ...the model's shape]"),
    ([pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[-2, 64])], 0,
     "inputs[pixels].shape[0]: -2 items; expected 1 to 1024 (--max-batch-items)"),
    ([stacked([[0.0] * 64]), stacked([[1.0] * 64])], 0, "inputs[pixels]: given more than once"),
    ([pb.Tensor(name="pixels", dtype=pb.INT64, shape=[1, 64], contents=pb.TensorContents(float_contents=[0.0] * 64))],
     0, "inputs[pixels].contents: dtype INT64 goes in int64_contents, not float_contents"),
])
def test_stacked_inputs_that_make_no_batch_fail_the_call(shipped: Running, inputs: list[pb.Tensor], items: int,
                                                         message: str) -> None:
    request = pb.PredictBatchRequest(model="digits", inputs=inputs, items=[pb.PredictRequest()] * items)
    with pytest.raises(grpc.RpcError) as refused:
        shipped.stub.PredictBatch(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == message
    assert len(shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", inputs=[stacked([[0.0] * 64])]))
               .results) == 1  # the server kept serving


def test_batch_limits_come_from_the_settings() -> None:
    item = digits_request(digits_rows()[0]["pixels"])
    two = len(pb.PredictBatchRequest(model="digits", items=[item] * 2).SerializeToString())
    running = start_server(MODELS, max_batch_items=3, max_request_bytes=two)
    try:
        with pytest.raises(grpc.RpcError) as many:  # small items, so that the count is what is over
            tiny = pb.PredictRequest(text="x")
            running.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=[tiny] * 4))
        assert many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert many.value.details() == "items: 4 items; expected 1 to 3 (--max-batch-items)"
        with pytest.raises(grpc.RpcError) as large:  # three items are over the size of two
            running.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=[item] * 3))
        assert large.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"over this server's limit of {two} bytes (--max-request-bytes)" in large.value.details()
        assert len(running.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=[item] * 2)).results) == 2
    finally:
        running.stop()


def test_an_extractor_batch_gives_each_invoice_its_single_predict_answer(shipped: Running) -> None:
    texts = [record["text"] for record in invoices("test")[:6] + invoices("shifted")[:6]]
    items = [pb.PredictRequest(text=text, request_id=f"invoice-{i}") for i, text in enumerate(texts)]
    batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="invoice-extractor", items=items))
    singles = [shipped.stub.Predict(pb.PredictRequest(model="invoice-extractor", text=text, request_id=f"invoice-{i}"))
               for i, text in enumerate(texts)]
    assert [comparable(r.response) for r in batch.results] == [comparable(s) for s in singles]


def untimed(results: list[pb.PredictBatchResult], ids: bool = True) -> list[pb.PredictBatchResult]:
    """Copies of ``results`` without what differs from one call to the next: the trace id (the tests trace every
    call), the verifiers' and tiers' timings (and the request ids, for ids the server made)."""
    copies = []
    for result in results:
        copy = pb.PredictBatchResult()
        copy.CopyFrom(result)
        response = copy.response
        if copy.HasField("response"):
            response.trace_id = ""
        for verifier in [*response.verifiers, *(v for tier in response.tiers for v in tier.verifiers)]:
            verifier.duration_ms = 0.0
        for tier in response.tiers:
            tier.latency_ms = 0.0
        if not ids and copy.HasField("response"):
            response.request_id = ""
        copies.append(copy)
    return copies


def answered_in_both_layouts(shipped: Running, request: pb.PredictBatchRequest
                             ) -> tuple[pb.PredictBatchResponse, pb.PredictBatchResponse]:
    """The batch answered as results, then in columns."""
    results = shipped.stub.PredictBatch(request)
    request.layout = pb.BATCH_LAYOUT_COLUMNS
    columns = shipped.stub.PredictBatch(request)
    assert not results.HasField("columns") and not columns.results
    return results, columns


def test_columns_hold_each_items_decision_as_results_do(shipped: Running) -> None:
    rows = digits_rows()[:64]
    contexts = [{"allowed_labels": "0,1,2,3,4,5,6,7" if i % 5 == 0 else ALL_DIGITS} for i in range(64)]
    rest = [pb.PredictRequest(request_id=f"col-{i}", context=context) for i, context in enumerate(contexts)]
    # stacked rows with items that carry their ids and contexts, then without items (both over arrays), then
    # items sent one per message that are not alike (item by item: one of them is float64, its own error)
    by_items = pb.PredictBatchRequest(model="digits", inputs=[stacked([row["pixels"] for row in rows])], items=rest)
    results, columns = answered_in_both_layouts(shipped, by_items)
    assert untimed(results_of(columns.columns)) == untimed(results.results)  # every field of every item
    assert {pb.ANSWER, pb.ESCALATE} <= set(columns.columns.decisions)
    assert len(columns.columns.verifier_lists) < 64  # items answered alike share their verifier results
    arrays = arrays_of(columns.columns)
    assert arrays.request_ids == [f"col-{i}" for i in range(64)]
    assert arrays.top_k_labels.shape == (64, 3) and list(arrays.top_k_labels[:, 0]) == arrays.labels
    assert list(arrays.top_k_labels[5]) == [s.label for s in results.results[5].response.classification.top_k]
    assert np.array_equal(arrays.confidences, [r.response.confidence for r in results.results])
    assert list(arrays.decisions == pb.ANSWER) == [r.response.decision == pb.ANSWER for r in results.results]

    alone = pb.PredictBatchRequest(model="digits", inputs=[stacked([row["pixels"] for row in rows])])
    results, columns = answered_in_both_layouts(shipped, alone)
    rebuilt = results_of(columns.columns)
    assert len(set(r.response.request_id for r in rebuilt)) == 64  # the server's own ids, one per item

    assert untimed(rebuilt, ids=False) == untimed(results.results, ids=False)
    assert columns.ByteSize() < results.ByteSize() * 0.7

    mixed = [digits_request(row["pixels"], request_id=f"mixed-{i}", context=contexts[i]) for i, row in enumerate(rows)]
    mixed[3].inputs[0].dtype = pb.FLOAT64
    results, columns = answered_in_both_layouts(shipped, pb.PredictBatchRequest(model="digits", items=mixed))
    assert [entry.item for entry in columns.columns.errors] == [3]
    assert untimed(results_of(columns.columns)) == untimed(results.results)


def test_columns_name_each_item_that_was_not_served(shipped: Running) -> None:
    rows = [row["pixels"] for row in digits_rows()[:4]]
    rows[1] = [float("nan")] * 64
    rest = [pb.PredictRequest(request_id=f"e-{i}") for i in range(4)]
    request = pb.PredictBatchRequest(model="digits", inputs=[stacked(rows)], items=rest)
    results, columns = answered_in_both_layouts(shipped, request)
    assert [(e.item, e.error.code) for e in columns.columns.errors] == [(1, "INVALID_ARGUMENT")]
    assert columns.columns.errors[0].error == results.results[1].error
    assert list(columns.columns.request_ids) == ["e-0", "", "e-2", "e-3"]
    assert columns.columns.decisions[1] == pb.DECISION_UNSPECIFIED and columns.columns.top_k_counts[1] == 0
    assert untimed(results_of(columns.columns)) == untimed(results.results)
    arrays = arrays_of(columns.columns)  # the row not served: no top-k entries, NaN past them
    assert list(arrays.top_k_labels[1]) == ["", "", ""] and np.isnan(arrays.top_k_probabilities[1]).all()


def test_columns_are_for_a_classifier_and_a_known_layout(shipped: Running) -> None:
    invoice = pb.PredictBatchRequest(model="invoice-extractor", items=[pb.PredictRequest(text="Invoice 7 total 1.00")],
                                     layout=pb.BATCH_LAYOUT_COLUMNS)
    with pytest.raises(grpc.RpcError) as extractor:
        shipped.stub.PredictBatch(invoice)
    assert extractor.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert extractor.value.details() == ("layout: BATCH_LAYOUT_COLUMNS answers a classifier's batch, and model "
                                         "'invoice-extractor' is an extractor; ask for BATCH_LAYOUT_RESULTS")
    digits = pb.PredictBatchRequest(model="digits", inputs=[stacked([digits_rows()[0]["pixels"]])])
    digits.layout = 7  # type: ignore[assignment]  # a value this server does not know
    with pytest.raises(grpc.RpcError) as unknown:
        shipped.stub.PredictBatch(digits)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.details() == ("layout: 7 is not a layout; expected BATCH_LAYOUT_RESULTS (0) or "
                                       "BATCH_LAYOUT_COLUMNS (1)")
    with pytest.raises(grpc.RpcError) as missing:
        shipped.stub.PredictBatch(pb.PredictBatchRequest(model="no-such-model", items=[pb.PredictRequest()],
                                                         layout=pb.BATCH_LAYOUT_COLUMNS))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    digits.layout = pb.BATCH_LAYOUT_COLUMNS  # the server kept serving
    assert shipped.stub.PredictBatch(digits).columns.labels == [shipped.stub.PredictBatch(
        pb.PredictBatchRequest(model="digits", inputs=digits.inputs)).results[0].response.classification.label]


def test_items_sent_one_per_message_are_answered_alike_however_they_are_given(shipped: Running) -> None:
    """Items alike go over arrays (one tensor of all of them); items given otherwise (values in raw bytes, a
    float64 tensor, an id that is not one) are served, each as a single Predict would be, whatever path takes
    them."""
    rows = [row["pixels"] for row in digits_rows()[:12]]
    contexts = [{"allowed_labels": "0,1,2,3" if i % 4 == 0 else ALL_DIGITS} for i in range(12)]

    def items(changed: int | None = None, how: str = "") -> list[pb.PredictRequest]:
        made = [digits_request(row, request_id=f"alike-{i}", context=contexts[i]) for i, row in enumerate(rows)]
        if how == "raw":
            made[changed].inputs[0].ClearField("contents")  # type: ignore[index]
            made[changed].inputs[0].raw_contents = np.asarray(rows[changed], dtype="<f4").tobytes()  # type: ignore[index]
        elif how == "float64":
            made[changed].inputs[0].dtype = pb.FLOAT64  # type: ignore[index]
            made[changed].inputs[0].contents.ClearField("float_contents")  # type: ignore[index]
            made[changed].inputs[0].contents.double_contents.extend(rows[changed])  # type: ignore[index]
        elif how == "bad id":
            made[changed].request_id = "bad\x00id"  # type: ignore[index]
        return made

    singles = [comparable(shipped.stub.Predict(item)) for item in items()]
    assert {pb.ANSWER, pb.ESCALATE} <= {single[3] for single in singles}
    for changed, how in [(None, ""), (5, "raw"), (0, "float64"), (7, "bad id")]:
        batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=items(changed, how)))
        got = [comparable(r.response) if r.HasField("response") else r.error.code for r in batch.results]
        if how == "float64":  # the model takes float32: that item's own error
            assert got[0] == "INVALID_ARGUMENT" and got[1:] == singles[1:], how
        elif how == "bad id":
            assert got[7] == "INVALID_ARGUMENT" and got[:7] + got[8:] == singles[:7] + singles[8:], how
        else:
            assert got == singles, how


def test_items_alike_go_over_arrays_at_a_server_that_traces_nothing(tmp_path: Path) -> None:
    """Where nothing is traced (these tests' own servers trace every call, which takes the item-by-item path),
    a batch of items alike is served over arrays: its items' ids, made by the server, name the batch (its key,
    then each item's place); a batch whose items differ gets an id of its own per item."""
    port = free_port()
    rows = [row["pixels"] for row in digits_rows()[:16]]
    with serving("--store", f"sqlite:///{tmp_path}/store.sqlite3", port=port), \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        alike = stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=[digits_request(r) for r in rows]))
        ids = [result.response.request_id for result in alike.results]
        assert {request_id[:28] for request_id in ids} == {ids[0][:28]}
        assert [int(request_id[28:], 16) for request_id in ids] == list(range(16))
        odd = [digits_request(r) for r in rows]
        odd[3].inputs[0].shape[:] = [8, 8]  # the same values, another shape: not alike
        apart = [r.response.request_id for r in stub.PredictBatch(pb.PredictBatchRequest(model="digits",
                                                                                         items=odd)).results]
        assert len({request_id[:28] for request_id in apart}) == 16
        assert [r.response.classification.label for r in alike.results] == [
            stub.Predict(digits_request(r)).classification.label for r in rows]
