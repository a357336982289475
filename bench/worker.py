"""The child process of one cell: forked from the runner's fork server (``bench.forkserver``, which
calls ``run``) or started as ``python -m bench.worker SPEC.json``.

The runner (``bench.runner``) starts it in a new session and watches it; the worker prepares the
workload, measures memory and time, and writes what it knows to the spec's ``result`` file at each
stage (atomically), so that the runner can still tell the parameter counts and memory base of a
cell it had to kill. A handled failure (unsupported length, out of memory, any exception) ends the
worker normally with that status in the result.

Torch and the models (``bench.workloads``, ``bench.gpusim``, ``bench.flops``) are imported inside
``measure_cell``: after the worker has armed its death with the runner and reported its ``building``
stage, so that a worker killed while importing them (seconds; ``python -X importtime``) is judged as
still building, and so that a synthetic cell's worker never imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import select
import signal
import sys
import threading
import time
import traceback

from bench import trackers
from bench.cells import Cell
from bench.env import environment
from bench.protocol import WorkerResult, WorkerSpec
from bench.settings import Measurement
from records import process_alive


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return message if len(message) <= limit else message[: limit - 3] + "..."


def classify(exc: BaseException) -> tuple[str, str]:
    """(status, one-line message) of an exception raised while preparing or measuring a cell."""
    errors = sys.modules.get("models.errors")  # not loaded: the exception cannot come from a model
    if errors is not None and isinstance(exc, errors.UnsupportedLengthError):
        return "unsupported", str(exc).splitlines()[0]
    if isinstance(exc, MemoryError):
        return "oom", one_line(exc)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return "oom", one_line(exc)
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text):
        return "oom", one_line(exc)
    return "error", one_line(exc)


#: errors of the machine, not of the measured cell: a full disk or quota, a read-only or failing device
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def machine_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is the machine's (``MACHINE_ERRNOS``):
    such a cell is recorded as a harness failure, measured again by the next run."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def autocast(cell: Cell):
    if cell.dtype == "fp32":
        return contextlib.nullcontext()
    import torch
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[cell.dtype]
    return torch.autocast(device_type=cell.device.split(":")[0], dtype=dtype)


def _threads(cell: Cell) -> int:
    """Threads the step ran with: torch's setting where torch is in use, else the cell's."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else cell.threads


def measure_cell(cell: Cell, settings: Measurement, report) -> dict:
    """Prepare, measure, and return the measured fields of the record; ``report(fields, stage)`` is
    called with what is known so far (parameters, memory base, peak) before and after the step."""
    from bench.workloads import prepare  # torch, after the worker reported "building" (module docstring)

    if cell.simulate is not None:
        from bench.gpusim import simulate_cell
        return simulate_cell(cell, report)
    record: dict = {"warmup": settings.warmup_for(cell.input_len)}
    prepared = prepare(cell)
    record["env"] = environment(cell.device, threads=_threads(cell))
    if prepared.params is not None:
        record.update(params_total=prepared.params.total, params_embedding=prepared.params.embedding,
                      params_non_embedding=prepared.params.non_embedding)
    record.update(reuse_kernel=prepared.reuse_kernel, attn_implementation=prepared.attn_implementation)
    runs = _timed_steps(cell, prepared, settings, record, report)
    record.update(_rates(cell, runs.timed), warmup_s=sum(runs.warmup), time_total_s=sum(runs.timed),
                  first_call_s=runs.first_s, cpu_times_s=runs.timed_cpu or None,
                  host_other_cores=runs.other_cores)
    if (settings.flops and prepared.count_flops is not None and cell.mode in ("train", "encode")
            and cell.input_len <= settings.flops_max_len):
        # the measurement is complete: a cell killed while counting keeps it (see bench.runner)
        report(dict(record, status="ok", message=""), "counting flops")
        record.update(_flops(cell, prepared, settings))
    return record


def _flops(cell: Cell, prepared, settings: Measurement) -> dict:
    """The FLOP fields of the cell's step, counted or taken from the run's cache; {} when counting
    fails (FLOPs are optional: the measurement stands without them)."""
    from bench.flops import FlopCache

    cache = FlopCache(settings.flops_cache) if settings.flops_cache else None
    try:
        with autocast(cell):
            count = prepared.count_flops(cache)
    except Exception as exc:
        print(f"warning: FLOP count failed: {one_line(exc)}", file=sys.stderr)
        return {}
    return {"flops": count.total, "flops_analytic": count.analytic, "flops_source": count.source}


def _timed_steps(cell: Cell, prepared, settings: Measurement, record: dict, report):
    """Run the warm-up and timed steps (``trackers.Runs``) between the memory tracker's start and stop;
    the memory fields and the kernel builds of the timed steps go into ``record`` (and are reported)
    even when a step fails."""
    memory = trackers.memory_tracker(cell.device)
    memory.start()
    if getattr(memory, "hwm_reset", True) is False:
        print("warning: VmHWM could not be reset: the peak includes building the model", file=sys.stderr)
    record["mem_base_bytes"] = memory.base
    report(record)
    timer = trackers.Timer(cell.device)
    builds = prepared.kernel_builds or (lambda: None)
    before = []  # the kernel builds when the timed steps start
    try:
        with autocast(cell):
            load = None if timer.cuda else trackers.HostLoad(_threads(cell))
            runs = trackers.repeat(prepared.step, timer, warmup=record["warmup"], repeats=settings.repeats,
                                   min_time_s=settings.min_time_s, load=load,
                                   after_warmup=lambda: before.append(builds()))
        if before[0] is not None:
            record["kernel_builds"] = builds() - before[0]
        return runs
    finally:  # the peak reached before a failure is worth keeping too
        reading = memory.stop()
        record.update(mem_peak_bytes=reading.peak_bytes, mem_peak_above_base_bytes=reading.above_base_bytes,
                      mem_base_bytes=reading.base_bytes, mem_reserved_bytes=reading.reserved_bytes,
                      nvml_process_bytes=reading.nvml_process_bytes,
                      nvml_device_bytes=reading.nvml_device_bytes)
        report(record)


def _rates(cell: Cell, times: list[float]) -> dict:
    """Time statistics and token rates of the timed steps."""
    summary = trackers.summarize(times)
    rates = {"time_median_s": summary.median_s, "time_min_s": summary.min_s, "time_max_s": summary.max_s,
             "time_iqr_s": summary.iqr_s, "repeats": summary.repeats, "times_s": list(times),
             "tokens_per_s": cell.batch * cell.input_len / summary.median_s}
    if cell.mode == "generate":
        rates["generated_tokens_per_s"] = cell.batch * cell.new_tokens / summary.median_s
    return rates


def die_with_parent(parent: int | None) -> None:
    """Ask Linux to SIGKILL this worker when the runner dies, so no orphan keeps measuring."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # the runner died before prctl
        os._exit(1)


def follow_runner(runner: int | None) -> None:
    """SIGKILL this worker's process group as soon as the ``runner`` process ends: a thread waits on
    a pidfd of it (Linux 5.3+). A worker forked from the fork server needs it: its parent is the
    server, which ``PR_SET_PDEATHSIG`` watches, not the runner. Without pidfds, it polls every 0.2 s."""
    if runner is None:
        return
    try:
        pidfd = os.pidfd_open(runner)
    except ProcessLookupError:
        os._exit(1)  # the runner is gone already
    except (OSError, AttributeError):
        pidfd = None

    def wait() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while process_alive(runner):
                time.sleep(0.2)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=wait, name="follow-runner", daemon=True).start()



def main(argv: list[str]) -> int:
    """``python -m bench.worker SPEC.json``: a worker started as a new interpreter."""
    spec = WorkerSpec.read(argv[0])
    die_with_parent(spec.parent)
    return run(spec)


def run(spec: WorkerSpec) -> int:
    """Measure the spec's cell in this process and write its result; the exit status (0: a result,
    whatever the cell's status, was written)."""
    if spec.address_space_bytes:  # a backstop for sudden huge allocations; the RSS watchdog is the budget
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (spec.address_space_bytes, hard))
    cell, result = spec.cell, WorkerResult()

    def report(fields: dict, stage: str = "measuring") -> None:
        result.update(fields)
        result.stage = stage
        result.write(spec.result)

    try:
        report({}, "building")  # until the memory base is taken: a kill now means the model did not fit
        record = measure_cell(cell, spec.measurement, report)
        record.update(status="ok", message="")
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a record
        if isinstance(exc, KeyboardInterrupt):
            raise
        status, message = classify(exc)
        if status == "error":
            traceback.print_exc()
        record = dict(result.fields, status=status, message=message)
        if machine_failure(exc):
            record["harness_failure"] = True
        if "env" not in record:
            record["env"] = environment(cell.host_device, threads=_threads(cell))
    report(record, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
