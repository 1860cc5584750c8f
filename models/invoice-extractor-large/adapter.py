"""The large tier's adapter: invoice-extractor's (same candidates, features and decoding), with one rule more.

It does not guess a date that can be read two ways: a numeric date whose day and month are both
at most 12 (``03/12/2024``) while no other date of the document shows which comes first is
reported as not found, so the bundle's ``required`` verifier escalates the invoice. The text
cannot tell the two readings apart, so neither can a model: in the layouts the models were trained
on such dates are mostly day first, in others month first, and on layouts neither model saw these
dates were most of the large tier's confident mistakes (the calibration, fitted where day first
mostly holds, rated them 0.86 to 0.99). The small model keeps the plain adapter, so its
calibration stays as it was certified.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np


def _load_base() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "invoice-extractor" / "adapter.py"
    spec = importlib.util.spec_from_file_location("invoice_extractor_large_base_adapter", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


base = _load_base()
FIELDS = base.FIELDS
INPUT_NAME, OUTPUT_NAME = base.INPUT_NAME, base.OUTPUT_NAME
encode = base.encode


def decode(text: str, outputs: dict[str, np.ndarray]) -> dict[str, tuple[str | None, float]]:
    """``base.decode``, with an ambiguous date reported as not found."""
    result = base.decode(text, outputs)
    value, _ = result["date"]
    if value is not None and ambiguous_date(text, value):
        result["date"] = (None, 0.0)
    return result


def ambiguous_date(text: str, value: str) -> bool:
    """Is ``value`` (YYYY-MM-DD) read from a numeric date of ``text`` whose other reading is a real date too,
    with no other numeric date of the document settling the order?"""
    dates = [c.raw for c in base.candidates(text) if c.kind == "date"]
    if base.month_first(dates) or any(_day_first_evidence(raw) for raw in dates):
        return False
    for raw in dates:
        if base.normalize_date(raw) == value and (m := base._NUMERIC_DATE.fullmatch(raw.strip())):
            first, second = int(m[1]), int(m[2])
            if first != second and first <= 12 and second <= 12:
                return True
    return False


def _day_first_evidence(raw: str) -> bool:
    m = base._NUMERIC_DATE.fullmatch(raw.strip())
    return bool(m) and int(m[2]) <= 12 < int(m[1])
