"""Numbers derived from records: power-law fits, LOCOST-vs-baseline memory comparisons, reach, ROUGE ratios.

``fit_power_law`` is the one home of the scaling fit (the scaling CLI imports it from here).
Every comparison here pairs cells measured under identical conditions (``runs.CONDITION_COLUMNS``):
a LOCOST figure is never divided by a baseline figure taken under other conditions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import pandas as pd

from records import ROUGE_METRICS
from records.bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_ci
from records.suites import SuiteReport, report_of
from reports.runs import CONDITION_COLUMNS, LOCOST, key_of

_T975_FEW_DOF = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764}
_Z975 = 1.959963984540054


def t_quantile_975(dof: int) -> float:
    """97.5% quantile of Student's t (two-sided 95%): a table below 5 degrees of freedom, else the
    Cornish-Fisher expansion around the normal quantile (error < 3e-4)."""
    if dof < 1:
        raise ValueError("a t quantile needs at least one degree of freedom")
    if dof in _T975_FEW_DOF:
        return _T975_FEW_DOF[dof]
    z, v = _Z975, float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


@dataclass(frozen=True)
class Fit:
    """value ≈ exp(intercept) · length ** slope; ci_low/ci_high bound the slope (None when n < 3)."""

    slope: float
    intercept: float
    ci_low: float | None
    ci_high: float | None
    n: int


def fit_power_law(lengths, values) -> Fit:
    """Least squares of log(value) on log(length), with a t-distribution 95% CI of the slope.

    Needs at least two distinct lengths; a CI needs at least three points.
    """
    x = np.asarray(lengths, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("lengths and values must be 1-d and of equal size")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise ValueError("a power-law fit needs finite positive lengths and values")
    if np.unique(x).size < 2:
        raise ValueError("a power-law fit needs at least two distinct lengths")
    x, y = np.log(x), np.log(y)
    n = x.size
    x_centered = x - x.mean()
    sxx = float(x_centered @ x_centered)
    slope = float(x_centered @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    if n < 3:
        return Fit(slope, intercept, None, None, n)
    residuals = y - (intercept + slope * x)
    standard_error = math.sqrt(float(residuals @ residuals) / (n - 2) / sxx)
    half_width = t_quantile_975(n - 2) * standard_error
    return Fit(slope, intercept, slope - half_width, slope + half_width, n)


#: the rank of a suite's figures (``records.suites``) where several suites measured the same cell: 0 first
Trust = Callable[[SuiteReport], int]
MEMORY_TRUST: Trust = attrgetter("memory_rank")
TIME_TRUST: Trust = attrgetter("time_rank")


def comparable_cells(records: pd.DataFrame, trust: Trust = MEMORY_TRUST) -> pd.DataFrame:
    """One record per (model, mode, length, conditions) over all runs: an ok one if any, then one from
    the suite ranked first by ``trust`` (by default for memory figures: memory before scaling before
    throughput, ``records.suites``), then the latest."""
    if records.empty:
        return records
    ranked = records.assign(
        _ok=records["status"].eq("ok"),
        _suite=-records["suite"].map(lambda suite: trust(report_of(suite))),
    )
    ranked = ranked.sort_values(["_ok", "_suite", "started_at"], kind="stable", na_position="first")
    cell = ["model", "mode", "input_len", "condition_key"]
    return ranked.drop_duplicates(cell, keep="last").drop(columns=["_ok", "_suite"])


def _comparison_note(locost_status: str, baseline_status: str, locost_mib: float, baseline_mib: float) -> str:
    if locost_status == "ok" and baseline_status == "ok":
        if not (locost_mib > 0 and baseline_mib > 0):
            return "no positive memory figure to compare"
        return ""
    if locost_status == "ok":
        return f"baseline {baseline_status}"
    if baseline_status == "ok":
        return f"LOCOST {locost_status}"
    return f"both failed (LOCOST {locost_status}, baseline {baseline_status})"


COMPARISON_COLUMNS = [
    "mode",
    "input_len",
    *CONDITION_COLUMNS,
    "locost_model",
    "baseline_model",
    "baseline_family",
    "locost_status",
    "baseline_status",
    "locost_mib",
    "baseline_mib",
    "ratio",
    "saving_pct",
    "ratio_bound",
    "note",
    "locost_run_id",
    "baseline_run_id",
    "condition_key",
]


def _add_ratios(pairs: pd.DataFrame) -> None:
    """``ratio``, ``saving_pct`` and ``ratio_bound`` of ``memory_comparisons``, in place."""
    quotient = pairs["locost_mib"] / pairs["baseline_mib"]
    pairs["ratio"] = quotient.where(pairs["note"].eq(""))
    pairs["saving_pct"] = 100 * (1 - pairs["ratio"])
    bounded = (pairs["locost_status"].eq("ok") & pairs["baseline_status"].eq("oom")
               & pairs["locost_mib"].gt(0).fillna(False) & pairs["baseline_mib"].gt(0).fillna(False))
    pairs["ratio_bound"] = quotient.where(bounded)


def memory_comparisons(records: pd.DataFrame) -> pd.DataFrame:
    """LOCOST vs every baseline at each (mode, length) measured under identical conditions.

    ``ratio`` = LOCOST's peak memory above the weights / the baseline's, ``saving_pct`` = 100·(1 − ratio);
    both only where both cells are ok with positive figures. ``note`` says why a pair has no ratio.
    ``ratio_bound``: where LOCOST ran ok and the baseline was killed ``oom`` with the peak it had reached
    recorded (``bench.runner``: a lower bound of its full peak), LOCOST / that peak, an upper bound of
    the ratio the baseline would have given.
    """
    cells = comparable_cells(records)
    if cells.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    locost = cells[cells["family"].eq(LOCOST)]
    baselines = cells[~cells["family"].eq(LOCOST)]
    keep = [
        "mode",
        "input_len",
        "condition_key",
        "model",
        "family",
        "status",
        "mem_peak_above_base_mib",
        "run_id",
        *CONDITION_COLUMNS,
    ]
    pairs = locost[keep].merge(
        baselines[keep], on=["mode", "input_len", "condition_key"], suffixes=("_locost", "_baseline")
    )
    if pairs.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    out = pd.DataFrame(
        {
            "mode": pairs["mode"],
            "input_len": pairs["input_len"],
            **{c: pairs[f"{c}_locost"] for c in CONDITION_COLUMNS},
            "locost_model": pairs["model_locost"],
            "baseline_model": pairs["model_baseline"],
            "baseline_family": pairs["family_baseline"],
            "locost_status": pairs["status_locost"],
            "baseline_status": pairs["status_baseline"],
            "locost_mib": pairs["mem_peak_above_base_mib_locost"],
            "baseline_mib": pairs["mem_peak_above_base_mib_baseline"],
            "locost_run_id": pairs["run_id_locost"],
            "baseline_run_id": pairs["run_id_baseline"],
            "condition_key": pairs["condition_key"],
        }
    )
    out["note"] = [
        _comparison_note(*row)
        for row in out[["locost_status", "baseline_status", "locost_mib", "baseline_mib"]].itertuples(
            index=False
        )
    ]
    _add_ratios(out)
    mode_order = out["mode"].map({"train": 0, "encode": 1, "generate": 2}).fillna(3)
    out = out.assign(_mode=mode_order).sort_values(["condition_key", "_mode", "input_len", "baseline_model"])
    return out[COMPARISON_COLUMNS].reset_index(drop=True)



# --- simulated against measured GPU peaks -----------------------------------------------------------

#: what makes a simulated cell and a measured one the same cell: the model, its config fields
#: (``--model-config``), the step and its sizes; the GPU, versions and host may differ and are shown beside
SAME_CELL = ["model", "mode", "input_len", "target_len", "new_tokens", "batch", "dtype", "inputs", "settings"]
SIM_VS_MEASURED_COLUMNS = [
    *SAME_CELL, "simulated_gpu", "measured_device", "simulated_status", "measured_status", "simulated_mib",
    "measured_mib", "relative_error_pct", "simulated_versions", "measured_versions", "simulated_run_id",
    "measured_run_id",
]


def is_simulated(records: pd.DataFrame) -> pd.Series:
    """Whether each record's figures come from ``bench.gpusim`` (``produced_by`` simulation)."""
    return records["produced_by"].eq("simulation").fillna(False).astype(bool)


def _same_cell_frame(cells: pd.DataFrame, side: str) -> pd.DataFrame:
    """``cells`` with a ``settings`` column (the workload's config fields as sorted JSON, '' for none)
    and the columns the pairing shows, renamed ``<side>_...``."""
    settings = cells["workload_args"] if "workload_args" in cells else pd.Series(None, index=cells.index)
    versions = ("torch " + cells["env_torch"].astype(str) + ", transformers "
                + cells["env_transformers"].astype(str))
    return cells.assign(
        settings=[json.dumps(v, sort_keys=True) if isinstance(v, dict) else "" for v in settings],
        **{f"{side}_status": cells["status"], f"{side}_mib": cells["mem_peak_above_base_mib"],
           f"{side}_versions": versions, f"{side}_run_id": cells["run_id"]})


def simulated_vs_measured(records: pd.DataFrame) -> pd.DataFrame:
    """Each simulated cell beside the record of the same cell (``SAME_CELL``) measured on a real GPU
    (``device`` cuda, a recorded device name, not simulated), one row per pair in
    ``SIM_VS_MEASURED_COLUMNS``: peaks above the base in MiB and ``relative_error_pct`` =
    100 · (simulated − measured) / measured where both are ok (else NaN). Empty when no pair exists."""
    cells = comparable_cells(records)
    if cells.empty:
        return pd.DataFrame(columns=SIM_VS_MEASURED_COLUMNS)
    simulated = cells[is_simulated(cells)]
    on_gpu = (cells["device"].astype(str).str.startswith("cuda") & cells["env_device_name"].notna()
              & ~is_simulated(cells))
    measured = _same_cell_frame(cells[on_gpu], "measured")
    measured = measured.assign(measured_device=measured["env_device_name"])
    shown = ["measured_device", "measured_status", "measured_mib", "measured_versions", "measured_run_id"]
    pairs = _same_cell_frame(simulated, "simulated").merge(measured[[*SAME_CELL, *shown]], on=SAME_CELL)
    if pairs.empty:
        return pd.DataFrame(columns=SIM_VS_MEASURED_COLUMNS)
    both_ok = pairs["simulated_status"].eq("ok") & pairs["measured_status"].eq("ok")
    error = 100 * (pairs["simulated_mib"] / pairs["measured_mib"] - 1)
    pairs["relative_error_pct"] = error.where(both_ok & pairs["measured_mib"].gt(0))
    return pairs.sort_values(["model", "mode", "input_len"])[SIM_VS_MEASURED_COLUMNS].reset_index(drop=True)

# --- crossover lengths: from which input length LOCOST needs less than a baseline -----------------

BELOW_SHORTEST, NOT_IN_RANGE = "below the shortest", "not within the measured range"
#: metric -> (record column, the rank of the suites whose records it is taken from first: times from
#: the throughput suite, which repeats its steps; memory from the memory suite; ``records.suites``)
CROSSOVER_METRICS = {"time": ("time_median_s", TIME_TRUST),
                     "memory": ("mem_peak_above_base_mib", MEMORY_TRUST)}
CROSSOVER_RULE = (
    "the input length from which LOCOST needs less than the baseline: the last measured length where "
    "LOCOST needs as much or more and the next (the bracket), interpolated linearly on log-log (log "
    "length against log(LOCOST / baseline)); 'below the shortest' where LOCOST needs less at every "
    "measured length, 'not within the measured range' where it does not at the longest; only lengths "
    "where both ran ok under the same conditions and threads; time is the median step's process CPU time "
    "where every compared cell ran on CPU with one thread and recorded it (other jobs on the cores do not "
    "lengthen it), else its wall time"
)


@dataclass(frozen=True)
class Crossover:
    """``length``: tokens from which LOCOST needs less (None unless it crosses between two measured
    lengths ``low`` < ``high``); ``where``: ``BELOW_SHORTEST``, ``NOT_IN_RANGE`` or 'between'."""

    length: float | None
    low: int | None
    high: int | None
    where: str


def crossover_length(lengths, locost, baseline) -> Crossover:
    """The crossover of ``CROSSOVER_RULE`` from LOCOST's and a baseline's positive values (time in s or
    memory in MiB) at the same ``lengths`` (tokens, any order). With d = log(LOCOST / baseline) at the
    bracket's lengths L0 < L1 (d0 ≥ 0 > d1): log L = log L0 + d0 / (d0 - d1) · (log L1 - log L0)."""
    order = np.argsort(np.asarray(lengths, dtype=float))
    length = np.asarray(lengths, dtype=float)[order]
    d = np.log(np.asarray(locost, dtype=float)[order]) - np.log(np.asarray(baseline, dtype=float)[order])
    if d[-1] >= 0:
        return Crossover(None, None, None, NOT_IN_RANGE)
    not_less = np.flatnonzero(d >= 0)
    if not_less.size == 0:
        return Crossover(None, None, None, BELOW_SHORTEST)
    k = int(not_less[-1])
    step = d[k] / (d[k] - d[k + 1])
    crossing = math.exp(math.log(length[k]) + step * (math.log(length[k + 1]) - math.log(length[k])))
    return Crossover(crossing, int(length[k]), int(length[k + 1]), "between")


def _crossover_text(crossing: Crossover, lengths) -> str:
    if crossing.where == BELOW_SHORTEST:
        return f"{BELOW_SHORTEST} ({_length_words(min(lengths))})"
    if crossing.where == NOT_IN_RANGE:
        return f"{NOT_IN_RANGE} ({_length_words(min(lengths))}–{_length_words(max(lengths))})"
    return (f"≈ {crossing.length:,.0f} tokens (between {_length_words(crossing.low)} and "
            f"{_length_words(crossing.high)})")


def _length_words(value) -> str:
    value = int(value)
    return f"{value // 1024:,}K" if value >= 1024 and value % 1024 == 0 else f"{value:,}"


PAIR_KEY = ["mode", "input_len", "condition_key", "threads"]


def locost_pairs(cells: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """LOCOST's cells beside each baseline's at the same mode, length, conditions and threads:
    ``columns`` of each, suffixed ``_locost`` and ``_baseline``."""
    keep = list(dict.fromkeys([*PAIR_KEY, *columns]))
    locost, baselines = cells[cells["family"].eq(LOCOST)], cells[~cells["family"].eq(LOCOST)]
    return locost[keep].merge(baselines[keep], on=PAIR_KEY, suffixes=("_locost", "_baseline"))


CROSSOVER_GROUP = ["metric", "condition_key", "threads", "mode", "model_locost", "model_baseline"]


def crossovers(records: pd.DataFrame) -> pd.DataFrame:
    """Per metric (time, memory), baseline, mode and conditions: the crossover length (``crossover_len``,
    tokens, rounded; None where it does not cross), its bracket, ``where`` in words and the lengths
    compared, from the cells where LOCOST and the baseline both ran ok (``CROSSOVER_RULE``)."""
    frames = []
    for metric, (column, trust) in CROSSOVER_METRICS.items():
        cells = comparable_cells(records, trust)
        if cells.empty:
            continue
        cells = cells[cells["status"].eq("ok") & cells[column].gt(0).fillna(False)]
        cells = cells.assign(cpu_step_s=cpu_step_s(cells) if metric == "time" else math.nan)
        pairs = locost_pairs(cells, ["model", "family", column, "cpu_step_s", *CONDITION_COLUMNS])
        frames.append(pairs.assign(metric=metric, value_locost=pairs[f"{column}_locost"],
                                   value_baseline=pairs[f"{column}_baseline"]))
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if pairs.empty:
        return pd.DataFrame(columns=CROSSOVER_COLUMNS)
    rows = [_crossover_row(group) for _, group in pairs.groupby(CROSSOVER_GROUP, sort=True, dropna=False)]
    frame = pd.DataFrame(rows, columns=CROSSOVER_COLUMNS)
    tokens = ["crossover_len", "bracket_low", "bracket_high"]
    frame[tokens] = frame[tokens].astype("Int64")  # lengths are whole tokens, null where none
    return frame


CROSSOVER_COLUMNS = ["metric", "mode", "locost_model", "baseline_model", "baseline_family", "crossover_len",
                     "bracket_low", "bracket_high", "where", "lengths", "clock", "threads",
                     *CONDITION_COLUMNS, "condition_key"]


def cpu_step_s(cells: pd.DataFrame) -> pd.Series:
    """Median process CPU seconds of the timed steps (``cpu_times_s``) of one-thread CPU cells; NaN for
    the others (a step's time there is its wall time, which other jobs on the cores lengthen)."""
    one_thread = cells["device"].eq("cpu") & cells["threads"].eq(1).fillna(False)
    times = cells.get("cpu_times_s", pd.Series(None, index=cells.index, dtype=object))
    medians = times.map(lambda v: float(np.median(v)) if isinstance(v, list) and v else math.nan)
    return medians.where(one_thread, math.nan)


def _crossover_row(group: pd.DataFrame) -> dict:
    first = group.iloc[0]
    lengths = group["input_len"].astype(int).tolist()
    cpu = group[["cpu_step_s_locost", "cpu_step_s_baseline"]]
    clock = "process CPU" if cpu.notna().all().all() else "wall" if first["metric"] == "time" else ""
    values = cpu.to_numpy().T if clock == "process CPU" else (group["value_locost"], group["value_baseline"])
    crossing = crossover_length(lengths, *values)
    return {
        "metric": first["metric"], "mode": first["mode"], "locost_model": first["model_locost"],
        "baseline_model": first["model_baseline"], "baseline_family": first["family_baseline"],
        "crossover_len": None if crossing.length is None else round(crossing.length),
        "bracket_low": crossing.low, "bracket_high": crossing.high,
        "where": _crossover_text(crossing, lengths), "lengths": len(lengths), "clock": clock,
        "threads": first["threads"],
        **{c: first[f"{c}_locost"] for c in CONDITION_COLUMNS}, "condition_key": first["condition_key"],
    }


#: the share of a cell's cores taken by other work (``cores_taken``) above which its wall times count as
#: lengthened by it: a tenth of its threads' time went elsewhere (2026-12-06, 2 threads on this project's
#: 2-core box with nothing else running: 0.00-0.07 of its cores; a step that lost 0.18 of them ran 1.59
#: CPU seconds per wall second instead of 1.95)
BUSY_HOST_SHARE = 0.10


def cores_taken(cells: pd.DataFrame) -> pd.Series:
    """Per cell, the share of its threads' cores that other work on the host took while it was timed:
    the other work beyond the cores it left free, over its threads, ``(host_other_cores - (env_cpu_count
    - threads)) / threads`` (records.schema; columns of ``records_frame``); at most 0 when the free cores
    held it all; NaN where not recorded."""
    other, cpus, threads = (pd.to_numeric(cells[c], errors="coerce")
                            for c in ("host_other_cores", "env_cpu_count", "threads"))
    return (other - (cpus - threads)) / threads


# Series: one model swept over lengths in one run under one set of conditions (threads too: they
# change the time). Fits never mix runs.
SERIES_KEY = ["run_id", "model", "mode", "condition_key", "threads"]
FIT_METRICS = {
    "memory": ("mem_peak_above_base_mib", "peak memory above weights (MiB)"),
    "time": ("time_median_s", "median time per step (s)"),
}


def _series(records: pd.DataFrame):
    """(series key, first row, rows by length) per series; nulls grouped, not dropped."""
    if records.empty:
        return []
    return [
        (key, rows.iloc[0], rows.sort_values("input_len"))
        for key, rows in records.groupby(key_of(records, SERIES_KEY), sort=True)
    ]


def scaling_fits(records: pd.DataFrame) -> pd.DataFrame:
    """Power-law exponent of memory and time in input length, per series of ok cells."""
    rows = []
    for key, first, series in _series(records[records["status"].eq("ok")]):
        for metric, (column, label) in FIT_METRICS.items():
            points = series[series[column] > 0]
            if points["input_len"].nunique() < 2:
                continue
            fit = fit_power_law(points["input_len"].astype(float), points[column])
            rows.append(
                {
                    "run_id": first["run_id"],
                    "model": first["model"],
                    "family": first["family"],
                    "mode": first["mode"],
                    "metric": metric,
                    "quantity": label,
                    "slope": fit.slope,
                    "ci_low": fit.ci_low,
                    "ci_high": fit.ci_high,
                    "n": fit.n,
                    "intercept": fit.intercept,
                    "min_len": int(points["input_len"].min()),
                    "max_len": int(points["input_len"].max()),
                    "threads": first["threads"],
                    "contention": points["contention"].max(),  # cells at once: their times are spoiled
                    "cores_taken": cores_taken(points).max(),  # other work took their cores
                    **{c: first[c] for c in CONDITION_COLUMNS},
                    "series": key,
                }
            )
    return pd.DataFrame(rows)


def reach(records: pd.DataFrame) -> pd.DataFrame:
    """Per series: the longest length run ok and the first (shortest) length that did not."""
    rows = []
    for _, first, series in _series(records):
        ok = series[series["status"].eq("ok")]
        failed = series[~series["status"].eq("ok")]
        failure = failed.iloc[0] if not failed.empty else None
        rows.append(
            {
                "run_id": first["run_id"],
                "model": first["model"],
                "family": first["family"],
                "mode": first["mode"],
                "longest_ok": int(ok["input_len"].max()) if not ok.empty else None,
                "first_failure_len": int(failure["input_len"]) if failure is not None else None,
                "first_failure_status": failure["status"] if failure is not None else "",
                "first_failure_message": failure["message"] if failure is not None else "",
                "threads": first["threads"],
                **{c: first[c] for c in CONDITION_COLUMNS},
            }
        )
    return pd.DataFrame(rows)


RELATIVE_COLUMNS = [
    "run_id",
    "dataset",
    "input_len",
    "n_docs",
    "train_steps",
    "metric",
    "locost_system",
    "baseline_system",
    "family",
    "baseline_family",
    "size",
    "baseline_size",
    "relative_pct",
    "relative_lo_pct",
    "relative_hi_pct",
]


def rouge_relative(relative: pd.DataFrame | None) -> pd.DataFrame:
    """relative.jsonl's figures (``runs.relative_frame``: LOCOST ROUGE / baseline ROUGE with paired
    bootstrap CIs, computed once by the ROUGE suite) in long form, one row per pair, length and metric,
    in percent; pairs whose ratio is undefined (baseline ROUGE 0) are left out."""
    if relative is None or relative.empty:
        return pd.DataFrame(columns=RELATIVE_COLUMNS)
    frames = []
    for metric in ROUGE_METRICS:
        if metric not in relative.columns:
            continue
        ratio = pd.to_numeric(relative[metric], errors="coerce")
        frames.append(
            relative.assign(
                metric=metric,
                relative_pct=100 * ratio,
                relative_lo_pct=100 * pd.to_numeric(relative[f"{metric}_lo"], errors="coerce"),
                relative_hi_pct=100 * pd.to_numeric(relative[f"{metric}_hi"], errors="coerce"),
            )[ratio.notna()]
        )
    if not frames:
        return pd.DataFrame(columns=RELATIVE_COLUMNS)
    long = pd.concat(frames, ignore_index=True)
    long = long.rename(columns={"system": "locost_system", "baseline": "baseline_system"})
    return long.reindex(columns=RELATIVE_COLUMNS)


# --- quality against the Lead-k reference ------------------------------------------------------------

LEAD_SYSTEM = re.compile(r"lead-\d+")
MARGIN_COLUMNS = ["dataset", "input_len", "n_docs", "system", "lead_system", "metric", "model", "lead",
                  "difference", "ci_low", "ci_high", "method"]


def paired_difference_ci(a, b, resamples: int = BOOTSTRAP_RESAMPLES,
                         seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """mean(a − b) over documents and its 95% percentile-bootstrap CI, both systems resampled with
    the same document indices (paired). ``a``, ``b``: per-document scores, same documents in the
    same order. Raises ValueError for unequal or empty inputs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("a paired difference needs the same, non-empty set of documents")
    return bootstrap_ci(a - b, resamples, seed)  # the suite's bootstrap, on the per-document differences


def paired_difference_ci_ref(a, b, resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """``paired_difference_ci`` one resample at a time, in plain Python (the test's reference)."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(a), size=(resamples, len(a)))
    means = sorted(sum(a[i] - b[i] for i in row) / len(a) for row in indices.tolist())
    return sum(x - y for x, y in zip(a, b, strict=True)) / len(a), *np.percentile(means, [2.5, 97.5]).tolist()


def _document_scores(docs: pd.DataFrame, row: dict, metric: str) -> pd.DataFrame:
    """doc_id and ``metric`` of ``row``'s system, dataset and input length (null matches null)."""
    length = docs["input_len"].isna() if pd.isna(row["input_len"]) else docs["input_len"].eq(row["input_len"])
    mine = docs[docs["system"].eq(row["system"]) & docs["dataset"].eq(row["dataset"]) & length]
    return mine[["doc_id", metric]].dropna()


def _paired_scores(docs: pd.DataFrame | None, model: dict, lead: dict, metric: str):
    """(model, lead) per-document scores on the same documents, or None where ``docs`` lacks them."""
    if docs is None or docs.empty:
        return None
    pairs = _document_scores(docs, model, metric).merge(
        _document_scores(docs, lead, metric), on="doc_id", suffixes=("_model", "_lead"))
    if pairs["doc_id"].duplicated().any() or not len(pairs) == model["n_docs"] == lead["n_docs"]:
        return None
    return pairs[f"{metric}_model"].to_numpy(), pairs[f"{metric}_lead"].to_numpy()


def lead_margins(rouge: pd.DataFrame | None, docs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every model's mean ROUGE F1 minus Lead-k's on the same dataset, input length and documents.

    ``ci_low``/``ci_high`` bound the difference: the paired bootstrap over documents
    (``paired_difference_ci``, method "paired bootstrap") where ``docs`` (records.RougeDocRow rows)
    holds both systems' scores on the same documents; else model's 95% CI minus Lead-k's (method
    "CI difference": [model_lo − lead_hi, model_hi − lead_lo]; under the normal approximation it is
    wider than the paired interval whatever the correlation of the two systems, since sd(a − b) ≤
    sd(a) + sd(b), so that ``ci_low > 0`` still shows the margin). A model with no Lead-k on its
    documents gets one row with ``method`` "no Lead-k"."""
    if rouge is None or rouge.empty:
        return pd.DataFrame(columns=MARGIN_COLUMNS)
    where = ["dataset", "input_len", "n_docs"]
    keyed = rouge.assign(_key=key_of(rouge, where))
    leads = keyed[keyed["kind"].eq("extractive") & keyed["system"].astype(str).str.fullmatch(LEAD_SYSTEM)]
    rows = []
    for model in keyed[keyed["kind"].eq("model")].to_dict("records"):
        base = {**{c: model[c] for c in where}, "system": model["system"]}
        matching = leads[leads["_key"].eq(model["_key"])]
        if matching.empty:
            rows.append({**base, "method": "no Lead-k"})
            continue
        lead = matching.iloc[0].to_dict()
        for metric in ROUGE_METRICS:
            if pd.isna(model[metric]) or pd.isna(lead[metric]):
                continue
            paired = _paired_scores(docs, model, lead, metric)
            if paired is not None:
                difference, low, high = paired_difference_ci(*paired)
            else:
                difference = model[metric] - lead[metric]
                low = model[f"{metric}_lo"] - lead[f"{metric}_hi"]
                high = model[f"{metric}_hi"] - lead[f"{metric}_lo"]
            rows.append({**base, "lead_system": lead["system"], "metric": metric, "model": model[metric],
                         "lead": lead[metric], "difference": difference, "ci_low": low, "ci_high": high,
                         "method": "CI difference" if paired is None else "paired bootstrap"})
    return pd.DataFrame(rows, columns=MARGIN_COLUMNS)
