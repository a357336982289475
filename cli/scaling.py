"""``python -m bench.scaling --max-len 600000``: how far each model gets, and how fast cost grows.

Input lengths double from ``--min-len`` (1,024) up to and including exactly ``--max-len``
(600,000); each model and mode runs until its first failure (oom, timeout, unsupported), which is
recorded as a result. Inputs are random ids, or a real text (``--text shakespeare`` or a file)
tokenized once and repeated or cut to each length. At the end it prints, per model and mode, the
longest length reached and the first failure, and the exponents k of time ∝ L^k and peak memory
above the weights ∝ L^k (least squares in log-log, 95% CI, over the lengths that succeeded).
All options of ``python -m bench.memory`` (``cli.sweep``) apply (``--models``, ``--budget-gb``, ...);
``--quick`` is a smoke run with ``tiny`` models up to 8,192 tokens.
"""

from __future__ import annotations

import sys

from cli import sweep
from cli.args import MAX_LENGTH, Parser, UsageError, fail, guard, parse_length
from suites.scaling import MAX_LEN, MIN_LEN, doubling_lengths
from suites.texts import TextError, token_file

QUICK = {"sizes": ("tiny",), "max_len": 8192, "new_tokens": 8, "min_len": 512}


def build_parser() -> Parser:
    parser = sweep.build_parser("scaling")
    parser.description = ("Input lengths doubling up to exactly --max-len, until each model fails; "
                          "longest length reached and fitted growth exponents per model.")
    add = parser.add_argument
    add("--min-len", type=parse_length, help=f"shortest input (default {MIN_LEN:,})")
    add("--max-len", type=parse_length,
        help=f"longest input, always measured (default {MAX_LEN:,}; at most {MAX_LENGTH:,}, the int32 "
             "limit: see --lengths)")
    add("--text", help="real text as input: 'shakespeare' (embedded) or a UTF-8 file; default random ids")
    add("--quick", action="store_true", help="smoke run: tiny models, 512 to 8,192 tokens, 8 new tokens")
    return parser


def plan(argv: list[str] | None) -> sweep.Plan:
    args = build_parser().parse_args(argv)
    if args.lengths:
        raise UsageError("scaling lengths double from --min-len to --max-len; --lengths does not apply")
    if args.quick:
        args.sizes = args.sizes or QUICK["sizes"]
        args.new_tokens = args.new_tokens or QUICK["new_tokens"]
        args.min_len = args.min_len or QUICK["min_len"]
        args.max_len = args.max_len or QUICK["max_len"]
        args.run_id = args.run_id or "scaling-quick"
    min_len, max_len = args.min_len or MIN_LEN, args.max_len or MAX_LEN
    if max_len < min_len:
        raise UsageError(f"--max-len {max_len:,} is below --min-len {min_len:,}")
    # without --min-len/--max-len the suite's own lengths (the same doubling) apply, with its drops
    args.lengths = doubling_lengths(min_len, max_len) if args.min_len or args.max_len else None
    planned = sweep.plan_args("scaling", args)
    if args.text:
        try:
            inputs = token_file(args.text, planned.run_dir)
        except TextError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:  # an unwritable run directory, before anything is measured
            raise UsageError(f"cannot write the tokenized text: {exc}") from None
        planned = sweep.Plan(**{**planned.__dict__, "sweep": planned.sweep.with_options(inputs=str(inputs))})
    return planned


def summary(records: list[dict]) -> str:
    """Longest length reached, first failure and fitted exponents per model and mode, computed by
    the report's analysis (``reports.analysis.reach`` and ``scaling_fits``)."""
    from reports.analysis import reach, scaling_fits
    from reports.runs import records_frame
    from reports.text import exponent, is_missing

    frame = records_frame(records)
    fits = scaling_fits(frame)
    rows = [("model", "mode", "longest ok", "first failure", "time exponent [95% CI]",
             "memory exponent [95% CI]")]
    for r in reach(frame).itertuples(index=False):
        fitted = {f.metric: exponent(f.slope, f.ci_low, f.ci_high) for f in fits.itertuples(index=False)
                  if (f.run_id, f.model, f.mode) == (r.run_id, r.model, r.mode)}
        longest = "none" if is_missing(r.longest_ok) else f"{int(r.longest_ok):,}"
        failure = (f"{r.first_failure_status} at {int(r.first_failure_len):,}"
                   if r.first_failure_status else "-")
        rows.append((r.model, r.mode, longest, failure,
                     fitted.get("time", "-"), fitted.get("memory", "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    try:
        planned = plan(argv)
    except UsageError as exc:
        return fail(exc)

    def work() -> int:
        records = sweep.execute(planned, argv)
        if records:
            print(summary(records))
        return sweep.exit_status(records)

    return guard(work, lambda: sweep.kept(planned.run_dir), errors=sweep.ENGINE_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
