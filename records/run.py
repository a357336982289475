"""The run directory as a contract: the names of its files, and ``run.json`` as one type (``RunInfo``).

Every suite writes run.json through ``write_run_info`` (the sweeps in ``bench.sweep``, ROUGE in
``suites.rouge.pipeline``) and every reader reads it through ``read_run_info`` (the report in
``reports.runs``, a resumed sweep, a resumed ROUGE run). On disk run.json is one JSON object: the
fields of ``RunInfo`` and, beside them, the suite's own keys (``RunInfo.details``: a sweep's cells and
models, ROUGE's dataset, tokenizer, budget, systems...).

The command was stored as ``argv`` (sweeps: the arguments, a list) and ``args`` (ROUGE: the options
parsed, a dict) before it was ``command``; ``RunInfo.from_json`` still reads both, so that old runs
build a report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from records.io import flatten_env, latest_records, read_jsonl, write_csv, write_json

RUN_JSON = "run.json"  #: what the run was: ``RunInfo``
RESULTS = "results.jsonl"  #: one ``records.Record`` per line, appended as cells end
RESULTS_CSV = "results.csv"  #: results.jsonl as a table, regenerated (``write_results_csv``)
FLOPS = "flops.jsonl"  #: FLOP counts of model parts, reused by the run's cells and resumes (bench.flops)
LOGS = "logs"  #: one log per cell, and the workers' spec and result files while they run
ROUGE = "rouge.jsonl"  #: one ``records.RougeRow`` per ROUGE system and input length
ROUGE_DOCS = "rouge_docs.jsonl"  #: per-document scores of a ROUGE run (``records.RougeDocRow``)
RELATIVE = "relative.jsonl"  #: LOCOST's ROUGE relative to each baseline's, paired bootstrap CIs
CURVES = "curves"  #: ROUGE runs: learning curves, one JSONL file per system
CAPACITY = "capacity.jsonl"  #: capacity runs: one ``records.CapacityRow`` per search, appended as each ends
CAPACITY_CSV = "capacity.csv"  #: capacity.jsonl as a table, the latest row per search
#: what makes two rows of capacity.jsonl the same search (the later one replaces the earlier)
CAPACITY_SEARCH = ("gpu", "size", "family", "mode", "model_config", "max_len", "dtype", "batch", "target_len",
                   "new_tokens")

#: where run.json kept the command before ``command``, in the order a reader prefers them
OLD_COMMAND_KEYS = ("args", "argv")


@dataclass
class RunInfo:
    """What ``run.json`` says of a run (one invocation of a suite's command, and those it resumed)."""
    suite: str  #: memory, throughput, scaling, rouge, ...
    run_id: str  #: the run directory's name when written
    #: the command line: its arguments as given (a list: the sweeps) or its options parsed (a dict: ROUGE)
    command: list | dict | None = None
    settings: dict | None = None  #: a sweep's ``bench.settings.Settings.to_json()`` (flat)
    executor: dict | None = None  #: where cells ran: ``describe()`` of a ``bench.executors`` executor
    env: dict = field(default_factory=dict)  #: ``bench.env.environment`` of the invoking host
    started_at: str | None = None  #: UTC ISO-8601
    finished_at: str | None = None  #: UTC ISO-8601; None while running or when interrupted
    #: submitit tasks by cell id (sweeps) or system (ROUGE): executor, job id, state, folder
    tasks: dict = field(default_factory=dict)
    modes: dict | None = None  #: a sweep's mode -> the models' state in it (train / eval, dropout)
    dropout: dict | None = None  #: a sweep's model -> its dropout probabilities
    #: the run.json of each earlier invocation this one resumed, oldest first
    earlier_invocations: list[RunInfo] = field(default_factory=list)
    details: dict = field(default_factory=dict)  #: the suite's own keys, stored beside the fields

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        data["earlier_invocations"] = [info.to_json() for info in self.earlier_invocations]
        return {**data, **self.details}

    @classmethod
    def from_json(cls, data: dict) -> RunInfo:
        """The run.json object ``data``, old forms included (``OLD_COMMAND_KEYS``; no suite or run id:
        empty strings). A field of an unexpected JSON type reads as its default."""
        names = {f.name for f in fields(cls)} - {"details", "earlier_invocations"}
        values = {name: data[name] for name in names if name in data and _fits(name, data[name])}
        if values.get("command") is None:
            old = [data[key] for key in OLD_COMMAND_KEYS if _fits("command", data.get(key))]
            values["command"] = old[0] if old else None
        earlier = data.get("earlier_invocations")
        stored = names | {"earlier_invocations", *OLD_COMMAND_KEYS}
        return cls(**{"suite": "", "run_id": "", **values},
                   earlier_invocations=[cls.from_json(e) for e in earlier if isinstance(e, dict)]
                   if isinstance(earlier, list) else [],
                   details={key: value for key, value in data.items() if key not in stored})


#: the JSON types each field may hold (None allowed where the default is None)
_TYPES = {"suite": str, "run_id": str, "command": (list, dict), "settings": dict, "executor": dict,
          "env": dict, "started_at": str, "finished_at": str, "tasks": dict, "modes": dict, "dropout": dict}


def earlier_invocations(previous: RunInfo | None) -> list[RunInfo]:
    """The invocations of a run before the one starting now, oldest first: ``previous`` (the run.json
    it finds, or None) and those ``previous`` had resumed."""
    if previous is None:
        return []
    return [*previous.earlier_invocations, replace(previous, earlier_invocations=[])]


def _fits(name: str, value) -> bool:
    return name not in _TYPES or isinstance(value, _TYPES[name])


def write_run_info(run_dir: Path | str, info: RunInfo) -> None:
    """Write ``<run_dir>/run.json`` (atomically: ``records.write_json``)."""
    write_json(Path(run_dir) / RUN_JSON, info.to_json())


def read_run_info(run_dir: Path | str) -> RunInfo | None:
    """``<run_dir>/run.json``, or None where there is none or it holds no JSON object. Raises
    ``UnicodeDecodeError`` for a file that is not UTF-8, ``ValueError`` (``json.JSONDecodeError``) for
    one that is not JSON, ``OSError`` for one that cannot be read."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return RunInfo.from_json(data) if isinstance(data, dict) else None


def search_key(row: dict) -> str:
    """The search a capacity.jsonl row answers (``CAPACITY_SEARCH``), as one string."""
    return json.dumps([row.get(name) for name in CAPACITY_SEARCH], sort_keys=True)


def read_capacity_rows(run_dir: Path | str) -> tuple[list[dict], list[str]]:
    """(the rows of ``<run_dir>/capacity.jsonl``, the latest per search in file order; warnings of lines
    that are not JSON objects)."""
    rows, torn = read_jsonl(Path(run_dir) / CAPACITY)
    return list({search_key(row): row for row in rows}.values()), torn


def write_capacity_csv(run_dir: Path | str) -> Path:
    """Regenerate ``<run_dir>/capacity.csv`` from ``capacity.jsonl`` (``read_capacity_rows``, ``env``
    flattened), atomically; returns its path."""
    import pandas as pd

    rows, _ = read_capacity_rows(run_dir)
    path = Path(run_dir) / CAPACITY_CSV
    write_csv(pd.DataFrame([flatten_env(row) for row in rows]), path)
    return path


def write_results_csv(run_dir: Path | str) -> Path:
    """Regenerate ``<run_dir>/results.csv`` from ``results.jsonl`` (latest record per cell, ``env``
    flattened), atomically; returns its path."""
    import pandas as pd

    rows, _ = read_jsonl(Path(run_dir) / RESULTS)
    path = Path(run_dir) / RESULTS_CSV
    write_csv(pd.DataFrame([flatten_env(row) for row in latest_records(rows)]), path)
    return path
