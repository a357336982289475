"""Measurement engine: cells, an isolated runner and worker, workloads, trackers, results, env, flops.

Each cell is measured in its own process (``bench.worker``, spoken to through ``bench.protocol``) and
ends as one ``records.Record`` in ``<run-dir>/results.jsonl``. The engine imports ``records`` and
``models`` only; the programs (``python -m bench.memory`` etc., thin shims here) live in ``cli``.
"""

from bench.cells import DTYPES, MODES, STATUSES, Cell
from bench.runner import run_cell
from bench.settings import Measurement, Settings, Supervision
from bench.sweep import run_sweep

__all__ = ["DTYPES", "MODES", "STATUSES", "Cell", "Measurement", "Settings", "Supervision", "run_cell",
           "run_sweep"]
