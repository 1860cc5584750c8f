"""The registry finds verifier plugins through real installed distributions and isolates bad ones."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from smallguard.verifiers import (
    CheckResult,
    ModelKind,
    Prediction,
    UnknownVerifierError,
    VerifierConfigError,
    VerifierRegistry,
)
from tests.conftest import DIGITS, copy_bundle
from tests.plugins.install import ensure_installed, install_broken


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the pip-installed broken plugin distribution (kept off the shared environment)."""
    return install_broken(tmp_path_factory.mktemp("broken-site"))


@pytest.fixture
def with_broken(broken_site: Path, monkeypatch: pytest.MonkeyPatch) -> VerifierRegistry:
    monkeypatch.syspath_prepend(str(broken_site))
    return VerifierRegistry.discover()


def test_a_separately_installed_plugin_is_found_with_its_distribution() -> None:
    installed = ensure_installed()
    registry = VerifierRegistry.discover()
    assert {"po-limit", "always-raises", "sleepy", "label-allowed"} <= set(registry.names())
    assert registry.distribution("po-limit") == installed
    assert registry.failures == {}
    verifier = registry.build("po-limit", {"field": "label", "context_key": "limit"})
    assert verifier.check(Prediction(kind=ModelKind.CLASSIFIER, label="120"), {"limit": "100"}).status == "failed"


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_still_load(with_broken: VerifierRegistry) -> None:
    assert "explodes" not in with_broken
    problem = with_broken.failures["explodes"]
    assert "smallguard-broken-verifiers==0.1.0" in problem and "ImportError" in problem
    assert "needs a library that is not installed" in problem
    assert {"compare", "sum-equals", "label-allowed"} <= set(with_broken.names())
    with pytest.raises(UnknownVerifierError, match=r"installed but unusable.*ImportError"):
        with_broken.build("explodes", {})


def test_a_name_claimed_by_two_distributions_is_refused(with_broken: VerifierRegistry) -> None:
    assert "range" not in with_broken.names()
    problem = with_broken.failures["range"]
    assert "more than one distribution" in problem
    assert "smallguard-broken-verifiers==0.1.0" in problem and "smallguard==" in problem


def test_an_entry_point_that_is_not_a_factory_is_refused(with_broken: VerifierRegistry) -> None:
    assert "not a factory" in with_broken.failures["not-a-factory"]


def test_unknown_names_suggest_the_closest_and_list_what_exists() -> None:
    registry = VerifierRegistry.discover()
    with pytest.raises(UnknownVerifierError, match=r"unknown verifier 'sum-equal' \(did you mean 'sum-equals'\?\)"):
        registry.build("sum-equal", {})
    with pytest.raises(UnknownVerifierError, match=r"available: .*compare"):
        registry.build("zzz", {})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"field": "tax"}, r"missing a required argument: 'than'.*accepted parameters: field, than, tolerance"),
        ({"field": "tax", "than": "total", "tolerence": 1}, "unexpected keyword argument 'tolerence'"),
        ({"field": "tax", "than": "total", "tolerance": -1}, "tolerance must be zero or positive"),
        (["field"], "params must be a mapping"),
    ],
)
def test_bad_params_name_the_verifier_and_the_problem(params: object, message: str) -> None:
    registry = VerifierRegistry.discover()
    with pytest.raises(VerifierConfigError, match=message) as caught:
        registry.build("not-greater", params)  # type: ignore[arg-type]
    assert "verifier 'not-greater' (smallguard==" in str(caught.value)


class _NoCheck:
    pass


class _Exploding:
    def __init__(self) -> None:
        raise KeyError("settings")


class _Fine:
    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return CheckResult.passed("fine")


def test_factories_that_misbehave_are_config_errors() -> None:
    registry = VerifierRegistry({"no-check": _NoCheck, "exploding": _Exploding, "fine": _Fine})
    with pytest.raises(VerifierConfigError, match="_NoCheck, which has no check"):
        registry.build("no-check", {})
    with pytest.raises(VerifierConfigError, match="raised KeyError while being built"):
        registry.build("exploding", {})
    assert registry.build("fine", {}).check(Prediction(kind=ModelKind.CLASSIFIER), {}).message == "fine"
    assert registry.distribution("fine") == "unknown"


def test_models_command_reports_broken_plugins_and_refuses_only_bundles_that_use_them(
    broken_site: Path, tmp_path: Path
) -> None:
    bundle = (DIGITS / "bundle.yaml").read_text()
    copy_bundle(DIGITS, tmp_path, "digits", bundle)
    copy_bundle(DIGITS, tmp_path, "ranged", bundle.replace("name: digits", "name: ranged") + (
        "  - use: range\n    params: {field: label, min: 0, max: 9}\n    on_fail: abstain\n"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken_site), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "smallguard.server.cli", "models", "--model-repository",
                             str(tmp_path)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verifier explodes unavailable: smallguard-broken-verifiers==0.1.0" in result.stdout
    assert "verifier range unavailable: declared by more than one distribution" in result.stdout
    assert "OK      digits" in result.stdout
    refused = next(line for line in result.stdout.splitlines() if "REFUSED ranged" in line)
    assert "'range' is installed but unusable" in refused
