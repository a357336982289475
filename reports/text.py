"""How numbers and measurement conditions are written in the report (one home for the wording)."""

from __future__ import annotations

import pandas as pd

DASH = "–"


def is_missing(value) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def integer(value) -> str:
    return DASH if is_missing(value) else f"{int(value):,}"


def number(value, digits: int = 0) -> str:
    return DASH if is_missing(value) else f"{float(value):,.{digits}f}"


def percent(value, digits: int = 1) -> str:
    return DASH if is_missing(value) else f"{float(value):.{digits}f}%"


def exponent(slope, low=None, high=None) -> str:
    if is_missing(slope):
        return DASH
    if is_missing(low) or is_missing(high):
        return f"{slope:.2f} (no CI: < 3 points)"
    return f"{slope:.2f} [{low:.2f}, {high:.2f}]"


def saving(percent_less: float) -> str:
    """LOCOST's saving against a baseline: '70.0% less', or '9.4% more' when LOCOST used more."""
    return f"{percent_less:.1f}% less" if percent_less >= 0 else f"{-percent_less:.1f}% more"


def commit(value) -> str:
    """A git commit shortened to 10 hex digits, keeping a '-dirty' mark."""
    full = str(value)
    head, dirty, _ = full.partition("-dirty")
    return head[:10] + dirty


def length(value) -> str:
    """Token counts: 4,096 -> '4K', 1,048,576 -> '1M', 600,000 -> '600,000'; null -> the full document."""
    if is_missing(value):
        return "full document"
    value = int(value)
    for unit, suffix in ((2**20, "M"), (2**10, "K")):
        if value >= unit and value % unit == 0:
            return f"{value // unit:,}{suffix}"
    return f"{value:,}"


def distinct(frame: pd.DataFrame, column: str) -> list:
    if column not in frame or frame.empty:
        return []
    return [v for v in dict.fromkeys(frame[column].tolist()) if not is_missing(v)]


def _joined(values, fmt=str) -> str:
    return " / ".join(fmt(v) for v in values)


def device_names(frame: pd.DataFrame) -> str:
    """'cuda (NVIDIA H100 80GB HBM3)' or 'cpu (AMD EPYC 7B13, 2 cores)', one per distinct device."""
    names = []
    simulated = frame["simulated_gpu"] if "simulated_gpu" in frame else pd.Series(None, index=frame.index)
    for row in frame.assign(simulated_gpu=simulated).drop_duplicates(
            ["device", "env_device_name", "env_cpu_model", "simulated_gpu"]).itertuples():
        if not is_missing(row.simulated_gpu):  # no device ran it: the host's CPU computed a GPU's bytes
            names.append(f"{row.device} (simulated {row.simulated_gpu}, bench.gpusim)")
            continue
        detail = row.env_device_name if not is_missing(row.env_device_name) else row.env_cpu_model
        if row.device == "cpu" and not is_missing(row.env_cpu_model):
            detail = row.env_cpu_model + (
                "" if is_missing(row.env_cpu_count) else f", {row.env_cpu_count} cores"
            )
        names.append(f"{row.device} ({detail})" if not is_missing(detail) else str(row.device))
    return _joined(dict.fromkeys(names))


def conditions(frame: pd.DataFrame) -> str:
    """The measurement conditions of a set of records, every distinct value listed."""
    if frame is None or frame.empty:
        return ""
    parts = [device_names(frame)]
    if dtypes := distinct(frame, "dtype"):
        parts.append(_joined(dtypes))
    if batches := distinct(frame, "batch"):
        parts.append("batch " + _joined(batches, integer))
    for mode, column, words in [
        ("train", "target_len", "target tokens (train)"),
        ("generate", "new_tokens", "new tokens (generate)"),
    ]:
        if values := distinct(frame[frame["mode"].eq(mode)], column):
            parts.append(f"{_joined(values, integer)} {words}")
    if threads := distinct(frame, "threads"):
        parts.append(_joined(threads, integer) + " thread" + ("" if threads == [1] else "s"))
    for column, name in [("env_torch", "torch"), ("env_transformers", "transformers")]:
        if values := distinct(frame, column):
            parts.append(f"{name} {_joined(values)}")
    if commits := distinct(frame, "env_git_commit"):
        parts.append("commit " + _joined(commits, commit))
    if runs := distinct(frame, "run_id"):
        parts.append("run " + _joined(runs))
    return " · ".join(p for p in parts if p)


def condition_label(row) -> str:
    """Short label of one comparison's conditions (a row with the CONDITION_COLUMNS)."""
    get = row.get if hasattr(row, "get") else lambda key, default=None: getattr(row, key, default)
    device = get("device")
    name = get("env_device_name")
    simulated = get("simulated_gpu")
    parts = [
        f"simulated {simulated}" if not is_missing(simulated)
        else f"{device} ({name})" if not is_missing(name) else str(device),
        str(get("dtype")),
        f"batch {integer(get('batch'))}",
        f"size {get('size')}",
    ]
    if not is_missing(get("target_len")):
        parts.append(f"target {integer(get('target_len'))}")
    if not is_missing(get("new_tokens")):
        parts.append(f"{integer(get('new_tokens'))} new tokens")
    return ", ".join(parts)


def rouge_conditions(frame: pd.DataFrame) -> str:
    if frame is None or frame.empty:
        return ""
    parts = []
    if datasets := distinct(frame, "dataset"):
        parts.append("dataset " + _joined(datasets))
    if docs := distinct(frame, "n_docs"):
        parts.append(_joined(docs, integer) + " documents")
    if steps := distinct(frame, "train_steps"):
        parts.append(_joined(steps, integer) + " training steps")
    if tokenizers := distinct(frame, "rouge_tokenizer"):
        parts.append("ROUGE tokenizer " + _joined(tokenizers))
    parts.append("mean F1 with bootstrap 95% CI")
    return " · ".join(parts)
