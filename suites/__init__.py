"""Suites as data: which models, sizes, modes and lengths a sweep measures, per device.

A ``Suite`` holds one ``Sweep`` per device kind (``cpu``, ``cuda``); the command line picks the
device (CUDA when available), starts from that sweep and overrides fields with its options.
``Sweep.cells`` expands it into ``bench.cells.Cell`` objects. Cells a default sweep leaves out to fit
its time budget are listed in ``Sweep.drop`` with the reason; giving ``--lengths`` or ``--models``
explicitly measures them anyway.
"""

from __future__ import annotations

from suites.definition import FAMILY_NAMES, Drop, K, Suite, Sweep
from suites.memory import MEMORY
from suites.scaling import SCALING
from suites.throughput import THROUGHPUT

__all__ = ["FAMILY_NAMES", "K", "Drop", "Suite", "Sweep", "suites", "get_suite"]


def suites() -> dict[str, Suite]:
    """Every suite of the sweeps, by name."""
    return {suite.name: suite for suite in (MEMORY, THROUGHPUT, SCALING)}


def get_suite(name: str) -> Suite:
    known = suites()
    if name not in known:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(known)}")
    return known[name]
