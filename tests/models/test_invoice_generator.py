"""The invoice generator: reproducible from a seed, well-formed ground truth, a real distribution shift,
and the committed data files exactly what it produces for train.py's seed and counts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pycountry
import pytest

from smallguard.server.bundle.bundle_file import read_bundle
from tests.models.invoice_modules import INVOICE, load

generate = load("generate")
train = load("train")

AMOUNT = re.compile(r"-?[0-9]+\.[0-9]{2}")
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    """Every split train.py draws (train, calibration, test, shifted), as train.py draws them."""
    return train.datasets()


def word(label: str) -> re.Pattern[str]:
    """``label`` as a whole phrase, so "Sum" does not match inside "Summit"."""
    return re.compile(rf"(?<!\w){re.escape(label)}(?!\w)")


# --- reproducibility -----------------------------------------------------------------------------

@pytest.mark.parametrize("shifted", [False, True], ids=["normal", "shifted"])
def test_same_seed_split_and_mode_give_identical_records(shifted: bool) -> None:
    assert generate.generate(7, 25, "test", shifted) == generate.generate(7, 25, "test", shifted)


@pytest.mark.parametrize("shifted", [False, True], ids=["normal", "shifted"])
def test_record_i_does_not_depend_on_count(shifted: bool) -> None:
    many = generate.generate(7, 30, "test", shifted)
    assert generate.generate(7, 5, "test", shifted) == many[:5]
    assert generate.generate(7, 1, "test", shifted) == many[:1]


def test_seed_split_and_mode_each_change_the_records() -> None:
    base = generate.generate(7, 20, "test")
    others = {
        "seed": generate.generate(8, 20, "test"),
        "split": generate.generate(7, 20, "calibration"),
        "mode": generate.generate(7, 20, "test", shifted=True),
    }
    for what, records in others.items():
        same = sum(a == b for a, b in zip(base, records, strict=True))
        assert same == 0, f"changing the {what} left {same} of 20 records unchanged"
    texts = [record["text"] for record in base]
    assert len(set(texts)) == len(texts), "records within one stream repeat"


def test_command_line_writes_the_same_records_under_any_hash_seed(tmp_path: Path) -> None:
    """The command line and generate() agree; and the output does not move with Python's hash seed."""
    expected = generate.generate(3, 4, "cli", shifted=True)
    out = tmp_path / "records.jsonl"
    assert generate.main(["--seed", "3", "--count", "4", "--split", "cli", "--shifted", "--out", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == expected
    for hash_seed in ("0", "4242"):
        result = subprocess.run(
            [sys.executable, str(INVOICE / "generate.py"), "--seed", "3", "--count", "4", "--split", "cli",
             "--shifted"], capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed})
        lines = result.stdout.decode("utf-8").splitlines()
        assert [json.loads(line) for line in lines] == expected, f"PYTHONHASHSEED={hash_seed}"


# --- well-formed ground truth --------------------------------------------------------------------

def test_every_record_is_well_formed(splits: dict[str, list[dict]]) -> None:
    max_chars = next(spec.max_chars for spec in read_bundle(INVOICE).inputs if spec.kind == "text")
    problems: list[str] = []
    for split, records in splits.items():
        for index, record in enumerate(records):
            problems += [f"{split}[{index}]: {problem}" for problem in _problems(record, max_chars)]
    assert problems == [], "\n".join(problems[:20])


def _problems(record: dict, max_chars: int) -> list[str]:
    """What is wrong with one record's fields (empty when nothing is)."""
    text, fields = record["text"], record["fields"]
    if set(record) != {"text", "fields"} or tuple(fields) != generate.FIELDS:
        return [f"keys {sorted(record)}, fields {list(fields)}"]
    problems = []
    if not 0 < len(text) <= max_chars:
        problems.append(f"text of {len(text)} characters; the bundle takes 1 to {max_chars}")
    number = fields["invoice_number"]
    if not number.strip() or number not in text:
        problems.append(f"invoice_number {number!r} is empty or not printed in the text")
    if not ISO_DATE.fullmatch(fields["date"]):
        problems.append(f"date {fields['date']!r} is not YYYY-MM-DD")
    else:
        try:
            issued = date.fromisoformat(fields["date"])
        except ValueError:
            problems.append(f"date {fields['date']!r} does not exist")
        else:
            if not date(2000, 1, 1) <= issued <= date.today():  # the bundle's date verifier's window
                problems.append(f"date {issued} is outside 2000-01-01..today")
    if pycountry.currencies.get(alpha_3=fields["currency"]) is None:
        problems.append(f"currency {fields['currency']!r} is not an ISO 4217 code")
    amounts = {name: fields[name] for name in ("subtotal", "tax", "total")}
    bad = {name: value for name, value in amounts.items() if not AMOUNT.fullmatch(value)}
    if bad:
        return [*problems, f"amounts without exactly two decimals: {bad}"]
    subtotal, tax, total = (Decimal(value) for value in amounts.values())
    if subtotal + tax != total:
        problems.append(f"subtotal {subtotal} + tax {tax} != total {total}")
    if not (subtotal > 0 and 0 <= tax <= total):
        problems.append(f"subtotal {subtotal}, tax {tax}, total {total}: expected 0 < subtotal, 0 <= tax <= total")
    return problems


# --- the shift -----------------------------------------------------------------------------------

def test_shifted_mode_draws_only_templates_the_normal_mode_never_uses() -> None:
    assert not set(generate.SHIFTED_TEMPLATES) & set(generate.NORMAL_TEMPLATES)
    normal = {sample.template for sample in generate.iter_samples(2, 200, "t")}
    shifted = {sample.template for sample in generate.iter_samples(2, 200, "t", shifted=True)}
    assert normal == set(generate.NORMAL_TEMPLATES)
    assert shifted == set(generate.SHIFTED_TEMPLATES)


def test_shifted_only_labels_appear_in_shifted_text_and_never_in_normal_text(splits: dict[str, list[dict]]) -> None:
    normal = [record["text"] for split in ("train", "calibration", "test") for record in splits[split]]
    shifted = [record["text"] for record in splits["shifted"]]
    for label in generate.SHIFTED_ONLY_LABELS:
        pattern = word(label)
        leaked = sum(bool(pattern.search(text)) for text in normal)
        assert leaked == 0, f"{label!r} appears in {leaked} normal-mode documents"
        assert any(pattern.search(text) for text in shifted), f"{label!r} never appears in shifted documents"


def test_shifted_number_and_date_formats_never_appear_in_normal_text(splits: dict[str, list[dict]]) -> None:
    """Swiss 1'234.56 grouping and month-first slash dates (second part above 12) are shift-only."""
    swiss = re.compile(r"[0-9]'[0-9]{3}[.,][0-9]{2}")
    slash_date = re.compile(r"(?<![0-9/])([0-9]{2})/([0-9]{2})/[0-9]{2,4}(?![0-9/])")

    def month_first(text: str) -> bool:
        return any(int(second) > 12 for _, second in slash_date.findall(text))

    normal = [record["text"] for split in ("train", "calibration", "test") for record in splits[split]]
    shifted = [record["text"] for record in splits["shifted"]]
    assert not any(swiss.search(text) for text in normal)
    assert not any(month_first(text) for text in normal)
    assert any(swiss.search(text) for text in shifted)
    assert any(month_first(text) for text in shifted)


# --- the committed data --------------------------------------------------------------------------

def test_committed_data_is_what_the_generator_gives_for_train_py_settings(
        splits: dict[str, list[dict]], tmp_path: Path) -> None:
    """data/*.jsonl byte for byte, so the splits data cannot drift from its generator unnoticed."""
    committed = sorted(path.stem for path in (INVOICE / "data").glob("*.jsonl"))
    assert committed == sorted([*(split for split in train.COUNTS if split != "train"), "unseen"])
    splits = {**splits, "unseen": load("train", "invoice-extractor-large").unseen()}  # written by the large tier's
    for split in committed:
        assert len(splits[split]) == train.COUNTS.get(split, 1000)
        regenerated = tmp_path / f"{split}.jsonl"
        generate.write_jsonl(regenerated, splits[split])
        assert regenerated.read_bytes() == (INVOICE / "data" / f"{split}.jsonl").read_bytes(), (
            f"data/{split}.jsonl differs from generate.py --seed {train.SEED} --count {train.COUNTS[split]} "
            f"--split {split}{' --shifted' if split == 'shifted' else ''}; rerun train.py")


def test_train_py_draws_its_splits_from_seed_and_counts(splits: dict[str, list[dict]]) -> None:
    """train.datasets() is generate() with SEED, COUNTS and --shifted for the shifted split only."""
    for split, count in train.COUNTS.items():
        assert splits[split][:3] == generate.generate(train.SEED, 3, split, shifted=split == "shifted")
        assert len(splits[split]) == count
