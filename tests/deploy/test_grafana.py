"""The Grafana dashboard against Grafana's own schema, offline (Grafana cannot run here).

The schema comes as grafana-foundation-sdk: Python models that Grafana generates from the schemas of the
dashboard and of each panel plugin. The dashboard JSON is read into them, the dashboard model and, per
panel, the plugin's options and field config; then (1) every value is checked against the type the schema
gives it (an enum's allowed values, numbers, strings, lists, nested objects), and (2) the model is written
back: a key the schema does not know is dropped on the way, so any difference is a key Grafana does not
know either (a typo such as ``gridpos`` or ``lengend``). The queries themselves are evaluated against a real
Prometheus in tests/e2e/test_alerts.py.
"""

from __future__ import annotations

import enum
import importlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.models import dashboard as schema

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "smallguard.json"

# Keys of Grafana's classic dashboard JSON that the typed schema leaves to the datasource plugin (a Prometheus
# annotation's query options) or to the UI (a query variable's definition, shown in its editor): Grafana keeps
# them, and the schema's models do not type them.
UNTYPED = {".annotations.list": {"builtIn", "step", "titleFormat", "textFormat", "useValueForTime"},
           ".templating.list": {"definition"}}


def typed_problems(value: Any, hint: Any, path: str) -> list[str]:
    """Where ``value`` (a parsed model, or what a model holds) does not have the schema's type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is typing.Any:
        return []
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        tried = [typed_problems(value, arg, path) for arg in args if arg is not type(None)]
        return [] if any(not problems for problems in tried) else min(tried, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        element = args[0] if args else Any
        return [p for i, item in enumerate(value) for p in typed_problems(item, element, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        return [p for key, item in value.items() for p in typed_problems(item, args[1] if args else Any,
                                                                          f"{path}.{key}")]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = {member.value for member in hint}
        raw = value.value if isinstance(value, enum.Enum) else value
        return [] if raw in allowed else [f"{path}: {raw!r} is not one of {sorted(map(str, allowed))}"]
    if isinstance(hint, type) and hasattr(hint, "from_json"):
        if not isinstance(value, hint):
            return [f"{path}: expected a {hint.__name__}, got {value!r}"]
        hints = typing.get_type_hints(type(value).__init__)
        return [p for name, field_hint in hints.items() if name != "return"
                for p in typed_problems(getattr(value, name), field_hint, f"{path}.{name}")]
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(hint, type):
        ok = isinstance(value, hint)
    else:
        ok = True
    return [] if ok else [f"{path}: expected {getattr(hint, '__name__', hint)}, got {value!r}"]


def dropped(original: Any, written: Any, path: str = "") -> list[str]:
    """Keys of ``original`` that writing the parsed model back lost: keys the schema does not know."""
    if isinstance(original, dict) and isinstance(written, dict):
        untyped = next((keys for prefix, keys in UNTYPED.items() if path.startswith(prefix + "[")), set())
        return [p for key, value in original.items()
                for p in ([f"{path}.{key}"] if key not in written and key not in untyped
                          else dropped(value, written.get(key), f"{path}.{key}"))]
    if isinstance(original, list) and isinstance(written, list):
        return [p for i, (a, b) in enumerate(zip(original, written, strict=False))
                for p in dropped(a, b, f"{path}[{i}]")]
    return []


def written(model: Any) -> Any:
    return json.loads(json.dumps(model.to_json(), default=lambda o: o.to_json() if hasattr(o, "to_json")
                                 else o.value if isinstance(o, enum.Enum) else str(o)))


def plugin(panel_type: str) -> Any:
    try:
        return importlib.import_module(f"grafana_foundation_sdk.models.{panel_type}")
    except ModuleNotFoundError:
        pytest.fail(f"panel type {panel_type!r} has no schema in grafana-foundation-sdk")


def check(data: dict[str, Any]) -> list[str]:
    """Every way ``data`` (a dashboard's JSON) departs from Grafana's schema."""
    model = schema.Dashboard.from_json(data)
    problems = typed_problems(model, schema.Dashboard, "dashboard") + [
        f"dashboard{path}: not in the schema" for path in dropped(data, written(model))]
    for i, panel in enumerate(data.get("panels", [])):
        where = f"panels[{i}] ({panel.get('title', '?')})"
        module = plugin(panel["type"])
        for part, raw, cls in (("options", panel.get("options", {}), getattr(module, "Options", None)),
                               ("fieldConfig.defaults.custom", panel.get("fieldConfig", {}).get("defaults", {})
                                .get("custom", {}), getattr(module, "FieldConfig", None))):
            if cls is None:
                continue
            parsed = cls.from_json(raw)
            problems += typed_problems(parsed, cls, f"{where}.{part}")
            problems += [f"{where}.{part}{path}: not in the schema" for path in dropped(raw, written(parsed))]
    return problems


def test_the_dashboard_follows_grafanas_schema() -> None:
    assert check(json.loads(DASHBOARD.read_text())) == []


def timeseries(data: dict[str, Any]) -> dict[str, Any]:
    return next(panel for panel in data["panels"] if panel["type"] == "timeseries")


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["panels"][0].update(gridpos=d["panels"][0].pop("gridPos")), "panels[0].gridpos: not in the schema"),
    (lambda d: timeseries(d)["options"].update(lengend={}), "options.lengend: not in the schema"),
    (lambda d: timeseries(d)["options"]["legend"].update(displayMode="tabular"), "'tabular' is not one of"),
    (lambda d: timeseries(d)["fieldConfig"]["defaults"]["custom"].update(drawStyle="curve"),
     "'curve' is not one of"),
    (lambda d: timeseries(d)["fieldConfig"]["defaults"]["thresholds"].update(mode="relative"),
     "'relative' is not one of"),
    (lambda d: d.update(graphTooltip="shared"), "graph_tooltip: 'shared' is not one of"),
    (lambda d: timeseries(d).update(definition="x"), ".definition: not in the schema"),  # only a variable's
])
def test_the_check_catches_what_grafana_would_not_know(change: Any, problem: str) -> None:
    data = json.loads(DASHBOARD.read_text())
    change(data)
    assert any(problem in found for found in check(data)), check(data)
