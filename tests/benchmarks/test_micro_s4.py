"""Micro-benchmarks of the S4 kernel (NPLR, real sqrt(L) factorisation) beside LOCOST's S4D kernel.

``nox -s bench-micro`` runs the pytest-benchmark cases: the forward kernel, and forward + backward,
of H = 512 channels, bidirectional, float32, at the `small` presets' d_state (S4: N = 64, S4D: N = 256).
Run as a script (1 thread, process CPU time) for

- ``--kernels``: S4 and S4D kernels alone, interleaved, median of the rounds;
- ``--profile L``: one LOCOST-S4 `small` training step at L split into kernel forward, kernel backward,
  FFT convolution (forward + backward) and the rest; ``--before REV`` profiles the S4 kernel of git
  revision REV (``models/ssm/s4.py``) on the same weights too, with its C~ = C (I - A_bar^L) if it has one;
- ``--ratios L,...``: LOCOST-S4 against LOCOST (`small`, batch 1, 128 target tokens): training steps and
  encodes, interleaved in one process, medians over ``--rounds``.

    PYTHONPATH=$PWD python tests/benchmarks/test_micro_s4.py --profile 2048 --before main
    PYTHONPATH=$PWD python tests/benchmarks/test_micro_s4.py --ratios 4096,16384 --rounds 3
"""

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
import types
from pathlib import Path

import pytest
import torch

from models import build
from models.locost.configuration_locost import LocostConfig
from models.locost.modeling_locost import LocostS4DKernel
from models.ssm.fftconv import fft_conv
from models.ssm.s4 import S4Kernel

pytestmark = pytest.mark.benchmark(min_rounds=3, max_time=0.5, warmup=False)

H = 512
D_STATE = {"s4d": 256, "s4": 64}  # the `small` presets of locost and locost-s4


def kernels(d_state: dict[str, int] = D_STATE) -> dict[str, torch.nn.Module]:
    """Both kernels at their inits (S4D-Lin, HiPPO-LegS), H channels, c = 2."""
    torch.manual_seed(0)
    s4d = LocostS4DKernel(LocostConfig(d_model=H, d_state=d_state["s4d"]))
    s4d.reset_parameters()
    s4 = S4Kernel(H, d_state["s4"])
    s4.reset_parameters()
    return {"s4d": s4d, "s4": s4}


@pytest.mark.parametrize("name", ["s4d", "s4"])
@pytest.mark.parametrize("L", [1024, 4096])
def test_kernel_forward(benchmark, name, L):
    kernel = kernels()[name]
    benchmark.extra_info.update(H=H, N=D_STATE[name], L=L, threads=torch.get_num_threads())
    with torch.no_grad():
        K = benchmark(kernel, L)
    assert K.shape == (2, H, L) and torch.isfinite(K).all()


@pytest.mark.parametrize("name", ["s4d", "s4"])
@pytest.mark.parametrize("L", [1024, 4096])
def test_kernel_forward_backward(benchmark, name, L):
    kernel = kernels()[name]
    weights = torch.randn(2, H, L, generator=torch.Generator().manual_seed(0))
    benchmark.extra_info.update(H=H, N=D_STATE[name], L=L, threads=torch.get_num_threads())

    def step():
        (kernel(L) * weights).sum().backward()
        kernel.zero_grad(set_to_none=True)

    benchmark(step)
    assert all(p.grad is None for p in kernel.parameters())


def cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def medians(variants: dict, rounds: int) -> dict[str, float]:
    """Median process CPU time of each variant over `rounds`, the variants interleaved in every round."""
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(cpu_time(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def interleaved_kernels(lengths: list[int], rounds: int) -> None:
    pair = kernels()
    for L in lengths:
        with torch.no_grad():
            med = medians({name: (lambda k=k, L=L: k(L)) for name, k in pair.items()}, rounds)
        print(f"kernel forward H={H} L={L}: s4 (N=64) {med['s4']:.3f} s, s4d (N=256) {med['s4d']:.3f} s, "
              f"s4/s4d {med['s4'] / med['s4d']:.2f}x", flush=True)


def load_before(ref: str) -> types.ModuleType:
    """``models/ssm/s4.py`` at git revision ``ref`` as a module."""
    text = subprocess.run(["git", "show", f"{ref}:models/ssm/s4.py"], check=True, capture_output=True,
                          text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="s4_before_")) / "s4_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("s4_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def use_kernel_of(model, module: types.ModuleType) -> list[S4Kernel]:
    """Every S4Kernel of `model` computes its kernel with `module`'s S4Kernel.forward (same weights)."""
    layers = [m for m in model.modules() if isinstance(m, S4Kernel)]
    for layer in layers:
        layer.forward = types.MethodType(module.S4Kernel.forward, layer)
    return layers


def profile_step(handle, L: int, rounds: int, before: types.ModuleType | None) -> dict[str, float]:
    """Seconds of one training step at L and of its parts (medians over rounds, interleaved)."""
    batch = handle.make_batch(L, 128)
    layers = [m for m in handle.model.modules() if isinstance(m, S4Kernel)]
    u = torch.randn(1, L, H, requires_grad=True)
    weights = torch.randn(2, H, L)

    def kernel_forward():
        with torch.no_grad():
            for layer in layers:
                layer(L)

    def kernel_forward_backward():
        for layer in layers:
            (layer(L) * weights).sum().backward()
        handle.model.zero_grad(set_to_none=True)

    def fft():
        K = torch.randn(2, H, L, requires_grad=True)
        for _ in layers:
            fft_conv(u, K).square().mean().backward()

    variants = {"step": lambda: handle.train_step(batch), "kernel forward": kernel_forward,
                "kernel forward+backward": kernel_forward_backward, "fft conv forward+backward": fft}
    if before is not None and hasattr(before, "s4_C_tilde"):
        def C_tilde():
            for layer in layers:
                params = (layer.log_dt, layer.Lambda_re_log, layer.Lambda_im, layer.P, layer.B, layer.C)
                dt, Lambda, P, _, C = before.s4_parameters(*params)
                (torch.view_as_real(before.s4_C_tilde(dt, Lambda, P, C, L)) * 1.0).sum().backward()
            handle.model.zero_grad(set_to_none=True)
        variants["C~ forward+backward"] = C_tilde
    med = medians(variants, rounds)
    med["kernel backward"] = med["kernel forward+backward"] - med["kernel forward"]
    # LocostSSM checkpoints the S4 kernel: a training step computes it twice, and backward once
    med["rest"] = med["step"] - med["kernel forward"] - med["kernel forward+backward"] - med[
        "fft conv forward+backward"]
    return med


def ratios(lengths: list[int], rounds: int) -> None:
    handles = {name: build(name, "small") for name in ("locost", "locost-s4")}
    for L in lengths:
        batches = {name: handle.make_batch(L, 128) for name, handle in handles.items()}
        for mode in ("train", "encode"):
            step = "train_step" if mode == "train" else "encode"
            med = medians({name: (lambda fn=getattr(h, step), b=batches[name]: fn(b))
                           for name, h in handles.items()}, rounds)
            print(f"{mode} L={L}: locost {med['locost']:.2f} s, locost-s4 {med['locost-s4']:.2f} s, "
                  f"locost-s4/locost {med['locost-s4'] / med['locost']:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default="", help="comma list of lengths for the kernels alone")
    parser.add_argument("--profile", type=int, default=0, help="profile a LOCOST-S4 training step at L")
    parser.add_argument("--before", default="", help="git revision whose S4 kernel to profile too")
    parser.add_argument("--ratios", default="", help="comma list of lengths for LOCOST-S4 / LOCOST")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, process CPU time, medians of {args.rounds} interleaved "
          f"rounds; load {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    if args.kernels:
        interleaved_kernels([int(x) for x in args.kernels.split(",")], args.rounds)
    if args.profile:
        handle = build("locost-s4", "small")
        variants = {"after": None}
        if args.before:
            variants = {"before": load_before(args.before), **variants}
        for name, module in variants.items():
            use_kernel_of(handle.model, module or importlib.import_module("models.ssm.s4"))
            med = profile_step(handle, args.profile, args.rounds, module)
            print(f"profile L={args.profile} {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()),
                  flush=True)
    if args.ratios:
        ratios([int(x) for x in args.ratios.split(",")], args.rounds)
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
