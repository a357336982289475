"""Workloads: what a cell runs. ``prepare`` sets it up and returns the step to measure.

The model workload (the default) builds ``cell.family`` at ``cell.size`` on the cell's device, checks
the lengths (``UnsupportedLengthError`` before any big batch exists), makes the batch and returns
one of the handle's three operations. ``workload="module:function"`` names any other importable
``function(cell, **workload_args) -> Prepared``; the synthetic ones below (a known allocation, a
sleep, a failure) check the engine itself.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.cells import Cell
from bench.env import git_commit


@dataclass
class Prepared:
    step: Callable[[], object]
    #: ``models.ParamCounts`` of the measured model, None for synthetic workloads
    params: object | None = None
    #: counts the step's FLOPs on demand: (bench.flops.FlopCache or None) -> bench.flops.FlopCount
    count_flops: Callable[[object], object] | None = None
    #: SSM kernels the model has computed so far (LOCOST's S4D kernels count them); None: not counted
    kernel_builds: Callable[[], int] | None = None
    #: whether the model keeps and reuses its S4D kernels (``reuse_kernel``); None: it has none
    reuse_kernel: bool | None = None
    #: attention implementation the model runs (eager, sdpa, xformers, ...); None: not known
    attn_implementation: str | None = None


def model(cell: Cell, **config) -> Prepared:
    """The cell's model (``config``: fields that override its preset, e.g. cross_attention="absorbed")."""
    import torch

    from models import build

    torch.set_num_threads(cell.threads)
    handle = build(cell.family, cell.size, device=cell.device, **config)
    handle.check_lengths(cell.input_len, _decoder_len(cell), cell.batch)
    token_ids = torch.load(cell.inputs).long() if cell.inputs else None
    batch = handle.make_batch(cell.input_len, target_len=cell.target_len or 1, batch_size=cell.batch,
                              token_ids=token_ids)
    steps = {
        "train": lambda: handle.train_step(batch),
        "encode": lambda: handle.encode(batch),
        "generate": lambda: handle.generate(batch, cell.new_tokens),
    }

    def count_flops(cache=None):
        from bench.flops import count_flops, model_key  # torch: a synthetic cell's worker never imports it

        key = model_key(handle, family=cell.family, dtype=cell.dtype, code=git_commit())
        return count_flops(handle, batch, cell.mode, cache, key)

    # modules that count the kernels they compute (LOCOST's S4D kernel: ``builds``, ``reuse_kernel``)
    kernels = [m for m in handle.model.modules() if hasattr(m, "builds") and hasattr(m, "reuse_kernel")]
    return Prepared(step=steps[cell.mode], params=handle.params, count_flops=count_flops,
                    kernel_builds=(lambda: sum(m.builds for m in kernels)) if kernels else None,
                    reuse_kernel=any(m.reuse_kernel for m in kernels) if kernels else None,
                    attn_implementation=getattr(handle.model.config, "_attn_implementation", None))


def _decoder_len(cell: Cell) -> int:
    """Decoder positions a step of the cell uses: the targets, the new tokens + the start token, or 1."""
    return {"train": cell.target_len, "generate": (cell.new_tokens or 0) + 1}.get(cell.mode) or 1


@functools.cache
def _meta_handle(family: str, size: str, config: tuple):
    from models import build

    return build(family, size, device="meta", **dict(config))


def length_problem(cell: Cell) -> str | None:
    """The message a model cell would be recorded ``unsupported`` with (an input or target longer
    than the model's positions), from the model built on the meta device (no memory, no weights);
    None when the model takes the cell's lengths, or for a synthetic workload. Used by ``--dry-run``."""
    if resolve(cell) is not model:
        return None
    from models import UnsupportedLengthError

    try:
        _meta_handle(cell.family, cell.size, cell.workload_args).check_lengths(
            cell.input_len, _decoder_len(cell), cell.batch)
    except UnsupportedLengthError as exc:
        return str(exc).splitlines()[0]
    return None


def resolve(cell: Cell) -> Callable[..., Prepared]:
    if cell.workload is None:
        return model
    module_name, _, function_name = cell.workload.partition(":")
    function = getattr(importlib.import_module(module_name), function_name, None) if function_name else None
    if not callable(function):
        raise ValueError(f"workload {cell.workload!r} is not an importable 'module:function'")
    return function


def prepare(cell: Cell) -> Prepared:
    return resolve(cell)(cell, **dict(cell.workload_args))


# --- synthetic workloads: known behaviour, for checking the engine ------------------------------

def allocate(cell: Cell, mib: int, chunk_mib: int | None = None, pause_s: float = 0.0,
             resident_mib: int = 0) -> Prepared:
    """Each step touches ``mib`` MiB of fresh memory (in chunks of ``chunk_mib``, pausing
    ``pause_s`` after each) and frees it: the peak above base is ``mib`` MiB. Preparing it first
    holds ``resident_mib`` MiB (the same way) for the life of the process, as a model's weights are."""
    def touch(total: int) -> list:
        import numpy as np

        chunks, left = [], total
        while left > 0:
            size = min(chunk_mib or total, left)
            chunks.append(np.ones(size << 20, dtype=np.uint8))
            left -= size
            time.sleep(pause_s)
        return chunks

    def step():
        return sum(chunk.nbytes for chunk in touch(mib))

    step.resident = touch(resident_mib)  # held as long as the workload is
    return Prepared(step=step)


def sleep(cell: Cell, seconds: float, count_seconds: float = 0.0) -> Prepared:
    """Each step sleeps ``seconds``; counting its FLOPs sleeps ``count_seconds`` and finds none."""
    def count_flops(cache=None):
        from bench.flops import FlopCount
        time.sleep(count_seconds)
        return FlopCount(total=0.0, analytic=0.0, source="synthetic")
    return Prepared(step=lambda: time.sleep(seconds), count_flops=count_flops)


def fail(cell: Cell, message: str = "synthetic failure") -> Prepared:
    def step():
        raise RuntimeError(message)
    return Prepared(step=step)


def linear(cell: Cell, bytes_per_token: int, seconds_per_token: float) -> Prepared:
    """Each step holds ``input_len · bytes_per_token`` bytes of fresh memory for
    ``input_len · seconds_per_token`` seconds: time and memory both O(L), for checking fits."""
    import numpy as np

    def step():
        block = np.ones(cell.input_len * bytes_per_token, dtype=np.uint8)
        time.sleep(cell.input_len * seconds_per_token)
        return block.nbytes

    return Prepared(step=step)
