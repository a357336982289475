"""Reading run directories (run.json, results.jsonl, rouge.jsonl, relative.jsonl, curves/) into tidy
pandas frames.

This is the only place that knows the on-disk layout of a run; everything downstream sees frames:
one row per cell record (env flattened to ``env_<key>``, memory also in MiB), one row per ROUGE
(system, input length), one row per relative-quality pair of relative.jsonl (LOCOST / baseline ROUGE
with its paired bootstrap CIs, as the suite wrote them) and one row per learning-curve point.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from records import (
    CAPACITY,
    CAPACITY_FIELDS,
    CURVES,
    ENV_KEYS,
    NOT_AN_OBJECT,
    RECORD_FIELDS,
    RELATIVE,
    RESULTS,
    ROUGE,
    ROUGE_DOCS,
    ROUGE_FIELDS,
    ROUGE_METRICS,
    RUN_JSON,
    CapacityRow,
    Record,
    RougeDocRow,
    RougeRow,
    RunInfo,
    flatten_env,
    read_capacity_rows,
    read_jsonl,
    read_jsonl_numbered,
    read_run_info,
    record_problem,
    torn_warnings,
)
from records import MODES as RECORD_MODES

MIB = 2**20

# the record's columns and kinds come from the one schema (records.schema), as the writer's do
RECORD_COLUMNS = [name for name in RECORD_FIELDS if name != "env"]
BYTE_COLUMNS = Record.of_kind("bytes")
INTEGER_COLUMNS = Record.of_kind("int")
FLOAT_COLUMNS = Record.of_kind("float")
ROUGE_COLUMNS = list(ROUGE_FIELDS)

MODES = list(RECORD_MODES)
INFERENCE_MODES = ["encode", "generate"]
LOCOST = "locost"
#: The LOCOST paper's baselines: its memory claims are checked against these only. Other systems
#: (LOCOST with the S4 kernel, SPADE) appear in the savings tables, not in the verdicts.
PAPER_BASELINES = ("longt5-tglobal", "longt5-local", "led", "pegasus-x")

# Two cells are compared (LOCOST against a baseline) only when all of these agree: the versions too,
# so that a run resumed with --allow-mixed-env is never paired across them.
CONDITION_COLUMNS = ["device", "env_device_name", "produced_by", "simulated_gpu", "dtype", "batch",
                     "target_len", "new_tokens", "size", "inputs", "env_torch", "env_transformers",
                     "env_git_commit"]


class ReportError(Exception):
    """A problem with the report's input, told to the user in one line."""


@dataclass
class Run:
    path: Path
    info: RunInfo  #: its run.json (``records.RunInfo``; empty where it has none)
    records: pd.DataFrame  # may be empty (a ROUGE-only run)
    rouge: pd.DataFrame | None  # None when the run has no rouge.jsonl
    warnings: list[str] = field(default_factory=list)
    #: lines of relative.jsonl (``relative_frame``); None when the run has none
    relative: pd.DataFrame | None = None
    #: learning-curve points of curves/*.jsonl (``curves_frame``); None when the run has none
    curves: pd.DataFrame | None = None
    #: lines of results.jsonl that are not records (records.record_problem): file, line, reason
    skipped: list[dict] = field(default_factory=list)
    #: per-document ROUGE (records.RougeDocRow) when the run wrote rouge_docs.jsonl
    rouge_docs: pd.DataFrame | None = None
    #: capacity searches (records.CapacityRow, the latest per search) when the run wrote capacity.jsonl
    capacity: pd.DataFrame | None = None


def invocation_settings(run: Run) -> list[dict]:
    """The runner's settings (run.json ``settings``: budget_bytes, timeout_s, warmup, repeats, ...) of
    each invocation of a run, oldest first (a resumed run lists the earlier ones)."""
    return [info.settings for info in [*run.info.earlier_invocations, run.info] if info.settings is not None]


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
    frame = pd.DataFrame([flatten_env(row) for row in rows])
    env_columns = [f"env_{key}" for key in ENV_KEYS]
    extra = sorted(c for c in frame.columns if c not in RECORD_COLUMNS and c not in env_columns)
    frame = frame.reindex(columns=RECORD_COLUMNS + env_columns + extra)
    for column in INTEGER_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    for column in BYTE_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
        frame[column.replace("_bytes", "_mib")] = frame[column] / MIB
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["status"] = frame["status"].astype(object).fillna("error")  # object: an all-missing column is float
    frame["message"] = frame["message"].astype(object).fillna("")
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
    for column in RougeRow.of_kind("int"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    for column in RougeRow.of_kind("float"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def capacity_frame(rows: list[dict], run_id: str) -> pd.DataFrame:
    """Capacity rows (records.CapacityRow) of the run ``run_id``: schema columns first, env flattened,
    lengths and bytes numeric, ``peak_gib`` beside ``peak_bytes``."""
    frame = pd.DataFrame([flatten_env(row) for row in rows])
    frame = frame.reindex(columns=[*(c for c in CAPACITY_FIELDS if c != "env"),
                                   *(c for c in frame.columns if c not in CAPACITY_FIELDS)])
    for column in CapacityRow.of_kind("int", "bytes"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    frame["peak_gib"] = frame["peak_bytes"].astype("Float64") / 2**30
    frame["reason"] = frame["reason"].fillna("")
    return frame.assign(run_id=run_id)


def rouge_docs_frame(rows: list[dict]) -> pd.DataFrame:
    """Per-document ROUGE rows (records.RougeDocRow) with numeric scores and lengths."""
    frame = pd.DataFrame(rows).reindex(columns=[f.name for f in fields(RougeDocRow)])
    frame["input_len"] = pd.to_numeric(frame["input_len"], errors="coerce").round().astype("Int64")
    for metric in ROUGE_METRICS:
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    return frame


#: columns relative_frame copies from the rouge.jsonl row of the system (and, suffixed, the baseline)
RELATIVE_CONTEXT = ["dataset", "train_steps", "family", "size"]


def relative_frame(rows: list[dict], rouge: pd.DataFrame | None, run_id: str) -> pd.DataFrame | None:
    """relative.jsonl's rows as they are (system, baseline, input_len, n_docs, <metric>, <metric>_lo,
    <metric>_hi: ratios of means), with the run's id and, from the run's rouge.jsonl, the dataset,
    training steps, family and size of the system and (``baseline_family``, ``baseline_size``) of
    the baseline. The figures are never recomputed here."""
    if not rows:
        return None
    frame = pd.DataFrame(rows).assign(run_id=run_id)
    frame["input_len"] = pd.to_numeric(frame["input_len"], errors="coerce").round().astype("Int64")
    if rouge is None:
        return frame.reindex(columns=[*frame.columns, *RELATIVE_CONTEXT])
    context = rouge[["system", "input_len", *RELATIVE_CONTEXT]].drop_duplicates(["system", "input_len"])
    frame = frame.merge(context, on=["system", "input_len"], how="left")
    baseline = context.rename(columns={"system": "baseline", "family": "baseline_family",
                                       "size": "baseline_size"})[["baseline", "input_len", "baseline_family",
                                                                  "baseline_size"]]
    return frame.merge(baseline, on=["baseline", "input_len"], how="left")


def curves_frame(path: Path, run_id: str, warnings: list[str]) -> pd.DataFrame | None:
    """Every point of ``path``/curves/*.jsonl (system, phase, step, val_nll in nats/token, val_docs,
    train_loss), with the run's id."""
    rows = []
    for file in sorted((path / CURVES).glob("*.jsonl")):
        found, torn = read_jsonl(file)
        rows += found
        warnings += torn
    return pd.DataFrame(rows).assign(run_id=run_id) if rows else None


def load_run(path: Path | str) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: {'not a directory' if path.exists() else 'no such run directory'}")
    results, rouge = path / RESULTS, path / ROUGE
    if not any(p.is_file() for p in (results, rouge, path / CAPACITY)):
        raise ReportError(f"{path}: no {RESULTS}, {ROUGE} or {CAPACITY} here (not a run directory?)")
    warnings: list[str] = []
    info = run_info(path, warnings)
    rows, skipped, unparsed = valid_records(results, warnings)
    rouge_rows: list[dict] = []
    if rouge.is_file():
        rouge_rows, torn = read_jsonl(rouge)
        warnings += torn
    doc_rows, torn = read_jsonl(path / ROUGE_DOCS)
    warnings += torn
    capacity_rows, torn = read_capacity_rows(path)
    warnings += torn
    if not rows and not rouge_rows and not capacity_rows:
        raise nothing_readable(path, results, skipped, unparsed)
    records = records_frame(rows)
    if not records.empty:
        records["run_id"] = records["run_id"].fillna(info.run_id or path.name)
        records["suite"] = records["suite"].fillna(info.suite)
    rouge_table = rouge_frame(rouge_rows) if rouge_rows else None
    relative_rows: list[dict] = []
    if (path / RELATIVE).is_file():
        relative_rows, torn = read_jsonl(path / RELATIVE)
        warnings += torn
    return Run(
        path=path,
        info=info,
        records=records,
        rouge=rouge_table,
        warnings=warnings,
        skipped=skipped,
        rouge_docs=rouge_docs_frame(doc_rows) if doc_rows else None,
        relative=relative_frame(relative_rows, rouge_table, info.run_id or path.name),
        curves=curves_frame(path, info.run_id or path.name, warnings),
        capacity=capacity_frame(capacity_rows, info.run_id or path.name) if capacity_rows else None,
    )


def run_info(path: Path, warnings: list[str]) -> RunInfo:
    """The run.json of the run directory ``path`` (``records.read_run_info``); an empty one where it
    has none, or (with a warning) one that is not JSON. Raises ``ReportError`` for one not UTF-8."""
    try:
        info = read_run_info(path)
    except UnicodeDecodeError as exc:  # not a file of this harness, which writes UTF-8 JSON
        raise ReportError(f"{path / RUN_JSON}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"offset {exc.start:,}); repair or remove it") from None
    except ValueError:
        warnings.append(f"{path / RUN_JSON}: not valid JSON, ignored")
        info = None
    return info or RunInfo("", "")


def nothing_readable(path: Path, results: Path, skipped: list[dict], unparsed: list[int]) -> ReportError:
    """The error of a run with no record: none recorded yet, or how many lines of ``results`` could
    not be read, with the first one's number and why."""
    unreadable = sorted([(s["line"], s["reason"]) for s in skipped] + [(n, NOT_AN_OBJECT) for n in unparsed])
    if not unreadable:
        return ReportError(f"{path}: no results recorded yet")
    line, why = unreadable[0]
    return ReportError(f"{results}: none of its {len(unreadable)} lines is a readable record "
                       f"(line {line}: {why})")


def valid_records(results: Path, warnings: list[str]) -> tuple[list[dict], list[dict], list[int]]:
    """(the records of ``results.jsonl`` that fit the schema, {file, line, reason} of those that do
    not, the numbers of the lines that do not parse); each line that does not parse adds to
    ``warnings``."""
    numbered, torn = read_jsonl_numbered(results)
    warnings += torn_warnings(results, torn)
    rows, skipped = [], []
    for line, row in numbered:
        problem = record_problem(row)
        if problem is None:
            rows.append(row)
        else:
            skipped.append({"file": str(results), "line": line, "reason": problem})
    if skipped:
        warnings.append(f"{results}: skipped {len(skipped)} records that do not fit the record schema "
                        "(listed under Failures)")
    return rows, skipped, torn
