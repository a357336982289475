"""The run directory's files: ``results.jsonl`` (appended atomically), ``results.csv``, ``run.json``.

Appending takes an exclusive lock and writes one whole line in one ``write`` followed by fsync, so a
record is either entirely there or not at all. A runner killed mid-write can still leave a torn
last line; readers skip lines that do not parse, and the next append starts on a fresh line. Where a
cell was measured more than once (``--force``), its latest record counts.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

RESULTS = "results.jsonl"
CSV = "results.csv"
RUN = "run.json"


def append_record(run_dir: Path, record: dict) -> None:
    line = (json.dumps(record, sort_keys=False) + "\n").encode()
    fd = os.open(Path(run_dir) / RESULTS, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn line from a killed writer stays alone (and is skipped)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_records(run_dir: Path, latest: bool = True) -> list[dict]:
    """Records of a run, in file order; with ``latest``, one per cell_id (its last record)."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return []
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                print(f"warning: {path}:{number}: skipping a line that does not parse "
                      "(a run killed while writing?)", file=sys.stderr)
                continue
            if isinstance(record, dict) and "cell_id" in record:
                records.append(record)
    if latest:
        by_id = {r["cell_id"]: r for r in records}
        records = list(by_id.values())
    return records


def to_frame(records: list[dict]):
    """A tidy table: one row per record, ``env`` flattened to ``env_<key>`` columns."""
    import pandas as pd

    rows = []
    for record in records:
        row = {k: v for k, v in record.items() if k != "env"}
        row.update({f"env_{k}": v for k, v in (record.get("env") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def write_csv(run_dir: Path) -> Path:
    path = Path(run_dir) / CSV
    tmp = path.with_name(CSV + ".tmp")
    to_frame(read_records(run_dir)).to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def write_json(path: Path, data: dict) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
