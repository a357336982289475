"""Each model system of a ROUGE run as one task of a ``bench.executors`` executor (``--executor slurm`` or
``submitit-local``): the task trains (or loads) the system and writes its predictions and reference NLL
into the run directory, exactly as ``ModelRunner.run`` does in the parent process; the parent then
scores every system as it does locally, so that rouge.jsonl and the report read the same files.

A task keeps its own record of finished work (``tasks/<system>.state.json``) and hands back the
system's part of it, which the parent merges into ``state.json`` (tasks never write the same file). A task
that ends without its result (an exception, Slurm's TIMEOUT, CANCELLED, OUT_OF_MEMORY) leaves its system
out of the scores and in run.json's ``systems`` with ``status`` and ``failed`` (the one-line reason).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from bench.executors import Outcome, Task, dispatch
from suites.rouge.config import ModelSpec
from suites.rouge.errors import SuiteError
from suites.rouge.systems import ModelRunner


@dataclass(frozen=True)
class SystemTask:
    """What a system's task asks its executor for (the fields a ``bench.cells.Cell`` gives it): the
    device (``cpu``, ``cuda``) and the torch CPU threads (Slurm: ``--cpus-per-task``)."""
    system: str
    device: str
    threads: int


def evaluate(runner: ModelRunner, spec: ModelSpec, inputs: tuple, threads: int) -> Outcome:
    """The body of a system's task: ``runner.run(spec, *inputs)`` on ``threads`` torch threads.
    Returns an ``Outcome`` whose fields hold ``status`` "ok", the system ``entry`` and its ``state``
    (``State.part``), or ``status`` "error" and the exception's first line as ``message`` (a weights file
    that does not load raises more than ``SuiteError``)."""
    torch.set_num_threads(threads)
    started_at, started = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.monotonic()
    try:
        entry = runner.run(spec, *inputs)
        fields = {"status": "ok", "entry": entry, "state": runner.state.part(spec.name, list(inputs[0]))}
    except SuiteError as exc:
        fields = {"status": "error", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any failure of the system is its outcome, in one line
        first = (str(exc).splitlines() or [""])[0]
        fields = {"status": "error", "message": f"{type(exc).__name__}: {first}"}
    return Outcome(fields, started_at, time.monotonic() - started)


def _task_runner(runner: ModelRunner, spec: ModelSpec) -> ModelRunner:
    """A copy of ``runner`` for ``spec``'s task: absolute run directory, its own state file."""
    mine = copy.copy(runner)
    mine.run_dir = runner.run_dir.resolve()
    mine.state = copy.deepcopy(runner.state)
    mine.state.path = mine.run_dir / "tasks" / f"{spec.name}.state.json"
    mine.state.path.parent.mkdir(parents=True, exist_ok=True)
    return mine


def run_systems(executor, runner: ModelRunner, specs: list[ModelSpec], inputs: tuple) -> tuple[list, dict]:
    """Every system of ``specs`` as one task of ``executor`` (``bench.executors.Submitit``), ``inputs``
    as ``ModelRunner.run`` takes them: (system entries in ``specs``' order, the tasks by system: executor,
    job id, scheduler state, wall time in s). The parent's ``runner.state`` takes each finished part."""
    items = [SystemTask(spec.name, runner.device.type, torch.get_num_threads()) for spec in specs]
    calls = {item: (_task_runner(runner, spec), spec, inputs, item.threads)
             for item, spec in zip(items, specs, strict=True)}
    tasks: dict[str, dict] = {}

    def seen(running: list[Task], finished: list[Task]) -> None:
        for task in running + finished:
            tasks[task.cell.system] = {"executor": executor.name, "job_id": task.job_id,
                                       "state": task.state()}

    outcomes = {}
    submit = lambda batch: executor.submit_calls(evaluate, [calls[item] for item in batch], batch)  # noqa: E731
    for item, outcome in dispatch(executor, items, None, None, None, skip_longer=False, submit=submit,
                                  on_change=seen):
        outcomes[item.system] = outcome
        tasks[item.system]["wall_s"] = round(outcome.wall_s, 1)
    entries = [_entry(runner, spec, outcomes[spec.name]) for spec in specs]
    runner.state.save()
    return entries, tasks


def _entry(runner: ModelRunner, spec: ModelSpec, outcome: Outcome) -> dict:
    fields = outcome.fields
    if fields["status"] == "ok":
        runner.state.merge(fields["state"])
        return {"system": spec.name, "kind": "model", **fields["entry"]}
    failed = f"{spec.name}: {fields['message']}"
    print(f"  {spec.name}: {fields['status']}: {fields['message']}", flush=True)
    return {"system": spec.name, "kind": "model", "status": fields["status"], "failed": failed,
            "unsupported": {}}
