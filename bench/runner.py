"""Run cells in isolated processes and sweeps of cells into a run directory.

``run_cell`` starts a worker in a new session (its own process group): on CPU by default forked from
a server that has torch, transformers and the models imported already (``bench.forkserver``), else
(``worker_start="exec"``, CUDA's default and what submitit tasks use) as ``python -m bench.worker``.
It watches it: every ``poll_s`` it reads the child's resident memory from ``/proc/<pid>/status`` and kills the
whole group when the host-memory budget or the time limit is passed (status ``oom`` / ``timeout``).
A child that dies by SIGKILL without a result is ``oom`` only with evidence of memory pressure (the
kernel's OOM-kill counter rose while it ran, or the RSS seen reached ``PRESSURE_FRACTION`` of the budget);
otherwise it was killed from outside: an ``error`` marked ``harness_failure``, like every other end
that is not the cell's own (the worker never started, lost its fork server, exited without a result,
a signal other than a crash), which a plain rerun measures again. On CPU
the child also gets an address-space limit (``RLIMIT_AS``) well above the budget, so that one
sudden huge allocation fails inside the child as a ``MemoryError`` instead of taking the host down;
the resident-memory watchdog is what enforces the budget.

``run_sweep`` runs cells in order of input length on an executor (``bench.executors``: one at a time
here by default, N at once, or submitit/Slurm tasks that call ``run_cell``), appends one record per cell to
``results.jsonl``, regenerates ``results.csv`` after each and at the end, skips cells already recorded (unless
``force``), keeps FLOP counts in ``flops.jsonl`` for every later cell and resume to reuse
(``bench.flops.FlopCache``), and records longer inputs of a model and mode that already failed as
``skipped`` (and generate from the length where encode failed: generation runs the encoder first).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from bench.cells import Cell
from bench.env import REPO, environment, oom_kill_count
from bench.protocol import WorkerResult, WorkerSpec
from bench.results import (
    append_record,
    check_resumable,
    read_records,
    write_csv,
)
from bench.settings import WORKER_STARTS, Settings, Supervision
from bench.trackers import status_bytes
from records import (
    FAILURES_THAT_SKIP_LONGER,
    FLOPS,
    LOGS,
    RESULTS,
    RESULTS_CSV,
    RUN_JSON,
    Record,
    RunInfo,
    locked_run_dir,
    read_run_info,
    remove_stale_temporaries,
    settled,
    write_run_info,
)

GiB = 2**30


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def address_space_limit(budget: int | None, device: str) -> int | None:
    """RLIMIT_AS for a CPU child: far enough above the budget that the virtual areas torch and the
    allocator reserve (about 1 GiB here) never trip it; none on CUDA, which maps huge areas."""
    if budget is None or not device.startswith("cpu"):
        return None
    return int(budget * 1.25) + 4 * GiB


def exceeds(used: int, budget: int) -> str:
    """"RSS 0.3906 GiB > 0.3906 GiB budget" with enough digits that the excess shows (at least 2 decimals,
    more while the two values would print the same)."""
    digits = 2
    while f"{used / GiB:.{digits}f}" == f"{budget / GiB:.{digits}f}" and digits < 9:
        digits += 1
    return f"RSS {used / GiB:.{digits}f} GiB > {budget / GiB:.{digits}f} GiB budget"


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # a forked worker may not have its own group yet
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _last_line(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _watch(proc, settings: Supervision, started: float,
           stop=None) -> tuple[tuple | None, int | None]:
    """Wait for the worker, polling its RSS; kill its group past the budget or the time limit, or
    when ``stop`` (a ``threading.Event``) is set. Returns ((status, what was passed) when killed, else None;
    the highest RSS seen in bytes)."""
    verdict, peak_seen = None, None
    try:
        while verdict is None:
            try:
                proc.wait(timeout=settings.poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            rss = status_bytes("VmRSS", proc.pid)
            if rss is not None:
                peak_seen = max(peak_seen or 0, rss)
            if settings.budget_bytes and rss and rss > settings.budget_bytes:
                verdict = ("oom", exceeds(rss, settings.budget_bytes))
            elif time.monotonic() - started > settings.timeout_s:
                verdict = ("timeout", f"{settings.timeout_s:g} s")
            elif stop is not None and stop.is_set():
                verdict = ("error", "stopped: the sweep was interrupted")
        if verdict:
            _kill_group(proc)
    except BaseException:  # the runner itself is interrupted: take the child along
        _kill_group(proc)
        raise
    return verdict, peak_seen


def worker_start(start: str, device: str) -> str:
    """"forkserver" or "exec": ``start`` with "auto" resolved for ``device`` (exec on CUDA: a child
    forked from a process that touched the CUDA driver cannot use it, and no GPU has checked that the
    server never does). Raises ``ValueError`` for an unknown start."""
    if start not in WORKER_STARTS:
        raise ValueError(f"unknown worker start {start!r}; use one of {', '.join(WORKER_STARTS)}")
    if start == "auto":
        return "exec" if device.startswith("cuda") else "forkserver"
    return start


def _start_worker(spec_path: Path, cell: Cell, log_path: Path | None, start: str,
                  extra_env: dict | None = None):
    """The worker process (``subprocess.Popen`` or ``bench.forkserver.Forked``), in a new session."""
    env = {**(extra_env or {}), "OMP_NUM_THREADS": str(cell.threads), "MKL_NUM_THREADS": str(cell.threads)}
    if worker_start(start, cell.host_device) == "forkserver":
        from bench import forkserver
        return forkserver.start(spec_path, log_path, env)
    env = dict(os.environ, **env,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "bench.worker", str(spec_path)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log_path:
            log.close()  # the worker has its own descriptor


def run_cell(cell: Cell, settings: Settings, log_path: Path | None = None, *, env: dict | None = None,
             stop=None) -> dict:
    """Measure one cell in a child process; always returns the measured fields with a status.
    ``env`` adds variables to the worker's environment (e.g. ``CUDA_VISIBLE_DEVICES``); ``stop``, a
    ``threading.Event``, kills the worker when set (a sweep run from threads is interrupted)."""
    # the spec and result beside the cell's log (a run's logs/), where the next runner removes what
    # a runner killed with SIGKILL left; without a log, in the system's temporary directory
    work_dir = log_path.parent if log_path else None
    with tempfile.TemporaryDirectory(prefix=CELL_DIR_PREFIX, dir=work_dir) as tmp:
        # absolute: a forked worker changes to the repository before it reads them
        spec_path, result_path = Path(tmp).absolute() / "spec.json", Path(tmp).absolute() / "result.json"
        supervision = settings.supervision
        WorkerSpec(cell, settings.measurement, str(result_path), parent=os.getpid(),
                   address_space_bytes=address_space_limit(supervision.budget_bytes, cell.host_device)
                   ).write(spec_path)
        oom_kills = oom_kill_count()
        try:  # (a fork server that has to start first blocks here: not the cell's time)
            proc = _start_worker(spec_path, cell, log_path, supervision.worker_start, env)
        except (OSError, EOFError) as exc:  # a fork server that died: the next cell starts a new one
            return {"status": "error", "message": f"the worker did not start: {type(exc).__name__}: {exc}",
                    "harness_failure": True,
                    "env": environment(cell.host_device, query_device=False, threads=cell.threads)}
        verdict, peak_seen = _watch(proc, supervision, time.monotonic(), stop)
        result = WorkerResult.read(result_path) or WorkerResult(stage="none")
    pressure = memory_pressure(supervision.budget_bytes, peak_seen, oom_kills)
    fields = _judge(result, verdict, peak_seen, _exit_verdict(proc.returncode, pressure, log_path))
    if not fields.get("env"):
        fields["env"] = environment(cell.host_device, query_device=False, threads=cell.threads)
    return fields


def killed_message(status: str, passed: str, stage: str) -> str:
    """The message of a cell the runner killed: ``passed`` is the budget excess (oom), the time limit
    (timeout), or the whole message (a stopped sweep)."""
    if status == "timeout":
        return f"timed out after {passed}, killed"
    if status != "oom":
        return passed
    if stage == "building":
        return (f"budget below the model's resident size: {passed} while the model was still being "
                "built, killed")
    return f"host memory budget exceeded: {passed}, killed"


#: signals a worker dies of by itself (a native crash): the cell's own failure, not the harness's
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT})
#: the share of the budget whose RSS, seen by the watchdog, counts as memory pressure behind a SIGKILL
PRESSURE_FRACTION = 0.9


def memory_pressure(budget: int | None, peak_seen: int | None, oom_kills_before: int | None) -> str | None:
    """The evidence that a worker killed by SIGKILL died of memory, in one phrase, or None: the
    kernel's OOM-kill counter (``oom_kill`` of /proc/vmstat, Linux 4.13+, which counts cgroup OOM kills
    too) rose since ``oom_kills_before``, or the highest RSS seen (bytes) reached ``PRESSURE_FRACTION`` of
    the budget (bytes)."""
    after = oom_kill_count()
    if oom_kills_before is not None and after is not None and after > oom_kills_before:
        return f"the kernel's OOM killer ran (oom_kill in /proc/vmstat rose by {after - oom_kills_before})"
    if budget and peak_seen and peak_seen >= PRESSURE_FRACTION * budget:
        return f"RSS seen {peak_seen / GiB:.2f} GiB of the {budget / GiB:.2f} GiB budget"
    return None


def _exit_verdict(returncode: int, pressure: str | None, log_path: Path | None) -> tuple[str, str, bool]:
    """(status, message, whether the harness failed rather than the cell) of a worker that ended without
    its result: the worker records every failure of its cell itself, so such an end is the cell's only
    when it crashed natively (``CRASH_SIGNALS``) or died of memory (SIGKILL with ``pressure``)."""
    if returncode == -signal.SIGKILL and pressure:
        return "oom", f"killed by SIGKILL without a result, under memory pressure: {pressure}", False
    if returncode == -signal.SIGKILL:
        return ("error", "killed by SIGKILL from outside, with no sign of memory pressure (no OOM kill "
                "counted by the kernel, RSS below the budget)", True)
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else -returncode
        if -returncode in CRASH_SIGNALS:
            return "error", f"worker crashed: {name}", False
        return "error", f"worker killed by signal {name} from outside", True
    last = _last_line(log_path)
    return "error", f"worker exited with code {returncode} without a result{': ' * bool(last)}{last}", True


def _judge(result: WorkerResult, verdict: tuple | None, peak_seen: int | None,
           exit_verdict: tuple[str, str, bool]) -> dict:
    """The measured fields of a finished worker, with the status the runner's watch or the worker's
    exit (``_exit_verdict``) gives them when the worker did not finish its own record."""
    fields = dict(result.fields)
    harness = False
    if verdict is not None:  # the runner's own kill: oom, timeout, or a stopped sweep (not the cell's)
        verdict, harness = (verdict[0], killed_message(*verdict, result.stage)), verdict[0] == "error"
    if verdict is not None and result.stage == "counting flops":  # measured; only the FLOP count is lost
        fields["message"] = f"FLOPs not counted: {verdict[1]}"
        verdict = None
    elif verdict is None and result.stage != "done":
        *verdict, harness = exit_verdict
    if harness:
        fields["harness_failure"] = True
    if verdict is not None:
        fields.update(status=verdict[0], message=verdict[1])
        if peak_seen is not None and (fields.get("mem_peak_bytes") or 0) < peak_seen:
            # the highest RSS the watchdog saw: a lower bound of the real peak
            fields["mem_peak_bytes"] = peak_seen
            fields["message"] += f" (peak RSS seen {peak_seen / GiB:.2f} GiB)"
            if fields.get("mem_base_bytes") is not None:
                fields["mem_peak_above_base_bytes"] = peak_seen - fields["mem_base_bytes"]
    return fields


def make_record(cell: Cell, fields: dict, *, run_id: str, suite: str, started_at: str, wall_s: float) -> dict:
    """The record of ``cell``: its key, the measured ``fields`` and the run's, in schema order."""
    record = Record.from_json(fields)
    for name, value in cell.key().items():
        if name in Record.__dataclass_fields__ and name != "workload_args":
            setattr(record, name, value)
    record.run_id, record.suite, record.cell_id, record.model = run_id, suite, cell.cell_id, cell.model
    record.started_at, record.wall_s = started_at, round(wall_s, 3)
    record.overhead_s = overhead_s(fields, record.wall_s)
    record.workload_args = dict(cell.workload_args) if cell.workload is not None else None
    record.produced_by = "simulation" if cell.simulate is not None else "measurement"
    record.simulated_gpu = cell.simulate
    record.message = record.message or ""
    return record.to_json()


def overhead_s(fields: dict, wall_s: float) -> float | None:
    """``wall_s - warmup_s - time_total_s`` (the schema's ``overhead_s``), in milliseconds' precision;
    None unless the steps all ran (status ok, or a measurement kept without its FLOP count)."""
    if fields.get("status") != "ok" or fields.get("time_total_s") is None:
        return None
    return round(wall_s - (fields.get("warmup_s") or 0.0) - fields["time_total_s"], 3)


def cell_of(record: dict) -> Cell:
    fields = {k: record[k] for k in ("family", "size", "mode", "input_len", "target_len", "new_tokens",
                                     "batch", "dtype", "device", "threads")}
    fields["inputs"] = record.get("inputs")
    fields["simulate"] = record.get("simulated_gpu")
    if record.get("workload"):
        fields.update(workload=record["workload"],
                      workload_args=tuple(sorted((record.get("workload_args") or {}).items())))
    return Cell(**fields)


class Failures:
    """The shortest failing length of each series (a model, mode and conditions). A generate step
    runs the encoder first, so an encode failure at a length also skips generate from that length on."""

    def __init__(self):
        self.first: dict[tuple, tuple[int, str, str]] = {}

    def note(self, cell: Cell, status: str) -> None:
        if status in FAILURES_THAT_SKIP_LONGER:
            known = self.first.get(cell.series)
            if known is None or cell.input_len < known[0]:
                self.first[cell.series] = (cell.input_len, status, cell.mode)

    def reason_to_skip(self, cell: Cell) -> str | None:
        candidates = [(self.first.get(cell.series), False)]
        if cell.mode == "generate":
            candidates.append((self.first.get(replace(cell, mode="encode").series), True))
        for known, contained in candidates:
            if known is not None and (cell.input_len > known[0] or contained and cell.input_len == known[0]):
                length, status, mode = known
                return f"skipped: {cell.model} {mode} was {status} at {length:,} tokens"
        return None


def _previous_run(run_dir: Path) -> RunInfo | None:
    """What run.json says of the invocations before this one (resumed or partly forced): their
    submitit tasks, which a killed parent may have left queued or running; None when it says nothing."""
    try:
        return read_run_info(run_dir)
    except (OSError, ValueError):  # unreadable: this invocation writes it anew
        return None


def _earlier_invocations(previous: RunInfo | None) -> list[RunInfo]:
    """The invocations before this one, oldest first."""
    if previous is None:
        return []
    return [*previous.earlier_invocations, replace(previous, earlier_invocations=[])]


def _pending(cells: list[Cell], run_dir: Path, force: bool, env: dict,
             allow_mixed_env: bool) -> tuple[list[Cell], list[Cell], Failures]:
    """(every cell once, shortest input first; those not yet recorded; failures recorded so far).
    Raises ``MixedEnvironmentError`` when the records were measured in another environment,
    ``DamagedRecordError`` when one of them is not a record (``bench.results.check_resumable``)."""
    order = {cell: i for i, cell in enumerate(dict.fromkeys(cells))}
    cells = sorted(order, key=lambda cell: (cell.input_len, order[cell]))
    check_resumable(run_dir)
    records = read_records(run_dir)
    differences = env_differences(records, env)
    if differences and not allow_mixed_env:
        raise MixedEnvironmentError(
            f"{run_dir} was measured in another environment: {'; '.join(differences)}; resume it there, "
            "use another --run-id, or --allow-mixed-env (the report then never pairs across them)")
    failures = Failures()
    done: set[str] = set()
    if not force:
        for record in filter(settled, records):  # a harness failure is measured again
            done.add(record["cell_id"])
            try:
                failures.note(cell_of(record), record.get("status"))
            except (KeyError, TypeError):
                pass
    return cells, [cell for cell in cells if cell.cell_id not in done], failures


def _task_states(info: RunInfo, executor, run_dir: Path):
    """``dispatch``'s ``on_change``: run.json lists each submitit task's job id and state."""
    def on_change(running: list, finished: list) -> None:
        for task in [*running, *finished]:
            if task.job_id is not None:
                info.tasks[task.cell.cell_id] = {"label": task.cell.label, "executor": executor.name,
                                                 "job_id": task.job_id, "state": task.state(), **task.saved()}
        write_run_info(run_dir, info)
    return on_change


#: the worker's spec and result directory of a cell, removed when the cell ends (by an interrupt too)
CELL_DIR_PREFIX = "bench-cell-"


class MixedEnvironmentError(Exception):
    """A resume whose environment differs from the run's records; ``str()`` is the one line."""


#: what must agree between a run's records and a resume of it (``allow_mixed_env`` lets them differ)
PINNED_ENV = ("torch", "transformers", "device_name", "git_commit")


def env_differences(records: list[dict], env: dict) -> list[str]:
    """``"transformers 5.23.0 (recorded) -> 5.24.0 (now)"`` for each ``PINNED_ENV`` key whose
    recorded values are not all this environment's (a key unknown on either side is not compared)."""
    differences = []
    for key in PINNED_ENV:
        now = env.get(key)
        recorded = sorted({str((r.get("env") or {}).get(key)) for r in records
                           if isinstance(r.get("env"), dict) and (r["env"].get(key) is not None)})
        if now is not None and recorded and recorded != [str(now)]:
            differences.append(f"{key} {', '.join(recorded)} (recorded) -> {now} (now)")
    return differences


def run_sweep(cells: list[Cell], run_dir: Path, *, suite: str, settings: Settings, run_id: str | None = None,
              force: bool = False, skip_longer: bool = True, progress: bool = True,
              run_info: RunInfo | None = None, executor=None, allow_mixed_env: bool = False) -> list[dict]:
    """Measure every cell not yet recorded in ``run_dir`` on ``executor`` (``bench.executors``;
    default: one local worker at a time); returns the records of ``cells``. This process alone
    appends to results.jsonl, as each task finishes; cells whose submitit tasks an earlier run left
    queued or running are collected from those tasks, not submitted again.

    Holds the run directory's lock throughout (``records.locked_run_dir``: raises
    ``RunDirectoryLocked`` when another runner holds it) and regenerates ``results.csv`` from
    ``results.jsonl`` at the end, however the sweep ends. Raises ``MixedEnvironmentError`` before
    measuring anything when the recorded environment differs (``PINNED_ENV``) and not
    ``allow_mixed_env``; ``OSError`` when the run directory or its files cannot be written."""
    run_dir = Path(run_dir).absolute()  # the workers' files under it are read from another directory
    with locked_run_dir(run_dir):
        check_writable(run_dir)
        remove_stale_temporaries(run_dir)  # a results.csv.tmp<pid> of a runner killed mid-write
        try:
            return _sweep(cells, run_dir, suite=suite, settings=settings, run_id=run_id or run_dir.name,
                          force=force, skip_longer=skip_longer, progress=progress, run_info=run_info,
                          executor=executor, allow_mixed_env=allow_mixed_env)
        finally:
            if (run_dir / RESULTS).exists():
                write_csv(run_dir)


def check_writable(run_dir: Path) -> None:
    """Raise ``OSError`` unless the run directory takes new files and ``results.jsonl`` appends
    (checked before anything is measured, so that no measurement is lost to a read-only file)."""
    (run_dir / LOGS).mkdir(exist_ok=True)
    with tempfile.TemporaryFile(dir=run_dir) as probe:  # a new file, one byte: refused when full
        probe.write(b"\n")
        probe.flush()
        os.fsync(probe.fileno())
    with open(run_dir / RESULTS, "ab"):
        pass
    for name in (RESULTS_CSV, RUN_JSON):
        if (run_dir / name).is_dir():
            raise IsADirectoryError(errno.EISDIR, "a directory where a file belongs", str(run_dir / name))


def _sweep(cells: list[Cell], run_dir: Path, *, suite: str, settings: Settings, run_id: str, force: bool,
           skip_longer: bool, progress: bool, run_info: RunInfo | None, executor,
           allow_mixed_env: bool) -> list[dict]:
    from tqdm import tqdm

    from bench.executors import Local, dispatch

    executor = executor or Local()
    settings = executor.resolve(settings)  # a Slurm task resolves the budget on its node
    if settings.measurement.flops and settings.measurement.flops_cache is None:
        settings = settings.replace(flops_cache=str(run_dir / FLOPS))
    env = environment(cells[0].device if cells else "cpu", query_device=False)
    cells, todo, failures = _pending(cells, run_dir, force, env, allow_mixed_env)
    previous = _previous_run(run_dir)
    saved = {} if force or previous is None else previous.tasks  # --force measures anew, old tasks or not
    reattached = [task for cell in todo if cell.cell_id in saved
                  for task in [executor.reattach(saved[cell.cell_id], cell)] if task is not None]
    info = replace(run_info or RunInfo(suite, run_id), suite=suite, run_id=run_id,
                   settings=settings.to_json(), env=env, executor=executor.describe(),
                   tasks={task.cell.cell_id: saved[task.cell.cell_id] for task in reattached},
                   started_at=now_iso(), finished_at=None, earlier_invocations=_earlier_invocations(previous))
    info.details = {**info.details, "cells": len(cells), "already_recorded": len(cells) - len(todo)}
    forking = todo and worker_start(settings.supervision.worker_start, todo[0].host_device) == "forkserver"
    if forking and executor.name == "local":
        from bench import forkserver
        # once, before the first cell's wall_s
        info.details["fork_server_start_s"] = round(forkserver.warm(), 3)
    write_run_info(run_dir, info)
    if not reattached:  # no task of an earlier run is still at work: what is left there is stale
        for stale in (run_dir / LOGS).glob(f"{CELL_DIR_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
    collected = {task.cell for task in reattached}
    todo_here = [cell for cell in todo if cell not in collected]
    bar = tqdm(total=len(todo), file=sys.stderr, disable=not progress, unit="cell", dynamic_ncols=True)
    try:
        for cell, outcome in dispatch(executor, todo_here, settings, run_dir / LOGS, failures,
                                      skip_longer=skip_longer, reattached=reattached,
                                      on_change=_task_states(info, executor, run_dir)):
            record = _record(cell, outcome, executor, run_id=run_id, suite=suite)
            append_record(run_dir, record)
            write_csv(run_dir)
            failures.note(cell, record["status"])
            bar.set_description(cell.label)
            bar.set_postfix_str(f"last: {record['status']}")
            bar.update()
    finally:
        bar.close()
    info.finished_at = now_iso()
    write_run_info(run_dir, info)
    wanted = {cell.cell_id for cell in cells}
    return [record for record in read_records(run_dir) if record["cell_id"] in wanted]


def _record(cell: Cell, outcome, executor, *, run_id: str, suite: str) -> dict:
    fields = dict(outcome.fields)
    if executor.contention and fields.get("status") != "skipped":
        fields["contention"] = executor.jobs
    return make_record(cell, fields, run_id=run_id, suite=suite, started_at=outcome.started_at,
                       wall_s=outcome.wall_s)
