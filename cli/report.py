"""``python -m reports build RUN_DIR [RUN_DIR ...] [--out DIR]``: the report of run directories;
``python -m reports compare RUN_A RUN_B [--html OUT] [--csv OUT] [--fail-on-slower]``: B against A;
``python -m reports compare --a A1 A2 ... --b B1 B2 ...``: several runs (processes) per side."""

from __future__ import annotations

import sys
from pathlib import Path

from cli.args import Parser, UsageError, fail, guard
from reports import compare
from reports.build import build
from reports.runs import ReportError, load_run


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m reports", description="Build CSVs and a self-contained HTML report.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    build_parser = commands.add_parser("build", help="build the report of one or more run directories")
    build_parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directory holding results.jsonl (and/or rouge.jsonl)",
    )
    build_parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output directory (default: the run directory, or reports/out/combined-<UTC time> for several)",
    )
    _compare_parser(commands)
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return fail(error)
    if args.command == "compare":
        return guard(lambda: _compare(args), lambda: "nothing written", errors=(ReportError,))

    def work() -> int:
        print(build(args.run_dirs, args.out))
        return 0

    # bad input, an unwritable output directory, an interrupt: one line; build() replaces no file
    # of an earlier report until every new one is written
    return guard(work, lambda: "no file of an earlier report was replaced", errors=(ReportError,))


def _compare_parser(commands) -> None:
    parser = commands.add_parser(
        "compare", help="run B against run A: per cell the time ratio B/A with a 99%% CI, the memory "
        "ratio, and a verdict (faster, slower, no change, inconclusive) from the rule printed with it")
    parser.add_argument("runs", nargs="*", metavar="RUN_A RUN_B",
                        help="run directory of the reference (before), then the one compared with it (after)")
    parser.add_argument("--a", nargs="+", metavar="RUN_A", dest="runs_a",
                        help="several run directories of the reference, one process per cell each (with --b, "
                        "instead of RUN_A RUN_B): the more processes per side, the more the verdicts rest on "
                        "their own spread instead of the between-process spread measured on this project's "
                        "CPU machine")
    parser.add_argument("--b", nargs="+", metavar="RUN_B", dest="runs_b",
                        help="several run directories compared with them")
    parser.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page to OUT")
    parser.add_argument("--csv", metavar="OUT", help="also write the table (one row per cell) to OUT")
    parser.add_argument("--fail-on-slower", action="store_true",
                        help="exit 1 when any cell is slower (for CI); otherwise the exit status is 0")


def _compare(args) -> int:
    """Print B against A (and write the CSV / HTML asked for); 1 with --fail-on-slower and a slower cell."""
    runs_a, runs_b = _sides(args)
    runs = [load_run(path) for path in (*runs_a, *runs_b)]
    for out in (args.html, args.csv):
        if out is not None and Path(out).is_dir():
            raise ReportError(f"{out}: is a directory (give a file name)")
        if out is not None and not Path(out).absolute().parent.is_dir():
            raise ReportError(f"{out}: no such directory {Path(out).absolute().parent}")
    side_a, side_b = runs[: len(runs_a)], runs[len(runs_a):]
    frame = compare.compare_runs(side_a, side_b)
    if args.csv:
        compare.write_compare_csv(frame, args.csv)
    if args.html:
        compare.write_compare_html(frame, side_a, side_b, args.html)
    print(compare.compare_text(frame, [run.path for run in side_a], [run.path for run in side_b]))
    return 1 if args.fail_on_slower and frame["verdict"].eq(compare.SLOWER).any() else 0


def _sides(args) -> tuple[list[str], list[str]]:
    """The run directories of side A and side B: RUN_A RUN_B, or --a ... --b ...; ReportError otherwise."""
    if args.runs_a is None and args.runs_b is None:
        if len(args.runs) != 2:
            raise ReportError(f"give two run directories (RUN_A RUN_B), or several per side with --a ... "
                              f"--b ...; got {len(args.runs)}")
        return args.runs[:1], args.runs[1:]
    if args.runs or args.runs_a is None or args.runs_b is None:
        raise ReportError("give RUN_A RUN_B, or --a RUN_A... --b RUN_B..., not both and not one side alone")
    for side, paths in (("--a", args.runs_a), ("--b", args.runs_b)):
        resolved = [Path(path).resolve() for path in paths]
        twice = [path for path, where in zip(paths, resolved, strict=True) if resolved.count(where) > 1]
        if twice:
            raise ReportError(f"{twice[0]}: given twice to {side} (each run is one process of the side)")
    return args.runs_a, args.runs_b


if __name__ == "__main__":
    sys.exit(main())
