"""The run directory's files: ``results.jsonl`` (appended atomically), ``results.csv``, ``run.json``,
``flops.jsonl``.

Appending goes through ``records.append_jsonl`` (one locked, fsynced line per record); reading
through ``records.read_jsonl``, which skips a torn last line with a warning. Where a cell was
measured more than once (``--force``), its latest record counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from records import (
    RESULTS,
    RESULTS_CSV,
    append_jsonl,
    flatten_env,
    latest_records,
    read_jsonl,
    write_results_csv,
)

CSV = RESULTS_CSV
RUN = "run.json"
#: FLOP counts of model parts, reused by the run's cells and resumes (``bench.flops.FlopCache``)
FLOPS = "flops.jsonl"


def append_record(run_dir: Path, record: dict) -> None:
    append_jsonl(Path(run_dir) / RESULTS, record)


#: warnings already printed by this process: a torn line is reported once per run, not per read
_WARNED: set[str] = set()


def read_records(run_dir: Path, latest: bool = True) -> list[dict]:
    """Records of a run, in file order; with ``latest``, one per cell_id (its last record). A line
    that does not parse is skipped with a warning, printed once per process."""
    rows, warnings = read_jsonl(Path(run_dir) / RESULTS)
    for warning in warnings:
        if warning not in _WARNED:
            _WARNED.add(warning)
            print(f"warning: {warning}", file=sys.stderr)
    return latest_records(rows) if latest else [row for row in rows if "cell_id" in row]


def to_frame(records: list[dict]):
    """A tidy table: one row per record, ``env`` flattened to ``env_<key>`` columns."""
    import pandas as pd

    return pd.DataFrame([flatten_env(record) for record in records])


def write_csv(run_dir: Path) -> Path:
    """``results.csv`` regenerated from ``results.jsonl`` (``records.write_results_csv``)."""
    return write_results_csv(run_dir)
