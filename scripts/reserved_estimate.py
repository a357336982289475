"""Modelled CUDA reserved memory over allocated memory of simulated GPU cells (``bench.gpusim``,
``bench.allocator``): one JSON line per cell on stdout.

    PYTHONPATH=. python scripts/reserved_estimate.py FAMILY MODE LENGTH   # one cell per process

GPU defaults as ``python -m bench.memory --simulate h100-80gb`` runs them: ``base``, bf16 autocast,
batch 1, 512 target tokens (train), 64 new tokens (generate), the presets' dropout.
"""

from __future__ import annotations

import json
import sys
import time


def main(family: str, mode: str, length: int) -> dict:
    from bench.gpusim import simulate_step
    from models import build

    handle = build(family, "base", device="meta")
    start = time.process_time()
    sim = simulate_step(handle, lambda: handle.make_batch(length, target_len=512 if mode == "train" else 1),
                        mode, new_tokens=64, dtype="bf16", memoise=False)  # every call allocates
    allocated = sim.base_bytes + sim.peak_bytes
    return {"family": family, "mode": mode, "length": length, "base_bytes": sim.base_bytes,
            "allocated_peak_bytes": allocated, "reserved_peak_bytes": sim.reserved_peak_bytes,
            "slack_bytes": sim.reserved_peak_bytes - allocated,
            "cpu_s": round(time.process_time() - start, 1)}


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python scripts/reserved_estimate.py FAMILY MODE LENGTH")
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)
