"""Print measured and simulated peaks (GiB above the built model) of the same cells side by side.

``python scripts/side_by_side.py REAL_RUN_DIR SIMULATED_RUN_DIR``: cells pair by model, mode, input length,
target / new tokens, batch and dtype; the error is (simulated - measured) / measured.
"""

import json
import sys
from pathlib import Path

KEY = ("model", "mode", "input_len", "target_len", "new_tokens", "batch", "dtype")


def records(run_dir: str) -> dict:
    lines = Path(run_dir, "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return {tuple(row[k] for k in KEY): row for row in rows}


def peak(row: dict | None) -> str:
    if row is None:
        return "-"
    if row["status"] != "ok" or row["mem_peak_above_base_bytes"] is None:
        return row["status"]
    return f"{row['mem_peak_above_base_bytes'] / 2**30:.2f}"


def main(real_dir: str, sim_dir: str) -> None:
    real, sim = records(real_dir), records(sim_dir)
    print(f"{'model':<22} {'mode':<9} {'length':>7} {'measured GiB':>13} {'simulated GiB':>14} {'error':>7}")
    for key in sorted(set(real) | set(sim), key=lambda k: (k[0], k[1], k[2])):
        a, b = real.get(key), sim.get(key)
        error = ""
        if a and b and a["status"] == b["status"] == "ok":
            error = f"{(b['mem_peak_above_base_bytes'] / a['mem_peak_above_base_bytes'] - 1) * 100:+.1f}%"
        print(f"{key[0]:<22} {key[1]:<9} {key[2]:>7,} {peak(a):>13} {peak(b):>14} {error:>7}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
