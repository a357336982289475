"""A compact text table of a sweep's records: one row per model and mode, one column per length."""

from __future__ import annotations

MiB = 2**20
_SHORT = {"oom": "OOM", "timeout": "timeout", "unsupported": "unsup.", "error": "error", "skipped": "skip"}


#: what a table shows: (its heading, the record's field, its format)
VALUES = {
    "memory": ("peak MiB above base", "mem_peak_above_base_bytes", lambda v: f"{v / MiB:,.0f}"),
    "throughput": ("input tokens/s (median of the timed steps)", "tokens_per_s", lambda v: f"{v:,.0f}"),
    "first_call": ("seconds of the first step of each cell (a new length, nothing kept yet)", "first_call_s",
                   lambda v: f"{v:,.3g}"),
}


def _cell_text(record: dict, value: str) -> str:
    if record["status"] != "ok":
        return _SHORT.get(record["status"], record["status"])
    _, field, text = VALUES[value]
    return "?" if record.get(field) is None else text(record[field])


def _mode_label(record: dict, value: str) -> str:
    """The mode, and for a model with SSM kernels in the throughput table what its timed steps were:
    the steady state (kernels kept from the warm-up: ``reuse_kernel``) or a kernel built per call."""
    if value != "throughput" or record.get("reuse_kernel") is None:
        return record["mode"]
    steps = "steady (kernel reused)" if record["reuse_kernel"] else "kernel built per call"
    return f"{record['mode']}, {steps}"


def summary_table(records: list[dict], value: str = "memory") -> str:
    """``value``: ``memory`` (peak MiB above base), ``throughput`` (input tokens/s) or ``first_call``
    (seconds of each cell's first step). In the throughput table a model with SSM kernels (LOCOST:
    ``reuse_kernel`` recorded) gets two rows per mode: its first call (tokens/s of ``first_call_s``, the
    kernel built), and its timed steps, labelled steady (kernel reused) or kernel built per call. A
    simulated cell's conditions name the GPU (``bf16 b1, simulated h100-80gb``): its figures are no
    measurement."""
    if not records:
        return "(no records)"
    lengths = sorted({r["input_len"] for r in records})
    rows: dict[tuple, dict[int, str]] = {}
    for r in records:
        simulated = f", simulated {r['simulated_gpu']}" if r.get("simulated_gpu") else ""
        conditions = f"{r['dtype']} b{r['batch']}{simulated}"
        rows.setdefault((r["model"], _mode_label(r, value), conditions), {})[r["input_len"]] = \
            _cell_text(r, value)
        if value == "throughput" and r.get("reuse_kernel") is not None:  # a model with SSM kernels: LOCOST
            first = r.get("first_call_s")
            first_rate = dict(r, tokens_per_s=r["batch"] * r["input_len"] / first if first else None)
            rows.setdefault((r["model"], f"{r['mode']}, first call", conditions), {})[r["input_len"]] = \
                _cell_text(first_rate, value)
    head = ["model", "mode", "dtype/batch"] + [f"{n:,}" for n in lengths]
    body = [[model, mode, cond] + [cols.get(n, "") for n in lengths]
            for (model, mode, cond), cols in rows.items()]
    widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]

    def line(row):
        return "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    unit = VALUES[value][0]
    return "\n".join([f"{unit} (by input length):", line(head), line(["-" * w for w in widths])]
                     + [line(row) for row in body])
