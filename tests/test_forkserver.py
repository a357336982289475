"""Workers forked from the preloaded server (bench.forkserver), with real processes: a cell's peak
above its base is its own even when the server holds (or once held) far more memory, a forked worker
runs with its cell's threads, dies with its runner, and its record's overhead follows its definition."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.cells import Cell
from bench.runner import run_cell
from bench.settings import Settings
from bench.sweep import run_sweep

MiB, GiB = 2**20, 2**30
REPO = Path(__file__).resolve().parents[1]


def allocation(mib: int, threads: int = 1) -> Cell:
    return Cell("synthetic", "allocate", "train", 1, target_len=1, threads=threads,
                workload="bench.workloads:allocate", workload_args=(("mib", mib),))


def run_python(code: str, tmp_path: Path, timeout: float = 300) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_linux_starts_a_forked_childs_high_water_marks_at_its_rss_not_at_the_parents_peak(tmp_path):
    """What bench.forkserver relies on: neither VmHWM nor ru_maxrss of a child carries its parent's peak."""
    out = run_python("""
        import json, os, resource
        import numpy as np
        from bench.trackers import status_bytes
        peak = np.ones(800 << 20, dtype=np.uint8)  # an 800 MiB transient: the parent's peak
        del peak
        held = np.ones(100 << 20, dtype=np.uint8)
        parent_hwm = status_bytes("VmHWM")
        read, write = os.pipe()
        if os.fork() == 0:
            os.write(write, json.dumps([status_bytes("VmRSS"), status_bytes("VmHWM"),
                                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]).encode())
            os._exit(0)
        os.wait()
        print(json.dumps([parent_hwm, *json.loads(os.read(read, 1000))]))
    """, tmp_path)
    parent_hwm, rss, hwm, maxrss = json.loads(out)
    assert parent_hwm > 800 * MiB and rss > 100 * MiB
    assert hwm < rss + 50 * MiB and maxrss < rss + 50 * MiB  # not the parent's 900 MiB


def test_a_forked_cells_peak_excludes_what_the_server_holds_and_once_held(tmp_path):
    (tmp_path / "ballast.py").write_text(textwrap.dedent("""
        import numpy as np
        _transient = np.ones(700 << 20, dtype=np.uint8)  # the server's peak, freed before any fork
        del _transient
        HELD = np.ones(400 << 20, dtype=np.uint8)  # resident in the server, shared with every child
    """))
    out = run_python("""
        import json
        from bench import forkserver
        from bench.cells import Cell
        from bench.runner import run_cell
        from bench.settings import Settings
        forkserver.PRELOAD[:] = ["ballast"]  # the ballast alone: no torch to import, a fast server
        cell = Cell("synthetic", "allocate", "train", 1, target_len=1, workload="bench.workloads:allocate",
                    workload_args=(("mib", 150),))
        fields = run_cell(cell, Settings.of(warmup=1, repeats=2, budget_bytes=4 * 2**30))
        print(json.dumps(fields))
    """, tmp_path)
    fields = json.loads(out.splitlines()[-1])
    assert fields["status"] == "ok", fields["message"]
    assert fields["mem_base_bytes"] > 400 * MiB  # the server's allocation is in the child's RSS ...
    assert 135 * MiB <= fields["mem_peak_above_base_bytes"] <= 165 * MiB  # ... but not in its peak above it
    assert fields["mem_peak_bytes"] < fields["mem_base_bytes"] + 165 * MiB  # nor the server's 1.1 GiB peak


def test_forked_and_exec_workers_measure_the_same_allocation_with_the_cells_threads():
    forked, spawned = (run_cell(allocation(300), Settings.of(warmup=1, repeats=1, budget_bytes=4 * GiB,
                                                          worker_start=start))
                       for start in ("forkserver", "exec"))
    for fields in (forked, spawned):
        assert fields["status"] == "ok", fields["message"]
        assert 285 * MiB <= fields["mem_peak_above_base_bytes"] <= 315 * MiB
    assert forked["env"]["threads"] == 1  # the server's torch was set to the cell's threads
    assert forked["env"]["git_commit"] == spawned["env"]["git_commit"]


def test_a_forked_model_cell_has_the_peak_above_base_of_an_exec_one():
    """Without mapping the server's library pages first, the forked peak was 3.2 MiB higher here: code
    faulted in during the steps, which a new interpreter's imports put in its base."""
    cell = Cell("locost", "tiny", "encode", 1024)
    forked, spawned = (run_cell(cell, Settings.of(warmup=1, repeats=1, budget_bytes=4 * GiB,
                                                  worker_start=start))
                       for start in ("forkserver", "exec"))
    assert forked["status"] == spawned["status"] == "ok"
    above = [fields["mem_peak_above_base_bytes"] / MiB for fields in (forked, spawned)]
    assert abs(above[0] - above[1]) < 1.5, above
    assert abs(forked["mem_base_bytes"] - spawned["mem_base_bytes"]) < 32 * MiB


def test_an_unknown_worker_start_is_refused():
    with pytest.raises(ValueError, match="unknown worker start 'spawn'"):
        run_cell(allocation(1), Settings.of(budget_bytes=GiB, worker_start="spawn"))


@pytest.mark.parametrize("start", ["forkserver", "exec"])
def test_overhead_is_the_wall_time_besides_the_steps(tmp_path, start):
    cell = Cell("synthetic", "sleep", "train", 1, target_len=1, workload="bench.workloads:sleep",
                workload_args=(("seconds", 0.2),))
    [record] = run_sweep([cell], tmp_path, suite="test", progress=False,
                         settings=Settings.of(warmup=2, repeats=3, budget_bytes=GiB, worker_start=start))
    assert record["warmup_s"] == pytest.approx(0.4, abs=0.1) and record["time_total_s"] >= 0.6
    assert record["first_call_s"] >= 0.2 and record["first_call_s"] <= record["warmup_s"]
    assert record["overhead_s"] == round(record["wall_s"] - record["warmup_s"] - record["time_total_s"], 3)
    assert 0 < record["overhead_s"] < record["wall_s"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert ("fork_server_start_s" in run) == (start == "forkserver")


def test_a_dead_fork_server_ends_only_the_cell_it_ran_and_the_next_cell_starts_a_new_one(tmp_path):
    out = run_python(f"""
        import json, os, signal, threading, time
        from pathlib import Path
        from bench import forkserver
        from bench.cells import Cell
        from bench.sweep import run_sweep
        from bench.settings import Settings
        forkserver.PRELOAD[:] = []  # a server that starts at once

        def sleeping(n, seconds):
            return Cell("synthetic", "sleep", "train", n, target_len=1, workload="bench.workloads:sleep",
                        workload_args=(("seconds", seconds),))

        def kill_the_server():
            while not list(Path({str(tmp_path)!r}, "logs").glob("bench-cell-*/result.json")):
                time.sleep(0.05)
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and entry.name != str(os.getpid()):
                    try:
                        cmdline = (entry / "cmdline").read_bytes()
                        ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    except (OSError, ValueError):
                        continue
                    if ppid == os.getpid() and b"multiprocessing.forkserver" in cmdline:
                        os.kill(int(entry.name), signal.SIGKILL)

        threading.Thread(target=kill_the_server).start()
        records = run_sweep([sleeping(1, 60), sleeping(2, 0.1)], {str(tmp_path)!r}, suite="test",
                            progress=False, settings=Settings.of(warmup=0, repeats=1, budget_bytes=2**30,
                                                              timeout_s=50))
        print(json.dumps([r["status"] for r in records]))
    """, tmp_path, timeout=120)
    assert json.loads(out.splitlines()[-1]) == ["error", "ok"]
