"""Held under every fault (issue 29), with real processes: a record says what happened to its cell, a
failure that is not the cell's own (killed from outside, fork server lost, disk full) is marked
``harness_failure`` and measured again by a plain rerun, and a relative run directory works from any
working directory."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing import forkserver as mp_forkserver
from pathlib import Path

from test_reliability import sleeping, sweep

from bench.cells import Cell
from cli.sweep import exit_status

REPO = Path(__file__).resolve().parents[1]


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


# --- the fork server: deaf to Ctrl-C while importing, single-threaded before it forks ----------------


def run_script(code: str, tmp_path: Path, modules: dict[str, str], **popen) -> subprocess.Popen:
    """``code`` in a new Python process in its own session (its process group: the runner's and the
    fork server's, as a terminal's Ctrl-C reaches them), ``modules`` importable from ``tmp_path``."""
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def test_ctrl_c_while_the_fork_server_imports_is_the_runners_one_line_alone(tmp_path):
    marker = tmp_path / "importing"
    proc = run_script("""
        import sys
        from bench import forkserver
        forkserver.PRELOAD.insert(0, "slow_import")
        try:
            forkserver.warm()
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        """, tmp_path, {"slow_import": f"""
        import pathlib, time
        pathlib.Path({str(marker)!r}).write_text("")
        time.sleep(4)
        """})
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    _, err = proc.communicate(timeout=120)  # until the server, which shares stderr, has ended too
    assert proc.returncode == 130
    assert err == "interrupted\n", err


def cell_forked_after(preload: str, tmp_path: Path) -> list:
    """[status, message, threads] of a 2-thread cell running parallel torch ops, forked from a server
    whose first preloaded import is ``preload``."""
    proc = run_script("""
        import json
        from bench import forkserver
        from bench.cells import Cell
        from bench.runner import run_cell
        from bench.settings import Settings
        forkserver.PRELOAD.insert(0, "parallel_import")
        cell = Cell("synthetic", "parallel", "train", 1, target_len=1, threads=2,
                    workload="tests.fault_workloads:parallel_op")
        fields = run_cell(cell, Settings.of(warmup=0, repeats=1, budget_bytes=2**30, timeout_s=60))
        print(json.dumps([fields["status"], fields.get("message"), fields["env"]["threads"]]))
        """, tmp_path, {"parallel_import": preload})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_a_preloaded_multithreaded_op_does_not_hang_a_forked_cell(tmp_path):
    """GNU libgomp's thread pool does not survive fork: a server that ran a parallel op before forking
    would leave each child hanging in its first parallel op (the cell timed out after 60 s)."""
    preload = """
        import torch
        torch.ones(1 << 22).mul(2).sum()  # a preloaded import that touches a tensor op
        (torch.ones(256, 256) @ torch.ones(256, 256)).sum()
        """
    assert cell_forked_after(preload, tmp_path) == ["ok", "", 2]  # measured, with the cell's two threads


def test_a_server_that_started_a_thread_pool_anyway_is_refused_not_hung(tmp_path):
    preload = """
        import torch
        torch.set_num_threads(2)  # a preloaded import that asks for threads itself
        torch.ones(1 << 22).mul(2).sum()
        """
    status, message, _ = cell_forked_after(preload, tmp_path)
    assert status == "error", message
    assert "the fork server runs" in message and "--worker-start exec" in message, message
