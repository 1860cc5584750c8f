"""Broken on purpose: see pyproject.toml."""
