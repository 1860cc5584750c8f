"""The stronger invoice tier (models/invoice-extractor-large): what it trains on, the layout held out from both
models, and its one rule beyond the small model's adapter: a date that reads two ways is not guessed."""

from __future__ import annotations

import numpy as np

from smallguard.server.bundle.bundle_file import read_bundle
from tests.models.invoice_modules import INVOICE, LARGE, load

large_train = load("train", "invoice-extractor-large")
large_adapter = load("adapter", "invoice-extractor-large")
generate = load("generate")


def test_the_held_out_layouts_are_in_neither_models_training() -> None:
    held_out = set(large_train.HELD_OUT) | set(large_train.HELD_OUT_NORMAL)
    assert set(large_train.HELD_OUT) <= set(generate.SHIFTED_TEMPLATES)
    assert set(large_train.HELD_OUT_NORMAL) <= set(generate.HELD_OUT_TEMPLATES)
    assert not held_out & set(large_train.SEEN_SHIFTED)
    assert not held_out & set(generate.NORMAL_TEMPLATES)  # the small model's layouts, and the large one's
    unseen = large_train.unseen()
    assert {layout(record) for record in unseen[:500]} == {"markdown"}
    assert {layout(record) for record in unseen[500:]} == {"dot_leaders"}


def layout(record: dict) -> str:
    """Which layout drew a record: Markdown tables, or dot leaders before every label's value."""
    text = record["text"]
    return "markdown" if "|---|" in text else "dot_leaders" if " ....." in text else "other"


def test_both_bundles_extract_the_same_fields_and_the_small_one_escalates_to_the_large_then_to_people() -> None:
    small, large = read_bundle(INVOICE), read_bundle(LARGE)
    assert small.fields == large.fields and small.inputs == large.inputs
    tier, people = small.escalation
    assert (tier.kind, tier.target.bundle) == ("bundle", large.name)
    assert people.kind == "review"
    assert not large.escalation


def _decoded(text: str) -> dict[str, tuple[str | None, float]]:
    """Decode with every candidate scoring 0.9 for every field (the rule is about the date, not the model)."""
    rows = len(large_adapter.base.candidates(text))
    return large_adapter.decode(text, {large_adapter.OUTPUT_NAME: np.full((rows, 6), 0.9, dtype=np.float32)})


def test_a_date_that_reads_two_ways_is_not_guessed() -> None:
    assert _decoded("Invoice date: 03/12/2024\nDue: 04/11/2024\nTotal 10.00\n")["date"] == (None, 0.0)
    # another date of the document settles the order: month first, or day first
    assert _decoded("Invoice date: 03/12/2024\nDue: 04/25/2024\nTotal 10.00\n")["date"][0] == "2024-03-12"
    assert _decoded("Invoice date: 03/12/2024\nDue: 25/04/2024\nTotal 10.00\n")["date"][0] == "2024-12-03"
    # not ambiguous: a day above 12, the same number twice, ISO and month names
    for text, value in (("Date: 13/02/2024\n", "2024-02-13"), ("Date: 05/05/2024\n", "2024-05-05"),
                        ("Date: 2024-03-12\n", "2024-03-12"), ("Date: March 12, 2024\n", "2024-03-12")):
        assert _decoded(text)["date"][0] == value, text


def test_the_small_models_adapter_still_guesses_day_first() -> None:
    """Its calibration was certified with that reading; the rule is the large tier's alone."""
    base = large_adapter.base
    text = "Invoice date: 03/12/2024\nDue: 04/11/2024\n"
    assert [c.value for c in base.candidates(text) if c.kind == "date"] == ["2024-12-03", "2024-11-04"]
