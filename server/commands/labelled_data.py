"""Labelled held-out data for `smallguard calibrate`: JSON Lines or CSV, checked like Predict.

Each example carries the bundle's inputs and the truth. Inputs go through the same checks as a
Predict request (``feeds_for``), so data that calibrates is data the server would accept.
Every problem names the file, the line and the field; up to ``MAX_PROBLEMS`` are reported at
once so an operator can fix a file in one pass.

JSON Lines: one object per line, ``{"pixels": [...], "label": "3"}``; a text model takes
``{"text": "...", ...}``; an extractor's truth is ``"fields": {"tax": "12.50", "date": null, ...}``.
CSV: a header row; a tensor input is one column holding a JSON array (``pixels``) or one column
per element (``pixels[0]``, ``pixels[1]``...); the truth is ``label``, or one ``fields.NAME``
column per field (an empty cell: the document has no such field).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smallguard.server.core.inputs import feeds_for
from smallguard.server.domain.bundle_spec import BundleSpec, InputSpec
from smallguard.server.domain.errors import GuardError, InvalidInputError
from smallguard.server.domain.predictions import PredictCall, TensorInput

MAX_PROBLEMS = 10
LABEL = "label"
FIELDS = "fields"
CONTEXT = "context"
_ELEMENT = re.compile(r"^(?P<name>.+)\[(?P<index>\d+)\]$")


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}, field {self.field!r}: {self.problem}"


class DataError(GuardError):
    """The data file cannot be used; names the file and each problem's line and field."""

    def __init__(self, problems: list[Problem], path: Path, more: int = 0) -> None:
        listed = "\n  ".join(str(p) for p in problems)
        suffix = f"\n  ... and {more} more" if more else ""
        super().__init__(f"{len(problems) + more} problem(s):\n  {listed}{suffix}", path)
        self.path = path
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Example:
    """One checked example: its line, the request it makes, the model's feeds, and the truth.

    A classifier's truth is ``label`` (an index into the bundle's labels); an extractor's is
    ``fields`` (every field's true value, None when the document has none) and ``label`` is -1.
    """

    line: int
    call: PredictCall
    feeds: Mapping[str, np.ndarray]
    label: int
    fields: Mapping[str, str | None] | None = None


def read_labelled(path: Path, spec: BundleSpec) -> list[Example]:
    """Read and check every example; raise DataError listing what is wrong, by line and field."""
    if not path.is_file():
        raise DataError([Problem(0, "file", "does not exist")], path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        raise DataError([Problem(0, "file", f"unknown format {suffix!r}; expected .jsonl or .csv")], path)
    records = _csv_records(path) if suffix == ".csv" else _json_records(path)
    label_index = {label: i for i, label in enumerate(spec.labels)}
    examples: list[Example] = []
    problems: list[Problem] = []
    for line, record in records:
        try:
            examples.append(_example(line, record, spec, label_index))
        except _RecordError as error:
            problems.append(Problem(line, error.field, error.problem))
    if problems:
        raise DataError(problems[:MAX_PROBLEMS], path, max(0, len(problems) - MAX_PROBLEMS))
    if not examples:
        raise DataError([Problem(0, "file", "holds no examples")], path)
    return examples


class _RecordError(GuardError):
    def __init__(self, problem: str, field: str) -> None:
        super().__init__(problem, field)
        self.field = field


def _json_records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | _RecordError]]:
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, _RecordError(f"not valid JSON: {exc.msg} at column {exc.colno}", "line")
                continue
            yield line, record if isinstance(record, dict) else _RecordError(
                f"expected a JSON object, got {type(record).__name__}", "line")


def _csv_records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | _RecordError]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            line = reader.line_num
            if None in row:
                yield line, _RecordError(f"{len(row[None]) + len(reader.fieldnames or [])} columns; "
                                         f"the header has {len(reader.fieldnames or [])}", "line")
                continue
            yield line, _from_columns(row)


def _from_columns(row: Mapping[str, str]) -> dict[str, Any]:
    """A CSV row as a JSON-like record: ``x[0]``, ``x[1]``... become a list, JSON arrays are parsed."""
    record: dict[str, Any] = {}
    elements: dict[str, dict[int, str]] = {}
    for column, value in row.items():
        match = _ELEMENT.match(column)
        if match:
            elements.setdefault(match["name"], {})[int(match["index"])] = value
        elif value.lstrip().startswith("["):
            try:
                record[column] = json.loads(value)
            except json.JSONDecodeError:
                record[column] = value
        else:
            record[column] = value
    for name, by_index in elements.items():
        record[name] = [by_index.get(i, "") for i in range(max(by_index) + 1)]
    truth = {column.removeprefix(FIELDS + "."): record.pop(column) for column in list(record)
             if column.startswith(FIELDS + ".")}
    if truth:
        record[FIELDS] = truth  # an empty cell is a field the document does not have
    return record


def _example(line: int, record: Mapping[str, Any] | _RecordError, spec: BundleSpec,
             label_index: Mapping[str, int]) -> Example:
    if isinstance(record, _RecordError):
        raise record
    fields = _fields(record, spec) if spec.is_extractor else None
    label = -1 if spec.is_extractor else _label(record, spec, label_index)
    call = _call(record, spec)
    try:
        feeds = feeds_for(spec.inputs, call)
    except InvalidInputError as exc:
        raise _RecordError(exc.problem, exc.field.removeprefix("inputs[").removesuffix("]")) from None
    return Example(line, call, feeds, label, fields)


def _fields(record: Mapping[str, Any], spec: BundleSpec) -> dict[str, str | None]:
    """An extractor's truth: ``{"fields": {name: "value" or null}}`` naming every field of the bundle."""
    truth = record.get(FIELDS)
    if not isinstance(truth, Mapping):
        raise _RecordError(f"missing, or not an object; expected the true value of each of "
                           f"{', '.join(spec.fields)} (null when the document has none)", FIELDS)
    unknown = sorted(set(truth) - set(spec.fields))
    if unknown:
        raise _RecordError(f"not a field of the bundle ({', '.join(spec.fields)})", f"{FIELDS}.{unknown[0]}")
    for name in spec.fields:
        if name not in truth:
            raise _RecordError("missing; give the true value, or null when there is none", f"{FIELDS}.{name}")
        if truth[name] is not None and not isinstance(truth[name], str):
            raise _RecordError(f"{truth[name]!r} is not a string or null", f"{FIELDS}.{name}")
    return {name: (truth[name] if truth[name] != "" else None) for name in spec.fields}


def _label(record: Mapping[str, Any], spec: BundleSpec, label_index: Mapping[str, int]) -> int:
    if LABEL not in record:
        raise _RecordError("missing; every example needs its true label", LABEL)
    value = record[LABEL]
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if text is None or text not in label_index:
        shown = ", ".join(spec.labels[:12]) + (", ..." if len(spec.labels) > 12 else "")
        raise _RecordError(f"{value!r} is not one of the bundle's labels ({shown})", LABEL)
    return label_index[text]


def _call(record: Mapping[str, Any], spec: BundleSpec) -> PredictCall:
    texts = [item for item in spec.inputs if item.kind == "text"]
    if texts:
        value = record.get(texts[0].name)
        if not isinstance(value, str):
            raise _RecordError("missing, or not a string; expected the text to read", texts[0].name)
        return PredictCall(model=spec.name, text=value, context=_context(record))
    return PredictCall(model=spec.name, tensors=tuple(_tensor(record, item) for item in spec.inputs),
                       context=_context(record))


def _context(record: Mapping[str, Any]) -> dict[str, str]:
    """The request context verifiers read (``evaluate`` replays it); optional, string to string."""
    context = record.get(CONTEXT, {})
    if not isinstance(context, Mapping) or not all(isinstance(v, str) for v in context.values()):
        raise _RecordError("expected an object of string values, as a Predict request's context map", CONTEXT)
    return {str(key): value for key, value in context.items()}


def _tensor(record: Mapping[str, Any], item: InputSpec) -> TensorInput:
    if item.name not in record:
        raise _RecordError(f"missing; expected a {item.dtype} array of shape {list(item.shape)}", item.name)
    try:
        values = np.asarray(record[item.name], dtype=np.dtype(item.dtype))
    except (TypeError, ValueError):
        raise _RecordError(f"expected an array of {item.dtype} numbers", item.name) from None
    if values.ndim == 1 and len(item.shape) > 1 and -1 not in item.shape and values.size == np.prod(item.shape):
        values = values.reshape(item.shape)  # flat CSV columns of a multi-dimensional input
    return TensorInput(name=item.name, dtype=item.dtype, shape=tuple(values.shape), values=values)
