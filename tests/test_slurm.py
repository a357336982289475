"""The executors against a real single-node Slurm cluster (``tests/slurm_cluster.py``; skipped with the
reason where it cannot run: not root, packages missing). A sweep through ``--executor slurm`` gives the
local executor's cells and statuses as one job array on whole nodes; ``--jobs`` throttles the array as
``squeue`` sees it; Slurm's end states (TIMEOUT, CANCELLED, OUT_OF_MEMORY) become records naming them,
with the time the task ran; a requeued task is measured once; a killed runner's tasks are reattached
on a rerun; a task that dies where ``sacct`` does not work is found ended through ``squeue``."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from slurm_cluster import Cluster, unavailable
from test_rouge_pipeline import rouge_inputs

from bench.cells import Cell
from bench.executors import SlurmOptions, Submitit
from bench.results import read_records
from bench.settings import Settings
from bench.sweep import run_sweep

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30
SETTINGS = Settings.of(warmup=0, repeats=1, budget_bytes=8 * GiB)  # above --mem: Slurm's limit acts first


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("slurm")).start()
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)  # for submitit's and the harness's sbatch/sacct/squeue
    try:
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


def synthetic(model: str, n: int, workload: str, **args) -> Cell:
    return Cell("synthetic", model, "train", n, target_len=1, workload=f"bench.workloads:{workload}",
                workload_args=tuple(args.items()))


def _tasks(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("tasks", {})
    except (OSError, ValueError):
        return {}


def _squeue(cluster: Cluster, state: str = "R") -> set[str]:
    return set(cluster.run("squeue", "-h", "-r", "-t", state, "-o", "%i", check=False).split())


def _in_background(target) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(target()), daemon=True)
    thread.start()
    return thread, out


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.2)


def test_a_sweep_through_slurm_gives_the_local_cells_and_statuses_as_one_array(cluster, tmp_path):
    argv = [sys.executable, "-m", "bench.memory", "--models", "locost", "--sizes", "tiny", "--modes",
            "encode", "--lengths", "512,1k", "--device", "cpu", "--out", str(tmp_path), "--no-report"]
    env = dict(cluster.env, PYTHONPATH=str(REPO))
    for run_id, extra in (("local", []), ("slurm", ["--executor", "slurm", "--slurm-partition", "debug",
                                                    "--slurm-mem", "3G"])):
        done = subprocess.run([*argv, "--run-id", run_id, *extra], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    local, slurm = (read_records(tmp_path / run_id) for run_id in ("local", "slurm"))
    cells = [sorted((r["cell_id"], r["status"]) for r in records) for records in (local, slurm)]
    assert cells[0] == cells[1]
    assert {r["status"] for r in slurm} == {"ok"} and len(slurm) == 2
    job_ids = sorted(task["job_id"] for task in _tasks(tmp_path / "slurm").values())
    array = job_ids[0].split("_")[0]
    assert job_ids == [f"{array}_0", f"{array}_1"]  # one sbatch: one array
    rows = cluster.run("sacct", "-n", "-X", "-P", "-j", array, "-o", "JobID,State,AllocCPUS").split()
    assert sorted(rows) == [f"{job}|COMPLETED|{cluster.cpus}" for job in job_ids]  # CPU cells: whole node


def test_jobs_throttles_the_array_as_squeue_sees_it(cluster, tmp_path):
    cells = [synthetic("sleep", n, "sleep", seconds=4.0) for n in (1, 2, 3, 4)]
    executor = Submitit("slurm", tmp_path / "jobs", jobs=2, contention=True,
                        slurm=SlurmOptions(mem="2G", cpus_per_task=1, time_min=5))
    sweep, records = _in_background(lambda: run_sweep(cells, tmp_path, suite="test", settings=SETTINGS,
                                                      progress=False, executor=executor))
    most = 0
    while sweep.is_alive():
        most = max(most, len(_squeue(cluster)))
        time.sleep(0.2)
    assert most == 2  # 8 CPUs and memory for all four, but %2 on the array
    assert [r["status"] for r in records] == ["ok"] * 4 and {r["contention"] for r in records} == {2}


def test_slurm_end_states_become_records_naming_them_and_a_requeued_task_is_measured_once(cluster, tmp_path):
    cells = {"late": synthetic("late", 1, "sleep", seconds=300.0),
             "cancelled": synthetic("cancelled", 2, "sleep", seconds=300.0),
             "requeued": synthetic("requeued", 3, "sleep", seconds=15.0),
             "greedy": synthetic("greedy", 4, "allocate", mib=3000, chunk_mib=100, pause_s=0.02)}
    executor = Submitit("slurm", tmp_path / "jobs", contention=True, jobs=4,
                        slurm=SlurmOptions(mem="1G", cpus_per_task=1, time_min=1))
    sweep, records = _in_background(lambda: run_sweep(list(cells.values()), tmp_path, suite="test",
                                                      settings=SETTINGS, progress=False, executor=executor))
    _wait(lambda: len(_tasks(tmp_path)) == 4, 60, "four tasks")
    job = {name: _tasks(tmp_path)[cell.cell_id]["job_id"] for name, cell in cells.items()}
    _wait(lambda: {job["cancelled"], job["requeued"]} <= _squeue(cluster), 60, "tasks running")
    cluster.run("scancel", job["cancelled"])
    time.sleep(3)
    cluster.run("scontrol", "requeue", job["requeued"])
    _wait(lambda: job["requeued"] in _squeue(cluster, "PD"), 30, "the requeued task pending")
    # not in 2 minutes, nor in the second of the kill: slurmd refuses a launch whose credential is not newer
    # than the one it revoked ("Killing non-startable batch job: Job credential revoked", then FAILED)
    cluster.run("scontrol", "update", f"JobId={job['requeued']}", "StartTime=now+3")
    sweep.join(300)
    assert not sweep.is_alive()
    record = {name: next(r for r in records if r["cell_id"] == cell.cell_id) for name, cell in cells.items()}
    assert record["late"]["status"] == "timeout", record
    assert record["late"]["message"].startswith(f"slurm task {job['late']} ended TIMEOUT after ")
    assert record["late"]["wall_s"] >= 60  # the whole minute asked for: no early USR2 exit
    assert record["cancelled"]["status"] == "error"
    assert record["cancelled"]["message"].startswith(f"slurm task {job['cancelled']} ended CANCELLED after ")
    assert record["greedy"]["status"] == "oom"
    assert "OUT_OF_MEMORY" in record["greedy"]["message"]  # the task's cgroup, not the harness's budget
    assert record["requeued"]["status"] == "ok", record["requeued"]["message"]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 4  # the requeued cell once
    history = cluster.run("sacct", "-n", "-X", "-D", "-P", "-j", job["requeued"], "-o", "State").split()
    assert history == ["REQUEUED", "COMPLETED"]


SWEEP_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from bench.cells import Cell
    from bench.executors import SlurmOptions, Submitit
    from bench.sweep import run_sweep
    from bench.settings import Settings
    def sweep(run_dir):
        cells = [Cell("synthetic", "sleep", "train", n, target_len=1, workload="bench.workloads:sleep",
                      workload_args=(("seconds", 8.0),)) for n in (1, 2, 3)]
        executor = Submitit("slurm", Path(run_dir) / "jobs", contention=True, jobs=3,
                            slurm=SlurmOptions(mem="2G", cpus_per_task=1, time_min=5))
        return run_sweep(cells, run_dir, suite="test", progress=False, executor=executor,
                         settings=Settings.of(warmup=0, repeats=1, budget_bytes=2**31))
    if __name__ == "__main__":
        sweep(sys.argv[1])
""")


def test_a_killed_runner_is_reattached_to_its_slurm_tasks_losing_and_duplicating_nothing(cluster, tmp_path):
    (tmp_path / "slurm_sweep.py").write_text(SWEEP_SCRIPT)  # a name no other test imports
    run_dir = tmp_path / "run"
    runner = subprocess.Popen([sys.executable, str(tmp_path / "slurm_sweep.py"), str(run_dir)], cwd=REPO,
                              env=dict(cluster.env, PYTHONPATH=str(REPO)))
    _wait(lambda: len(_tasks(run_dir)) == 3 or runner.poll() is not None, 120, "three tasks")
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    submitted = {cell: task["job_id"] for cell, task in _tasks(run_dir).items()}
    assert len(submitted) == 3 and not read_records(run_dir)

    sys.path.insert(0, str(tmp_path))
    try:
        import slurm_sweep
    finally:
        sys.path.remove(str(tmp_path))
    records = slurm_sweep.sweep(run_dir)
    assert [r["status"] for r in records] == ["ok"] * 3
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 3
    assert {cell: task["job_id"] for cell, task in _tasks(run_dir).items()} == submitted  # reattached
    folders = {path.parent for path in (run_dir / "jobs").rglob("*_submitted.pkl")}
    assert len(folders) == 1  # the rerun submitted nothing


def test_a_task_that_ends_without_a_result_where_sacct_fails_is_found_through_squeue(cluster, tmp_path,
                                                                                    monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text("#!/bin/sh\necho 'sacct: error: accounting is disabled' >&2\nexit 1\n")
    (bin_dir / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # a cluster without accounting
    cell = synthetic("lost", 1, "sleep", seconds=300.0)
    executor = Submitit("slurm", tmp_path / "jobs", contention=True, jobs=1,
                        slurm=SlurmOptions(mem="2G", cpus_per_task=1, time_min=10))
    sweep, records = _in_background(lambda: run_sweep([cell], tmp_path, suite="test", settings=SETTINGS,
                                                      progress=False, executor=executor))
    _wait(lambda: len(_tasks(tmp_path)) == 1, 60, "the task")
    job_id = _tasks(tmp_path)[cell.cell_id]["job_id"]
    _wait(lambda: job_id in _squeue(cluster), 60, "the task running")
    cluster.run("scancel", "--signal=KILL", "--full", job_id)
    killed = time.monotonic()
    sweep.join(120)
    assert not sweep.is_alive() and time.monotonic() - killed < 60
    [record] = records
    assert record["status"] == "error"
    assert record["message"].startswith(f"slurm task {job_id} ended ")
    assert "sacct gives no state" in record["message"] and "squeue no longer lists" in record["message"]


def _broken_checkpoint(good: Path, directory: Path) -> Path:
    """A copy of checkpoint ``good`` whose weights file is cut to its first 100 bytes."""
    directory.mkdir()
    for path in good.iterdir():
        content = path.read_bytes()
        (directory / path.name).write_bytes(content[:100] if path.suffix == ".safetensors" else content)
    return directory


def test_a_rouge_evaluation_through_slurm_gives_the_local_rows_one_task_per_system(cluster, tmp_path):
    data, checkpoints = rouge_inputs(tmp_path)
    broken = _broken_checkpoint(checkpoints[0], tmp_path / "broken")
    argv = [sys.executable, "-m", "bench.rouge", "--data", str(data), "--eval-split", "test",
            "--device", "cpu", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
            "--max-new-tokens", "6", "--eval-lens", "32,full", "--no-extractive", "--no-progress",
            "--no-report"]
    for checkpoint in checkpoints:
        argv += ["--checkpoint", str(checkpoint)]
    env = dict(cluster.env, PYTHONPATH=str(REPO))
    slurm = ["--executor", "slurm", "--slurm-partition", "debug", "--slurm-mem", "3G",
             "--checkpoint", str(broken)]
    runs = {run_id: subprocess.run([*argv, "--run-id", run_id, *extra], cwd=REPO, env=env,
                                   capture_output=True, text=True, timeout=600)
            for run_id, extra in (("local", []), ("slurm", slurm))}
    assert runs["local"].returncode == 0, runs["local"].stderr[-2000:]
    assert runs["slurm"].returncode == 1, runs["slurm"].stderr[-2000:]
    # the system whose task failed: one line, and run.json says so; the others are scored
    assert runs["slurm"].stderr.startswith("error: broken: SafetensorError: ")
    assert runs["slurm"].stderr.count("\n") == 1
    rows = {run_id: (tmp_path / run_id / "rouge.jsonl").read_text() for run_id in runs}
    assert rows["slurm"] == rows["local"]  # greedy decoding: the same summaries, the same scores
    assert len(rows["local"].splitlines()) == 4  # two systems at two lengths
    run = json.loads((tmp_path / "slurm" / "run.json").read_text())
    [failed] = [s for s in run["systems"] if s.get("failed")]
    assert failed["system"] == "broken" and failed["status"] == "error"
    job_ids = sorted(task["job_id"] for task in run["tasks"].values())
    array = job_ids[0].split("_")[0]
    assert job_ids == [f"{array}_{i}" for i in range(3)]  # one sbatch: one array, one task per system
    states = cluster.run("sacct", "-n", "-X", "-P", "-j", array, "-o", "JobID,State").split()
    assert sorted(states) == [f"{job}|COMPLETED" for job in job_ids]  # the broken one ended in its own error


def test_a_partition_slurm_does_not_know_is_one_error_line_before_anything_runs(cluster, tmp_path):
    env = dict(cluster.env, PYTHONPATH=str(REPO))
    common = ["--device", "cpu", "--out", str(tmp_path / "out"), "--no-report", "--executor", "slurm",
              "--slurm-partition", "nope"]
    for program in (["bench.memory", "--models", "locost", "--sizes", "tiny", "--lengths", "512"],
                    ["bench.rouge", "--models", "locost", "--steps", "1"]):
        done = subprocess.run([sys.executable, "-m", *program, *common], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.startswith("error: --slurm-partition nope: sbatch refuses it: ")
        assert "invalid partition" in done.stderr.lower() and done.stderr.count("\n") == 1
        assert not (tmp_path / "out").exists()
    assert cluster.run("squeue", "-h", "-o", "%i") == ""
