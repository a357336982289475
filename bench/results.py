"""A sweep's records in its run directory (``records.run`` names the files): ``results.jsonl``, appended
atomically, and ``results.csv``.

Appending goes through ``records.append_jsonl`` (one locked, fsynced line per record); reading
through ``records.read_jsonl``, which skips a torn last line with a warning. Where a cell was
measured more than once (``--force``), its latest record counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from records import (
    RESULTS,
    append_jsonl,
    flatten_env,
    latest_records,
    read_jsonl,
    read_jsonl_numbered,
    record_problem,
    write_results_csv,
)


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


class DamagedRecordError(Exception):
    """A line of ``results.jsonl`` that parses but is not a record the runner can resume from;
    ``str()`` is the one line."""


def check_resumable(run_dir: Path) -> None:
    """Raise ``DamagedRecordError`` naming the first record of the run that does not fit the record
    schema (``records.record_problem``; a NaN or infinite figure is a measurement, not damage): a
    resume would count its cell as measured, or trip over it."""
    path = Path(run_dir) / RESULTS
    for line, row in read_jsonl_numbered(path)[0]:
        if "cell_id" in row and (problem := record_problem(row, finite=False)) is not None:
            raise DamagedRecordError(f"{path}: line {line} is not a record this run can resume from "
                                     f"({problem}); remove or repair that line, or use another --run-id")


def to_frame(records: list[dict]):
    """A tidy table: one row per record, ``env`` flattened to ``env_<key>`` columns."""
    import pandas as pd

    return pd.DataFrame([flatten_env(record) for record in records])


def write_csv(run_dir: Path) -> Path:
    """``results.csv`` regenerated from ``results.jsonl`` (``records.write_results_csv``)."""
    return write_results_csv(run_dir)
