"""python -m reports build RUN_DIR [RUN_DIR ...] [--out DIR]"""

from __future__ import annotations

import argparse
import sys

from reports.build import build
from reports.runs import ReportError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m reports", description="Build CSVs and a self-contained HTML report.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
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
    args = parser.parse_args(argv)
    try:
        report = build(args.run_dirs, args.out)
    except (ReportError, OSError) as error:  # bad input, or an output directory that cannot be written
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
