"""The verifier SDK: what a plugin implements, and the registry that finds plugins.

A plugin author needs only this module::

    from smallguard.verifiers import CheckResult, Prediction

    class PoLimit:
        def __init__(self, field: str, context_key: str) -> None: ...
        def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult: ...

and an entry point in group ``smallguard.verifiers`` that names the class. The built-ins
(``smallguard.verifiers.builtin``) are registered the same way.
"""

from smallguard.verifiers.registry import (
    DEFAULT_GROUP,
    UnknownVerifierError,
    VerifierConfigError,
    VerifierError,
    VerifierRegistry,
)
from smallguard.verifiers.verifier_types import (
    BundleInfo,
    CheckResult,
    ExtractedField,
    LabelScore,
    ModelKind,
    Prediction,
    Status,
    Verifier,
)

__all__ = [
    "DEFAULT_GROUP",
    "BundleInfo",
    "CheckResult",
    "ExtractedField",
    "LabelScore",
    "ModelKind",
    "Prediction",
    "Status",
    "UnknownVerifierError",
    "Verifier",
    "VerifierConfigError",
    "VerifierError",
    "VerifierRegistry",
]
