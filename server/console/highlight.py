"""Where each extracted value is in the document: the text cut into pieces, the found values marked.

A value is looked for as the model gave it and as documents write it: an amount ``1234.50`` also as
``1,234.50``, ``1.234,50`` and ``1 234,50``; a date ``2024-03-01`` also as ``01/03/2024``, ``03/01/2024``,
``01.03.2024``, ``1 March 2024``, ``March 1, 2024`` and their short forms. Every occurrence is marked; where
two overlap the longer wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

_AMOUNT = re.compile(r"^-?\d+\.\d{2}$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    field: str = ""  # the field this piece is the value of; "" for the text around the values


def highlight(text: str, values: Mapping[str, str | None]) -> tuple[list[Piece], set[str]]:
    """``text`` in pieces with each field's value marked; and the fields whose value was found."""
    spans: list[tuple[int, int, str]] = []
    for field, value in values.items():
        if not value:
            continue
        for form in sorted(set(_forms(value)), key=len, reverse=True):
            for match in re.finditer(re.escape(form), text):
                spans.append((match.start(), match.end(), field))
    chosen: list[tuple[int, int, str]] = []
    for start, end, field in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if chosen and start < chosen[-1][1]:
            continue  # overlaps a longer (or earlier) mark
        chosen.append((start, end, field))
    pieces, at = [], 0
    for start, end, field in chosen:
        if start > at:
            pieces.append(Piece(text[at:start]))
        pieces.append(Piece(text[start:end], field))
        at = end
    if at < len(text):
        pieces.append(Piece(text[at:]))
    return pieces, {field for _, _, field in chosen}


def _forms(value: str) -> list[str]:
    forms = [value]
    if _AMOUNT.match(value):
        whole, cents = value.lstrip("-").split(".")
        sign = "-" if value.startswith("-") else ""
        groups = f"{int(whole):,}"
        forms += [f"{sign}{groups}.{cents}", f"{sign}{groups.replace(',', '.')},{cents}",
                  f"{sign}{groups.replace(',', ' ')},{cents}", f"{sign}{whole},{cents}"]
    match = _DATE.match(value)
    if match:
        try:
            day = date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return forms
        month = day.strftime("%B")
        forms += [day.strftime("%d/%m/%Y"), day.strftime("%m/%d/%Y"), day.strftime("%d.%m.%Y"),
                  f"{day.day} {month} {day.year}", f"{month} {day.day}, {day.year}",
                  f"{day.day} {month[:3]} {day.year}", f"{month[:3]} {day.day}, {day.year}",
                  day.strftime("%d-%m-%Y"), day.strftime("%Y/%m/%d")]
    return forms
