"""The command line of the sweep suites: ``python -m bench.memory`` / ``python -m bench.throughput``.

Options override the suite's default sweep for the device (CUDA when available, else CPU). Results
go to ``<out>/<run-id>/`` (default ``reports/out/<suite>-<device>/``); rerunning the same command
resumes, skipping cells already recorded, unless ``--force``. Bad input ends with one ``error:``
line and exit status 2. ``run_suite`` is the one orchestration: suite -> cells -> run_sweep -> report.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.env import default_threads
from bench.gpusim import parse_gpu
from bench.results import DamagedRecordError, check_resumable, read_records
from bench.runner import GiB
from bench.settings import WORKER_STARTS, Settings, setting_fields, setting_help
from bench.sweep import MixedEnvironmentError, check_writable, run_sweep
from bench.workloads import length_problem
from cli import cluster
from cli.args import (
    MAX_LENGTH,
    Parser,
    UsageError,
    build_report,
    check_choices,
    check_model_config,
    check_output,
    device,
    fail,
    guard,
    names,
    non_negative_int,
    parse_length,
    parse_lengths,
    parse_model_config,
    path_name,
    positive,
)
from cli.table import summary_table
from models import FAMILIES, MODE_STATES, SIZES, dropout_rates
from records import DTYPES, MODES, RESULTS, RESULTS_CSV, RunDirectoryLocked, RunInfo, locked_run_dir, settled
from suites import Suite, Sweep, get_suite


def build_parser(suite: str) -> Parser:
    p = Parser(prog=f"python -m bench.{suite}",
               description=f"Run the {suite} suite: one isolated process and one record per cell.")
    add = p.add_argument
    add("--models", type=names, help="comma list of families (default: every registered family)")
    add("--sizes", type=names, help="comma list of presets: tiny, small, base")
    add("--lengths", type=parse_lengths,
        help=f"comma list of input lengths, e.g. 1k,4k,16384,1m (each at most {MAX_LENGTH:,} tokens: "
             "2**31 - 1, the int32 limit of torch's 32-bit index math)")
    add("--modes", type=names, help=f"comma list of {', '.join(MODES)}")
    add("--target-len", type=positive(int), help="label tokens of a training step")
    add("--new-tokens", type=positive(int), help="tokens generated (greedy, exact)")
    add("--batch", type=positive(int))
    add("--dtype", choices=DTYPES, help="fp32, or bf16/fp16 autocast over fp32 weights")
    add("--model-config", type=parse_model_config,
        help="config fields of the models built, e.g. cross_attention=absorbed (recorded in each cell)")
    add("--device", help="cpu or cuda[:N] (default: cuda when available)")
    add("--simulate", metavar="GPU", type=gpu_name,
        help="simulate every cell on this GPU instead of measuring it (no GPU needed): "
             "h100-80gb, a100-80gb, a100-40gb, l4-24gb, rtx4090-24gb or a memory size (bytes, or 80GiB); "
             "the GPU defaults apply, the step runs on fake tensors and its CUDA peak is counted from tensor "
             "sizes (bench.gpusim); no time figures")
    add("--no-simulate", action="store_true",
        help="on a machine without a GPU, leave out the GPU default cells that the memory suite's CPU "
             "default simulates beside its own (on h100-80gb, into run <run-id>-h100-80gb-sim and the same "
             "report)")
    add("--threads", type=positive(int), help="CPU threads per cell (default: OMP_NUM_THREADS or all)")
    setting = add_setting_flag(add)
    setting("--budget-gb", "budget_bytes", type=budget_gb, metavar="GIB",
            help="host-memory budget per cell in GiB (default: 0.8 x MemAvailable at start)")
    setting("--timeout", "timeout_s", type=positive(float))
    setting("--repeats", "repeats", type=positive(int))
    setting("--warmup", "warmup", type=non_negative_int)
    setting("--min-time", "min_time_s", type=positive(float))
    setting("--flops", "flops", action=argparse.BooleanOptionalAction)
    setting("--flops-max-len", "flops_max_len", type=parse_length)
    setting("--worker-start", "worker_start", choices=WORKER_STARTS)
    add("--run-id", type=path_name, help="run directory name (default: <suite>-<device>)")
    add("--out", default="reports/out", type=Path, help="parent directory of run directories")
    add("--force", action="store_true", help="rerun cells already recorded")
    add("--no-skip-longer", action="store_true",
        help="also run lengths beyond one where the model already failed (oom/timeout/unsupported)")
    add("--allow-mixed-env", action="store_true",
        help="resume a run directory measured with other versions (torch, transformers, device, git "
             "commit); the report then never pairs cells across them")
    add("--no-report", action="store_true", help="do not build the HTML report at the end")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--dry-run", action="store_true", help="print the cells and exit")
    cluster.add_arguments(p)
    return p


def gpu_name(text: str) -> str:
    """An argparse type: ``bench.gpusim.parse_gpu``'s name of a GPU to simulate."""
    try:
        return parse_gpu(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_setting_flag(add):
    """``setting(flag, name, **options)``: the flag of the setting ``name`` (``bench.settings``), whose
    value lands in ``args.<name>`` (None when not given: the suite's) and whose help is the declaration's
    unless ``options`` give one."""
    def setting(flag: str, name: str, **options) -> None:
        add(flag, dest=name, default=None, **{"help": setting_help(name), **options})
    return setting


def given_settings(args: argparse.Namespace) -> dict:
    """The settings given as flags (``add_setting_flag``), by name."""
    return {name: getattr(args, name) for name in setting_fields() if getattr(args, name, None) is not None}


#: the largest --budget-gb taken (1 PiB): beyond it the worker's address-space limit overflows
MAX_BUDGET_GB = 2.0**20
#: the smallest budget that means something: a Python process alone is larger
MIN_BUDGET_BYTES = 2**20


def budget_gb(text: str) -> int:
    """An argparse type: ``--budget-gb`` (GiB, at most ``MAX_BUDGET_GB``) in the engine's unit, bytes;
    refuses a budget below ``MIN_BUDGET_BYTES``."""
    gib = positive(float, at_most=MAX_BUDGET_GB)(text)
    value = int(gib * GiB)
    if value < MIN_BUDGET_BYTES:
        raise argparse.ArgumentTypeError(f"{gib:g} GiB is {value:,} bytes, below 1 MiB")
    return value


@dataclass(frozen=True)
class Plan:
    """A checked command line: what to run, where, and how."""
    args: argparse.Namespace
    suite: Suite
    sweep: Sweep
    device: str
    settings: Settings
    run_dir: Path


def plan(suite_name: str, argv: list[str] | None) -> Plan:
    """Parse and check the command line of a suite."""
    return plan_args(suite_name, build_parser(suite_name).parse_args(argv))


def plan_args(suite_name: str, args: argparse.Namespace) -> Plan:
    """Check parsed options against the suite, the models and the machine."""
    try:
        suite = get_suite(suite_name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_choices("model", args.models, list(FAMILIES))
    check_choices("size", args.sizes, SIZES)
    check_choices("mode", args.modes, MODES)
    if args.simulate and suite_name == "throughput":
        raise UsageError("--simulate gives peak memory only, no times: use it with bench.memory or "
                         "bench.scaling")
    if args.simulate and args.device not in (None, "cuda"):
        raise UsageError(f"--simulate stands every cell on a GPU: --device {args.device} does not apply")
    on = "cuda" if args.simulate else device(args.device)
    cluster.check(args, "cpu" if args.simulate else on)  # simulated cells compute on this host's CPU
    sweep = suite.sweep(on).with_options(
        models=args.models, sizes=args.sizes, lengths=args.lengths, modes=args.modes,
        target_len=args.target_len, new_tokens=args.new_tokens, batch=args.batch, dtype=args.dtype,
        model_config=args.model_config, simulate=args.simulate)
    if sweep.model_config:
        check_model_config(sweep.models, sweep.sizes[0], sweep.model_config)
    fraction = sweep.settings.supervision.budget_fraction / cluster.local_jobs(args)
    settings = sweep.settings.replace(budget_fraction=fraction, **given_settings(args))
    where = f"{args.simulate}-sim" if args.simulate else on.split(':')[0]
    run_dir = args.out / (args.run_id or f"{suite.name}-{where}")
    check_output(args.out, run_dir)
    return Plan(args, suite, sweep, on, settings, run_dir)


#: options that choose CPU cells: given any, the CPU run is no default and no GPU sweep is simulated beside it
CELL_OPTIONS = ("sizes", "lengths", "modes", "target_len", "new_tokens", "batch", "dtype")
#: simulated cells at once beside the CPU default: they time nothing, so they share the cores unmarked
SIMULATION_JOBS = 2


def simulated_beside(planned: Plan) -> Plan | None:
    """The plan of the suite's GPU default simulated beside its CPU default (``Suite.simulated_beside_cpu``):
    only where no GPU was found (no ``--device``, CUDA absent), nothing is simulated already, no option
    chose CPU cells (``CELL_OPTIONS``) and ``--no-simulate`` is not given. ``--models``, ``--model-config``
    and the measurement options apply to it too; its run directory is ``<run-id>-<gpu>-sim`` (that of
    ``--simulate <gpu>``, so the two resume each other); locally, ``SIMULATION_JOBS`` cells run at once.
    Raises ``UsageError`` as ``plan_args`` does."""
    args, gpu = planned.args, planned.suite.simulated_beside_cpu
    if args.simulate and args.no_simulate:
        raise UsageError("--no-simulate and --simulate contradict each other")
    chosen = any(getattr(args, name) is not None for name in CELL_OPTIONS)
    if gpu is None or args.simulate or args.no_simulate or args.device is not None or chosen \
            or planned.device != "cpu":
        return None
    options = {"simulate": gpu, "run_id": f"{args.run_id}-{gpu}-sim" if args.run_id else None}
    if args.executor == "local" and args.jobs is None:
        options.update(jobs=SIMULATION_JOBS)
    return plan_args(planned.suite.name, argparse.Namespace(**{**vars(args), **options}))


def main(suite_name: str, argv: list[str] | None = None) -> int:
    try:
        planned = plan(suite_name, argv)
        beside = simulated_beside(planned)
    except UsageError as exc:
        return fail(exc)
    plans = [planned] + ([beside] if beside else [])
    return guard(lambda: exit_status(execute_all(plans, argv)), lambda: kept(planned.run_dir),
                 errors=ENGINE_ERRORS)


def execute_all(plans: list[Plan], argv: list[str] | None) -> list[dict] | None:
    """``execute`` each plan (the CPU default, then the GPU default simulated beside it) and build one report
    of their runs in the first run's directory; the records of all, or None when one had nothing to run."""
    if len(plans) == 1:
        return execute(plans[0], argv)
    records: list[dict] = []
    for planned in plans:
        quiet = argparse.Namespace(**{**vars(planned.args), "no_report": True})
        done = execute(replace(planned, args=quiet), argv)
        if done is None:
            return None
        records += done
    first = plans[0].args
    if not first.dry_run and not first.no_report:
        build_report(*(planned.run_dir for planned in plans))
    return records


def exit_status(records: list[dict] | None) -> int:
    """0 when every cell has its result; 2 when there was nothing to run; 1, after one ``error:``
    line, when cells failed for the harness's or the machine's reasons (``harness_failure``): they
    are not measured, and rerunning the same command measures them."""
    if records is None:
        return 2
    lost = [record for record in records if not settled(record)]
    if not lost:
        return 0
    first = lost[0]
    print(f"error: {len(lost)} cell{'s' * (len(lost) != 1)} failed for reasons not their own (first: "
          f"{first.get('model')} {first.get('mode')} {first.get('input_len')}: {first.get('message')}); "
          "rerun the same command to measure them", file=sys.stderr)
    return 1


#: the engine's refusals, each printed as one ``error:`` line
ENGINE_ERRORS = (RunDirectoryLocked, MixedEnvironmentError, DamagedRecordError)


def kept(run_dir: Path) -> str:
    """What an interrupted or failed run leaves: its records, in one phrase."""
    try:
        count = len(read_records(run_dir)) if run_dir.is_dir() else 0
    except OSError:
        count = 0
    return f"{count} record{'s' * (count != 1)} kept in {run_dir / RESULTS}"


def recorded_ids(run_dir: Path) -> set[str]:
    """The cell ids ``run_dir`` already holds a record of (none when it does not exist yet)."""
    return {r["cell_id"] for r in read_records(run_dir) if settled(r)} if run_dir.is_dir() else set()


def _dry_run(cells: list, dropped: list, run_dir: Path) -> None:
    """Print each cell with what is known of it before it runs: recorded already, or lengths its
    model does not take (the sweep records those ``unsupported`` and goes on)."""
    recorded = recorded_ids(run_dir)
    for cell in cells:
        problem = length_problem(cell)
        notes = ["recorded"] * (cell.cell_id in recorded) + [f"unsupported: {problem}"] * bool(problem)
        print(f"{cell.cell_id}  {cell.label}{''.join(f'  ({note})' for note in notes)}")
    for cell, drop in dropped:
        print(f"{'-' * 12}  {cell.label}  (left out: {drop.reason})")
    print(f"{len(cells)} cells -> {run_dir}")


def _resumed(cells: list, run_dir: Path, force: bool) -> str:
    """``", 8 already recorded, 4 to run"`` when the run directory holds records of some of ``cells``
    (which the sweep skips unless ``--force``); empty otherwise."""
    recorded = set() if force else recorded_ids(run_dir)
    done = sum(cell.cell_id in recorded for cell in cells)
    return f", {done} already recorded, {len(cells) - done} to run" if done else ""


def model_states(sweep: Sweep) -> dict:
    """What run.json says of the models' state while measured (``RunInfo.modes``, ``.dropout``): each
    mode's (train / eval, dropout on / off; ``models.MODE_STATES``) and each model's dropout probabilities."""
    return {"modes": {mode: MODE_STATES[mode] for mode in sweep.modes},
            "dropout": {f"{family}-{size}": dropout_rates(family, size, **dict(sweep.model_config))
                        for family in sweep.models for size in sweep.sizes}}


def execute(planned: Plan, argv: list[str] | None) -> list[dict] | None:
    """Run the planned sweep (or print it with ``--dry-run``); returns the sweep's records ([] for a
    dry run), None when there is nothing to run."""
    args = planned.args
    threads = args.threads or default_threads()
    cells = planned.sweep.cells(planned.device, threads)
    dropped = [(cell, planned.sweep.dropped(cell))
               for cell in planned.sweep.with_options(drop=()).cells(planned.device, threads)
               if planned.sweep.dropped(cell)]
    if args.dry_run:
        _dry_run(cells, dropped, planned.run_dir)
        return []
    if not cells:
        fail("the sweep has no cells")
        return None
    run_info = RunInfo(planned.suite.name, planned.run_dir.name,
                       command=list(sys.argv[1:] if argv is None else argv), **model_states(planned.sweep),
                       details={"sweep": {k: v for k, v in asdict(planned.sweep).items()
                                          if k not in ("drop", "settings")},
                                "left_out": [f"{cell.label}: {drop.reason}" for cell, drop in dropped],
                                "device": planned.device, "threads": threads})
    with locked_run_dir(planned.run_dir):  # a second runner stops here, before it says anything,
        check_writable(planned.run_dir)  # and so does a read-only run directory
        check_resumable(planned.run_dir)  # and a damaged record
        for cell, drop in dropped:
            print(f"left out: {cell.label} ({drop.reason})", file=sys.stderr)
        print(f"{planned.suite.name}: {len(cells)} cells on {planned.device} ({threads} threads)"
              f"{_resumed(cells, planned.run_dir, args.force)} -> {planned.run_dir}", file=sys.stderr)
        return run_suite(planned, cells, run_info)


def run_suite(planned: Plan, cells: list, run_info: RunInfo) -> list[dict]:
    """The orchestration: the suite's cells -> ``bench.sweep.run_sweep`` (records in the run
    directory) -> the summary table -> the report."""
    args = planned.args
    host = "cpu" if args.simulate else planned.device  # where the workers compute
    executor = cluster.executor(args, host, planned.run_dir, planned.settings.supervision.timeout_s)
    records = run_sweep(cells, planned.run_dir, suite=planned.suite.name, settings=planned.settings,
                        force=args.force, skip_longer=not args.no_skip_longer, progress=not args.no_progress,
                        run_info=run_info, executor=executor, allow_mixed_env=args.allow_mixed_env)
    for value in (("throughput", "first_call") if planned.suite.name == "throughput" else ("memory",)):
        print(summary_table(records, value=value))
    print(f"results: {planned.run_dir / RESULTS} and {planned.run_dir / RESULTS_CSV}")
    if warning := busy_host_warning(records):
        print(warning, file=sys.stderr)
    if not args.no_report:
        build_report(planned.run_dir)
    return records


def busy_host_warning(records: list[dict]) -> str | None:
    """A ``warning:`` line when other work on the host took cores from cells while they were timed
    (``reports.analysis.cores_taken`` above ``BUSY_HOST_SHARE``); None otherwise."""
    from reports.analysis import BUSY_HOST_SHARE, cores_taken
    from reports.runs import records_frame

    timed = [record for record in records if record.get("host_other_cores") is not None]
    if not timed:
        return None
    frame = records_frame(timed).assign(taken=cores_taken)
    busy = frame[frame["taken"] > BUSY_HOST_SHARE]
    if busy.empty:
        return None
    worst = busy.loc[busy["taken"].idxmax()]
    cell = f"{worst['model']} {worst['mode']} {int(worst['input_len']):,}"
    return (f"warning: {len(busy)} of {len(frame)} cells were timed while other work on the host took their "
            f"cores (most: {cell}, {worst['taken']:.0%} of its cores; host_other_cores): their wall times "
            "are lengthened")
