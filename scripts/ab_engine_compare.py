"""Compare two outputs of ``scripts/ab_engine_run.sh`` (the same commands on two checkouts): records,
statuses, ROUGE rows and the report's CSVs must agree.

    python scripts/ab_engine_compare.py OUT_A OUT_B

Every field is compared exactly except: times, timestamps, wall/overhead seconds, token rates (they are
clocked), the git commit, host and paths (they name the checkout), and the measured memory (RSS of a
process: it moves by a few MiB between two runs of the same code) and reference NLL (see ``MEASURED``),
whose largest relative difference is printed instead; in the report's CSVs a text cell that differs
only in its numbers (a claim's best saving, worded) counts as measured too. Exit status 0 when nothing
else differs, 1 otherwise.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

#: clocked or naming the checkout: not compared
VOLATILE = re.compile(r"^(started_at|finished_at|wall_s|overhead_s|time_.*|times_s|cpu_times_s|first_call_s|"
                      r"warmup_s|tokens_per_s|generated_tokens_per_s|env_git_commit|env_hostname|"
                      r"git_commit|hostname|directory|env_python|.*_path)$")
#: measured memory, and figures derived from it: compared with a printed relative difference; and the
#: reference NLL of a model trained on CPU, which two runs of one checkout already give apart (7.7503 and
#: 7.7569 nats/token for the tiny run of ab_engine_run.sh, twice on main)
MEASURED = re.compile(r"^(mem_.*|nvml_.*|.*_mib|ratio.*|saving_pct|best_value|typical_value|best_measured|"
                      r"typical_measured|locost_mib|baseline_mib|nll.*)$")
#: the files compared, each with the columns that name a row
TABLES = {"ab/results.jsonl": ["cell_id"], "ab-rouge/rouge.jsonl": ["system", "input_len"],
          "ab-rouge/rouge_docs.jsonl": ["system", "input_len", "doc_id"],
          "ab-rouge/relative.jsonl": None, "ab/results.csv": ["cell_id"]}


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    flat = [{**{k: v for k, v in row.items() if k != "env"},
             **{f"env_{k}": v for k, v in (row.get("env") or {}).items()}} for row in rows]
    text = [{k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()} for row in flat]
    return pd.DataFrame(text).fillna("")


def _relative(a: str, b: str) -> float | None:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return None
    return 0.0 if x == y else abs(x - y) / max(abs(x), abs(y))


def compare(a: pd.DataFrame, b: pd.DataFrame, key: list[str] | None, name: str) -> list[str]:
    """The differences of two tables that are not volatile or measured, one line each; prints the
    measured ones' largest relative difference."""
    if list(a.columns) != list(b.columns):
        return [f"{name}: columns differ: {sorted(set(a.columns) ^ set(b.columns))}"]
    if key:
        a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    if len(a) != len(b):
        return [f"{name}: {len(a)} rows vs {len(b)}"]
    problems, measured = [], {}
    for column in a.columns:
        if VOLATILE.match(column):
            continue
        for row, (x, y) in enumerate(zip(a[column], b[column], strict=True)):
            if x == y:
                continue
            numbers_only = re.sub(r"-?\d[\d,.]*", "#", x) == re.sub(r"-?\d[\d,.]*", "#", y)
            if MEASURED.match(column) or (numbers_only and _relative(x, y) is None):
                measured[column] = max(measured.get(column, 0.0), _relative(x, y) or float("nan"))
            else:
                problems.append(f"{name} row {row} {column}: {x!r} != {y!r}")
    for column, diff in measured.items():
        print(f"  {name}: measured {column} differs (largest relative difference {diff:.3g})")
    return problems


def main(argv: list[str]) -> int:
    first, second = map(Path, argv)
    files = dict(TABLES)
    files.update({f"report/{p.name}": None for p in sorted((first / "report").glob("*.csv"))})
    problems = []
    for name, key in files.items():
        paths = first / name, second / name
        if not all(p.exists() for p in paths):
            problems.append(f"{name}: present in {[str(p) for p in paths if p.exists()]} only")
            continue
        found = compare(_read(paths[0]), _read(paths[1]), key, name)
        print(f"{name}: {'same' if not found else f'{len(found)} differences'}")
        problems += found
    statuses = [_read(base / "ab/results.jsonl")[["cell_id", "status"]].sort_values("cell_id").values.tolist()
                for base in (first, second)]
    print(f"statuses: {'same' if statuses[0] == statuses[1] else 'DIFFER'}: {statuses[0]}")
    problems += [] if statuses[0] == statuses[1] else ["statuses differ"]
    for line in problems:
        print(f"DIFF {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
