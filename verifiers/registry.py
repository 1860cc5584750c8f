"""The verifier registry: every plugin in group ``smallguard.verifiers``, loaded once at start-up.

Built-ins and third-party plugins come through the same entry-point group, so the path an
operator uses is the path the tests use. Every entry point is imported at discovery, never
because a request asked for it; one that fails to import is logged and recorded in
``failures`` instead of taking the server down (bundles that name it are refused with the
reason). Two distributions that declare one name make that name unusable: picking either
silently would run a check the operator did not choose.
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from smallguard.verifiers.verifier_types import BundleInfo, Verifier

__all__ = ["DEFAULT_GROUP", "UnknownVerifierError", "VerifierConfigError", "VerifierError", "VerifierRegistry"]

DEFAULT_GROUP = "smallguard.verifiers"
_UNKNOWN_DISTRIBUTION = "unknown"

log = logging.getLogger(__name__)

Factory = Callable[..., object]


class VerifierError(Exception):
    """Base class: a verifier cannot be built. ``name`` is the verifier's entry-point name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class UnknownVerifierError(VerifierError, LookupError):
    """No usable verifier has this name (never installed, failed to load, or claimed twice)."""


class VerifierConfigError(VerifierError, ValueError):
    """The verifier exists but its params are wrong, or its factory did not build a verifier."""


class VerifierRegistry:
    """Verifier factories by name; read-only once built, so threads share it freely."""

    def __init__(
        self,
        factories: Mapping[str, Factory],
        failures: Mapping[str, str] | None = None,
        distributions: Mapping[str, str] | None = None,
    ) -> None:
        """Use ``discover()`` in the server; this constructor is for tests and embedding.

        ``failures`` maps names that cannot be used to the reason; ``distributions`` maps
        names to ``"dist==version"`` (``"unknown"`` when absent).
        """
        failures = dict(failures or {})
        overlap = sorted(set(factories) & set(failures))
        if overlap:
            raise ValueError(f"names both usable and failed: {', '.join(overlap)}")
        for name, factory in factories.items():
            if not callable(factory):
                raise TypeError(f"verifier {name!r}: factory {factory!r} is not callable")
        self._factories = dict(factories)
        self._distributions = dict(distributions or {})
        self.failures: Mapping[str, str] = MappingProxyType(failures)

    @classmethod
    def discover(
        cls, group: str = DEFAULT_GROUP, entry_points: Iterable[metadata.EntryPoint] | None = None
    ) -> VerifierRegistry:
        """Load every entry point in ``group`` (or the given ones in ``group``), isolating failures."""
        if entry_points is None:
            found = list(metadata.entry_points(group=group))
        else:
            found = [ep for ep in entry_points if ep.group == group]
        by_name: dict[str, list[metadata.EntryPoint]] = {}
        for ep in found:
            same = by_name.setdefault(ep.name, [])
            # One distribution seen twice (e.g. on two sys.path entries) is not a conflict.
            if not any(_dist_name(ep) == _dist_name(other) and ep.value == other.value for other in same):
                same.append(ep)
        factories: dict[str, Factory] = {}
        failures: dict[str, str] = {}
        distributions: dict[str, str] = {}
        for name, candidates in sorted(by_name.items()):
            if len(candidates) > 1:
                claims = " and ".join(f"{_distribution(ep)} ({ep.value})" for ep in candidates)
                failures[name] = (f"declared by more than one distribution: {claims}; "
                                  "uninstall one of them or rename its entry point")
                log.error("verifier %r is unusable: %s", name, failures[name])
                continue
            ep = candidates[0]
            distributions[name] = _distribution(ep)
            try:
                factory = ep.load()
            except Exception as exc:  # a plugin's import may raise anything; keep the others
                failures[name] = f"{distributions[name]}: cannot load {ep.value}: {type(exc).__name__}: {exc}"
                log.error("verifier plugin %r from %s failed to load", name, distributions[name], exc_info=exc)
                continue
            if not callable(factory):
                failures[name] = f"{distributions[name]}: {ep.value} is {type(factory).__name__}, not a factory"
                log.error("verifier plugin %r is unusable: %s", name, failures[name])
                continue
            factories[name] = factory
        log.info("verifiers in %s: %s", group, ", ".join(sorted(factories)) or "none")
        return cls(factories, failures, {n: d for n, d in distributions.items() if n in factories})

    def names(self) -> list[str]:
        """The usable verifier names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def distribution(self, name: str) -> str:
        """``"dist==version"`` of the distribution that provides ``name``."""
        self._factory(name)
        return self._distributions.get(name, _UNKNOWN_DISTRIBUTION)

    def build(self, name: str, params: Mapping[str, object], bundle: BundleInfo | None = None) -> Verifier:
        """``factory(**params)``, with every way that can go wrong turned into one clear error. A factory with a
        ``bundle`` parameter also gets ``bundle``: what it may know of the bundle it checks."""
        factory = self._factory(name)
        label = f"verifier {name!r} ({self.distribution(name)})"
        if not isinstance(params, Mapping) or not all(isinstance(key, str) for key in params):
            raise VerifierConfigError(name, f"{label}: params must be a mapping of parameter names to values, "
                                            f"got {params!r}")
        if "bundle" in params:
            raise VerifierConfigError(name, f"{label}: 'bundle' is not a parameter a bundle.yaml may set: the server "
                                            "gives it")
        if bundle is not None and _takes(factory, "bundle"):
            params = {**params, "bundle": bundle}
        _check_signature(name, label, factory, params)
        try:
            verifier = factory(**params)
        except (TypeError, ValueError) as exc:
            raise VerifierConfigError(name, f"{label}: bad params: {exc}") from exc
        except Exception as exc:
            raise VerifierConfigError(name, f"{label}: raised {type(exc).__name__} while being built "
                                            f"from params {dict(params)!r}: {exc}") from exc
        if not callable(getattr(verifier, "check", None)):
            raise VerifierConfigError(name, f"{label}: the factory returned {type(verifier).__name__}, "
                                            "which has no check(prediction, context) method")
        return verifier  # type: ignore[return-value]

    def _factory(self, name: str) -> Factory:
        factory = self._factories.get(name)
        if factory is not None:
            return factory
        available = ", ".join(self.names()) or "none"
        if name in self.failures:
            message = f"verifier {name!r} is installed but unusable: {self.failures[name]}; available: {available}"
        else:
            message = f"unknown verifier {name!r}"
            close = difflib.get_close_matches(name, self.names(), n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            message += f"; available: {available}"
        raise UnknownVerifierError(name, message)


def _takes(factory: Factory, parameter: str) -> bool:
    try:
        return parameter in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _check_signature(name: str, label: str, factory: Factory, params: Mapping[str, object]) -> None:
    """Name a missing or unexpected parameter before calling, with the parameters it accepts."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some callables have no signature; let the call decide
        return
    try:
        signature.bind(**params)
    except TypeError as exc:
        accepted = [p.name for p in signature.parameters.values()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise VerifierConfigError(name, f"{label}: bad params: {exc}; accepted parameters: "
                                        f"{', '.join(accepted) or 'none'}") from exc


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return _UNKNOWN_DISTRIBUTION
    return f"{dist.metadata['Name']}=={dist.version}"
