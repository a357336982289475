"""``python -m reports build RUN_DIR [RUN_DIR ...] [--out DIR]``: the report of run directories."""

from __future__ import annotations

import sys

from cli.args import Parser, UsageError, fail, guard
from reports.build import build
from reports.runs import ReportError


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
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        return fail(error)

    def work() -> int:
        print(build(args.run_dirs, args.out))
        return 0

    # bad input, an unwritable output directory, an interrupt: one line; build() replaces no file
    # of an earlier report until every new one is written
    return guard(work, lambda: "no file of an earlier report was replaced", errors=(ReportError,))


if __name__ == "__main__":
    sys.exit(main())
