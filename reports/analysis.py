"""Numbers derived from records: power-law fits, LOCOST-vs-baseline memory comparisons, reach, ROUGE ratios.

``fit_power_law`` is the one home of the scaling fit (the scaling CLI imports it from here).
Every comparison here pairs cells measured under identical conditions (``runs.CONDITION_COLUMNS``):
a LOCOST figure is never divided by a baseline figure taken under other conditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from records import ROUGE_METRICS
from reports.runs import CONDITION_COLUMNS, LOCOST, SUITES, key_of, section_of

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


def comparable_cells(records: pd.DataFrame) -> pd.DataFrame:
    """One record per (model, mode, length, conditions) over all runs: an ok one if any, then one from
    the memory suite before scaling before throughput, then the latest."""
    if records.empty:
        return records
    ranked = records.assign(
        _ok=records["status"].eq("ok"),
        _suite=-records["suite"].map(lambda suite: SUITES.index(section_of(suite))),
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


ROUGE_CONDITIONS = ["dataset", "input_len", "n_docs", "train_steps", "size"]


def rouge_relative(rouge: pd.DataFrame | None) -> pd.DataFrame:
    """LOCOST's ROUGE as % of each model baseline's, same dataset, length, documents, steps and size."""
    columns = [
        "dataset",
        "input_len",
        "n_docs",
        "train_steps",
        "metric",
        "locost_system",
        "baseline_system",
        "locost",
        "baseline",
        "relative_pct",
    ]
    if rouge is None or rouge.empty:
        return pd.DataFrame(columns=columns)
    models = rouge[rouge["kind"].eq("model")]
    models = models.assign(_key=key_of(models, ROUGE_CONDITIONS))
    is_locost = models["family"].astype(str).eq(LOCOST)  # exactly: not locost-s4
    pairs = models[is_locost].merge(models[~is_locost], on="_key", suffixes=("_locost", "_baseline"))
    rows = []
    for pair in pairs.itertuples(index=False):
        pair = pair._asdict()
        for metric in ROUGE_METRICS:
            locost, baseline = pair[f"{metric}_locost"], pair[f"{metric}_baseline"]
            if pd.notna(locost) and pd.notna(baseline) and baseline > 0:
                rows.append(
                    {
                        "dataset": pair["dataset_locost"],
                        "input_len": pair["input_len_locost"],
                        "n_docs": pair["n_docs_locost"],
                        "train_steps": pair["train_steps_locost"],
                        "metric": metric,
                        "locost_system": pair["system_locost"],
                        "baseline_system": pair["system_baseline"],
                        "locost": locost,
                        "baseline": baseline,
                        "relative_pct": 100 * locost / baseline,
                    }
                )
    return pd.DataFrame(rows, columns=columns)
