"""Run against run: did B get faster, slower or leaner than A? (``python -m reports compare RUN_A RUN_B``)

Cells of the two runs are matched on model, mode, input length, dtype, batch and settings
(``MATCH_COLUMNS``: target tokens, new tokens, threads, inputs, model-config overrides). For each
matched pair the time ratio B/A (median over median of the timed steps, ``Record.times_s``) gets a 99%
bootstrap interval and a verdict from one rule (``TIME_RULE``), and the peak memory above the weights
a ratio and a verdict against its own noise band (``MEMORY_RULE``). Cells found in one run only are
listed as such; a pair whose environments differ (torch, transformers, CPU/GPU, commit) is compared,
with what differs on its row.

The time rule is asv's (``asv.statistics``, airspeed velocity): a two-sided Mann-Whitney U test
(``scipy.stats.mannwhitneyu``) at p < 0.002 where the sample sizes allow such a p at all (the smallest
two-sided exact p of nA and nB steps is 2 / C(nA + nB, nA): 7 and 7 steps allow it, 6 and 6 do not),
plus a size threshold: a change counts only beyond a ±5% band. The interval is a percentile bootstrap
of the ratio of medians (``scipy.stats.bootstrap``, the two runs resampled independently).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from records import write_csv
from records.bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from reports import text
from reports.runs import ReportError, Run, key_of

FASTER, SLOWER, NO_CHANGE, INCONCLUSIVE = "faster", "slower", "no change", "inconclusive"
ONLY_A, ONLY_B = "only in A", "only in B"
LEANER, HEAVIER = "leaner", "heavier"
#: significance level of the Mann-Whitney U test (asv's)
ALPHA = 0.002
#: the confidence of the ratio's bootstrap interval
CONFIDENCE = 0.99
#: a time change smaller than this (relative) is no change: B/A within [1/1.05, 1.05]
NOISE_BAND = 0.05
#: memory's noise band: a peak differs beyond max(50 MiB, 10% of A's). Estimated from the README's
#: rerun of the memory suite's 1K and 4K cells (2026-11-23, 2-core CPU, small presets): 12 of 14 peaks
#: within 6%, the other two (generate peaks under 400 MiB) 25 and 47 MiB apart; one peak per cell, so a
#: run gives no spread of its own.
MEM_NOISE_MIB = 50.0
MEM_NOISE_REL = 0.10

TIME_RULE = (
    "time: the samples are the timed steps' process CPU times where both cells ran on CPU with one "
    "thread and recorded them (other jobs sharing the cores do not lengthen them), else their wall "
    f"times; B/A = median of B's timed steps / median of A's; {CONFIDENCE:.0%} CI: percentile bootstrap "
    f"of that ratio ({BOOTSTRAP_RESAMPLES} resamples, the runs resampled independently). Verdict: "
    f"faster / slower when a two-sided Mann-Whitney U test of the two runs' steps gives p < {ALPHA} and "
    f"B/A is outside the ±{NOISE_BAND:.0%} band [1/{1 + NOISE_BAND:g}, {1 + NOISE_BAND:g}]; no change when "
    f"p < {ALPHA} inside the band, or when the CI lies wholly inside it; inconclusive otherwise, and when "
    f"the repeats cannot reach p < {ALPHA} (smallest exact p 2 / C(nA + nB, nA): at least 7 and 7 "
    f"timed steps) (asv's rule)"
)
MEMORY_RULE = (
    f"memory: B/A of the peak above the weights; leaner / heavier when B differs from A by more than "
    f"max({MEM_NOISE_MIB:g} MiB, {MEM_NOISE_REL:.0%} of A), no change otherwise (the band: a rerun of "
    f"the memory suite's cells came within 6% or 47 MiB, README 2026-11-23)"
)
#: what two cells must share to be compared (settings included: a model-config override is a setting)
MATCH_COLUMNS = ["model", "mode", "input_len", "dtype", "batch", "target_len", "new_tokens", "threads",
                 "inputs", "settings"]
#: environment differences shown on a compared row: (name, record column)
ENV_DIFFERENCES = [("torch", "env_torch"), ("transformers", "env_transformers"), ("device", "device"),
                   ("device name", "env_device_name"), ("CPU", "env_cpu_model"), ("commit", "env_git_commit"),
                   ("simulated GPU", "simulated_gpu")]


@dataclass(frozen=True)
class TimeChange:
    """B against A on one cell: ``ratio`` = median(B) / median(A) with its CI, the test's p (NaN when
    not run), the verdict (``FASTER``, ``SLOWER``, ``NO_CHANGE``, ``INCONCLUSIVE``) and why."""

    ratio: float
    low: float
    high: float
    p_value: float
    verdict: str
    reason: str


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p an exact Mann-Whitney U test of n_a and n_b samples can give."""
    return min(1.0, 2 / math.comb(n_a + n_b, n_a))


def ratio_ci(a: np.ndarray, b: np.ndarray, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap ``CONFIDENCE`` interval of median(b) / median(a), a and b resampled apart."""
    def ratio(a_sample, b_sample, axis=-1):
        return np.median(b_sample, axis=axis) / np.median(a_sample, axis=axis)

    with warnings.catch_warnings():  # identical resamples: a degenerate interval is still an interval
        warnings.simplefilter("ignore")
        result = stats.bootstrap((a, b), ratio, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                                 method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def time_change(a, b, seed: int = BOOTSTRAP_SEED) -> TimeChange:
    """The verdict of ``TIME_RULE`` on the timed steps ``a`` (run A) and ``b`` (run B), in seconds."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return TimeChange(_ratio(a, b), math.nan, math.nan, math.nan, INCONCLUSIVE,
                          f"too few repeats ({a.size} and {b.size} timed steps)")
    ratio, (low, high) = _ratio(a, b), ratio_ci(a, b, seed)
    floor = smallest_p(a.size, b.size)
    if floor >= ALPHA:
        return TimeChange(ratio, low, high, math.nan, INCONCLUSIVE,
                          f"too few repeats: {a.size} and {b.size} timed steps cannot give p < {ALPHA} "
                          f"(smallest p {floor:.2g}; 7 and 7 can)")
    p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    inside = 1 / (1 + NOISE_BAND) < ratio < 1 + NOISE_BAND
    if p < ALPHA and not inside:
        return TimeChange(ratio, low, high, p, FASTER if ratio < 1 else SLOWER, f"p = {p:.2g} < {ALPHA}")
    if p < ALPHA:
        return TimeChange(ratio, low, high, p, NO_CHANGE, f"p = {p:.2g}, but within ±{NOISE_BAND:.0%}")
    if 1 / (1 + NOISE_BAND) < low and high < 1 + NOISE_BAND:
        return TimeChange(ratio, low, high, p, NO_CHANGE, f"p = {p:.2g}; CI within ±{NOISE_BAND:.0%}")
    return TimeChange(ratio, low, high, p, INCONCLUSIVE,
                      f"p = {p:.2g} ≥ {ALPHA} and the CI reaches beyond ±{NOISE_BAND:.0%}")


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(b) / np.median(a)) if a.size and b.size else math.nan


def memory_change(a_mib, b_mib) -> tuple[float, str]:
    """(B/A, ``LEANER`` / ``HEAVIER`` / ``NO_CHANGE``) of two peaks above the weights in MiB, by
    ``MEMORY_RULE``; (NaN, '') when either is missing or not positive."""
    if text.is_missing(a_mib) or text.is_missing(b_mib) or a_mib <= 0 or b_mib <= 0:
        return math.nan, ""
    band = max(MEM_NOISE_MIB, MEM_NOISE_REL * a_mib)
    verdict = LEANER if b_mib < a_mib - band else HEAVIER if b_mib > a_mib + band else NO_CHANGE
    return b_mib / a_mib, verdict


def _cells(run: Run) -> pd.DataFrame:
    """A run's records with the ``settings`` column (model-config overrides, JSON) and a match key; one
    record per key (the last)."""
    records = run.records
    if records.empty:
        raise ReportError(f"{run.path}: no cell records to compare (a ROUGE-only run?)")
    overrides = records.get("workload_args", pd.Series(None, index=records.index))
    records = records.assign(settings=overrides.map(
        lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else ""))
    records = records.assign(match=key_of(records, MATCH_COLUMNS))
    return records.drop_duplicates("match", keep="last")


def env_differences(a, b) -> str:
    """What differs between the environments of records ``a`` and ``b``: 'commit 7ab4a21 → 194e216'."""
    parts = []
    for name, column in ENV_DIFFERENCES:
        before, after = a.get(column), b.get(column)
        if text.is_missing(before) and text.is_missing(after) or before == after:
            continue
        shown = text.commit if column == "env_git_commit" else str
        parts.append(f"{name} {_env_value(before, shown)} → {_env_value(after, shown)}")
    return "; ".join(parts)


def _env_value(value, shown) -> str:
    return "none (measured)" if text.is_missing(value) else shown(value)


COLUMNS = [*MATCH_COLUMNS[:-1], "settings", "status_a", "status_b", "n_a", "n_b", "clock", "time_a_s",
           "time_b_s", "time_ratio", "time_ratio_lo", "time_ratio_hi", "p_value", "verdict", "reason",
           "mem_a_mib", "mem_b_mib", "mem_ratio", "mem_verdict", "env_differs", "run_a", "run_b"]


def compare_runs(a: Run, b: Run) -> pd.DataFrame:
    """One row per cell of either run (``COLUMNS``): pairs with their time and memory verdicts, then
    the cells found in one run only (verdict ``ONLY_A`` / ``ONLY_B``). Raises ReportError when a run
    has no cell records."""
    cells_a, cells_b = _cells(a), _cells(b)
    pairs = cells_a.merge(cells_b, on="match", how="outer", suffixes=("_a", "_b"), indicator=True)
    rows = [_row(pair, a.path.name, b.path.name) for pair in pairs.to_dict("records")]
    frame = _unmatched_reasons(pd.DataFrame(rows, columns=COLUMNS))
    order = frame["verdict"].isin([ONLY_A, ONLY_B]).astype(int)
    frame = frame.assign(_only=order).sort_values(["_only", "model", "mode", "input_len"], kind="stable")
    return frame.drop(columns="_only").reset_index(drop=True)


def _unmatched_reasons(frame: pd.DataFrame) -> pd.DataFrame:
    """An unmatched cell whose model, mode, length, dtype and batch the other run has too gets as its
    reason the settings that kept them apart (``threads: A 1, B 2``: runs of two suites, say)."""
    label = ["model", "mode", "input_len", "dtype", "batch"]
    others = {ONLY_A: frame[frame["verdict"].eq(ONLY_B)], ONLY_B: frame[frame["verdict"].eq(ONLY_A)]}
    reasons = frame["reason"].copy()
    for index, row in frame[frame["verdict"].isin([ONLY_A, ONLY_B])].iterrows():
        other = others[row["verdict"]]
        same = other[other[label].eq(row[label]).all(axis=1)]
        if not same.empty:
            a, b = (row, same.iloc[0]) if row["verdict"] == ONLY_A else (same.iloc[0], row)
            settings = [(name, _setting(a[name]), _setting(b[name])) for name in MATCH_COLUMNS[len(label):]]
            reasons[index] = "; ".join(f"{name}: A {in_a}, B {in_b}" for name, in_a, in_b in settings
                                       if in_a != in_b)
    return frame.assign(reason=reasons)


def _setting(value) -> str:
    if text.is_missing(value) or value == "":
        return "none"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _side(pair: dict, suffix: str) -> dict:
    """The columns of one side of a merged pair, without their suffix."""
    return {key[: -len(suffix)]: value for key, value in pair.items() if key.endswith(suffix)}


def _row(pair: dict, run_a: str, run_b: str) -> dict:
    a, b = _side(pair, "_a"), _side(pair, "_b")
    present = {"both": (a, b), "left_only": (a, None), "right_only": (None, b)}[pair["_merge"]]
    one = present[0] if present[0] is not None else present[1]
    row = {column: one.get(column) for column in MATCH_COLUMNS}
    row.update(run_a=run_a, run_b=run_b, status_a=a.get("status") if present[0] else None,
               status_b=b.get("status") if present[1] else None)
    if present[1] is None or present[0] is None:
        return dict(row, verdict=ONLY_A if present[1] is None else ONLY_B, reason="", env_differs="")
    clock = CPU_CLOCK if _cpu_times(a) and _cpu_times(b) else WALL_CLOCK
    times_a, times_b = _times(a, clock), _times(b, clock)
    row.update(n_a=len(times_a), n_b=len(times_b), clock=clock, env_differs=env_differences(a, b),
               time_a_s=float(np.median(times_a)) if times_a else a.get("time_median_s"),
               time_b_s=float(np.median(times_b)) if times_b else b.get("time_median_s"))
    if a["status"] != "ok" or b["status"] != "ok":
        row.update(verdict=INCONCLUSIVE, reason=f"A {a['status']}, B {b['status']}")
    else:
        change = time_change(times_a, times_b)
        row.update(time_ratio=change.ratio, time_ratio_lo=change.low, time_ratio_hi=change.high,
                   p_value=change.p_value, verdict=change.verdict, reason=change.reason)
    mem_a, mem_b = a.get("mem_peak_above_base_mib"), b.get("mem_peak_above_base_mib")
    ratio, verdict = memory_change(mem_a, mem_b)
    return dict(row, mem_a_mib=mem_a, mem_b_mib=mem_b, mem_ratio=ratio, mem_verdict=verdict)


CPU_CLOCK, WALL_CLOCK = "process CPU", "wall"


def _cpu_times(record: dict) -> bool:
    """Whether the record's steps are compared on process CPU time: a CPU cell on one thread that has
    ``cpu_times_s``."""
    return (str(record.get("device")) == "cpu" and record.get("threads") == 1
            and isinstance(record.get("cpu_times_s"), list) and bool(record["cpu_times_s"]))


def _times(record: dict, clock: str) -> list[float]:
    """The timed steps of a record in seconds of ``clock`` (``cpu_times_s`` or ``times_s``); [] for a
    record written before they were kept."""
    times = record.get("cpu_times_s" if clock == CPU_CLOCK else "times_s")
    return list(times) if isinstance(times, list) else []


def write_compare_csv(frame: pd.DataFrame, path: Path | str) -> None:
    write_csv(frame, path)


def _ratio_text(row) -> str:
    if text.is_missing(row["time_ratio"]):
        return text.DASH
    if text.is_missing(row["time_ratio_lo"]):
        return f"{row['time_ratio']:.3f}"
    return f"{row['time_ratio']:.3f} [{row['time_ratio_lo']:.3f}, {row['time_ratio_hi']:.3f}]"


def _memory_text(row) -> str:
    if text.is_missing(row["mem_a_mib"]) and text.is_missing(row["mem_b_mib"]):
        return text.DASH
    shown = f"{text.number(row['mem_a_mib'])} → {text.number(row['mem_b_mib'])} MiB"
    return f"{shown} ({row['mem_ratio']:.2f}×, {row['mem_verdict']})" if row["mem_verdict"] else shown


def _cell_text(row) -> str:
    settings = f" {row['settings']}" if row["settings"] else ""
    return f"{row['model']} {row['mode']} {text.length(row['input_len'])} {row['dtype']} b{row['batch']}" \
           f"{settings}"


def display_rows(frame: pd.DataFrame) -> list[list[str]]:
    """The comparison as text cells: cell, A s, B s, B/A [CI], verdict (reason), memory, what differs."""
    rows = []
    for row in frame.to_dict("records"):
        steps = "" if text.is_missing(row["n_a"]) else f"{row['n_a']:.0f}+{row['n_b']:.0f} {row['clock']}"
        verdict = f"{row['verdict']} ({row['reason']})" if row["reason"] else row["verdict"]
        rows.append([_cell_text(row), _seconds(row["time_a_s"]), _seconds(row["time_b_s"]), _ratio_text(row),
                     steps, verdict, _memory_text(row), row["env_differs"] or ""])
    return rows


DISPLAY_COLUMNS = ["cell", "A s", "B s", "time B/A [99% CI]", "steps, clock", "verdict", "memory A → B",
                   "environment differs"]


def _seconds(value) -> str:
    return text.DASH if text.is_missing(value) else f"{value:.4g}"


def compare_text(frame: pd.DataFrame, run_a: Path, run_b: Path) -> str:
    """The comparison for a terminal: runs, one line per cell, the verdict counts and both rules."""
    rows = [DISPLAY_COLUMNS, *display_rows(frame)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(DISPLAY_COLUMNS))]
    lines = [f"A: {run_a}", f"B: {run_b}", ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    lines += ["", "verdicts: " + verdict_counts(frame), "rule, " + TIME_RULE, "rule, " + MEMORY_RULE]
    return "\n".join(lines)


def verdict_counts(frame: pd.DataFrame) -> str:
    counts = frame["verdict"].value_counts()
    order = [FASTER, SLOWER, NO_CHANGE, INCONCLUSIVE, ONLY_A, ONLY_B]
    return ", ".join(f"{counts[v]} {v}" for v in order if v in counts) or "no cells"


VERDICT_CLASSES = {FASTER: "good", SLOWER: "bad", NO_CHANGE: "none", INCONCLUSIVE: "unsure"}


def write_compare_html(frame: pd.DataFrame, runs: list[Run], path: Path | str) -> Path:
    """A self-contained page (the report's template) with the comparison table and both rules."""
    from reports.build import Section, Table, html_cell, render_page

    rows = []
    for row, cells in zip(frame.to_dict("records"), display_rows(frame), strict=True):
        verdict = html_cell(row["verdict"], "verdict " + VERDICT_CLASSES.get(row["verdict"], "none"),
                            row["reason"])
        rows.append([*cells[:5], verdict, *cells[6:]])
    table = Table("B against A, per cell", f"A: {runs[0].path} · B: {runs[1].path}. {TIME_RULE}. "
                  f"{MEMORY_RULE}.", DISPLAY_COLUMNS, rows)
    section = Section("compare", "Comparison", intro=f"Verdicts: {verdict_counts(frame)}.", blocks=[table])
    generated = f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M UTC}"
    return render_page(Path(path), title="LOCOST harness: run against run", sections=[section], runs=runs,
                       generated_at=generated, warnings=[w for run in runs for w in run.warnings],
                       verdicts=[], summary={"measured": "", "headline": "", "ratios": []},
                       verdict_classes=VERDICT_CLASSES)
