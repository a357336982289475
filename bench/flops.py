"""FLOPs of a cell's step: fvcore's count of the traced forward plus the model's analytic counts of
what fvcore cannot see (``ModelHandle.analytic_flop_hooks``; LOCOST's in ``models.locost.flops``).

Conventions (every figure is in real floating-point operations, a multiply-add counting 2):

- fvcore counts one per multiply-add of matmuls, linears, einsums, bmm and convolutions; we double
  it. Elementwise ops, softmax and activations are not counted, for any model. fvcore cannot trace
  ``scaled_dot_product_attention``; we count its two products (Q K^T and P V) like a matmul.
- A family's analytic hooks add what fvcore misses (LOCOST: its FFT convolution and the elementwise
  part of its S4D kernel; S4 kernels, in LOCOST-S4 and SPADE: the FFT terms analytic and the kernel's
  products traced; the formulas of all of them are in ``models.ssm.flops``).
- Encode: encoder forward. Train: forward with labels x 3 (backward taken as 2 x forward, labelled
  in ``source``); the model is traced under ``no_grad`` in eval mode (same products as training).
- The forward is counted in two parts, each traced once per model config, shapes, dtype and code
  (``FlopCache``, ``flops.jsonl`` in the run directory): the encoder on the input, and the decoder
  (with the output projection) on the encoder's output and the labels. An encode cell needs the
  first, a train cell both, so cells of both modes, and every resume, share the traces.
  ``count_flops_ref`` traces the whole model at once, the reference the parts add up to.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from records import append_jsonl, read_jsonl

TRAIN_FACTOR = 3  # forward + backward ~ 2 x forward
#: the forward's parts a mode's step runs
PARTS = {"encode": ("encoder",), "train": ("encoder", "decoder")}
#: what the encoder alone reads of a batch; the decoder part reads the rest and the encoder's output
ENCODER_INPUTS = ("input_ids",)


@dataclass
class FlopCount:
    total: float
    analytic: float
    source: str


class _Traced(nn.Module):
    """Calls the model, its encoder (``part="encoder"``) or its decoder on a given encoder output
    (``part="decoder"``, the first tensor) with positional tensors and plain outputs, as fvcore needs
    (it cannot trace Hugging Face cache objects or output dataclasses)."""

    def __init__(self, model: nn.Module, keys: list[str], part: str):
        super().__init__()
        self.model, self.keys, self.part = model, keys, part

    def forward(self, *tensors):
        if self.part == "decoder":
            encoder_output, *tensors = tensors
            return self.model(**dict(zip(self.keys, tensors, strict=True)), encoder_outputs=(encoder_output,),
                              use_cache=False, return_dict=False)[0]
        inputs = dict(zip(self.keys, tensors, strict=True))
        if self.part == "encoder":
            return self.model.get_encoder()(**inputs, return_dict=False)[0]
        return self.model(**inputs, use_cache=False, return_dict=False)[0]


def _sdpa_flop_jit(inputs, outputs) -> int:
    from fvcore.nn.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def _encoder_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("labels", "decoder_input_ids")}


def _trace(handle, batch: dict, part: str) -> tuple[float, float]:
    """(fvcore's FLOPs doubled, analytic FLOPs) of one forward of ``part``: "encoder", "decoder"
    (output projection included) or "model" (both at once)."""
    from fvcore.nn import FlopCountAnalysis

    model, analytic = handle.model, 0.0

    def add(flops: float) -> None:
        nonlocal analytic
        analytic += flops

    was_training = model.training
    model.eval()
    hooks = []
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs, first = (_encoder_inputs(batch) if part == "encoder" else batch), ()
            if part == "decoder":
                first = (model.get_encoder()(**_encoder_inputs(batch), return_dict=False)[0],)
                inputs = {k: v for k, v in batch.items() if k not in ENCODER_INPUTS}
            hooks = handle.analytic_flop_hooks(add)  # after the untraced encoder run above
            keys = list(inputs)
            analysis = FlopCountAnalysis(_Traced(model, keys, part), (*first, *(inputs[k] for k in keys)))
            analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            counted = 2.0 * analysis.total()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return counted, analytic


def _count(mode: str, counted: float, analytic: float, hooked: bool) -> FlopCount:
    factor = TRAIN_FACTOR if mode == "train" else 1
    source = "fvcore+analytic" if hooked else "fvcore"
    if mode == "train":
        source += " (train = 3 x forward)"
    return FlopCount(total=factor * (counted + analytic), analytic=factor * analytic, source=source)


def _check_mode(mode: str) -> None:
    if mode not in PARTS:
        raise ValueError(f"FLOPs are counted for train and encode, not {mode!r}")


def count_flops(handle, batch: dict, mode: str, cache: FlopCache | None = None, key: dict | None = None
                ) -> FlopCount:
    """FLOPs of one ``mode`` step (``train`` or ``encode``) of ``handle`` on ``batch``: the sum of its
    parts (``PARTS``), each taken from ``cache`` when it holds the part under ``key`` (``model_key``)
    and the shapes the part reads, traced (and added to the cache) otherwise. Raises ``ValueError``
    for another mode."""
    _check_mode(mode)
    counted = analytic = 0.0
    for part in PARTS[mode]:
        read = batch if part == "decoder" else _encoder_inputs(batch)
        full_key = {**(key or {}), "part": part,
                    "shapes": {name: list(tensor.shape) for name, tensor in sorted(read.items())}}
        known = cache.get(full_key) if cache is not None else None
        if known is None:
            known = dict(zip(("counted", "analytic"), _trace(handle, batch, part), strict=True))
            if cache is not None:
                cache.put(full_key, known)
        counted, analytic = counted + known["counted"], analytic + known["analytic"]
    return _count(mode, counted, analytic, _hooked(handle))


def count_flops_ref(handle, batch: dict, mode: str) -> FlopCount:
    """``count_flops`` by one trace of the whole step's forward (no parts, no cache): the reference."""
    _check_mode(mode)
    counted, analytic = _trace(handle, batch, "encoder" if mode == "encode" else "model")
    return _count(mode, counted, analytic, _hooked(handle))


def _hooked(handle) -> bool:
    hooks = handle.analytic_flop_hooks(lambda flops: None)
    for hook in hooks:
        hook.remove()
    return bool(hooks)


def model_key(handle, *, family: str, dtype: str, code: str | None) -> dict:
    """What a part's count depends on besides the part and its shapes: the family, a hash of the
    model's whole config (another size or a ``--model-config`` field is another key), the autocast
    dtype, the device type, the code (``code``: the git commit) and the torch version."""
    config = json.dumps(handle.model.config.to_dict(), sort_keys=True, default=str)
    return {"family": family, "config": hashlib.sha1(config.encode()).hexdigest()[:16], "dtype": dtype,
            "device": handle.device.type, "code": code, "torch": torch.__version__}


class FlopCache:
    """Counts of forward parts in a JSONL file (``flops.jsonl`` of a run directory), one line
    ``{"key": ..., "counted": ..., "analytic": ...}`` per part traced (one forward, fvcore's count
    doubled and the analytic one), appended under a lock (``records.append_jsonl``), so that cells
    measured at once may add to it; the latest line of a key counts."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def get(self, key: dict) -> dict | None:
        rows, _ = read_jsonl(self.path)
        key = _canonical(key)
        return next((row for row in reversed(rows) if _canonical(row.get("key")) == key), None)

    def put(self, key: dict, counts: dict) -> None:
        append_jsonl(self.path, {"key": key, **counts})


def _canonical(key) -> str:
    return json.dumps(key, sort_keys=True)
