"""The throughput suite: input tokens (and generated tokens) per second per model and input length.

CPU default: ``small`` presets, fp32 and bf16 autocast (SSM kernels and FFTs stay float32; bf16 only on a
CPU with native bf16 matmul, ``bench.env.cpu_native_bf16``), batch 1,
train (128 target tokens), encode and generate (16 new tokens) at 1K-4K input tokens, one warm-up
then at least three timed runs (every family in every cell: LOCOST-S4's training step, 356 s at 4K
before its S4 kernel's rewrite, took 10.1 s at 2K on 1 thread on 2026-12-06). GPU default: ``base``
presets, bf16 autocast, 512 target tokens, 64 new tokens, 1K-64K, two warm-ups and at least five
timed runs adding up to a second or more.

Each record keeps the first call at its length apart (``first_call_s``: the first warm-up step, where
LOCOST with ``reuse_kernel`` still builds its kernels and caches are cold) from the median of the
timed steps; the command prints both tables and the CSVs carry both columns.
"""

from bench.env import cpu_native_bf16
from bench.settings import Settings
from records.suites import THROUGHPUT as THROUGHPUT_REPORT
from suites.definition import Drop, K, Suite, Sweep

THROUGHPUT = Suite(
    report=THROUGHPUT_REPORT,
    description="tokens per second per model, mode and input length",
    cpu=Sweep(
        sizes=("small",), modes=("train", "encode", "generate"), lengths=(1 * K, 2 * K, 4 * K),
        target_len=128, new_tokens=16, batch=1, dtype=("fp32", "bf16"),
        settings=Settings.of(warmup=1, repeats=3, min_time_s=0.0, timeout_s=300.0, flops=False),
        drop=(Drop(None, None, 0, "this CPU has no native bf16 matmul (no AVX512-BF16 or AMX for oneDNN), so "
                   "bf16 autocast would time an emulation several times slower than fp32; --dtype bf16 "
                   "measures it", dtype="bf16", machine=lambda: not cpu_native_bf16()),),
    ),
    cuda=Sweep(
        sizes=("base",), modes=("train", "encode", "generate"),
        lengths=(1 * K, 2 * K, 4 * K, 8 * K, 16 * K, 32 * K, 64 * K),
        target_len=512, new_tokens=64, batch=1, dtype="bf16",
        settings=Settings.of(warmup=2, repeats=5, min_time_s=1.0, timeout_s=600.0, flops=False),
    ),
)
