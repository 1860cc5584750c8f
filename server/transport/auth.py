"""Bearer tokens: who may call which RPC.

``--tokens-file`` names a YAML file of token hashes and the roles each holds:

    tokens:
      - name: checkout-service          # shown in logs and metrics, never the token
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        roles: [predict]
      - name: labelling-team
        sha256: ...
        roles: [predict, feedback]

As an alternative (or beside it), ``--jwks-file`` names a JSON Web Key Set: a bearer token that is
a JWT signed by one of its keys (by ``kid``), not expired, for ``--jwt-audience`` when that is set,
is accepted with the roles of its ``roles`` claim, under the name of its ``sub``. The key set is
re-read when it changes, as the tokens file is.

Roles per RPC: ``predict`` for Predict, PredictBatch, ListModels, GetModel and WaitForReview;
``feedback`` for Feedback; ``review`` for the review queue's ListCases, GetCase, ClaimCase, ResolveCase
and DismissCase, which act under the token's name (``caller()``); ``admin`` for ReloadModels, and holds every
role. Health
stays open (probes carry no token), and so does reflection. A call without a token, or with one the
file does not list, gets UNAUTHENTICATED; a token without the RPC's role gets PERMISSION_DENIED;
neither message repeats the token. The file is re-read when it changes (checked every second), so a
token is revoked by deleting its line, without a restart; a file that does not parse keeps the tokens
read before, and says why in the log. Only hashes are stored: a leaked file lets nobody call.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

log = logging.getLogger(__name__)
ROLES = ("predict", "feedback", "review", "admin")
RPC_ROLES = {
    "/smallguard.v1.Guard/Predict": "predict",
    "/smallguard.v1.Guard/PredictBatch": "predict",
    "/smallguard.v1.Guard/ListModels": "predict",
    "/smallguard.v1.Guard/GetModel": "predict",
    "/smallguard.v1.Guard/WaitForReview": "predict",
    "/smallguard.v1.Guard/Feedback": "feedback",
    "/smallguard.v1.Guard/ReloadModels": "admin",
    **{f"/smallguard.v1.Guard/{rpc}": "review"
       for rpc in ("ListCases", "GetCase", "ClaimCase", "ResolveCase", "DismissCase")},
}
_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("smallguard_caller", default="")


def caller() -> str:
    """The name of the token or JWT subject the current unary call was authenticated as ("" without tokens)."""
    return _CALLER.get()
_CHECK_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Holder:
    name: str
    roles: frozenset[str]


class TokenFileError(ValueError):
    """The tokens file does not say what it must; the message names the file and the entry."""


def read_tokens(path: Path) -> dict[str, Holder]:
    """sha256 hex digest -> who holds it; TokenFileError naming the problem."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TokenFileError(f"{path}: cannot be read as YAML: {exc}") from None
    entries = doc.get("tokens") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise TokenFileError(f"{path}: expected a mapping with a list under 'tokens'")
    tokens: dict[str, Holder] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: tokens[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "sha256", "roles"}:
            raise TokenFileError(f"{where}: expected name, sha256 and roles")
        digest, roles = str(entry.get("sha256", "")).lower(), entry.get("roles")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise TokenFileError(f"{where}.sha256: expected the 64 hex digits of the token's SHA-256")
        if not isinstance(roles, list) or not roles or set(map(str, roles)) - set(ROLES):
            raise TokenFileError(f"{where}.roles: expected a non-empty list of {', '.join(ROLES)}")
        if digest in tokens:
            raise TokenFileError(f"{where}: the same token is listed twice")
        tokens[digest] = Holder(str(entry.get("name") or f"tokens[{i}]"), frozenset(map(str, roles)))
    return tokens


class TokenAuth(grpc.ServerInterceptor):
    """Checks every call's ``authorization: Bearer <token>`` against the tokens file and/or the JWKS file, each
    re-read when it changes."""

    def __init__(self, tokens: Path | None, jwks: Path | None = None, audience: str = "",
                 on_refused: Callable[[str, str], None] = lambda reason, method: None) -> None:
        self._files = [_Watched(path, reader) for path, reader in ((tokens, read_tokens), (jwks, read_jwks))
                       if path is not None]  # a bad file refuses start-up
        self._tokens = self._files[0] if tokens is not None else None
        self._jwks = self._files[-1] if jwks is not None else None
        self._audience = audience or None
        self._on_refused = on_refused
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="smallguard-tokens", daemon=True)
        self._watcher.start()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        role = RPC_ROLES.get(details.method)
        if role is None:  # health, reflection
            return continuation(details)
        token = _bearer(details.invocation_metadata)
        holder, problem = self._holder(token) if token else (None, "")
        if holder is None:
            self._on_refused("unauthenticated", details.method)
            return _refuse(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required (metadata "
                                                            f"'authorization: Bearer <token>'){problem}")
        if role not in holder.roles and "admin" not in holder.roles:
            self._on_refused("permission_denied", details.method)
            return _refuse(grpc.StatusCode.PERMISSION_DENIED, f"token {holder.name!r} does not hold the role "
                                                              f"{role!r} that {details.method} needs")
        return _as_caller(continuation(details), holder.name)

    def holder(self, token: str) -> Holder | None:
        """Who holds ``token`` (a listed token or a valid JWT), or None."""
        return self._holder(token)[0] if token else None

    def _holder(self, token: str) -> tuple[Holder | None, str]:
        """Who holds ``token``, or None and why not (never the token itself)."""
        if self._jwks is not None and token.count(".") == 2:
            from smallguard.server.transport.jwks import JwtRefused, verified_claims  # loaded with the key set

            try:
                claims = verified_claims(self._jwks.value, token, self._audience)
            except JwtRefused as exc:
                return None, f"; the JWT was refused: {exc}"
            roles = claims.get("roles")
            if not isinstance(roles, list):
                return None, "; the JWT has no 'roles' list"
            return Holder(str(claims["sub"]), frozenset(map(str, roles))), ""
        if self._tokens is None:
            return None, ""
        return self._tokens.value.get(hashlib.sha256(token.encode()).hexdigest()), ""

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(_CHECK_EVERY_S):
            for watched in self._files:
                watched.refresh()


class _Watched:
    """A file's parsed content, parsed again when the file changes; a failed parse keeps the content before."""

    def __init__(self, path: Path, reader: Callable[[Path], Any]) -> None:
        self.path, self._reader = path, reader
        self.value = reader(path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.value = self._reader(self.path)
            log.info("%s re-read", self.path)
        except TokenFileError as exc:
            log.error("tokens file not re-read, the tokens read before stay: %s", exc)


def read_jwks(path: Path) -> Any:
    """The JSON Web Key Set in ``path`` (a ``jwt.PyJWKSet``); TokenFileError naming the problem. PyJWT is
    imported here, by a server given a key set, and not by the others (see transport.jwks)."""
    from smallguard.server.transport.jwks import read_key_set

    try:
        return read_key_set(path)
    except ValueError as exc:
        raise TokenFileError(str(exc)) from None


def _bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


def _as_caller(handler: Any, name: str) -> Any:
    """``handler`` with its unary behaviour run as ``name`` (``caller()`` answers it inside the call)."""
    if handler is None or handler.unary_unary is None:
        return handler
    behavior = handler.unary_unary

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        token = _CALLER.set(name)
        try:
            return behavior(request, context)
        finally:
            _CALLER.reset(token)

    return handler._replace(unary_unary=run)


def _refuse(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def abort(_request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)

