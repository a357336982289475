"""Causal and bidirectional FFT convolution of a sequence with SSM kernels, fast path beside its reference.

Shared by LOCOST (S4D kernels, ``models.ssm.s4d``), LOCOST-S4 and SPADE (S4 kernels, ``models.ssm.s4``).
Notation: B batch, L sequence length, H channels, c kernels per channel (c = 2 for bidirectional:
index 0 forward/causal, 1 backward/anti-causal; c = 1 for causal only), n FFT size.

Bidirectional convolution of u (B, L, H) with K (c, H, L) (LOCOST, arXiv 2401.17919):
    y[l] = sum_{j>=0} K_fwd[j] u[l - j] + sum_{j>=0} K_bwd[j] u[l + j]
so lag +j gets K_fwd[j], lag -j gets K_bwd[j] and lag 0 gets K_fwd[0] + K_bwd[0]; non-circular, n >= 2L.

The fast path (`fft_conv`, autograd `FFTConv`) saves only its real inputs for backward;
`bidirectional_conv_ref` is the direct loop over lags used by the tests, and `released_fast_conv` what
the released LOCOST code computes (for loading its checkpoints with its exact outputs).
"""

import math
from contextlib import nullcontext

import torch

__all__ = [
    "compute_dtype",
    "no_autocast",
    "fast_fft_size",
    "fft_conv",
    "FFTConv",
    "bidirectional_conv_ref",
    "released_fast_fft_size",
    "released_fast_conv",
]


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (kernels and FFTs never run in half precision)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def no_autocast(tensor: torch.Tensor):
    """Context that switches autocast off on `tensor`'s device, so matmuls/FFTs stay in full precision."""
    if torch.is_autocast_enabled(tensor.device.type):
        return torch.autocast(tensor.device.type, enabled=False)
    return nullcontext()


def fast_fft_size(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= n: a size every FFT library handles fast."""
    n = int(n)  # under torch.jit.trace (fvcore's FLOP counter) sizes arrive as 0-d tensors
    best = 1 << max(0, (n - 1).bit_length())  # the next power of two is always a candidate
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            m = power35
            while m < n:
                m *= 2
            best = min(best, m)
            power35 *= 3
        power5 *= 5
    return best


def _two_sided(K: torch.Tensor, n: int) -> torch.Tensor:
    """(c, H, L) kernels -> (H, n) filter indexed by lag mod n (negative lag -j at index n - j)."""
    c, H, L = K.shape
    k = K.new_zeros(H, n)
    k[:, :L] = K[0]
    if c == 2:
        k[:, 0] += K[1, :, 0]
        k[:, n - L + 1 :] = K[1, :, 1:].flip(-1)
    return k


def _two_sided_grad(grad: torch.Tensor, c: int, L: int) -> torch.Tensor:
    """Adjoint of `_two_sided`: (H, n) gradient -> (c, H, L)."""
    n = grad.shape[-1]
    forward = grad[:, :L]
    if c == 1:
        return forward[None]
    backward = torch.cat([grad[:, :1], grad[:, n - L + 1 :].flip(-1)], dim=-1)
    return torch.stack([forward, backward])


class FFTConv(torch.autograd.Function):
    """y = K_bi * u by FFT of size n >= 2L (non-circular); u (B, L, H), K (c, H, L) -> y (B, L, H).

    Saves only its real inputs. Backward, also by FFT:
        grad_u = correlation of grad_y with the filter:  irfft(G conj(Kf))
        grad_K = correlation of grad_y with u (summed over the batch):  irfft(sum_b G conj(U))
    """

    @staticmethod
    def forward(ctx, u, K):
        ctx.save_for_backward(u, K)
        dtype = compute_dtype(u, K)
        L, n = u.shape[1], fast_fft_size(2 * u.shape[1])
        with no_autocast(u):
            k_f = torch.fft.rfft(_two_sided(K.to(dtype), n), n=n, dim=-1).T  # (F, H)
            y_f = torch.fft.rfft(u.to(dtype), n=n, dim=1).mul_(k_f)
            return torch.fft.irfft(y_f, n=n, dim=1)[:, :L]

    @staticmethod
    def backward(ctx, grad_y):
        u, K = ctx.saved_tensors
        dtype = compute_dtype(u, K)
        L, n = u.shape[1], fast_fft_size(2 * u.shape[1])
        grad_u = grad_K = None
        with no_autocast(u):
            g_f = torch.fft.rfft(grad_y.to(dtype), n=n, dim=1)  # (B, F, H)
            if ctx.needs_input_grad[0]:
                k_f = torch.fft.rfft(_two_sided(K.to(dtype), n), n=n, dim=-1).T
                grad_u = torch.fft.irfft(g_f * k_f.conj(), n=n, dim=1)[:, :L].to(u.dtype)
            if ctx.needs_input_grad[1]:
                u_f = torch.fft.rfft(u.to(dtype), n=n, dim=1)
                cross = g_f.mul_(u_f.conj()).sum(0)  # (F, H); g_f is not needed any more
                grad_filter = torch.fft.irfft(cross, n=n, dim=0).T  # (H, n)
                grad_K = _two_sided_grad(grad_filter, K.shape[0], L).to(K.dtype)
        return grad_u, grad_K


def fft_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal (c = 1) or bidirectional (c = 2) convolution of u (B, L, H) with K (c, H, L) by FFT."""
    return FFTConv.apply(u, K)


def released_fast_fft_size(L: int) -> int:
    """FFT size of the released LOCOST code's fast path (`use_fast_fft_conv=True`, its
    kernel_computations.FFTConvFunc): max(2 * 2^ceil(log2 L), 16). Above 2L unless L is a power of two."""
    return max(2 * 2 ** math.ceil(math.log2(int(L))), 16)


def released_fast_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The convolution the released LOCOST code's fast path computes, u (B, L, H), K (c, H, L) -> (B, L, H).

    Its bidirectional filter is laid out for a circular convolution of exactly 2L (its make_bidirectional:
    lag +j at index j, lag -j at index 2L - j, lag 0 holding K_fwd[0] + K_bwd[0]; our `_two_sided(K, 2L)`),
    but it is convolved with FFT size n = `released_fast_fft_size(L)`. For n > 2L, index 2L - j then
    reaches u[l + j + s] with s = n - 2L:
        y[l] = sum_{j>=0} K_fwd[j] u[l - j] + K_bwd[0] u[l] + sum_{j>=1} K_bwd[j] u[l + j + s]
    (terms past the input are 0): the backward kernel is shifted by s, and lost but for lag 0 when
    s >= L - 1 (2^k < L <= 4/3 2^k, e.g. 38 or 300). For a power of two L it is `fft_conv`; causal kernels
    (c = 1) are exact at every L. Plain autograd (an evaluation option, not the training path).
    """
    dtype = compute_dtype(u, K)
    L = u.shape[1]
    n = released_fast_fft_size(L)
    with no_autocast(u):
        k = _two_sided(K.to(dtype), 2 * L) if K.shape[0] == 2 else K[0].to(dtype)  # (H, 2L) or (H, L)
        k_f = torch.fft.rfft(k, n=n, dim=-1).T  # zero-padded from 2L to n, as the release pads it
        return torch.fft.irfft(torch.fft.rfft(u.to(dtype), n=n, dim=1) * k_f, n=n, dim=1)[:, :L]


def bidirectional_conv_ref(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Direct loop over lags: y[l] += K_fwd[j] u[l - j] and y[l] += K_bwd[j] u[l + j] for j = 0 .. L-1."""
    L = u.shape[1]
    y = torch.zeros_like(u)
    for j in range(L):
        y[:, j:] += K[0, :, j] * u[:, : L - j]
        if K.shape[0] == 2:
            y[:, : L - j] += K[1, :, j] * u[:, j:]
    return y
