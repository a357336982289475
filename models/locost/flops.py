"""Analytic FLOPs of the parts of LOCOST that fvcore cannot see (its FFT convolution and the
elementwise part of its S4D kernel, or the S4 kernel's terms of ``models.ssm.flops`` with
``ssm_kernel="s4"``), counted per call of each ``LocostSSM`` layer.

``bench.flops.count_flops`` adds them to fvcore's count through ``analytic_flop_hooks``, which
``models.families`` attaches to the LOCOST family (``ModelHandle.analytic_flop_hooks``).
Conventions (real floating-point operations, a multiply-add counting 2), per SSM layer on u of
shape (B, L, H) with M = N/2 complex modes, c kernels and FFT size n >= 2L (``ssm_fft_size``):

- FFT convolution (``models.locost.ssm``): H (2B + 1) transforms (rfft of the filter and of the
  input, irfft of the product) x 2.5 n log2 n, plus B H (n/2 + 1) complex products x 6.
- S4D kernel (``models.locost.ssm.ssm_kernel``, factorised l = j T + t with T = ceil(sqrt(c L))):
  the complex exponentials H M (T + J) (an exponential counted as 1) and the scaling c H J M x 6.
  Its batched product (H, c J, 2M) @ (H, 2M, T) is traced by fvcore (``s4d_kernel_matmul_flops``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn


def fft_conv_flops(batch: int, length: int, channels: int, n: int) -> float:
    """FLOPs of the FFT convolution of ``batch`` x ``channels`` sequences with FFT size ``n``."""
    transforms = channels * (2 * batch + 1)
    return transforms * 2.5 * n * math.log2(n) + 6 * batch * channels * (n // 2 + 1)


def _kernel_split(kernels: int, length: int) -> tuple[int, int]:
    """(T, J) of the sqrt(L) factorisation l = j T + t in ``models.locost.ssm.ssm_kernel``."""
    T = min(length, math.ceil(math.sqrt(kernels * length)))
    return T, math.ceil(length / T)


def s4d_kernel_elementwise_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """The kernel's exponentials and scaling (what fvcore does not count)."""
    T, J = _kernel_split(kernels, length)
    return channels * modes * (T + J) + 6 * kernels * channels * J * modes


def s4d_kernel_matmul_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """The kernel's batched product (H, c J, 2M) @ (H, 2M, T), which fvcore counts itself."""
    T, J = _kernel_split(kernels, length)
    return 2 * channels * kernels * J * 2 * modes * T


def ssm_fft_size(length: int) -> int:
    from models.locost.ssm import fast_fft_size
    return fast_fft_size(2 * length)


def analytic_flop_hooks(model: nn.Module, add: Callable[[float], None]) -> list:
    """Forward hooks on every ``LocostSSM`` of ``model`` that call ``add(flops)`` with each call's
    analytic FLOPs; remove them (``hook.remove()``) when done. No SSM layer: no hooks."""
    from models.locost.modeling_locost import LocostSSM

    def on_ssm(module, args, output):
        # under the jit trace sizes can be 0-d tensors: make them ints so the counts stay plain numbers
        B, L, H = (int(s) for s in args[0].shape)
        add(fft_conv_flops(B, L, H, ssm_fft_size(L)) + kernel_flops(module.kernel, H, L))

    return [m.register_forward_hook(on_ssm) for m in model.modules() if isinstance(m, LocostSSM)]


def kernel_flops(kernel: nn.Module, channels: int, length: int) -> float:
    """Analytic FLOPs of one call of an S4D kernel or of an S4 kernel (``models.ssm.flops``)."""
    from models.ssm.flops import s4_kernel_analytic_flops
    from models.ssm.s4 import S4Kernel

    kernels, _, modes, _ = (int(s) for s in kernel.C.shape)
    if isinstance(kernel, S4Kernel):
        return s4_kernel_analytic_flops(channels, modes, kernels, length)
    return s4d_kernel_elementwise_flops(channels, modes, kernels, length)
