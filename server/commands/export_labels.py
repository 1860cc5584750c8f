"""`smallguard export-labels`: resolved review cases as labelled JSON Lines, the format `smallguard calibrate`
and `evaluate` read. Review, labels, recalibration: one loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from smallguard.server.core.review import labelled_record
from smallguard.server.domain.errors import StoreError
from smallguard.server.settings import Settings
from smallguard.server.store import default_store_url, open_store
from smallguard.server.store.review_cases import ReviewCases


def add_export_labels_command(commands: Any) -> None:
    """Register the sub-command (``commands`` is the parser's sub-parsers object)."""
    parser = commands.add_parser("export-labels", help="write resolved review cases as labelled JSON Lines")
    parser.set_defaults(run=export_labels_command)
    parser.add_argument("--store", default=None, help="the server's store (default: as `serve`: --store, "
                                                      "SMALLGUARD_STORE, else the SQLite file in the state folder)")
    parser.add_argument("--model", default="", help="only this model's cases")
    parser.add_argument("--output", "-o", type=Path, default=None, help="file to write (default: stdout)")


def export_labels_command(args: Any, settings: Settings) -> int:
    url = args.store or settings.store or default_store_url()
    try:
        store = open_store(url)
    except StoreError as error:
        print(f"cannot export: {error}", file=sys.stderr)
        return 2
    cases = ReviewCases(store)
    out = sys.stdout if args.output is None else args.output.open("w", encoding="utf-8")
    written, after = 0, 0
    try:
        while batch := cases.resolved(args.model, after_id=after):
            for case in batch:
                out.write(json.dumps(labelled_record(case), ensure_ascii=False) + "\n")
            written += len(batch)
            after = batch[-1].id
    finally:
        if args.output is not None:
            out.close()
        store.close()
    where = f" to {args.output}" if args.output is not None else ""
    print(f"exported {written} resolved case(s){' of ' + args.model if args.model else ''}{where}", file=sys.stderr)
    return 0
