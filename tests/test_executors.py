"""Executors with real submitit and real processes (synthetic workloads, no model): submitit's local
executor gives the cells and statuses of the local one while running cells at once, a killed parent's
tasks are collected on a rerun without being submitted again, a task past its time limit is a
``timeout`` record, and the Slurm request is the sbatch script submitit writes (no cluster here)."""

import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from bench.cells import Cell
from bench.executors import Local, SlurmOptions, Submitit, judge_task
from bench.results import read_records
from bench.settings import Settings
from bench.sweep import run_sweep
from cli.sweep import main

GiB = 2**30
REPO = Path(__file__).resolve().parents[1]
SETTINGS = Settings.of(warmup=0, repeats=1, budget_bytes=GiB)


def sleeping(n: int, seconds: float) -> Cell:
    return Cell("synthetic", "sleep", "train", n, target_len=1, workload="bench.workloads:sleep",
                workload_args=(("seconds", seconds),))


def _interval(record: dict) -> tuple[float, float]:
    start = datetime.fromisoformat(record["started_at"]).timestamp()  # whole seconds, truncated
    return start, start + record["wall_s"]


def test_submitit_local_gives_the_local_cells_and_statuses_with_cells_at_once(tmp_path):
    # the sleeping cells first (the runner orders cells by length): with two slots they are submitted
    # together, so they overlap even when a loaded box starts a task seconds late
    failing = Cell("synthetic", "fail", "train", 3, target_len=1, workload="bench.workloads:fail",
                   workload_args=(("message", "boom"),))
    cells = [sleeping(1, 3.0), sleeping(2, 3.0), failing]
    local = run_sweep(cells, tmp_path / "local", suite="test", settings=SETTINGS, progress=False)
    remote = run_sweep(cells, tmp_path / "submitit", suite="test", settings=SETTINGS, progress=False,
                       executor=Submitit("submitit-local", tmp_path / "submitit" / "jobs", jobs=2,
                                         contention=True))
    assert sorted((r["cell_id"], r["status"], r["message"]) for r in remote) == \
        sorted((r["cell_id"], r["status"], r["message"]) for r in local)
    assert [r["status"] for r in local] == ["ok", "ok", "error"]
    assert {r["contention"] for r in local} == {None} and {r["contention"] for r in remote} == {2}
    (s1, e1), (s2, e2) = sorted(_interval(r) for r in remote if r["status"] == "ok")
    assert s2 < e1 - 1, "the two sleeping cells did not overlap in time"  # -1: started_at is truncated
    assert all(later[0] >= earlier[1] - 1 for earlier, later in
               zip(sorted(map(_interval, local)), sorted(map(_interval, local))[1:], strict=False))
    run = json.loads((tmp_path / "submitit" / "run.json").read_text())
    assert {t["state"] for t in run["tasks"].values()} == {"FINISHED"} and len(run["tasks"]) == 3
    assert run["executor"]["name"] == "submitit-local"


SWEEP_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from bench.cells import Cell
    from bench.executors import Submitit
    from bench.sweep import run_sweep
    from bench.settings import Settings
    def cells():
        return [Cell("synthetic", "sleep", "train", n, target_len=1, workload="bench.workloads:sleep",
                     workload_args=(("seconds", 4.0),)) for n in (1, 2, 3)]
    def sweep(run_dir):
        return run_sweep(cells(), run_dir, suite="test", progress=False,
                         settings=Settings.of(warmup=0, repeats=1, budget_bytes=2**30),
                         executor=Submitit("submitit-local", Path(run_dir) / "jobs", jobs=2, contention=True))
    if __name__ == "__main__":
        sweep(sys.argv[1])
""")


def _running_tasks(run_dir: Path) -> dict:
    try:
        tasks = json.loads((run_dir / "run.json").read_text()).get("tasks", {})
    except (OSError, ValueError):
        return {}
    return {cell: task for cell, task in tasks.items() if task["state"] == "RUNNING"}


def test_a_killed_parent_loses_and_duplicates_nothing_and_its_tasks_are_not_resubmitted(tmp_path):
    (tmp_path / "submitit_sweep.py").write_text(SWEEP_SCRIPT)  # a name no other test imports
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, str(tmp_path / "submitit_sweep.py"), str(run_dir)], cwd=REPO,
                              env=env)
    deadline = time.monotonic() + 120
    while len(_running_tasks(run_dir)) < 2:
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    running = _running_tasks(run_dir)
    assert not read_records(run_dir)  # killed before any task finished

    sys.path.insert(0, str(tmp_path))
    try:
        import submitit_sweep
    finally:
        sys.path.remove(str(tmp_path))
    records = submitit_sweep.sweep(run_dir)
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 and sorted(json.loads(line)["input_len"] for line in lines) == [1, 2, 3]
    assert [r["status"] for r in records] == ["ok"] * 3
    tasks = json.loads((run_dir / "run.json").read_text())["tasks"]
    assert all(tasks[cell]["job_id"] == task["job_id"] for cell, task in running.items())  # reattached
    assert len(list((run_dir / "jobs").rglob("*_submitted.pkl"))) == 3  # nothing submitted twice
    assert len(list((run_dir / "jobs").iterdir())) == 2  # each parent its own submitit folder


def test_a_task_past_its_time_limit_is_a_timeout_record(tmp_path):
    started = time.monotonic()
    executor = Submitit("submitit-local", tmp_path / "jobs", slurm=SlurmOptions(time_min=0.25))  # 15 s
    [record] = run_sweep([sleeping(1, 120.0)], tmp_path, suite="test", settings=SETTINGS, progress=False,
                         executor=executor)
    assert record["status"] == "timeout", record["message"]
    assert record["message"].startswith("submitit-local task ") and "timed-out" in record["message"]
    assert time.monotonic() - started < 60
    assert not any("bench.worker" in _cmdline(pid) and str(tmp_path) in _cmdline(pid) for pid in _pids())


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_the_slurm_path_runs_one_array_and_a_failed_node_is_an_error_record(tmp_path):
    """The whole Slurm path against submitit's own mocked cluster (its sbatch and sacct stand-ins):
    one array is submitted, two tasks run here as Slurm would run them, the third one's node fails."""
    from submitit.core import submission, utils
    from submitit.slurm.test_slurm import mocked_slurm

    run_dir, records = tmp_path / "run", []
    platform.processor()  # cached now: the mock answers only Slurm's commands, not uname's
    with mocked_slurm() as cluster:
        executor = Submitit("slurm", run_dir / "jobs", timeout_s=60)
        sweep = threading.Thread(target=lambda: records.extend(run_sweep(
            [sleeping(n, 0.1) for n in (1, 2, 3)], run_dir, suite="test", settings=SETTINGS, progress=False,
            executor=executor)))
        sweep.start()
        deadline = time.monotonic() + 60
        while len(_running_tasks(run_dir)) < 3:
            assert time.monotonic() < deadline and sweep.is_alive()
            time.sleep(0.05)
        assert cluster.job_count == 13  # one sbatch: job 12, an array of three tasks
        assert sorted(task["job_id"] for task in _running_tasks(run_dir).values()) == ["12_0", "12_1", "12_2"]
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGCONT)}
        try:  # the tasks run in this process: their signal handling must not outlive them
            for task in ("0", "1"):
                with utils.environment_variables(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID=f"2{task}",
                                                 SLURM_ARRAY_JOB_ID="12", SLURM_ARRAY_TASK_ID=task):
                    submission.process_job(executor.folder)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        cluster.job_sacct["12"] = "JobID|State\n12_0|COMPLETED\n12_1|COMPLETED\n12_2|NODE_FAIL"
        sweep.join(120)
    assert not sweep.is_alive()
    assert [(r["input_len"], r["status"]) for r in records] == [(1, "ok"), (2, "ok"), (3, "error")]
    assert records[2]["message"].startswith("slurm task 12_2 ended NODE_FAIL: ")
    tasks = json.loads((run_dir / "run.json").read_text())["tasks"]
    states = {task["job_id"]: task["state"] for task in tasks.values()}
    assert states["12_2"] == "NODE_FAIL" and {states["12_0"], states["12_1"]} <= {"COMPLETED", "FINISHED"}


@pytest.mark.parametrize("state, error, status", [
    ("TIMEOUT", "Job not requeued because: timed-out and not checkpointable.", "timeout"),
    ("NODE_FAIL", "Job 12_3 (task: 0) with path x\nhas not produced any output (state: NODE_FAIL)", "error"),
    ("OUT_OF_MEMORY", "has not produced any output (state: OUT_OF_MEMORY)", "oom"),
    ("PREEMPTED", "has not produced any output (state: PREEMPTED)", "error"),
])
def test_a_task_its_scheduler_ended_keeps_the_state_in_its_message(state, error, status):
    judged = judge_task(state, error, "slurm", "12_3")
    assert judged[0] == status and judged[1].startswith(f"slurm task 12_3 ended {state}: ")


def test_the_slurm_request_is_the_sbatch_script_submitit_writes(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string
    from submitit.slurm.test_slurm import mocked_slurm

    options = SlurmOptions(partition="gpu", mem="64G", account="proj", extra=(("qos", "high"),),
                           setup=("module load cuda/12.4",))
    with mocked_slurm():  # submitit's own stand-in for a cluster: here only its "srun is installed"
        executor = Submitit("slurm", tmp_path / "jobs", slurm=options, jobs=8, timeout_s=1800)
    executor.request(Cell("locost", "base", "train", 4096, target_len=128, device="cuda", threads=6))
    script = _make_sbatch_string(command="python -u -m submitit.core._submit jobs", folder=tmp_path,
                                 map_count=40, **executor.executor.parameters)
    lines = set(script.splitlines())
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=40", "#SBATCH --mem=64G",
                 "#SBATCH --account=proj", "#SBATCH --qos=high", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=6",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --array=0-39%8", "#SBATCH --signal=USR2@30",
                 "module load cuda/12.4"):
        assert line in lines, (line, script)
    assert any(line.startswith("export PYTHONPATH=") and str(REPO) in line for line in lines)
    assert "#SBATCH --exclusive" not in lines  # a GPU task shares its node's other GPUs
    cpu = Cell("locost", "tiny", "encode", 1024, device="cpu", threads=4)
    executor.request(cpu)
    assert executor.executor.parameters["gpus_per_node"] == 0
    script = _make_sbatch_string(command="x", folder=tmp_path, map_count=2, **executor.executor.parameters)
    assert {"#SBATCH --exclusive", "#SBATCH --qos=high"} <= set(script.splitlines())  # CPU: whole node
    with mocked_slurm():
        shared = Submitit("slurm", tmp_path / "jobs", slurm=options, jobs=2, contention=True)
    shared.request(cpu)
    assert "exclusive" not in shared.executor.parameters["additional_parameters"]


def pinned_gpu(cell, seconds: float = 2.0):
    """A workload (run in the worker): sleeps, then fails with the GPU its worker was pinned to."""
    time.sleep(seconds)
    raise RuntimeError(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}")


def test_local_jobs_run_cells_at_once_each_pinned_to_its_own_gpu(tmp_path):
    cells = [Cell("synthetic", "pinned", "train", n, target_len=1, workload="tests.test_executors:pinned_gpu")
             for n in (1, 2)]
    records = run_sweep(cells, tmp_path, suite="test", settings=SETTINGS, progress=False,
                        executor=Local(2, gpus=[4, 7]))
    assert sorted(r["message"] for r in records) == ["RuntimeError: CUDA_VISIBLE_DEVICES=4",
                                                     "RuntimeError: CUDA_VISIBLE_DEVICES=7"]
    (s1, e1), (s2, e2) = sorted(map(_interval, records))
    assert s2 < e1 - 1 and {r["contention"] for r in records} == {None}
    with pytest.raises(ValueError, match="--jobs 3 needs 3 GPUs, 2 visible"):
        Local(3, gpus=[4, 7])


JOBS_ON_CPU = ("error: --jobs 2 on CPU runs 2 cells at once on the same cores and memory, spoiling each "
               "other's time and memory figures; add --allow-contention to run them anyway, marked as "
               "measured under contention\n")


@pytest.mark.parametrize("argv, line", [
    (["--jobs", "2"], JOBS_ON_CPU),
    (["--jobs", "2", "--executor", "submitit-local"], JOBS_ON_CPU),
    (["--slurm-partition", "gpu"], "error: --slurm-partition applies to --executor slurm only\n"),
    (["--executor", "slurm"], "error: --executor slurm needs sbatch: run it on a Slurm login node\n"),
    (["--executor", "pbs"], None),
    (["--slurm-option", "qos"], None),
])
def test_executor_options_that_cannot_be_met_are_one_error_line(argv, line, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without sbatch, on a Slurm login node too
    assert main("memory", [*argv, "--device", "cpu", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    if line is not None:
        assert err == line


def test_slurm_with_sbatch_on_path_is_accepted_and_shared_cpu_nodes_need_jobs(capsys, monkeypatch, tmp_path):
    sbatch = tmp_path / "sbatch"
    sbatch.write_text("#!/bin/sh\nexit 1\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))  # sbatch here whether or not the machine has one
    argv = ["--executor", "slurm", "--device", "cpu", "--sizes", "tiny", "--out", str(tmp_path), "--dry-run"]
    assert main("memory", argv) == 0
    assert main("memory", [*argv, "--allow-contention"]) == 2
    assert capsys.readouterr().err.endswith(
        "error: --executor slurm --allow-contention on CPU needs --jobs N: at most N tasks share a node, "
        "and each record is marked as measured beside N-1 others\n")
    assert main("memory", [*argv, "--allow-contention", "--jobs", "2"]) == 0


def test_jobs_on_cpu_with_allow_contention_is_accepted(capsys, tmp_path):
    argv = ["--jobs", "2", "--allow-contention", "--device", "cpu", "--sizes", "tiny", "--out", str(tmp_path),
            "--dry-run"]
    assert main("memory", argv) == 0


def test_the_rouge_suite_through_submitit_local_gives_the_local_rows_one_task_per_system(tmp_path, capsys):
    from test_rouge_pipeline import rouge_inputs

    from cli.rouge import main as rouge

    data, checkpoints = rouge_inputs(tmp_path)
    argv = ["--data", str(data), "--eval-split", "test", "--device", "cpu", "--out", str(tmp_path),
            "--cache-dir", str(tmp_path / "cache"), "--max-new-tokens", "6", "--eval-lens", "32,full",
            "--no-extractive", "--no-progress", "--no-report", "--models", "locost", "--steps", "1",
            "--train-len", "64", "--target-len", "16", "--warmup-steps", "0"]  # one system trained
    for checkpoint in checkpoints:
        argv += ["--checkpoint", str(checkpoint)]
    assert rouge([*argv, "--run-id", "here"]) == 0
    assert rouge([*argv, "--run-id", "tasks", "--executor", "submitit-local"]) == 0
    rows = {run_id: (tmp_path / run_id / "rouge.jsonl").read_text() for run_id in ("here", "tasks")}
    assert rows["tasks"] == rows["here"] and len(rows["here"].splitlines()) == 6  # greedy: same scores
    systems = ["locost-ckpt", "locost-tiny", "longt5-tglobal-ckpt"]
    run = json.loads((tmp_path / "tasks" / "run.json").read_text())
    assert sorted(run["tasks"]) == systems
    assert {task["executor"] for task in run["tasks"].values()} == {"submitit-local"}
    assert (tmp_path / "tasks" / "checkpoints" / "locost-tiny" / "harness.json").is_file()  # trained there
    state = json.loads((tmp_path / "tasks" / "state.json").read_text())  # the tasks' parts, merged
    assert sorted(state["systems"]) == systems and len(state["predictions"]) == len(state["nll"]) == 6
    capsys.readouterr()
    assert rouge(["--slurm-mem", "3G"]) == 2  # the sweeps' checks of the executor options
    assert capsys.readouterr().err == "error: --slurm-mem applies to --executor slurm only\n"
    assert rouge(["--jobs", "2", "--allow-contention"]) == 2
    assert capsys.readouterr().err == ("error: --jobs applies to --executor slurm or submitit-local: locally "
                                       "the ROUGE suite runs its systems one after another in this process\n")


def test_a_recycled_pid_is_not_taken_for_a_tasks_controller_and_each_executor_has_its_own_folder(tmp_path):
    from records import process_start

    stranger = subprocess.Popen(["sleep", "60"])  # alive, with the PID a saved task names
    try:
        executor = Submitit("submitit-local", tmp_path / "jobs")
        saved = {"executor": "submitit-local", "job_id": str(stranger.pid), "folder": str(tmp_path / "old")}
        start = process_start(stranger.pid)
        assert executor.reattach({**saved, "controller_start": start + 1}, sleeping(1, 1.0)) is None
        assert executor.reattach(saved, sleeping(1, 1.0)) is None  # no start time noted: cannot tell
        task = executor.reattach({**saved, "controller_start": start}, sleeping(1, 1.0))
        assert task is not None and not task.done()  # the very process: still at work
    finally:
        stranger.kill()
        stranger.wait()
    assert task.done()  # and once it is gone, done without a result
    other = Submitit("submitit-local", tmp_path / "jobs")
    assert other.folder != executor.folder and other.folder.parent == executor.folder.parent


INTERRUPTED_SCRIPT = SWEEP_SCRIPT.replace('''if __name__ == "__main__":
    sweep(sys.argv[1])''', '''if __name__ == "__main__":
    try:
        sweep(sys.argv[1])
    except KeyboardInterrupt:
        sys.exit(130)''')


def test_ctrl_c_of_a_submitit_local_sweep_leaves_its_tasks_running_and_says_so_truthfully(tmp_path):
    assert INTERRUPTED_SCRIPT != SWEEP_SCRIPT
    (tmp_path / "interrupted_sweep.py").write_text(INTERRUPTED_SCRIPT)
    run_dir = tmp_path / "run"
    parent = subprocess.Popen([sys.executable, str(tmp_path / "interrupted_sweep.py"), str(run_dir)],
                              cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.PIPE, text=True,
                              start_new_session=True,  # its own process group, as a terminal's job
                              # Ctrl-C handled, as in a terminal's foreground job, even where these tests run
                              # in a background job of a non-interactive shell, which ignores SIGINT
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while len(_running_tasks(run_dir)) < 2:
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    os.killpg(parent.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 130 and "Traceback" not in err, err
    assert "2 submitit-local tasks keep running" in err, err
    time.sleep(3)
    from records import same_process

    tasks = json.loads((run_dir / "run.json").read_text())["tasks"]
    alive = [t for t in tasks.values() if same_process(int(t["job_id"]), t["controller_start"])]
    done = [t for t in tasks.values() if list(Path(t["folder"]).glob(f"{t['job_id']}_*result.pkl"))]
    assert len(alive) + len(done) == 2  # what was said: both still at work or finished
    sys.path.insert(0, str(tmp_path))
    try:
        import interrupted_sweep
    finally:
        sys.path.remove(str(tmp_path))
    records = interrupted_sweep.sweep(run_dir)  # the rerun collects them, losing and duplicating nothing
    assert [r["status"] for r in records] == ["ok"] * 3
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 3
