"""Figures of the report, drawn with matplotlib's object API (no pyplot, no global backend) into PNG bytes.

One figure per set of measurement conditions (device, dtype, batch), one panel per mode, one line per
model. Cells that did not run ok are drawn as markers in a strip at the top of the panel, at the length
where they happened, so that a curve that stops says why.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from records import ROUGE_METRICS
from reports import text
from reports.analysis import SERIES_KEY
from reports.runs import MODES, key_of

FAMILY_COLORS = {
    "locost": "#d62728",
    "locost-s4": "#ff9896",
    "spade": "#393b79",
    "longt5-tglobal": "#1f77b4",
    "longt5-local": "#2ca02c",
    "led": "#9467bd",
    "pegasus-x": "#ff7f0e",
}
OTHER_COLORS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
SIZE_STYLES = {"tiny": (0, (6, 1.5)), "small": "-", "base": (0, (3, 2)), "large": (0, (1, 1.5))}
FULL_DOCUMENT_STYLES = [(0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (3, 3))]
STATUS_MARKERS = {"oom": "X", "timeout": "v", "unsupported": "s", "skipped": "o", "error": "*"}
FIGURE_KEY = ["device", "env_device_name", "dtype", "batch"]
DPI = 130


@dataclass
class Figure:
    name: str  # file stem of the PNG written beside the report
    title: str
    caption: str  # the measurement conditions
    png: bytes
    kind: str = "figure"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def color_of(family: str) -> str:
    """The family's colour (record field ``family``); other names get a stable colour of their own."""
    return FAMILY_COLORS.get(family) or OTHER_COLORS[sum(map(ord, str(family))) % len(OTHER_COLORS)]


def style_of(size) -> str:
    """The line style of a preset size (record field ``size``); solid when there is none."""
    return SIZE_STYLES.get(size, "-")


def slug(*parts) -> str:
    joined = "-".join(str(p) for p in parts if not text.is_missing(p) and str(p))
    return re.sub(r"[^a-z0-9.]+", "-", joined.lower()).strip("-")[:80]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _length_axis(ax) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: text.length(value) if value >= 1 else ""))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("input length (tokens)")
    ax.grid(True, which="major", alpha=0.3)
    for label in ax.get_xticklabels():
        label.set_rotation(0)


def _plain(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _log_values_axis(ax) -> None:
    """Log y axis labelled in plain numbers; short ranges also label minor ticks 2 and 5 (and 3)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _plain(value)))
    low, high = ax.get_ylim()
    decades = math.log10(high / low)
    leading = {2, 3, 5} if decades < 0.8 else {2, 5} if decades < 1.6 else set()

    def minor(value, _):
        digit = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
        return _plain(value) if digit in leading else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _series_label(frame: pd.DataFrame, rows: pd.DataFrame) -> str:
    """The model's name, plus what tells its lines apart when the panel holds several of it."""
    label = str(rows["model"].iloc[0])
    same_model = frame[frame["model"].eq(label)]
    for column, word in [
        ("target_len", "target "),
        ("new_tokens", "new "),
        ("threads", "threads "),
        ("run_id", ""),
    ]:
        if same_model[column].nunique() > 1:
            value = rows[column].iloc[0]
            label += f" ({word}{value if column == 'run_id' else text.integer(value)})"
    return label


def _draw_panel(ax, frame: pd.DataFrame, column: str, fits: pd.DataFrame | None = None) -> None:
    """One line per series (run, model, conditions, threads); failures as markers in the top strip;
    with ``fits``, each series' fitted power law dashed and its exponent k written at its end."""
    ok_values = frame[frame["status"].eq("ok") & frame[column].gt(0).fillna(False)][column]
    low, high = (float(ok_values.min()), float(ok_values.max())) if not ok_values.empty else (1.0, 10.0)
    if high <= low:
        low, high = low / 2, high * 2
    strip = (high / low) ** 0.45 if (~frame["status"].eq("ok")).any() else 1.0  # room for failure markers
    ax.set_ylim(low / 1.5, high * strip * 1.5)
    fits_by_series = (
        {} if fits is None or fits.empty else dict(zip(fits["series"], fits.itertuples(), strict=True))
    )
    failure_row = 0
    for series, rows in frame.groupby(key_of(frame, SERIES_KEY), sort=True):
        rows = rows.sort_values("input_len")
        family, size = rows["family"].iloc[0], rows["size"].iloc[0]
        color, label = color_of(family), _series_label(frame, rows)
        ok = rows[rows["status"].eq("ok") & rows[column].gt(0).fillna(False)]
        if not ok.empty:
            ax.plot(
                ok["input_len"].astype(float),
                ok[column],
                color=color,
                linestyle=style_of(size),
                marker="o",
                markersize=4,
                linewidth=1.6,
                label=label,
            )
        if series in fits_by_series:
            _draw_fit(ax, fits_by_series[series], color)
        failed = rows[~rows["status"].eq("ok")]
        if not failed.empty:
            y = high * strip ** (0.22 + 0.15 * (failure_row % 6))
            failure_row += 1
            for status, cells in failed.groupby("status"):
                marker = STATUS_MARKERS.get(status, "*")
                ax.scatter(
                    cells["input_len"].astype(float),
                    [y] * len(cells),
                    marker=marker,
                    s=38,
                    color="none" if status == "skipped" else color,
                    edgecolors=color,
                    linewidths=1.3,
                    label=label if ok.empty else None,
                    zorder=3,
                )
    _length_axis(ax)
    _log_values_axis(ax)


def _draw_fit(ax, fit, color: str) -> None:
    """A fitted power law, dashed over its range of lengths, with its exponent k at the end."""
    ends = [fit.min_len, fit.max_len]
    fitted = [math.exp(fit.intercept) * length**fit.slope for length in ends]
    ax.plot(ends, fitted, color=color, linestyle=(0, (2, 2)), linewidth=1, alpha=0.7)
    ax.annotate(
        f"k={fit.slope:.2f}",
        (ends[1], fitted[1]),
        xytext=(5, -4),
        fontsize=8,
        textcoords="offset points",
        color=color,
        ha="left",
    )


def _legend(fig, axes, records: pd.DataFrame | None = None, title: str = "model") -> None:
    """One legend for the whole figure, right of the panels: the series, then the markers of the
    statuses that occur in ``records``."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    handles = dict(sorted(handles.items(), key=lambda item: not item[0].startswith("locost")))  # LOCOST first
    statuses = [] if records is None else [s for s in STATUS_MARKERS if records["status"].eq(s).any()]
    for status in statuses:
        handles[status] = Line2D(
            [],
            [],
            linestyle="none",
            marker=STATUS_MARKERS[status],
            color="#444",
            markerfacecolor="none" if status == "skipped" else "#444",
        )
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="upper left",
        bbox_to_anchor=(1.0, 0.95),
        frameon=False,
        fontsize=9,
        title=title + (" / failed cell" if statuses else ""),
        title_fontsize=9,
    )


def figure_groups(records: pd.DataFrame):
    """(name parts, rows) per set of conditions that may share one figure."""
    groups = records.groupby(FIGURE_KEY, dropna=False, sort=True)
    return [
        (
            (
                rows["device"].iloc[0],
                rows["env_device_name"].iloc[0],
                rows["dtype"].iloc[0],
                f"batch{text.integer(rows['batch'].iloc[0])}",
            ),
            rows,
        )
        for _, rows in groups
    ]


def _modes(records: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(records["mode"].dropna()))
    return [m for m in MODES if m in present] + [m for m in present if m not in MODES]


def length_figures(records: pd.DataFrame, prefix: str, column: str, ylabel: str, title: str) -> list[Figure]:
    """One figure per conditions: a panel per mode, ``column`` against input length, log-log."""
    figures = []
    for parts, rows in figure_groups(records):
        modes = _modes(rows)
        fig = MplFigure(figsize=(4.6 * len(modes), 3.9))
        axes = fig.subplots(1, len(modes), squeeze=False)
        for ax, mode in zip(axes[0], modes, strict=True):
            _draw_panel(ax, rows[rows["mode"].eq(mode)], column)
            ax.set_title(mode)
            ax.set_ylabel(ylabel)
        _legend(fig, axes[0], rows)
        fig.tight_layout()
        figures.append(
            Figure(
                slug(prefix, *parts),
                f"{title} — {', '.join(str(p) for p in parts if not text.is_missing(p))}",
                text.conditions(rows),
                _png(fig),
            )
        )
    return figures


def scaling_figures(records: pd.DataFrame, fits: pd.DataFrame) -> list[Figure]:
    """Memory (top) and time (bottom) against length per mode, with the fitted power laws dashed."""
    figures = []
    panels = [
        ("mem_peak_above_base_mib", "memory", "peak memory above weights (MiB)"),
        ("time_median_s", "time", "median time per step (s)"),
    ]
    for parts, rows in figure_groups(records):
        modes = _modes(rows)
        fig = MplFigure(figsize=(4.6 * len(modes), 7.4))
        axes = fig.subplots(2, len(modes), squeeze=False)
        for row_axes, (column, metric, ylabel) in zip(axes, panels, strict=True):
            metric_fits = fits[fits["metric"].eq(metric)] if not fits.empty else fits
            for ax, mode in zip(row_axes, modes, strict=True):
                _draw_panel(ax, rows[rows["mode"].eq(mode)], column, metric_fits)
                ax.set_title(f"{mode}: {metric}")
                ax.set_ylabel(ylabel)
        _legend(fig, axes.ravel(), rows)
        fig.tight_layout()
        figures.append(
            Figure(
                slug("scaling", *parts),
                f"Scaling of memory and time — {', '.join(str(p) for p in parts if not text.is_missing(p))}",
                text.conditions(rows) + " · dashed: fitted power law, k its exponent",
                _png(fig),
            )
        )
    return figures


def _draw_rouge_system(ax, system: str, series: pd.DataFrame, metric: str) -> None:
    """One system's ROUGE: a line with CI bars over the lengths, a band for the full document."""
    family, size = series["family"].iloc[0], series["size"].iloc[0]
    color = color_of(system if text.is_missing(family) else family)
    measured = series[series["input_len"].notna() & series[metric].notna()]
    if not measured.empty:
        y = 100 * measured[metric]
        error = [
            y - 100 * measured[f"{metric}_lo"].fillna(measured[metric]),
            100 * measured[f"{metric}_hi"].fillna(measured[metric]) - y,
        ]
        ax.errorbar(
            measured["input_len"].astype(float),
            y,
            yerr=error,
            color=color,
            linestyle=style_of(size),
            marker="o",
            markersize=4,
            capsize=3,
            label=system,
        )
    for _, whole in series[series["input_len"].isna() & series[metric].notna()].iterrows():
        ax.axhline(
            100 * whole[metric],
            color=color,
            linewidth=1.2,
            linestyle=FULL_DOCUMENT_STYLES[sum(map(ord, system)) % len(FULL_DOCUMENT_STYLES)],
            label=f"{system} (full document)",
        )
        if pd.notna(whole[f"{metric}_lo"]) and pd.notna(whole[f"{metric}_hi"]):
            ax.axhspan(100 * whole[f"{metric}_lo"], 100 * whole[f"{metric}_hi"], color=color, alpha=0.1)


def rouge_figures(rouge: pd.DataFrame) -> list[Figure]:
    """ROUGE F1 (×100) against input length with 95% CIs; full-document systems as horizontal bands."""
    figures = []
    metrics = [m for m in ROUGE_METRICS if rouge[m].notna().any()]
    for dataset, rows in rouge.groupby(rouge["dataset"].fillna(""), sort=True):
        columns = min(2, len(metrics))
        panel_rows = math.ceil(len(metrics) / columns)
        fig = MplFigure(figsize=(5.4 * columns, 3.9 * panel_rows))
        axes = fig.subplots(panel_rows, columns, squeeze=False)
        for ax in axes.ravel()[len(metrics) :]:
            ax.remove()
        axes = axes.ravel()[: len(metrics)]
        lengths = rows["input_len"].dropna().astype(float)
        for ax, metric in zip(axes, metrics, strict=True):
            for system, series in rows.groupby("system", sort=True):
                _draw_rouge_system(ax, system, series.sort_values("input_len"), metric)
            if not lengths.empty:
                _length_axis(ax)
            ax.set_title(metric)
            ax.set_ylabel("ROUGE F1 (×100)")
        _legend(fig, axes, title="system (bars: 95% CI)")
        fig.tight_layout()
        figures.append(
            Figure(
                slug("rouge", dataset or "results"),
                f"ROUGE vs input length — {dataset or 'results'}",
                text.rouge_conditions(rows),
                _png(fig),
            )
        )
    return figures


def _nll_axis(ax, labels: list[str], ylabel: str) -> None:
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("input length (tokens; full: the whole document)")
    ax.set_ylabel(ylabel)


NLL_PANELS = (("nll", "reference NLL (nats / token)"),
              ("nll_gain", "NLL gain over the shortest length\n(paired, nats / token; > 0: longer helps)"))


def nll_figures(rouge: pd.DataFrame) -> list[Figure]:
    """Per dataset, left: each model's reference-summary NLL (nats/token) at every input length with
    its bootstrap 95% CI; right: the paired per-document gain over the shortest length with its CI
    (what "quality rises with input length" is judged from). Lengths equally spaced, full document last."""
    if "nll" not in rouge.columns:
        return []
    figures = []
    models = rouge[rouge["kind"].eq("model") & rouge["nll"].notna()]
    for dataset, rows in models.groupby(models["dataset"].fillna(""), sort=True):
        lengths = sorted(rows["input_len"].dropna().astype(int).unique()) + (
            [None] if rows["input_len"].isna().any() else [])
        position = {length: i for i, length in enumerate(lengths)}
        fig = MplFigure(figsize=(11.5, 4.2))
        axes = fig.subplots(1, 2)
        for ax, (column, ylabel) in zip(axes, NLL_PANELS, strict=True):
            for system, series in rows.groupby("system", sort=True):
                family = series["family"].iloc[0]
                x = [position[None if text.is_missing(v) else int(v)] for v in series["input_len"]]
                series = series.assign(_x=x).sort_values("_x")
                ax.errorbar(series["_x"], series[column], yerr=[series[column] - series[f"{column}_lo"],
                                                                 series[f"{column}_hi"] - series[column]],
                            color=color_of(system if text.is_missing(family) else family),
                            linestyle=style_of(series["size"].iloc[0]), marker="o", markersize=4,
                            capsize=3, label=system)
            _nll_axis(ax, [text.length(n) if n is not None else "full" for n in lengths], ylabel)
        axes[1].axhline(0, color="#444", linewidth=0.8)
        _legend(fig, axes, title="model (bars: 95% CI)")
        fig.tight_layout()
        figures.append(Figure(slug("nll", dataset or "results"),
                              f"Reference-summary NLL vs input length — {dataset or 'results'}",
                              "Teacher forcing, nats per reference token of the suite's shared tokenizer "
                              "(lower is better), mean over documents with bootstrap 95% CIs; right: the "
                              "same documents' paired differences, whose CIs are far narrower. "
                              + text.rouge_conditions(rows),
                              _png(fig)))
    return figures


def curve_figures(curves: pd.DataFrame) -> list[Figure]:
    """Per run: validation NLL (nats/token) against optimizer steps, one panel per training phase
    (gap-sentence pre-training, fine-tuning), one line per model."""
    figures = []
    for run_id, rows in curves.groupby("run_id", sort=True):
        phases = [p for p in ("gsg", "finetune") if rows["phase"].eq(p).any()]
        phases += [p for p in rows["phase"].dropna().unique() if p not in phases]
        fig = MplFigure(figsize=(5.4 * len(phases), 3.9))
        axes = fig.subplots(1, len(phases), squeeze=False).ravel()
        for ax, phase in zip(axes, phases, strict=True):
            for system, series in rows[rows["phase"].eq(phase)].groupby("system", sort=True):
                family = next((f for f in sorted(FAMILY_COLORS, key=len, reverse=True)
                               if str(system).startswith(f + "-")), system)
                series = series.sort_values("step")
                ax.plot(series["step"], series["val_nll"], color=color_of(family), marker="o", markersize=3,
                        label=system)
            ax.set_title({"gsg": "gap-sentence pre-training", "finetune": "fine-tuning"}.get(phase, phase))
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("validation NLL (nats / token)")
        _legend(fig, axes, title="model")
        fig.tight_layout()
        docs = text.integer(rows["val_docs"].max())
        figures.append(Figure(slug("curves", run_id), f"Learning curves — run {run_id}",
                              f"Mean NLL per label token of {docs} held-out documents, scored before "
                              "training, every K steps and after the last, in eval mode; every model has "
                              "the same steps, examples and schedule.", _png(fig)))
    return figures
