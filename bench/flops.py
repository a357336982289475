"""FLOPs of a cell's step: fvcore's count of the traced forward plus the model's analytic counts of
what fvcore cannot see (``ModelHandle.analytic_flop_hooks``; LOCOST's in ``models.locost.flops``).

Conventions (every figure is in real floating-point operations, a multiply-add counting 2):

- fvcore counts one per multiply-add of matmuls, linears, einsums, bmm and convolutions; we double
  it. Elementwise ops, softmax and activations are not counted, for any model. fvcore cannot trace
  ``scaled_dot_product_attention``; we count its two products (Q K^T and P V) like a matmul.
- A family's analytic hooks add what fvcore misses (LOCOST: its FFT convolution and the elementwise
  part of its S4D kernel; the formulas are in ``models.locost.flops``; S4 kernels, in LOCOST-S4 and
  SPADE: ``models.ssm.flops``, with the Cauchy and FFT terms analytic).
- Encode: encoder forward. Train: forward with labels x 3 (backward taken as 2 x forward, labelled
  in ``source``); the model is traced under ``no_grad`` in eval mode (same products as training).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

TRAIN_FACTOR = 3  # forward + backward ~ 2 x forward


@dataclass
class FlopCount:
    total: float
    analytic: float
    source: str


class _Traced(nn.Module):
    """Calls the model (or its encoder) with positional tensors and plain outputs, as fvcore needs
    (it cannot trace Hugging Face cache objects or output dataclasses)."""

    def __init__(self, model: nn.Module, keys: list[str], encoder_only: bool):
        super().__init__()
        self.model, self.keys, self.encoder_only = model, keys, encoder_only

    def forward(self, *tensors):
        inputs = dict(zip(self.keys, tensors, strict=True))
        if self.encoder_only:
            return self.model.get_encoder()(**inputs, return_dict=False)[0]
        return self.model(**inputs, use_cache=False, return_dict=False)[0]


def _sdpa_flop_jit(inputs, outputs) -> int:
    from fvcore.nn.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def count_flops(handle, batch: dict, mode: str) -> FlopCount:
    """FLOPs of one ``mode`` step (``train`` or ``encode``) of ``handle`` on ``batch``."""
    from fvcore.nn import FlopCountAnalysis

    if mode not in ("train", "encode"):
        raise ValueError(f"FLOPs are counted for train and encode, not {mode!r}")
    model = handle.model
    encoder_only = mode == "encode"
    if encoder_only:
        batch = {k: v for k, v in batch.items() if k not in ("labels", "decoder_input_ids")}
    keys = list(batch)
    analytic = 0.0

    def add(flops: float) -> None:
        nonlocal analytic
        analytic += flops

    hooks = handle.analytic_flop_hooks(add)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(_Traced(model, keys, encoder_only), tuple(batch[k] for k in keys))
            analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            counted = 2.0 * analysis.total()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    factor = TRAIN_FACTOR if mode == "train" else 1
    source = "fvcore+analytic" if hooks else "fvcore"
    if mode == "train":
        source += " (train = 3 x forward)"
    return FlopCount(total=factor * (counted + analytic), analytic=factor * analytic, source=source)
