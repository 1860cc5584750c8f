"""``use: rule``: a business rule written as a CEL expression, no Python needed.

    - name: parts-add-up
      use: rule
      params:
        expr: subtotal + tax == total
        types: {subtotal: money, tax: money, total: money}

CEL (the Common Expression Language of Kubernetes validation, Envoy's RBAC and protovalidate), through
Google's own implementation for Python, ``cel-expr-python`` (cel-cpp underneath): it type-checks, so the
expression is compiled when the bundle loads with the bundle's fields as typed variables, and a misspelled
field or a mix of types refuses the bundle with the rule and the column.

Variables: an extractor's fields, each typed by ``types`` (default ``string``); ``fields``, the map of the
fields the model found (``'po' in fields``); a classifier's ``label`` and ``probability``; ``context``, the
request's context map; ``today``, this UTC day as a timestamp. Functions: ``money('0.30')`` (a literal amount,
in minor units), ``iso4217(code)`` (an ISO 4217 currency code).

Types: ``string``; ``money``: exact integer minor units (``scale`` decimals, default 2: "120.50" is 12050, so
``0.10 + 0.20 == 0.30`` holds, where CEL's doubles would not), and a percentage is integer arithmetic
(``discount * 5 <= subtotal``: at most 20%); ``number`` (double); ``integer``; ``date``, read with
``date_format`` (default ``%Y-%m-%d``) as a timestamp at midnight UTC.

A rule that reads a field the model did not find is SKIPPED, like the built-ins; one whose value does not read
as its type (``total: "12.3.4"`` as money) FAILED, naming it. The message shows the values the rule read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from smallguard.verifiers.builtin import ISO_4217, parse_number
from smallguard.verifiers.verifier_types import BundleInfo, CheckResult, ModelKind, Prediction

TYPES = ("string", "money", "number", "integer", "date")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')  # CEL string literals
_CEL_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_MISSING = re.compile(r"No value with name \"([^\"]+)\" found")


def _cel() -> ModuleType:
    """CEL, imported by the first rule a bundle declares: cel-cpp adds 7 MiB to a server, which every server
    would carry (the registry loads this module at start-up) whether or not a bundle has a rule."""
    from cel_expr_python import cel

    return cel


class Rule:
    """A CEL expression that must be true of the prediction (and the request's context)."""

    inline = True  # compiled once; an evaluation is a few microseconds of C++

    def __init__(self, expr: str, bundle: BundleInfo, types: Mapping[str, str] | None = None, scale: int = 2,
                 date_format: str = "%Y-%m-%d") -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ValueError("expr must be a CEL expression that is true when the prediction is right")
        if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= 8:
            raise ValueError(f"scale must be a whole number of decimals from 0 to 8, got {scale!r}")
        self.expr, self.scale, self.date_format = expr, scale, date_format
        self.extractor = bundle.kind is ModelKind.EXTRACTOR
        names = bundle.fields if self.extractor else ("label",)
        types = dict(types or {})
        unknown = sorted(set(types) - set(names))
        if unknown:
            raise ValueError(f"types names {', '.join(unknown)}, which {bundle.name} does not have; its fields: "
                             f"{', '.join(names)}")
        wrong = {name: kind for name, kind in types.items() if kind not in TYPES}
        if wrong:
            raise ValueError(f"types: {', '.join(f'{n}: {k!r}' for n, k in wrong.items())}; expected one of "
                             f"{', '.join(TYPES)}")
        self.types = {name: types.get(name, "string") for name in names}
        cel = _cel()
        self._error_type = cel.Type.ERROR
        cel_type = {"string": cel.Type.STRING, "money": cel.Type.INT, "number": cel.Type.DOUBLE,
                    "integer": cel.Type.INT, "date": cel.Type.TIMESTAMP}
        variables = {name: cel_type[kind] for name, kind in self.types.items()}
        variables.update(fields=cel.Type.Map(cel.Type.STRING, cel.Type.STRING),
                         context=cel.Type.Map(cel.Type.STRING, cel.Type.STRING), today=cel.Type.TIMESTAMP)
        if not self.extractor:
            variables["probability"] = cel.Type.DOUBLE
        env = cel.NewEnv(variables=variables, functions=[
            cel.FunctionDecl("money", [cel.Overload("money_string", return_type=cel.Type.INT,
                                                    parameters=[cel.Type.STRING], impl=self._literal)]),
            cel.FunctionDecl("iso4217", [cel.Overload("iso4217_string", return_type=cel.Type.BOOL,
                                                      parameters=[cel.Type.STRING],
                                                      impl=lambda code: code in ISO_4217)]),
        ])
        try:
            self._program = env.compile(expr)
        except RuntimeError as error:
            raise ValueError(_explain(str(error), expr, names)) from None
        if self._program.return_type() != cel.Type.BOOL:
            raise ValueError(f"expr {expr!r} gives a {self._program.return_type().name().lower()}, not a bool: a "
                             "rule says whether the prediction is right")
        read = set(_IDENTIFIER.findall(_STRING.sub("", expr)))
        self.reads = [name for name in names if name in read]  # converted, and shown on failure, in bundle order
        self._today, self._fields = "today" in read, "fields" in read

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        data: dict[str, Any] = {"context": context}
        if self._today:
            data["today"] = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        unreadable: dict[str, str] = {}
        if self.extractor:
            fields = prediction.fields
            if self._fields:
                data["fields"] = {n: f.value for n, f in fields.items() if f.value is not None and f.value.strip()}
            for name in self.reads:  # only what the rule reads is converted
                found = fields.get(name)
                text = None if found is None or found.value is None else found.value.strip()
                if not text:
                    continue
                try:
                    data[name] = self._read(text, self.types[name])
                except ValueError as problem:
                    unreadable[name] = f"{name} is {found.value!r}, {problem}"  # type: ignore[union-attr]
        else:
            data.update(label=prediction.label or "", probability=prediction.probability,
                        fields={"label": prediction.label} if prediction.label else {})
        try:
            result = self._program.eval(data=data)
            error = str(result.value()) if result.type() == self._error_type else None
        except RuntimeError as raised:
            error = str(raised)
        if error is not None:
            missing = _MISSING.search(error)
            if missing is None:  # divide by zero, overflow...: the runner reports an ERROR (fail closed)
                raise RuntimeError(f"{self.expr}: {error}")
            name = missing.group(1)
            if name in unreadable:
                return CheckResult.failed(unreadable[name])
            return CheckResult.skipped(f"{name} is missing")
        if result.value():
            return CheckResult.passed(self.expr)
        return CheckResult.failed(f"{self.expr}{self._shown(prediction)}")

    def _read(self, text: str, kind: str) -> Any:
        if kind == "string":
            return text
        if kind == "date":
            try:
                return datetime.strptime(text, self.date_format).replace(tzinfo=UTC)
            except ValueError:
                raise ValueError(f"not a date in the format {self.date_format!r}") from None
        number = parse_number(text)  # as the built-ins read numbers: exact, comma thousands groups allowed
        if number is None:
            raise ValueError("not a number")
        if kind == "number":
            return float(number)
        if kind == "integer":
            if number != number.to_integral_value():
                raise ValueError("not a whole number")
            return int(number)
        units = number.scaleb(self.scale)
        if units != units.to_integral_value():
            raise ValueError(f"not an amount with at most {self.scale} decimals")
        return int(units)

    def _literal(self, text: str) -> int:
        return self._read(text, "money")

    def _shown(self, prediction: Prediction) -> str:
        if not self.reads:
            return ""
        values = ", ".join(f"{name}={prediction.value(name)!r}" if prediction.value(name) is not None
                           else f"{name} missing" for name in self.reads)
        return f" ({values})"


def _explain(message: str, expr: str, names: tuple[str, ...]) -> str:
    """CEL's compile errors as one line each: the column, the problem, and for a misspelled field the fields."""
    problems = []
    for line, column, problem in _CEL_ERROR.findall(message):
        problem = problem.strip()
        where = f"column {column}" if line == "1" else f"line {line}, column {column}"
        if "undeclared reference" in problem:
            problem += f"; expected one of the bundle's fields ({', '.join(names)}), fields, context or today"
        if "(int, double)" in problem or "(double, int)" in problem:
            problem += ("; money is exact integer minor units: write integer arithmetic (a 20% limit: "
                        "discount * 5 <= subtotal), or money('0.30') for an amount")
        problems.append(f"{where}: {problem}")
    return f"expr {expr!r}: " + "; ".join(problems or [message.strip().splitlines()[0]])
