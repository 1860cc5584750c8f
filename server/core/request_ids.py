"""Request ids for calls that bring none: 32 hex digits, the milliseconds since the epoch (12 digits)
then 80 random bits (20 digits).

Time first, as UUIDv7 orders them, for the store: every decision is a row, indexed by its request
id. Random ids put each new row at a random place in that index, so once the index outgrows the
database's page cache every row dirties a page of its own; SQLite's insert went from 9 to 17-20 us
a row past 200,000 rows (2026-12-04, one table, 256 rows a transaction), where time-ordered ids
append at the index's end and stayed at 9-10 us to a million rows. PostgreSQL's B-trees pay the
same way.

The items of a batch served over arrays get ids that name the batch instead (``new_batch_ids``): its key,
the millisecond and 64 random bits, then the item's place.

The 80 random bits keep an id unguessable: an id is what Feedback matches, and guessing one would
let a caller judge someone else's prediction; knowing the millisecond leaves 2**80 ids to try.
``os.urandom`` is a system call that lets go of the interpreter lock, and on a busy server every
such hand-off is a thread switch; so each thread draws random bytes for many ids at once and
slices them. The randomness is the kernel's, not a seeded generator's.
"""

from __future__ import annotations

import os
import threading
import time

from smallguard.server.domain.errors import InvalidInputError, printable

_IDS_PER_DRAW = 256
_RANDOM_BYTES = 10


class _Draw(threading.local):
    def __init__(self) -> None:
        self.pool = b""
        self.offset = 0
        self.millisecond = -1
        self.prefix = ""


_draw = _Draw()


def new_request_id() -> str:
    draw = _draw
    millisecond = time.time_ns() // 1_000_000
    if millisecond != draw.millisecond:
        draw.millisecond, draw.prefix = millisecond, f"{millisecond & 0xFFFF_FFFF_FFFF:012x}"
    if draw.offset >= len(draw.pool):
        draw.pool, draw.offset = os.urandom(_RANDOM_BYTES * _IDS_PER_DRAW), 0
    start = draw.offset
    draw.offset = start + _RANDOM_BYTES
    return draw.prefix + draw.pool[start:start + _RANDOM_BYTES].hex()


def new_batch_ids(count: int) -> tuple[str, list[str]]:
    """Request ids for a batch's ``count`` items that name the batch: a key of 28 hex digits (the millisecond,
    then 64 random bits) and each item's place in the batch (4 digits), so the store finds an item's decision
    from its id alone, without an index entry per item (``store.batch_records``). ("", an id each from
    ``new_request_id``) for a batch of more than 65,536 items. Knowing one item's id tells its batch's other ids,
    which only the caller that sent the batch was given; another still has 2**64 keys to guess."""
    if count > _BATCH_PLACES:
        return "", [new_request_id() for _ in range(count)]
    key = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}{os.urandom(8).hex()}"
    return key, [f"{key}{place:04x}" for place in range(count)]


_BATCH_PLACES = 1 << 16
BATCH_KEY = 28  # hex digits of a batch's key, before an item's place (4)

MAX_REQUEST_ID = 256  # characters


def checked_request_id(value: str, field: str = "request_id") -> str:
    """A request id a caller gave, or InvalidInputError. The id is stored with every decision and looked up by
    Feedback and the review queue: a control character (PostgreSQL refuses a NUL in any text) or an id of any
    length would make a row the store refuses, and one refused row would hold up the decision log's writes."""
    if len(value) > MAX_REQUEST_ID:
        raise InvalidInputError(f"{len(value)} characters; expected at most {MAX_REQUEST_ID}", field)
    return printable(value, field)
