"""S4 kernel: normal-plus-low-rank state matrix, bilinear discretisation, Cauchy kernel (arXiv 2111.00396).

Notation: H channels, N = d_state state dimensions, M = N/2 stored modes (eigenvalues come in conjugate
pairs; the other half is implied), c output vectors C per channel (c = 2 for a bidirectional layer:
index 0 forward/causal, 1 backward/anti-causal), L kernel length, z_k = exp(-2 pi i k / L).

Continuous system (HiPPO-LegS in its eigenbasis, rank 1, P = Q as in S4):
    A = Lambda - P P^*,  Lambda = -exp(Lambda_re_log) + i Lambda_im,  dt = exp(log_dt)
    "full" vectors stack a mode vector and its conjugate: Lambda_full = [Lambda, conj(Lambda)] etc.
Bilinear discretisation:
    A_bar = (I - dt/2 A)^-1 (I + dt/2 A),  B_bar = (I - dt/2 A)^-1 dt B,  K[l] = C A_bar^l B_bar (real)
Truncated generating function at the L-th roots of unity (z^L = 1):
    K^(z) = sum_{l<L} K[l] z^l = C~ (I - A_bar z)^-1 B_bar,   C~ = C (I - A_bar^L)
          = 2 [ r_CB - (1+z) r_CP r_PB / (1 + (1+z) r_PP) ]     (Woodbury identity for the rank-1 term)
    r_ab(z) = sum_{n<N} a_n b_n / (2 (1-z)/dt - (1+z) lambda_n)    (a Cauchy kernel in g = 2(1-z)/(dt(1+z)),
              scaled by (1+z) so that z = -1 needs no special case; a = conj(P) for the rows Q^* = P^*)
    K = irfft(K^(z_0 .. z_{L//2}), n = L).

`s4_kernel` evaluates the Cauchy kernel in chunks of frequencies, each recomputed in backward, so it never
holds an (H, M, L) tensor; `s4_C_tilde` computes C (I - A_bar^L) by repeated squaring of the dense
N x N matrix A_bar (diagonal plus rank 1, built in closed form) in channel chunks, O(N^3 log L) time per
channel. `s4_kernel_ref` is the direct float64 formula used by the tests: K[l] = C A_bar^l B_bar with
A_bar from a dense solve.
"""

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import initialization as init

__all__ = ["S4Kernel", "hippo_legs_nplr", "s4_parameters", "s4_C_tilde", "s4_kernel", "s4_kernel_ref"]

# Complex elements of one (channels, M, frequencies) Cauchy chunk / one (channels, N, N) matrix chunk.
CAUCHY_CHUNK_ELEMENTS = 2**22
POWER_CHUNK_ELEMENTS = 2**18


def hippo_legs_nplr(N: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HiPPO-LegS in normal-plus-low-rank form (S4 paper, Theorem 1 and Appendix C.1).

    A[n, k] = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k); B[n] = sqrt(2n+1); P[n] =
    sqrt(n + 1/2). S = A + P P^T = -I/2 + skew-symmetric is normal: S = V Lambda V^*. Returns the M = N/2
    eigenvalues with positive imaginary part and V^* P, V^* B on those eigenvectors (complex128, (M,)).
    Raises ValueError for odd N.
    """
    if N % 2:
        raise ValueError(f"d_state must be even (N/2 conjugate pairs), got {N}")
    n = torch.arange(N, dtype=torch.float64, device="cpu")  # also when built under torch.device("meta")
    root = torch.sqrt(2 * n + 1)
    P = torch.sqrt(n + 0.5)
    skew = torch.tril(root[:, None] * root[None, :], -1) / 2  # S = -I/2 - skew + skew^T
    skew = skew.T - skew
    omega, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))  # skew = V diag(i omega) V^*
    keep = omega > 0
    Lambda = torch.complex(torch.full_like(omega[keep], -0.5), omega[keep])
    V = V[:, keep]
    return Lambda, V.conj().T @ P.to(V.dtype), V.conj().T @ root.to(V.dtype)


def s4_parameters(log_dt, Lambda_re_log, Lambda_im, P, B, C, dtype=torch.float32):
    """Real stored parameters -> complex tensors of `dtype`'s precision.

    log_dt (H,), Lambda_re_log and Lambda_im (H, M), P and B (H, M, 2), C (c, H, M, 2) (complex as real
    pairs). Returns dt (H,) real, Lambda, P, B (H, M) and C (c, H, M) complex.
    """
    log_dt, Lambda_re_log, Lambda_im, P, B, C = (
        p.to(dtype) for p in (log_dt, Lambda_re_log, Lambda_im, P, B, C)
    )
    Lambda = torch.complex(-torch.exp(Lambda_re_log), Lambda_im)

    def cplx(x):
        return torch.complex(x[..., 0], x[..., 1])

    return torch.exp(log_dt), Lambda, cplx(P), cplx(B), cplx(C)


def _full(x: torch.Tensor) -> torch.Tensor:
    """(..., M) modes -> (..., N) with the conjugate half appended."""
    return torch.cat([x, x.conj()], dim=-1)


def _A_bar_dense(dt, Lambda, P) -> torch.Tensor:
    """Dense (H, N, N) A_bar = 2 (I - dt/2 A)^-1 - I in closed form: diag(2/d - 1) - dt (p/d)(p/d)^* / s
    with d = 1 - dt lambda / 2 and s = 1 + dt/2 sum |p|^2 / d (Sherman-Morrison)."""
    d = 1 - dt[:, None] * _full(Lambda) / 2  # (H, N)
    p = _full(P)
    left, right = p / d, p.conj() / d
    s = 1 + dt / 2 * (right * p).sum(-1)  # (H,)
    rank1 = (dt / s)[:, None, None] * left[:, :, None] * right[:, None, :]
    return torch.diag_embed(2 / d - 1) - rank1


def _C_tilde_chunk(dt, Lambda, P, C, L: int) -> torch.Tensor:
    A_power = _A_bar_dense(dt, Lambda, P)
    v, result, exponent = _full(C), None, L  # v (c, H, N); result = v A_bar^L by binary powering
    while exponent:
        if exponent & 1:
            v_now = v if result is None else result
            result = torch.einsum("chn,hnm->chm", v_now, A_power)
        exponent >>= 1
        if exponent:
            A_power = A_power @ A_power
    return C - result[..., : C.shape[-1]]


def s4_C_tilde(dt, Lambda, P, C, L: int) -> torch.Tensor:
    """C~ = C (I - A_bar^L) (c, H, M), by repeated squaring of the dense A_bar in channel chunks of
    POWER_CHUNK_ELEMENTS / N^2 channels, each recomputed in backward (O(chunk N^2 log L) transient memory).
    """
    H, M = Lambda.shape
    size = max(1, POWER_CHUNK_ELEMENTS // (4 * M * M))
    parts = []
    for start in range(0, H, size):
        ch = slice(start, start + size)
        args = (dt[ch], Lambda[ch], P[ch], C[:, ch], L)
        if torch.is_grad_enabled():
            parts.append(checkpoint(_C_tilde_chunk, *args, use_reentrant=False))
        else:
            parts.append(_C_tilde_chunk(*args))
    return torch.cat(parts, dim=1)


def _cauchy_chunk(coeffs, Lambda, dt, z) -> torch.Tensor:
    """r (H, V, F) = sum over the N modes of coeffs_n / (2 (1-z)/dt - (1+z) lambda_n), by one batched product.

    coeffs (H, V, N) and Lambda (H, N) complex with the conjugate halves included, dt (H,), z (F,).
    """
    alpha = 2 * (1 - z)[None, :] / dt[:, None]  # (H, F)
    inverse = Lambda[:, :, None] * -(1 + z)  # (H, N, F), then in place: + alpha, 1 / .
    return torch.bmm(coeffs, inverse.add_(alpha[:, None, :]).reciprocal_())


def _spectrum_chunk(coeffs, Lambda, dt, z, c: int) -> torch.Tensor:
    """K^(z) (c, H, F) from the Cauchy sums; coeffs rows: C~_j B (j < c), C~_j P (j < c), P^* B, P^* P."""
    r = _cauchy_chunk(coeffs, Lambda, dt, z)
    r_CB, r_CP, r_PB, r_PP = r[:, :c], r[:, c : 2 * c], r[:, 2 * c], r[:, 2 * c + 1]
    beta = 1 + z
    correction = beta * r_CP * (r_PB / (1 + beta * r_PP))[:, None]
    return (2 * (r_CB - correction)).transpose(0, 1)


def s4_kernel(dt, Lambda, P, B, C_tilde, L: int) -> torch.Tensor:
    """Real kernels K (c, H, L) from real dt (H,) and complex Lambda, P, B (H, M), C~ (c, H, M).

    Frequencies are processed in chunks of CAUCHY_CHUNK_ELEMENTS / (H N), each recomputed in backward:
    transient memory O(H N chunk), kept memory O(c H L).
    """
    c, H, M = C_tilde.shape
    freqs = L // 2 + 1
    k = torch.arange(freqs, device=Lambda.device, dtype=dt.dtype)
    z = torch.exp(torch.complex(torch.zeros_like(k), -2 * math.pi * k / L))
    coeffs = torch.cat([C_tilde * B, C_tilde * P, (P.conj() * B)[None], (P.conj() * P)[None]])
    coeffs = _full(coeffs.transpose(0, 1))  # (H, 2c + 2, N)
    Lambda_full, size = _full(Lambda), max(1, CAUCHY_CHUNK_ELEMENTS // (H * 2 * M))
    parts = []
    for start in range(0, freqs, size):
        args = (coeffs, Lambda_full, dt, z[start : start + size], c)
        if torch.is_grad_enabled():
            parts.append(checkpoint(_spectrum_chunk, *args, use_reentrant=False))
        else:
            parts.append(_spectrum_chunk(*args))
    return torch.fft.irfft(torch.cat(parts, dim=-1), n=L, dim=-1)


def s4_kernel_ref(dt, Lambda, P, B, C, L: int) -> torch.Tensor:
    """Direct formula K[c, h, l] = Re C_full A_bar^l B_bar (c, H, L), with the dense N x N A = Lambda - P P^*
    discretised by a linear solve. Takes the continuous C (not C~); O(H N^2 + c H L) memory."""
    A = torch.diag_embed(_full(Lambda)) - _full(P)[:, :, None] * _full(P).conj()[:, None, :]
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    left = eye - dt[:, None, None] / 2 * A
    A_bar = torch.linalg.solve(left, eye + dt[:, None, None] / 2 * A)
    x = torch.linalg.solve(left, (dt[:, None] * _full(B))[..., None])[..., 0]  # B_bar (H, N)
    K = []
    for _ in range(L):
        K.append(torch.einsum("chn,hn->ch", _full(C), x))
        x = (A_bar @ x[..., None])[..., 0]
    return torch.stack(K, dim=-1).real


class S4Kernel(nn.Module):
    """S4 parameters of H channels with c output vectors C (c = 2: bidirectional, 1: causal).

    Stored real: log_dt (H,), Lambda_re_log, Lambda_im (H, M), P, B (H, M, 2), C (c, H, M, 2) (complex as
    real pairs). `freeze_A_B` keeps Lambda, P and B fixed (SPADE's fine-tuning setting): no gradient reaches
    them, also after a checkpoint is loaded into fresh trainable Parameters. The
    parameters carry `_no_weight_decay`. `forward(L)` returns the real kernels K (c, H, L) in float32
    (float64 if asked), never under autocast.
    """

    def __init__(self, d_model: int, d_state: int, num_kernels: int = 2, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, freeze_A_B: bool = False):
        super().__init__()
        if d_state % 2:
            raise ValueError(f"d_state must be even (N/2 conjugate pairs), got {d_state}")
        H, M = d_model, d_state // 2
        self.dt_min, self.dt_max = dt_min, dt_max
        self.log_dt = nn.Parameter(torch.empty(H))
        self.Lambda_re_log = nn.Parameter(torch.empty(H, M))
        self.Lambda_im = nn.Parameter(torch.empty(H, M))
        self.P = nn.Parameter(torch.empty(H, M, 2))
        self.B = nn.Parameter(torch.empty(H, M, 2))
        self.C = nn.Parameter(torch.empty(num_kernels, H, M, 2))
        for p in self.parameters():
            p._no_weight_decay = True
        self.freeze_A_B = freeze_A_B
        if freeze_A_B:  # also detached in forward: loading a checkpoint replaces these Parameter objects
            for p in (self.Lambda_re_log, self.Lambda_im, self.P, self.B):
                p.requires_grad_(False)

    def reset_parameters(self):
        """HiPPO-LegS for Lambda, P, B in every channel; C ~ complex normal (variance 1/2 per part);
        log dt ~ U[log dt_min, log dt_max]."""
        H, M = self.Lambda_im.shape
        Lambda, P, B = hippo_legs_nplr(2 * M)
        init.uniform_(self.log_dt, math.log(self.dt_min), math.log(self.dt_max))
        init.copy_(self.Lambda_re_log, torch.log(-Lambda.real).to(torch.float32).expand(H, M))
        init.copy_(self.Lambda_im, Lambda.imag.to(torch.float32).expand(H, M))
        init.copy_(self.P, torch.view_as_real(P).to(torch.float32).expand(H, M, 2))
        init.copy_(self.B, torch.view_as_real(B).to(torch.float32).expand(H, M, 2))
        init.normal_(self.C, mean=0.0, std=0.5**0.5)

    def forward(self, L: int, channels: slice = slice(None), dtype: torch.dtype = torch.float32):
        L = int(L)  # under torch.jit.trace (fvcore's FLOP counter) sizes arrive as 0-d tensors
        A_B = (self.Lambda_re_log, self.Lambda_im, self.P, self.B)
        params = (self.log_dt, *(p.detach() if self.freeze_A_B else p for p in A_B))
        with torch.autocast(self.C.device.type, enabled=False):
            dt, Lambda, P, B, C = s4_parameters(*(p[channels] for p in params), self.C[:, channels], dtype)
            return s4_kernel(dt, Lambda, P, B, s4_C_tilde(dt, Lambda, P, C, L), L)
