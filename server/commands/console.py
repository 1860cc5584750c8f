"""What the offline commands share on the command line: a sub-command over one bundle and its
labelled data, and the progress bar of the commands that replay that data."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def bundle_command(commands: Any, name: str, summary: str, doc: str | None, run: Callable[..., int],
                   data_help: str) -> argparse.ArgumentParser:
    """Register sub-command ``name`` taking a bundle folder and ``--data``; return its parser for more options."""
    parser = commands.add_parser(name, help=summary, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    parser.add_argument("bundle", type=Path, help="the bundle folder (holding bundle.yaml)")
    parser.add_argument("--data", type=Path, required=True, help=data_help)
    return parser


def progress_columns() -> tuple[Any, ...]:
    """The progress bar of the commands that replay labelled data (calibrate, evaluate)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    return TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
