"""S4D kernel (diagonal complex state matrix, zero-order hold; arXiv 2206.11893), fast path and reference.

Used by LOCOST (arXiv 2401.17919, ``models.locost``). Notation: H channels, M = N/2 complex modes per
channel, L kernel length, c kernels per channel (c = 2 for bidirectional: index 0 forward/causal,
1 backward/anti-causal; c = 1 for causal only).

Kernel (S4D-Lin, zero-order hold, diagonal complex state matrix):
    A = -exp(A_re_log) + i A_im,  dt = exp(log_dt),  dtA = dt * A
    C~ = C * B * (exp(dtA) - 1) / A
    K[l] = 2 Re sum_n C~_n exp(dtA_n l),   l = 0 .. L-1

The fast path (`ssm_kernel` with its analytic backward `S4DKernel`) never builds an (H, N, L) tensor and
saves only the kernel's real parameters for backward; `ssm_kernel_ref` is the direct Vandermonde formula
used by the tests. The kernel is applied by ``models.ssm.fftconv``.
"""

import math

import torch
import torch.nn.functional as F

# Bytes of factors and output per channel chunk of `ssm_kernel` (4-16 MiB measured best on a 2-core Xeon).
KERNEL_CHUNK_BYTES = 2**23

__all__ = [
    "s4d_discretize",
    "flush_threshold",
    "exp_grid_factors",
    "grid_from_factors",
    "exp_grid",
    "kernel_split",
    "ssm_kernel",
    "ssm_kernel_backward",
    "S4DKernel",
    "s4d_kernel",
    "ssm_kernel_ref",
]


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


def flush_threshold(dtype: torch.dtype) -> float:
    """tiny^(1/5) (2.6e-8 in float32, 2.9e-62 in float64): factors of exp(dtA l) below it are set to zero.

    Fast modes decay below the smallest normal number (`tiny`) within the kernel's length; subnormal
    operands make x86 arithmetic (the batched product included) many times slower. Above the threshold
    a product of four factors and C~ (|C~| > tiny^(1/5)) stays normal. A dropped term is below the
    threshold relative to |C~|, i.e. within float32 rounding.
    """
    return torch.finfo(dtype).tiny ** (1 / 5)


def exp_grid_factors(dtA: torch.Tensor, stride: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of `exp_grid` for dtA (H, M): coarse exp(dtA stride S a) (H, ceil(count / S), M) and
    fine exp(dtA stride b) (H, S, M), S = ceil(sqrt(count)), each exponentiated directly; entries below
    `flush_threshold` are set to zero. O(H M sqrt(count)) memory: computed once for all channels, then
    combined per channel chunk by `grid_from_factors`."""
    S = math.ceil(math.sqrt(count))
    i = torch.arange(S, device=dtA.device, dtype=dtA.real.dtype) * stride
    threshold = flush_threshold(dtA.real.dtype)

    def polar(steps):  # exp(dtA * steps), (H, len(steps), M), computed from real parts
        magnitude = torch.exp(steps[:, None] * dtA.real[:, None, :])
        phase = steps[:, None] * dtA.imag[:, None, :]
        magnitude = magnitude.masked_fill_(magnitude < threshold, 0.0)
        return torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))

    return polar(i[: math.ceil(count / S)] * S), polar(i)


def grid_from_factors(coarse: torch.Tensor, fine: torch.Tensor, count: int) -> torch.Tensor:
    """exp_grid from its `exp_grid_factors` (of any channel subset): the outer product over i = a S + b,
    (h, count, M)."""
    return (coarse[:, :, None] * fine[:, None]).flatten(1, 2)[:, :count]


def exp_grid(dtA: torch.Tensor, stride: int, count: int) -> torch.Tensor:
    """exp(dtA * stride * i) for i = 0 .. count-1, shape (H, count, M) for dtA (H, M) (i before modes).

    With i = a S + b (S = ceil(sqrt(count))) it is the outer product exp(dtA stride S a) exp(dtA stride b)
    of two directly exponentiated factors (`exp_grid_factors`): ~2 sqrt(count) exponentials instead of
    `count`, and no error accumulates (no repeated powers). Factors below `flush_threshold` are set to zero.
    """
    return grid_from_factors(*exp_grid_factors(dtA, stride, count), count)


def kernel_split(c: int, L: int) -> tuple[int, int]:
    """(T, J) of the factorisation l = j T + t used by `ssm_kernel`: T = ceil(sqrt(c L)), J = ceil(L / T)."""
    T = min(L, math.ceil(math.sqrt(c * L)))
    return T, math.ceil(L / T)


def _chunk_channels(c: int, M: int, L: int) -> int:
    """Channels per step of `ssm_kernel`, so that one step's factors and output (2M (T + c J) + c J T
    floats per channel) take about KERNEL_CHUNK_BYTES."""
    T, J = kernel_split(c, L)
    return max(1, KERNEL_CHUNK_BYTES // (4 * (2 * M * (T + c * J) + c * J * T)))


def _real_pairs(z: torch.Tensor) -> torch.Tensor:
    """(..., M) complex -> (..., 2M) real, (Re, Im) interleaved per mode (a view)."""
    return torch.view_as_real(z).flatten(-2)


def ssm_kernel(dtA: torch.Tensor, C_tilde: torch.Tensor, L: int) -> torch.Tensor:
    """Same kernel as `ssm_kernel_ref` in O(H (M sqrt(L) + L)) memory.

    Write l = j T + t (0 <= t < T, 0 <= j < J, `kernel_split`). Then
        K[c, h, j, t] = 2 Re sum_n (C~_n exp(dtA_n j T)) exp(dtA_n t),
    one batched real matrix product per channel: 2 Re(a b) = (Re a, Im a) . (Re conj b, Im conj b) with
    left = 2 C~ exp(dtA j T) (H, c J, 2M) and right = conj exp(dtA t) (H, T, 2M) as interleaved real
    pairs (views of complex tensors, no copies). Channels go in chunks of about KERNEL_CHUNK_BYTES.
    Returns a (c, H, L) view of an (H, c J T) buffer; training differentiates it with `S4DKernel`.
    """
    c, H, M = C_tilde.shape
    L = int(L)  # under torch.jit.trace (fvcore's FLOP counter) sizes arrive as 0-d tensors
    T, J = kernel_split(c, L)
    step = _chunk_channels(c, M, L)
    K = torch.empty(H, c * J, T, dtype=dtA.real.dtype, device=dtA.device)
    # factors of every channel at once (O(H M sqrt T)): a chunk only multiplies its slices out
    fine_grid, coarse_grid = exp_grid_factors(dtA.conj(), 1, T), exp_grid_factors(dtA, T, J)
    C2 = 2 * C_tilde.transpose(0, 1)[:, :, None]  # (H, c, 1, M)
    for start in range(0, H, step):
        h = slice(start, start + step)
        right = _real_pairs(grid_from_factors(*(f[h] for f in fine_grid), T))  # (h, T, 2M)
        left = C2[h] * grid_from_factors(*(f[h] for f in coarse_grid), J)[:, None]  # (h, c, J, M)
        K[h] = torch.bmm(_real_pairs(left).flatten(1, 2), right.transpose(1, 2))  # (h, c J, T)
    return K.view(H, c, J * T)[..., :L].transpose(0, 1)


def ssm_kernel_backward(dtA, C_tilde, grad_K):
    """Gradients of sum(grad_K * ssm_kernel(dtA, C~, L)) w.r.t. dtA (H, M) and C~ (c, H, M), complex in
    PyTorch's convention (dLoss/dRe + i dLoss/dIm). With w_l = exp(dtA l) and G = grad_K (c, H, L):
        grad C~ = 2 sum_l G[l] conj(w_l),    grad dtA = 2 sum_c conj(C~) sum_l G[l] l conj(w_l).
    Same factorisation l = j T + t as `ssm_kernel`: one batched product of G (H, c J, T) with
    conj(w_t) and t conj(w_t) (H, T, 4M as real pairs), then sums over j against conj(exp(dtA j T)).
    """
    c, H, L = grad_K.shape
    M = dtA.shape[1]
    T, J = kernel_split(c, L)
    step = _chunk_channels(c, 2 * M, L)
    jT = torch.arange(J, device=grad_K.device, dtype=grad_K.dtype)[:, None] * T
    t = torch.arange(T, device=grad_K.device, dtype=grad_K.dtype)[:, None]
    grad_dtA, grad_C = [], []
    # factors of every channel at once (O(H M sqrt T)): a chunk only multiplies its slices out
    fine_grid, coarse_grid = exp_grid_factors(dtA.conj(), 1, T), exp_grid_factors(dtA.conj(), T, J)
    C_conj = C_tilde.transpose(0, 1).conj()  # (H, c, M)
    for start in range(0, H, step):
        h = slice(start, start + step)
        w = grid_from_factors(*(f[h] for f in fine_grid), T)  # conj exp(dtA t), (h, T, M)
        G = F.pad(grad_K[:, h].transpose(0, 1), (0, J * T - L)).reshape(-1, c * J, T)
        moments = torch.bmm(G, _real_pairs(torch.cat([w, t * w], dim=-1)))  # (h, c J, 4M)
        moments = torch.view_as_complex(moments.view(-1, c, J, 2, M, 2))
        # per j: sum_t G conj(w_t) and sum_t G (j T + t) conj(w_t); then sum over j with conj(w_{j T})
        steps = grid_from_factors(*(f[h] for f in coarse_grid), J)[:, None]  # (h, 1, J, M)
        grad_C.append((moments[:, :, :, 0] * steps).sum(2))
        moment = ((moments[:, :, :, 1] + jT * moments[:, :, :, 0]) * steps).sum(2)  # (h, c, M)
        grad_dtA.append((C_conj[h] * moment).sum(1))
    return 2 * torch.cat(grad_dtA), 2 * torch.cat(grad_C).transpose(0, 1)


class S4DKernel(torch.autograd.Function):
    """K = ssm_kernel(s4d_discretize(params), L) (c, H, L) with the analytic `ssm_kernel_backward`.

    Saves only the real parameters (log_dt, A_re_log, A_im, B, C: O(c H M)); backward rediscretises them
    (O(c H M)), applies `ssm_kernel_backward` and lets autograd carry the gradient through the
    discretisation. Neither the kernel nor its factors are kept between forward and backward.
    """

    @staticmethod
    def forward(ctx, L, dtype, log_dt, A_re_log, A_im, B, C):
        ctx.save_for_backward(log_dt, A_re_log, A_im, B, C)
        ctx.dtype = dtype
        return ssm_kernel(*s4d_discretize(log_dt, A_re_log, A_im, B, C, dtype), L)

    @staticmethod
    def backward(ctx, grad_K):
        params = [p.detach().requires_grad_() for p in ctx.saved_tensors]  # unpacked once (checkpointing)
        with torch.enable_grad():
            dtA, C_tilde = s4d_discretize(*params, ctx.dtype)
        grads = ssm_kernel_backward(dtA.detach(), C_tilde.detach(), grad_K.to(ctx.dtype))
        grads = torch.autograd.grad((dtA, C_tilde), params, grads)
        return None, None, *(g.to(p.dtype) for g, p in zip(grads, params, strict=True))


def s4d_kernel(L: int, log_dt, A_re_log, A_im, B, C, dtype=torch.float32) -> torch.Tensor:
    """Kernels K (c, H, L) of the real S4D parameters (see `s4d_discretize`) in `dtype`; differentiable
    through `S4DKernel` when gradients are on, a plain `ssm_kernel` call otherwise."""
    params = (log_dt, A_re_log, A_im, B, C)
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return S4DKernel.apply(int(L), dtype, *params)
    return ssm_kernel(*s4d_discretize(*params, dtype), L)
