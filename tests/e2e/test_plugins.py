"""Verifier plugins installed as real distributions, discovered by entry point, applied by a bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import DIGITS, Running, copy_bundle, digits_request, digits_rows, start_server
from tests.plugins.install import ensure_installed

pytestmark = pytest.mark.e2e

BUNDLE = (DIGITS / "bundle.yaml").read_text().split("verifiers:")[0] + """verifiers:
  - use: label-allowed
    params: {context_key: allowed_labels}
    on_fail: escalate
  - use: always-raises
    on_fail: abstain
  - use: sleepy
    params: {seconds: 2.0}
    on_fail: abstain
"""


@pytest.fixture(scope="module")
def plugged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    ensure_installed()
    repository: Path = tmp_path_factory.mktemp("repository")
    # a budget a pool thread meets on a busy test machine; `sleepy` (2 s) still overruns it
    copy_bundle(DIGITS, repository, "digits", BUNDLE.replace("policy:", "policy:\n  verifier_timeout_ms: 500"))
    running = start_server(repository)
    yield running
    running.stop()


def test_plugin_errors_fail_closed_and_the_server_goes_on(plugged: Running) -> None:
    for row in digits_rows()[:5]:
        response = plugged.stub.Predict(digits_request(row["pixels"], context={"allowed_labels": row["label"]}))
        by_name = {v.name: v for v in response.verifiers}
        assert by_name["label-allowed"].status == pb.VerifierResult.PASSED
        assert by_name["always-raises"].status == pb.VerifierResult.ERROR
        assert "RuntimeError" in by_name["always-raises"].message
        assert by_name["sleepy"].status == pb.VerifierResult.ERROR
        assert "did not finish within its time budget of 500 ms" in by_name["sleepy"].message
        assert response.decision == pb.ESCALATE  # fail closed, although both say on_fail: abstain
        errors = sorted(r.verifier for r in response.reasons if r.code == pb.Reason.VERIFIER_ERROR)
        assert errors == ["always-raises", "sleepy"]


def test_get_model_names_the_distribution_behind_each_verifier(plugged: Running) -> None:
    info = plugged.stub.GetModel(pb.GetModelRequest(name="digits"))
    distributions = {v.name: v.distribution for v in info.verifiers}
    assert distributions["always-raises"].startswith("smallguard-example-verifiers==")
    assert distributions["label-allowed"].startswith("smallguard==")
    assert info.verifiers[2].params["seconds"] == 2.0
