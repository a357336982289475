"""Side-by-side CPU timings of LOCOST against an earlier revision of itself and LongT5-local.

    PYTHONPATH=$PWD python tests/benchmarks/ab_locost.py --before main --lengths 1024 4096 16384

The earlier revision's ``models/locost/{ssm,modeling_locost}.py`` are taken from git (``--before``) into
a temporary package and given the same weights. Every round times each variant once, in turn (process
CPU time, one thread), and the medians over rounds are printed with their ratios. Variants: ``before``,
``after`` (kernel built in every call), ``after+reuse`` (``reuse_kernel=True``, warm) and
``longt5-local``; ``kernels`` is the time to build every layer's kernels alone. Not collected by pytest.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from models import build
from models.locost import LocostForConditionalGeneration


def load_before(ref: str):
    """``models/locost`` at git ``ref`` as a module whose config class is today's (same fields)."""
    folder = Path(tempfile.mkdtemp(prefix="locost_before_")) / "locost_before"
    folder.mkdir()
    for name in ("ssm.py", "modeling_locost.py"):
        text = subprocess.run(["git", "show", f"{ref}:models/locost/{name}"], check=True,
                              capture_output=True, text=True).stdout
        text = text.replace("from ..", "from models.").replace(
            "from .configuration_locost import", "from models.locost.configuration_locost import")
        (folder / name).write_text(text)
    (folder / "__init__.py").write_text("")
    spec = importlib.util.spec_from_file_location("locost_before", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    sys.modules["locost_before"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["locost_before"])
    return importlib.import_module("locost_before.modeling_locost")


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def compare_encode(L: int, rounds: int, models: dict, kernels: list, bf16: bool = False) -> None:
    ids = torch.randint(2, 32000, (1, L), generator=torch.Generator().manual_seed(L))
    variants = {name: (lambda m=model: m.encoder(input_ids=ids)) for name, model in models.items()}
    variants["kernels"] = lambda: [kernel(L) for kernel in kernels]
    if bf16:
        for name in ("after", "after+reuse"):
            variants[f"{name} bf16"] = lambda m=models[name]: _bf16(m.encoder, ids)
    times = {name: [] for name in variants}
    with torch.no_grad():
        variants["after+reuse"]()  # warm: the kept kernel is built once
        for _ in range(rounds):
            for name, fn in variants.items():
                times[name].append(cpu_time(fn))
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"encode L={L}: " + ", ".join(f"{n} {t:.3f} s" for n, t in med.items()))
    ratio = {f"{a}/{b}": med[a] / med[b] for a, b in [
        ("before", "after"), ("before", "after+reuse"), ("longt5-local", "after"),
        ("longt5-local", "after+reuse")]}
    print("  " + ", ".join(f"{name} {value:.2f}x" for name, value in ratio.items())
          + f", kernels/after {med['kernels'] / med['after']:.1%}"
          + (f", after/after bf16 {med['after'] / med['after bf16']:.2f}x, after+reuse/after+reuse bf16"
             f" {med['after+reuse'] / med['after+reuse bf16']:.2f}x" if bf16 else ""), flush=True)


def _bf16(encoder, ids):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return encoder(input_ids=ids)


def profile_shares(model, L: int) -> dict:
    """Shares of one no-grad encode at L (torch.profiler, CPU time): the S4D kernel, the FFN modules,
    the other linear projections (SSM k/q/output), and the FFTs."""
    from torch.profiler import ProfilerActivity, profile, record_function

    open_ranges, hooks = [], []

    def enter(kind):
        return lambda module, args: open_ranges.append(record_function(kind).__enter__())

    def leave(module, args, output):
        open_ranges.pop().__exit__(None, None, None)

    for module in model.encoder.modules():
        kind = {"LocostS4DKernel": "kernel", "LocostDenseGatedGelu": "ffn"}.get(type(module).__name__)
        if kind:
            hooks += [module.register_forward_pre_hook(enter(kind)), module.register_forward_hook(leave)]
    ids = torch.randint(2, 32000, (1, L), generator=torch.Generator().manual_seed(L))
    with torch.no_grad():
        model.encoder(input_ids=ids)  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.process_time()
            model.encoder(input_ids=ids)
            total = time.process_time() - start
    for hook in hooks:
        hook.remove()
    events = prof.key_averages()
    cpu = {e.key: e.cpu_time_total / 1e6 for e in events}
    self_cpu = {e.key: e.self_cpu_time_total / 1e6 for e in events}
    # aten::linear outside the FFN ranges is the SSM's projections
    ffn_linear = sum(e.cpu_time_total for e in prof.events()
                     if e.name == "aten::linear" and _inside(e, "ffn")) / 1e6
    shares = {"kernel": cpu.get("kernel", 0.0), "ffn": cpu.get("ffn", 0.0),
              "projections": cpu.get("aten::linear", 0.0) - ffn_linear,
              "fft": sum(v for k, v in self_cpu.items() if "fft" in k)}
    profiled = sum(self_cpu.values())
    return {"encode_s": total, **{k: v / profiled for k, v in shares.items()}}


def _inside(event, name: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == name:
            return True
        parent = parent.cpu_parent
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="main", help="git revision to compare against")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-length", type=int, default=4096, help="0 skips the train step")
    parser.add_argument("--target-len", type=int, default=128)
    parser.add_argument("--profile", type=int, default=0, help="also profile one encode at this length")
    parser.add_argument("--bf16", action="store_true", help="also time after, after+reuse in bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(1)
    before_module = load_before(args.before)

    after = build("locost", "small").model.eval()
    config = after.config
    before = before_module.LocostForConditionalGeneration(config).eval()
    before.load_state_dict(after.state_dict())
    reuse = LocostForConditionalGeneration(config.__class__(**{**config.to_dict(), "reuse_kernel": True}))
    reuse.load_state_dict(after.state_dict())
    reuse.eval()
    longt5 = build("longt5-local", "small").model.eval()
    kernels = [m for m in after.modules() if m.__class__.__name__ == "LocostS4DKernel"]
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} interleaved rounds, medians; "
          f"load before: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)

    models = {"before": before, "after": after, "after+reuse": reuse, "longt5-local": longt5}
    for L in args.lengths:
        compare_encode(L, args.rounds, models, kernels, args.bf16)
    if args.profile:
        for name in ("before", "after"):
            shares = profile_shares(models[name], args.profile)
            print(f"profile encode L={args.profile} {name}: " + ", ".join(
                f"{k} {v:.3f} s" if k == "encode_s" else f"{k} {v:.1%}" for k, v in shares.items()),
                flush=True)

    if args.train_length:
        L = args.train_length
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(2, config.vocab_size, (1, L), generator=g)
        labels = torch.randint(2, config.vocab_size, (1, args.target_len), generator=g)

        def step(model):
            model.train()
            model(input_ids=ids, labels=labels, use_cache=False).loss.backward()
            model.zero_grad(set_to_none=True)

        times = {"before": [], "after": []}
        for _ in range(args.rounds):
            times["before"].append(cpu_time(lambda: step(before)))
            times["after"].append(cpu_time(lambda: step(after)))
        med = {name: statistics.median(values) for name, values in times.items()}
        print(f"train step L={L} target={args.target_len}: before {med['before']:.3f} s, after "
              f"{med['after']:.3f} s, before/after {med['before'] / med['after']:.2f}x")
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
