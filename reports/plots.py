"""Figures of the report, drawn with matplotlib's object API (no pyplot, no global backend) into PNG bytes.

One figure per set of measurement conditions (device, dtype, batch), one panel per mode, one line per
model, on log axes labelled at 1, 2 and 5 of each decade (every power of two of the length). Cells that
did not run ok are markers in a shaded strip above the panel, at the length where they happened and one
row per series, so that a curve that stops says why and no failure reads as a value; the host-memory
budget of the runs is a dashed line. ``ratio_figures`` draws LOCOST's peak memory as a fraction of each
baseline's with the paper's 0.5 and 0.13. Simulated cells (``bench.gpusim``) get figures of their own,
hollow markers and a legend entry "simulated <gpu>".
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
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

from records import ROUGE_METRICS
from reports import text
from reports.analysis import SERIES_KEY, crossovers, is_simulated
from reports.runs import CONDITION_COLUMNS, MODES, key_of

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
FIGURE_KEY = ["device", "env_device_name", "simulated_gpu", "dtype", "batch"]
#: the marker face of a simulated series (bench.gpusim): hollow, beside the filled measured ones
SIMULATED_FACE = "none"
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
    """Log2 length axis with every power of two labelled (1K, 2K, 4K, ...)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=40))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: text.length(value) if value >= 1 else ""))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("input length (tokens)")
    ax.grid(True, which="major", alpha=0.3)
    ax.tick_params(axis="x", labelsize=8)


def _plain(value: float) -> str:
    """A tick label: whole thousands with separators, else up to 3 significant digits (1.5, 2.5, 120)."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _log_values_axis(ax) -> None:
    """Log y axis labelled in plain numbers: within a decade at round steps (60, 80, 100, 120, ...),
    else at 1, 2, 3, 5 of each decade (1, 2, 5 past 1.6 decades, 1 and 3 past 3, the decades alone past
    6), with light grid lines at the labelled minor ticks."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _plain(value)))
    low, high = ax.get_ylim()
    decades = math.log10(high / low)
    if decades < 1.0:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        ax.yaxis.set_minor_locator(NullLocator())
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=20))
        leading = {2, 3, 5} if decades < 1.6 else {2, 5} if decades < 3 else {3} if decades < 6 else set()
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=sorted(leading) or [1.0], numticks=20))

        def minor(value, _):
            digit = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
            return _plain(value) if digit in leading else ""

        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    ax.tick_params(axis="y", which="both", labelsize=8)
    ax.grid(True, which="minor", axis="y", alpha=0.12)


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


def _ok(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    return rows[rows["status"].eq("ok") & rows[column].gt(0).fillna(False)]


def _draw_panel(ax, frame: pd.DataFrame, column: str, fits: pd.DataFrame | None = None,
                strip=None, budgets: tuple = ()) -> list[tuple]:
    """One line per series (run, model, conditions, threads); its cells that did not run ok as markers
    in ``strip`` (an axes above ``ax``, one row per series), never on the data axis; ``budgets`` as
    horizontal lines; with ``fits``, each series' fitted power law dashed. Returns the exponent labels
    to write at the ends of the fits (``_spread_labels``, once the figure's layout is done)."""
    measured = list(_ok(frame, column)[column].astype(float))
    shown = [b for b in budgets if not measured or b <= BUDGET_SPAN * max(measured)]
    values = measured + shown
    low, high = (min(values), max(values)) if values else (1.0, 10.0)
    if high <= low:
        low, high = low / 2, high * 2
    ax.set_ylim(low / 1.4, high * 1.4)
    fits_by_series = (
        {} if fits is None or fits.empty else dict(zip(fits["series"], fits.itertuples(), strict=True))
    )
    exponents, failure_row = [], 0
    for series, rows in frame.groupby(key_of(frame, SERIES_KEY), sort=True):
        rows = rows.sort_values("input_len")
        color, label = color_of(rows["family"].iloc[0]), _series_label(frame, rows)
        ok = _ok(rows, column)
        if not ok.empty:
            ax.plot(ok["input_len"].astype(float), ok[column], color=color,
                    linestyle=style_of(rows["size"].iloc[0]), marker="o", markersize=4, linewidth=1.6,
                    label=label, markerfacecolor=marker_face(rows, color))
        if series in fits_by_series:
            exponents.append(_draw_fit(ax, fits_by_series[series], color))
        failed = rows[~rows["status"].eq("ok")]
        if strip is not None and not failed.empty:
            _draw_failures(strip, failed, failure_row, color, label if ok.empty else None)
            failure_row += 1
    _draw_budgets(ax, budgets, shown)
    _length_axis(ax)
    _log_values_axis(ax)
    if exponents:
        low, high = ax.get_xlim()
        ax.set_xlim(low, high * 1.7)  # room for the exponents right of the longest length
    if strip is not None:
        strip.set_ylim(max(failure_row, 1) - 0.4, -0.6)  # first series on top
    return exponents


#: a budget more than this many times the largest value is named above the panel, not drawn to scale
BUDGET_SPAN = 20


def _draw_budgets(ax, budgets: tuple, shown: list) -> None:
    """The host-memory budgets as dashed red lines; one far above the data as a note at the top."""
    for budget in budgets:
        words = f"budget {_plain(budget)} MiB (total RSS)"
        if budget in shown:
            ax.axhline(budget, color="#b42318", linestyle=(0, (4, 2)), linewidth=1)
            ax.annotate(words, (0.01, budget), xycoords=("axes fraction", "data"), xytext=(0, 2),
                        textcoords="offset points", fontsize=7, color="#b42318", va="bottom")
        else:
            ax.annotate(words + ": far above, off the scale", (0.01, 0.99), xycoords="axes fraction",
                        fontsize=7, color="#b42318", va="top")


def _draw_failures(strip, failed: pd.DataFrame, row: int, color: str, label: str | None) -> None:
    """One series' cells that did not run ok, in row ``row`` of the failure strip, at their length."""
    for status, cells in failed.groupby("status"):
        strip.scatter(cells["input_len"].astype(float), [row] * len(cells),
                      marker=STATUS_MARKERS.get(status, "*"), s=34,
                      color="none" if status == "skipped" else color, edgecolors=color, linewidths=1.2,
                      label=label, zorder=3, clip_on=False)
        label = None


def _strip_axis(strip) -> None:
    """The failure strip: shaded, no y scale, named on the left."""
    strip.set_facecolor("#f1f1f1")
    strip.set_yticks([])
    strip.set_ylabel("not ok", rotation=0, ha="right", va="center", fontsize=8, color="#444")
    strip.tick_params(axis="x", which="both", labelbottom=False)
    for side in ("top", "right", "left"):
        strip.spines[side].set_visible(False)


def _draw_fit(ax, fit, color: str):
    """A fitted power law, dashed over its range of lengths; returns (its end, the label k=...)."""
    ends = [fit.min_len, fit.max_len]
    fitted = [math.exp(fit.intercept) * length**fit.slope for length in ends]
    ax.plot(ends, fitted, color=color, linestyle=(0, (2, 2)), linewidth=1, alpha=0.7)
    return ends[1], fitted[1], f"k={fit.slope:.2f}", color


def _spread_labels(ax, labels: list[tuple], gap_pt: float = 12.0) -> None:
    """Write each (x, y, text, colour) just right of (x, y), moved apart vertically so that no two
    overlap (at least ``gap_pt`` points between their baselines); a thin line joins a moved label."""
    if not labels:
        return
    points_per_pixel = 72.0 / ax.figure.dpi
    placed = sorted(((ax.transData.transform((x, y))[1] * points_per_pixel, x, y, label, color)
                     for x, y, label, color in labels))
    heights = [entry[0] for entry in placed]
    for index in range(1, len(heights)):
        heights[index] = max(heights[index], heights[index - 1] + gap_pt)
    shift = max(0.0, (heights[-1] - placed[-1][0]) / 2)  # centre the stack on the points
    for (height, x, y, label, color), moved in zip(placed, heights, strict=True):
        ax.annotate(label, (x, y), xytext=(6, moved - shift - height), textcoords="offset points",
                    fontsize=8, color=color, ha="left", va="center",
                    arrowprops={"arrowstyle": "-", "color": color, "linewidth": 0.5, "alpha": 0.6})


def marker_face(rows: pd.DataFrame, color: str) -> str:
    """The face colour of a series' markers: ``SIMULATED_FACE`` (hollow) for simulated cells, else filled."""
    return SIMULATED_FACE if is_simulated(rows).any() else color


def simulated_gpus(rows: pd.DataFrame) -> list[str]:
    """The GPUs the simulated rows among ``rows`` stand for, each once."""
    return text.distinct(rows[is_simulated(rows)], "simulated_gpu")


def _legend(fig, axes, records: pd.DataFrame | None = None, title: str = "model",
            simulated: list[str] = ()) -> None:
    """One legend for the whole figure, right of the panels: the series, then the markers of the
    statuses that occur in ``records``, then a hollow marker per GPU simulated (``simulated``; default:
    those of ``records``)."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    handles = dict(sorted(handles.items(), key=lambda item: not item[0].startswith("locost")))  # LOCOST first
    statuses = [] if records is None else [s for s in STATUS_MARKERS if records["status"].eq(s).any()]
    for gpu in simulated or ([] if records is None else simulated_gpus(records)):
        handles[f"simulated {gpu}"] = Line2D([], [], linestyle="none", marker="o", color="#444",
                                             markerfacecolor=SIMULATED_FACE)
    for status in statuses:
        handles[status] = Line2D(
            [],
            [],
            linestyle="none",
            marker=STATUS_MARKERS[status],
            color="#444",
            markerfacecolor="none" if status == "skipped" else "#444",
        )
    placement = ({"loc": "outside right upper"} if fig.get_layout_engine() is not None
                 and not fig.get_tight_layout() else {"loc": "upper left", "bbox_to_anchor": (1.0, 0.95)})
    fig.legend(
        list(handles.values()),
        list(handles),
        **placement,
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
                # a simulated cell's device name is the host's CPU (it computed it): the GPU is named
                *((f"simulated {gpu}" for gpu in simulated_gpus(rows)) if is_simulated(rows).all()
                  else (rows["env_device_name"].iloc[0],)),
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


def _panels(fig, rows: int, columns: int, strips: bool):
    """(data axes [row][column], failure-strip axes above each or None): a shaded strip a sixth of
    a panel's height sits above each data panel, sharing its length axis."""
    outer = fig.add_gridspec(rows, columns)
    data, strip = [], []
    for row in range(rows):
        data.append([])
        strip.append([])
        for column in range(columns):
            if not strips:
                data[row].append(fig.add_subplot(outer[row, column]))
                strip[row].append(None)
                continue
            inner = outer[row, column].subgridspec(2, 1, height_ratios=[1, 6], hspace=0.04)
            ax = fig.add_subplot(inner[1])
            data[row].append(ax)
            strip[row].append(fig.add_subplot(inner[0], sharex=ax))
            _strip_axis(strip[row][-1])
    return data, strip


def _finish(fig, axes_labels: list[tuple]) -> bytes:
    """Lay the figure out, then write the exponent labels apart from each other, and render it."""
    fig.draw_without_rendering()
    for ax, labels in axes_labels:
        _spread_labels(ax, labels)
    return _png(fig)


def _title(ax, strip, title: str) -> None:
    (strip if strip is not None else ax).set_title(title)


def length_figures(records: pd.DataFrame, prefix: str, column: str, ylabel: str, title: str,
                   budgets: dict | None = None, caption_extra: str = "") -> list[Figure]:
    """One figure per conditions: a panel per mode, ``column`` against input length, log-log; cells
    not ok in a strip above each panel; ``budgets`` (run id -> host-memory budgets in MiB) as lines."""
    figures = []
    for parts, rows in figure_groups(records):
        modes = _modes(rows)
        failures = not rows["status"].eq("ok").all()
        fig = MplFigure(figsize=(4.6 * len(modes), 4.4 if failures else 3.9), layout="constrained")
        axes, strips = _panels(fig, 1, len(modes), failures)
        lines = _budgets(rows, budgets)
        marks = crossover_marks(rows, column)
        for ax, strip, mode in zip(axes[0], strips[0], modes, strict=True):
            _draw_panel(ax, rows[rows["mode"].eq(mode)], column, strip=strip, budgets=lines)
            _draw_crossovers(ax, marks[marks["mode"].eq(mode)])
            _title(ax, strip, mode)
            ax.set_ylabel(ylabel)
        _legend(fig, axes[0] + [s for s in strips[0] if s is not None], rows)
        figures.append(
            Figure(
                slug(prefix, *parts),
                f"{title} — {', '.join(str(p) for p in parts if not text.is_missing(p))}",
                text.conditions(rows) + caption_extra + crossover_caption(marks),
                _finish(fig, []),
            )
        )
    return figures


#: the crossover metric a figure's column shows (time per step and tokens per second: time)
CROSSOVER_OF_COLUMN = {"mem_peak_above_base_mib": "memory", "time_median_s": "time", "tokens_per_s": "time"}


def crossover_marks(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """The crossovers (``analysis.crossovers``) of the figure's ``rows`` in the metric ``column`` shows
    that fall between two measured lengths: what the figure marks."""
    metric = CROSSOVER_OF_COLUMN.get(column)
    found = crossovers(rows) if metric else pd.DataFrame(columns=["metric", "mode", "crossover_len"])
    return found[found["metric"].eq(metric) & found["crossover_len"].notna()]


def _draw_crossovers(ax, marks: pd.DataFrame) -> None:
    """A dotted vertical in the baseline's colour at each crossover length, a diamond on the length axis."""
    for mark in marks.itertuples(index=False):
        color = color_of(mark.baseline_family)
        ax.axvline(float(mark.crossover_len), color=color, linestyle=":", linewidth=1.3)
        ax.plot([float(mark.crossover_len)], [0.0], marker="D", markersize=5, color=color, clip_on=False,
                transform=ax.get_xaxis_transform())


def crossover_caption(marks: pd.DataFrame) -> str:
    """' · dotted verticals: LOCOST needs less time than led-small (train) from ≈ 5,300 tokens, ...'."""
    if marks.empty:
        return ""
    what = "memory" if marks["metric"].iloc[0] == "memory" else "time"
    items = [f"{m.baseline_model} ({m.mode}) from {m.where}" for m in marks.itertuples(index=False)]
    return f" · dotted verticals (◆ on the length axis): LOCOST needs less {what} than " + "; ".join(items)


def _budgets(rows: pd.DataFrame, budgets: dict | None) -> tuple:
    """The distinct host-memory budgets (MiB) of the runs whose records are in ``rows``; none for
    simulated cells (their peaks are GPU bytes, which no host budget bounds)."""
    if not budgets:
        return ()
    measured = rows[~is_simulated(rows)]
    return tuple(sorted({b for run in measured["run_id"].dropna().unique() for b in budgets.get(run, ())}))


def scaling_figures(records: pd.DataFrame, fits: pd.DataFrame, budgets: dict | None = None) -> list[Figure]:
    """Memory (top) and time (bottom) against length per mode, with the fitted power laws dashed."""
    figures = []
    panels = [
        ("mem_peak_above_base_mib", "memory", "peak memory above weights (MiB)"),
        ("time_median_s", "time", "median time per step (s)"),
    ]
    for parts, rows in figure_groups(records):
        modes = _modes(rows)
        failures = not rows["status"].eq("ok").all()
        fig = MplFigure(figsize=(4.8 * len(modes), 8.4 if failures else 7.4), layout="constrained")
        axes, strips = _panels(fig, 2, len(modes), failures)
        labels = []
        for row_axes, row_strips, (column, metric, ylabel) in zip(axes, strips, panels, strict=True):
            metric_fits = fits[fits["metric"].eq(metric)] if not fits.empty else fits
            lines = _budgets(rows, budgets) if metric == "memory" else ()
            for ax, strip, mode in zip(row_axes, row_strips, modes, strict=True):
                found = _draw_panel(ax, rows[rows["mode"].eq(mode)], column, metric_fits, strip, lines)
                labels.append((ax, found))
                _title(ax, strip, f"{mode}: {metric}")
                ax.set_ylabel(ylabel)
        _legend(fig, [ax for row in axes for ax in row] + [s for row in strips for s in row if s], rows)
        figures.append(
            Figure(
                slug("scaling", *parts),
                f"Scaling of memory and time — {', '.join(str(p) for p in parts if not text.is_missing(p))}",
                text.conditions(rows) + " · dashed: fitted power law, k its exponent" + timing_note(rows),
                _finish(fig, labels),
            )
        )
    return figures


def timing_note(rows: pd.DataFrame) -> str:
    """' · times: one timed step per cell …' when the ok cells with a time were timed once (or some
    were); '' when every time is a median of several steps."""
    timed = rows[rows["status"].eq("ok") & rows["time_median_s"].notna()]
    once = timed[timed["repeats"].eq(1)]
    if once.empty:
        return ""
    cold = once[once["warmup"].eq(0)]
    share = "every cell" if len(once) == len(timed) else f"{len(once)} of {len(timed)} cells"
    return (f" · times: one timed step ({share}; no median, no spread)"
            + (f", {len(cold)} of them without a warm-up (a first call)" if len(cold) else ""))


#: the LOCOST paper's headline fractions of a baseline's memory: 50% less in training, 87% less in inference
PAPER_RATIOS = ((0.5, "train", "paper: 0.5× (50% less, training)"),
                (0.13, "inference", "paper: 0.13× (87% less, inference)"))


def ratio_figures(comparisons: pd.DataFrame) -> list[Figure]:
    """LOCOST's peak memory above the weights as a fraction of each baseline's, against input length:
    a panel per mode, a line per baseline, the paper's 0.5 and 0.13 as dashed lines; where the
    baseline ran out of memory, its bound (LOCOST / the baseline's peak when it was killed) as ▽."""
    figures = []
    shared = [c for c in CONDITION_COLUMNS if c not in ("target_len", "new_tokens")]  # a panel per mode
    drawn = comparisons[comparisons["ratio"].notna() | comparisons["ratio_bound"].notna()]
    for _, group in drawn.groupby(key_of(drawn, shared), sort=True):
        modes = [m for m in MODES if m in set(group["mode"])]
        fig = MplFigure(figsize=(4.6 * len(modes), 3.9), layout="constrained")
        axes = fig.subplots(1, len(modes), squeeze=False)[0]
        for ax, mode in zip(axes, modes, strict=True):
            pairs = group[group["mode"].eq(mode)]
            _draw_ratios(ax, pairs)
            ax.set_title(mode + _mode_detail(pairs.iloc[0]), fontsize=10)
            ax.set_ylabel("LOCOST / baseline peak memory")
        _legend(fig, axes, title="baseline", simulated=simulated_gpus(group))
        first = group.iloc[0]
        label = text.condition_label(first.drop(["target_len", "new_tokens"]))
        figures.append(Figure(
            slug("ratio", first["device"], first["dtype"], f"batch{text.integer(first['batch'])}",
                 first["size"]),
            f"LOCOST's peak memory as a fraction of each baseline's — {label}",
            label + " · below 1: LOCOST needs less · ▽: an upper bound, the baseline "
            "ran out of the budget (its peak when killed) · runs "
            + " / ".join(sorted(set(group["locost_run_id"]) | set(group["baseline_run_id"]))),
            _finish(fig, []),
        ))
    return figures


def _mode_detail(pair) -> str:
    if not text.is_missing(pair["target_len"]):
        return f" ({text.integer(pair['target_len'])} target tokens)"
    if not text.is_missing(pair["new_tokens"]):
        return f" ({text.integer(pair['new_tokens'])} new tokens)"
    return ""


def _draw_ratios(ax, pairs: pd.DataFrame) -> None:
    values = [*pairs["ratio"].dropna(), *pairs["ratio_bound"].dropna(), 0.1, 1.1]
    for baseline, rows in pairs.groupby("baseline_model", sort=True):
        rows = rows.sort_values("input_len")
        color = color_of(rows["baseline_family"].iloc[0])
        ok = rows[rows["ratio"].notna()]
        ax.plot(ok["input_len"].astype(float), ok["ratio"], color=color, marker="o", markersize=4,
                linewidth=1.6, label=baseline, markerfacecolor=marker_face(rows, color))
        bound = rows[rows["ratio_bound"].notna()]
        if not bound.empty:
            ax.scatter(bound["input_len"].astype(float), bound["ratio_bound"], marker="v", s=40,
                       facecolors="none", edgecolors=color, linewidths=1.3, zorder=3,
                       label=baseline if ok.empty else None)
    if pairs["ratio_bound"].notna().any():
        ax.scatter([], [], marker="v", facecolors="none", edgecolors="#444", label="≤ bound: baseline oom")
    ax.axhline(1.0, color="#888", linewidth=0.8)
    mode = pairs["mode"].iloc[0]
    for ratio, claim, label in PAPER_RATIOS:  # the claim about this mode dark, the other light
        color = "#333" if (claim == "train") == (mode == "train") else "#aaa"
        ax.axhline(ratio, color=color, linestyle=(0, (5, 3)), linewidth=0.9)
        ax.annotate(label, (0.01, ratio), xycoords=("axes fraction", "data"), xytext=(0, 2),
                    textcoords="offset points", fontsize=7, color=color, va="bottom")
    ax.set_ylim(min(values) / 1.3, max(values) * 1.3)
    ax.set_xlim(pairs["input_len"].min() / 1.3, pairs["input_len"].max() * 1.3)
    _length_axis(ax)
    _log_values_axis(ax)


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


def capacity_figures(capacity: pd.DataFrame) -> list[Figure]:
    """The longest input each model takes on a simulated GPU (``records.CapacityRow``): one figure per GPU
    and preset size, a panel per mode, a hollow bar per model (simulated, as the hollow markers of
    simulated cells) up to its longest input that fits, on a log2 length axis, labelled with that
    length and, where the model's own length limit ended it rather than memory, 'limit'."""
    figures = []
    for (gpu, size), rows in capacity.groupby(["gpu", "size"], sort=True):
        modes = [m for m in MODES if m in set(rows["mode"])]
        families = sorted(set(rows["family"]), key=lambda f: (not f.startswith("locost"), f))
        fig = MplFigure(figsize=(4.6 * len(modes), 0.45 * len(families) + 1.4), layout="constrained")
        axes = fig.subplots(1, len(modes), squeeze=False, sharey=True)[0]
        for ax, mode in zip(axes, modes, strict=True):
            _draw_capacity(ax, rows[rows["mode"].eq(mode)], families)
            ax.set_title(mode, fontsize=10)
        first = rows.iloc[0]
        usable = f"{first['usable_bytes'] / 2**30:.1f} GiB usable"
        figures.append(Figure(
            slug("capacity", gpu, size),
            f"Longest input that fits — simulated {gpu}, {size} presets",
            f"simulated {gpu} ({usable}) · {size} · {first['dtype']} autocast · batch "
            f"{text.integer(first['batch'])} · bars: the longest input found to fit, within 1% or 1,024 "
            "tokens of the first that does not · 'limit': the model's length limit, not memory, ended it",
            _finish(fig, []),
        ))
    return figures


def _draw_capacity(ax, rows: pd.DataFrame, families: list[str]) -> None:
    """One hollow bar per family of ``families`` (row order) to its ``longest_ok``; none where it has none."""
    for y, family in enumerate(families):
        row = rows[rows["family"].eq(family)]
        if row.empty or text.is_missing(row.iloc[0]["longest_ok"]):
            continue
        row = row.iloc[0]
        color = color_of(family)
        ax.barh(y, int(row["longest_ok"]), left=1, height=0.6, color=SIMULATED_FACE, edgecolor=color,
                hatch="///", linewidth=1.2)
        note = " limit" if str(row["reason"]).startswith("unsupported") else ""
        ax.text(int(row["longest_ok"]) * 1.15, y, f"{int(row['longest_ok']):,}{note}", va="center",
                fontsize=8, color=color)
    ax.set_yticks(range(len(families)), families, fontsize=9)
    ax.set_ylim(len(families) - 0.5, -0.5)  # the first family on top (an axis shared by the panels)
    _length_axis(ax)
    lengths = rows["longest_ok"].dropna()
    if not lengths.empty:
        ax.set_xlim(512, int(lengths.max()) * 8)
        if lengths.max() > 2**18:  # over 9 octaves: every other power of two keeps the labels apart
            ax.xaxis.set_major_locator(LogLocator(base=4, numticks=40))
