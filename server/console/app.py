"""The console's pages: login, the queue, a case; and the three actions on a case (claim, resolve, dismiss).

Every page needs a login: a token the server accepts for the ``review`` role (from ``--tokens-file`` or a
JWT), or, when the server has no tokens, the console's own token printed at start-up (then the reviewer
gives a name). The token is kept in an HttpOnly, SameSite=Strict cookie and checked on every request, so a
revoked token logs its holder out at once and another site cannot post a form as the reviewer.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from smallguard.server.console.highlight import highlight
from smallguard.server.core.review import ReviewQueue, input_text, truth_of
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.errors import GuardError
from smallguard.server.domain.predictions import ReasonCode
from smallguard.server.store.review_cases import CLAIMED, OPEN, STATES, CaseRow

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE, NAME_COOKIE = "smallguard_console_token", "smallguard_console_name"


@dataclass(frozen=True, slots=True)
class Login:
    """How the console checks a token: ``check(token)`` is the reviewer's name, "" for the console's shared
    token (the reviewer then gives a name), None for a token it refuses."""

    check: Callable[[str], str | None]

    @classmethod
    def shared(cls, token: str) -> Login:
        return cls(lambda given: "" if hmac.compare_digest(given.encode(), token.encode()) else None)


def console_app(queue: ReviewQueue, specs: Callable[[], Mapping[str, BundleSpec]], login: Login) -> Starlette:
    """The console over ``queue``; ``specs()`` says each loaded model's labels and fields (a reload changes
    them)."""
    pages = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    pages.filters["ago"] = _ago

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(pages.get_template(name).render(**values), status_code=status)

    def reviewer(request: Request) -> str | None:
        name = login.check(request.cookies.get(TOKEN_COOKIE, ""))
        if name is None:
            return None
        return name or request.cookies.get(NAME_COOKIE, "")

    def login_page(request: Request, problem: str = "", status: int = 200) -> HTMLResponse:
        return render("login.html", status, problem=problem, next=request.query_params.get("next", "/"))

    async def login_form(request: Request) -> Response:
        if request.method == "GET":
            return login_page(request)
        form = await request.form()
        token, name = str(form.get("token", "")).strip(), str(form.get("name", "")).strip()
        checked = login.check(token)
        if checked is None:
            return login_page(request, "That token is not accepted: it must hold the 'review' role.", 401)
        if checked == "" and not name:
            return login_page(request, "Give your name: the console's token is shared, the cases need a reviewer.",
                              400)
        target = str(form.get("next", "/"))
        response = RedirectResponse(target if target.startswith("/") else "/", status_code=303)
        for cookie, value in ((TOKEN_COOKIE, token), (NAME_COOKIE, checked or name)):
            response.set_cookie(cookie, value, httponly=True, samesite="strict", max_age=12 * 3600)
        return response

    async def logout(_request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE)
        response.delete_cookie(NAME_COOKIE)
        return response

    def gate(request: Request) -> str | Response:
        """The reviewer's name, or the response that sends them to log in."""
        who = reviewer(request)
        if who is None or not who:
            if request.method == "GET":
                return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)
            return Response("log in first: /login", status_code=401)
        return who

    async def queue_page(request: Request) -> Response:
        who = gate(request)
        if isinstance(who, Response):
            return who
        params = request.query_params
        state, model, reason = params.get("state", OPEN), params.get("model", ""), params.get("reason", "")
        try:
            cases = await run_in_threadpool(queue.list, state, model, reason, 200)
            counts = await run_in_threadpool(queue.counts)
        except GuardError as error:
            return render("queue.html", 400, who=who, cases=[], totals={}, state=state, model=model, reason=reason,
                          models=sorted(specs()), reasons=[c.value for c in ReasonCode], states=STATES,
                          problem=str(error), now=time.time())
        totals: dict[str, int] = {}
        for (_model, case_state), count in counts.counts.items():
            totals[case_state] = totals.get(case_state, 0) + count
        return render("queue.html", who=who, cases=cases, totals=totals, state=state, model=model, reason=reason,
                      models=sorted(specs()), reasons=[c.value for c in ReasonCode], states=STATES, problem="",
                      now=time.time())

    async def case_page(request: Request, problem: str = "", status: int = 200) -> Response:
        who = gate(request)
        if isinstance(who, Response):
            return who
        case_id = int(request.path_params["case_id"])
        try:
            case = await run_in_threadpool(queue.get, case_id)
        except GuardError as error:
            return render("missing.html", 404, who=who, problem=str(error))
        return render("case.html", status, **_case_view(case, specs().get(case.model), who), problem=problem)

    def action(run: Callable[[int, str, Any], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            who = gate(request)
            if isinstance(who, Response):
                return who
            case_id = int(request.path_params["case_id"])
            form = await request.form()
            try:
                await run_in_threadpool(run, case_id, who, form)
            except GuardError as error:
                return await case_page(request, str(error), 409 if "case" in str(error) else 400)
            return RedirectResponse(f"/cases/{case_id}", status_code=303)
        return endpoint

    def resolve(case_id: int, who: str, form: Any) -> None:
        case = queue.get(case_id)
        spec = specs().get(case.model)
        if spec is not None and spec.is_extractor:
            queue.resolve(case_id, who, fields={name: str(form.get(f"field.{name}", "")).strip()
                                                for name in spec.fields}, note=str(form.get("note", "")))
        else:
            queue.resolve(case_id, who, label=str(form.get("label", "")), note=str(form.get("note", "")))

    routes = [
        Route("/", queue_page),
        Route("/login", login_form, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/cases/{case_id:int}", case_page),
        Route("/cases/{case_id:int}/claim", action(lambda case_id, who, _form: queue.claim(case_id, who)),
              methods=["POST"]),
        Route("/cases/{case_id:int}/resolve", action(resolve), methods=["POST"]),
        Route("/cases/{case_id:int}/dismiss", action(
            lambda case_id, who, form: queue.dismiss(case_id, who, str(form.get("note", "")))), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)


def _case_view(case: CaseRow, spec: BundleSpec | None, who: str) -> dict[str, Any]:
    """What the case page shows: the text with the answer's values marked, the verifiers that failed, each tier's
    answer, and the form's starting values (the reviewer's truth once resolved, else the answer given)."""
    text, tensors = input_text(case)
    prediction = case.details.get("prediction") or {}
    values = {name: value for name, (value, _confidence) in prediction.get("fields", {}).items()}
    pieces, found = highlight(text, values) if text else ([], set())
    label, fields = truth_of(case) if case.truth is not None else ("", {})
    return {
        "who": who, "case": case, "text": text, "tensors": tensors, "pieces": pieces, "found": found,
        "image": _image(case.details.get("input", {}).get("record", {})) if not text else [],
        "lease_left": max(0, int((case.lease_until or 0) - time.time())),
        "prediction": prediction, "fields": list(spec.fields) if spec else list(values),
        "labels": list(spec.labels) if spec else [], "extractor": bool(spec and spec.is_extractor),
        "failed": [v for v in case.details.get("verifiers", []) if v["status"] in ("failed", "error")],
        "tiers": case.details.get("tiers", []), "reasons": case.details.get("reasons", []),
        "start": fields or {name: value or "" for name, value in values.items()},
        "start_label": label or prediction.get("label") or "",
        "mine": case.state == CLAIMED and case.claimed_by == who, "open": case.state == OPEN,
    }


def _image(record: Mapping[str, Any]) -> list[list[float]]:
    """A single tensor whose values make a square of up to 64 x 64 (an image, such as the digits' 8 x 8 pixels) as
    rows of grey levels from 0 (white) to 1 (black); [] for anything else."""
    if len(record) != 1:
        return []
    values = next(iter(record.values()))
    side = int(len(values) ** 0.5) if isinstance(values, list) else 0
    if not 2 <= side <= 64 or side * side != len(values) or not all(isinstance(v, int | float) for v in values):
        return []
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return [[(v - low) / span for v in values[row * side:(row + 1) * side]] for row in range(side)]


def _ago(at: float) -> str:
    seconds = max(0, int(time.time() - at))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
