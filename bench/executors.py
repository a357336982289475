"""Where a sweep's cells run: here one after another, here N at once (one GPU each), or as submitit jobs.

- ``Local(jobs=1)``: today's behaviour, each cell in its own worker process, one at a time.
- ``Local(jobs=N)``: N cells at once from N threads of the parent, each worker pinned to its own GPU
  through ``CUDA_VISIBLE_DEVICES`` (on CPU only when the caller accepts contention).
- ``Submitit("slurm")``: the pending cells as one Slurm job array (one cell and one GPU per task);
  ``Submitit("submitit-local")``: the same path through submitit's ``LocalExecutor`` on this machine.

Every task runs ``run_task``, which calls ``bench.runner.run_cell``: a cell is measured exactly as it is
locally (own worker process, budget, timeout, trackers). Tasks hand their ``Outcome`` back to the parent,
which alone appends records (``dispatch`` yields them as tasks finish). A submitit task outlives its
parent; ``Submitit.reattach`` finds it again by job id on a rerun. A task that its scheduler ends (time
limit, preemption, node failure) becomes an outcome with status ``timeout`` (or ``oom``, ``error``) and
the scheduler's state in its message. See README "Running on a cluster".
"""

from __future__ import annotations

import functools
import math
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from bench.cells import Cell, Failures
from bench.env import REPO, environment
from bench.runner import now_iso, run_cell
from bench.settings import Settings
from records import process_start, same_process

EXECUTORS = ("local", "slurm", "submitit-local")
#: scheduler states after which a task produces nothing more (submitit reports Slurm's sacct states)
FINAL_STATES = ("COMPLETED", "FINISHED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "INTERRUPTED", "DONE", "NO PROCESS AND NO RESULT")


@dataclass
class Outcome:
    """What a task hands back: the measured fields (with a status), when it started (UTC ISO-8601)
    and how long it ran (s, worker start and model build included)."""
    fields: dict
    started_at: str
    wall_s: float


def run_task(cell: Cell, settings: Settings, log_path: str | None, env: dict | None = None,
             stop: threading.Event | None = None) -> Outcome:
    """The body of every task: ``run_cell`` under ``settings``, resolved already (``Executor.resolve``)."""
    started_at, started = now_iso(), time.monotonic()
    fields = run_cell(cell, settings, Path(log_path) if log_path else None, env=env, stop=stop)
    return Outcome(fields, started_at, time.monotonic() - started)


def run_task_on_node(cell: Cell, settings: Settings, log_path: str | None) -> Outcome:
    """``run_task`` as a Slurm task: the settings resolved on the node it landed on (a budget left to
    ``budget_fraction`` takes that node's MemAvailable)."""
    return run_task(cell, settings.resolved(), log_path)


class GpuPool:
    """GPU indices handed out one per running cell; ``None`` entries mean CPU (nothing pinned)."""

    def __init__(self, gpus: list[int] | None, slots: int):
        self._free: queue.Queue = queue.Queue()
        for index in (gpus if gpus else [None] * slots):
            self._free.put(index)

    def take(self) -> int | None:
        return self._free.get()

    def give(self, index: int | None) -> None:
        self._free.put(index)


def _env(gpu: int | None) -> dict | None:
    return None if gpu is None else {"CUDA_VISIBLE_DEVICES": str(gpu)}


class Task:
    """One cell on its way: ``done()`` without blocking, then ``outcome()``."""
    job_id: str | None = None

    def __init__(self, cell: Cell):
        self.cell, self.submitted = cell, time.monotonic()
        self.submitted_at = now_iso()

    def done(self) -> bool:
        raise NotImplementedError

    def outcome(self) -> Outcome:
        raise NotImplementedError

    def state(self) -> str:
        return "FINISHED" if self.done() else "RUNNING"

    def saved(self) -> dict:
        """What run.json keeps beside the job id to find this task again on a rerun."""
        return {}

    def failed(self, status: str, message: str) -> Outcome:
        """The outcome of a task that ended without handing back a measurement."""
        fields = {"status": status, "message": message,
                  "env": environment(self.cell.device, query_device=False, threads=self.cell.threads)}
        return Outcome(fields, self.submitted_at, time.monotonic() - self.submitted)


class _Finished(Task):
    def __init__(self, cell: Cell, outcome: Outcome):
        super().__init__(cell)
        self._outcome = outcome

    def done(self) -> bool:
        return True

    def outcome(self) -> Outcome:
        return self._outcome


class _Threaded(Task):
    def __init__(self, cell: Cell, future: Future):
        super().__init__(cell)
        self.future = future

    def done(self) -> bool:
        return self.future.done()

    def outcome(self) -> Outcome:
        error = self.future.exception()
        if error is not None:
            return self.failed("error", f"{type(error).__name__}: {error}")
        return self.future.result()


class Local:
    """Cells as worker processes of this process: one at a time (``jobs=1``, in the caller's thread),
    or ``jobs`` at once from threads, each pinned to one of ``gpus`` (CPU: ``gpus`` None)."""
    name = "local"

    def __init__(self, jobs: int = 1, gpus: list[int] | None = None, contention: bool = False):
        if gpus is not None and len(gpus) < jobs:
            raise ValueError(f"--jobs {jobs} needs {jobs} GPUs, {len(gpus)} visible")
        self.jobs, self.gpus, self.contention = jobs, gpus, contention
        self.slots = jobs
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="cell") if jobs > 1 else None
        self._gpus = GpuPool(gpus, jobs)
        self._stop = threading.Event()

    def describe(self) -> dict:
        return {"name": self.name, "jobs": self.jobs, "gpus": self.gpus, "contention": self.contention}

    def resolve(self, settings: Settings) -> Settings:
        """The settings the tasks run under, resolved once, here, as the sweep starts."""
        return settings.resolved()

    def submit(self, cells: list[Cell], settings: Settings, logs: Path) -> list[Task]:
        return [self._start(cell, settings, str(logs / f"{cell.cell_id}.log")) for cell in cells]

    def _start(self, cell: Cell, settings: Settings, log: str) -> Task:
        if self._pool is None:
            gpu = self._gpus.take()
            try:
                return _Finished(cell, run_task(cell, settings, log, _env(gpu)))
            finally:
                self._gpus.give(gpu)
        return _Threaded(cell, self._pool.submit(self._pinned, cell, settings, log))

    def _pinned(self, cell: Cell, settings: Settings, log: str) -> Outcome:
        gpu = self._gpus.take()
        try:
            return run_task(cell, settings, log, _env(gpu), self._stop)
        finally:
            self._gpus.give(gpu)

    def reattach(self, saved: dict, cell: Cell) -> Task | None:
        return None  # a local worker dies with its parent: nothing to find again

    def close(self, unfinished: list[Task]) -> None:
        """Kill the workers still running (the sweep was interrupted) and join the threads."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class SlurmOptions:
    """What each Slurm task asks for; ``None`` leaves it to the cluster's defaults."""
    partition: str | None = None
    time_min: float | None = None  #: the task's time limit, minutes (default: the cell's timeout + 10)
    mem: str | None = None  #: memory per task, sbatch syntax: 64G
    account: str | None = None
    cpus_per_task: int | None = None  #: default: the cells' threads
    gpus_per_task: int | None = None  #: default: 1 on CUDA, 0 on CPU
    extra: tuple[tuple[str, str], ...] = ()  #: further sbatch options, (name, value): ("qos", "high")
    setup: tuple[str, ...] = ()  #: shell lines run before the task, e.g. "module load cuda"


def on_slurm(body: Callable[..., Outcome], *args) -> Outcome:
    """``body(*args)`` (an ``Outcome``) as a Slurm task. Slurm signals every process of the task, the
    worker included: submitit's pre-timeout USR2 is ignored here and in the worker (an ignored signal stays
    ignored across exec), so the task keeps the whole ``--time`` asked for; Slurm's SIGTERM (time limit,
    scancel, requeue, preemption) ends the task at once, without a result, so that the parent records the
    state Slurm gives (TIMEOUT, CANCELLED, ...) and a requeued task hands back only its last run's result.
    A body whose process the task's memory cgroup (``--mem``) killed is an ``oom`` naming OUT_OF_MEMORY."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # submitit's handler would let the task hand back a result
    kills = cgroup_oom_kills()
    outcome = body(*args)
    if kills is not None and (cgroup_oom_kills() or 0) > kills and outcome.fields.get("status") != "ok":
        message = outcome.fields.get("message", "")
        outcome.fields.update(status="oom", message=f"OUT_OF_MEMORY: the Slurm task's memory cgroup (--mem) "
                                                    f"killed a process of the cell: {message}"[:300])
    return outcome


def cgroup_oom_kills() -> int | None:
    """OOM kills so far in this process's memory cgroup (v2 ``memory.events``, v1 ``memory.oom_control``:
    ``oom_kill N``, Linux >= 4.13); None where it cannot be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            files = [Path("/sys/fs/cgroup/memory", path.lstrip("/"), "memory.oom_control")]
        elif controllers == "":
            files = [Path("/sys/fs/cgroup", path.lstrip("/"), "memory.events")]
        else:
            continue
        for file in files:
            try:
                for entry in file.read_text().splitlines():
                    if entry.startswith("oom_kill "):
                        return int(entry.split()[1])
            except (OSError, ValueError):
                continue
    return None


def slurm_duration_s(text: str) -> float | None:
    """Seconds of a Slurm duration ("[D-]HH:MM:SS", "MM:SS", "MM:SS.mmm"), None if it is not one."""
    days, _, clock = text.strip().rpartition("-")
    try:
        parts = [float(part) for part in clock.split(":")]
        return int(days or 0) * 86400 + sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
    except ValueError:
        return None


def sacct_task(job_id: str) -> tuple[str, float | None] | None:
    """(State, seconds it ran) of Slurm task ``job_id`` as ``sacct`` reports them, OUT_OF_MEMORY where any
    of its steps was (the allocation itself then reads FAILED); None without accounting (sacct missing or
    failing) or while sacct does not list the task."""
    try:
        done = subprocess.run(["sacct", "-n", "-P", "-j", job_id, "-o", "JobID,State,Elapsed"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [line.split("|") for line in done.stdout.splitlines() if line.count("|") == 2]
    rows = [row for row in rows if row[0].split(".")[0] == job_id] if done.returncode == 0 else []
    task = next((row for row in rows if row[0] == job_id), None)
    if task is None:
        return None
    oom = any(row[1].startswith("OUT_OF_MEMORY") for row in rows)
    return ("OUT_OF_MEMORY" if oom else task[1].split()[0]), slurm_duration_s(task[2])


def squeue_lists(job_id: str) -> bool | None:
    """Whether ``squeue`` still lists Slurm task ``job_id`` (pending, running or completing); None when
    squeue cannot tell (missing, failing other than for a job id slurmctld has forgotten)."""
    try:
        done = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", job_id], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode:
        return False if "Invalid job id" in done.stderr else None
    return job_id in done.stdout.split()


#: seconds between two squeue checks of a Slurm task; it must be missing from two of them to count as gone
SQUEUE_EVERY_S = 10.0


class _SubmititTask(Task):
    def __init__(self, cell: Cell, job, kind: str, on_done: Callable[[], None] | None = None,
                 controller_start: int | None = None):
        super().__init__(cell)
        self.job, self.kind, self.job_id, self._on_done = job, kind, str(job.job_id), on_done
        self.controller_start = controller_start  #: submitit-local: when the task's controller started
        self._squeued_at, self._missing = time.monotonic(), 0

    def saved(self) -> dict:
        """What run.json keeps to find this task again: its submitit folder and, for a local task, its
        controller's start time (its PID alone may be recycled)."""
        return {"folder": str(self.job.paths.folder), "controller_start": self.controller_start}

    def alive(self) -> bool:
        """submitit-local: whether the task's controller is still the process started for it."""
        process = getattr(self.job, "_process", None)
        if process is not None:
            return process.poll() is None
        return same_process(int(self.job_id), self.controller_start)

    def done(self) -> bool:
        if self.kind == "submitit-local" and getattr(self.job, "_process", None) is None:
            finished = self.job.paths.result_pickle.exists() or not self.alive()
        else:
            finished = self.job.done() or (self.kind == "slurm" and self._gone())
            finished = finished and not (self.kind == "slurm" and self._requeued())
        if finished and self._on_done:
            self._on_done()
            self._on_done = None
        return finished

    def _requeued(self) -> bool:
        """A Slurm task that sacct calls ended (its first run's FAILED or REQUEUED) while squeue lists it
        again, pending or running anew after ``scontrol requeue`` or a preemption, without a result: not
        done (in CI a requeue 2 s after the start was recorded as the task's end: "ended FAILED after
        0 s")."""
        return not self.job.paths.result_pickle.exists() and squeue_lists(self.job_id) is True

    def _gone(self) -> bool:
        """A Slurm task that ``squeue`` no longer lists twice running, without a result: ended, also where
        no accounting tells submitit so (its ``done()`` reads ``sacct`` alone)."""
        if time.monotonic() - self._squeued_at >= SQUEUE_EVERY_S:
            self._squeued_at = time.monotonic()
            listed = squeue_lists(self.job_id)
            self._missing = self._missing + 1 if listed is False else 0
        return self._missing >= 2 and not self.job.paths.result_pickle.exists()

    def state(self) -> str:
        """The scheduler's state (Slurm: sacct's, as submitit last polled it, less often as a task
        ages); a task that handed back its result while the last poll still said otherwise is FINISHED."""
        state, done = str(self.job.state), self.done()
        if state == "NO PROCESS AND NO RESULT" and not done:
            return "RUNNING"
        return "FINISHED" if done and not state.startswith(FINAL_STATES) else state

    def outcome(self) -> Outcome:
        if self._missing >= 2 and not self.job.paths.result_pickle.exists():
            error = "no result, and squeue no longer lists the task"
        else:
            try:
                return self.job.result()
            except Exception as failure:  # submitit's UncompletedJobError / FailedJobError: the task ended
                error = str(failure)
        state, ran_s = self.state(), None
        if self.kind == "slurm":  # submitit's last poll, not a guess from done()
            state = str(self.job.state)
            unknown = state if state.startswith(FINAL_STATES) else f"{state} (sacct gives no state)"
            state, ran_s = sacct_task(self.job_id) or (unknown, None)
        outcome = self.failed(*judge_task(state, error, self.kind, self.job_id, ran_s))
        return outcome if ran_s is None else replace(outcome, wall_s=ran_s)


#: what marks the informative line of submitit's error text
REASONS = ("Error", "requeued", "not produced any output")


def judge_task(state: str, error: str, kind: str, job_id: str, ran_s: float | None = None) -> tuple[str, str]:
    """(status, one-line message) of a task that ended without a result: its scheduler ``state``
    (sacct's, e.g. TIMEOUT, PREEMPTED, NODE_FAIL), submitit's ``error`` text and how long it ran (s,
    sacct's Elapsed; None: unknown)."""
    if state.startswith("TIMEOUT") or "timed-out" in error:
        status = "timeout"
    elif state.startswith("OUT_OF_MEMORY"):
        status = "oom"
    else:
        status = "error"
    lines = [line.strip() for line in error.splitlines() if line.strip() and not line.startswith(" ")]
    reason = next((line for line in reversed(lines) if any(key in line for key in REASONS)),
                  lines[-1] if lines else "no result")
    ran = "" if ran_s is None else f" after {ran_s:.0f} s"
    return status, f"{kind} task {job_id} ended {state}{ran}: {reason}"[:300]



def attempt_folder(folder: Path) -> Path:
    """A submitit folder of its own for this parent process, under ``folder``: submitit-local names its
    files after the controller's PID, so a shared folder could hand one task another's leftover result."""
    return Path(folder) / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}"


class Submitit:
    """Cells as submitit jobs: ``kind`` "slurm" (one job array per submission, one GPU per task) or
    "submitit-local" (submitit's LocalExecutor, ``jobs`` at once, each pinned to one of ``gpus``).
    Each executor writes into a new folder under ``folder`` (``attempt_folder``); a CPU cell on Slurm
    asks for a whole node (``--exclusive``) unless ``contention`` accepts shared nodes."""

    def __init__(self, kind: str, folder: Path, *, slurm: SlurmOptions = SlurmOptions(),
                 jobs: int | None = None, gpus: list[int] | None = None, timeout_s: float = 600.0,
                 contention: bool = False):
        import submitit

        if kind not in ("slurm", "submitit-local"):
            raise ValueError(f"unknown submitit executor {kind!r}")
        self.name, self.options, self.contention = kind, slurm, contention
        self.folder = attempt_folder(folder)
        self.jobs, self.gpus = jobs, gpus
        self.slots = math.inf if kind == "slurm" else (jobs or 1)  # Slurm: one array, throttled by %jobs
        self.time_min = slurm.time_min or math.ceil(timeout_s / 60) + 10
        if kind == "slurm":
            self.time_min = math.ceil(self.time_min)  # sbatch --time takes whole minutes
        self._gpus = GpuPool(gpus, jobs or 1)
        cls = submitit.SlurmExecutor if kind == "slurm" else submitit.LocalExecutor
        self.executor = cls(folder=self.folder)
        self.executor.update_parameters(**self.parameters())

    def parameters(self, device: str = "cuda", threads: int | None = None) -> dict:
        """The executor's parameters (submitit's names). On Slurm the task ignores submitit's USR2
        (``on_slurm``): a cell runs the whole ``--time`` asked for and Slurm ends it there."""
        setup = [f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}",
                 *self.options.setup]
        if self.name == "submitit-local":  # its shell ignores SIGINT, and so the controller it starts does:
            # Ctrl-C of this parent leaves the task running, as on a cluster, and this parent keeps its own
            return {"timeout_min": self.time_min, "signal_delay_s": 5, "setup": ["trap '' INT", *setup]}
        o = self.options
        params = {"time": self.time_min, "signal_delay_s": 30, "setup": setup, "job_name": "locost-bench",
                  "ntasks_per_node": 1, "partition": o.partition, "mem": o.mem,
                  "cpus_per_task": o.cpus_per_task,
                  "gpus_per_node": o.gpus_per_task, "array_parallelism": self.jobs or 256,
                  "account": o.account, "additional_parameters": dict(o.extra)}
        return {k: v for k, v in params.items() if v is not None}

    def describe(self) -> dict:
        return {"name": self.name, "folder": str(self.folder), "jobs": self.jobs, "gpus": self.gpus,
                "contention": self.contention, "parameters": self.executor.parameters}

    def submit(self, cells: list[Cell], settings: Settings, logs: Path) -> list[Task]:
        # each task is a new process already: a fork server there would only add its own start
        settings = settings.replace(worker_start="exec")
        calls = [(cell, settings, str(logs / f"{cell.cell_id}.log")) for cell in cells]
        return self.submit_calls(run_task_on_node if self.name == "slurm" else run_task, calls, cells)

    def resolve(self, settings: Settings) -> Settings:
        """The settings the tasks run under, resolved once: here as the sweep starts (submitit-local), or
        by each Slurm task on its node (``run_task_on_node``)."""
        return settings if self.name == "slurm" else settings.resolved()

    def submit_calls(self, body: Callable[..., Outcome], calls: list[tuple], items: list) -> list[Task]:
        """``body(*call)`` for each of ``calls``, one task each (Slurm: one job array, asking for what
        ``items[0]`` needs, ``request``); ``items[i]`` stands for call i in its ``Task``: a ``Cell``, or
        any object with a cell's ``device`` and ``threads``. ``body`` returns an ``Outcome``."""
        if self.name == "slurm":
            self.request(items[0])
            jobs = self.executor.map_array(functools.partial(on_slurm, body), *zip(*calls, strict=True))
            return [_SubmititTask(item, job, self.name) for item, job in zip(items, jobs, strict=True)]
        return [self._submit_local(item, body, call) for item, call in zip(items, calls, strict=True)]

    def request(self, cell: Cell) -> None:
        """Ask Slurm for what ``cell`` needs: its threads as CPUs, one GPU on CUDA (unless overridden),
        and on CPU the whole node (``--exclusive``) unless ``contention`` is accepted: Slurm places other
        tasks (ours or anyone's) on a CPU node's free cores, which would spoil time and memory figures
        without the harness knowing how many shared it."""
        o = self.options
        cuda = cell.device.startswith("cuda")
        gpus = o.gpus_per_task if o.gpus_per_task is not None else int(cuda)
        extra = dict(o.extra) | ({} if cuda or self.contention else {"exclusive": True})
        self.executor.update_parameters(cpus_per_task=o.cpus_per_task or cell.threads, gpus_per_node=gpus,
                                        additional_parameters=extra)

    def _submit_local(self, item, body: Callable[..., Outcome], call: tuple) -> Task:
        gpu = self._gpus.take()
        self.executor.update_parameters(gpus_per_node=int(gpu is not None),
                                        visible_gpus=() if gpu is None else (gpu,))
        job = self.executor.submit(body, *call)  # SIGINT ignored by the controller's shell (``parameters``)
        return _SubmititTask(item, job, self.name, on_done=lambda: self._gpus.give(gpu),
                             controller_start=process_start(int(job.job_id)))

    def reattach(self, saved: dict, cell: Cell) -> Task | None:
        """The task of ``cell`` a previous parent submitted (``saved``: its run.json entry), when it
        is still queued or running or finished with its result unread; None: submit the cell anew
        (also for a submitit-local task whose controller is gone or is not the process it started as)."""
        import submitit

        if saved.get("executor") != self.name or not saved.get("job_id") or not saved.get("folder"):
            return None
        cls = submitit.SlurmJob if self.name == "slurm" else submitit.LocalJob
        task = _SubmititTask(cell, cls(folder=saved["folder"], job_id=saved["job_id"]), self.name,
                             controller_start=saved.get("controller_start"))
        if self.name == "submitit-local" and not task.job.paths.result_pickle.exists() and not task.alive():
            return None  # its controller died too: nothing will come
        return task

    def close(self, unfinished: list[Task]) -> None:
        """Leave submitted tasks running: a rerun of the same command collects them by job id. The
        count said is of tasks still at work (a submitit-local task whose controller ended is not)."""
        alive = [task for task in unfinished if self.name == "slurm" or task.alive()]
        if alive:
            ids = ", ".join(task.job_id for task in alive[:5]) + (", ..." if len(alive) > 5 else "")
            print(f"{len(alive)} {self.name} tasks keep running ({ids}); rerun the same command to "
                  "collect them", file=sys.stderr)


def dispatch(executor, cells: list[Cell], settings: Settings, logs: Path, failures: Failures, *,
             skip_longer: bool = True, reattached: list[Task] = (),
             on_change: Callable[[list[Task], list[Task]], None] = lambda running, finished: None,
             poll_s: float = 0.2, submit: Callable[[list], list[Task]] | None = None,
             ) -> Iterator[tuple[Cell, Outcome]]:
    """Run ``cells`` (shortest input first) on ``executor``, at most ``executor.slots`` at once, and
    yield each cell's outcome as its task finishes; a cell that a shorter failure of its series
    rules out (``failures``, updated by the caller between yields) is yielded as ``skipped`` without
    running. ``on_change(running, finished)`` is told whenever tasks start or end. ``submit(batch)``
    starts a batch's tasks (default: ``executor.submit(batch, settings, logs)``; another suite's items
    through ``Submitit.submit_calls``)."""
    pending, running = list(cells), list(reattached)
    try:
        while pending or running:
            batch = []
            while pending and len(running) + len(batch) < executor.slots:
                cell = pending.pop(0)
                reason = failures.reason_to_skip(cell) if skip_longer else None
                if reason:
                    yield cell, _Finished(cell, Outcome({}, now_iso(), 0.0)).failed("skipped", reason)
                else:
                    batch.append(cell)
            if batch:
                running += submit(batch) if submit else executor.submit(batch, settings, logs)
                on_change(running, [])
            finished = [task for task in running if task.done()]
            if not finished:
                time.sleep(poll_s)
                continue
            running = [task for task in running if task not in finished]
            on_change(running, finished)
            for task in finished:
                yield task.cell, task.outcome()
    finally:
        executor.close(running)
