"""Analytic FLOPs of the S4 kernel (``models.ssm.s4``) that fvcore misses.

Conventions as in ``bench.flops`` (real floating-point operations, a multiply-add counting 2). The kernel's
work is batched real products (``torch.bmm``: the doubling products and squarings of the N x N real
A_bar and the final (H, c J, N) @ (H, N, T) product of the sqrt(L) factorisation), which fvcore traces and
counts itself. It misses the elementwise construction of the real A_bar, diagonal plus a rank-1 term:
a product and a difference per entry, 2 H N^2 with N = 2M (the O(H M) discretisation is left out). The
FFT convolution that applies the kernel is counted by the model's own hook
(``models.locost.flops.fft_conv_flops``).
"""

from __future__ import annotations


def s4_kernel_analytic_flops(channels: int, modes: int, kernels: int, length: int) -> float:
    """What fvcore misses in one ``S4Kernel`` call of ``channels`` x ``modes`` (M = N/2) at any number of
    ``kernels`` and ``length`` (see the module notes)."""
    return 2.0 * channels * (2 * modes) ** 2
