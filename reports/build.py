"""Build the report: run directories -> tidy CSVs, one PNG per figure, one self-contained report.html."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd

from records import (
    RESULTS,
    RESULTS_CSV,
    ROUGE_METRICS,
    RunInfo,
    process_alive,
    remove_stale_temporaries,
    write_csv,
    write_results_csv,
)
from records.suites import SCALING_LAYOUT, SUITE_REPORTS, SuiteReport, report_of
from reports import claims as claims_module
from reports import plots, summary, text
from reports.analysis import (
    BUSY_HOST_SHARE,
    CROSSOVER_RULE,
    cores_taken,
    crossovers,
    memory_comparisons,
    reach,
    rouge_relative,
    scaling_fits,
    simulated_vs_measured,
)
from reports.runs import (
    MIB,
    MODES,
    ReportError,
    Run,
    invocation_settings,
    load_run,
    records_frame,
)

OUT_ROOT = Path("reports") / "out"  # relative to the working directory, like the bench's run directories
VERDICT_CLASSES = {
    claims_module.REPRODUCED: "good",
    claims_module.NOT_REPRODUCED: "bad",
    claims_module.INCONCLUSIVE: "unsure",
    claims_module.NOT_MEASURED: "none",
    claims_module.NO_VERDICT: "",
}


@dataclass
class Table:
    title: str
    caption: str
    columns: list[str]
    rows: list[list]  # cells: plain values, or {"text", "cls", "note"} dicts
    kind: str = "table"
    cls: str = ""  # CSS class of the <table>
    badge: str = ""  # a badge beside the title: "simulated h100-80gb" for a table of simulated figures


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list = field(default_factory=list)  # Tables and plots.Figures, in order


def html_cell(value, cls: str = "", note: str = "", details: str = "", badge: str = "") -> dict:
    """A table cell with a CSS class, a note shown beneath it and ``details`` folded beneath that (an
    HTML <details>, open on a click: the claims' decision rules), ``badge`` beside the value (a
    simulated figure's "simulated") (the template's dict form)."""
    return {"text": value, "cls": cls, "note": note, "details": details, "badge": badge}


def simulated_badge(rows: pd.DataFrame) -> str:
    """'simulated h100-80gb' (each GPU once) where ``rows`` hold simulated figures (bench.gpusim), else ''."""
    return ", ".join(f"simulated {gpu}" for gpu in plots.simulated_gpus(rows))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_csv(frame.drop(columns=["condition_key", "series"], errors="ignore"), path)


# --- sections ---------------------------------------------------------------------------------------


def time_notes(claims: pd.DataFrame, records: pd.DataFrame) -> list[str]:
    """Per claim row: for a measured claim on time, what LOCOST's times rest on when some were single
    steps (``plots.timing_note``); '' for the others."""
    timing = plots.timing_note(records[records["family"].eq("locost")]) if not records.empty else ""
    worded = timing.replace(" · times: ", "LOCOST's times: ")
    return [worded if " time" in str(claim) and verdict != claims_module.NOT_MEASURED else ""
            for claim, verdict in zip(claims["claim"], claims["verdict"], strict=True)]


def _claims_section(claims: pd.DataFrame, records: pd.DataFrame) -> Section:
    rows = []
    for claim, time_note in zip(claims.itertuples(index=False), time_notes(claims, records), strict=True):
        headline = claim.scope == "all"
        rows.append(
            [
                html_cell(claim.claim if headline else "", details=claim.rule if headline else ""),
                "" if headline else claim.scope,
                claim.paper_value if headline else "",
                claim.best_measured,
                claim.typical_measured,
                claim.conditions,
                html_cell(claims_module.verdict_words(claim._asdict()),
                          "verdict " + VERDICT_CLASSES[claim.verdict],
                          " ".join(note for note in (claim.reason, time_note) if note))
                if headline
                else "",
            ]
        )
    table = Table(
        "Claims of the LOCOST paper",
        "Computed from the records in this report; each claim's decision rule opens under it "
        "(click), the reason for its verdict under the verdict. Inconclusive: there are data, "
        "but they cannot decide. Rows per baseline or series give measured figures without a verdict "
        "(the paper's figures are maxima over baselines). Comparisons pair only cells with identical "
        "device, device name, dtype, batch, target length, new tokens and model size. A claim is judged "
        "once from measured figures and once per simulated GPU (bench.gpusim), never from both: its "
        "verdict then names the GPU (\"reproduced, simulated h100-80gb\").",
        ["claim", "scope", "paper", "best measured", "typical (median)", "conditions of the best", "verdict"],
        rows,
        cls="claims",
    )
    return Section("claims", "Claims", blocks=[table])


def _command(info: RunInfo) -> str:
    """The run's command line in one string (ROUGE's options as ``key=value``)."""
    if isinstance(info.command, dict):
        return " ".join(f"{key}={value}" for key, value in info.command.items()
                        if value not in (None, False, [], ""))
    return " ".join(map(str, info.command or []))


RUN_FIELDS = [  # (label, record column, run.json env key, formatter)
    ("device", "device", None, str),
    ("device name", "env_device_name", "device_name", str),
    ("CPU", "env_cpu_model", "cpu_model", str),
    ("CPU cores", "env_cpu_count", "cpu_count", text.integer),
    ("CPU bf16 matmul", "env_cpu_native_bf16", "cpu_native_bf16",
     lambda native: "native" if native else "emulated (no AVX512-BF16 or AMX)"),
    ("dtype", "dtype", None, str),
    ("batch", "batch", None, text.integer),
    ("target length (train)", "target_len", None, text.integer),
    ("new tokens (generate)", "new_tokens", None, text.integer),
    ("threads", "threads", "threads", text.integer),
    ("torch", "env_torch", "torch", str),
    ("transformers", "env_transformers", "transformers", str),
    ("python", "env_python", "python", str),
    ("git commit", "env_git_commit", "git_commit", text.commit),
    ("host", "env_hostname", "hostname", str),
    ("platform", "env_platform", "platform", str),
]


def run_budgets_mib(runs: list[Run]) -> dict[str, tuple[float, ...]]:
    """Run id -> the host-memory budgets per cell its invocations ran under, in MiB."""
    budgets = {}
    for run in runs:
        values = {s["budget_bytes"] / MIB for s in invocation_settings(run) if s.get("budget_bytes")}
        for run_id in {run.info.run_id or run.path.name, *text.distinct(run.records, "run_id")}:
            budgets[run_id] = tuple(sorted(values))
    return budgets


def _setting(run: Run, key: str, fmt) -> str:
    values = dict.fromkeys(fmt(s[key]) for s in invocation_settings(run) if s.get(key) is not None)
    return " / ".join(values) or text.DASH


def _budget(run: Run) -> str:
    given = isinstance(run.info.command, list) and any(str(arg).startswith("--budget-gb")
                                                       for arg in run.info.command)
    fraction = next((s.get("budget_fraction") for s in invocation_settings(run)), None)
    how = "" if given or fraction is None else f" ({fraction:g} × available memory at start)"
    values = _setting(run, "budget_bytes", lambda b: f"{b / 2**30:.1f} GiB")
    return text.DASH if values == text.DASH else f"{values} of total RSS{how}"


def _steps(run: Run) -> str:
    """'1 warm-up + 1 timed step: 1K–4K; no warm-up, 1 timed step: 16K' from the ok records."""
    timed = run.records[run.records["status"].eq("ok")] if not run.records.empty else run.records
    if timed.empty or timed["repeats"].isna().all():
        return text.DASH
    parts = []
    for (warmup, repeats), rows in timed.groupby(["warmup", "repeats"], sort=True):
        lengths = sorted(rows["input_len"].dropna().unique())
        steps = f"{text.integer(repeats)} timed step{'s' * (repeats != 1)}"
        head = f"{text.integer(warmup)} warm-up + {steps}" if warmup else f"no warm-up, {steps}"
        span = text.length(lengths[0]) + ("" if len(lengths) == 1 else f"–{text.length(lengths[-1])}")
        parts.append((lengths[0], f"{head}: {span}"))
    parts = [part for _, part in sorted(parts)]
    once = timed["repeats"].eq(1)
    verdict = ("every cell timed once: one step, no median or spread" if once.all() else
               f"{int(once.sum())} of {len(timed)} cells timed once" if once.any() else "")
    return "; ".join(parts) + (f" ({verdict})" if verdict else "")


def _dropout(run: Run) -> str:
    rates = run.info.dropout
    if not rates:
        return "not recorded in run.json"
    worded = {model: ", ".join(f"{k} {v:g}" for k, v in values.items() if v) or "none"
              for model, values in rates.items() if isinstance(values, dict)}
    if len(set(worded.values())) == 1:
        return f"{next(iter(worded.values()))} (every model)"
    return "; ".join(f"{model}: {value}" for model, value in worded.items())


def _modes(run: Run) -> str:
    states = run.info.modes
    if not states:
        return "not recorded in run.json"
    return "; ".join(f"{mode}: {state}" for mode, state in states.items())


def _host_load(run: Run) -> str:
    """Other work on the host during the cells' timed steps (``host_other_cores``), and how many cells
    it took cores from (``analysis.cores_taken`` above ``BUSY_HOST_SHARE``)."""
    timed = run.records[run.records["host_other_cores"].notna()] if not run.records.empty else run.records
    if timed.empty:
        return text.DASH
    other, busy = timed["host_other_cores"], int((cores_taken(timed) > BUSY_HOST_SHARE).sum())
    load = f"{other.median():.2f} cores busy with other work (median of {len(timed)} cells), " \
           f"max {other.max():.2f}"
    if not busy:
        return f"{load}; no cell lost more than {BUSY_HOST_SHARE:.0%} of its cores to it"
    return (f"{load}; {busy} of {len(timed)} cells lost more than {BUSY_HOST_SHARE:.0%} of their cores to "
            "it: their wall times are lengthened")


MEASUREMENT_ROWS = [  # (label, what a run says): how each cell was measured
    ("host-memory budget per cell", _budget),
    ("timeout per cell", lambda run: _setting(run, "timeout_s", lambda t: f"{t:,.0f} s, build included")),
    ("warm-up and timed steps", _steps),
    ("min. timed time per cell", lambda run: _setting(run, "min_time_s", lambda t: f"{t:g} s")),
    ("host load (timed steps)", _host_load),
    ("model state per mode", _modes),
    ("dropout (train steps)", _dropout),
]


def _produced_by(run: Run) -> dict | str:
    """A run's figures in the conditions table: measured, or a badge naming the GPU they were simulated on."""
    badge = simulated_badge(run.records) if not run.records.empty else ""
    if not badge:
        return "measured"
    return html_cell("simulated: fake tensors on this host's CPU, CUDA allocator bytes (bench.gpusim); "
                     "no times", badge=badge)


def _conditions_section(runs: list[Run]) -> Section:
    """One column per run, one row per condition: values from the records, else from run.json's env."""

    def values(run, column, env_key, fmt):
        found = text.distinct(run.records, column)
        env = run.info.env
        if not found and env_key and env.get(env_key) is not None:
            found = [env[env_key]]
        return " / ".join(dict.fromkeys(fmt(v) for v in found)) or text.DASH

    def cells_done(run):
        ok = int(run.records["status"].eq("ok").sum()) if not run.records.empty else 0
        return f"{ok} / {len(run.records)}" + (" + ROUGE" if run.rouge is not None else "")

    def first_started(info: RunInfo) -> str | None:
        return (info.earlier_invocations or [info])[0].started_at

    rows = [["suite", *(run.info.suite or values(run, "suite", None, str) for run in runs)],
            ["figures", *(_produced_by(run) for run in runs)]]
    rows += [
        [label, *(values(run, column, env_key, fmt) for run in runs)]
        for label, column, env_key, fmt in RUN_FIELDS
    ]
    rows += [[label, *(describe(run) for run in runs)] for label, describe in MEASUREMENT_ROWS]
    rows += [
        ["started", *(first_started(run.info) or text.DASH for run in runs)],
        ["finished", *(run.info.finished_at or text.DASH for run in runs)],
        ["invocations", *(str(1 + len(run.info.earlier_invocations)) for run in runs)],
        ["cells ok / all", *(cells_done(run) for run in runs)],
        ["arguments", *(html_cell(_command(run.info) or text.DASH, "small") for run in runs)],
        ["directory", *(html_cell(str(run.path), "small") for run in runs)],
    ]
    table = Table(
        "Runs",
        "One column per run directory; values from the records' cell and env fields "
        "(run.json where the records hold none).",
        ["", *(run.info.run_id or run.path.name for run in runs)],
        rows,
    )
    return Section("conditions", "Run conditions", blocks=[table])


def _models_section(records: pd.DataFrame) -> Section:
    models = records.drop_duplicates("model").sort_values(["family", "params_total"])
    rows = [
        [
            m.family,
            m.size,
            m.model,
            text.integer(m.params_total),
            text.integer(m.params_embedding),
            text.integer(m.params_non_embedding),
            _attention(records, m.model),
        ]
        for m in models.itertuples()
    ]
    table = Table(
        "Models",
        "Parameter counts as recorded by the cells; comparisons are at the same size. Attention: the "
        "implementation each model's cells ran (the records' attn_implementation, its config's "
        "_attn_implementation: eager, sdpa, flash_attention_2, ...; LOCOST's is its decoder's, the encoder "
        "has none); several where the cells differ, – where the records predate the field.",
        ["family", "size", "model", "params total", "embedding", "non-embedding", "attention"],
        rows,
    )
    return Section("models", "Models", blocks=[table])


def _attention(records: pd.DataFrame, model: str) -> str:
    """The attention implementations that ``model``'s records name, sorted and joined; – when none."""
    column = records.get("attn_implementation", pd.Series(None, index=records.index))
    names = sorted({str(name) for name in column[records["model"].eq(model)] if not text.is_missing(name)})
    return ", ".join(names) or text.DASH


def _value_table(title: str, records: pd.DataFrame, column: str, fmt, note) -> Table:
    """Rows (mode, length), a column per model: the value (``note`` beneath) where ok, else the status."""
    models = sorted(records["model"].dropna().unique(), key=lambda m: (not str(m).startswith("locost"), m))
    keyed = {}
    for record in records.itertuples(index=False):
        badge = "simulated" if record.produced_by == "simulation" else ""
        value = (
            html_cell(fmt(getattr(record, column)), note=note(record), badge=badge)
            if record.status == "ok"
            else html_cell(record.status, "fail", record.message, badge=badge)
        )
        keyed.setdefault((record.mode, record.input_len), {})[record.model] = value
    order = {mode: index for index, mode in enumerate(MODES)}
    rows = [
        [mode, text.length(length), *(cells.get(model, "") for model in models)]
        for (mode, length), cells in sorted(
            keyed.items(), key=lambda item: (order.get(item[0][0], 9), item[0][1])
        )
    ]
    return Table(title, "Conditions: " + text.conditions(records), ["mode", "input length", *models], rows,
                 badge=simulated_badge(records))


def _length_section(
    section: str, title: str, records: pd.DataFrame, column: str, ylabel: str, fmt, note, intro: str,
    budgets: dict | None = None, extra_figures: tuple = (),
) -> Section:
    caption = plots.timing_note(records) if column != "mem_peak_above_base_mib" else ""
    blocks = list(plots.length_figures(records, section, column, ylabel, title, budgets, caption))
    blocks += extra_figures
    for parts, rows in plots.figure_groups(records):
        blocks.append(
            _value_table(
                f"{ylabel} — {', '.join(str(p) for p in parts if not text.is_missing(p))}",
                rows,
                column,
                fmt,
                note,
            )
        )
    return Section(section, title, intro, blocks)


def _saving_cell(pair) -> dict:
    """A baseline's cell of the savings table: the saving with the ratio beneath; where the baseline
    ran out of memory, the bound its killed peak gives; else why there is no figure."""
    if not pair.note:
        return html_cell(text.saving(pair.saving_pct), "good" if pair.saving_pct > 0 else "bad",
                         f"{pair.ratio:.2f}× of {text.number(pair.baseline_mib)} MiB")
    if pd.notna(pair.ratio_bound):
        killed = f"killed at {text.number(pair.baseline_mib)} MiB above its weights"
        return html_cell(f"≥ {text.saving(100 * (1 - pair.ratio_bound))}", "good",
                         f"≤ {pair.ratio_bound:.2f}×: baseline oom, {killed}")
    won = pair.locost_status == "ok" and pair.baseline_status not in ("ok", "skipped")
    skipped = "skipped" in (pair.locost_status, pair.baseline_status)
    return html_cell(pair.note, "good" if won else "" if skipped else "fail")


def _savings_section(comparisons: pd.DataFrame) -> Section:
    blocks = list(plots.ratio_figures(comparisons))
    for _, group in comparisons.groupby("condition_key", sort=True):
        baselines = sorted(group["baseline_model"].unique())
        keyed = {}
        for pair in group.itertuples(index=False):
            row = keyed.setdefault((pair.mode, pair.input_len), {"locost": text.DASH})
            if pair.locost_status == "ok":
                row["locost"] = f"{text.number(pair.locost_mib)} MiB"
            else:
                row["locost"] = html_cell(pair.locost_status, "fail")
            row[pair.baseline_model] = _saving_cell(pair)
        order = {mode: index for index, mode in enumerate(MODES)}
        rows = [
            [mode, text.length(length), values["locost"], *(values.get(b, "") for b in baselines)]
            for (mode, length), values in sorted(
                keyed.items(), key=lambda i: (order.get(i[0][0], 9), i[0][1])
            )
        ]
        first = group.iloc[0]
        blocks.append(
            Table(
                f"{first['locost_model']} against baselines — {text.condition_label(first)}",
                "Conditions (identical for every pair in this table): "
                + text.condition_label(first)
                + " · runs "
                + " / ".join(sorted(set(group["locost_run_id"]) | set(group["baseline_run_id"]))),
                ["mode", "input length", f"{first['locost_model']} (above weights)", *baselines],
                rows,
                badge=simulated_badge(group),
            )
        )
    intro = (
        "Peak memory above the weights. Each baseline cell: LOCOST's saving (1 − LOCOST/baseline) and, "
        "beneath, LOCOST's figure as a fraction of the baseline's, where both ran ok. Where the baseline "
        "ran out of the budget, \"≥ … less\" is the bound its peak when killed gives (its full peak was "
        'higher); "baseline unsupported" (and similar) marks other cells where the baseline failed and '
        "LOCOST ran."
    )
    return Section("savings", "Memory savings of LOCOST", intro, blocks)


def _sim_vs_measured_section(paired: pd.DataFrame) -> Section:
    """``analysis.simulated_vs_measured``'s pairs: each simulated peak beside the real one, and the error."""
    def peak(status, mib, badge=""):
        ok = status == "ok"
        return html_cell(text.number(mib) if ok else status, "" if ok else "fail", badge=badge)

    rows = [[p.model, p.mode, text.length(p.input_len),
             f"{p.dtype}, batch {text.integer(p.batch)}" + (f", {p.settings}" if p.settings else ""),
             peak(p.simulated_status, p.simulated_mib, f"simulated {p.simulated_gpu}"),
             peak(p.measured_status, p.measured_mib), p.measured_device,
             text.DASH if text.is_missing(p.relative_error_pct) else f"{p.relative_error_pct:+.1f}%",
             html_cell(p.simulated_versions, "small"), html_cell(p.measured_versions, "small")]
            for p in paired.itertuples(index=False)]
    table = Table("Simulated and measured peaks of the same cells",
                  "Peak memory above the weights, MiB: simulated (bench.gpusim) and measured on a real GPU "
                  "(max_memory_allocated minus the memory before the step); cells pair by model, mode, "
                  "input length, target / new tokens, batch, dtype, inputs and config fields (GPU, versions "
                  "and host may differ). Error = (simulated − measured) / measured. Written to "
                  "sim_vs_measured.csv.",
                  ["model", "mode", "input length", "conditions", "simulated", "measured", "measured on",
                   "error", "simulated with", "measured with"], rows, badge=simulated_badge(
                      paired.assign(produced_by="simulation")))
    return Section("sim-vs-measured", "Simulated against measured GPU peaks", blocks=[table])


def _crossover_section(crossing: pd.DataFrame) -> Section:
    """Per metric, baseline and mode: the length from which LOCOST needs less, with its bracket."""
    rows = [[r.metric, r.mode, r.baseline_model, r.where, r.lengths, text.condition_label(r)]
            for r in crossing.itertuples(index=False)]
    table = Table("From which input length LOCOST needs less", "Rule: " + CROSSOVER_RULE + ". The figures "
                  "mark these lengths (dotted verticals).",
                  ["metric", "mode", "baseline", "LOCOST needs less from", "lengths compared", "conditions"],
                  rows)
    return Section("crossovers", "Crossover lengths", blocks=[table])


def _scaling_section(report: SuiteReport, records: pd.DataFrame, out: Path, budgets: dict) -> Section:
    """A scaling layout: its figures, the fitted exponents (also ``<suite>_fits.csv``) and reach."""
    fits = scaling_fits(records)
    if not fits.empty:
        _write_csv(fits, out / f"{report.suite}_fits.csv")
    blocks = list(plots.scaling_figures(records, fits, budgets))
    if not fits.empty:
        blocks.append(_fits_table(records, fits))
    blocks.append(_reach_table(records))
    return Section(
        report.suite, report.title, "Memory and time against input length, with fitted power laws.", blocks
    )


def _fits_table(records: pd.DataFrame, fits: pd.DataFrame) -> Table:
    rows = [
        [
            f.model,
            f.mode,
            f.quantity,
            text.exponent(f.slope, f.ci_low, f.ci_high),
            f.n,
            f"{text.length(f.min_len)}–{text.length(f.max_len)}",
            text.condition_label(f._asdict()),
            text.integer(f.threads),
        ]
        for f in fits.itertuples(index=False)
    ]
    return Table(
        "Fitted exponents",
        "value ∝ length^k by least squares on log-log over the ok "
        "lengths; 95% CI of k from the t distribution (needs ≥ 3 lengths). L log L over "
        "1K–600K fits k slightly above 1; quadratic ≈ 2. Conditions: " + text.conditions(records)
        + plots.timing_note(records),
        ["model", "mode", "quantity", "exponent k [95% CI]", "lengths", "range", "conditions", "threads"],
        rows,
    )


def _reach_table(records: pd.DataFrame) -> Table:
    rows = [
        [
            r.model,
            r.mode,
            html_cell("none", "fail") if text.is_missing(r.longest_ok) else text.length(r.longest_ok),
            "none up to the longest tried"
            if text.is_missing(r.first_failure_len)
            else text.length(r.first_failure_len),
            (html_cell(r.first_failure_status, "fail", r.first_failure_message)
             if r.first_failure_status else ""),
            text.condition_label(r._asdict()),
            text.integer(r.threads),
        ]
        for r in reach(records).itertuples(index=False)
    ]
    return Table(
        "Longest length reached",
        "Per model and mode: the longest input run ok and the first "
        "length that was not. Conditions: " + text.conditions(records),
        ["model", "mode", "longest ok", "first failure at", "status / message", "conditions", "threads"],
        rows,
    )


def _rouge_section(rouge: pd.DataFrame, relative: pd.DataFrame) -> Section:
    """``relative``: ``analysis.rouge_relative`` of the runs' relative.jsonl."""
    blocks = [*plots.rouge_figures(rouge), _rouge_scores_table(rouge)]
    if not relative.empty:
        blocks.append(_rouge_relative_table(relative))
    return Section("rouge", "Summary quality (ROUGE)", blocks=blocks)


def _rouge_scores_table(rouge: pd.DataFrame) -> Table:
    metrics = [m for m in ROUGE_METRICS if rouge[m].notna().any()]

    def score(row, metric):
        if pd.isna(row[metric]):
            return text.DASH
        return html_cell(
            f"{100 * row[metric]:.2f}",
            note=f"[{100 * row[metric + '_lo']:.2f}, {100 * row[metric + '_hi']:.2f}]"
            if pd.notna(row[metric + "_lo"]) and pd.notna(row[metric + "_hi"])
            else "",
        )

    ordered = rouge.sort_values(["dataset", "kind", "system", "input_len"], na_position="last")
    rows = [
        [
            r["system"],
            r["kind"],
            text.length(r["input_len"]),
            *(score(r, m) for m in metrics),
            text.integer(r["params_total"]),
            text.integer(r["train_steps"]),
            r["dataset"],
            text.integer(r["n_docs"]),
        ]
        for _, r in ordered.iterrows()
    ]
    return Table(
        "ROUGE F1 (×100, 95% bootstrap CI beneath)",
        "Conditions: " + text.rouge_conditions(rouge),
        ["system", "kind", "input length", *metrics, "params", "train steps", "dataset", "documents"],
        rows,
    )


def _rouge_relative_table(relative: pd.DataFrame) -> Table:
    """relative.jsonl's figures as they are: one row per pair and length, one column per metric."""
    keys = ["run_id", "locost_system", "baseline_system", "input_len"]
    rel_metrics = [m for m in ROUGE_METRICS if relative["metric"].eq(m).any()]
    rows = []
    for _, pair in relative.groupby(keys, dropna=False, sort=False):
        by_metric = {r["metric"]: r for _, r in pair.iterrows()}
        first = pair.iloc[0]
        rows.append([
            first["locost_system"],
            first["baseline_system"],
            text.length(first["input_len"]),
            *(html_cell(text.percent(by_metric[m]["relative_pct"]),
                        note=f"[{text.percent(by_metric[m]['relative_lo_pct'])}, "
                             f"{text.percent(by_metric[m]['relative_hi_pct'])}]")
              if m in by_metric else text.DASH for m in rel_metrics),
            first["dataset"],
            text.integer(first["n_docs"]),
            text.integer(first["train_steps"]),
        ])
    return Table(
        "Relative quality: LOCOST's ROUGE as % of each baseline's (paired bootstrap 95% CI beneath)",
        'The paper\'s "93–96%" measure, as the ROUGE suite wrote it to relative.jsonl: ratio of mean F1 '
        "over the same documents, CI from resampling documents for both systems at once. Pairs come from "
        "one run: same dataset, input length, documents and training budget.",
        ["LOCOST", "baseline", "input length", *rel_metrics, "dataset", "documents", "train steps"],
        rows,
    )


def _likelihood_section(rouge: pd.DataFrame, curves: pd.DataFrame | None) -> Section | None:
    """Reference-summary NLL vs input length (figure and table, ROUGE-1 beside it) and learning curves."""
    blocks = []
    if "nll" in rouge.columns and rouge["nll"].notna().any():
        blocks += [*plots.nll_figures(rouge), _nll_table(rouge)]
    if curves is not None and not curves.empty:
        blocks += plots.curve_figures(curves)
    if not blocks:
        return None
    return Section(
        "likelihood",
        "Reference-summary likelihood and learning curves",
        intro="Negative log-likelihood of the reference summary under teacher forcing, in nats per token of "
        "the suite's shared tokenizer (the same tokens for every model; lower is better). It separates "
        "models that ROUGE of generated text cannot at small scale, and shows whether a model uses more "
        "of the document.",
        blocks=blocks,
    )


def _nll_table(rouge: pd.DataFrame) -> Table:
    models = rouge[rouge["kind"].eq("model") & rouge["nll"].notna()]
    ordered = models.sort_values(["dataset", "system", "input_len"], na_position="last")

    def ci(value, low, high, fmt):
        return html_cell(fmt(value), note=f"[{fmt(low)}, {fmt(high)}]")

    rows = [
        [
            r["system"],
            text.length(r["input_len"]),
            ci(r["nll"], r["nll_lo"], r["nll_hi"], lambda v: f"{v:.4f}"),
            ci(r["nll_gain"], r["nll_gain_lo"], r["nll_gain_hi"], lambda v: f"{v:+.4f}")
            if pd.notna(r["nll_gain"]) else text.DASH,
            text.length(r["nll_gain_from"]) if pd.notna(r["nll_gain_from"]) else text.DASH,
            f"{100 * r['rouge1']:.2f}",
            text.integer(r["nll_tokens"]),
            text.integer(r["n_docs"]),
            r["dataset"],
        ]
        for _, r in ordered.iterrows()
    ]
    return Table(
        "Reference-summary NLL (nats/token, 95% bootstrap CI beneath) with ROUGE-1 beside it",
        "gain: mean over documents of NLL at the shortest length minus NLL at this one (paired; > 0: the "
        "longer input helps). Conditions: " + text.rouge_conditions(rouge),
        ["system", "input length", "NLL", "gain vs shortest", "shortest", "ROUGE-1 ×100", "reference tokens",
         "documents", "dataset"],
        rows,
    )


def _capacity_section(capacity: pd.DataFrame, out: Path) -> Section:
    """The capacity searches (``bench.capacity``): a table per GPU and preset, LOCOST's longest beside
    each model's, then their figure; ``longest_inputs.csv`` written beside them (the rows of every run, with
    ``run_id`` and ``peak_gib``: not ``capacity.csv``, which each capacity run writes of its own rows)."""
    _write_csv(capacity, out / "longest_inputs.csv")
    blocks = []
    for (gpu, size), rows in capacity.groupby(["gpu", "size"], sort=True):
        blocks.append(_capacity_table(gpu, size, rows))
    blocks += plots.capacity_figures(capacity)
    return Section("capacity", "Longest input on a GPU (simulated)", (
        "The longest input each model takes in one step on a GPU, searched on simulated peaks (python -m "
        "bench.capacity: the step on fake tensors standing for CUDA ones, bf16 autocast, batch 1, 512 "
        "target / 64 new tokens; lengths double until one does not fit, then the bracket closes to 1% or "
        "1,024 tokens). A length fits when the built model, its batch and the step's peak of allocated "
        "bytes fit the GPU's memory less its CUDA context. Not counted: the caching allocator's "
        "fragmentation (reserved above allocated) and library workspaces, so a real GPU may stop earlier."),
        blocks)


def _capacity_table(gpu: str, size: str, rows: pd.DataFrame) -> Table:
    """One GPU and preset's capacity rows by mode, LOCOST first, with LOCOST's longest over each model's."""
    ordered = sorted(rows.to_dict("records"), key=lambda r: (
        MODES.index(r["mode"]) if r["mode"] in MODES else len(MODES), not r["family"].startswith("locost"),
        r["family"]))
    ours = {r["mode"]: r["longest_ok"] for r in ordered if r["family"] == "locost"}
    body = []
    for r in ordered:
        mine, theirs = ours.get(r["mode"]), r["longest_ok"]
        ratio = (f"{mine / theirs:.2f}×" if r["family"] != "locost" and not text.is_missing(mine)
                 and not text.is_missing(theirs) else text.DASH)
        body.append([r["model"], r["mode"], text.integer(theirs), text.integer(r["first_failure"]),
                     r["reason"] or "the longest tried fits", text.number(r["peak_gib"], 2), ratio])
    return Table(
        f"Longest input (tokens) on {gpu}, {size} presets",
        f"{ordered[0]['usable_bytes'] / 2**30:.1f} GiB usable; peak GiB: model + batch + step peak at the "
        f"longest input that fits; run {', '.join(sorted(set(rows['run_id'])))}.",
        ["model", "mode", "longest that fits", "first that does not", "why not", "peak GiB",
         "LOCOST's longest / this"],
        body, badge=f"simulated {gpu}")


def _failures_section(records: pd.DataFrame, skipped: list[dict]) -> Section:
    """Cells that did not run ok, and lines of results.jsonl that are not records at all."""
    blocks = []
    failed = records[~records["status"].eq("ok")].sort_values(["run_id", "model", "mode", "input_len"])
    if not failed.empty:
        rows = [[r["run_id"], r["model"], r["mode"], text.length(r["input_len"]),
                 html_cell(r["status"], "fail"), r["message"], text.condition_label(r)]
                for _, r in failed.iterrows()]
        blocks.append(Table("Cells that did not run ok", f"{len(failed)} of {len(records)} cells.",
                            ["run", "model", "mode", "input length", "status", "message", "conditions"],
                            rows))
    if skipped:
        blocks.append(Table(
            "Records skipped: they do not fit the record schema (records.schema)",
            f"{len(skipped)} lines left out of every table, figure and verdict.",
            ["file", "line", "why"], [[s["file"], s["line"], s["reason"]] for s in skipped]))
    return Section("failures", "Failures", blocks=blocks)


# --- build ------------------------------------------------------------------------------------------


def _default_out(run_dirs: list[Path]) -> Path:
    if len(run_dirs) == 1:
        return run_dirs[0]
    return OUT_ROOT / f"combined-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"


def build(run_dirs: list[Path | str], out_dir: Path | str | None = None) -> Path:
    """Write the CSVs, figures and report.html of ``run_dirs`` into ``out_dir``; return report.html's path.

    ``out_dir`` defaults to the run directory itself, or ``reports/out/combined-<UTC time>`` for several.
    Every file is written into a staging directory first and moved into ``out_dir`` only when all of
    them are, so that a failure leaves no partial CSVs. Each run's ``results.csv`` is regenerated
    from its ``results.jsonl``. Records that do not fit the schema are left out and listed under
    Failures. Raises ReportError (one line) for a missing directory or one without valid records.
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    # each directory once, however it is named (RUN and RUN/, a symbolic link, a relative path)
    run_dirs = list({Path(p).resolve(): Path(p) for p in run_dirs}.values())
    if not run_dirs:
        raise ReportError("no run directory given")
    runs = [load_run(p) for p in run_dirs]
    for run in runs:
        remove_stale_temporaries(run.path)
        _regenerate_results_csv(run)
    out = Path(out_dir) if out_dir is not None else _default_out(run_dirs)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    remove_stale_temporaries(out)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        _build_into(runs, staging)
        for path in sorted(staging.iterdir()):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "report.html"


#: the staging directory of a build in progress: ``.report-<pid>-<random>`` in the output directory
STAGING_PREFIX = ".report-"


def _remove_stale_staging(out: Path) -> None:
    """Remove the staging directories of builds that were killed (their process is gone; one without
    a pid in its name is from a harness before pids were written)."""
    for staging in out.glob(f"{STAGING_PREFIX}*"):
        pid = staging.name[len(STAGING_PREFIX):].split("-")[0]
        if staging.is_dir() and not (pid.isdigit() and process_alive(int(pid))):
            shutil.rmtree(staging, ignore_errors=True)


def _regenerate_results_csv(run: Run) -> None:
    """results.csv from results.jsonl, the one source of truth; a read-only run is only warned of."""
    if (run.path / RESULTS).is_file():
        try:
            write_results_csv(run.path)
        except OSError as exc:
            run.warnings.append(f"{run.path / RESULTS_CSV}: not regenerated ({exc.strerror or exc})")


def _build_into(runs: list[Run], out: Path) -> Path:
    records, rouge = _combined(runs)
    relative, curves, docs = _combined_rouge_extras(runs)
    claims = claims_module.evaluate(records, rouge, relative, docs)
    # the crossover lengths join claims.csv (measured figures beside the claims); the page shows them in
    # their own section
    crossing = claims_module.crossover_rows(records)
    table = pd.concat([claims, crossing], ignore_index=True) if len(crossing) else claims
    _write_csv(table, out / "claims.csv")
    sections = [_claims_section(claims, records), _conditions_section(runs)]
    if not records.empty:
        sections.append(_models_section(records))
    sections += _measured_sections(records, out, run_budgets_mib(runs))
    if rouge is not None:
        sections.append(_rouge_sections(rouge, relative, out))
        likelihood = _likelihood_section(rouge, curves)
        if likelihood is not None:
            sections.append(likelihood)
    if curves is not None:
        _write_csv(curves, out / "curves.csv")
    capacity = _joined(runs, "capacity")
    if capacity is not None:
        sections.append(_capacity_section(capacity, out))
    skipped = [entry for run in runs for entry in run.skipped]
    if skipped or not records.empty and not records["status"].eq("ok").all():
        sections.append(_failures_section(records, skipped))
    _write_figures(sections, out)
    top = {"measured": summary.measured(records), "headline": summary.HEADLINE,
           "ratios": summary.headlines(memory_comparisons(records))}
    return _render(sections, runs, claims, out, top, time_notes(claims, records))


def _combined(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(every run's cell records in one frame, every run's ROUGE rows or None)."""
    frames = [run.records for run in runs if not run.records.empty]
    records = pd.concat(frames, ignore_index=True) if frames else records_frame([])
    rouge_frames = [run.rouge for run in runs if run.rouge is not None]
    return records, (pd.concat(rouge_frames, ignore_index=True) if rouge_frames else None)


def _joined(runs: list[Run], name: str) -> pd.DataFrame | None:
    """Every run's frame ``name`` (a ``Run`` field) in one, or None where no run has one."""
    frames = [getattr(run, name) for run in runs if getattr(run, name) is not None]
    return pd.concat(frames, ignore_index=True) if frames else None


def _combined_rouge_extras(runs: list[Run]) -> tuple[pd.DataFrame | None, ...]:
    """(every run's relative.jsonl rows, learning-curve points, per-document ROUGE rows), each None
    where no run has any."""
    return _joined(runs, "relative"), _joined(runs, "curves"), _joined(runs, "rouge_docs")


def _time_figures(report: SuiteReport, records: pd.DataFrame) -> tuple:
    """The time per step against length of a section's cells, where it declares them and they have one."""
    if not report.time_figures or records["time_median_s"].isna().all():
        return ()
    return tuple(plots.length_figures(
        records, f"{report.suite}-time", "time_median_s", "time per step (s)",
        "Time per step vs input length", caption_extra=plots.timing_note(records)))


def _peak_memory_section(report: SuiteReport, records: pd.DataFrame, budgets: dict) -> Section:
    """A length layout of the peak memory above the weights (with the host-memory budget lines)."""
    return _length_section(
        report.suite,
        report.title,
        records,
        "mem_peak_above_base_mib",
        "peak memory above weights (MiB)",
        text.number,
        lambda r: f"total peak {text.number(r.mem_peak_mib)} MiB",
        "Peak memory above the weights (CPU: peak RSS minus RSS after the model was built; CUDA: "
        "max_memory_allocated minus memory before the step), log-log. The shaded strip above each panel "
        "holds the cells that did not run ok, at their length (no value: a height there means nothing); "
        "the red dashed line is the per-cell host-memory budget, which bounds the total RSS (weights "
        "included). The time per step of the same cells follows (the memory suite's times: see the "
        "warm-up and timed steps under Run conditions).",
        budgets,
        _time_figures(report, records),
    )


def _step_note(r) -> str:
    once = r.repeats == 1
    note = f"{r.time_median_s:.3g} s, {'one timed step' if once else 'median step'}"
    if r.warmup == 0:
        note += " (no warm-up: a first call)"
    if pd.notna(r.first_call_s):
        note += f"; first call {r.first_call_s:.3g} s"
    if r.mode == "generate":
        note += f", {text.number(r.generated_tokens_per_s, 1)} generated tokens / s"
    return note


def _tokens_per_s_section(report: SuiteReport, records: pd.DataFrame, budgets: dict) -> Section:
    """A length layout of input tokens per second (``budgets`` unused: no memory figure)."""
    return _length_section(
        report.suite,
        report.title,
        records,
        "tokens_per_s",
        "input tokens / s",
        text.number,
        _step_note,
        "Input tokens per second (batch × input length / median step time), log-log."
        + plots.timing_note(records).replace(" · times:", " Times:"),
    )


#: the section a suite of the length layout gets for the metric column it declares (``SuiteReport.metric``)
LENGTH_SECTIONS = {"mem_peak_above_base_mib": _peak_memory_section, "tokens_per_s": _tokens_per_s_section}


def _suite_section(report: SuiteReport, records: pd.DataFrame, out: Path, budgets: dict) -> Section:
    """The section a suite declares (``records.suites``) of its ``records``, its CSV ``<suite>.csv``
    written beside it. Raises ReportError for a metric no length layout shows."""
    _write_csv(records, out / f"{report.suite}.csv")
    if report.layout == SCALING_LAYOUT:
        return _scaling_section(report, records, out, budgets)
    if report.metric not in LENGTH_SECTIONS:
        raise ReportError(f"suite {report.suite}: no report section shows {report.metric} against length")
    return LENGTH_SECTIONS[report.metric](report, records, budgets)


def _comparison_sections(records: pd.DataFrame, out: Path) -> list[Section]:
    """LOCOST against the baselines over every suite's cells: savings and crossovers, where any."""
    sections = []
    comparisons = memory_comparisons(records)
    if not comparisons.empty:
        _write_csv(comparisons, out / "savings.csv")
        sections.append(_savings_section(comparisons))
    paired = simulated_vs_measured(records)
    if not paired.empty:
        _write_csv(paired, out / "sim_vs_measured.csv")
        sections.append(_sim_vs_measured_section(paired))
    crossing = crossovers(records)
    if not crossing.empty:
        _write_csv(crossing, out / "crossovers.csv")
        sections.append(_crossover_section(crossing))
    return sections


def _measured_sections(records: pd.DataFrame, out: Path, budgets: dict) -> list[Section]:
    """Each declared suite's section where it has records, in ``SUITE_REPORTS`` order, with the comparison
    sections after the suite that declares ``comparisons_follow``."""
    suite_of = records["suite"].map(lambda suite: report_of(suite).suite)
    sections = []
    for report in SUITE_REPORTS:
        own = records[suite_of.eq(report.suite)]
        if not own.empty:
            sections.append(_suite_section(report, own, out, budgets))
        if report.comparisons_follow:
            sections += _comparison_sections(records, out)
    return sections


def _rouge_sections(rouge: pd.DataFrame, relative_rows: pd.DataFrame | None, out: Path) -> Section:
    _write_csv(rouge, out / "rouge.csv")
    relative = rouge_relative(relative_rows)
    if not relative.empty:
        _write_csv(relative, out / "rouge_relative.csv")
    return _rouge_section(rouge, relative)


def _write_figures(sections: list[Section], out: Path) -> None:
    """One PNG per figure beside the report; two figures whose names slug alike keep both files."""
    written: set[str] = set()
    for section in sections:
        for block in section.blocks:
            if isinstance(block, plots.Figure):
                stem, number = block.name, 2
                while block.name in written:
                    block.name, number = f"{stem}-{number}", number + 1
                written.add(block.name)
                (out / f"{block.name}.png").write_bytes(block.png)


def _render(sections: list[Section], runs: list[Run], claims: pd.DataFrame, out: Path,
            top: dict, notes: list[str]) -> Path:
    return render_page(
        out / "report.html",
        title="LOCOST efficiency report",
        sections=sections,
        runs=runs,
        generated_at=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
        warnings=[w for run in runs for w in run.warnings],
        verdicts=[dict(row, note=note, figure=summary.verdict_figure(row),
                       words=claims_module.verdict_words(row))
                  for row, note in zip(claims.to_dict("records"), notes, strict=True)
                  if row["scope"] == "all"],
        summary=top,
        verdict_classes=VERDICT_CLASSES,
    )


def render_page(path: Path, **context) -> Path:
    """Write ``path``: the report's page template (templates/report.html.j2: title, header, sections of
    Tables and Figures) rendered with ``context``; every variable it uses must be given."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    path.write_text(environment.get_template("report.html.j2").render(**context), encoding="utf-8")
    return path
