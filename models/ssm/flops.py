"""Analytic FLOPs of the S4 kernel (``models.ssm.s4``) that fvcore misses or undercounts.

Conventions as in ``bench.flops`` (real floating-point operations, a multiply-add counting 2). Per kernel
call with H channels, N = 2M state dimensions, c output vectors, F = L//2 + 1 frequencies and V = 2c + 2
Cauchy rows: the Cauchy denominators and reciprocals 2 H M F x 14 (a complex product, sum and reciprocal
per frequency and mode); the complex multiply-adds of the batched Cauchy product (2 H V M F) and of the
floor(log2 L) squarings of the dense N x N A_bar (H N^3 each), which fvcore counts as real ones (2), at 6
more each; the Woodbury combination c H F x 20; the inverse FFT c H x 2.5 L log2 L. The FFT convolution
that applies the kernel is counted by the model's own hook (``models.locost.flops.fft_conv_flops``).
"""

from __future__ import annotations

import math


def s4_kernel_analytic_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """What fvcore misses or undercounts in one ``S4Kernel`` call (see the module notes)."""
    H, M, c, L = channels, modes, kernels, length
    F, rows, squarings = L // 2 + 1, 2 * kernels + 2, max(0, L.bit_length() - 1)
    cauchy = 2 * H * M * F * 14 + 6 * 2 * H * rows * M * F + 20 * c * H * F
    return cauchy + 6 * squarings * H * (2 * M) ** 3 + c * H * 2.5 * L * math.log2(max(L, 2))
