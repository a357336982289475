"""Analytic FLOPs of the shared SSM pieces that fvcore cannot see: the FFT convolution
(``models.ssm.fftconv``), the elementwise part of the S4D kernel (``models.ssm.s4d``) and the S4 kernel's
A_bar (``models.ssm.s4``).

``bench.flops.count_flops`` adds them to fvcore's count through each family's ``analytic_flop_hooks``
(LOCOST's in ``models.locost.flops``, SPADE's in ``models.spade.modeling_spade``). Conventions (real
floating-point operations, a multiply-add counting 2), per SSM layer on u of shape (B, L, H) with M = N/2
complex modes, c kernels and FFT size n >= 2L (``ssm_fft_size``):

- FFT convolution: H (2B + 1) transforms (rfft of the filter and of the input, irfft of the product)
  x 2.5 n log2 n, plus B H (n/2 + 1) complex products x 6.
- S4D kernel (``models.ssm.s4d.ssm_kernel``, factorised l = j T + t with T = ceil(sqrt(c L))):
  the complex exponentials H M (T + J) (an exponential counted as 1) and the scaling c H J M x 6.
  Its batched product (H, c J, 2M) @ (H, 2M, T) is traced by fvcore (``s4d_kernel_matmul_flops``).
- S4 kernel (``models.ssm.s4.S4Kernel``): its work is batched real products (``torch.bmm``: the doubling
  products and squarings of the N x N real A_bar and the final (H, c J, N) @ (H, N, T) product of the
  sqrt(L) factorisation), which fvcore traces and counts itself. It misses the elementwise construction
  of the real A_bar, diagonal plus a rank-1 term: a product and a difference per entry, 2 H N^2 with
  N = 2M (the O(H M) discretisation is left out).
"""

from __future__ import annotations

import math

from torch import nn

from .fftconv import fast_fft_size
from .s4 import S4Kernel
from .s4d import kernel_split


def fft_conv_flops(batch: int, length: int, channels: int, n: int) -> float:
    """FLOPs of the FFT convolution of ``batch`` x ``channels`` sequences with FFT size ``n``."""
    transforms = channels * (2 * batch + 1)
    return transforms * 2.5 * n * math.log2(n) + 6 * batch * channels * (n // 2 + 1)


def ssm_fft_size(length: int) -> int:
    """FFT size n of ``fft_conv`` on ``length`` tokens (the smallest 5-smooth n >= 2 length)."""
    return fast_fft_size(2 * length)


def s4d_kernel_elementwise_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """The S4D kernel's exponentials and scaling (what fvcore does not count)."""
    T, J = kernel_split(kernels, length)
    return channels * modes * (T + J) + 6 * kernels * channels * J * modes


def s4d_kernel_matmul_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """The S4D kernel's batched product (H, c J, 2M) @ (H, 2M, T), which fvcore counts itself."""
    T, J = kernel_split(kernels, length)
    return 2 * channels * kernels * J * 2 * modes * T


def s4_kernel_analytic_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """What fvcore misses in one ``S4Kernel`` call of ``channels`` x ``modes`` (M = N/2) at any number of
    ``kernels`` and ``length``: the construction of the real A_bar (see the module notes)."""
    return 2.0 * channels * (2 * modes) ** 2


def kernel_flops(kernel: nn.Module, channels: int, length: int) -> float:
    """Analytic FLOPs of one call of an S4D kernel module or of an ``S4Kernel`` (either's ``C`` is
    (c, H, M, 2)) on ``channels`` x ``length``."""
    kernels, _, modes, _ = (int(s) for s in kernel.C.shape)
    if isinstance(kernel, S4Kernel):
        return s4_kernel_analytic_flops(channels, modes, kernels, length)
    return s4d_kernel_elementwise_flops(channels, modes, kernels, length)
