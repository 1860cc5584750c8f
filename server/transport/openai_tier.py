"""The ``openai`` tier: any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server,
Ollama, hosted APIs), asked for one JSON object with the bundle's fields (or its label).

The answer is requested through structured output (``response_format`` of type ``json_schema``,
strict, or ``json_object`` for servers without schemas) and then checked here all the same: a
reply that is not JSON, lacks a field, adds one, gives a field a non-string value or names a label
the bundle does not have is the tier's error, never a prediction. An LLM's answer carries no
calibrated confidence: the cascade lets it stand only when the bundle opts in and every verifier
passes.

The key is read once from the environment variable the bundle names and goes only into the
Authorization header: never into a message, a log line, a span or GetModel. HTTP 429 and 503 are
retried (after Retry-After when the server sends one) within the deadline; other failures are not.
"""

from __future__ import annotations

import json
import os
import time
from string import Template
from typing import Any

import httpx

from smallguard.server.core.tiers import TierAnswer, TierError, with_retries
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.errors import BundleError
from smallguard.server.domain.predictions import Decision, PredictCall
from smallguard.server.domain.tier_spec import OpenAITarget, TierSpec
from smallguard.verifiers import ExtractedField, ModelKind, Prediction

PLACEHOLDERS = ("text", "inputs", "fields", "labels", "context")
DEFAULT_SYSTEM = "You read documents and answer with one JSON object only, exactly as the user asks."
DEFAULT_EXTRACTOR_PROMPT = (
    "Read the document below and give these fields: $fields.\n"
    "Answer with one JSON object whose keys are exactly these field names. Each value is a string as the "
    "document gives it (dates as YYYY-MM-DD, amounts as plain decimals such as 1234.50, currencies as "
    "ISO 4217 codes), or null when the document does not give that field.\n\nDocument:\n$text")
DEFAULT_CLASSIFIER_PROMPT = (
    "Classify the input below as exactly one of these labels: $labels.\n"
    'Answer with one JSON object of the form {"label": "<one of the labels>"}.\n\nInput:\n$text$inputs')
_RETRY_SAFE = (429, 503)
_SHOWN = 200  # characters of a reply quoted in an error message


class OpenAITier:
    def __init__(self, spec: TierSpec, bundle: BundleSpec) -> None:
        target = spec.target
        assert isinstance(target, OpenAITarget)
        self.spec = spec
        self._target = target
        self._bundle = bundle
        self._prompt = _template(target.prompt or (DEFAULT_EXTRACTOR_PROMPT if bundle.is_extractor
                                                   else DEFAULT_CLASSIFIER_PROMPT), spec, bundle, "prompt")
        self._system = _template(target.system or DEFAULT_SYSTEM, spec, bundle, "system")
        headers = {"Content-Type": "application/json"}
        if target.api_key_env:
            key = os.environ.get(target.api_key_env, "")
            if not key:
                raise BundleError(f"escalation tier {spec.name!r}: the environment variable {target.api_key_env} "
                                  "that holds its key is not set", bundle.file)
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=target.endpoint + "/", headers=headers, follow_redirects=False,
                                    limits=httpx.Limits(max_connections=spec.max_concurrency,
                                                        max_keepalive_connections=spec.max_concurrency))
        self._format = _response_format(bundle, target.response_format)

    def ask(self, call: PredictCall, request_id: str, timeout_s: float) -> TierAnswer:
        body = {
            "model": self._target.model,
            "messages": [{"role": "system", "content": self._render(self._system, call)},
                         {"role": "user", "content": self._render(self._prompt, call)}],
            "temperature": 0,
            "max_tokens": self._target.max_tokens,
            "response_format": self._format,
        }
        reply, calls = with_retries(lambda left: self._post(body, left, request_id), self.spec.retries,
                                    time.monotonic() + timeout_s)
        try:
            prediction = self._prediction(reply)
        except TierError as error:
            raise TierError(str(error), calls=calls) from None
        return TierAnswer(prediction=prediction, calibrated=False, confidence=0.0, raw_confidence=0.0,
                          threshold=0.0, decision=Decision.ANSWER, calls=calls)

    def _post(self, body: dict[str, Any], timeout_s: float, request_id: str) -> Any:
        try:
            response = self._client.post("chat/completions", json=body, timeout=timeout_s,
                                         headers={"X-Request-Id": request_id})
        except httpx.TimeoutException:
            raise TierError(f"timed out after {timeout_s * 1000:.0f} ms") from None
        except httpx.HTTPError as error:  # refused, reset, DNS: the endpoint is down or unreachable
            raise TierError(f"cannot reach {self._target.endpoint}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            retry_after = _retry_after(response) if response.status_code in _RETRY_SAFE else None
            raise TierError(f"{self._target.endpoint} answered HTTP {response.status_code}: "
                            f"{response.text[:_SHOWN]!r}", retry_after=retry_after)
        try:
            return response.json()
        except ValueError:
            raise TierError(f"the reply is not JSON: {response.text[:_SHOWN]!r}") from None

    def _prediction(self, reply: Any) -> Prediction:
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise TierError(f"not a chat completion (no choices[0].message.content): {str(reply)[:_SHOWN]!r}") from None
        if not isinstance(content, str):
            raise TierError(f"the message content is {type(content).__name__}, not text")
        try:
            answer = json.loads(content)
        except ValueError:
            raise TierError(f"the answer is not a JSON object: {content[:_SHOWN]!r}") from None
        if not isinstance(answer, dict):
            raise TierError(f"the answer is JSON but not an object: {content[:_SHOWN]!r}")
        expected = list(self._bundle.fields) if self._bundle.is_extractor else ["label"]
        missing = [key for key in expected if key not in answer]
        extra = sorted(set(answer) - set(expected))
        if missing or extra:
            problems = ([f"missing fields {missing}"] if missing else []) + \
                       ([f"unexpected fields {str(extra)[:_SHOWN]}"] if extra else [])
            raise TierError(f"the answer has {' and '.join(problems)}; expected exactly {expected}")
        mistyped = [key for key in expected if not (answer[key] is None or isinstance(answer[key], str))]
        if mistyped:
            key = mistyped[0]
            raise TierError(f"field {key!r} is {type(answer[key]).__name__} {str(answer[key])[:50]!r}; expected a "
                            "string or null")
        if not self._bundle.is_extractor:
            label = answer["label"]
            if label not in self._bundle.labels:
                raise TierError(f"label {str(label)[:100]!r} is not one of {list(self._bundle.labels)}")
            return Prediction(kind=ModelKind.CLASSIFIER, label=label, probability=0.0)
        fields = {name: ExtractedField(name, (answer[name] or "").strip() or None, 0.0, 0.0)
                  for name in self._bundle.fields}
        return Prediction(kind=ModelKind.EXTRACTOR, probability=0.0, fields=fields)

    def _render(self, template: Template, call: PredictCall) -> str:
        return template.substitute(
            text=call.text,
            inputs=json.dumps({t.name: t.values.tolist() for t in call.tensors}) if call.tensors else "",
            fields=", ".join(self._bundle.fields), labels=", ".join(self._bundle.labels),
            context=json.dumps(dict(call.context), sort_keys=True))

    def close(self) -> None:
        self._client.close()


def _template(text: str, spec: TierSpec, bundle: BundleSpec, key: str) -> Template:
    """A prompt as a string.Template; BundleError for a placeholder it does not know."""
    template = Template(text)
    if not template.is_valid():
        raise BundleError(f"escalation tier {spec.name!r}: {key} is not a valid template (a lone '$'? write '$$')",
                          bundle.file)
    unknown = sorted(set(template.get_identifiers()) - set(PLACEHOLDERS))
    if unknown:
        raise BundleError(f"escalation tier {spec.name!r}: {key} uses ${unknown[0]}; expected only "
                          f"{', '.join('$' + p for p in PLACEHOLDERS)}", bundle.file)
    return template


def _response_format(bundle: BundleSpec, kind: str) -> dict[str, Any]:
    if kind == "json_object":
        return {"type": "json_object"}
    if bundle.is_extractor:
        properties: dict[str, Any] = {name: {"type": ["string", "null"]} for name in bundle.fields}
        required = list(bundle.fields)
    else:
        properties, required = {"label": {"type": "string", "enum": list(bundle.labels)}}, ["label"]
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": bundle.name.replace(".", "_"), "strict": True,
                                                   "schema": schema}}


def _retry_after(response: httpx.Response) -> float:
    """The wait a 429/503 asks for (Retry-After in seconds), or 0 to back off by the default schedule."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0
