"""The alerting rules and the Grafana dashboard in deploy/: promtool's checks and unit tests, and every
dashboard query evaluated by a real Prometheus that scrapes a real `smallguard serve`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import MODELS, digits_request, digits_rows, free_port, serving
from tests.e2e import prometheus_backend as backend
from tests.e2e.conftest import scrape, traffic
from tests.e2e.prometheus_backend import Prometheus, running_prometheus, tool, wait_until

# Metrics other work on issue 5 adds (drift and feedback); the rules and the dashboard already use them.
# Drift and feedback series: they exist only once a model has a full drift window or its first label.
PLANNED = {"smallguard_drift_score", "smallguard_drift_limit", "smallguard_feedback_accuracy_observed",
           "smallguard_feedback_accuracy_estimated", "smallguard_feedback_accuracy_gap",
           "smallguard_feedback_received_total",
           # the review queue's: they exist once a bundle with a review tier has a case
           "smallguard_review_cases", "smallguard_review_oldest_open_age_seconds"}
BY_PROMETHEUS = {"up", "ALERTS"}  # series Prometheus makes itself
# Grafana's variables, as Grafana would fill them in with the models that served the traffic selected.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": "digits|invoice-extractor"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}


def promtool(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (its selectors), leaving out functions, labels and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?", expr)
    return {name for name, call in names if not call and name not in KEYWORDS}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(backend.RULES.read_text())["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    return json.loads(backend.DASHBOARD.read_text())


def panels() -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in dashboard()["panels"]}


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every target, and of the annotation and variable queries."""
    model = dashboard()
    found = [(panel["title"], target["expr"]) for panel in model["panels"] for target in panel["targets"]]
    found += [("annotation " + a["name"], a["expr"]) for a in model["annotations"]["list"] if "expr" in a]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric, label) is Grafana's, not PromQL
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()
            found.append((f"variable {variable['name']}", f"group by ({label}) ({metric})"))
    return found


def as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know in {expr!r}"
    return expr


def test_metric_names_finds_the_series_a_query_reads() -> None:
    assert metric_names('sum by (le, smallguard_model_name) (rate(smallguard_confidence_bucket{le="0.9"}[5m]))') == {
        "smallguard_confidence_bucket"}
    assert metric_names("a:b:rate5m > on (x) group_left () c or vector(0) and d offset 5m") == {"a:b:rate5m", "c", "d"}
    assert metric_names('count(ALERTS{alertname=~"Smallguard.*"}) or vector(0)') == {"ALERTS"}
    assert metric_names("histogram_quantile(0.99, x) > 0.1") == {"x"}


# ------------------------------------------------------------------ promtool


def test_promtool_accepts_the_rules_and_the_example_config() -> None:
    checked = promtool("check", "rules", backend.RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    checked = promtool("check", "config", backend.EXAMPLE_CONFIG)  # also loads rules.yml from beside it
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    tested = promtool("test", "rules", backend.RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_quiet_and_every_recording_rule_by_value() -> None:
    cases = [case for test in yaml.safe_load(backend.RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert set(alerts()) - fired == set(), "alerts with no test that they fire"
    assert set(alerts()) - quiet == set(), "alerts with no test that they stay quiet"
    checked = {name for test in yaml.safe_load(backend.RULE_TESTS.read_text())["tests"]
               for case in test.get("promql_expr_test", []) for name in metric_names(case["expr"])}
    assert set(recorded()) - checked == set(), "recording rules whose values no test checks"


def test_every_alert_waits_has_a_severity_and_says_where_to_look() -> None:
    titles = set(panels())
    for name, rule in alerts().items():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no `for:`"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), name
        # the description's "quoted names" are dashboard panels: they must exist
        for quoted in re.findall(r'"([^"{}]+)"', rule["annotations"]["description"]):
            assert quoted in titles, f"{name} points at panel {quoted!r}, which the dashboard does not have"


# ------------------------------------------------------------------ the dashboard's shape


def test_the_dashboard_has_a_datasource_and_a_model_variable_and_every_panel_uses_them() -> None:
    model = dashboard()
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["definition"] == "label_values(smallguard_predictions_total, smallguard_model_name)"
    assert variables["model"]["multi"] and variables["model"]["includeAll"]
    assert len({panel["id"] for panel in model["panels"]}) == len(model["panels"])
    cells: dict[tuple[int, int], str] = {}
    for panel in model["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            names = metric_names(target["expr"])
            if names - {"ALERTS", "error_type:smallguard_predict_errors:rate5m"}:  # the rest have a model label
                assert '"$model"' in target["expr"], f"{panel['title']}: {target['expr']!r} ignores $model"


def test_the_dashboard_shows_what_sres_watch() -> None:
    kinds = {title: panel["type"] for title, panel in panels().items()}
    for title in ("Decisions", "Escalation rate vs alert threshold", "Reasons", "Verifier outcomes",
                  "Verifier failure share", "Confidence quantiles", "Latency", "Active requests", "Rejected calls",
                  "Drift scores vs limits", "Accuracy: observed vs estimated", "Answered by tier", "Cost per request",
                  "Tier errors"):
        assert kinds.get(title) == "timeseries", title
    assert kinds["Confidence"] == "heatmap"
    # recording rules, where there is one, rather than the raw series again
    for title, rule in (("Escalation rate vs alert threshold", "smallguard_model:smallguard_escalations:ratio_rate5m"),
                        ("Latency", "smallguard_model:smallguard_predict_duration_seconds:p99_5m"),
                        ("Latency", "smallguard_model:smallguard_predict_duration_seconds:p50_5m"),
                        ("Verifier failure share",
                         "smallguard_model_verifier:smallguard_verifier_failures:ratio_rate5m"),
                        ("Drift scores vs limits", "smallguard_model_signal:smallguard_drift_limit:min"),
                        ("Rejected calls", "error_type:smallguard_predict_errors:rate5m"),
                        ("Answered by tier", "smallguard_model_tier:smallguard_tier_answers:ratio_rate5m"),
                        ("Cost per request", "smallguard_model:smallguard_tier_cost:per_prediction_rate5m"),
                        ("Tier errors", "smallguard_model_tier:smallguard_tier_errors:ratio_rate5m")):
        assert any(rule in metric_names(t["expr"]) for t in panels()[title]["targets"]), (title, rule)


@pytest.mark.parametrize(("title", "alert"), [("Escalation rate vs alert threshold", "SmallguardEscalationRateHigh"),
                                              ("Verifier failure share", "SmallguardVerifierFailureRateHigh"),
                                              ("Latency", "SmallguardLatencyP99High"),
                                              ("Tier errors", "SmallguardTierErrors"),
                                              ("Oldest open review case", "SmallguardReviewBacklog")])
def test_the_dashboard_draws_the_threshold_the_alert_uses(title: str, alert: str) -> None:
    threshold = float(re.search(r"\S+ > ([\d.]+)", alerts()[alert]["expr"]).group(1))
    steps = panels()[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [step["value"] for step in steps if step["color"] == "red"] == [threshold]
    assert panels()[title]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


# ------------------------------------------------------------------ on real backends


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, set[str]]]:
    """A real Prometheus with the shipped rules, scraping a real server that has served every
    kind of decision and some rejected calls; and the metric names that server exports."""
    port, metrics_port = free_port(), free_port()
    with serving(port=port, metrics_port=metrics_port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        traffic(stub)
        # enough predictions for the drift scores (min_samples), and ground truth for one of them
        rows = digits_rows()[:100]
        answers = [stub.Predict(digits_request(row["pixels"])) for row in rows]
        answered = next(i for i, answer in enumerate(answers) if answer.decision == pb.ANSWER)
        stub.Feedback(pb.FeedbackRequest(request_id=answers[answered].request_id, label=rows[answered]["label"]))
        # invoices in the layouts the small extractor never saw: escalated to its tier, which answers most; the
        # rest go on to people (review cases)
        unseen = (MODELS / "invoice-extractor" / "data" / "unseen.jsonl").read_text().splitlines()[-70:-40]
        tiered = [stub.Predict(pb.PredictRequest(model="invoice-extractor", text=json.loads(line)["text"]))
                  for line in unseen]
        assert any(response.answered_by == "large" for response in tiered)
        assert any(response.review_case for response in tiered)
        exported = {sample.name for family in scrape(metrics_port).values() for sample in family.samples}
        folder: Path = tmp_path_factory.mktemp("prometheus")
        with running_prometheus(folder, [f"127.0.0.1:{metrics_port}"]) as prometheus:
            # rate() needs two scrapes; then one rule evaluation
            wait_until(lambda: prometheus.query("smallguard_model:smallguard_predictions:rate5m"),
                       "the recording rules to see two scrapes")
            yield prometheus, exported


@pytest.mark.e2e
def test_the_dashboard_and_rules_read_only_metrics_the_server_exports(
        scraped: tuple[Prometheus, set[str]]) -> None:
    _, exported = scraped
    assert "smallguard_predictions_total" in exported and "smallguard_confidence_bucket" in exported
    assert not PLANNED - exported, f"drift and feedback metrics the rules expect but the server does not export: " \
                                f"{sorted(PLANNED - exported)}"
    known = exported | set(recorded()) | BY_PROMETHEUS
    for where, expr in panel_queries() + [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]:
        unknown = metric_names(expr) - known
        assert not unknown, f"{where}: {expr!r} reads {sorted(unknown)}, which the server does not export"


@pytest.mark.e2e
def test_every_dashboard_query_evaluates_on_a_real_prometheus_and_shows_the_served_traffic(
        scraped: tuple[Prometheus, set[str]]) -> None:
    prometheus, exported = scraped
    # every panel must show the served traffic (the drift window is full and one label arrived)
    missing = PLANNED - exported
    missing |= {name for name, expr in recorded().items() if metric_names(expr) & missing} | {"ALERTS"}
    shown: dict[str, bool] = {}
    for title, expr in panel_queries():
        result = prometheus.query(as_promql(expr))  # raises with Prometheus' message if it is not valid
        if not metric_names(expr) & missing:
            shown[title] = shown.get(title, False) or bool(result)
    empty = {title for title, any_data in shown.items() if not any_data}
    assert empty == set(), f"panels that show nothing although the server exports what they read: {sorted(empty)}"
    assert {"Decisions", "Reasons", "Latency", "Rejected calls", "Confidence", "variable model"} <= set(shown)
    models = prometheus.query(as_promql(dict(panel_queries())["variable model"]))
    assert {r["metric"]["smallguard_model_name"] for r in models} == {"digits", "invoice-extractor"}
