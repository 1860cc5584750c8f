"""The review console in a real browser (Debian's chromium, driven by Playwright): log in with a token, open a
case from the queue, claim it and correct the fields from the keyboard, resolve; the case and the Feedback
tally change. And the doors stay shut without the right token."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator

import grpc
import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import MODELS, free_port, serving

pytestmark = pytest.mark.e2e

ADMIN, ALICE, CALLER = "admin-token-1", "alice-token-2", "caller-token-3"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def _entry(name: str, token: str, roles: list[str]) -> str:
    return f"  - {{name: {name}, sha256: {hashlib.sha256(token.encode()).hexdigest()}, roles: {roles}}}\n"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, guard_pb2_grpc.GuardStub, list]]:
    """`smallguard serve` with tokens and the console, and an invoice extractor whose escalations go to people;
    the escalated requests of a few invoices in layouts it never saw."""
    root = tmp_path_factory.mktemp("console")
    bundle = root / "models" / "invoice-extractor"
    shutil.copytree(MODELS / "invoice-extractor", bundle, ignore=shutil.ignore_patterns("data", "report"))
    text = (bundle / "bundle.yaml").read_text()
    text = text.split("\nescalation:")[0] + "\nescalation:\n  - {name: people, kind: review, lease_seconds: 600}\n"
    (bundle / "bundle.yaml").write_text(text)
    tokens = root / "tokens.yaml"
    tokens.write_text("tokens:\n" + _entry("root", ADMIN, ["admin"]) + _entry("alice", ALICE, ["review"])
                      + _entry("checkout", CALLER, ["predict"]))
    port, console_port = free_port(), free_port()
    with serving("--model-repository", str(root / "models"), "--tokens-file", str(tokens), "--console-port",
                 str(console_port), "--store", f"sqlite:///{root / 'store.sqlite3'}", port=port), \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        auth = [("authorization", f"Bearer {ADMIN}")]
        examples = [json.loads(line) for line in
                    (MODELS / "invoice-extractor" / "data" / "unseen.jsonl").read_text().splitlines()[:20]]
        cases = []
        for example in examples:
            response = stub.Predict(pb.PredictRequest(model="invoice-extractor", text=example["text"]), timeout=30,
                                    metadata=auth)
            if response.review_case:
                cases.append((response, example))
        assert len(cases) >= 2, "the unseen layouts should send some invoices to review"
        yield f"http://127.0.0.1:{console_port}", stub, cases


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield browser.new_page()
        browser.close()


def test_a_reviewer_resolves_a_case_from_the_keyboard_and_the_tally_counts_it(console, page: Page) -> None:
    url, stub, cases = console
    response, example = cases[0]
    case_id = response.review_case
    auth = [("authorization", f"Bearer {ADMIN}")]

    page.goto(f"{url}/cases/{case_id}")  # not logged in: the login page, which comes back here
    expect(page.locator("h1")).to_have_text("Log in")
    expect(page.locator("#token")).to_be_focused()  # autofocus: given at the page's first rendering, not its parsing
    page.keyboard.type(ALICE)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text(f"Case #{case_id}")
    expect(page.locator(".who")).to_contain_text("alice")
    expect(page.locator(".status")).to_contain_text("open")
    marked = [(f.name, f.value) for f in response.extraction.fields if f.value and f.value in example["text"]]
    assert marked
    for name, value in marked:  # each value the model found is marked where the text has it
        expect(page.locator(f'mark[data-field="{name}"]').first).to_have_text(value)
    expect(page.locator("tr[data-tier]")).to_have_count(len(response.tiers) - 1)  # every tier but the review

    expect(page.get_by_role("button", name="Claim this case")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".status")).to_contain_text("claimed by alice")
    truth = {name: value or "" for name, value in example["fields"].items()}
    expect(page.locator(f"#field-{next(iter(truth))}")).to_be_focused()
    for name in truth:  # Tab walks the form in order
        page.keyboard.press("Control+a")
        page.keyboard.type(truth[name])
        page.keyboard.press("Tab")
    page.keyboard.type("corrected from the document")  # the note
    page.keyboard.press("Enter")
    expect(page.locator(".status")).to_contain_text("resolved by alice")

    case = stub.GetCase(pb.GetCaseRequest(id=case_id), timeout=10, metadata=auth)
    assert (case.state, case.closed_by, dict(case.fields), case.note) == (
        "RESOLVED", "alice", truth, "corrected from the document")
    feedback = stub.GetModel(pb.GetModelRequest(name="invoice-extractor"), timeout=10, metadata=auth).feedback
    assert feedback.matched == 1
    # the queue no longer lists it as open, and counts it as resolved
    page.goto(f"{url}/?state=resolved")
    expect(page.locator(f'tr[data-case="{case_id}"]')).to_have_count(1)
    expect(page.locator('[data-count="resolved"]')).to_have_text("1")


def test_the_console_is_shut_without_a_token_that_holds_the_review_role(console) -> None:
    url, stub, cases = console
    case_id = cases[-1][0].review_case
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
        assert client.get("/").status_code == 303 and client.get("/").headers["location"].startswith("/login")
        assert client.post(f"/cases/{case_id}/claim").status_code == 401
        refused = client.post("/login", data={"token": "wrong", "next": "/"})
        assert refused.status_code == 401 and "not accepted" in refused.text
        caller = client.post("/login", data={"token": CALLER, "next": "/"})  # predict only: no review role
        assert caller.status_code == 401
        client.cookies.clear()
        assert client.post("/login", data={"token": ALICE, "next": "/"}).status_code == 303
        queue = client.get("/")
        assert queue.status_code == 200 and f'data-case="{case_id}"' in queue.text
    assert stub.GetCase(pb.GetCaseRequest(id=case_id), timeout=10,
                        metadata=[("authorization", f"Bearer {ADMIN}")]).state == "OPEN"
