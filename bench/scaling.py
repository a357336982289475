"""``python -m bench.scaling --max-len 600000``: how far each model gets, and how fast cost grows.

Input lengths double from ``--min-len`` (1,024) up to and including exactly ``--max-len``
(600,000); each model and mode runs until its first failure (oom, timeout, unsupported), which is
recorded as a result. Inputs are random ids, or a real text (``--text shakespeare`` or a file)
tokenized once and repeated or cut to each length. At the end it prints, per model and mode, the
longest length reached and the first failure, and the exponents k of time ∝ L^k and peak memory
above the weights ∝ L^k (least squares in log-log, 95% CI, over the lengths that succeeded).
All options of ``python -m bench.memory`` apply (``--models``, ``--budget-gb``, ``--timeout``, ...);
``--quick`` is a smoke run with ``tiny`` models up to 8,192 tokens.
"""

from __future__ import annotations

import sys

from bench import cli
from bench.texts import TextError, token_file
from suites.scaling import MAX_LEN, MIN_LEN, doubling_lengths

QUICK = {"sizes": ("tiny",), "max_len": 8192, "new_tokens": 8, "min_len": 512}


def build_parser() -> cli.Parser:
    parser = cli.build_parser("scaling")
    parser.description = ("Input lengths doubling up to exactly --max-len, until each model fails; "
                          "longest length reached and fitted growth exponents per model.")
    add = parser.add_argument
    add("--min-len", type=cli.parse_length, help=f"shortest input (default {MIN_LEN:,})")
    add("--max-len", type=cli.parse_length, help=f"longest input, always measured (default {MAX_LEN:,})")
    add("--text", help="real text as input: 'shakespeare' (embedded) or a UTF-8 file; default random ids")
    add("--quick", action="store_true", help="smoke run: tiny models, 512 to 8,192 tokens, 8 new tokens")
    return parser


def plan(argv: list[str] | None) -> cli.Plan:
    args = build_parser().parse_args(argv)
    if args.lengths:
        raise cli.UsageError("scaling lengths double from --min-len to --max-len; --lengths does not apply")
    if args.quick:
        args.sizes = args.sizes or QUICK["sizes"]
        args.new_tokens = args.new_tokens or QUICK["new_tokens"]
        args.min_len = args.min_len or QUICK["min_len"]
        args.max_len = args.max_len or QUICK["max_len"]
        args.run_id = args.run_id or "scaling-quick"
    min_len, max_len = args.min_len or MIN_LEN, args.max_len or MAX_LEN
    if max_len < min_len:
        raise cli.UsageError(f"--max-len {max_len:,} is below --min-len {min_len:,}")
    args.lengths = doubling_lengths(min_len, max_len)
    planned = cli.plan_args("scaling", args)
    if args.text:
        try:
            inputs = token_file(args.text, planned.run_dir)
        except TextError as exc:
            raise cli.UsageError(str(exc)) from None
        planned = cli.Plan(**{**planned.__dict__, "sweep": planned.sweep.with_options(inputs=str(inputs))})
    return planned


def summary(records: list[dict]) -> str:
    """Longest length reached, first failure and fitted exponents per model and mode."""
    from reports.analysis import fit_power_law

    def exponent(points) -> str:
        if len({length for length, _ in points}) < 2:
            return "-"
        fit = fit_power_law(*zip(*points, strict=True))
        ci = "" if fit.ci_low is None else f" [{fit.ci_low:.2f}, {fit.ci_high:.2f}]"
        return f"{fit.slope:.2f}{ci}"

    rows = [("model", "mode", "longest ok", "first failure", "time exponent [95% CI]",
             "memory exponent [95% CI]")]
    series: dict[tuple, list[dict]] = {}
    for record in records:
        series.setdefault((record["model"], record["mode"]), []).append(record)
    for (model, mode), group in series.items():
        group.sort(key=lambda r: r["input_len"])
        ok = [r for r in group if r["status"] == "ok"]
        failed = next((r for r in group if r["status"] not in ("ok", "skipped")), None)
        times = [(r["input_len"], r["time_median_s"]) for r in ok if r.get("time_median_s")]
        memory = [(r["input_len"], r["mem_peak_above_base_bytes"]) for r in ok
                  if (r.get("mem_peak_above_base_bytes") or 0) > 0]
        rows.append((model, mode, f"{ok[-1]['input_len']:,}" if ok else "none",
                     f"{failed['status']} at {failed['input_len']:,}" if failed else "-",
                     exponent(times), exponent(memory)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    try:
        planned = plan(argv)
    except cli.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = cli.execute(planned, argv)
    if records is None:
        return 2
    if records:
        print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
