"""What a bundle's ``escalation:`` declares: the tiers tried in turn while the decision is ESCALATE.

Each tier has a kind and its target, what a call costs in the operators' unit, a time budget,
a concurrency limit, a circuit breaker and how many retry-safe failures it may retry.
``smallguard.server.bundle.bundle_file`` reads them; the assembly builds the tiers from them.
"""

from __future__ import annotations

from dataclasses import dataclass

TIER_KINDS = ("bundle", "guard", "openai", "review")


@dataclass(frozen=True, slots=True)
class BundleTarget:
    """Another bundle of the same model repository, run in process."""

    bundle: str
    version: str = ""

    def describe(self) -> str:
        return self.bundle + (f" version {self.version}" if self.version else "")


@dataclass(frozen=True, slots=True)
class GuardTarget:
    """A remote smallguard server and the model it serves (the bundle's own name when empty)."""

    address: str  # host:port
    model: str
    version: str = ""

    def describe(self) -> str:
        return f"{self.address} model {self.model}" + (f" version {self.version}" if self.version else "")


@dataclass(frozen=True, slots=True)
class OpenAITarget:
    """An OpenAI-compatible chat-completions endpoint, asked for a JSON object through structured output.

    ``api_key_env`` names the environment variable that holds the key (the key itself is never in
    bundle.yaml, logs, spans or GetModel). ``prompt`` and ``system`` are string.Template texts over
    $text, $inputs, $fields, $labels and $context."""

    endpoint: str  # base URL, e.g. http://127.0.0.1:8000/v1 (the call POSTs to {endpoint}/chat/completions)
    model: str
    api_key_env: str = ""
    prompt: str = ""  # empty: the default prompt for the bundle's kind
    system: str = ""
    response_format: str = "json_schema"  # or json_object, for servers without JSON-schema output
    max_tokens: int = 512

    def describe(self) -> str:
        return f"{self.endpoint} model {self.model}"


@dataclass(frozen=True, slots=True)
class ReviewTarget:
    """The human review queue: the request becomes a case a person claims (under a lease) and resolves."""

    lease_seconds: float = 900.0  # a claim not resolved by then returns the case to the queue

    def describe(self) -> str:
        return f"the review queue (leases of {self.lease_seconds:g}s)"


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """Stop calling a tier after ``failures`` failed calls in a row, for ``open_seconds``; then one trial call."""

    failures: int = 5
    open_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class TierSpec:
    name: str
    kind: str  # one of TIER_KINDS
    target: BundleTarget | GuardTarget | OpenAITarget | ReviewTarget
    cost: float = 0.0  # per call made, in the operators' unit (retries are calls)
    timeout_ms: float = 1000.0  # per tier, capped by what is left of the caller's deadline
    max_concurrency: int = 8  # calls in flight; past it the tier is skipped (TIER_ERROR "busy"), never queued
    retries: int = 1  # extra attempts after a retry-safe failure (HTTP 429/503, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED)
    answer_uncalibrated: bool = False  # a tier without calibration may answer when every verifier passes
    circuit: CircuitPolicy = CircuitPolicy()
