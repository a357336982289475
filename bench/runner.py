"""Run one cell in an isolated process: ``run_cell``.

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

``run_cell`` is the runner of a single cell; ``bench.sweep`` runs a sweep of them through an executor
(``bench.executors``), whose tasks call ``run_cell``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import forkserver
from bench.cells import Cell
from bench.env import REPO, environment, oom_kill_count
from bench.protocol import WorkerResult, WorkerSpec
from bench.settings import WORKER_STARTS, Settings, Supervision
from bench.trackers import status_bytes

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


#: the worker's spec and result directory of a cell, removed when the cell ends (by an interrupt too)
CELL_DIR_PREFIX = "bench-cell-"
