"""The server caps glibc's malloc arenas (``cli.cap_malloc_arenas``): counted with glibc's own report, in a process
of its own (the cap lasts for the life of a process), against the same threads without the cap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Eight threads that each allocate through malloc (objects over pymalloc's 512 bytes, under the mmap threshold)
# while the others hold theirs, then glibc's malloc_info: one <heap> element per arena.
_THREADS = """
import ctypes, sys, tempfile, threading
from smallguard.server.cli import cap_malloc_arenas
capped = cap_malloc_arenas() if sys.argv[1] == "cap" else False
barrier = threading.Barrier(8)
def allocate():
    held = [bytearray(20_000) for _ in range(50)]
    barrier.wait()
    return held
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    handle = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(handle))
    libc.fclose(ctypes.c_void_p(handle))
    print(capped, open(report.name).read().count("<heap nr="))
"""


def _arenas(how: str, env: dict[str, str]) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", _THREADS, how], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    capped, arenas = done.stdout.split()
    return capped, int(arenas)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc: the cap does nothing elsewhere")
def test_the_server_keeps_two_malloc_arenas_unless_told_otherwise() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    assert _arenas("cap", env) == ("True", 2)
    uncapped = _arenas("no cap", env)[1]
    assert uncapped > 2  # what the cap prevents: an arena for each thread that allocates (up to 8 per core)
    for operator in ({"MALLOC_ARENA_MAX": "3"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=3"}):
        assert _arenas("cap", env | operator) == ("False", min(3, uncapped))  # the operator's word stands
