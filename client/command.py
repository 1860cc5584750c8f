"""`smallguard predict MODEL`: one Predict from the shell, through the client.

    smallguard predict invoice-extractor < invoice.txt               # text from standard input
    smallguard predict invoice-extractor --text invoice.txt --json    # the whole response as JSON
    smallguard predict digits --request request.json                  # a PredictRequest in JSON (proto3 mapping)

Prints the decision, the prediction, the reasons and who answered; ``--json`` prints the response in
protobuf's JSON mapping. Exit codes: 0 answered, 1 abstained or escalated, 2 the call failed (the
status and the server's message are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_ADDRESS = "localhost:50051"


def add_predict_command(commands: Any) -> None:
    parser = commands.add_parser("predict", help="send one Predict to a running server and print the decision",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=predict_command)
    parser.add_argument("model", help="the model's name")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", type=Path, help="a file holding the text (default: standard input)")
    source.add_argument("--request", type=Path, help="a PredictRequest as JSON (its model is this command's)")
    parser.add_argument("--address", default=os.environ.get("SMALLGUARD_ADDRESS", DEFAULT_ADDRESS),
                        help="host:port of the server (env SMALLGUARD_ADDRESS, default %(default)s)")
    parser.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                        help="request context for the verifiers (repeatable)")
    parser.add_argument("--max-tier", type=int, default=None, help="escalation tiers it may reach (0: none)")
    parser.add_argument("--timeout", type=float, default=10.0, help="the call's deadline in seconds")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")


def predict_command(args: argparse.Namespace, _settings: Any) -> int:
    from google.protobuf import json_format

    from smallguard.client import CallError, Client
    from smallguard.v1 import guard_pb2 as pb

    context = {}
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --context {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        context[key] = value
    try:
        if args.request is not None:
            request = json_format.Parse(args.request.read_text(encoding="utf-8"), pb.PredictRequest())
        else:
            text = args.text.read_text(encoding="utf-8") if args.text is not None else sys.stdin.read()
            request = pb.PredictRequest(text=text)
    except (OSError, UnicodeDecodeError, json_format.ParseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    request.model = args.model
    request.context.update(context)
    if args.max_tier is not None:
        request.max_tier = args.max_tier
    with Client(args.address, timeout=args.timeout) as client:
        try:
            result = client.send(request)
        except CallError as error:
            print(f"error: {error.code}: {error.message}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(json_format.MessageToDict(result.response, preserving_proto_field_name=True), indent=2))
    else:
        _print(result)
    return 0 if result.answered else 1


def _print(result: Any) -> None:
    by = f", answered by {result.answered_by}" if result.answered_by != result.model else ""
    print(f"{result.decision}  {result.model} {result.model_version}{by}: confidence {result.confidence:.4f}, "
          f"threshold {result.threshold:.4f}, request {result.request_id}")
    if result.label is not None:
        print(f"  label: {result.label}  (top {', '.join(f'{label} {p:.3f}' for label, p in result.top_k)})")
    for name, found in result.fields.items():
        print(f"  {name}: {'-' if found.value is None else found.value}  ({found.confidence:.3f})")
    for reason in result.reasons:
        print(f"  reason {reason.code}{f' [{reason.verifier}]' if reason.verifier else ''}: {reason.message}")
    for tier in result.tiers:
        print(f"  tier {tier.name} ({tier.kind}): {tier.decision}, {tier.latency_ms:.1f} ms, cost {tier.cost:g}")
