"""The offline commands (``models``, ``calibrate``, ``evaluate``, ``export-labels``) and what only they use:
labelled data, console output, report pictures. Never imported by ``smallguard serve``; each command's heavy
imports (rich, matplotlib, scikit-learn) happen when it runs."""

from __future__ import annotations

from typing import Any

from smallguard.server.commands.calibrate import add_calibrate_command
from smallguard.server.commands.evaluate import add_evaluate_command
from smallguard.server.commands.export_labels import add_export_labels_command
from smallguard.server.commands.models import add_models_command


def add_commands(commands: Any) -> None:
    """Register every offline sub-command (``commands`` is the parser's sub-parsers object)."""
    add_models_command(commands)
    add_calibrate_command(commands)
    add_evaluate_command(commands)
    add_export_labels_command(commands)
