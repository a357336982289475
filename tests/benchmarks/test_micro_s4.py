"""Micro-benchmarks of the S4 kernel (NPLR, Cauchy) beside LOCOST's S4D kernel at the same H and N.

``nox -s bench-micro`` runs the pytest-benchmark cases (forward kernel of H = 512 channels, N = 64,
bidirectional, float32). Run as a script for an interleaved A/B comparison (one S4 kernel, one S4D
kernel, alternating, median of the rounds; 1 thread):

    PYTHONPATH=$PWD python tests/benchmarks/test_micro_s4.py --lengths 4096,65536 --d-state 64,256 --rounds 5
"""

import argparse
import statistics
import time

import pytest
import torch

from models.locost.configuration_locost import LocostConfig
from models.locost.modeling_locost import LocostS4DKernel
from models.ssm.s4 import S4Kernel

pytestmark = pytest.mark.benchmark(min_rounds=3, max_time=0.5, warmup=False)

H = 512


def kernels(d_state: int) -> dict[str, torch.nn.Module]:
    """Both kernels at their inits (S4D-Lin, HiPPO-LegS), H channels, N = d_state, c = 2."""
    torch.manual_seed(0)
    s4d = LocostS4DKernel(LocostConfig(d_model=H, d_state=d_state))
    s4d.reset_parameters()
    s4 = S4Kernel(H, d_state)
    s4.reset_parameters()
    return {"s4d": s4d, "s4": s4}


@pytest.mark.parametrize("name", ["s4d", "s4"])
@pytest.mark.parametrize("L", [1024, 4096])
def test_kernel_forward(benchmark, name, L):
    kernel = kernels(64)[name]
    benchmark.extra_info.update(H=H, N=64, L=L, threads=torch.get_num_threads())
    with torch.no_grad():
        K = benchmark(kernel, L)
    assert K.shape == (2, H, L) and torch.isfinite(K).all()


def interleaved(lengths: list[int], d_states: list[int], rounds: int) -> None:
    torch.set_num_threads(1)
    for d_state in d_states:
        pair = kernels(d_state)
        for L in lengths:
            times = {name: [] for name in pair}
            with torch.no_grad():
                for _ in range(rounds):
                    for name, kernel in pair.items():
                        start = time.perf_counter()
                        kernel(L)
                        times[name].append(time.perf_counter() - start)
            ms = {name: [1e3 * x for x in t] for name, t in times.items()}
            medians = {name: statistics.median(t) for name, t in ms.items()}
            parts = [f"{name} {medians[name]:.1f} ms [{min(t):.1f}-{max(t):.1f}]" for name, t in ms.items()]
            ratio = medians["s4"] / medians["s4d"]
            print(f"H={H} N={d_state} L={L}: {', '.join(parts)}; s4/s4d = {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="4096,65536")
    parser.add_argument("--d-state", default="64,256")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    interleaved([int(x) for x in args.lengths.split(",")], [int(x) for x in args.d_state.split(",")],
                args.rounds)
