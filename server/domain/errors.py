"""The project's errors: one base class, one argument order.

Every error takes ``(problem, where)``: what is wrong, as a sentence for the caller or the
operator, and where (a file, a request field, a request id; optional where nothing narrower
applies). The message is ``"where: problem"``. The transport maps each class to one status code.
"""

from __future__ import annotations

import re
from pathlib import Path

ECHO_LIMIT = 80  # characters of a caller's string repeated in an error message
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def echoed(value: str, quoted: bool = True) -> str:
    """A caller's string as an error message repeats it: quoted (not inside a path such as ``inputs[name]``),
    and cut to ECHO_LIMIT characters with its length said, so that a huge name cannot make the message itself
    too big to send."""
    shown = value[:ECHO_LIMIT]
    shown = repr(shown) if quoted else shown
    return shown if len(value) <= ECHO_LIMIT else f"{shown}... ({len(value)} characters)"


class GuardError(Exception):
    """Base class: the message is written for the caller or the operator, as is."""

    def __init__(self, problem: str, where: Path | str | None = None) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.problem = problem
        self.where = None if where is None else str(where)


class DeadlineExpiredError(GuardError):
    """The caller's deadline passed before the work began (maps to DEADLINE_EXCEEDED): nobody waits for it."""


class InvalidInputError(GuardError):
    """The request does not match what the model declares (maps to INVALID_ARGUMENT)."""

    def __init__(self, problem: str, field: str) -> None:
        super().__init__(problem, field)
        self.field = field


class ItemFailedError(GuardError):
    """One item of a batch could not be served for a reason of the server's (logged); the others were."""


class ModelNotFoundError(GuardError):
    """No loaded model answers to that name and version (maps to NOT_FOUND)."""


class RequestNotFoundError(GuardError):
    """Feedback names a request id the prediction record does not hold (maps to NOT_FOUND)."""

    def __init__(self, problem: str, request_id: str, expired: bool) -> None:
        super().__init__(problem, f"request_id {echoed(request_id)}")
        self.request_id = request_id
        self.expired = expired  # it was recorded once and has been evicted


class FeedbackConflictError(GuardError):
    """Feedback with another truth was already recorded for that request (maps to ALREADY_EXISTS)."""


class CaseNotFoundError(GuardError):
    """No review case with that id, or none for that request (maps to NOT_FOUND)."""


class CaseStateError(GuardError):
    """The case is not in a state that allows the call: claimed by someone else, a lease that expired, already
    closed (maps to FAILED_PRECONDITION); the message says who holds it or what to do."""


class StoreError(GuardError):
    """The store cannot be opened, reached or used (maps to UNAVAILABLE: the call may be sent again). The message
    names the store, never its password. ``refused``: the store is up but refused what it was given (a value a
    column cannot hold, a constraint): sending the same again fails again."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class BundleError(GuardError):
    """A bundle cannot be loaded; the message names the file and the problem."""

    def __init__(self, problem: str, path: Path | str) -> None:
        super().__init__(problem, path)
        self.path = str(path)


def printable(value: str, where: str, allowed: str = "") -> str:
    """``value``, when it holds no control character but those ``allowed``; InvalidInputError naming the first
    otherwise. For what a caller gives that the store keeps as text: PostgreSQL refuses a NUL, and the call
    must then fail as the caller's mistake, not as the store's."""
    for bad in _CONTROL.finditer(value):
        if bad.group() not in allowed:
            raise InvalidInputError(f"holds the control character {bad.group()!r} at {bad.start()}; expected "
                                    "printable text", where)
    return value
