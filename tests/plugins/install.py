"""Install the test plugin distributions the way an operator installs a plugin: with pip.

The well-behaved example plugin goes into the environment running the tests (it only adds
new names). The broken one claims a built-in's name, so it goes into a scratch folder that
a test puts on the path of its own process, never into the shared environment.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "example"
BROKEN = HERE / "broken"


def _version(source: Path) -> str:
    return tomllib.loads((source / "pyproject.toml").read_text())["project"]["version"]


def _pip_install(source: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
               "--disable-pip-version-check", *extra, str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not install {source}:\n{result.stdout}{result.stderr}")


def ensure_installed() -> str:
    """Install ``smallguard-example-verifiers`` unless this version already is; returns ``name==version``."""
    name, version = "smallguard-example-verifiers", _version(EXAMPLE)
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed != version:
        _pip_install(EXAMPLE, "--force-reinstall")
        importlib.invalidate_caches()
    return f"{name}=={version}"


def install_broken(target: Path) -> Path:
    """Install ``smallguard-broken-verifiers`` into ``target`` (a folder to put on sys.path)."""
    _pip_install(BROKEN, "--target", str(target))
    return target
