"""Run against run: did B get faster, slower or leaner than A? (``python -m reports compare RUN_A RUN_B``,
or several runs per side: ``python -m reports compare --a A1 A2 A3 --b B1 B2 B3``)

Cells of the runs are matched on model, mode, input length, dtype, batch and settings (``MATCH_COLUMNS``:
target tokens, new tokens, threads, inputs, model-config overrides). Each run is one process per cell
(a cell is measured in its own worker), and the process, not the step, is the sample: the timed steps of
one process share whatever that process drew (memory layout, the core it shared), so they are not
independent samples of the code's speed. Two runs of one commit at ``tiny`` (steps of 9-170 ms) came out
4 faster, 2 slower and 2 inconclusive of 8 cells when a test took the steps of one process per side as
the samples (README, Measured here).

The time rule (``TIME_RULE``) is a two-sample t-test on the logarithms of the per-process median steps
whose variance is moderated towards a between-process spread measured on this project's CPU machine
(``PROCESS_SD`` with ``PROCESS_SD_DF`` degrees of freedom): the moderated t-statistic of Smyth (2004,
"Linear models and empirical Bayes methods for assessing differential expression in microarray
experiments", Stat. Appl. Genet. Mol. Biol. 3(1), eq. 4-5), with the prior fixed by that measurement
instead of estimated across cells. One process per side thus still gets a verdict when the change is
large against the between-process spread, and many processes per side let their own spread count. The
significance level (p < 0.002) and the ±5% band are asv's (``asv.statistics``, airspeed velocity).
Why not asv's own ways: a Mann-Whitney U test of per-process medians can reach p < 0.002 only from
7 + 7 processes, and pooling the steps of several processes per side (asv's ``processes``) still takes
the steps as independent: on synthetic steps with a per-process offset of the measured size it named a
change in 6 of 20 trials of identical code with 2 + 2 and with 4 + 4 processes, and in 15 of 20 with
one process per side (``tests/test_compare.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from records import write_csv
from reports import text
from reports.analysis import BUSY_HOST_SHARE, cores_taken
from reports.runs import ReportError, Run, key_of

FASTER, SLOWER, NO_CHANGE, INCONCLUSIVE = "faster", "slower", "no change", "inconclusive"
ONLY_A, ONLY_B = "only in A", "only in B"
LEANER, HEAVIER = "leaner", "heavier"
#: significance level of the test (asv's)
ALPHA = 0.002
#: the confidence of the ratio's interval
CONFIDENCE = 0.99
#: a time change smaller than this (relative) is no change: B/A within [1/1.05, 1.05]
NOISE_BAND = 0.05
#: the prior between-process spread: standard deviation of ln(median step) between processes of one
#: cell, and the degrees of freedom it was measured with. Measured 2026-12-06 on this project's CPU
#: machine kind (2-core AMD EPYC, load 4-9 from other jobs): 8 runs of one commit, one after the other,
#: of ``bench.throughput --models locost,longt5-local --sizes tiny --modes encode --lengths 512,1k
#: --repeats 8 --warmup 1 --threads 1`` (8 cells, fp32 and bf16, steps 11-173 ms of process CPU time):
#: pooled over the cells, 0.116 on 8 x 7 = 56 degrees of freedom (per cell 0.06-0.18; 2-4 times what
#: the steps' own spread would give a median of 8 independent steps). README, Measured here.
PROCESS_SD = 0.116
PROCESS_SD_DF = 56
#: memory's noise band: a peak differs beyond max(50 MiB, 10% of A's). Estimated from the README's
#: rerun of the memory suite's 1K and 4K cells (2026-11-23, 2-core CPU, small presets): 12 of 14 peaks
#: within 6%, the other two (generate peaks under 400 MiB) 25 and 47 MiB apart; one peak per cell, so a
#: run gives no spread of its own.
MEM_NOISE_MIB = 50.0
MEM_NOISE_REL = 0.10

TIME_RULE = (
    "time: one sample per process (each run measures a cell in its own process): the median of its timed "
    "steps, in process CPU time where every process of the cell ran on CPU with one thread and recorded it "
    "(other jobs sharing the cores do not lengthen it), else in wall time; B/A = exp(mean ln B - mean ln A) "
    "over the processes of each side. Test: a two-sample t-test of the ln medians with the moderated "
    f"variance s² = ({PROCESS_SD_DF}·{PROCESS_SD:g}² + SS) / ({PROCESS_SD_DF} + nA + nB - 2), SS the sum "
    f"of squared deviations from each side's mean, {PROCESS_SD:g} the between-process spread measured "
    f"on {PROCESS_SD_DF} degrees of freedom (Smyth 2004's moderated t; README, Measured here); "
    f"t = ln(B/A) / (s·√(1/nA + 1/nB)) on {PROCESS_SD_DF} + nA + nB - 2 degrees of freedom, and "
    f"{CONFIDENCE:.0%} CI exp(ln(B/A) ± t-quantile·s·√(1/nA + 1/nB)). Verdict: faster / slower when "
    f"p < {ALPHA} and B/A is outside the ±{NOISE_BAND:.0%} band [1/{1 + NOISE_BAND:g}, {1 + NOISE_BAND:g}]; "
    f"no change when p < {ALPHA} inside the band, or when the CI lies wholly inside it; inconclusive "
    "otherwise (asv's level and band), and on wall time whenever other work on the host took more than "
    f"{BUSY_HOST_SHARE:.0%} of the cores of a process's cell (host_other_cores)"
)
MEMORY_RULE = (
    f"memory: B/A of the peak above the weights (the median over a side's processes); leaner / heavier "
    f"when B differs from A by more than max({MEM_NOISE_MIB:g} MiB, {MEM_NOISE_REL:.0%} of A), no change "
    f"otherwise (the band: a rerun of the memory suite's cells came within 6% or 47 MiB, README 2026-11-23)"
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
    """B against A on one cell: ``ratio`` = B/A (ratio of the geometric means of the per-process median
    steps) with its CI, the test's two-sided p (NaN when not run), the verdict (``FASTER``, ``SLOWER``,
    ``NO_CHANGE``, ``INCONCLUSIVE``) and why."""

    ratio: float
    low: float
    high: float
    p_value: float
    verdict: str
    reason: str


def time_change(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> TimeChange:
    """The verdict of ``TIME_RULE`` on the timed steps of run A's processes ``a`` and run B's ``b``:
    one sequence of step times (seconds, positive) per process. A process without steps is left out;
    a side without any is ``INCONCLUSIVE``."""
    log_a = np.log([np.median(steps) for steps in a if len(steps)])
    log_b = np.log([np.median(steps) for steps in b if len(steps)])
    if not log_a.size or not log_b.size:
        return TimeChange(math.nan, math.nan, math.nan, math.nan, INCONCLUSIVE,
                          f"no timed steps ({log_a.size} and {log_b.size} processes with steps)")
    difference, se, df = moderated_difference(log_a, log_b)
    p = float(2 * stats.t.sf(abs(difference) / se, df))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    ratio, low, high = math.exp(difference), math.exp(difference - half), math.exp(difference + half)
    processes = f"{log_a.size} + {log_b.size} processes"
    if p < ALPHA and not 1 / (1 + NOISE_BAND) < ratio < 1 + NOISE_BAND:
        verdict = FASTER if ratio < 1 else SLOWER
        return TimeChange(ratio, low, high, p, verdict, f"p = {p:.2g} < {ALPHA}, {processes}")
    band = f"±{NOISE_BAND:.0%}"
    if p < ALPHA:
        return TimeChange(ratio, low, high, p, NO_CHANGE, f"p = {p:.2g}, but within {band}, {processes}")
    if 1 / (1 + NOISE_BAND) < low and high < 1 + NOISE_BAND:
        return TimeChange(ratio, low, high, p, NO_CHANGE, f"p = {p:.2g}; CI within {band}, {processes}")
    return TimeChange(ratio, low, high, p, INCONCLUSIVE,
                      f"p = {p:.2g} ≥ {ALPHA} and the CI reaches beyond {band}, {processes}")


def moderated_difference(log_a: np.ndarray, log_b: np.ndarray) -> tuple[float, float, float]:
    """(mean log_b - mean log_a, its standard error, degrees of freedom) for the moderated t-test of
    ``TIME_RULE``: the pooled within-side variance of the nA and nB per-process ln medians, shrunk
    towards ``PROCESS_SD``² with ``PROCESS_SD_DF`` prior degrees of freedom (Smyth 2004, eq. 4-5:
    s̃² = (d0·s0² + d·s²) / (d0 + d), d = nA + nB - 2). With one process per side (d = 0) the spread is
    the prior's alone."""
    squares = float(((log_a - log_a.mean()) ** 2).sum() + ((log_b - log_b.mean()) ** 2).sum())
    df = PROCESS_SD_DF + log_a.size + log_b.size - 2
    variance = (PROCESS_SD_DF * PROCESS_SD**2 + squares) / df
    return float(log_b.mean() - log_a.mean()), math.sqrt(variance * (1 / log_a.size + 1 / log_b.size)), df


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


def _side_cells(runs: Sequence[Run]) -> dict[str, list[dict]]:
    """The records of one side's runs grouped by match key: one record per run (process) that has the
    cell, in the runs' order."""
    cells: dict[str, list[dict]] = {}
    for run in runs:
        for record in _cells(run).to_dict("records"):
            cells.setdefault(record["match"], []).append(record)
    return cells


def env_differences(a: Sequence[dict], b: Sequence[dict]) -> str:
    """What differs between the environments of side A's records ``a`` and side B's ``b``: 'commit
    7ab4a21 → 194e216' (several values of one side joined by commas)."""
    parts = []
    for name, column in ENV_DIFFERENCES:
        shown = text.commit if column == "env_git_commit" else str
        before, after = _env_values(a, column, shown), _env_values(b, column, shown)
        if before != after:
            parts.append(f"{name} {before} → {after}")
    return "; ".join(parts)


def _env_values(records: Sequence[dict], column: str, shown) -> str:
    values = sorted({"none (measured)" if text.is_missing(r.get(column)) else shown(r.get(column))
                     for r in records})
    return ",".join(values)


COLUMNS = [*MATCH_COLUMNS[:-1], "settings", "status_a", "status_b", "processes_a", "processes_b", "n_a",
           "n_b", "clock", "time_a_s", "time_b_s", "time_ratio", "time_ratio_lo", "time_ratio_hi", "p_value",
           "verdict", "reason", "mem_a_mib", "mem_b_mib", "mem_ratio", "mem_verdict", "env_differs", "run_a",
           "run_b"]


def compare_runs(a: Run | Sequence[Run], b: Run | Sequence[Run]) -> pd.DataFrame:
    """One row per cell of either side (``COLUMNS``): pairs with their time and memory verdicts, then
    the cells found on one side only (verdict ``ONLY_A`` / ``ONLY_B``). ``a`` and ``b`` are one run or
    several runs (one process per cell each) per side. Raises ReportError when a run has no cell
    records."""
    runs_a, runs_b = ([a] if isinstance(a, Run) else list(a)), ([b] if isinstance(b, Run) else list(b))
    cells_a, cells_b = _side_cells(runs_a), _side_cells(runs_b)
    names = (",".join(run.path.name for run in runs_a), ",".join(run.path.name for run in runs_b))
    keys = list(cells_a) + [key for key in cells_b if key not in cells_a]
    rows = [_row(cells_a.get(key, []), cells_b.get(key, []), *names) for key in keys]
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


def _statuses(records: Sequence[dict]) -> str | None:
    """The status of a side's processes of one cell: 'ok', or counts where they differ ('ok 3, oom 1')."""
    counts = pd.Series([r["status"] for r in records], dtype=object).value_counts(sort=False)
    if counts.empty:
        return None
    return str(counts.index[0]) if len(counts) == 1 else ", ".join(f"{s} {n}" for s, n in counts.items())


def _row(a: list[dict], b: list[dict], run_a: str, run_b: str) -> dict:
    """The comparison row of one cell from its records on side A (one per process) and side B."""
    row = {column: (a or b)[0].get(column) for column in MATCH_COLUMNS}
    row.update(run_a=run_a, run_b=run_b, status_a=_statuses(a), status_b=_statuses(b))
    if not a or not b:
        return dict(row, verdict=ONLY_A if not b else ONLY_B, reason="", env_differs="")
    clock = CPU_CLOCK if all(_cpu_times(record) for record in a + b) else WALL_CLOCK
    steps_a, steps_b = _process_steps(a, clock), _process_steps(b, clock)
    change = time_change(steps_a, steps_b)
    row.update(processes_a=len(steps_a), processes_b=len(steps_b), n_a=sum(map(len, steps_a)),
               n_b=sum(map(len, steps_b)), clock=clock, env_differs=env_differences(a, b),
               time_a_s=_typical(steps_a, a), time_b_s=_typical(steps_b, b), time_ratio=change.ratio,
               time_ratio_lo=change.low, time_ratio_hi=change.high, p_value=change.p_value,
               verdict=change.verdict, reason=change.reason)
    if not steps_a or not steps_b:
        row.update(verdict=INCONCLUSIVE, reason=f"A {row['status_a']}, B {row['status_b']}")
    elif clock == WALL_CLOCK and (busy := _busy_sides(a, b)):
        sides, taken = " and ".join(busy), max(busy.values())
        row.update(verdict=INCONCLUSIVE, reason=f"{sides}: other work on the host took up to {taken:.0%} of "
                                                "its cores, its wall times are lengthened")
    mem_a, mem_b = _median(a, "mem_peak_above_base_mib"), _median(b, "mem_peak_above_base_mib")
    ratio, verdict = memory_change(mem_a, mem_b)
    return dict(row, mem_a_mib=mem_a, mem_b_mib=mem_b, mem_ratio=ratio, mem_verdict=verdict)


def _busy_sides(a: list[dict], b: list[dict]) -> dict[str, float]:
    """Side ('A', 'B') -> the most of a process's cores other work on the host took (``cores_taken``),
    for the sides where that exceeds ``BUSY_HOST_SHARE``; empty for neither."""
    taken = {side: cores_taken(pd.DataFrame(records)).max() for side, records in (("A", a), ("B", b))}
    return {side: share for side, share in taken.items() if share > BUSY_HOST_SHARE}


def _process_steps(records: list[dict], clock: str) -> list[list[float]]:
    """The timed steps of each process that ended ``ok`` and recorded them, in seconds of ``clock``."""
    return [steps for record in records if record["status"] == "ok" and (steps := _times(record, clock))]


def _typical(steps: list[list[float]], records: list[dict]) -> float:
    """A side's time of a cell: the geometric mean of its processes' median steps (the figure B/A is a
    ratio of); the records' ``time_median_s`` for records written before steps were kept."""
    if steps:
        return float(np.exp(np.mean(np.log([np.median(s) for s in steps]))))
    return _median(records, "time_median_s")


def _median(records: list[dict], column: str) -> float:
    values = [r.get(column) for r in records if not text.is_missing(r.get(column))]
    return float(np.median(values)) if values else math.nan


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
    """The comparison as text cells: cell, A s, B s, B/A [CI], processes (steps) and clock, verdict
    (reason), memory, what differs."""
    rows = []
    for row in frame.to_dict("records"):
        steps = "" if text.is_missing(row["n_a"]) else (
            f"{row['processes_a']:.0f}+{row['processes_b']:.0f} ({row['n_a']:.0f}+{row['n_b']:.0f} steps), "
            f"{row['clock']}")
        verdict = f"{row['verdict']} ({row['reason']})" if row["reason"] else row["verdict"]
        rows.append([_cell_text(row), _seconds(row["time_a_s"]), _seconds(row["time_b_s"]), _ratio_text(row),
                     steps, verdict, _memory_text(row), row["env_differs"] or ""])
    return rows


DISPLAY_COLUMNS = ["cell", "A s", "B s", "time B/A [99% CI]", "processes (steps), clock", "verdict",
                   "memory A → B", "environment differs"]


def _seconds(value) -> str:
    return text.DASH if text.is_missing(value) else f"{value:.4g}"


def compare_text(frame: pd.DataFrame, runs_a: Sequence[Path], runs_b: Sequence[Path]) -> str:
    """The comparison for a terminal: each side's runs, one line per cell, the verdict counts and both
    rules."""
    rows = [DISPLAY_COLUMNS, *display_rows(frame)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(DISPLAY_COLUMNS))]
    lines = [f"A: {_paths(runs_a)}", f"B: {_paths(runs_b)}", ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    lines += ["", "verdicts: " + verdict_counts(frame), "rule, " + TIME_RULE, "rule, " + MEMORY_RULE]
    return "\n".join(lines)


def _paths(paths: Sequence[Path]) -> str:
    return " ".join(str(path) for path in paths)


def verdict_counts(frame: pd.DataFrame) -> str:
    counts = frame["verdict"].value_counts()
    order = [FASTER, SLOWER, NO_CHANGE, INCONCLUSIVE, ONLY_A, ONLY_B]
    return ", ".join(f"{counts[v]} {v}" for v in order if v in counts) or "no cells"


VERDICT_CLASSES = {FASTER: "good", SLOWER: "bad", NO_CHANGE: "none", INCONCLUSIVE: "unsure"}


def write_compare_html(frame: pd.DataFrame, runs_a: Sequence[Run], runs_b: Sequence[Run],
                       path: Path | str) -> Path:
    """A self-contained page (the report's template) with the comparison table and both rules."""
    from reports.build import Section, Table, html_cell, render_page

    rows = []
    for row, cells in zip(frame.to_dict("records"), display_rows(frame), strict=True):
        verdict = html_cell(row["verdict"], "verdict " + VERDICT_CLASSES.get(row["verdict"], "none"),
                            row["reason"])
        rows.append([*cells[:5], verdict, *cells[6:]])
    sides = f"A: {_paths([run.path for run in runs_a])} · B: {_paths([run.path for run in runs_b])}"
    table = Table("B against A, per cell", f"{sides}. {TIME_RULE}. {MEMORY_RULE}.", DISPLAY_COLUMNS, rows)
    runs = list({run.path: run for run in (*runs_a, *runs_b)}.values())  # a run on both sides: once
    section = Section("compare", "Comparison", intro=f"Verdicts: {verdict_counts(frame)}.", blocks=[table])
    generated = f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M UTC}"
    return render_page(Path(path), title="LOCOST harness: run against run", sections=[section], runs=runs,
                       generated_at=generated, warnings=[w for run in runs for w in run.warnings],
                       verdicts=[], summary={"measured": "", "headline": "", "ratios": []},
                       verdict_classes=VERDICT_CLASSES)
