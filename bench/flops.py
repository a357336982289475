"""FLOPs of a cell's step: fvcore's count of the traced forward plus analytic counts of what it
cannot see (LOCOST's FFT convolution and the elementwise part of its S4D kernel).

Conventions (every figure is in real floating-point operations, a multiply-add counting 2):

- fvcore counts one per multiply-add of matmuls, linears, einsums, bmm and convolutions; we double
  it. Elementwise ops, softmax and activations are not counted, for any model. fvcore cannot trace
  ``scaled_dot_product_attention``; we count its two products (Q K^T and P V) like a matmul.
- LOCOST, per SSM layer on u (B, L, H) with M = N/2 complex modes, FFT size n >= 2L:
  forward FFT convolution = H (2B + 1) transforms (rfft of the filter, of the input, irfft of the
  product) x 2.5 n log2 n, plus B H (n/2 + 1) complex products x 6. The kernel's batched matmul is
  seen by fvcore; its complex exponentials H M (T + J) and the scaling c H J M (6 each) are
  analytic (an exponential counted as 1).
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


def fft_conv_flops(batch: int, length: int, channels: int, n: int) -> float:
    transforms = channels * (2 * batch + 1)
    return transforms * 2.5 * n * math.log2(n) + 6 * batch * channels * (n // 2 + 1)


def _kernel_split(kernels: int, length: int) -> tuple[int, int]:
    """(T, J) of the sqrt(L) factorisation l = j T + t in ``models.locost.ssm.ssm_kernel``."""
    T = min(length, math.ceil(math.sqrt(kernels * length)))
    return T, math.ceil(length / T)


def s4d_kernel_elementwise_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    T, J = _kernel_split(kernels, length)
    return channels * modes * (T + J) + 6 * kernels * channels * J * modes


def s4d_kernel_matmul_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """The kernel's batched product (H, c J, 2M) @ (H, 2M, T), which fvcore counts itself."""
    T, J = _kernel_split(kernels, length)
    return 2 * channels * kernels * J * 2 * modes * T


def _ssm_layers(model: nn.Module) -> list[nn.Module]:
    try:
        from models.locost.modeling_locost import LocostSSM
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, LocostSSM)]


def ssm_fft_size(length: int) -> int:
    from models.locost.ssm import fast_fft_size
    return fast_fft_size(2 * length)


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

    def on_ssm(module, args, output):
        nonlocal analytic
        # under the jit trace sizes can be 0-d tensors: make them ints so the counts stay plain numbers
        B, L, H = (int(s) for s in args[0].shape)
        kernels, _, modes, _ = (int(s) for s in module.kernel.C.shape)
        analytic += fft_conv_flops(B, L, H, ssm_fft_size(L))
        analytic += s4d_kernel_elementwise_flops(H, modes, kernels, L)

    layers = _ssm_layers(model)
    hooks = [layer.register_forward_hook(on_ssm) for layer in layers]
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
    source = "fvcore+analytic" if layers else "fvcore"
    if mode == "train":
        source += " (train = 3 x forward)"
    return FlopCount(total=factor * (counted + analytic), analytic=factor * analytic, source=source)
