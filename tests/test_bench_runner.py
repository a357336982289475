"""The isolated runner with synthetic workloads (real child processes, no model): known allocations
are measured, budgets and time limits end cells as oom / timeout, and a killed sweep resumes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from processes import alive, descendants

from bench.cells import Cell
from bench.results import read_records
from bench.runner import run_cell
from bench.settings import Settings
from bench.sweep import run_sweep

MiB, GiB = 2**20, 2**30
REPO = Path(__file__).resolve().parents[1]
ENV_KEYS = {"python", "torch", "transformers", "device_name", "cpu_model", "cpu_native_bf16",
            "cpu_count", "threads", "git_commit", "hostname", "platform"}


def synthetic(name: str, length: int = 1, **args) -> Cell:
    return Cell("synthetic", name, "train", length, target_len=1, workload=f"bench.workloads:{name}",
                workload_args=tuple(sorted(args.items())))


def test_a_known_allocation_is_measured_within_ten_percent():
    fields = run_cell(synthetic("allocate", mib=400), Settings.of(warmup=1, repeats=2, budget_bytes=4 * GiB))
    assert fields["status"] == "ok", fields["message"]
    assert 360 * MiB <= fields["mem_peak_above_base_bytes"] <= 440 * MiB
    assert fields["mem_peak_bytes"] == fields["mem_base_bytes"] + fields["mem_peak_above_base_bytes"]
    assert fields["repeats"] == 2 and fields["warmup"] == 1 and fields["time_median_s"] > 0
    assert set(fields["env"]) == ENV_KEYS


def test_over_budget_ends_as_oom_and_the_next_cell_still_runs(tmp_path):
    growing = synthetic("allocate", mib=1600, chunk_mib=32, pause_s=0.01)  # the watchdog catches it
    sudden = synthetic("allocate", mib=64 * 1024)  # one allocation beyond the address-space backstop
    small = synthetic("allocate", mib=50)
    records = run_sweep([growing, sudden, small], tmp_path, suite="test", progress=False,
                        settings=Settings.of(warmup=0, repeats=1, budget_bytes=1 * GiB))
    status = {r["workload_args"]["mib"]: r for r in records}
    assert status[1600]["status"] == "oom" and "budget" in status[1600]["message"]
    assert status[1600]["mem_peak_bytes"] > 1 * GiB  # the highest RSS the watchdog saw
    assert status[64 * 1024]["status"] == "oom" and "MemoryError" in status[64 * 1024]["message"]
    assert status[50]["status"] == "ok"
    assert all(set(r["env"]) == ENV_KEYS for r in records)


def test_a_sleeping_workload_ends_as_timeout():
    started = time.monotonic()
    fields = run_cell(synthetic("sleep", seconds=120), Settings.of(timeout_s=3, budget_bytes=GiB))
    assert fields["status"] == "timeout" and "3 s" in fields["message"]
    assert time.monotonic() - started < 60


def test_a_cell_killed_while_counting_flops_keeps_its_measurement():
    cell = synthetic("sleep", seconds=0.01, count_seconds=120)
    fields = run_cell(cell, Settings.of(timeout_s=3, budget_bytes=GiB, flops=True, repeats=1))
    assert fields["status"] == "ok" and fields["time_median_s"] >= 0.01
    assert fields["message"].startswith("FLOPs not counted: timed out") and fields.get("flops") is None


def test_an_exception_ends_as_error_with_one_line():
    fields = run_cell(synthetic("fail", message="boom\nsecond line"), Settings.of(budget_bytes=GiB))
    assert fields["status"] == "error"
    assert fields["message"] == "RuntimeError: boom"


def test_a_bad_workload_name_is_an_error_record():
    cell = Cell("synthetic", "x", "train", 1, workload="bench.workloads:nope")
    fields = run_cell(cell, Settings.of(budget_bytes=GiB))
    assert fields["status"] == "error" and "nope" in fields["message"]


SWEEP_SCRIPT = textwrap.dedent("""
    import sys
    from bench.cells import Cell
    from bench.sweep import run_sweep
    from bench.settings import Settings
    def cells(seconds=1.5):
        return [Cell("synthetic", "sleep", "train", n, target_len=1, workload="bench.workloads:sleep",
                     workload_args=(("seconds", seconds),)) for n in (1, 2, 3, 4)]
    if __name__ == "__main__":
        seconds, start = (float(sys.argv[2]), sys.argv[3]) if len(sys.argv) > 2 else (1.5, "forkserver")
        run_sweep(cells(seconds), sys.argv[1], suite="test", progress=False,
                  settings=Settings.of(warmup=0, repeats=1, budget_bytes=2**30, worker_start=start))
""")




@pytest.mark.parametrize("start", ["forkserver", "exec"])
def test_a_worker_dies_with_its_runner(tmp_path, start):
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))  # workers' specs land here
    runner = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), "600", start], cwd=REPO,
                              env=env)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "run" / "logs").glob("bench-cell-*/result.json")):  # a worker at work
        assert time.monotonic() < deadline and runner.poll() is None
        time.sleep(0.05)
    below = descendants(runner.pid)  # the worker (and with a fork server, the server)
    assert below
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in below if alive(pid)], "a worker (or the fork server) outlived its runner"


def test_a_killed_sweep_loses_no_finished_cell_and_resumes_the_rest(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP_SCRIPT)
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))  # workers' specs land here
    runner = subprocess.Popen([sys.executable, str(script), str(run_dir)], cwd=REPO, env=env)
    deadline = time.monotonic() + 120
    while not read_records(run_dir) and time.monotonic() < deadline and runner.poll() is None:
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    first = read_records(run_dir)
    assert 1 <= len(first) < 4

    sys.path.insert(0, str(tmp_path))
    try:
        import sweep
    finally:
        sys.path.remove(str(tmp_path))
    records = run_sweep(sweep.cells(), run_dir, suite="test", progress=False,
                        settings=Settings.of(warmup=0, repeats=1, budget_bytes=GiB))
    assert [r["input_len"] for r in records] == [1, 2, 3, 4]
    assert all(r["status"] == "ok" for r in records)
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 4  # the finished cells were not measured again
    assert [r["started_at"] for r in first] == [r["started_at"] for r in records[: len(first)]]
    # and a third run has nothing left to do
    run_sweep(sweep.cells(), run_dir, suite="test", progress=False, settings=Settings.of(budget_bytes=GiB))
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 4
    invocations = json.loads((run_dir / "run.json").read_text())
    assert invocations["already_recorded"] == 4
    assert [run["already_recorded"] for run in invocations["earlier_invocations"]] == [0, len(first)]
    assert len(read_records(run_dir)) == 4 and (run_dir / "results.csv").read_text().count("\n") == 5


def test_a_cell_killed_while_its_model_is_built_says_the_budget_is_below_its_resident_size():
    cell = synthetic("allocate", mib=1, resident_mib=1600, chunk_mib=32, pause_s=0.01)
    fields = run_cell(cell, Settings.of(budget_bytes=GiB // 2))
    assert fields["status"] == "oom"
    assert fields["message"].startswith("budget below the model's resident size: RSS 0.5")
    assert "while the model was still being built, killed" in fields["message"]
    assert "mem_base_bytes" not in fields  # it never got as far as the memory base
