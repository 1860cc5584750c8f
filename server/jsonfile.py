"""The JSON files a bundle carries (calibration.json, reference.json): read with errors that name the
file, and written atomically, so a server never reads half a file and any user can read a whole one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_json(path: Path, error: Callable[[str, Path], Exception]) -> Any:
    """The decoded document; ``error(problem, path)`` is raised when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc}", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot be read: {exc}", path) from None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)  # mkstemp makes it private; a server running as another user must read it
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
