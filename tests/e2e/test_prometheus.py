"""A real Prometheus scrapes a real `smallguard serve`: the escalation rate PromQL gives is the decisions sent.

Counters only exist once incremented, and rate() cannot count a series' first sample, so the
test first sends a warm-up batch, then starts Prometheus: its first scrape sees every series
at once, and from then on all of them share their sample timestamps. rate()'s extrapolation
then scales every series by the same factor, so ratios of rates are exact. (Rate
extrapolation stops at the moment a counter would have been 0, which would differ per series;
the measured batch therefore sends at most half as many of each kind as the warm-up did.)
The measured batch is a different mix from the warm-up, so a query that counted the warm-up
would get another number.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

import grpc
import pytest

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import digits_request, digits_rows, free_port, serving
from tests.e2e.prometheus_backend import JOB, Prometheus, running_prometheus, wait_until

DIGITS = 'smallguard_model_name="digits"'


def warm_up(stub: guard_pb2_grpc.GuardStub) -> list[tuple[pb.PredictRequest, pb.PredictResponse]]:
    """Requests of every kind the measured batch will send, with the answers they got: escalations
    (labels outside the allowed "0,1"), a passing label check, and unconstrained calls until at
    least two of them abstained (low confidence)."""
    rows = digits_rows()
    others = [row for row in rows if row["label"] not in ("0", "1")]
    requests = [digits_request(row["pixels"], context={"allowed_labels": "0,1"}) for row in others[:8]]
    requests += [digits_request(row["pixels"], context={"allowed_labels": row["label"]}) for row in rows[:8]]
    sent = [(request, stub.Predict(request)) for request in requests]
    for row in rows:
        if len(sent) >= 40 and sum(r.decision == pb.ABSTAIN for _, r in sent) >= 2:
            break
        request = digits_request(row["pixels"])
        sent.append((request, stub.Predict(request)))
    return sent


def kind(response: pb.PredictResponse) -> tuple:
    """What a prediction adds to: its decision and reason series, and its verifier outcome series."""
    return (response.decision, tuple(r.code for r in response.reasons),
            tuple((v.name, v.status) for v in response.verifiers))


def measured_batch(sent: list[tuple[pb.PredictRequest, pb.PredictResponse]]) -> list[pb.PredictRequest]:
    """Half of each kind of escalation and abstention, a quarter of each kind of answer: at most half
    the warm-up's count of any series, in a mix unlike the warm-up's."""
    by_kind: dict[tuple, list[pb.PredictRequest]] = defaultdict(list)
    for request, response in sent:
        by_kind[kind(response)].append(request)
    batch = []
    for key, requests in by_kind.items():
        share = 4 if key[0] == pb.ANSWER else 2
        batch += requests[: len(requests) // share]
    return batch


def after(prometheus: Prometheus, series: str, moment: float) -> float:
    """Wait until the recording rule ``series`` has been evaluated after ``moment``; its value then."""
    wait_until(lambda: (prometheus.scalar(f"timestamp({series})") or 0) > moment,
               f"{series} to be evaluated after {moment:.3f}", timeout=30)
    value = prometheus.scalar(series)
    assert value is not None, f"{series} has no sample"
    return value


@pytest.mark.e2e
def test_prometheus_escalation_rate_matches_the_decisions_sent(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    target = f"127.0.0.1:{metrics_port}"
    with serving(port=port, metrics_port=metrics_port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        sent = warm_up(stub)
        batch = measured_batch(sent)
        warm_decisions = Counter(pb.Decision.Name(r.decision) for _, r in sent)
        assert warm_decisions["ESCALATE"] >= 2 and warm_decisions["ABSTAIN"] >= 2, warm_decisions

        with running_prometheus(tmp_path / "prometheus", [target]) as prometheus:
            predictions = f"sum(smallguard_predictions_total{{{DIGITS}}})"
            wait_until(lambda: prometheus.scalar(predictions) == len(sent), "the warm-up's counters to be scraped")
            # the one target, scraped successfully
            up = {(("__name__", "up"), ("instance", target), ("job", JOB)): 1.0}
            assert prometheus.values(f'up{{job="{JOB}"}}') == up

            responses = [stub.Predict(request) for request in batch]
            wait_until(lambda: prometheus.scalar(predictions) == len(sent) + len(batch),
                       "the measured batch's counters to be scraped")
            scraped = time.time()

            decisions = Counter(pb.Decision.Name(r.decision) for r in responses)
            escalation = after(prometheus, f"smallguard_model:smallguard_escalations:ratio_rate5m{{{DIGITS}}}", scraped)
            abstention = after(prometheus, f"smallguard_model:smallguard_abstentions:ratio_rate5m{{{DIGITS}}}", scraped)
            outcomes = Counter(pb.VerifierResult.Status.Name(v.status) for r in responses for v in r.verifiers)
            failures = after(prometheus, "smallguard_model_verifier:smallguard_verifier_failures:ratio_rate5m"
                                         f'{{{DIGITS},smallguard_verifier_name="label-allowed"}}', scraped)

    assert decisions["ESCALATE"] > 0 and decisions["ABSTAIN"] > 0 and decisions["ANSWER"] > 0, decisions
    sent_share = decisions["ESCALATE"] / len(batch)
    warm_share = warm_decisions["ESCALATE"] / len(sent)
    assert sent_share != pytest.approx(warm_share), "the measured mix should differ from the warm-up's"
    assert escalation == pytest.approx(sent_share, rel=1e-9), (escalation, decisions)
    assert abstention == pytest.approx(decisions["ABSTAIN"] / len(batch), rel=1e-9), (abstention, decisions)
    assert failures == pytest.approx(outcomes["FAILED"] / (outcomes["FAILED"] + outcomes["PASSED"]), rel=1e-9)
