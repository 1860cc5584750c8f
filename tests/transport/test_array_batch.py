"""Which PredictBatch requests the transport hands to the array path as they are (``converters.array_batch``): items
alike, or stacked inputs with items carrying only the rest of each row. Anything that would be an item's own error
must go item by item, where that item gets it."""

from __future__ import annotations

import numpy as np
import pytest

from smallguard.server.transport import converters
from smallguard.server.transport.converters import array_batch, stacked_tensors
from smallguard.v1 import guard_pb2 as pb

ROWS = np.arange(3 * 64, dtype=np.float32).reshape(3, 64) % 17


def typed(row: np.ndarray, **fields: object) -> pb.PredictRequest:
    tensor = pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[64])
    tensor.contents.float_contents.extend(row.tolist())
    return pb.PredictRequest(inputs=[tensor], **fields)


def raw(row: np.ndarray, **fields: object) -> pb.PredictRequest:
    return pb.PredictRequest(inputs=[pb.Tensor(name="pixels", dtype=pb.FLOAT32, shape=[64],
                                               raw_contents=row.astype("<f4").tobytes())], **fields)


def batch(items: list[pb.PredictRequest]) -> pb.PredictBatchRequest:
    return pb.PredictBatchRequest(model="digits", items=items)


@pytest.mark.parametrize("make", [[typed] * 3, [raw] * 3, [typed, raw, typed]], ids=["typed", "raw", "mixed"])
def test_items_alike_are_stacked_with_their_ids_and_contexts(make: list) -> None:
    items = [make[i](ROWS[i]) for i in range(3)]
    items[1].request_id, items[2].context["allowed_labels"] = "mine", "1,7"
    items[2].model = "digits"
    arrays = array_batch(batch(items), None)
    assert arrays is not None
    (tensor,) = arrays.tensors
    assert (tensor.name, tensor.dtype, tensor.shape) == ("pixels", "float32", (3, 64))
    assert np.array_equal(tensor.values.reshape(3, 64), ROWS)
    assert arrays.request_ids == ["", "mine", ""] and [dict(c) for c in arrays.contexts] == [
        {}, {}, {"allowed_labels": "1,7"}]


def test_items_without_ids_or_contexts_leave_both_to_the_array_path() -> None:
    arrays = array_batch(batch([typed(row) for row in ROWS]), None)
    assert arrays is not None and arrays.request_ids is None and arrays.contexts is None  # ids that name the batch


def _float64(row: np.ndarray) -> pb.PredictRequest:
    request = typed(row)
    request.inputs[0].dtype = pb.FLOAT64
    request.inputs[0].contents.ClearField("float_contents")
    request.inputs[0].contents.double_contents.extend(row.tolist())
    return request


def _both_fields(row: np.ndarray) -> pb.PredictRequest:
    request = typed(row)
    request.inputs[0].contents.double_contents.append(1.0)
    return request


def _typed_and_raw(row: np.ndarray) -> pb.PredictRequest:
    request = typed(row)
    request.inputs[0].raw_contents = row.astype("<f4").tobytes()
    return request


def _short(row: np.ndarray) -> pb.PredictRequest:
    request = typed(row)
    del request.inputs[0].contents.float_contents[-1]
    return request


def _renamed(row: np.ndarray) -> pb.PredictRequest:
    request = typed(row)
    request.inputs[0].name = "image"
    return request


def _reshaped(row: np.ndarray) -> pb.PredictRequest:
    request = typed(row)
    request.inputs[0].shape[:] = [8, 8]
    return request


@pytest.mark.parametrize("odd", [
    lambda row: typed(row, text="an invoice"),
    _float64, _both_fields, _typed_and_raw, _short, _renamed, _reshaped,
    lambda row: typed(row, request_id="bad\x00id"),
    lambda row: typed(row, max_cost=-1.0),
    lambda row: typed(row, max_cost=float("nan")),
    lambda row: typed(row, model="invoice-extractor"),
    lambda row: typed(row, version="9.9.9"),
    lambda row: pb.PredictRequest(text="no tensor"),
], ids=["text", "float64", "two fields", "typed and raw", "a value short", "another name", "another shape",
        "bad id", "negative budget", "NaN budget", "another model", "another version", "text alone"])
def test_an_item_that_is_not_alike_or_would_be_its_own_error_sends_the_batch_item_by_item(odd) -> None:
    for place in (0, 2):  # the first item is decoded with every check; the others are held to it
        items = [typed(row) for row in ROWS]
        items[place] = odd(ROWS[place])
        assert array_batch(batch(items), None) is None


def test_stacked_inputs_take_items_that_carry_only_the_rest_of_each_row() -> None:
    request = pb.PredictBatchRequest(model="digits", inputs=[pb.Tensor(
        name="pixels", dtype=pb.FLOAT32, shape=[3, 64], raw_contents=ROWS.astype("<f4").tobytes())])
    stacked = stacked_tensors(request)
    alone = array_batch(request, stacked)
    assert alone is not None and alone.request_ids is None
    request.items.extend([pb.PredictRequest(request_id=f"r{i}") for i in range(3)])
    given = array_batch(request, stacked)
    assert given is not None and given.request_ids == ["r0", "r1", "r2"] and given.contexts is None
    for odd in (pb.PredictRequest(text="x"), typed(ROWS[0]), pb.PredictRequest(max_cost=-2.0)):
        request.items[1].CopyFrom(odd)
        assert array_batch(request, stacked) is None
    del request.items[2]  # not one item per row: the item-by-item path fails the call, naming it
    assert array_batch(request, stacked) is None


def _with_unknown_field(row: np.ndarray) -> pb.PredictRequest:
    """The item as a newer client might send it: a field this server's proto does not have (number 99)."""
    return pb.PredictRequest.FromString(typed(row).SerializeToString() + b"\x98\x06\x01")


@pytest.mark.parametrize("dtype", [pb.FLOAT32, pb.FLOAT64])
@pytest.mark.parametrize("model", ["", "digits"])
def test_plain_items_are_read_from_their_bytes_as_the_general_path_reads_them(dtype: int, model: str) -> None:
    """Items of one tensor each and nothing else, as most callers send them, are checked and read by comparing
    their serialized bytes with the first's (``_plain``); the values must be those the general path reads, to
    the bit: -0.0, the smallest subnormal, the largest finite value."""
    rows = np.vstack([ROWS, [[-0.0, 1e-45, 3.4e38, -3.4e38] * 16]]).astype(np.float32 if dtype == pb.FLOAT32
                                                                            else np.float64)

    def item(row: np.ndarray) -> pb.PredictRequest:
        tensor = pb.Tensor(name="pixels", dtype=dtype, shape=[64])
        (tensor.contents.float_contents if dtype == pb.FLOAT32 else tensor.contents.double_contents).extend(
            row.tolist())
        return pb.PredictRequest(model=model, inputs=[tensor])

    items = [item(row) for row in rows]
    plain = converters._plain(items, "digits", "")
    assert plain is not None
    general = converters._alike(items)
    assert general is not None
    (ours,), (theirs,) = plain, general
    assert (ours.name, ours.dtype, ours.shape) == (theirs.name, theirs.dtype, theirs.shape) == (
        "pixels", "float32" if dtype == pb.FLOAT32 else "float64", (4, 64))
    assert ours.values.tobytes() == theirs.values.tobytes() == rows.tobytes()
    arrays = array_batch(batch(items), None)
    assert arrays is not None and arrays.request_ids is None and arrays.contexts is None
    assert arrays.tensors[0].values.tobytes() == rows.tobytes()


@pytest.mark.parametrize("odd", [
    lambda row: typed(row, request_id="mine"),
    lambda row: typed(row, context={"allowed_labels": "1,7"}),
    lambda row: typed(row, max_cost=1.0),
    lambda row: typed(row, max_tier=0),
    lambda row: typed(row, model="digits"),  # the first names none
    _with_unknown_field, _float64, _both_fields, _typed_and_raw, _short, _renamed, _reshaped,
], ids=["an id", "a context", "a budget", "a tier cap", "a model named", "an unknown field", "float64",
        "two fields", "typed and raw", "a value short", "another name", "another shape"])
def test_an_item_that_is_not_plain_is_read_by_the_general_path(odd) -> None:
    """Not plain is not an error: the general path reads what it can take (an item's id, context and caps) and
    sends the rest item by item."""
    for place in (1, 2):
        items = [typed(row) for row in ROWS]
        items[place] = odd(ROWS[place])
        assert converters._plain(items, "digits", "") is None
        arrays = array_batch(batch(items), None)
        if arrays is not None:  # taken over arrays by the general path: the same values
            assert np.array_equal(arrays.tensors[0].values.reshape(3, 64), ROWS)


def test_a_plain_item_alone_gets_values_of_its_own() -> None:
    """One item's values read from its bytes are an array of their own, writable, as ``_tensor`` gives a Predict's
    (not a view of the message's bytes)."""
    item = typed(ROWS[0])
    (tensor,) = converters._plain([item], "digits", "")
    assert tensor.values.flags.writeable
    tensor.values[0] = 99.0  # changes the array, not what the message holds
    assert item.inputs[0].contents.float_contents[0] == ROWS[0][0] and np.array_equal(tensor.values[1:], ROWS[0][1:])
