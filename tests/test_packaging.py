"""The wheel and the image hold every package: the editable install would hide one left out."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT


def test_every_server_and_verifier_package_is_listed_for_setuptools() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for name, folder in config["package-dir"].items():
        if name.startswith(("smallguard.server", "smallguard.verifiers", "smallguard.client")):
            root = ROOT / folder
            found = {".".join((name, *init.parent.relative_to(root).parts)) for init in root.rglob("__init__.py")}
            assert found - listed == set(), "packages missing from pyproject.toml [tool.setuptools] packages"


def test_the_image_copies_every_folder_the_packages_come_from() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in {path.split("/")[0] for path in config["package-dir"].values()}:
        assert f"COPY {folder} ./{folder}" in dockerfile, f"the Dockerfile does not copy {folder}/"
