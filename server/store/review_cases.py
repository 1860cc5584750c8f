"""The review queue's queries: open a case, list the queue, claim under a lease, close with a truth or a
dismissal. Every change of state is one conditional UPDATE, so two reviewers (in any process or replica)
claiming one case at once cannot both win; an expired lease makes a claimed case open again without any
sweeper.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update

from smallguard.server.store.records import Store
from smallguard.server.store.schema import review_cases as cases

OPEN, CLAIMED, RESOLVED, DISMISSED = "open", "claimed", "resolved", "dismissed"
STATES = (OPEN, CLAIMED, RESOLVED, DISMISSED)


@dataclass(frozen=True, slots=True)
class CaseRow:
    """A review case as stored; ``state`` is as of ``now`` (a claim whose lease expired is open)."""

    id: int
    request_id: str
    model: str
    version: str
    kind: str
    reason: str
    state: str
    opened_at: float
    claimed_by: str | None
    lease_until: float | None
    closed_by: str | None
    closed_at: float | None
    truth: Any  # a label, or {field: value}; None until resolved
    note: str | None
    details: dict[str, Any]


class ReviewCases:
    """The review_cases table of ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def open(self, *, request_id: str, model: str, version: str, kind: str, reason: str, details: dict[str, Any],
             now: float) -> int:
        """A new open case (committed before it returns: the caller is told a person will look); its id."""
        with self.store.writing() as connection:
            return int(connection.execute(cases.insert().values(
                request_id=request_id, model=model, version=version, kind=kind, reason=reason, state=OPEN,
                opened_at=now, details=json.dumps(details, ensure_ascii=False, default=float)
            ).returning(cases.c.id)).scalar_one())

    def get(self, case_id: int, now: float) -> CaseRow | None:
        with self.store.reading() as connection:
            row = connection.execute(select(cases).where(cases.c.id == case_id)).first()
        return None if row is None else _case(row, now)

    def for_request(self, request_id: str, now: float) -> CaseRow | None:
        """The first case opened for ``request_id`` (as feedback judges the first decision made for an id)."""
        with self.store.reading() as connection:
            row = connection.execute(select(cases).where(cases.c.request_id == request_id)
                                     .order_by(cases.c.id).limit(1)).first()
        return None if row is None else _case(row, now)

    def queue(self, now: float, *, state: str = OPEN, model: str = "", reason: str = "", limit: int = 100,
              after_id: int = 0) -> list[CaseRow]:
        """Cases in ``state`` (as of ``now``), oldest first, optionally of one model and first reason."""
        query = select(cases).where(_in_state(state, now))
        if model:
            query = query.where(cases.c.model == model)
        if reason:
            query = query.where(cases.c.reason == reason)
        if after_id:
            query = query.where(cases.c.id > after_id)
        with self.store.reading() as connection:
            rows = connection.execute(query.order_by(cases.c.opened_at, cases.c.id).limit(limit)).all()
        return [_case(row, now) for row in rows]

    def counts(self, now: float) -> dict[tuple[str, str], tuple[int, float]]:
        """(model, state) -> (cases, the oldest one's opened_at), states as of ``now``."""
        state = _state_expression(now)
        with self.store.reading() as connection:
            rows = connection.execute(select(cases.c.model, state.label("state"), func.count(),
                                             func.min(cases.c.opened_at))
                                      .group_by(cases.c.model, state)).all()
        return {(model, s): (int(count), float(oldest)) for model, s, count, oldest in rows}

    def claim(self, case_id: int, reviewer: str, lease_s: float, now: float) -> bool:
        """Claim an open case (or renew one's own claim) until ``now + lease_s``; False when that is not possible."""
        with self.store.writing() as connection:
            changed = connection.execute(update(cases).where(
                cases.c.id == case_id,
                or_(cases.c.state == OPEN,
                    and_(cases.c.state == CLAIMED, or_(cases.c.lease_until < now, cases.c.claimed_by == reviewer))),
            ).values(state=CLAIMED, claimed_by=reviewer, lease_until=now + lease_s)).rowcount
        return changed == 1

    def close(self, case_id: int, reviewer: str, state: str, now: float, *, truth: Any = None,
              note: str = "") -> bool:
        """Resolve or dismiss a case ``reviewer`` holds under a lease that has not expired; False otherwise."""
        with self.store.writing() as connection:
            changed = connection.execute(update(cases).where(
                cases.c.id == case_id, cases.c.state == CLAIMED, cases.c.claimed_by == reviewer,
                cases.c.lease_until >= now,
            ).values(state=state, closed_by=reviewer, closed_at=now, lease_until=None, note=note or None,
                     truth=None if truth is None else json.dumps(truth, ensure_ascii=False))).rowcount
        return changed == 1

    def resolved(self, model: str = "", after_id: int = 0, limit: int = 1000) -> list[CaseRow]:
        """Resolved cases, oldest first (what export-labels writes)."""
        query = select(cases).where(cases.c.state == RESOLVED, cases.c.id > after_id)
        if model:
            query = query.where(cases.c.model == model)
        with self.store.reading() as connection:
            rows = connection.execute(query.order_by(cases.c.id).limit(limit)).all()
        return [_case(row, 0.0) for row in rows]


def _in_state(state: str, now: float) -> Any:
    if state == OPEN:
        return or_(cases.c.state == OPEN, and_(cases.c.state == CLAIMED, cases.c.lease_until < now))
    if state == CLAIMED:
        return and_(cases.c.state == CLAIMED, cases.c.lease_until >= now)
    return cases.c.state == state


def _state_expression(now: float) -> Any:
    return case((and_(cases.c.state == CLAIMED, cases.c.lease_until < now), literal(OPEN)), else_=cases.c.state)


def _case(row: Any, now: float) -> CaseRow:
    state = row.state
    if state == CLAIMED and row.lease_until is not None and row.lease_until < now:
        state = OPEN
    return CaseRow(row.id, row.request_id, row.model, row.version, row.kind, row.reason, state, row.opened_at,
                   row.claimed_by if state == CLAIMED or row.state in (RESOLVED, DISMISSED) else None,
                   row.lease_until if state == CLAIMED else None, row.closed_by, row.closed_at,
                   None if row.truth is None else json.loads(row.truth), row.note, json.loads(row.details))
