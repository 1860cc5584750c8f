"""Checks a request's inputs against the bundle's declared inputs before the model runs.

onnxruntime's own errors name ONNX internals, and a NaN or out-of-range value would run
and produce a confident, meaningless answer, so every input is checked here first and a
mistake comes back naming the input and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smallguard.server.domain.bundle_spec import InputSpec
from smallguard.server.domain.errors import InvalidInputError, echoed
from smallguard.server.domain.predictions import PredictCall, TensorInput


def feeds_for(specs: Sequence[InputSpec], call: PredictCall) -> dict[str, np.ndarray]:
    """Validate ``call`` against ``specs``; return onnxruntime feeds with a batch dimension of 1."""
    tensors = call.tensors
    if len(specs) == 1 and len(tensors) == 1 and not call.text:  # the usual tensor model: one input, given once
        spec, tensor = specs[0], tensors[0]
        if spec.kind != "text" and tensor.name == spec.name:
            return {spec.name: _checked(spec, tensor)}
    if any(spec.kind == "text" for spec in specs):
        return _text_feeds(specs, call)
    if call.text:
        raise InvalidInputError("this model takes tensors, not text; send them in 'inputs'", "text")
    given = {}
    for tensor in tensors:
        if tensor.name in given:
            raise InvalidInputError("given more than once", f"inputs[{echoed(tensor.name, quoted=False)}]")
        given[tensor.name] = tensor
    if len(given) != len(specs) or any(spec.name not in given for spec in specs):
        expected = [spec.name for spec in specs]
        unknown = sorted(set(given) - set(expected))
        if unknown:
            raise InvalidInputError(f"not an input of this model; expected {expected}",
                                    f"inputs[{echoed(unknown[0], quoted=False)}]")
    feeds = {}
    for spec in specs:
        tensor = given.get(spec.name)
        if tensor is None:
            raise InvalidInputError(f"missing; expected {_describe(spec)}", f"inputs[{spec.name}]")
        feeds[spec.name] = _checked(spec, tensor)
    return feeds


def feeds_for_many(specs: Sequence[InputSpec], calls: Sequence[PredictCall]) -> list[dict[str, np.ndarray] |
                                                                                 InvalidInputError]:
    """``feeds_for`` of each call (its feeds, or the error that refuses it). For the usual tensor model (one
    input, given once, of one shape), the values of every item are checked at once: two reductions for the
    whole batch instead of two per item. Only a batch that holds a bad value is checked item by item, for
    each item's own error."""
    if len(specs) != 1 or specs[0].kind == "text":
        return [_feeds_or_error(specs, call) for call in calls]
    (spec,) = specs
    results: list[dict[str, np.ndarray] | InvalidInputError | None] = [None] * len(calls)
    plain: list[int] = []
    for i, call in enumerate(calls):
        tensors = call.tensors
        if (len(tensors) == 1 and not call.text and tensors[0].name == spec.name and tensors[0].dtype == spec.dtype
                and tensors[0].shape == spec.shape):
            plain.append(i)
        else:
            results[i] = _feeds_or_error(specs, call)
    if plain:
        stacked = np.stack([calls[i].tensors[0].values.reshape(-1) for i in plain])  # [items, elements]
        if stacked.size and not _plainly_valid(spec, stacked.reshape(-1)):
            for i in plain:
                results[i] = _feeds_or_error(specs, calls[i])
        else:
            stacked = stacked.reshape((len(plain), *spec.shape))
            for row, i in enumerate(plain):
                results[i] = {spec.name: stacked[row:row + 1]}
    return results  # type: ignore[return-value]  # every slot is filled above


def stacked_feeds(specs: Sequence[InputSpec], tensors: Sequence[TensorInput]) -> dict[str, np.ndarray] | None:
    """The feeds of a batch whose items' tensors are stacked (row i of each is item i's), when every row is what
    the declared inputs take: ``feeds_for``'s checks, each over the whole batch at once. None when a row is not,
    or the model reads text: ``feeds_for`` of each row then names the problem."""
    if len(tensors) != len(specs) or any(spec.kind == "text" for spec in specs):
        return None
    given = {tensor.name: tensor for tensor in tensors}
    feeds = {}
    for spec in specs:
        tensor = given.get(spec.name)
        if tensor is None or tensor.dtype != spec.dtype:
            return None
        shape = tensor.shape[1:]
        if shape != spec.shape and (len(shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True))):
            return None
        values = tensor.values
        if values.size and not _plainly_valid(spec, values):
            return None
        feeds[spec.name] = values.reshape(tensor.shape)
    return feeds


def _feeds_or_error(specs: Sequence[InputSpec], call: PredictCall) -> dict[str, np.ndarray] | InvalidInputError:
    try:
        return feeds_for(specs, call)
    except InvalidInputError as error:
        return error


def _checked(spec: InputSpec, tensor: TensorInput) -> np.ndarray:
    """The tensor's values, checked, shaped as one example of a batch (a leading dimension of 1)."""
    shape = tensor.shape
    if tensor.dtype != spec.dtype:
        raise InvalidInputError(f"dtype {tensor.dtype} does not match; expected {_describe(spec)}",
                                f"inputs[{spec.name}]")
    if shape != spec.shape and (len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    )):
        raise InvalidInputError(f"shape {list(shape)} does not match; expected {_describe(spec)}",
                                f"inputs[{spec.name}]")
    values = tensor.values
    if values.size and not _plainly_valid(spec, values):  # the usual case costs two reductions
        where = f"inputs[{spec.name}]"
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                index = int(np.flatnonzero(~finite)[0])
                raise InvalidInputError(f"value {values.flat[index]} at flat index {index} is not finite; "
                                        "NaN and infinity are not valid inputs", where)
        if spec.min is not None and spec.max is not None:
            outside = (values < spec.min) | (values > spec.max)
            if outside.any():
                index = int(np.flatnonzero(outside)[0])
                raise InvalidInputError(f"value {values.flat[index]} at flat index {index} is outside "
                                        f"the declared range [{spec.min:g}, {spec.max:g}]", where)
    return values.reshape((1, *shape))


_lowest, _highest = np.minimum.reduce, np.maximum.reduce


def _plainly_valid(spec: InputSpec, values: np.ndarray) -> bool:
    """True when every value is finite and within the declared range (a NaN fails every comparison)."""
    if spec.min is not None and spec.max is not None:  # the ufuncs' own reductions: .min() adds a wrapper
        return bool(_lowest(values) >= spec.min) and bool(_highest(values) <= spec.max)
    if values.dtype.kind == "f":
        return bool(np.isfinite(values).all())
    return True


def _text_feeds(specs: Sequence[InputSpec], call: PredictCall) -> dict[str, np.ndarray]:
    (spec,) = specs
    if call.tensors:
        raise InvalidInputError("this model takes text, not tensors; send it in 'text'", "inputs")
    if not call.text.strip():
        raise InvalidInputError("missing or blank; this model reads text", "text")
    if len(call.text) > spec.max_chars:
        raise InvalidInputError(f"{len(call.text)} characters is over the limit of {spec.max_chars}", "text")
    return {spec.name: np.array([call.text], dtype=object)}


def _describe(spec: InputSpec) -> str:
    shape = "[" + ", ".join("any" if d == -1 else str(d) for d in spec.shape) + "]"
    described = f"{spec.dtype} tensor of shape {shape}"
    if spec.min is not None:
        described += f" with values in [{spec.min:g}, {spec.max:g}]"
    return described
