"""``python -m bench.capacity --gpu h100-80gb``: the longest input each model takes on a GPU, simulated.

Per family and mode, ``bench.gpusim.longest_fitting`` searches simulated peaks (doubling, then probes
where the power law through the bracket's two peaks meets the GPU; ``bench.gpusim``: the
step on fake tensors standing for CUDA ones, the GPU suites' defaults: bf16 autocast, batch 1, 512
target tokens, 64 new tokens; generation searched with one new token, then settled with 64: ``capacity``)
to within 1% or 1,024 tokens, up to 4M tokens; a length passes when the
built model, its batch and the step's peak fit the GPU's usable memory. Then LOCOST's longest over each
baseline's. Each probe runs in this process (seconds to minutes each, by the model's op count).

Each search's result is a ``records.CapacityRow`` appended to ``<out>/<run-id>/capacity.jsonl`` as it
ends (with run.json and ``capacity.csv`` beside it, then the report: a table and a figure); a rerun of the
same command keeps the rows found on the same code and versions and searches only the others.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

from bench.env import environment
from bench.runner import now_iso
from bench.signals import DEFERRED
from cli.args import (
    Parser,
    UsageError,
    build_report,
    check_choices,
    check_model_config,
    fail,
    guard,
    names,
    parse_length,
    parse_model_config,
    path_name,
)
from records import (
    CAPACITY,
    CapacityRow,
    RunDirectoryLocked,
    RunInfo,
    append_jsonl,
    earlier_invocations,
    locked_run_dir,
    read_capacity_rows,
    read_run_info,
    search_key,
    write_capacity_csv,
    write_run_info,
)

GPU_DEFAULTS = {"target_len": 512, "new_tokens": 64, "dtype": "bf16"}


def build_parser() -> Parser:
    p = Parser(prog="python -m bench.capacity", description="Longest input per model and mode that fits "
               "a GPU, searched on simulated peaks.")
    add = p.add_argument
    add("--gpu", required=True, help="h100-80gb, a100-80gb, a100-40gb, l4-24gb, rtx4090-24gb or bytes")
    add("--models", type=names, help="comma list of families (default: all)")
    add("--size", default="base", help="preset (default base)")
    add("--modes", type=names, default=("train", "generate"), help="comma list (default train,generate)")
    add("--max-len", type=parse_length, default=4 * 2**20, help="longest length tried (default 4m)")
    add("--model-config", type=parse_model_config, default=(),
        help="config fields of every model, e.g. dropout_rate=0")
    add("--rouge-recipe", action="store_true",
        help="instead of the bisection: whether the ROUGE suite's GPU configuration (as bench.rouge --help "
             "prints it) fits the GPU, per model: its training step and its generation at the longest "
             "evaluation length, simulated peaks (printed only: no run directory)")
    add("--out", default="reports/out", type=Path, help="parent directory of run directories")
    add("--run-id", type=path_name, help="run directory name (default: capacity-<gpu>)")
    add("--force", action="store_true", help="search again the rows the run directory already holds")
    add("--no-report", action="store_true", help="do not build the HTML report at the end")
    return p


def rouge_recipe():
    """The ROUGE suite's GPU configuration, read from the command ``bench.rouge --help`` prints (the
    ``cli.rouge`` docstring) and parsed by ``bench.rouge``'s own parser: a ``RougeConfig``."""
    import shlex

    import cli.rouge

    text = cli.rouge.__doc__[cli.rouge.__doc__.index("GPU configuration"):]
    command = text[text.index("python -m bench.rouge"):].split("\n\n")[0].replace("\\\n", " ")
    return cli.rouge.config_from_args(cli.rouge.parser().parse_args(shlex.split(command)[3:]))


def recipe_peaks(cfg, family: str) -> dict:
    """Simulated CUDA bytes of ``cfg``'s (a ``RougeConfig``) GPU run of ``family``: ``train`` = the built
    model, its batch, the AdamW state (2 float32 tensors per trainable parameter, ``torch.optim.AdamW``)
    and the step's peak (forward + backward with gradient checkpointing, as ``suites.rouge.training``
    trains on CUDA, bf16 autocast); ``generate`` = model, batch and peak of greedy generation of
    ``max_new_tokens`` at the longest evaluation length, ``eval_batch_size`` documents (absent when every
    length is 'full', a document's own length). The vocabulary is the recipe's trained tokenizer's
    ``vocab_size``. A step the simulation cannot run (``ValueNeeded``: values of a tensor over
    ``VALUE_NUMEL`` elements) gives the reason instead of bytes. Not modelled: the optimizer step's own
    temporaries, the no-repeat-n-gram filter."""
    from bench.gpusim import ValueNeeded, held_bytes, simulate_step
    from models import build

    budget, lengths = cfg.budget, [length for length in cfg.eval_lens if length is not None]
    steps = {"train": (budget.train_len, budget.target_len, budget.batch_size)}
    if lengths:
        steps["generate"] = (max(lengths), 1, cfg.generation.batch_size)
    peaks = {}
    for step, (length, target, batch) in steps.items():
        handle = build(family, cfg.size, device="meta", vocab_size=cfg.vocab_size)
        state = 0
        if step == "train":
            with contextlib.suppress(ValueError):  # as suites.rouge.training: no checkpointing support
                handle.gradient_checkpointing(True)
            state = 2 * held_bytes([p for p in handle.model.parameters() if p.requires_grad])
        try:
            make = functools.partial(handle.make_batch, length, target_len=target, batch_size=batch)
            sim = simulate_step(handle, make, step, new_tokens=cfg.generation.max_new_tokens, dtype="bf16")
            peaks[step] = sim.base_bytes + state + sim.peak_bytes
        except ValueNeeded as exc:
            peaks[step] = f"not simulated: {exc}"
        print(f"  {family} {step}: {peaks[step]}", file=sys.stderr, flush=True)
    return peaks


def recipe_table(cfg, gpu) -> str:
    """Whether each model of ``cfg``'s GPU run fits ``gpu``: its ``recipe_peaks`` in GiB, ok / oom."""
    from suites.rouge.config import DEFAULT_MODELS

    budget, usable = cfg.budget, gpu.usable_bytes
    lines = [f"ROUGE GPU configuration (bench.rouge --help) on {gpu.name} ({usable / 2**30:.1f} GiB "
             f"usable): {cfg.size} presets, vocabulary {cfg.vocab_size:,}, bf16 autocast; train = "
             f"{budget.batch_size} x {budget.train_len:,} input / {budget.target_len} target tokens, "
             "gradient checkpointing, model + AdamW state + step peak; generate = "
             f"{cfg.generation.batch_size} x the longest evaluation length, {cfg.generation.max_new_tokens} "
             "new tokens", f"{'model':<16} {'step':<9} {'GiB':>8}  fits"]
    for family in cfg.models or DEFAULT_MODELS:
        for step, peak in recipe_peaks(cfg, family).items():
            if isinstance(peak, str):
                lines.append(f"{family:<16} {step:<9} {'-':>8}  {peak}")
            else:
                fits = "yes" if peak <= usable else "no (oom)"
                lines.append(f"{family:<16} {step:<9} {peak / 2**30:8.2f}  {fits}")
    return "\n".join(lines)


def peak_at(family: str, size: str, mode: str, config: tuple, new_tokens: int = GPU_DEFAULTS["new_tokens"]):
    """length -> base + simulated peak in bytes, or why the model cannot take the length."""
    from bench.gpusim import simulate_step
    from models import UnsupportedLengthError, build

    def peak(length: int):
        DEFERRED.deliver()  # a Ctrl-C noted since the last probe ends the search here
        handle = build(family, size, device="meta", **dict(config))
        target = GPU_DEFAULTS["target_len"] if mode == "train" else 1
        try:
            handle.check_lengths(length, target if mode == "train" else new_tokens + 1)
        except UnsupportedLengthError as exc:
            return f"unsupported: {str(exc).splitlines()[0]}"
        sim = simulate_step(handle, lambda: handle.make_batch(length, target_len=target), mode,
                            new_tokens=new_tokens, dtype=GPU_DEFAULTS["dtype"])
        new = f" (+{new_tokens} new)" if mode == "generate" else ""
        print(f"  {family} {mode} {length:,}{new}: {(sim.base_bytes + sim.peak_bytes) / 2**30:.2f} GiB",
              file=sys.stderr, flush=True)
        return sim.base_bytes + sim.peak_bytes
    return peak


def capacity(family: str, size: str, mode: str, config: tuple, usable: int, high: int):
    """The longest input of ``family`` in ``mode`` that fits ``usable`` bytes (``longest_fitting``).
    Generation is searched on one new token's peaks, then settled with the full recipe (64 new tokens):
    the 64 decoder calls cost the same at every length, and 64 tokens' peak is never below one token's
    (the same step, continued), so only the longest length found must be checked; where it does not fit
    with 64, the whole search reruns with 64."""
    from bench.gpusim import Capacity, longest_fitting

    full = peak_at(family, size, mode, config)
    if mode != "generate":
        return longest_fitting(full, usable, high=high)
    found = longest_fitting(peak_at(family, size, mode, config, new_tokens=1), usable, high=high)
    if found.longest_ok is None:
        return found
    peak = full(found.longest_ok)
    if isinstance(peak, str) or peak > usable:
        return longest_fitting(full, usable, high=high)
    return Capacity(found.longest_ok, found.first_failure, peak, found.reason)


def table(rows: dict, gpu, size: str) -> str:
    """The capacity table of ``rows`` ((family, mode) -> ``CapacityRow``; lengths in input tokens; GiB: the
    built model, batch and simulated peak at the longest length that fits), then LOCOST's longest over
    each baseline's per mode."""
    usable = gpu.usable_bytes / 2**30
    lines = [f"longest input (tokens) of the {size} presets on {gpu.name} ({usable:.1f} GiB usable), "
             "searched on simulated peaks to 1% or 1,024 tokens (bf16 autocast, batch 1, 512 target / 64 new "
             "tokens); peak GiB: model + batch + step peak at the longest length that fits",
             f"{'model':<16} {'mode':<9} {'longest ok':>11} {'first failure':>14}  peak GiB  why"]
    for (family, mode), cap in rows.items():
        longest = f"{cap.longest_ok:,}" if cap.longest_ok else "none"
        failure = f"{cap.first_failure:,}" if cap.first_failure else "-"
        peak = f"{cap.peak_bytes / 2**30:8.2f}" if cap.peak_bytes else "       -"
        lines.append(f"{family:<16} {mode:<9} {longest:>11} {failure:>14}  {peak}  {cap.reason}")
    for (family, mode), cap in rows.items():
        ours = rows.get(("locost", mode))
        if family != "locost" and ours and ours.longest_ok and cap.longest_ok:
            lines.append(f"locost / {family} {mode}: {ours.longest_ok / cap.longest_ok:.2f}x")
    return "\n".join(lines)


#: the versions a kept row must share with this run to be reused (else it is searched again)
SAME_CODE = ("torch", "transformers", "git_commit")


def search_row(args, gpu, family: str, mode: str, env: dict) -> CapacityRow:
    """The ``CapacityRow`` of one search, before it runs (no result yet)."""
    return CapacityRow(
        gpu=gpu.name, gpu_memory_bytes=gpu.memory_bytes, usable_bytes=gpu.usable_bytes, family=family,
        size=args.size, model=f"{family}-{args.size}", mode=mode, max_len=args.max_len,
        dtype=GPU_DEFAULTS["dtype"], batch=1,
        target_len=GPU_DEFAULTS["target_len"] if mode == "train" else None,
        new_tokens=GPU_DEFAULTS["new_tokens"] if mode == "generate" else None,
        model_config=dict(args.model_config), env=env)


def kept_rows(run_dir: Path, env: dict) -> dict:
    """search key -> the row capacity.jsonl holds for it, where it was found on this run's versions."""
    rows, _ = read_capacity_rows(run_dir)
    return {search_key(row): row for row in rows
            if all((row.get("env") or {}).get(key) == env.get(key) for key in SAME_CODE)}


def search_all(args, gpu, run_dir: Path, env: dict) -> dict:
    """(family, mode) -> ``CapacityRow`` of every search asked, each appended to capacity.jsonl as it ends;
    a row kept from an earlier invocation on the same versions is reused unless ``--force``."""
    from models import FAMILIES

    kept = {} if args.force else kept_rows(run_dir, env)
    rows = {}
    for family in args.models or FAMILIES:
        for mode in args.modes:
            row = search_row(args, gpu, family, mode, env)
            if search_key(row.to_json()) in kept:
                rows[family, mode] = CapacityRow(**kept[search_key(row.to_json())])
                print(f"  {family} {mode}: kept from capacity.jsonl", file=sys.stderr, flush=True)
                continue
            cap = capacity(family, args.size, mode, args.model_config, gpu.usable_bytes, args.max_len)
            row.longest_ok, row.first_failure, row.peak_bytes, row.reason = (
                cap.longest_ok, cap.first_failure, cap.peak_bytes, cap.reason)
            append_jsonl(run_dir / CAPACITY, row.to_json())
            write_capacity_csv(run_dir)
            rows[family, mode] = row
    return rows


def run_capacity(args, gpu, run_dir: Path, argv: list[str]) -> int:
    """Search every (model, mode) of ``args`` into ``run_dir`` (run.json, capacity.jsonl, capacity.csv),
    print the table, then build the report unless ``--no-report``."""
    with locked_run_dir(run_dir):
        env = environment("cpu", query_device=False)
        details = {"gpu": gpu.name, "gpu_memory_bytes": gpu.memory_bytes, "usable_bytes": gpu.usable_bytes,
                   "size": args.size, "max_len": args.max_len,
                   "searched": {"models": list(args.models or ()), "modes": list(args.modes)}}
        info = RunInfo("capacity", run_dir.name, command=argv, env=env, started_at=now_iso(),
                       earlier_invocations=earlier_invocations(read_run_info(run_dir)), details=details)
        write_run_info(run_dir, info)
        rows = search_all(args, gpu, run_dir, env)
        info.finished_at = now_iso()
        write_run_info(run_dir, info)
    print(table(rows, gpu, args.size))
    print(f"rows: {run_dir / CAPACITY}")
    if not args.no_report:
        build_report(run_dir)
    return 0


def kept_line(run_dir: Path) -> str:
    """What an interrupted capacity run keeps, for ``guard``."""
    rows, _ = read_capacity_rows(run_dir)
    return f"{len(rows)} capacity rows kept in {run_dir / CAPACITY}"


def main(argv: list[str] | None = None) -> int:
    from bench.gpusim import parse_gpu
    from models import FAMILIES, SIZES

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        try:
            gpu = parse_gpu(args.gpu)
        except ValueError as exc:
            raise UsageError(f"argument --gpu: {exc}") from None
        check_choices("model", args.models, list(FAMILIES))
        check_choices("size", [args.size], SIZES)
        check_choices("mode", args.modes, ("train", "encode", "generate"))
        check_model_config(args.models or list(FAMILIES), args.size, args.model_config)
    except UsageError as exc:
        return fail(exc)
    run_dir = args.out / (args.run_id or f"capacity-{gpu.name}")

    def work() -> int:
        with DEFERRED:  # Ctrl-C / SIGTERM noted, raised at the next probe or simulated op (bench.signals)
            if args.rouge_recipe:
                print(recipe_table(rouge_recipe(), gpu))
                return 0
            return run_capacity(args, gpu, run_dir, argv)

    if args.rouge_recipe:
        return guard(work, lambda: "nothing is kept (the recipe check keeps no records)", resumes=False)
    return guard(work, lambda: kept_line(run_dir), errors=(RunDirectoryLocked,))


if __name__ == "__main__":
    sys.exit(main())
