"""Workloads for fault tests (``workload="tests.fault_workloads:<name>"``): a cell that a test kills from
outside, and one whose step meets a full disk."""

import os
import time
from pathlib import Path

from bench.workloads import Prepared


def announce_then_sleep(cell, path: str, seconds: float) -> Prepared:
    """Each step writes this worker's pid to ``path`` (for the test to kill it), then sleeps."""
    def step():
        Path(path).write_text(str(os.getpid()))
        time.sleep(seconds)
    return Prepared(step=step)


def write_to_full_disk(cell, path: str = "/dev/full") -> Prepared:
    """Each step writes a line to ``path`` (``/dev/full``: every write fails with ENOSPC, as on a full
    disk)."""
    def step():
        with open(path, "w") as f:
            f.write("a measurement's output\n")
    return Prepared(step=step)


def parallel_op(cell) -> Prepared:
    """Each step runs torch ops that OpenMP parallelises over the cell's threads."""
    import torch

    def step():
        return float(torch.ones(1 << 22).mul(2).sum() + (torch.ones(256, 256) @ torch.ones(256, 256)).sum())
    return Prepared(step=step)
