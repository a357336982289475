"""The run directory's files: ``results.jsonl`` (appended atomically), ``results.csv``, ``run.json``.

Appending goes through ``records.append_jsonl`` (one locked, fsynced line per record); reading
through ``records.read_jsonl``, which skips a torn last line with a warning. Where a cell was
measured more than once (``--force``), its latest record counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from records import append_jsonl, atomic_path, flatten_env, read_jsonl

RESULTS = "results.jsonl"
CSV = "results.csv"
RUN = "run.json"


def append_record(run_dir: Path, record: dict) -> None:
    append_jsonl(Path(run_dir) / RESULTS, record)


def read_records(run_dir: Path, latest: bool = True) -> list[dict]:
    """Records of a run, in file order; with ``latest``, one per cell_id (its last record)."""
    rows, warnings = read_jsonl(Path(run_dir) / RESULTS)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    records = [row for row in rows if "cell_id" in row]
    if latest:
        records = list({r["cell_id"]: r for r in records}.values())
    return records


def to_frame(records: list[dict]):
    """A tidy table: one row per record, ``env`` flattened to ``env_<key>`` columns."""
    import pandas as pd

    return pd.DataFrame([flatten_env(record) for record in records])


def write_csv(run_dir: Path) -> Path:
    path = Path(run_dir) / CSV
    with atomic_path(path) as tmp:
        to_frame(read_records(run_dir)).to_csv(tmp, index=False)
    return path
