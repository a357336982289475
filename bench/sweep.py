"""Run a sweep of cells into a run directory: ``run_sweep``.

``run_sweep`` runs cells in order of input length on an executor (``bench.executors``: one at a time
here by default, N at once, or submitit/Slurm tasks that call ``run_cell``), appends one record per cell to
``results.jsonl``, regenerates ``results.csv`` after each and at the end, skips cells already recorded (unless
``force``), keeps FLOP counts in ``flops.jsonl`` for every later cell and resume to reuse
(``bench.flops.FlopCache``), and records longer inputs of a model and mode that already failed as
``skipped`` (and generate from the length where encode failed: generation runs the encoder first).

The layers: ``bench.sweep`` (pending cells, dispatch, resume, records, run.json) -> ``bench.executors``
(where each cell's task runs) -> ``bench.runner`` (one cell in its own worker process).
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from bench import forkserver
from bench.cells import Cell, Failures
from bench.env import environment
from bench.executors import Local, dispatch
from bench.results import append_record, check_resumable, read_records, write_csv
from bench.runner import CELL_DIR_PREFIX, now_iso, worker_start
from bench.settings import Settings
from records import (
    FLOPS,
    LOGS,
    RESULTS,
    RESULTS_CSV,
    RUN_JSON,
    Record,
    RunInfo,
    earlier_invocations,
    locked_run_dir,
    read_run_info,
    remove_stale_temporaries,
    settled,
    write_run_info,
)


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


def _previous_run(run_dir: Path) -> RunInfo | None:
    """What run.json says of the invocations before this one (resumed or partly forced): their
    submitit tasks, which a killed parent may have left queued or running; None when it says nothing."""
    try:
        return read_run_info(run_dir)
    except (OSError, ValueError):  # unreadable: this invocation writes it anew
        return None


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
                   started_at=now_iso(), finished_at=None, earlier_invocations=earlier_invocations(previous))
    info.details = {**info.details, "cells": len(cells), "already_recorded": len(cells) - len(todo)}
    forking = todo and worker_start(settings.supervision.worker_start, todo[0].host_device) == "forkserver"
    if forking and executor.name == "local":
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
