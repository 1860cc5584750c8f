"""The README's configuration table and quick start stay true to the code."""

from __future__ import annotations

import dataclasses

from smallguard.server.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_flag_and_variable() -> None:
    for item in dataclasses.fields(Settings):
        flag = "--" + item.name.replace("_", "-")
        assert f"| `{flag}` | `{item.metadata['env']}` |" in README, f"{flag} is missing from the README"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test " in README.split("## Quick start")[1].split("##")[0]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
