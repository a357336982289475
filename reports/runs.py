"""Reading run directories (run.json, results.jsonl, rouge.jsonl) into tidy pandas frames.

This is the only place that knows the on-disk layout of a run; everything downstream sees frames:
one row per cell record (env flattened to ``env_<key>``, memory also in MiB) and one row per ROUGE
(system, input length).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

MIB = 2**20

RECORD_COLUMNS = [
    "run_id",
    "suite",
    "cell_id",
    "family",
    "size",
    "model",
    "mode",
    "input_len",
    "target_len",
    "new_tokens",
    "batch",
    "dtype",
    "device",
    "threads",
    "inputs",
    "status",
    "message",
    "params_total",
    "params_embedding",
    "params_non_embedding",
    "mem_peak_bytes",
    "mem_peak_above_base_bytes",
    "mem_base_bytes",
    "mem_reserved_bytes",
    "nvml_process_bytes",
    "nvml_device_bytes",
    "time_median_s",
    "time_min_s",
    "time_max_s",
    "time_iqr_s",
    "repeats",
    "warmup",
    "tokens_per_s",
    "generated_tokens_per_s",
    "flops",
    "flops_analytic",
    "flops_source",
    "started_at",
    "wall_s",
]
ENV_KEYS = [
    "python",
    "torch",
    "transformers",
    "device_name",
    "cpu_model",
    "cpu_count",
    "threads",
    "git_commit",
    "hostname",
    "platform",
]
BYTE_COLUMNS = [column for column in RECORD_COLUMNS if column.endswith("_bytes")]
INTEGER_COLUMNS = [
    "input_len",
    "target_len",
    "new_tokens",
    "batch",
    "threads",
    "repeats",
    "warmup",
    "params_total",
    "params_embedding",
    "params_non_embedding",
]

ROUGE_METRICS = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
ROUGE_SCORE_COLUMNS = [f"{metric}{suffix}" for metric in ROUGE_METRICS for suffix in ("", "_lo", "_hi")]
ROUGE_COLUMNS = ["system", "kind", "input_len", "n_docs", "dataset", "rouge_tokenizer", "params_total",
                 "train_steps", *ROUGE_SCORE_COLUMNS]

SUITES = ("memory", "scaling", "throughput")  # report sections, in the order their memory figures are trusted
MODES = ["train", "encode", "generate"]
INFERENCE_MODES = ["encode", "generate"]
LOCOST = "locost"

# Two cells are compared (LOCOST against a baseline) only when all of these agree.
CONDITION_COLUMNS = ["device", "env_device_name", "dtype", "batch", "target_len", "new_tokens", "size",
                     "inputs"]


def section_of(suite) -> str:
    """The report section of a suite: memory, scaling or throughput (by name; anything else: memory)."""
    return next((name for name in SUITES if str(suite).startswith(name)), "memory")


class ReportError(Exception):
    """A problem with the report's input, told to the user in one line."""


@dataclass
class Run:
    path: Path
    meta: dict
    records: pd.DataFrame  # may be empty (a ROUGE-only run)
    rouge: pd.DataFrame | None  # None when the run has no rouge.jsonl
    warnings: list[str] = field(default_factory=list)


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """JSON objects of a JSONL file; unreadable lines (a torn last write) are skipped with a warning."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows, warnings = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            where = "its last line" if number == len(lines) else f"line {number}"
            warnings.append(f"{path}: skipped {where}: not a JSON object (a torn write?)")
    return rows, warnings


def key_of(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One string per row joining ``columns``; nulls become '' so that null matches null."""
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    parts = [frame[c].astype(object).where(frame[c].notna(), "").astype(str) for c in columns]
    return pd.concat(parts, axis=1).agg("|".join, axis=1)


def records_frame(rows: list[dict]) -> pd.DataFrame:
    """Tidy frame of cell records: schema columns first, memory in MiB beside bytes, env flattened.

    A cell recorded twice in one run (a ``--force`` rerun appends) keeps its last record in file order.
    """
    flat = []
    for row in rows:
        record = {key: value for key, value in row.items() if key != "env"}
        record.update({f"env_{key}": value for key, value in (row.get("env") or {}).items()})
        flat.append(record)
    frame = pd.DataFrame(flat)
    env_columns = [f"env_{key}" for key in ENV_KEYS]
    extra = sorted(c for c in frame.columns if c not in RECORD_COLUMNS and c not in env_columns)
    frame = frame.reindex(columns=RECORD_COLUMNS + env_columns + extra)
    for column in INTEGER_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    for column in BYTE_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
        frame[column.replace("_bytes", "_mib")] = frame[column] / MIB
    for column in [
        "time_median_s",
        "time_min_s",
        "time_max_s",
        "time_iqr_s",
        "tokens_per_s",
        "generated_tokens_per_s",
        "flops",
        "flops_analytic",
        "wall_s",
    ]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["status"] = frame["status"].fillna("error")
    frame["message"] = frame["message"].fillna("")
    frame["model"] = frame["model"].where(
        frame["model"].notna(), frame["family"].astype(str) + "-" + frame["size"].astype(str)
    )
    frame["condition_key"] = key_of(frame, CONDITION_COLUMNS)
    if frame.empty:
        return frame
    cell = frame["cell_id"].astype(object).where(frame["cell_id"].notna(), frame.index.astype(str))
    frame = frame.assign(_cell=cell).drop_duplicates(["run_id", "_cell"], keep="last").drop(columns="_cell")
    return frame.sort_index().reset_index(drop=True)


def rouge_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in ROUGE_COLUMNS]
    frame = frame.reindex(columns=ROUGE_COLUMNS + extra)
    for column in ["input_len", "n_docs", "params_total", "train_steps"]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    for column in ROUGE_SCORE_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_run(path: Path | str) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such run directory")
    results, rouge = path / "results.jsonl", path / "rouge.jsonl"
    if not results.is_file() and not rouge.is_file():
        raise ReportError(f"{path}: no results.jsonl or rouge.jsonl here (not a run directory?)")
    warnings: list[str] = []
    meta: dict = {}
    if (path / "run.json").is_file():
        try:
            meta = json.loads((path / "run.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            warnings.append(f"{path / 'run.json'}: not valid JSON, ignored")
        if not isinstance(meta, dict):
            meta = {}
    rows: list[dict] = []
    if results.is_file():
        rows, skipped = read_jsonl(results)
        warnings += skipped
    rouge_rows: list[dict] = []
    if rouge.is_file():
        rouge_rows, skipped = read_jsonl(rouge)
        warnings += skipped
    if not rows and not rouge_rows:
        raise ReportError(f"{path}: no results recorded yet")
    records = records_frame(rows)
    if not records.empty:
        records["run_id"] = records["run_id"].fillna(meta.get("run_id") or path.name)
        records["suite"] = records["suite"].fillna(meta.get("suite") or "")
    return Run(
        path=path,
        meta=meta,
        records=records,
        rouge=rouge_frame(rouge_rows) if rouge_rows else None,
        warnings=warnings,
    )
