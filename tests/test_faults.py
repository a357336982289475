"""Held under every fault (issue 29), with real processes: a record says what happened to its cell, a
failure that is not the cell's own (killed from outside, fork server lost, disk full) is marked
``harness_failure`` and measured again by a plain rerun, and a relative run directory works from any
working directory."""

import os
import signal
import threading
import time
from multiprocessing import forkserver as mp_forkserver
from pathlib import Path

from test_reliability import sleeping, sweep

from bench.cells import Cell
from cli.sweep import exit_status


def announced(path: Path, length: int = 8, seconds: float = 120) -> Cell:
    return Cell("synthetic", "announce", "train", length, target_len=1,
                workload="tests.fault_workloads:announce_then_sleep",
                workload_args=(("path", str(path)), ("seconds", seconds)))


def kill_when_announced(path: Path, victim=lambda pid: pid, signum=signal.SIGKILL) -> threading.Thread:
    """A thread that waits for the cell's pid in ``path`` and sends ``signum`` to ``victim(pid)``."""
    def wait_and_kill():
        deadline = time.monotonic() + 120
        while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(victim(int(path.read_text())), signum)
    thread = threading.Thread(target=wait_and_kill, daemon=True)
    thread.start()
    return thread


def by_length(records: list[dict]) -> dict[int, dict]:
    return {record["input_len"]: record for record in records}


def test_a_relative_run_directory_works_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository, where a forked worker runs
    records = sweep(Path("reports/out/run"), sleeping(1, 2))
    assert [record["status"] for record in records] == ["ok", "ok"], records
    assert (tmp_path / "reports/out/run/results.jsonl").is_file()


def test_a_sigkill_without_memory_pressure_is_killed_not_oom_and_a_rerun_measures_it(tmp_path):
    pid_file = tmp_path / "pid"
    killer = kill_when_announced(pid_file)
    cells = [announced(pid_file, 8), *sleeping(16)]
    records = by_length(sweep(tmp_path / "run", cells))
    killer.join()
    killed = records[8]
    assert killed["status"] == "error" and killed["harness_failure"] is True, killed
    assert killed["message"].startswith("killed by SIGKILL from outside"), killed
    assert "memory pressure" in killed["message"]
    assert records[16]["status"] == "ok"  # a longer length is measured, not skipped as after an oom
    assert exit_status(list(records.values())) == 1
    rerun = by_length(sweep(tmp_path / "run", [announced(pid_file, 8, seconds=0.01), *sleeping(16)]))
    assert rerun[8]["status"] == "ok" and rerun[8]["harness_failure"] is None  # measured again
    assert rerun[16]["started_at"] == records[16]["started_at"]  # the cell's own result stays


def test_a_sigterm_from_outside_is_a_harness_failure_too(tmp_path):
    pid_file = tmp_path / "pid"
    killer = kill_when_announced(pid_file, signum=signal.SIGTERM)
    [record] = sweep(tmp_path / "run", [announced(pid_file)])
    killer.join()
    assert record["status"] == "error" and record["harness_failure"] is True, record
    assert "SIGTERM" in record["message"]


def test_a_fork_server_killed_mid_cell_is_not_the_cells_result(tmp_path):
    pid_file = tmp_path / "pid"
    killer = kill_when_announced(pid_file, victim=lambda _: mp_forkserver._forkserver._forkserver_pid)
    records = by_length(sweep(tmp_path / "run", [announced(pid_file, 8), *sleeping(16)]))
    killer.join()
    assert records[8]["status"] == "error" and records[8]["harness_failure"] is True, records[8]
    assert records[16]["status"] == "ok"  # the next cell starts a new server
    rerun = by_length(sweep(tmp_path / "run", [announced(pid_file, 8, seconds=0.01)]))
    assert rerun[8]["status"] == "ok"


def test_a_full_disk_in_a_cell_is_a_harness_failure_and_the_run_says_so(tmp_path, capsys):
    cell = Cell("synthetic", "disk", "train", 1, target_len=1,
                workload="tests.fault_workloads:write_to_full_disk")
    [record] = sweep(tmp_path / "run", [cell])
    assert record["status"] == "error" and record["harness_failure"] is True, record
    assert "No space left on device" in record["message"]
    assert exit_status([record]) == 1
    line = capsys.readouterr().err
    assert line.startswith("error: 1 cell failed for reasons not their own") and line.count("\n") == 1


def test_a_cells_own_failure_stays_its_result(tmp_path):
    cell = Cell("synthetic", "fail", "train", 1, target_len=1, workload="bench.workloads:fail")
    [record] = sweep(tmp_path / "run", [cell])
    assert record["status"] == "error" and record["harness_failure"] is None
    assert exit_status([record]) == 0
    [again] = sweep(tmp_path / "run", [cell])
    assert again["started_at"] == record["started_at"]  # not measured again
