"""Measurement engine: cells, trackers, an isolated runner, and the suites' command lines.

``python -m bench.memory`` and ``python -m bench.throughput`` run the suites in ``suites``; each cell
is measured in its own process (``bench.worker``) and ends as one record in
``reports/out/<run-id>/results.jsonl``.
"""

from bench.cells import DTYPES, MODES, STATUSES, Cell
from bench.runner import Settings, run_cell, run_sweep

__all__ = ["DTYPES", "MODES", "STATUSES", "Cell", "Settings", "run_cell", "run_sweep"]
