"""Print measured and simulated peaks (GiB above the built model) of the same cells side by side.

``python scripts/side_by_side.py RUN_DIR [RUN_DIR ...]``: the records of a GPU run and a simulated run (any
order) paired as the report pairs them (``reports.analysis.simulated_vs_measured``: model, mode, input
length, target / new tokens, batch, dtype, inputs and config fields); the error is
(simulated - measured) / measured. Run from the repository root.
"""

import sys

import pandas as pd

from reports.analysis import simulated_vs_measured
from reports.runs import load_run


def peak(status: str, mib: float) -> str:
    return f"{mib / 1024:.2f}" if status == "ok" else status


def main(run_dirs: list[str]) -> int:
    paired = simulated_vs_measured(pd.concat([load_run(d).records for d in run_dirs], ignore_index=True))
    print(f"{'model':<22} {'mode':<9} {'length':>7} {'measured GiB':>13} {'simulated GiB':>14} {'error':>7}")
    for p in paired.itertuples(index=False):
        error = "" if pd.isna(p.relative_error_pct) else f"{p.relative_error_pct:+.1f}%"
        print(f"{p.model:<22} {p.mode:<9} {p.input_len:>7,} {peak(p.measured_status, p.measured_mib):>13} "
              f"{peak(p.simulated_status, p.simulated_mib):>14} {error:>7}")
    if paired.empty:
        print("error: no simulated cell has a measured GPU record of the same cell", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
