"""Input checks for what the shipped digits bundle does not exercise: text inputs, '-1' sizes, ints."""

from __future__ import annotations

import numpy as np
import pytest

from smallguard.server.core.inputs import feeds_for, feeds_for_many
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


DIGIT = [InputSpec(name="pixels", dtype="float32", shape=(4,), min=0, max=16)]


def pixels(values: list[float], shape: tuple[int, ...] = (4,), name: str = "pixels") -> PredictCall:
    return PredictCall(model="", tensors=(TensorInput(name, "float32", shape, np.asarray(values, dtype="float32")),))


def outcome(result: object) -> object:
    """A feeds mapping or an error, comparable: arrays as lists, errors as their class and message."""
    if isinstance(result, InvalidInputError):
        return type(result).__name__, str(result)
    return {name: (array.shape, array.tolist()) for name, array in result.items()}  # type: ignore[attr-defined]


def one_by_one(specs: list[InputSpec], calls: list[PredictCall]) -> list[object]:
    found = []
    for call in calls:
        try:
            found.append(outcome(feeds_for(specs, call)))
        except InvalidInputError as error:
            found.append(outcome(error))
    return found


@pytest.mark.parametrize("bad", [
    [],  # every item valid: checked all at once
    [(1, [0.0, 17.0, 1.0, 2.0])],  # out of range
    [(0, [float("nan"), 1.0, 1.0, 1.0]), (3, [1.0, 1.0, 1.0, float("inf")])],  # not finite, first and last
])
def test_a_batch_checked_at_once_gives_each_item_what_it_gets_alone(bad: list[tuple[int, list[float]]]) -> None:
    calls = [pixels([float(i), 1.0, 2.0, 16.0]) for i in range(5)]
    for index, values in bad:
        calls[index] = pixels(values)
    calls.append(pixels([1.0, 2.0, 3.0], shape=(3,)))  # a wrong shape goes the single way
    calls.append(pixels([1.0, 2.0, 3.0, 4.0], name="other"))  # so does an unknown input
    many = [outcome(result) for result in feeds_for_many(DIGIT, calls)]
    assert many == one_by_one(DIGIT, calls)
    errors = [i for i, result in enumerate(many) if isinstance(result, tuple)]
    assert errors == sorted([index for index, _ in bad] + [5, 6])


def test_a_variable_shape_batch_is_checked_item_by_item() -> None:
    calls = [PredictCall(model="", tensors=(tensor([1, 2, 3]),)), PredictCall(model="", tensors=(tensor([5, 1000]),)),
             PredictCall(model="", tensors=(tensor([7]),))]
    assert [outcome(result) for result in feeds_for_many(TOKENS, calls)] == one_by_one(TOKENS, calls)
