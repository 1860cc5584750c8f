"""bundle.yaml: read and checked before anything loads.

Every mistake is reported as a BundleError naming the file and the key, so an operator
fixes a bundle from one message instead of a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from smallguard.server.domain.bundle_spec import (
    BUNDLE_FILE,
    BundleSpec,
    DriftPolicy,
    FeedbackPolicy,
    InputSpec,
    Policy,
    VerifierSpec,
)
from smallguard.server.domain.errors import BundleError
from smallguard.server.domain.predictions import Decision
from smallguard.server.domain.tier_spec import (
    TIER_KINDS,
    BundleTarget,
    CircuitPolicy,
    GuardTarget,
    OpenAITarget,
    ReviewTarget,
    TierSpec,
)
from smallguard.verifiers import ModelKind

DTYPES = ("float32", "float64", "int32", "int64", "bool")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def read_bundle(folder: Path, require_calibration: bool = True) -> BundleSpec:
    """Read and check ``folder/bundle.yaml``; raise BundleError naming the problem.

    ``require_calibration=False`` is for the calibrate command, which writes the missing file.
    """
    path = folder / BUNDLE_FILE
    if not path.is_file():
        raise BundleError("missing: every bundle folder needs a bundle.yaml", path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError(f"not valid YAML: {exc}", path) from None
    doc = _Reader(path, raw if raw is not None else {}, "")
    return _parse(folder, doc, require_calibration)


def _parse(folder: Path, doc: _Reader, require_calibration: bool) -> BundleSpec:
    doc.only({"name", "version", "kind", "description", "model", "inputs", "output", "labels",
              "calibration", "uncalibrated", "policy", "verifiers", "adapter", "fields",
              "feedback", "drift", "escalation", "decision_log"})
    name = doc.text("name")
    if not NAME_PATTERN.match(name):
        doc.fail("name", f"{name!r} is not a valid model name; use lower-case letters, digits, '.', '_', '-'")
    kind_text = doc.text("kind")
    try:
        kind = ModelKind(kind_text)
    except ValueError:
        doc.fail("kind", f"{kind_text!r} is not a model kind; expected classifier or extractor")
    model_path = folder / doc.text("model", default="model.onnx")
    if not model_path.is_file():
        doc.fail("model", f"model file {model_path} does not exist")
    inputs = tuple(_input(item) for item in doc.items("inputs"))
    if not inputs:
        doc.fail("inputs", "declare at least one input")
    if len({spec.name for spec in inputs}) != len(inputs):
        doc.fail("inputs", "input names must be unique")
    if kind is ModelKind.EXTRACTOR:
        output_name, output_type, labels = "", "", ()
        adapter_path, fields = _extractor(folder, doc, inputs)
    else:
        for key in ("adapter", "fields"):
            if doc.get(key) is not None:
                doc.fail(key, "only extractor bundles have this; a classifier declares output and labels")
        output = doc.section("output")
        output.only({"name", "type"})
        output_name = output.text("name")
        output_type = output.choice("type", ("probabilities", "logits"), default="probabilities")
        labels = tuple(str(label) for label in doc.list("labels"))
        if len(labels) < 2 or len(set(labels)) != len(labels):
            doc.fail("labels", "a classifier needs at least two distinct labels")
        adapter_path, fields = None, ()
    calibration_path = _calibration_path(folder, doc, require_calibration)
    policy = _policy(doc.section("policy", required=False))
    if calibration_path is not None and policy.threshold is not None:
        doc.fail("policy.threshold", "a calibrated bundle takes its threshold from its calibration file; "
                                     "set it there (or with the calibrate command), not here")
    return BundleSpec(
        folder=folder,
        name=name,
        version=doc.text("version"),
        kind=kind,
        description=doc.text("description") if doc.get("description") is not None else "",
        model_path=model_path,
        inputs=inputs,
        output_name=output_name,
        output_type=output_type,
        labels=labels,
        calibration_path=calibration_path,
        policy=policy,
        verifiers=_verifiers(doc),
        feedback=_feedback(doc.section("feedback", required=False)),
        drift=_drift(doc.section("drift", required=False)),
        escalation=_escalation(doc, name),
        log_inputs=_decision_log(doc.section("decision_log", required=False)),
        adapter_path=adapter_path,
        fields=fields,
    )


def _extractor(folder: Path, doc: _Reader, inputs: tuple[InputSpec, ...]) -> tuple[Path, tuple[str, ...]]:
    """An extractor reads one text input; its adapter turns text into tensors and outputs into fields."""
    for key in ("output", "labels"):
        if doc.get(key) is not None:
            doc.fail(key, "an extractor has no labels or declared output: its adapter decodes the model's outputs")
    if len(inputs) != 1 or inputs[0].kind != "text":
        doc.fail("inputs", "an extractor takes exactly one input of kind text")
    adapter_path = folder / doc.text("adapter", default="adapter.py")
    if not adapter_path.is_file():
        doc.fail("adapter", f"adapter file {adapter_path} does not exist")
    fields = tuple(str(name) for name in doc.list("fields"))
    if not fields or len(set(fields)) != len(fields) or not all(NAME_PATTERN.match(name) for name in fields):
        doc.fail("fields", f"expected a list of distinct field names, got {fields!r}")
    return adapter_path, fields


def _calibration_path(folder: Path, doc: _Reader, required: bool) -> Path | None:
    uncalibrated = doc.get("uncalibrated", False)
    if not isinstance(uncalibrated, bool):
        doc.fail("uncalibrated", "expected true or false")
    if uncalibrated:
        if doc.get("calibration") is not None:
            doc.fail("uncalibrated", "a bundle cannot name a calibration and opt out of it")
        return None
    path = folder / doc.text("calibration", default="calibration.json")
    if required and not path.is_file():
        doc.fail("calibration", f"{path} does not exist; run the calibration, or opt out explicitly with "
                                "'uncalibrated: true' (every response then carries an UNCALIBRATED reason)")
    return path


def _input(item: _Reader) -> InputSpec:
    item.only({"name", "kind", "dtype", "shape", "range", "max_chars"})
    name = item.text("name")
    kind = item.choice("kind", ("tensor", "text"), default="tensor")
    if kind == "text":
        max_chars = item.get("max_chars", 10_000)
        if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars <= 0:
            item.fail("max_chars", "expected a positive whole number of characters")
        return InputSpec(name=name, kind="text", dtype="string", max_chars=max_chars)
    dtype = item.choice("dtype", DTYPES)
    shape = item.list("shape")
    if not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape):
        item.fail("shape", f"expected a list of positive sizes (-1 for any), got {shape!r}")
    low = high = None
    if item.get("range") is not None:
        bounds = item.list("range")
        if len(bounds) != 2 or not all(isinstance(b, int | float) for b in bounds) or bounds[0] > bounds[1]:
            item.fail("range", f"expected [min, max] with min <= max, got {bounds!r}")
        low, high = float(bounds[0]), float(bounds[1])
    return InputSpec(name=name, dtype=dtype, shape=tuple(shape), min=low, max=high)


def _policy(section: _Reader) -> Policy:
    section.only({"on_low_confidence", "top_k", "verifier_timeout_ms", "threshold"})
    top_k = section.get("top_k", 3)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        section.fail("top_k", "expected a whole number >= 1")
    timeout = section.get("verifier_timeout_ms", 100.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        section.fail("verifier_timeout_ms", "expected a positive number of milliseconds")
    threshold = section.get("threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or not 0 <= threshold <= 1):
        section.fail("threshold", "expected a number between 0 and 1")
    return Policy(
        on_low_confidence=section.decision("on_low_confidence", default="abstain"),
        top_k=top_k,
        verifier_timeout_ms=float(timeout),
        threshold=None if threshold is None else float(threshold),
    )


def _feedback(section: _Reader) -> FeedbackPolicy:
    section.only({"tolerance", "alpha", "min_labelled", "window"})
    default = FeedbackPolicy()
    values = {}
    for key, low, high in (("tolerance", 0.0, 1.0), ("alpha", 0.0, 1.0)):
        value = section.get(key, getattr(default, key))
        if not isinstance(value, int | float) or isinstance(value, bool) or not low < value < high:
            section.fail(key, f"expected a number strictly between {low:g} and {high:g}, got {value!r}")
        values[key] = float(value)
    for key in ("min_labelled", "window"):
        value = section.get(key, getattr(default, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            section.fail(key, f"expected a whole number >= 1, got {value!r}")
        values[key] = value
    if values["min_labelled"] > values["window"]:
        section.fail("min_labelled", f"{values['min_labelled']} is more than the window of {values['window']}: "
                                     "the drift test could never run")
    return FeedbackPolicy(**values)


def _decision_log(section: _Reader) -> str:
    """How much of each input the decision log keeps: none, its SHA-256 (the default: proves which input without
    keeping it), or all of it (invoices can be sensitive: choose knowingly)."""
    section.only({"inputs"})
    return section.choice("inputs", ("none", "hash", "full"), default="hash")


def _drift(section: _Reader) -> DriftPolicy:
    section.only({"reference", "window", "min_samples", "psi_limit", "escalation_rate_limit",
                  "abstention_rate_limit", "on_drift"})
    default = DriftPolicy()
    values: dict[str, Any] = {"reference": section.text("reference", default=default.reference),
                              "on_drift": section.choice("on_drift", ("none", "escalate"), default=default.on_drift)}
    for key, low, high in (("window", 10, 100_000), ("min_samples", 1, 100_000)):
        value = section.get(key, getattr(default, key))
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            section.fail(key, f"expected a whole number from {low} to {high}, got {value!r}")
        values[key] = value
    if values["min_samples"] > values["window"]:
        section.fail("min_samples", f"{values['min_samples']} is more than the window of {values['window']}: "
                                    "no score could ever be reported")
    for key in ("psi_limit", "escalation_rate_limit", "abstention_rate_limit"):
        value = section.get(key, getattr(default, key))
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < float("inf"):
            section.fail(key, f"expected a positive number, got {value!r}")
        values[key] = float(value)
    return DriftPolicy(**values)


def _verifiers(doc: _Reader) -> tuple[VerifierSpec, ...]:
    specs = []
    for item in doc.items("verifiers", required=False):
        item.only({"use", "name", "params", "on_fail"})
        use = item.text("use")
        params = item.get("params", {}) or {}
        if not isinstance(params, dict):
            item.fail("params", "expected a mapping of parameter names to values")
        specs.append(VerifierSpec(
            name=item.text("name", default=use),
            use=use,
            params=params,
            on_fail=item.decision("on_fail", default="escalate"),
        ))
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        doc.fail("verifiers", f"names must be unique, {duplicates} repeat: give each entry a distinct 'name'")
    return tuple(specs)


def _escalation(doc: _Reader, bundle: str) -> tuple[TierSpec, ...]:
    tiers = tuple(_tier(item, bundle) for item in doc.items("escalation", required=False))
    if any(tier.kind == "review" for tier in tiers[:-1]):
        doc.fail("escalation", "a 'review' tier must be the last: a person is the last resort, and nothing is "
                               "called after a case is opened")
    names = [tier.name for tier in tiers]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        doc.fail("escalation", f"tier names must be unique, {repeated} repeat: give each tier a distinct 'name'")
    return tiers


def _tier(item: _Reader, bundle: str) -> TierSpec:
    common = {"name", "kind", "cost", "timeout_ms", "max_concurrency", "retries", "answer_uncalibrated", "circuit"}
    kind = item.choice("kind", TIER_KINDS)
    target: BundleTarget | GuardTarget | OpenAITarget | ReviewTarget
    if kind == "review":
        item.only({"name", "kind", "cost", "lease_seconds"})
        lease = item.get("lease_seconds", ReviewTarget().lease_seconds)
        if not isinstance(lease, int | float) or isinstance(lease, bool) or not 10 <= lease <= 86_400:
            item.fail("lease_seconds", f"expected seconds from 10 to 86400, got {lease!r}")
        target = ReviewTarget(float(lease))
    elif kind == "bundle":
        item.only(common | {"bundle", "version"})
        target = BundleTarget(item.text("bundle"), item.text("version", default="") if item.get("version") else "")
        if target.bundle == bundle:
            item.fail("bundle", f"{bundle!r} is this bundle: a tier must be another, stronger model")
    elif kind == "guard":
        item.only(common | {"address", "model", "version"})
        address = item.text("address")
        if ":" not in address:
            item.fail("address", f"{address!r}: expected host:port")
        target = GuardTarget(address, item.text("model", default=bundle),
                             item.text("version") if item.get("version") else "")
    else:
        item.only(common | {"endpoint", "model", "api_key_env", "prompt", "system", "response_format", "max_tokens"})
        endpoint = item.text("endpoint").rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            item.fail("endpoint", f"{endpoint!r}: expected an http:// or https:// base URL such as "
                                  "http://127.0.0.1:8000/v1")
        max_tokens = item.get("max_tokens", 512)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            item.fail("max_tokens", f"expected a whole number >= 1, got {max_tokens!r}")
        target = OpenAITarget(
            endpoint=endpoint, model=item.text("model"),
            api_key_env=item.text("api_key_env") if item.get("api_key_env") else "",
            prompt=item.text("prompt") if item.get("prompt") else "",
            system=item.text("system") if item.get("system") else "",
            response_format=item.choice("response_format", ("json_schema", "json_object"), default="json_schema"),
            max_tokens=max_tokens)
    default = TierSpec("", kind, target)
    numbers = {}
    for key, low, whole in (("cost", 0.0, False), ("timeout_ms", 1.0, False), ("max_concurrency", 1, True),
                            ("retries", 0, True)):
        value = item.get(key, getattr(default, key))
        if (not isinstance(value, int | float) or isinstance(value, bool) or (whole and not isinstance(value, int))
                or not low <= value < float("inf")):
            item.fail(key, f"expected a {'whole ' if whole else ''}number >= {low:g}, got {value!r}")
        numbers[key] = value if whole else float(value)
    answer_uncalibrated = item.get("answer_uncalibrated", False)
    if not isinstance(answer_uncalibrated, bool):
        item.fail("answer_uncalibrated", "expected true or false")
    circuit = item.section("circuit", required=False)
    circuit.only({"failures", "open_seconds"})
    defaults = CircuitPolicy()
    failures = circuit.get("failures", defaults.failures)
    open_seconds = circuit.get("open_seconds", defaults.open_seconds)
    if not isinstance(failures, int) or isinstance(failures, bool) or failures < 1:
        circuit.fail("failures", f"expected a whole number >= 1, got {failures!r}")
    if not isinstance(open_seconds, int | float) or isinstance(open_seconds, bool) or not 0 < open_seconds < 86400:
        circuit.fail("open_seconds", f"expected a positive number of seconds, got {open_seconds!r}")
    name = item.text("name", default=kind)
    if not NAME_PATTERN.match(name):
        item.fail("name", f"{name!r} is not a valid tier name; use lower-case letters, digits, '.', '_', '-'")
    if name == bundle:
        item.fail("name", f"{name!r} is the bundle's own name, which the responses use for the small model; "
                          "give the tier another")
    return TierSpec(name=name, kind=kind, target=target, answer_uncalibrated=answer_uncalibrated,
                    circuit=CircuitPolicy(failures, float(open_seconds)), **numbers)


class _Reader:
    """Typed access to one YAML mapping, with errors that name the file and the key path."""

    def __init__(self, path: Path, data: Any, where: str) -> None:
        self.path, self.where = path, where
        if not isinstance(data, dict):
            self._raise(where or "top level", "expected a mapping")
        self.data: dict[str, Any] = data

    def _raise(self, key: str, problem: str) -> None:
        raise BundleError(f"{key}: {problem}", self.path)

    def fail(self, key: str, problem: str) -> Any:
        self._raise(self.where + key, problem)

    def only(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            self.fail(unknown[0], f"unknown key; expected one of {', '.join(sorted(allowed))}")

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            self.fail(key, "required")
        if not isinstance(value, str | int | float) or isinstance(value, bool) or not str(value).strip():
            self.fail(key, f"expected a non-empty string, got {value!r}")
        return str(value).strip()

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in allowed:
            self.fail(key, f"{value!r} is not allowed; expected one of {', '.join(allowed)}")
        return value

    def decision(self, key: str, default: str) -> Decision:
        return Decision[self.choice(key, ("abstain", "escalate"), default).upper()]

    def list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list):
            self.fail(key, f"expected a list, got {value!r}")
        return value

    def items(self, key: str, required: bool = True) -> list[_Reader]:
        if not required and self.data.get(key) is None:
            return []
        return [_Reader(self.path, item, f"{self.where}{key}[{i}].") for i, item in enumerate(self.list(key))]

    def section(self, key: str, required: bool = True) -> _Reader:
        value = self.data.get(key)
        if value is None and not required:
            value = {}
        if not isinstance(value, dict):
            self.fail(key, "expected a mapping")
        return _Reader(self.path, value, f"{self.where}{key}.")
