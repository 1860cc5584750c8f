"""JSON Web Key Sets and the JWTs their keys sign (``--jwks-file``).

Imported only by a server given a key set: PyJWT brings in cryptography, about 9 MiB of memory in
every process that imports it, which a server on plain tokens, or none, does not need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt


class JwtRefused(Exception):
    """Why a JWT was refused, in words that never repeat the token."""


def read_key_set(path: Path) -> jwt.PyJWKSet:
    """The key set in ``path``; ValueError naming the file and the problem."""
    try:
        return jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"{path}: not a usable JSON Web Key Set: {exc}") from None


def verified_claims(keys: jwt.PyJWKSet, token: str, audience: str | None) -> dict[str, Any]:
    """The claims of ``token``: signed by the key of ``keys`` its ``kid`` names, not expired, for ``audience``
    when one is given, with ``exp`` and ``sub``; JwtRefused saying why not."""
    try:
        key = keys[jwt.get_unverified_header(token).get("kid", "")]
        return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audience,
                          options={"require": ["exp", "sub"]})
    except KeyError:
        raise JwtRefused("its key is not in the key set") from None
    except jwt.PyJWTError as exc:
        raise JwtRefused(str(exc)) from None
