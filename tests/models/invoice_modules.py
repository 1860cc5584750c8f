"""The invoice-extractor bundle's own Python files (adapter.py, generate.py, train.py), loaded by path.

The bundle folder's name has a dash, so its modules cannot be imported by name; train.py loads its
neighbours the same way. Each file is loaded once per test run and shared by the test modules.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from types import ModuleType

from tests.conftest import MODELS

INVOICE = MODELS / "invoice-extractor"
LARGE = MODELS / "invoice-extractor-large"


@functools.cache
def load(name: str, folder: str = "invoice-extractor") -> ModuleType:
    """``models/<folder>/<name>.py`` as a module (registered in sys.modules, as dataclasses need)."""
    path = MODELS / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tests_{folder.replace('-', '_')}_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
