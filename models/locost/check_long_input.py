"""Long-input smoke check: the `small` preset (vocab 32128, float32, batch 1, random weights) encodes L
random tokens under no_grad, then greedily generates N tokens from that encoder output.

    OMP_NUM_THREADS=2 python -m models.locost.check_long_input 600000 64

Prints wall times and the process's peak RSS (ru_maxrss) after each phase. On a shared machine a watchdog
ends the process (exit 3) when MemAvailable drops below `--min-available-gib` (default 1).
`--random-encoder-output` skips the encoder and generates from a random (1, L, d_model) encoder output:
the generation phase's time and memory do not depend on the encoder output's values.
"""

import argparse
import os
import resource
import threading
import time

import torch
from transformers.modeling_outputs import BaseModelOutput

from models.locost import PRESETS, LocostConfig, LocostForConditionalGeneration


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def mem_available_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def watchdog(min_available_gib: float):
    while mem_available_gib() >= min_available_gib:
        time.sleep(0.2)
    print(f"watchdog: MemAvailable < {min_available_gib} GiB, peak RSS {peak_rss_gib():.2f} GiB", flush=True)
    os._exit(3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("length", type=int)
    parser.add_argument("new_tokens", type=int)
    parser.add_argument("--min-available-gib", type=float, default=1.0)
    parser.add_argument("--random-encoder-output", action="store_true")
    args = parser.parse_args()
    threading.Thread(target=watchdog, args=(args.min_available_gib,), daemon=True).start()

    torch.manual_seed(0)
    model = LocostForConditionalGeneration(LocostConfig(**PRESETS["small"], vocab_size=32128)).eval()
    model.generation_config.eos_token_id = None  # always generate exactly new_tokens
    ids = torch.randint(2, 32128, (1, args.length))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"L={args.length:,} params={params / 1e6:.1f}M threads={torch.get_num_threads()} "
        f"peak RSS after build {peak_rss_gib():.2f} GiB",
        flush=True,
    )
    start = time.time()
    if args.random_encoder_output:
        encoder_outputs = BaseModelOutput(last_hidden_state=torch.randn(1, args.length, model.config.d_model))
    else:
        with torch.no_grad():
            encoder_outputs = model.get_encoder()(input_ids=ids)
        hidden = encoder_outputs.last_hidden_state
        print(
            f"encode: {time.time() - start:.1f} s, finite={bool(torch.isfinite(hidden).all())}, "
            f"peak RSS {peak_rss_gib():.2f} GiB",
            flush=True,
        )
    encoded = time.time()
    if args.new_tokens:
        out = model.generate(encoder_outputs=encoder_outputs, max_new_tokens=args.new_tokens, do_sample=False)
        print(
            f"generate {out.shape[1] - 1} tokens: {time.time() - encoded:.1f} s after encoding, "
            f"peak RSS {peak_rss_gib():.2f} GiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
