"""Input checks for what the shipped digits bundle does not exercise: text inputs, '-1' sizes, ints."""

from __future__ import annotations

import numpy as np
import pytest

from smallguard.server.core.inputs import feeds_for
from smallguard.server.domain.bundle_spec import InputSpec
from smallguard.server.domain.errors import InvalidInputError
from smallguard.server.domain.predictions import PredictCall, TensorInput

TEXT = [InputSpec(name="text", kind="text", dtype="string", max_chars=20)]
TOKENS = [InputSpec(name="ids", dtype="int64", shape=(-1,), min=0, max=999)]


def tensor(values: list[int], dtype: str = "int64") -> TensorInput:
    return TensorInput("ids", dtype, (len(values),), np.asarray(values, dtype=dtype))


def test_text_within_the_limit_becomes_a_batch_of_one() -> None:
    feeds = feeds_for(TEXT, PredictCall(model="m", text="Invoice 42"))
    assert feeds["text"].shape == (1,) and feeds["text"][0] == "Invoice 42"


@pytest.mark.parametrize(("call", "message"), [
    (PredictCall(model="m", text="x" * 21), "text: 21 characters is over the limit of 20"),
    (PredictCall(model="m", text="   "), "text: missing or blank"),
    (PredictCall(model="m", text="ok", tensors=(tensor([1]),)), "takes text, not tensors"),
])
def test_bad_text_is_refused_with_the_reason(call: PredictCall, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        feeds_for(TEXT, call)


def test_any_length_dimension_accepts_every_length() -> None:
    for length in (1, 7, 300):
        feeds = feeds_for(TOKENS, PredictCall(model="m", tensors=(tensor(list(range(length))),)))
        assert feeds["ids"].shape == (1, length) and feeds["ids"].dtype == np.int64


def test_integer_range_and_dtype_are_checked() -> None:
    with pytest.raises(InvalidInputError, match=r"value 1000 at flat index 2 is outside the declared range \[0, 999\]"):
        feeds_for(TOKENS, PredictCall(model="m", tensors=(tensor([1, 2, 1000]),)))
    with pytest.raises(InvalidInputError, match="dtype int32 does not match; expected int64 tensor of shape"):
        feeds_for(TOKENS, PredictCall(model="m", tensors=(tensor([1], "int32"),)))


def test_an_input_given_twice_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"inputs\[ids\]: given more than once"):
        feeds_for(TOKENS, PredictCall(model="m", tensors=(tensor([1]), tensor([2]))))
