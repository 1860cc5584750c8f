"""`smallguard evaluate`: the tables add up, match what the gRPC server decides, and show the defences working."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from smallguard.server.commands.evaluate import Replayed, summarise
from smallguard.v1 import guard_pb2 as pb
from tests.conftest import DIGITS, MODELS, Running

INVOICES = MODELS / "invoice-extractor"


def evaluate(bundle: Path, data: Path, json_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smallguard.server.cli", "evaluate", str(bundle), "--data",
                           str(data), "--json", str(json_path)], capture_output=True, text=True, timeout=600)


def test_summarise_counts_each_policy_from_the_reasons() -> None:
    results = [
        Replayed("ANSWER", True, False, False),
        Replayed("ANSWER", False, False, False),  # a silent error: nothing objected
        Replayed("ESCALATE", False, True, False),  # caught by the threshold only
        Replayed("ESCALATE", False, False, True),  # caught by a verifier only
        Replayed("ESCALATE", False, True, True),  # caught by both
        Replayed("ESCALATE", True, True, False),  # a right answer held back by the threshold
    ]
    evaluation = summarise(results)
    assert evaluation.samples == 6 and evaluation.accuracy == 2 / 6
    assert evaluation.decisions["ANSWER"] == {"right": 1, "wrong": 1}
    assert evaluation.decisions["ESCALATE"] == {"right": 1, "wrong": 3}
    assert evaluation.caught == {"threshold": 1, "verifiers": 1, "both": 1, "neither": 1}
    rows = {row.policy: row for row in evaluation.policies}
    assert (rows["model alone"].answered, rows["model alone"].silent_errors) == (6, 4)
    assert (rows["threshold only"].answered, rows["threshold only"].silent_errors) == (3, 2)
    assert rows["threshold only"].right_held_back == 1
    assert (rows["verifiers only"].answered, rows["verifiers only"].silent_errors) == (4, 2)
    assert (rows["both"].answered, rows["both"].silent_errors, rows["both"].errors_caught) == (2, 1, 3)
    assert rows["both"].silent_error_rate == 1 / 6 and rows["both"].risk == 1 / 2


def test_decisions_match_what_the_grpc_server_returns_for_the_same_invoices(
    shipped: Running, tmp_path: Path
) -> None:
    records = [json.loads(line) for line in (INVOICES / "data" / "shifted.jsonl").read_text().splitlines()[:120]]
    data = tmp_path / "sample.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    result = evaluate(INVOICES, data, tmp_path / "out.json")
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "out.json").read_text())

    served = Counter()
    for record in records:
        response = shipped.stub.Predict(pb.PredictRequest(model="invoice-extractor", text=record["text"]))
        right = all(field.value == (record["fields"][field.name] or "") for field in response.extraction.fields)
        served[(pb.Decision.Name(response.decision), "right" if right else "wrong")] += 1
    replayed = {(decision, verdict): count for decision, counts in figures["decisions"].items()
                for verdict, count in counts.items() if count}
    assert replayed == dict(served)
    assert "silent-error rate" in result.stdout and "threshold only" in result.stdout


def test_on_unseen_layouts_both_defences_keep_silent_errors_far_below_the_model_alone(tmp_path: Path) -> None:
    result = evaluate(INVOICES, INVOICES / "data" / "shifted.jsonl", tmp_path / "shifted.json")
    assert result.returncode == 0, result.stderr
    rows = {row["policy"]: row for row in json.loads((tmp_path / "shifted.json").read_text())["policies"]}
    alone, both = rows["model alone"], rows["both"]
    assert alone["silent_error_rate"] > 0.3  # the shift really hurts the model
    assert both["silent_error_rate"] < 0.02 and both["silent_error_rate"] < alone["silent_error_rate"] / 20
    for single in ("threshold only", "verifiers only"):
        assert both["silent_errors"] <= rows[single]["silent_errors"]


def test_a_classifier_is_evaluated_on_its_label(tmp_path: Path) -> None:
    result = evaluate(DIGITS, DIGITS / "data" / "test.jsonl", tmp_path / "digits.json")
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "digits.json").read_text())
    assert figures["samples"] == 360 and abs(figures["accuracy"] - 352 / 360) < 1e-9
    both = next(row for row in figures["policies"] if row["policy"] == "both")
    assert both["silent_errors"] == figures["decisions"]["ANSWER"]["wrong"]


def test_bad_data_is_named_by_line_and_field(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"text": "Invoice 1", "fields": {"tax": "1.00"}}) + "\n")
    result = evaluate(INVOICES, data, tmp_path / "out.json")
    assert result.returncode == 2
    assert "line 1, field 'fields.invoice_number': missing" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_the_cascade_answers_unseen_layouts_that_the_small_model_escalates(tmp_path: Path) -> None:
    """The shipped invoice extractor escalates to invoice-extractor-large, really called by evaluate. On 1,000
    invoices in two layouts neither model trained on, the small model alone answers fewer than half; the
    cascade answers most of them, lets at most 1% through wrong, and costs well below calling the large model
    on every request (1 per request)."""
    result = evaluate(INVOICES, INVOICES / "data" / "unseen.jsonl", tmp_path / "unseen.json")
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "unseen.json").read_text())
    cascade = figures["cascade"]
    small = next(row for row in figures["policies"] if row["policy"] == "both")  # the small model's own decisions
    assert small["coverage"] < 0.5
    assert cascade["coverage"] >= 0.70 and cascade["silent_error_rate"] <= 0.01 and cascade["mean_cost"] < 0.7
    model, large = cascade["tiers"]
    assert (model["tier"], large["tier"]) == ("model", "large")
    assert large["reached"] == figures["samples"] - model["answered"]  # every escalation went on to the tier
    assert large["calls"] == large["reached"] and large["cost"] == large["calls"] * 1.0  # cost: 1 per call
    assert cascade["mean_cost"] == large["cost"] / figures["samples"]
    assert "the cascade: who answered" in result.stdout and "system: answered" in result.stdout


def test_in_distribution_most_requests_never_leave_the_small_model(tmp_path: Path) -> None:
    result = evaluate(INVOICES, INVOICES / "data" / "test.jsonl", tmp_path / "test.json")
    assert result.returncode == 0, result.stderr
    cascade = json.loads((tmp_path / "test.json").read_text())["cascade"]
    model, large = cascade["tiers"]
    assert model["answered"] / model["reached"] > 0.75 and large["reached"] == model["reached"] - model["answered"]
    assert cascade["mean_cost"] < 0.25  # against 1.0 for calling the large model on every request
    assert cascade["coverage"] > 0.95 and cascade["silent_error_rate"] <= 0.01


def test_max_tier_0_replays_the_small_model_alone(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "smallguard.server.cli", "evaluate", str(INVOICES), "--data",
                             str(INVOICES / "data" / "unseen.jsonl"), "--max-tier", "0", "--json",
                             str(tmp_path / "alone.json")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "alone.json").read_text())
    assert figures["cascade"] is None and "the cascade" not in result.stdout
    both = next(row for row in figures["policies"] if row["policy"] == "both")
    assert figures["decisions"]["ANSWER"]["right"] + figures["decisions"]["ANSWER"]["wrong"] == both["answered"]
