"""A compact text table of a sweep's records: one row per model and mode, one column per length."""

from __future__ import annotations

MiB = 2**20
_SHORT = {"oom": "OOM", "timeout": "timeout", "unsupported": "unsup.", "error": "error", "skipped": "skip"}


def _cell_text(record: dict, value: str) -> str:
    if record["status"] != "ok":
        return _SHORT.get(record["status"], record["status"])
    if value == "memory":
        above = record.get("mem_peak_above_base_bytes")
        return "?" if above is None else f"{above / MiB:,.0f}"
    rate = record.get("tokens_per_s")
    return "?" if rate is None else f"{rate:,.0f}"


def summary_table(records: list[dict], value: str = "memory") -> str:
    """``value``: ``memory`` (peak MiB above base) or ``throughput`` (input tokens/s)."""
    if not records:
        return "(no records)"
    lengths = sorted({r["input_len"] for r in records})
    rows: dict[tuple, dict[int, str]] = {}
    for r in records:
        conditions = f"{r['dtype']} b{r['batch']}"
        rows.setdefault((r["model"], r["mode"], conditions), {})[r["input_len"]] = _cell_text(r, value)
    head = ["model", "mode", "dtype/batch"] + [f"{n:,}" for n in lengths]
    body = [[model, mode, cond] + [cols.get(n, "") for n in lengths]
            for (model, mode, cond), cols in rows.items()]
    widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]

    def line(row):
        return "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    unit = "peak MiB above base" if value == "memory" else "input tokens/s"
    return "\n".join([f"{unit} (by input length):", line(head), line(["-" * w for w in widths])]
                     + [line(row) for row in body])
