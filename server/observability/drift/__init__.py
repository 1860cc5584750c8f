"""Drift: a reference profile of the calibration data, and live windows compared with it.

``reference`` builds, writes and checks reference.json; ``monitor`` keeps each model's window and
its scores; ``psi`` and ``features`` are the measure and what it is measured on.
"""

from smallguard.server.observability.drift.monitor import (
    DriftMonitor,
    DriftSnapshot,
    SignalScore,
    State,
    load_monitor,
    off,
)
from smallguard.server.observability.drift.reference import (
    REFERENCE_FILE,
    DriftReferenceError,
    Reference,
    build_reference,
    load_reference,
    parse_reference,
    write_reference,
    write_reference_beside,
)

__all__ = [
    "REFERENCE_FILE",
    "DriftMonitor",
    "DriftReferenceError",
    "DriftSnapshot",
    "Reference",
    "SignalScore",
    "State",
    "build_reference",
    "load_monitor",
    "load_reference",
    "off",
    "parse_reference",
    "write_reference",
    "write_reference_beside",
]
