"""The command line shared by the suites: ``python -m bench.memory`` / ``python -m bench.throughput``.

Options override the suite's default sweep for the device (CUDA when available, else CPU). Results
go to ``<out>/<run-id>/`` (default ``reports/out/<suite>-<device>/``); rerunning the same command
resumes, skipping cells already recorded, unless ``--force``. Bad input ends with one ``error:``
line and exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.cells import DTYPES, MODES
from bench.env import default_threads
from bench.runner import GiB, Settings, run_sweep

_SUFFIXES = {"": 1, "k": 1024, "m": 1024**2}


class UsageError(Exception):
    """Bad input from the command line: printed as one ``error:`` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def parse_length(text: str) -> int:
    """``4096``, ``4k``/``4K`` (4,096), ``1m`` (1,048,576), ``1.5k``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a length: {text!r} (use e.g. 4096, 4k, 1m)")
    value = float(match.group(1)) * _SUFFIXES[match.group(2).lower()]
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"a length must be a positive whole number of tokens: {text!r}")
    return int(value)


def parse_lengths(text: str) -> tuple[int, ...]:
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("the list of lengths is empty")
    return tuple(dict.fromkeys(parse_length(item) for item in items))


def _names(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise argparse.ArgumentTypeError("the list is empty")
    return items


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return parse


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0: {text!r}")
    return int(text)


def build_parser(suite: str) -> Parser:
    p = Parser(prog=f"python -m bench.{suite}",
               description=f"Run the {suite} suite: one isolated process and one record per cell.")
    add = p.add_argument
    add("--models", type=_names, help="comma list of families (default: all five)")
    add("--sizes", type=_names, help="comma list of presets: tiny, small, base")
    add("--lengths", type=parse_lengths, help="comma list of input lengths, e.g. 1k,4k,16384,1m")
    add("--modes", type=_names, help=f"comma list of {', '.join(MODES)}")
    add("--target-len", type=_positive(int), help="label tokens of a training step")
    add("--new-tokens", type=_positive(int), help="tokens generated (greedy, exact)")
    add("--batch", type=_positive(int))
    add("--dtype", choices=DTYPES, help="fp32, or bf16/fp16 autocast over fp32 weights")
    add("--device", help="cpu or cuda[:N] (default: cuda when available)")
    add("--threads", type=_positive(int), help="CPU threads per cell (default: OMP_NUM_THREADS or all)")
    add("--budget-gb", type=_positive(float),
        help="host-memory budget per cell in GiB (default: 0.8 x MemAvailable at start)")
    add("--timeout", type=_positive(float), help="seconds per cell, build included")
    add("--repeats", type=_positive(int), help="timed runs per cell")
    add("--warmup", type=_non_negative_int, help="untimed runs before them")
    add("--min-time", type=_positive(float), help="keep repeating until the timed runs add up to this")
    add("--flops", action=argparse.BooleanOptionalAction, default=None,
        help="count FLOPs (fvcore + analytic) of train/encode cells up to --flops-max-len")
    add("--flops-max-len", type=parse_length, help="longest input whose FLOPs are counted")
    add("--run-id", help="run directory name (default: <suite>-<device>)")
    add("--out", default="reports/out", type=Path, help="parent directory of run directories")
    add("--force", action="store_true", help="rerun cells already recorded")
    add("--no-skip-longer", action="store_true",
        help="also run lengths beyond one where the model already failed (oom/timeout/unsupported)")
    add("--no-report", action="store_true", help="do not build the HTML report at the end")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--dry-run", action="store_true", help="print the cells and exit")
    return p


def _check_choices(kind: str, given, known) -> None:
    unknown = [item for item in given or () if item not in known]
    if unknown:
        raise UsageError(f"unknown {kind} {', '.join(map(repr, unknown))}; known: {', '.join(known)}")


def _device(requested: str | None) -> str:
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", requested):
        raise UsageError(f"unknown device {requested!r}; use cpu or cuda[:N]")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {requested!r} requested but CUDA is not available here")
    return requested


@dataclass(frozen=True)
class Plan:
    """A checked command line: what to run, where, and how."""
    args: argparse.Namespace
    suite: object  # suites.Suite
    sweep: object  # suites.Sweep
    device: str
    settings: Settings
    run_dir: Path


def plan(suite_name: str, argv: list[str] | None) -> Plan:
    """Parse and check the command line of a suite."""
    return plan_args(suite_name, build_parser(suite_name).parse_args(argv))


def plan_args(suite_name: str, args: argparse.Namespace) -> Plan:
    """Check parsed options against the suite, the models and the machine."""
    from models import FAMILIES, SIZES
    from suites import get_suite

    try:
        suite = get_suite(suite_name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _check_choices("model", args.models, list(FAMILIES))
    _check_choices("size", args.sizes, SIZES)
    _check_choices("mode", args.modes, MODES)
    device = _device(args.device)
    sweep = suite.sweep(device).with_options(
        models=args.models, sizes=args.sizes, lengths=args.lengths, modes=args.modes,
        target_len=args.target_len, new_tokens=args.new_tokens, batch=args.batch, dtype=args.dtype,
        warmup=args.warmup, repeats=args.repeats, min_time_s=args.min_time, timeout_s=args.timeout,
        flops=args.flops, flops_max_len=args.flops_max_len)
    settings = Settings(warmup=sweep.warmup, warmup_max_len=sweep.warmup_max_len, repeats=sweep.repeats,
                        min_time_s=sweep.min_time_s, timeout_s=sweep.timeout_s, flops=sweep.flops,
                        flops_max_len=sweep.flops_max_len,
                        budget_bytes=int(args.budget_gb * GiB) if args.budget_gb else None)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"output directory {str(args.out)!r} is a file")
    run_id = args.run_id or f"{suite.name}-{device.split(':')[0]}"
    if not re.fullmatch(r"[\w.+-]+", run_id):
        raise UsageError(f"run id {run_id!r} may hold only letters, digits and . _ + -")
    run_dir = args.out / run_id
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"run directory {str(run_dir)!r} is a file")
    return Plan(args, suite, sweep, device, settings, run_dir)


def main(suite_name: str, argv: list[str] | None = None) -> int:
    try:
        planned = plan(suite_name, argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if execute(planned, argv) is not None else 2


def execute(planned: Plan, argv: list[str] | None) -> list[dict] | None:
    """Run the planned sweep (or print it with ``--dry-run``), print the summary table and build the
    report; returns the sweep's records ([] for a dry run), None when there is nothing to run."""
    args, suite, sweep, device, settings, run_dir = (
        planned.args, planned.suite, planned.sweep, planned.device, planned.settings, planned.run_dir)
    threads = args.threads or default_threads()
    cells = sweep.cells(device, threads)
    dropped = [(cell, sweep.dropped(cell)) for cell in sweep.with_options(drop=()).cells(device, threads)
               if sweep.dropped(cell)]
    if args.dry_run:
        from bench.results import read_records
        recorded = {r["cell_id"] for r in read_records(run_dir)} if run_dir.is_dir() else set()
        for cell in cells:
            print(f"{cell.cell_id}  {cell.label}{'  (recorded)' if cell.cell_id in recorded else ''}")
        for cell, drop in dropped:
            print(f"{'-' * 12}  {cell.label}  (left out: {drop.reason})")
        print(f"{len(cells)} cells -> {run_dir}")
        return []
    if not cells:
        print("error: the sweep has no cells", file=sys.stderr)
        return None
    for cell, drop in dropped:
        print(f"left out: {cell.label} ({drop.reason})", file=sys.stderr)
    print(f"{suite.name}: {len(cells)} cells on {device} ({threads} threads) -> {run_dir}", file=sys.stderr)
    run_info = {"argv": list(sys.argv[1:] if argv is None else argv),
                "sweep": {k: v for k, v in asdict(sweep).items() if k != "drop"},
                "left_out": [f"{cell.label}: {drop.reason}" for cell, drop in dropped], "device": device,
                "threads": threads}
    records = run_sweep(cells, run_dir, suite=suite.name, settings=settings, force=args.force,
                        skip_longer=not args.no_skip_longer, progress=not args.no_progress,
                        run_info=run_info)
    from bench.table import summary_table
    print(summary_table(records, value="throughput" if suite.name == "throughput" else "memory"))
    print(f"results: {run_dir / 'results.jsonl'} and {run_dir / 'results.csv'}")
    if not args.no_report:
        build_report(run_dir)
    return records


def build_report(run_dir: Path) -> None:
    try:
        from reports import build as build_report_files
    except ImportError:
        print("report: the report builder (reports.build) is not available; results are above")
        return
    try:
        path = build_report_files([run_dir])
    except Exception as exc:  # a failing report must not lose the measurements
        print(f"warning: the report could not be built: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        print(f"report: {path}")
