"""Request ids for calls that bring none: 32 random hex digits (128 random bits, no version field).

``os.urandom`` is a system call that lets go of the interpreter lock, and on a busy server every
such hand-off is a thread switch; so each thread draws random bytes for many ids at once and
slices them. The ids stay unpredictable (the kernel's randomness, not a seeded generator): an id
is what Feedback matches, and guessing one would let a caller judge someone else's prediction.
"""

from __future__ import annotations

import os
import threading

_IDS_PER_DRAW = 256


class _Draw(threading.local):
    def __init__(self) -> None:
        self.pool = b""
        self.offset = 0


_draw = _Draw()


def new_request_id() -> str:
    draw = _draw
    if draw.offset >= len(draw.pool):
        draw.pool, draw.offset = os.urandom(16 * _IDS_PER_DRAW), 0
    start = draw.offset
    draw.offset = start + 16
    return draw.pool[start:start + 16].hex()
