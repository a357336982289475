"""``python -m models``: the table of presets with their parameter counts."""

import argparse
import sys

from models.registry import preset_table


def _millions(n: int) -> str:
    return f"{n / 1e6:8.1f}M"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one ``error:`` line and exit status 2, as every CLI of the harness
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    _Parser(prog="python -m models",
            description="Print the preset table: parameter counts (total, embedding, non-embedding) "
                        "and the longest input of each family and size.").parse_args(argv)
    rows = preset_table()
    header = f"{'family':<16} {'size':<6} {'total':>9} {'embedding':>9} {'non-emb':>9}  max input"
    print(header)
    print("-" * len(header))
    for row in rows:
        limit = "unbounded" if row["max_input_len"] is None else f"{row['max_input_len']:,}"
        print(f"{row['family']:<16} {row['size']:<6} {_millions(row['total'])} "
              f"{_millions(row['embedding'])} {_millions(row['non_embedding'])}  {limit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
