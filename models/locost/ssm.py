"""S4D kernels and (bi)directional FFT convolution for LOCOST, with plain references beside them.

Notation: H channels, M = N/2 complex modes per channel, L sequence length, c kernels per channel
(c = 2 for bidirectional: index 0 forward/causal, 1 backward/anti-causal; c = 1 for causal only).

Kernel (S4D-Lin, zero-order hold, diagonal complex state matrix):
    A = -exp(A_re_log) + i A_im,  dt = exp(log_dt),  dtA = dt * A
    C~ = C * B * (exp(dtA) - 1) / A
    K[l] = 2 Re sum_n C~_n exp(dtA_n l),   l = 0 .. L-1

Bidirectional convolution of u (B, L, H) with K (c, H, L):
    y[l] = sum_{j>=0} K_fwd[j] u[l - j] + sum_{j>=0} K_bwd[j] u[l + j]
so lag +j gets K_fwd[j], lag -j gets K_bwd[j] and lag 0 gets K_fwd[0] + K_bwd[0].

Fast paths (`ssm_kernel`, `fft_conv`) never build an (H, N, L) tensor and save only real tensors for
backward; the `*_ref` functions are the direct formulas used by the tests.
"""

import math
from contextlib import nullcontext

import torch

__all__ = [
    "fast_fft_size",
    "s4d_discretize",
    "exp_grid",
    "ssm_kernel",
    "ssm_kernel_ref",
    "fft_conv",
    "bidirectional_conv_ref",
    "FFTConv",
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


def s4d_discretize(log_dt, A_re_log, A_im, B, C, dtype=torch.float32):
    """Zero-order-hold discretisation of a diagonal S4D system.

    Real inputs: log_dt (H,), A_re_log and A_im (H, M), B (H, M, 2), C (c, H, M, 2) (complex stored as
    real pairs). Returns dtA (H, M) and C~ = C B (exp(dtA) - 1) / A (c, H, M), both complex of `dtype`.
    """
    log_dt, A_re_log, A_im, B, C = (p.to(dtype) for p in (log_dt, A_re_log, A_im, B, C))
    A = torch.complex(-torch.exp(A_re_log), A_im)
    dtA = torch.exp(log_dt)[:, None] * A
    B = torch.complex(B[..., 0], B[..., 1])
    C = torch.complex(C[..., 0], C[..., 1])
    return dtA, C * (B * torch.expm1(dtA) / A)


def ssm_kernel_ref(dtA: torch.Tensor, C_tilde: torch.Tensor, L: int) -> torch.Tensor:
    """Direct Vandermonde sum K[c, h, l] = 2 Re sum_n C~[c, h, n] exp(dtA[h, n] l). O(c H M L) memory."""
    lags = torch.arange(L, device=dtA.device, dtype=dtA.real.dtype)
    vandermonde = torch.exp(dtA[:, :, None] * lags)  # (H, M, L)
    return 2 * torch.einsum("chm,hml->chl", C_tilde, vandermonde).real


def exp_grid(dtA: torch.Tensor, stride: int, count: int) -> torch.Tensor:
    """exp(dtA * stride * i) for i = 0 .. count-1, shape (..., count).

    With i = a S + b (S = ceil(sqrt(count))) it is the outer product exp(dtA stride S a) exp(dtA stride b)
    of two directly exponentiated factors: ~2 sqrt(count) complex exponentials instead of `count`, and no
    error accumulates (no repeated powers).
    """
    S = math.ceil(math.sqrt(count))
    i = torch.arange(S, device=dtA.device, dtype=dtA.real.dtype) * stride
    coarse = torch.exp(dtA[..., None] * (i[: math.ceil(count / S)] * S))
    fine = torch.exp(dtA[..., None] * i)
    return (coarse[..., :, None] * fine[..., None, :]).flatten(-2)[..., :count]


def ssm_kernel(dtA: torch.Tensor, C_tilde: torch.Tensor, L: int) -> torch.Tensor:
    """Same kernel as `ssm_kernel_ref` in O(H (M sqrt(L) + L)) memory.

    Write l = j T + t (0 <= t < T, 0 <= j < J = ceil(L / T)). Then
        K[c, h, j, t] = 2 Re sum_n (C~_n exp(dtA_n j T)) exp(dtA_n t),
    one batched matrix product per channel. Complex-as-real: 2 Re(a b) = 2 [Re a, -Im a] @ [Re b; Im b].
    T = ceil(sqrt(c L)) balances the (c J, M) left and (M, T) right factors.
    """
    c, H, M = C_tilde.shape
    T = min(L, math.ceil(math.sqrt(c * L)))
    J = math.ceil(L / T)
    right = exp_grid(dtA, 1, T)  # (H, M, T)
    right = torch.cat([right.real, right.imag], dim=1)  # (H, 2M, T)
    steps = exp_grid(dtA, T, J).transpose(1, 2)  # (H, J, M): exp(dtA j T)
    left = C_tilde.transpose(0, 1)[:, :, None, :] * steps[:, None]  # (H, c, J, M)
    left = torch.cat([left.real, -left.imag], dim=-1).reshape(H, c * J, 2 * M)
    K = torch.bmm(left, right).view(H, c, J * T)[..., :L]  # (H, c, L)
    return 2 * K.transpose(0, 1)


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


def bidirectional_conv_ref(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Direct loop over lags: y[l] += K_fwd[j] u[l - j] and y[l] += K_bwd[j] u[l + j] for j = 0 .. L-1."""
    L = u.shape[1]
    y = torch.zeros_like(u)
    for j in range(L):
        y[:, j:] += K[0, :, j] * u[:, : L - j]
        if K.shape[0] == 2:
            y[:, : L - j] += K[1, :, j] * u[:, j:]
    return y
