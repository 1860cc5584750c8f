"""Marking extracted values in an invoice's text, in the forms documents write them."""

from __future__ import annotations

from smallguard.server.console.highlight import Piece, highlight


def test_values_are_marked_where_the_text_has_them_in_any_usual_form() -> None:
    text = "Invoice INV-7 dated 1 March 2024\nSubtotal 1,234.50\nTax 246,90\nTotal: 1.481,40 EUR"
    values = {"invoice_number": "INV-7", "date": "2024-03-01", "subtotal": "1234.50", "tax": "246.90",
              "total": "1481.40", "currency": "EUR", "po": None}
    pieces, found = highlight(text, values)
    assert "".join(p.text for p in pieces) == text
    assert {p.field: p.text for p in pieces if p.field} == {
        "invoice_number": "INV-7", "date": "1 March 2024", "subtotal": "1,234.50", "tax": "246,90",
        "total": "1.481,40", "currency": "EUR"}
    assert found == set(values) - {"po"}


def test_a_value_the_text_does_not_have_is_not_marked_and_overlaps_keep_the_longer() -> None:
    pieces, found = highlight("Total 120.00, of which 20.00 tax", {"total": "120.00", "tax": "20.00", "x": "999"})
    assert pieces == [Piece("Total "), Piece("120.00", "total"), Piece(", of which "), Piece("20.00", "tax"),
                      Piece(" tax")]
    assert found == {"total", "tax"}
