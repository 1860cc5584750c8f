"""Synthetic invoice text, as OCR would give it, with the ground-truth fields.

    python models/invoice-extractor/generate.py --seed 1 --count 2000 --split train --out data/train.jsonl
    python models/invoice-extractor/generate.py --seed 1 --count 400 --split shifted --shifted --out data/shifted.jsonl

Each output line is ``{"text": "...", "fields": {...}}`` with the fields

- ``invoice_number``: the document's own number exactly as printed (without a leading ``#``);
- ``date``: the issue date (not the due, order or delivery date), ``YYYY-MM-DD``;
- ``currency``: ISO 4217 code;
- ``subtotal``: the taxable net amount: line items, plus shipping, minus discount, before tax;
- ``tax``: the tax on the subtotal (all tax lines together), rounded half-up to the cent;
- ``total``: ``subtotal + tax`` exactly.

Amounts are decimal strings with two places (``"1234.50"``). Amounts that are not fields
(per-line amounts, unit prices, an items-only sum printed before shipping, amount paid,
previous balance, balance due, change) are printed too: they are what an extractor confuses.

Why synthetic: the point of this bundle is to show verifiers and calibrated thresholds catching
a small model's confident mistakes, which needs ground truth for every field and a switchable
distribution shift. ``--shifted`` uses templates, label words, number and date formats that the
normal mode never produces (right-aligned columns with dot leaders, German/French/Spanish
labels, "Grand total"/"Amount due"/"Sum", ``1 234,56`` and ``1'234.56``, US ``MM/DD/YYYY``).

``--templates markdown`` draws a layout no mode draws by default (Markdown tables, in the normal
mode's words and formats): data that no model trains on (invoice-extractor-large/train.py).

Reproducible: record ``i`` of (seed, split, mode) comes from its own ``random.Random`` seeded
with a string of those four, so it does not depend on ``--count`` or on Python's hash seed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from pathlib import Path

FIELDS: tuple[str, ...] = ("invoice_number", "date", "currency", "subtotal", "tax", "total")
MAX_CHARS = 4000
CENT = Decimal("0.01")

NORMAL_TEMPLATES: tuple[str, ...] = ("classic", "key_value", "receipt", "header_grid", "statement")
SHIFTED_TEMPLATES: tuple[str, ...] = ("dot_leaders", "multilingual", "summary_first", "stacked")
# Layouts no mode draws by default: asked for by name (--templates), for data no model trained on.
HELD_OUT_TEMPLATES: tuple[str, ...] = ("markdown",)

# Label strings only --shifted writes; tests check the normal mode never does.
SHIFTED_ONLY_LABELS: tuple[str, ...] = (
    "Grand total", "Amount due", "Sum", "Rechnungsbetrag", "Nettobetrag", "Total TTC", "Total HT",
    "Base imponible", "Total factura", "Bill No.", "Goods value", "To pay",
)


@dataclass(frozen=True)
class Country:
    """Where a vendor sits: its currency, how it writes money, its tax names and rates."""

    code: str
    currency: str
    symbols: tuple[str, ...]  # printed symbols; empty when only the code is used
    symbol_after: bool  # "12,00 kr" rather than "$12.00"
    ambiguous_symbol: bool  # "$" or "kr" alone does not say which currency
    tax_names: tuple[str, ...]
    rates: tuple[str, ...]
    number_formats: tuple[str, ...]
    cities: tuple[str, ...]
    tax_id_prefix: str


COUNTRIES: tuple[Country, ...] = (
    Country("US", "USD", ("$",), False, False, ("Sales tax", "Tax", "Sales Tax"),
            ("0", "4", "6.25", "7", "8.25", "8.875"),
            ("us", "plain"), ("Springfield, IL 62704", "Austin, TX 78701", "Portland, OR 97205", "Denver, CO 80202"),
            "EIN "),
    Country("GB", "GBP", ("£",), False, False, ("VAT",), ("20", "20", "5", "0"), ("us", "plain"),
            ("London EC1A 1BB", "Leeds LS1 4AP", "Bristol BS1 5TR", "Manchester M1 1AE"), "GB"),
    Country("DE", "EUR", ("€",), True, False, ("MwSt", "MwSt.", "VAT", "USt"), ("19", "19", "7"),
            ("eu", "plain_comma", "us"), ("10115 Berlin", "80331 München", "20095 Hamburg", "50667 Köln"), "DE"),
    Country("FR", "EUR", ("€",), True, False, ("TVA", "VAT"), ("20", "10", "5.5"), ("eu", "plain_comma"),
            ("75002 Paris", "69001 Lyon", "13001 Marseille", "31000 Toulouse"), "FR"),
    Country("ES", "EUR", ("€",), True, False, ("IVA", "VAT"), ("21", "10", "4"), ("eu", "plain_comma"),
            ("28013 Madrid", "08002 Barcelona", "46002 Valencia", "41001 Sevilla"), "ES"),
    Country("IT", "EUR", ("€",), True, False, ("IVA", "VAT"), ("22", "10"), ("eu", "plain_comma"),
            ("00184 Roma", "20121 Milano", "10121 Torino", "50122 Firenze"), "IT"),
    Country("NL", "EUR", ("€",), False, False, ("BTW", "VAT"), ("21", "9"), ("eu", "us"),
            ("1012 AB Amsterdam", "3011 AD Rotterdam", "3511 AA Utrecht", "2511 BT Den Haag"), "NL"),
    Country("CH", "CHF", ("CHF", "Fr."), False, False, ("MwSt", "TVA", "VAT"), ("8.1", "2.6"), ("us", "plain"),
            ("8001 Zürich", "3011 Bern", "1201 Genève", "4051 Basel"), "CHE-"),
    Country("CA", "CAD", ("$", "C$", "CA$"), False, True, ("GST", "HST", "GST/HST"), ("5", "13", "15"),
            ("us", "plain"), ("Toronto, ON M5H 2N2", "Vancouver, BC V6B 1A1", "Ottawa, ON K1P 5J2"), "BN "),
    Country("AU", "AUD", ("$", "A$", "AU$"), False, True, ("GST",), ("10",), ("us", "plain"),
            ("Sydney NSW 2000", "Melbourne VIC 3000", "Brisbane QLD 4000"), "ABN "),
    Country("NZ", "NZD", ("$", "NZ$"), False, True, ("GST",), ("15",), ("us", "plain"),
            ("Auckland 1010", "Wellington 6011", "Christchurch 8011"), "GST No. "),
    Country("SG", "SGD", ("S$", "$"), False, True, ("GST",), ("9",), ("us", "plain"),
            ("Singapore 018989", "Singapore 238859"), "UEN "),
    Country("IN", "INR", ("₹", "Rs."), False, False, ("GST", "IGST"), ("18", "12", "5"), ("us", "plain"),
            ("Mumbai 400001", "Bengaluru 560001", "New Delhi 110001"), "GSTIN "),
    Country("SE", "SEK", ("kr",), True, True, ("Moms", "VAT"), ("25", "12"), ("eu", "plain_comma"),
            ("111 20 Stockholm", "411 04 Göteborg", "211 20 Malmö"), "SE"),
    Country("NO", "NOK", ("kr",), True, True, ("MVA", "VAT"), ("25", "15"), ("eu", "plain_comma"),
            ("0150 Oslo", "5003 Bergen", "7011 Trondheim"), "NO"),
    Country("DK", "DKK", ("kr.", "kr"), True, True, ("Moms", "VAT"), ("25",), ("eu", "plain_comma"),
            ("1050 København", "8000 Aarhus", "5000 Odense"), "DK"),
    Country("PL", "PLN", ("zł",), True, False, ("VAT",), ("23", "8"), ("eu", "plain_comma"),
            ("00-001 Warszawa", "30-001 Kraków", "80-001 Gdańsk"), "PL"),
)
LANGUAGE_COUNTRIES = {"de": ("DE", "CH"), "fr": ("FR", "CH"), "es": ("ES",)}

COMPANY_WORDS = ("Acme", "Northwind", "Globex", "Initech", "Umbrella", "Vandelay", "Contoso", "Fabrikam",
                 "Tailspin", "Litware", "Proseware", "Adatum", "Lucerne", "Wingtip", "Fourth Coffee", "Alpine",
                 "Bluebird", "Cedar", "Harbor", "Summit", "Redwood", "Silverline", "Oakridge", "Brightway",
                 "Meridian", "Polaris", "Granite", "Evergreen", "Sterling", "Nimbus")
COMPANY_KINDS = ("Trading", "Supplies", "Consulting", "Logistics", "Software", "Office", "Engineering",
                 "Foods", "Print", "Digital", "Electric", "Design")
COMPANY_SUFFIX = {"US": ("Inc.", "LLC", "Corp."), "GB": ("Ltd", "PLC", "Ltd."), "DE": ("GmbH", "AG", "KG"),
                  "FR": ("SARL", "SAS", "S.A."), "ES": ("S.L.", "S.A."), "IT": ("S.r.l.", "S.p.A."),
                  "NL": ("B.V.", "N.V."), "CH": ("AG", "GmbH", "SA"), "CA": ("Inc.", "Ltd."),
                  "AU": ("Pty Ltd",), "NZ": ("Ltd",), "SG": ("Pte Ltd",), "IN": ("Pvt Ltd", "LLP"),
                  "SE": ("AB",), "NO": ("AS",), "DK": ("ApS", "A/S"), "PL": ("Sp. z o.o.",)}
PEOPLE = ("Jane Miller", "Tom Becker", "Ana Garcia", "Luca Rossi", "Emma Dubois", "Sven Larsen", "Priya Nair",
          "Olivia Chen", "Marek Nowak", "Sophie Martin", "Noah Wilson", "Lena Schmidt")
STREETS = ("Main Street", "High Street", "Market Square", "Station Road", "Church Lane", "Park Avenue",
           "Hauptstrasse", "Rue de la Paix", "Calle Mayor", "Via Roma", "Kungsgatan", "Harbour Road")
PRODUCTS = ("Consulting services", "Widget A", "Widget B", "USB-C cable", "Office chair", "Annual license",
            "Website hosting", "Printer paper A4", "Toner cartridge", "Maintenance contract", "Desk lamp",
            "Training workshop", "Software support", "Network switch", "Monitor 27in", "Cleaning service",
            "Coffee beans", "Delivery pallet", "Safety gloves", "Design work", "Translation", "Cloud storage",
            "Ink refill", "Keyboard", "Travel expenses", "Project management", "Server rack", "LED panel")
EXTRA_ID_LABELS = (("PO Number", "PO-"), ("Order No.", "SO-"), ("Customer No.", "C-"), ("Account", "ACC-"),
                   ("Reference", "REF-"), ("Delivery note", "DN-"))

NORMAL_DATE_FORMATS = ("iso", "dmy_slash", "dmy_dot", "mdy_long", "mdy_abbr", "dmy_abbr", "dmy_long", "dmy_dash_abbr")
US_DATE_FORMATS = ("iso", "mdy_long", "mdy_abbr", "dmy_abbr")
SHIFTED_DATE_FORMATS = ("mdy_slash", "ymd_slash", "ordinal", "dmy_short", "dmy_dash")
SHIFTED_NUMBER_FORMATS = ("space", "space_dot", "swiss")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
MONTHS_DE = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
             "November", "Dezember")
MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre")
MONTHS_ES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
             "noviembre", "diciembre")

NORMAL_LABELS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("Invoice No:", "Invoice No.", "Invoice #", "Invoice Number:", "INVOICE NO", "Inv. No.",
                       "Invoice ID:"),
    "date": ("Date:", "Invoice Date:", "Date of issue:", "Issue date:", "Dated", "Invoice date"),
    "due": ("Due Date:", "Payment due:", "Due:", "Pay by"),
    "other_date": ("Order date:", "Delivery date:", "Ship date:", "Service date:"),
    "subtotal": ("Subtotal", "Sub-total", "Sub total", "Net amount", "Net total", "Total excl. tax", "SUBTOTAL"),
    "total": ("Total", "TOTAL", "Total amount", "Invoice total", "Total incl. tax", "Total due"),
    "shipping": ("Shipping", "Delivery", "Freight", "Shipping & handling", "Postage"),
    "discount": ("Discount", "Less discount", "Promo discount", "Rebate"),
    "items_sum": ("Items", "Goods", "Merchandise", "Services"),
    "currency": ("Currency:", "All amounts in", "Amounts in", "Currency"),
}
SHIFTED_LABELS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("Bill No.", "Document no.", "Ref.", "Invoice ref", "Voucher"),
    "date": ("Issued", "Bill date", "Issued on", "Document date"),
    "due": ("Payable by", "Settle by", "Deadline"),
    "other_date": ("Dispatched", "Performed on"),
    "subtotal": ("Goods value", "Amount before tax", "Net", "Taxable amount", "Sum of items"),
    "total": ("Grand total", "Amount due", "Sum", "To pay", "Total payable", "Balance payable"),
    "tax": ("Tax amount", "Consumption tax", "Levy", "Duty"),
    "currency": ("Valuta", "Settlement currency", "Money"),
}
LANGUAGE_LABELS: dict[str, dict[str, tuple[str, ...]]] = {
    "de": {"title": ("Rechnung",), "invoice_number": ("Rechnungsnummer:", "Rechnung Nr.", "Beleg-Nr."),
           "date": ("Rechnungsdatum:", "Datum:", "Belegdatum:"), "due": ("Zahlbar bis:", "Fällig am:"),
           "other_date": ("Lieferdatum:", "Leistungsdatum:"),
           "header": ("Pos.", "Bezeichnung", "Menge", "Einzelpreis", "Gesamtpreis"),
           "subtotal": ("Nettobetrag", "Zwischensumme", "Summe netto"), "tax": ("MwSt.", "USt.", "Mehrwertsteuer"),
           "total": ("Rechnungsbetrag", "Gesamtbetrag", "Endbetrag", "Summe brutto"),
           "shipping": ("Versandkosten", "Fracht"), "customer": ("Kunde:", "Rechnungsempfänger:"),
           "thanks": ("Vielen Dank für Ihren Auftrag.",), "currency": ("Währung:",)},
    "fr": {"title": ("Facture",), "invoice_number": ("Facture n°", "N° de facture :", "Numéro :"),
           "date": ("Date de facture :", "Date :", "Émise le"), "due": ("Échéance :", "À payer avant le"),
           "other_date": ("Date de livraison :",),
           "header": ("Réf.", "Désignation", "Qté", "PU", "Montant"),
           "subtotal": ("Total HT", "Montant HT", "Sous-total HT"), "tax": ("TVA", "T.V.A."),
           "total": ("Total TTC", "Net à payer", "Montant TTC"),
           "shipping": ("Frais de port", "Livraison"), "customer": ("Client :", "Facturé à :"),
           "thanks": ("Merci de votre confiance.",), "currency": ("Devise :",)},
    "es": {"title": ("Factura",), "invoice_number": ("Factura nº", "Nº de factura:", "Número:"),
           "date": ("Fecha de factura:", "Fecha:", "Fecha de emisión:"), "due": ("Vencimiento:", "Pagar antes de"),
           "other_date": ("Fecha de entrega:",),
           "header": ("Ref.", "Concepto", "Cant.", "Precio", "Importe"),
           "subtotal": ("Base imponible", "Subtotal sin IVA"), "tax": ("IVA", "I.V.A."),
           "total": ("Total factura", "Importe total", "Total a pagar"),
           "shipping": ("Gastos de envío", "Portes"), "customer": ("Cliente:", "Facturar a:"),
           "thanks": ("Gracias por su confianza.",), "currency": ("Moneda:",)},
}


@dataclass
class LineItem:
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass
class Invoice:
    """The facts of one invoice; templates decide how they are printed."""

    country: Country
    vendor: str
    vendor_address: list[str]
    vendor_tax_id: str
    vendor_phone: str
    customer: str
    customer_address: list[str]
    invoice_number: str
    issued: date
    due: date
    other_date: date
    extra_ids: list[tuple[str, str]]
    items: list[LineItem]
    shipping: Decimal
    discount: Decimal
    tax_name: str
    tax_rate: str
    iban: str
    paid: Decimal
    previous_balance: Decimal
    subtotal: Decimal = field(init=False)
    tax: Decimal = field(init=False)
    total: Decimal = field(init=False)

    def __post_init__(self) -> None:
        self.subtotal = sum((i.amount for i in self.items), Decimal(0)) + self.shipping - self.discount
        rate = Decimal(self.tax_rate) / 100
        self.tax = (self.subtotal * rate).quantize(CENT, rounding=ROUND_HALF_UP)
        self.total = self.subtotal + self.tax

    @property
    def items_sum(self) -> Decimal:
        return sum((i.amount for i in self.items), Decimal(0))

    def fields(self) -> dict[str, str]:
        return {
            "invoice_number": self.invoice_number,
            "date": self.issued.isoformat(),
            "currency": self.country.currency,
            "subtotal": f"{self.subtotal:.2f}",
            "tax": f"{self.tax:.2f}",
            "total": f"{self.total:.2f}",
        }


@dataclass(frozen=True)
class Sample:
    """One generated document: the text, its fields, and which template drew it (for tests)."""

    text: str
    fields: dict[str, str]
    template: str

    def record(self) -> dict[str, object]:
        return {"text": self.text, "fields": dict(self.fields)}


def format_number(value: Decimal, style: str) -> str:
    """``value`` in one of the number styles (``us`` 1,234.56, ``eu`` 1.234,56, ``swiss`` 1'234.56...)."""
    thousands = {"us": ",", "eu": ".", "plain": "", "plain_comma": "", "space": " ", "space_dot": " ", "swiss": "'"}
    decimal_mark = {"us": ".", "eu": ",", "plain": ".", "plain_comma": ",", "space": ",", "space_dot": ".",
                    "swiss": "."}
    sign = "-" if value < 0 else ""
    whole, frac = f"{abs(value).quantize(CENT):.2f}".split(".")
    grouped = f"{int(whole):,}".replace(",", thousands[style])
    return f"{sign}{grouped}{decimal_mark[style]}{frac}"


def format_date(day: date, style: str) -> str:
    """``day`` in one of the date styles; the normal mode's slashes are always day first."""
    month, abbr = MONTHS[day.month - 1], MONTHS[day.month - 1][:3]
    suffix = "th" if 11 <= day.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10, "th")
    styles: dict[str, Callable[[], str]] = {
        "iso": lambda: day.isoformat(),
        "dmy_slash": lambda: f"{day.day:02d}/{day.month:02d}/{day.year}",
        "dmy_dot": lambda: f"{day.day:02d}.{day.month:02d}.{day.year}",
        "mdy_long": lambda: f"{month} {day.day}, {day.year}",
        "mdy_abbr": lambda: f"{abbr} {day.day}, {day.year}",
        "dmy_abbr": lambda: f"{day.day} {abbr} {day.year}",
        "dmy_long": lambda: f"{day.day} {month} {day.year}",
        "dmy_dash_abbr": lambda: f"{day.day:02d}-{abbr}-{day.year}",
        "mdy_slash": lambda: f"{day.month:02d}/{day.day:02d}/{day.year}",
        "ymd_slash": lambda: f"{day.year}/{day.month:02d}/{day.day:02d}",
        "ordinal": lambda: f"{month} {day.day}{suffix}, {day.year}",
        "dmy_short": lambda: f"{day.day:02d}/{day.month:02d}/{day.year % 100:02d}",
        "dmy_dash": lambda: f"{day.day:02d}-{day.month:02d}-{day.year}",
        "de": lambda: f"{day.day}. {MONTHS_DE[day.month - 1]} {day.year}",
        "fr": lambda: f"{day.day} {MONTHS_FR[day.month - 1]} {day.year}",
        "es": lambda: f"{day.day} de {MONTHS_ES[day.month - 1]} de {day.year}",
    }
    return styles[style]()


def make_invoice(rng: random.Random, country: Country) -> Invoice:
    """Random facts for one invoice from ``country``."""
    vendor = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)} {rng.choice(COMPANY_SUFFIX[country.code])}"
    customer = rng.choice((f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIX[country.code])}",
                           rng.choice(PEOPLE)))
    issued = date(2022, 1, 1) + timedelta(days=rng.randrange(3 * 365))
    items = []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 8))):
        quantity = Decimal(rng.choice((1, 1, 1, 2, 3, 4, 5, 10, 12, 20)))
        if rng.random() < 0.1:
            quantity = Decimal(rng.choice(("1.5", "2.5", "7.5", "0.5")))
        unit = Decimal(rng.choice((rng.randint(1, 60), rng.randint(20, 400), rng.randint(100, 2500)))) + Decimal(
            rng.choice((0, 0, 50, 99, 95, rng.randint(1, 99)))) / 100
        items.append(LineItem(rng.choice(PRODUCTS), quantity, unit, (quantity * unit).quantize(CENT)))
    items_sum = sum((i.amount for i in items), Decimal(0))
    shipping = Decimal(rng.choice((0, 0, 0, 5, 9, 12, 25, 49))) + Decimal(rng.choice((0, 50, 95, 99))) / 100
    discount = Decimal(0)
    if rng.random() < 0.2:
        discount = (items_sum * Decimal(rng.choice((5, 10, 15))) / 100).quantize(CENT)
    extra_ids = [(label, f"{prefix}{rng.randint(100, 99999):0{rng.choice((4, 5, 6))}d}")
                 for label, prefix in rng.sample(EXTRA_ID_LABELS, rng.randint(0, 3))]
    paid = Decimal(0)
    previous = Decimal(0)
    if rng.random() < 0.3:
        previous = Decimal(rng.randint(0, 900)) + Decimal(rng.randint(0, 99)) / 100
        paid = rng.choice((previous, Decimal(rng.randint(0, 900)) + Decimal(rng.randint(0, 99)) / 100))
    index = rng.randint(1, 99999)
    year = issued.year
    number = rng.choice((
        f"INV-{year}-{index:05d}", f"INV{index:06d}", f"{rng.randint(1000, 999999)}", f"{chr(65 + index % 26)}-{index}",
        f"{year}/{index % 10000:04d}", f"F{year}-{index % 1000:03d}", f"SI-{index:06d}",
        f"INV/{year % 100}/{index:04d}",
        f"{year}{index:05d}", f"RE-{index:05d}",
    ))
    tax_id = f"{country.tax_id_prefix}{rng.randint(10**8, 10**9 - 1)}"
    phone = f"+{rng.randint(1, 99)} {rng.randint(10, 999)} {rng.randint(100, 9999)} {rng.randint(1000, 9999)}"
    iban = f"{country.code}{rng.randint(10, 99)} " + " ".join(f"{rng.randint(0, 9999):04d}" for _ in range(4))
    return Invoice(
        country=country, vendor=vendor,
        vendor_address=[f"{rng.randint(1, 250)} {rng.choice(STREETS)}", rng.choice(country.cities)],
        vendor_tax_id=tax_id, vendor_phone=phone, customer=customer,
        customer_address=[f"{rng.choice(STREETS)} {rng.randint(1, 250)}", rng.choice(country.cities)],
        invoice_number=number, issued=issued, due=issued + timedelta(days=rng.choice((7, 14, 30, 30, 45, 60))),
        other_date=issued - timedelta(days=rng.randint(1, 20)), extra_ids=extra_ids, items=items,
        shipping=shipping, discount=discount, tax_name=rng.choice(country.tax_names),
        tax_rate=rng.choice(country.rates), iban=iban, paid=paid, previous_balance=previous,
    )


class Renderer:
    """How one document prints money, dates and labels, including its OCR noise."""

    def __init__(self, rng: random.Random, invoice: Invoice, shifted: bool, language: str = "en") -> None:
        self.rng = rng
        self.inv = invoice
        self.shifted = shifted
        country = invoice.country
        if shifted and rng.random() < 0.7:
            self.number_format = rng.choice(SHIFTED_NUMBER_FORMATS)
        else:
            self.number_format = rng.choice(country.number_formats)
        if language != "en":
            self.date_format = language if rng.random() < 0.6 else rng.choice(("dmy_dot", "dmy_dash", "iso"))
        elif shifted:
            self.date_format = rng.choice((*SHIFTED_DATE_FORMATS, "iso"))
        else:
            self.date_format = rng.choice(US_DATE_FORMATS if country.code == "US" else NORMAL_DATE_FORMATS)
        modes = ["bare", "code_prefix", "code_suffix"] + ["symbol"] * 3 * bool(country.symbols)
        self.money_mode = rng.choice(modes)
        self.symbol = rng.choice(country.symbols) if country.symbols else country.currency
        # The code is printed somewhere whenever the amounts alone would not say which currency it is.
        self.mention_code = (self.money_mode == "bare" or (self.money_mode == "symbol" and country.ambiguous_symbol
                                                          and rng.random() < 0.95) or rng.random() < 0.25)
        self.noise = rng.choice((0, 0, 0, 1, 1, 2))
        self.colon = rng.choice((":", ":", "", " :")) if shifted else ":"
        self.shipping_in_table = False  # set by _item_table when shipping became a table row

    def money(self, value: Decimal, *, plain: bool = False) -> str:
        """An amount as this document prints summary amounts (``plain``: as in table cells)."""
        text = self.noisy_number(format_number(value, self.number_format))
        if plain or self.money_mode == "bare":
            return text
        code = self.inv.country.currency
        if self.money_mode == "code_prefix":
            return f"{code} {text}"
        if self.money_mode == "code_suffix":
            return f"{text} {code}"
        if self.inv.country.symbol_after:
            return f"{text} {self.symbol}"
        return f"{self.symbol}{text}" if len(self.symbol) == 1 else f"{self.symbol} {text}"

    def number(self, value: Decimal) -> str:
        return self.noisy_number(format_number(value, self.number_format))

    def quantity(self, value: Decimal) -> str:
        if value == value.to_integral_value():
            return str(int(value))
        return format_number(value, self.number_format).rstrip("0") if self.rng.random() < 0.5 else (
            format_number(value, self.number_format))

    def date(self, day: date) -> str:
        return format_date(day, self.date_format)

    def pick(self, labels: dict[str, tuple[str, ...]], key: str) -> str:
        return self.noisy_label(self.rng.choice(labels[key]))

    def label(self, key: str) -> str:
        """A label from the normal or the shifted vocabulary (the shifted one falls back to normal)."""
        vocabulary = SHIFTED_LABELS if self.shifted and key in SHIFTED_LABELS else NORMAL_LABELS
        return self.pick(vocabulary, key)

    def tax_label(self) -> str:
        inv = self.inv
        rate = inv.tax_rate
        if self.number_format in ("eu", "plain_comma", "space"):
            rate = rate.replace(".", ",")
        name = inv.tax_name
        if self.shifted and self.rng.random() < 0.5:
            name = self.rng.choice(SHIFTED_LABELS["tax"])
        pattern = self.rng.choice(("{n} {r}%", "{n} ({r}%)", "{n}", "{n} @ {r}%", "{n} {r} %", "Tax ({n} {r}%)"))
        return self.noisy_label(pattern.format(n=name, r=rate))

    def noisy_label(self, text: str) -> str:
        """OCR confusions in words: O/0, l/1, S/5, I/1, and a lost space."""
        if not self.noise:
            return text
        swaps = {"o": "0", "O": "0", "l": "1", "I": "1", "S": "5", "s": "5"}
        chars = [swaps[c] if c in swaps and self.rng.random() < 0.03 * self.noise else c for c in text]
        out = "".join(chars)
        if " " in out and self.rng.random() < 0.1 * self.noise:
            i = self.rng.choice([i for i, c in enumerate(out) if c == " "])
            out = out[:i] + out[i + 1:]
        return out

    def noisy_number(self, text: str) -> str:
        """OCR confusions in digits (never the first one): 0->O, 1->l, 5->S."""
        if not self.noise or self.rng.random() > 0.06 * self.noise:
            return text
        swaps = {"0": "O", "1": "l", "5": "S"}
        spots = [i for i, c in enumerate(text) if i > 0 and c in swaps]
        if not spots:
            return text
        i = self.rng.choice(spots)
        return text[:i] + swaps[text[i]] + text[i + 1:]

    def kv(self, label: str, value: str, width: int = 0) -> str:
        """``label: value``, sometimes with the space after the colon lost."""
        sep = self.colon if not label.endswith((":", "#", ".")) else ""
        gap = "" if self.noise and self.rng.random() < 0.1 * self.noise else " "
        return f"{label}{sep}{gap}".ljust(width) + value if width else f"{label}{sep}{gap}{value}"

    def currency_line(self) -> str:
        return self.kv(self.label("currency"), self.inv.country.currency)


def _summary_rows(r: Renderer, *, items_line: bool, extras: bool = True) -> list[tuple[str, Decimal]]:
    """The rows above the tax (items sum, shipping, discount unless printed elsewhere) and the field rows."""
    inv = r.inv
    rows: list[tuple[str, Decimal]] = []
    if extras and items_line and (inv.shipping or inv.discount):
        rows.append((r.label("items_sum"), inv.items_sum))
    if extras and inv.shipping and not r.shipping_in_table:
        rows.append((r.label("shipping"), inv.shipping))
    if extras and inv.discount:
        rows.append((r.label("discount"), -inv.discount))
    rows += [(r.label("subtotal"), inv.subtotal), (r.tax_label(), inv.tax), (r.label("total"), inv.total)]
    return rows


def _header(r: Renderer) -> list[str]:
    inv = r.inv
    lines = [inv.vendor.upper() if r.rng.random() < 0.5 else inv.vendor, *inv.vendor_address]
    extras = [f"VAT ID: {inv.vendor_tax_id}", f"Tel: {inv.vendor_phone}", f"Tax ID {inv.vendor_tax_id}",
              f"Phone {inv.vendor_phone}"]
    lines += r.rng.sample(extras, r.rng.randint(0, 2))
    return lines


def _ids(r: Renderer) -> list[str]:
    return [r.kv(label, value) for label, value in r.inv.extra_ids]


def _footer(r: Renderer) -> list[str]:
    options = [f"IBAN: {r.inv.iban}", "Payment terms: Net 30", "Thank you for your business!",
               f"Please quote {r.inv.invoice_number} with your payment." if r.rng.random() < 0.3 else "",
               "Goods remain our property until paid in full.", f"Questions? Call {r.inv.vendor_phone}"]
    return [line for line in r.rng.sample(options, r.rng.randint(1, 3)) if line]


def _item_table(r: Renderer, right: bool, pipes: bool = False, header: tuple[str, ...] | None = None) -> list[str]:
    """Line items as a table; normal mode left-aligns numbers, shifted mode right-aligns them."""
    inv = r.inv
    head = header or r.rng.choice((("Description", "Qty", "Unit Price", "Amount"), ("Item", "Qty", "Price", "Total"),
                                   ("Description", "Quantity", "Rate", "Line total"),
                                   ("Product", "Units", "Each", "Amount")))
    head = head[-4:]
    rows = [(i.description, r.quantity(i.quantity), r.number(i.unit_price), r.number(i.amount)) for i in inv.items]
    if inv.shipping and r.rng.random() < 0.5:
        rows.append((r.label("shipping"), "1", r.number(inv.shipping), r.number(inv.shipping)))
        r.shipping_in_table = True
    widths = [max(len(row[k]) for row in [head, *rows]) + 2 for k in range(4)]
    widths[0] += r.rng.randint(0, 8)
    if pipes:
        lines = [" | ".join(head)] + [" | ".join(row) for row in rows]
    else:
        def fmt(row: tuple[str, ...]) -> str:
            cells = [row[0].ljust(widths[0])]
            cells += [(c.rjust(w) if right else c.ljust(w)) for c, w in zip(row[1:], widths[1:], strict=True)]
            return "  ".join(cells).rstrip()
        rule = "-" * (sum(widths) + 6)
        lines = [fmt(head), rule, *(fmt(row) for row in rows), rule]
    return lines


def _summary_block(r: Renderer, indent: int, right: bool, items_line: bool = True) -> list[str]:
    rows = _summary_rows(r, items_line=items_line)
    width = max(len(label) for label, _ in rows) + 3
    values = [r.money(v) for _, v in rows]
    vw = max(len(v) for v in values)
    out = []
    for (label, _), value in zip(rows, values, strict=True):
        text = value.rjust(vw) if right else value
        out.append(" " * indent + r.kv(label, text, width))
    return out


def template_classic(r: Renderer) -> list[str]:
    inv = r.inv
    lines = [*_header(r), "", r.rng.choice(("INVOICE", "Invoice", "TAX INVOICE", "I N V O I C E")), ""]
    meta = [r.kv(r.label("invoice_number"), inv.invoice_number), r.kv(r.label("date"), r.date(inv.issued))]
    if r.rng.random() < 0.7:
        meta.append(r.kv(r.label("due"), r.date(inv.due)))
    if r.rng.random() < 0.3:
        meta.append(r.kv(r.label("other_date"), r.date(inv.other_date)))
    meta += _ids(r)
    if r.mention_code:
        meta.append(r.currency_line())
    bill_to = r.rng.choice(("Bill To:", "Bill to", "Customer:", "Sold to:"))
    lines += [*meta, "", bill_to, inv.customer, *inv.customer_address, ""]
    lines += _item_table(r, right=False)
    lines += _summary_block(r, indent=r.rng.choice((0, 20, 30)), right=False)
    if inv.paid:
        paid = min(inv.paid, inv.total)
        lines += [r.kv("Amount paid", r.money(paid)), r.kv("Balance due", r.money(inv.total - paid))]
    return [*lines, "", *_footer(r)]


def template_key_value(r: Renderer) -> list[str]:
    inv = r.inv
    lines = [r.kv("Vendor", inv.vendor), r.kv("Vendor address", ", ".join(inv.vendor_address)),
             r.kv(r.label("invoice_number"), inv.invoice_number), r.kv(r.label("date"), r.date(inv.issued)),
             r.kv(r.label("due"), r.date(inv.due)), r.kv("Customer", inv.customer), *_ids(r)]
    if r.rng.random() < 0.5:
        lines.append(r.kv(r.label("other_date"), r.date(inv.other_date)))
    lines.append("Items:")
    for item in inv.items:
        lines.append(f"- {item.description}, {r.quantity(item.quantity)} x {r.number(item.unit_price)}"
                     f" = {r.number(item.amount)}")
    for label, value in _summary_rows(r, items_line=r.rng.random() < 0.5):
        lines.append(r.kv(label, r.money(value)))
    if r.mention_code:
        lines.append(r.currency_line())
    if inv.paid:
        lines.append(r.kv("Amount paid", r.money(inv.paid)))
    return lines


def template_receipt(r: Renderer) -> list[str]:
    inv = r.inv
    width = 40
    lines = [line.center(width).rstrip() for line in _header(r)]
    stamp = f"{r.rng.randint(7, 21):02d}:{r.rng.randint(0, 59):02d}"
    lines += [f"{r.label('invoice_number')} {inv.invoice_number}   {r.date(inv.issued)} {stamp}", "-" * width]
    for item in inv.items:
        left = (f"{r.quantity(item.quantity)} x {item.description} @ {r.number(item.unit_price)}"
                if item.quantity != 1 else item.description)
        lines.append(left.ljust(width - 12) + r.number(item.amount).rjust(12))
    if inv.shipping:
        lines.append(r.label("shipping").ljust(width - 12) + r.number(inv.shipping).rjust(12))
    if inv.discount:
        lines.append(r.label("discount").ljust(width - 12) + r.number(-inv.discount).rjust(12))
    lines.append("-" * width)
    if r.rng.random() < 0.3:  # tax-inclusive receipt: total first, the tax "included", then the net
        lines += [r.label("total").upper().ljust(width - 14) + r.money(inv.total).rjust(14),
                  f"incl. {r.tax_label()}".ljust(width - 12) + r.money(inv.tax).rjust(12),
                  r.label("subtotal").ljust(width - 12) + r.money(inv.subtotal).rjust(12)]
    else:
        lines += [label.ljust(width - 14) + r.money(v).rjust(14)
                  for label, v in _summary_rows(r, items_line=False, extras=False)]
    if r.mention_code:
        lines.append(r.currency_line())
    if r.rng.random() < 0.5:
        tendered = (inv.total / 10).to_integral_value(rounding=ROUND_CEILING) * 10
        lines += ["CASH".ljust(width - 12) + r.number(tendered).rjust(12),
                  "CHANGE".ljust(width - 12) + r.number(tendered - inv.total).rjust(12)]
    else:
        lines.append(r.rng.choice(("CARD", "VISA", "DEBIT")).ljust(width - 12) + r.number(inv.total).rjust(12))
    return [*lines, "", r.rng.choice(("Thank you! Please come again", "Keep this receipt", "Thank you"))]


def template_header_grid(r: Renderer) -> list[str]:
    """Labels on one row, their values on the row below; a pipe table."""
    inv = r.inv
    lines = [f"{inv.vendor}    INVOICE", ", ".join(inv.vendor_address), ""]
    cells = [(r.label("invoice_number").rstrip(":"), inv.invoice_number), (r.label("date").rstrip(":"),
                                                                         r.date(inv.issued))]
    if r.rng.random() < 0.6:
        cells.append((r.label("due").rstrip(":"), r.date(inv.due)))
    cells += inv.extra_ids[:1]
    if r.mention_code:
        cells.append(("Currency", inv.country.currency))
    widths = [max(len(a), len(b)) + 4 for a, b in cells]
    lines += ["".join(a.ljust(w) for (a, _), w in zip(cells, widths, strict=True)).rstrip(),
              "".join(b.ljust(w) for (_, b), w in zip(cells, widths, strict=True)).rstrip(), ""]
    lines += [r.kv("Bill to", f"{inv.customer}, {', '.join(inv.customer_address)}"), ""]
    lines += _item_table(r, right=False, pipes=True)
    lines += [f"{label} | {r.money(v)}" for label, v in _summary_rows(r, items_line=False)]
    return [*lines, "", *_footer(r)]


def template_statement(r: Renderer) -> list[str]:
    """An invoice that also carries the account: previous balance, payments, new balance."""
    inv = r.inv
    lines = [f"{inv.vendor} - Invoice / Statement", *_ids(r),
             f"{r.kv(r.label('invoice_number'), inv.invoice_number)}      {r.kv(r.label('date'), r.date(inv.issued))}",
             f"Period: {r.date(inv.other_date)} - {r.date(inv.issued)}", "", "Charges:"]
    for item in inv.items:
        lines.append(f"  {item.description.ljust(28)}{r.number(item.amount)}")
    if inv.shipping:
        lines.append(f"  {r.label('shipping').ljust(28)}{r.number(inv.shipping)}")
    if inv.discount:
        lines.append(f"  {r.label('discount').ljust(28)}{r.number(-inv.discount)}")
    lines += [""] + [r.kv(label, r.money(v), 30) for label, v in _summary_rows(r, items_line=False, extras=False)]
    balance = inv.previous_balance - inv.paid + inv.total
    lines += ["", r.kv("Previous balance", r.money(inv.previous_balance), 30),
              r.kv(r.rng.choice(("Payment received", "Payments", "Amount paid")), r.money(-inv.paid), 30),
              r.kv(r.rng.choice(("New balance", "Balance due", "Total balance")), r.money(balance), 30),
              r.kv(r.label("due"), r.date(inv.due))]
    if r.mention_code:
        lines.append(r.currency_line())
    return lines


def template_dot_leaders(r: Renderer) -> list[str]:
    """Shifted: right-aligned values behind dot leaders, shifted label words."""
    inv = r.inv
    width = r.rng.choice((56, 64, 72))

    def lead(label: str, value: str) -> str:
        return f"{label} ".ljust(width - len(value) - 1, ".") + " " + value

    lines = [inv.vendor.rjust(width), ", ".join(inv.vendor_address).rjust(width), "", "INVOICE".center(width), ""]
    lines += [lead(r.label("invoice_number"), inv.invoice_number), lead(r.label("date"), r.date(inv.issued)),
              lead(r.label("due"), r.date(inv.due))]
    lines += [lead(label, value) for label, value in inv.extra_ids]
    lines += ["", r.kv("Customer", inv.customer), ""]
    lines += _item_table(r, right=True, header=("Article", "No.", "Each", "Line"))
    lines += [lead(label, r.money(v)) for label, v in _summary_rows(r, items_line=True)]
    if r.mention_code:
        lines.append(lead(r.label("currency"), inv.country.currency))
    return lines


def template_multilingual(r: Renderer, language: str) -> list[str]:
    """Shifted: German, French or Spanish labels throughout."""
    inv = r.inv
    words = LANGUAGE_LABELS[language]
    lines = [inv.vendor, *inv.vendor_address, "", r.pick(words, "title").upper(), ""]
    lines += [r.kv(r.pick(words, "invoice_number"), inv.invoice_number), r.kv(r.pick(words, "date"),
                                                                              r.date(inv.issued))]
    if r.rng.random() < 0.5:
        lines.append(r.kv(r.pick(words, "other_date"), r.date(inv.other_date)))
    lines += [r.kv(r.pick(words, "customer"), inv.customer), *inv.customer_address, ""]
    lines += _item_table(r, right=r.rng.random() < 0.5, header=words["header"])
    rows: list[tuple[str, Decimal]] = []
    if inv.shipping and not r.shipping_in_table:
        rows.append((r.pick(words, "shipping"), inv.shipping))
    if inv.discount:
        rows.append(({"de": "Rabatt", "fr": "Remise", "es": "Descuento"}[language], -inv.discount))
    rate = inv.tax_rate.replace(".", ",")
    rows += [(r.pick(words, "subtotal"), inv.subtotal), (f"{r.pick(words, 'tax')} {rate} %", inv.tax),
             (r.pick(words, "total"), inv.total)]
    width = max(len(label) for label, _ in rows) + 4
    lines += [label.ljust(width) + r.money(v).rjust(14) for label, v in rows]
    if r.mention_code:
        lines.append(r.kv(r.pick(words, "currency"), inv.country.currency))
    lines += ["", r.kv(r.pick(words, "due"), r.date(inv.due)), r.pick(words, "thanks")]
    return lines


def template_summary_first(r: Renderer) -> list[str]:
    """Shifted: the amount due and due date first, the details after."""
    inv = r.inv
    total_label = r.rng.choice(("AMOUNT DUE", "Amount due", "To pay", "Grand total"))
    lines = [inv.vendor.upper(), "", f"{total_label}  {r.money(inv.total)}    {r.label('due')} {r.date(inv.due)}",
             "", f"{r.label('invoice_number')} {inv.invoice_number}    {r.label('date')} {r.date(inv.issued)}",
             *_ids(r), ""]
    lines += _item_table(r, right=True)
    rows = _summary_rows(r, items_line=False)
    lines += [label.rjust(40) + "  " + r.money(v).rjust(16) for label, v in rows]
    if r.mention_code:
        lines.append(r.currency_line())
    return lines


def template_stacked(r: Renderer) -> list[str]:
    """Shifted: every label on its own line with the value on the line below."""
    inv = r.inv
    lines = [inv.vendor, ""]
    for label, value in ((r.label("invoice_number"), inv.invoice_number), (r.label("date"), r.date(inv.issued)),
                         (r.label("due"), r.date(inv.due)), *inv.extra_ids):
        lines += [label, f"  {value}"]
    lines += ["", "Lines"]
    for item in inv.items:
        lines += [f"{item.description} ({r.quantity(item.quantity)} x {r.number(item.unit_price)})",
                  f"  {r.number(item.amount)}"]
    for label, value in _summary_rows(r, items_line=r.rng.random() < 0.5):
        lines += [label, f"  {r.money(value)}"]
    if r.mention_code:
        lines += [r.label("currency"), f"  {inv.country.currency}"]
    return lines


def template_markdown(r: Renderer) -> list[str]:
    """Held out (drawn only by name): the invoice as Markdown tables, as mail and chat tools render it, with the
    normal mode's label words and formats."""
    inv = r.inv
    rows = [(r.label("invoice_number"), inv.invoice_number), (r.label("date"), r.date(inv.issued)),
            (r.label("due"), r.date(inv.due)), *inv.extra_ids, ("Customer", inv.customer)]
    if r.mention_code:
        rows.append((r.label("currency"), inv.country.currency))
    lines = [f"# {inv.vendor}", ", ".join(inv.vendor_address), "", "| Field | Value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    lines += ["", "| Description | Qty | Unit price | Amount |", "|---|---:|---:|---:|"]
    lines += [f"| {i.description} | {r.quantity(i.quantity)} | {r.number(i.unit_price)} | {r.number(i.amount)} |"
              for i in inv.items]
    lines += [f"| | | **{label}** | {r.money(v)} |" for label, v in _summary_rows(r, items_line=True)]
    return [*lines, "", *_footer(r)]


NORMAL_RENDERERS: dict[str, Callable[[Renderer], list[str]]] = {
    "classic": template_classic, "key_value": template_key_value, "receipt": template_receipt,
    "header_grid": template_header_grid, "statement": template_statement,
}
HELD_OUT_RENDERERS: dict[str, Callable[[Renderer], list[str]]] = {"markdown": template_markdown}
SHIFTED_RENDERERS: dict[str, Callable[[Renderer], list[str]]] = {
    "dot_leaders": template_dot_leaders, "summary_first": template_summary_first, "stacked": template_stacked,
}


def generate_one(rng: random.Random, shifted: bool = False, templates: tuple[str, ...] | None = None) -> Sample:
    """One document; a template that would exceed MAX_CHARS is redrawn with fewer line items.
    ``templates``: draw from these layouts of the mode only (default: all of them)."""
    template = rng.choice(templates or (SHIFTED_TEMPLATES if shifted else NORMAL_TEMPLATES))
    language = "en"
    if template == "multilingual":
        language = rng.choice(tuple(LANGUAGE_COUNTRIES))
        code = rng.choice(LANGUAGE_COUNTRIES[language])
        country = next(c for c in COUNTRIES if c.code == code)
    else:
        country = rng.choice(COUNTRIES)
    invoice = make_invoice(rng, country)
    while True:
        renderer = Renderer(rng, invoice, shifted, language)
        if template == "multilingual":
            lines = template_multilingual(renderer, language)
        else:
            lines = (SHIFTED_RENDERERS if shifted else {**NORMAL_RENDERERS, **HELD_OUT_RENDERERS})[template](renderer)
        text = "\n".join(lines) + "\n"
        if len(text) < MAX_CHARS or len(invoice.items) == 1:
            break
        invoice.items = invoice.items[: len(invoice.items) // 2]
        invoice.__post_init__()
    return Sample(text=text, fields=invoice.fields(), template=template)


def iter_samples(seed: int, count: int, split: str = "train", shifted: bool = False,
                 templates: tuple[str, ...] | None = None) -> Iterator[Sample]:
    """Samples ``0..count-1`` of (seed, split, mode); sample ``i`` does not depend on ``count``."""
    mode = "shifted" if shifted else "normal"
    for index in range(count):
        yield generate_one(random.Random(f"smallguard-invoice:{seed}:{split}:{mode}:{index}"), shifted, templates)


def generate(seed: int, count: int, split: str = "train", shifted: bool = False,
             templates: tuple[str, ...] | None = None) -> list[dict[str, object]]:
    """The records (``{"text", "fields"}``) that ``generate.py`` would write."""
    return [sample.record() for sample in iter_samples(seed, count, split, shifted, templates)]


def write_jsonl(path: Path, records: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--split", default="train", help="names an independent stream for the same seed")
    parser.add_argument("--shifted", action="store_true", help="templates and formats the normal mode never uses")
    parser.add_argument("--templates", help="comma-separated layouts to draw from (default: every layout of the mode)")
    parser.add_argument("--out", type=Path, help="JSON-lines file to write (default: standard output)")
    args = parser.parse_args(argv)
    templates = tuple(args.templates.split(",")) if args.templates else None
    known = SHIFTED_TEMPLATES if args.shifted else NORMAL_TEMPLATES + HELD_OUT_TEMPLATES
    if templates and set(templates) - set(known):
        parser.error(f"--templates: {sorted(set(templates) - set(known))} are not layouts of this mode; expected "
                     f"some of {', '.join(known)}")
    records = generate(args.seed, args.count, args.split, args.shifted, templates)
    if args.out:
        write_jsonl(args.out, records)
    else:
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
