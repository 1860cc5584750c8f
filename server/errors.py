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


class RequestNotFoundError(GuardError):
    """Feedback names a request id the prediction record does not hold (maps to NOT_FOUND)."""

    def __init__(self, request_id: str, expired: bool, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.expired = expired  # it was recorded once and has been evicted


class FeedbackConflictError(GuardError):
    """Feedback with another truth was already recorded for that request (maps to ALREADY_EXISTS)."""


class BundleError(GuardError):
    """A bundle cannot be loaded; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
