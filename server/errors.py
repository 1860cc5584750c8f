"""Errors the core raises; the transport maps each to one status code."""

from __future__ import annotations

from pathlib import Path


class GuardError(Exception):
    """Base class: the message is written for the caller or the operator, as is."""


class InvalidInputError(GuardError):
    """The request does not match what the model declares (maps to INVALID_ARGUMENT)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ModelNotFoundError(GuardError):
    """No loaded model answers to that name and version (maps to NOT_FOUND)."""


class BundleError(GuardError):
    """A bundle cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
