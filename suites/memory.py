"""The memory suite: peak memory of training and generation per model and input length.

CPU default (sized for a 2-core, 24 GB machine, about 20 minutes when nothing else runs):
``small`` presets (~55M parameters), fp32, batch 1, train = forward + backward with 128 target
tokens, generate = 16 new tokens (greedy), at 1K, 4K and 16K input tokens (a factor 4 apart: three
points per curve; 2K and 8K would add ~60% to the run). Cells up to 4K run one warm-up and one
timed step; the 16K cells run one step only (a step takes minutes there; the peak is the same, and
the time is a first-call time). FLOPs are counted for the 1K cells (cheap; they scale analytically).
Measured here (2 cores, 2026-11-23): LOCOST train at 16K holds 6,736 MiB above the model, one step
~1 min; LongT5-TGlobal train at 16K passes the default budget (~18 GiB), so it ends as ``oom``.
LOCOST-S4 trains at 16K too since its S4 kernel is a sqrt(L) factorisation of batched real products
(``models.ssm.s4``; with the earlier Cauchy kernel one step there passed the 600 s cell timeout).
GPU default: ``base`` presets, bf16 autocast, 512 target tokens, 64 new tokens, 1K-64K, encode too.
On a machine without a GPU the CPU default is joined by the GPU default simulated on an H100 80GB
(``bench.gpusim``; ``--no-simulate`` leaves it out), so that one report answers the paper's GPU claims.
"""

from bench.settings import Settings
from records.suites import MEMORY as MEMORY_REPORT
from suites.definition import K, Suite, Sweep

MEMORY = Suite(
    report=MEMORY_REPORT,
    description="peak memory above the built model, per model, mode and input length",
    cpu=Sweep(
        sizes=("small",), modes=("train", "generate"), lengths=(1 * K, 4 * K, 16 * K),
        target_len=128, new_tokens=16, batch=1, dtype="fp32",
        settings=Settings.of(warmup=1, warmup_max_len=4 * K, repeats=1, timeout_s=600.0, flops=True,
                             flops_max_len=1 * K),
    ),
    cuda=Sweep(
        sizes=("base",), modes=("train", "generate", "encode"),
        lengths=(1 * K, 2 * K, 4 * K, 8 * K, 16 * K, 32 * K, 64 * K),
        target_len=512, new_tokens=64, batch=1, dtype="bf16",
        settings=Settings.of(warmup=1, repeats=2, timeout_s=600.0, flops=True, flops_max_len=4 * K),
    ),
    simulated_beside_cpu="h100-80gb",
)
