"""The files between the runner and a worker: ``WorkerSpec`` (runner -> worker) and ``WorkerResult``
(worker -> runner), both JSON, both written atomically.

The worker rewrites its result at each stage (``building``, ``measuring``, ``counting flops``, ``done``), so a
runner that had to kill it still reads the parameter counts, memory base and peak it reached.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.cells import Cell
from bench.settings import Measurement
from records import Record, write_json

#: the fields a worker may report: everything of a record but the cell's identity and the run's
MEASURED_FIELDS = frozenset(Record.__dataclass_fields__) - {
    "run_id", "suite", "cell_id", "family", "size", "model", "mode", "input_len", "target_len",
    "new_tokens", "batch", "dtype", "device", "threads", "inputs", "started_at", "wall_s", "overhead_s",
    "contention", "workload", "workload_args"}


@dataclass(frozen=True)
class WorkerSpec:
    """What ``python -m bench.worker SPEC.json`` measures and where it writes its result."""
    cell: Cell
    measurement: Measurement  #: how to measure it (``bench.settings``)
    result: str  #: path of the WorkerResult file
    parent: int | None = None  #: the runner's pid: the worker dies with it
    address_space_bytes: int | None = None  #: RLIMIT_AS of the worker; None: unlimited

    def write(self, path: Path) -> None:
        write_json(path, {**asdict(self), "cell": self.cell.to_json()}, indent=None)

    @classmethod
    def read(cls, path: str | Path) -> WorkerSpec:
        data = json.loads(Path(path).read_text())
        return cls(**{**data, "cell": Cell.from_json(data["cell"]),
                      "measurement": Measurement(**data["measurement"])})


@dataclass
class WorkerResult:
    """What the worker knows so far: its ``stage`` and the measured fields of the record."""
    stage: str = "measuring"  #: building (the model and batch), measuring, counting flops, or done
    fields: dict = field(default_factory=dict)  #: keys among MEASURED_FIELDS

    def update(self, measured: dict) -> None:
        unknown = set(measured) - MEASURED_FIELDS
        if unknown:
            raise KeyError(f"not measured fields of a record: {', '.join(sorted(unknown))}")
        self.fields.update(measured)

    def write(self, path: str | Path) -> None:
        write_json(path, asdict(self), indent=None)

    @classmethod
    def read(cls, path: str | Path) -> WorkerResult | None:
        """The result file, or None when the worker wrote none (or half of one: it cannot)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
