"""The memory suite: peak memory of training and generation per model and input length.

CPU default (sized for a 2-core, 24 GB machine): ``small`` presets (~55M parameters), fp32, batch 1,
train = forward + backward with 128 target tokens, generate = 16 new tokens (greedy), 1K-16K input
tokens; one warm-up and one timed run per cell (memory is what is measured; the peak covers both).
GPU default: ``base`` presets, bf16 autocast, 512 target tokens, 64 new tokens, 1K-64K.
"""

from suites import K, Suite, Sweep

MEMORY = Suite(
    name="memory",
    description="peak memory above the built model, per model, mode and input length",
    cpu=Sweep(
        sizes=("small",), modes=("train", "generate"), lengths=(1 * K, 2 * K, 4 * K, 8 * K, 16 * K),
        target_len=128, new_tokens=16, batch=1, dtype="fp32",
        warmup=1, repeats=1, timeout_s=300.0, flops=True, flops_max_len=2 * K,
    ),
    cuda=Sweep(
        sizes=("base",), modes=("train", "generate", "encode"),
        lengths=(1 * K, 2 * K, 4 * K, 8 * K, 16 * K, 32 * K, 64 * K),
        target_len=512, new_tokens=64, batch=1, dtype="bf16",
        warmup=1, repeats=2, timeout_s=600.0, flops=True, flops_max_len=4 * K,
    ),
)
