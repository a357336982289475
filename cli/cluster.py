"""Where a suite's cells run, from the command line: ``--executor {local,slurm,submitit-local}``,
``--jobs N`` with ``--allow-contention``, and the Slurm task's request (``--slurm-partition``, ...).

``executor(args, ...)`` turns the checked options into a ``bench.executors`` executor; every refusal
is a ``UsageError`` (one ``error:`` line, exit status 2). See README "Running on a cluster".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

from bench.executors import Local, SlurmOptions, Submitit
from cli.args import Parser, UsageError, positive

SLURM_FLAGS = ("slurm_partition", "slurm_time", "slurm_mem", "slurm_account", "slurm_cpus", "slurm_gpus",
               "slurm_option", "slurm_setup")


def add_arguments(parser: Parser) -> None:
    add = parser.add_argument_group("where cells run").add_argument
    add("--executor", choices=("local", "slurm", "submitit-local"), default="local",
        help="local: worker processes here (default); slurm: one Slurm job array through submitit, one "
             "cell and one GPU per task; submitit-local: the same path through submitit's local executor")
    add("--jobs", type=positive(int), default=None,
        help="cells at once: local/submitit-local on a multi-GPU box, each cell pinned to its own GPU "
             "(default 1); with --simulate, simulated cells side by side on this host's cores (their peaks "
             "are computed, not measured: no contention); slurm: the array's parallelism (default: the "
             "cluster's)")
    add("--allow-contention", action="store_true",
        help="allow --jobs > 1 on CPU; every record is then marked as measured under contention (slurm: "
             "CPU tasks may share nodes, up to --jobs at once, instead of one whole node each)")
    add("--slurm-partition", help="sbatch --partition")
    add("--slurm-time", type=positive(int), help="time limit per task, minutes (default: --timeout + 10)")
    add("--slurm-mem", help="memory per task, sbatch syntax, e.g. 64G")
    add("--slurm-account", help="sbatch --account")
    add("--slurm-cpus", type=positive(int), help="CPUs per task (default: --threads)")
    add("--slurm-gpus", type=int, help="GPUs per task (default: 1 on CUDA, 0 on CPU)")
    add("--slurm-option", action="append", type=_sbatch_option, metavar="NAME=VALUE",
        help="any further sbatch option, repeatable: --slurm-option qos=high --slurm-option constraint=a100")
    add("--slurm-setup", action="append", metavar="LINE",
        help="a shell line run before each task, repeatable: --slurm-setup 'module load cuda/12.4'")


def _sbatch_option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip().lstrip("-")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"not an sbatch option NAME=VALUE: {text!r}")
    return name.replace("-", "_"), value


def visible_gpus() -> list[int]:
    """Indices the workers may be pinned to: ``CUDA_VISIBLE_DEVICES`` when set (numeric entries),
    else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [int(item) for item in listed.split(",") if item.strip().isdigit()]
    import torch

    return list(range(torch.cuda.device_count()))


def local_jobs(args: argparse.Namespace) -> int:
    """Cells at once on this host (1 for Slurm, whose tasks each have their own allocation)."""
    return 1 if args.executor == "slurm" else args.jobs or 1


def _gpus(args: argparse.Namespace, device: str) -> list[int] | None:
    return visible_gpus() if device.startswith("cuda") and local_jobs(args) > 1 else None


def _computed(args: argparse.Namespace) -> bool:
    """Whether the cells' figures are computed, not measured (``--simulate``: peaks from tensor sizes, no
    times), so that cells sharing the cores cannot spoil them."""
    return bool(getattr(args, "simulate", None))


def check(args: argparse.Namespace, device: str) -> None:
    """Refuse options that cannot be met or would spoil the figures (``UsageError``)."""
    given = [f"--{name.replace('_', '-')}" for name in SLURM_FLAGS if getattr(args, name) is not None]
    if given and args.executor != "slurm":
        raise UsageError(f"{given[0]} applies to --executor slurm only")
    jobs = local_jobs(args)
    if jobs > 1 and device.startswith("cpu") and not args.allow_contention and not _computed(args):
        raise UsageError(f"--jobs {jobs} on CPU runs {jobs} cells at once on the same cores and memory, "
                         "spoiling each other's time and memory figures; add --allow-contention to run "
                         "them anyway, marked as measured under contention")
    if jobs > 1 and device.startswith("cuda:") and device != "cuda:0":
        raise UsageError(f"--jobs pins each cell to its own GPU; use --device cuda, not {device}")
    gpus = _gpus(args, device)
    if gpus is not None and len(gpus) < jobs:
        raise UsageError(f"--jobs {jobs} needs {jobs} GPUs, {len(gpus)} visible")
    if args.executor == "slurm" and device.startswith("cpu") and args.allow_contention and not args.jobs:
        raise UsageError("--executor slurm --allow-contention on CPU needs --jobs N: at most N tasks share "
                         "a node, and each record is marked as measured beside N-1 others")
    if args.executor == "slurm" and shutil.which("sbatch") is None:
        raise UsageError("--executor slurm needs sbatch: run it on a Slurm login node")
    if args.executor == "slurm" and args.slurm_partition is not None:
        check_partition(args.slurm_partition)


def check_partition(name: str) -> None:
    """Refuse (``UsageError``, sbatch's reason) a partition that Slurm would not take a job into, asking
    ``sbatch --test-only``: it validates the request without submitting anything."""
    try:
        done = subprocess.run(["sbatch", "--test-only", f"--partition={name}", "--wrap=true"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--slurm-partition {name}: sbatch --test-only did not answer: {exc}") from None
    if done.returncode:
        lines = [line.removeprefix("sbatch: error: ").strip() for line in done.stderr.splitlines()]
        reason = "; ".join(line for line in lines if line) or f"exit status {done.returncode}"
        raise UsageError(f"--slurm-partition {name}: sbatch refuses it: {reason}")


def executor(args: argparse.Namespace, device: str, run_dir: Path, timeout_s: float):
    """The ``bench.executors`` executor the options ask for (``check`` them first)."""
    jobs, gpus = args.jobs or 1, _gpus(args, device)
    # on Slurm, CPU tasks get whole nodes (--exclusive) unless shared nodes are accepted
    shared = args.allow_contention if args.executor == "slurm" else local_jobs(args) > 1
    contention = shared and device.startswith("cpu") and not _computed(args)
    if args.executor == "local":
        return Local(jobs, gpus, contention)
    options = SlurmOptions(partition=args.slurm_partition, time_min=args.slurm_time, mem=args.slurm_mem,
                           account=args.slurm_account, cpus_per_task=args.slurm_cpus,
                           gpus_per_task=args.slurm_gpus, extra=tuple(args.slurm_option or ()),
                           setup=tuple(args.slurm_setup or ()))
    return Submitit(args.executor, run_dir / "submitit", slurm=options, jobs=args.jobs, gpus=gpus,
                    timeout_s=timeout_s, contention=contention)
