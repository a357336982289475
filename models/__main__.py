"""``python -m models``: the table of presets with their parameter counts."""

import sys

from models.registry import preset_table


def _millions(n: int) -> str:
    return f"{n / 1e6:8.1f}M"


def main() -> int:
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
