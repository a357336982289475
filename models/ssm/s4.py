"""S4 kernel: normal-plus-low-rank state matrix, bilinear discretisation (arXiv 2111.00396).

Notation: H channels, N = d_state state dimensions, M = N/2 stored modes (eigenvalues come in conjugate
pairs; the other half is implied), c output vectors C per channel (c = 2 for a bidirectional layer:
index 0 forward/causal, 1 backward/anti-causal), L kernel length.

Continuous system (HiPPO-LegS in its eigenbasis, rank 1, P = Q as in S4):
    A = Lambda - P P^*,  Lambda = -exp(Lambda_re_log) + i Lambda_im,  dt = exp(log_dt)
    "full" vectors stack a mode vector and its conjugate: Lambda_full = [Lambda, conj(Lambda)] etc.
Bilinear discretisation, in closed form (Sherman-Morrison; d = 1 - dt Lambda / 2, all (H, M)):
    A_bar = (I - dt/2 A)^-1 (I + dt/2 A) = diag(2/d - 1) - (dt/s) (p/d) (conj(p)/d)^T  (full vectors)
    B_bar = (I - dt/2 A)^-1 dt B = dt [B/d - (dt/s) (P/d) Re sum_M conj(P) B / d]
    s = 1 + dt/2 sum_N |p|^2/d = 1 + dt Re sum_M |P|^2/d
    K[l] = C_full A_bar^l B_bar_full (real: the conjugate halves add up to 2 Re C A_bar^l B_bar).
Real form (`s4_real_system`): a full vector [x, conj x] is the real vector phi(x) = [Re x, Im x] (N,), and
    R = [[diag Re delta, -diag Im delta], [diag Im delta, diag Re delta]] - 2 (dt/s) phi(P/d) phi(P/conj d)^T
with delta = 2/d - 1 is A_bar acting on phi (phi(A_bar x) = R phi(x)); b = phi(B_bar), c = 2 [Re C, -Im C]:
    K[l] = c R^l b  (c, H, L), all real.

`s4_kernel` splits l = j T + t (T a power of two near sqrt(c L), J = ceil(L / T)):
    K[j T + t] = (c (R^T)^j) (R^t b),
the columns R^t b (t < T) and rows c (R^T)^j (j < J) built by doubling (about log2 L squarings of the
N x N R and as many products with the growing factors), then one batched real product
(H, c J, N) @ (H, N, T): O(H N^3 log L + c H N L) time and O(H N (N + sqrt L) + c H L) memory, never an
(H, N, L) tensor; its gradient is autograd's through these products. It computes the same K as S4's
truncated generating function at the roots of unity (Cauchy kernel, Woodbury correction and
C~ = C (I - A_bar^L)), which this file evaluated before 2026-12-06, several times slower on a CPU
(`python tests/benchmarks/test_micro_s4.py --profile 2048 --before <that revision>`). `s4_kernel_ref` is
the direct float64 formula used by the tests: K[l] = C A_bar^l B_bar with A_bar and B_bar from dense solves,
one step at a time.
"""

import math

import torch
from torch import nn
from transformers import initialization as init

__all__ = ["S4Kernel", "hippo_legs_nplr", "s4_parameters", "s4_real_system", "kernel_split", "s4_kernel",
           "s4_kernel_ref"]


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


def _pairs(x: torch.Tensor) -> torch.Tensor:
    """phi: (..., M) complex -> (..., 2M) real [Re x, Im x], the real coordinates of [x, conj x]."""
    return torch.cat([x.real, x.imag], dim=-1)


def s4_real_system(dt, Lambda, P, B, C) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real form of the bilinear discretisation (module notes): R (H, N, N), b (H, N), c (c, H, N) with
    K[l] = c R^l b. Takes real dt (H,), complex Lambda, P, B (H, M) and C (c, H, M)."""
    d = 1 - dt[:, None] * Lambda / 2  # (H, M)
    left, right = P / d, P.conj() / d
    s = 1 + dt * (right * P).real.sum(-1)  # (H,)
    delta = 2 / d - 1
    rotation = torch.cat([torch.cat([torch.diag_embed(delta.real), torch.diag_embed(-delta.imag)], -1),
                          torch.cat([torch.diag_embed(delta.imag), torch.diag_embed(delta.real)], -1)], -2)
    R = rotation - (2 * dt / s)[:, None, None] * _pairs(left)[:, :, None] * _pairs(right.conj())[:, None, :]
    B_bar = dt[:, None] * (B / d - (dt / s)[:, None] * left * (right * B).real.sum(-1, keepdim=True))
    return R, _pairs(B_bar), 2 * torch.cat([C.real, -C.imag], dim=-1)


def kernel_split(c: int, L: int) -> tuple[int, int]:
    """(T, J) of l = j T + t in `s4_kernel`: T the power of two nearest sqrt(c L) (at most L's next
    power of two), J = ceil(L / T)."""
    T = min(1 << round(math.log2(math.sqrt(c * L))), 1 << (L - 1).bit_length())
    return T, math.ceil(L / T)


def _krylov(R: torch.Tensor, X: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([X, R X, ..., R^(count-1) X] (H, N, count k), R^(count/2)) for R (H, N, N), X (H, N, k) and count a
    power of two (R itself for count 1), by doubling: log2(count) products with R^(2^i), each power from
    one squaring of the previous (log2(count) - 1 squarings)."""
    for i in range(count.bit_length() - 1):
        if i:
            R = torch.bmm(R, R)
        X = torch.cat([X, torch.bmm(R, X)], dim=-1)
    return X, R


def s4_kernel(dt, Lambda, P, B, C, L: int) -> torch.Tensor:
    """Real kernels K (c, H, L) from real dt (H,) and complex Lambda, P, B (H, M), C (c, H, M): the
    sqrt(L) factorisation K[j T + t] = (c (R^T)^j) (R^t b) of the module notes. Returns a (c, H, L) view."""
    c, H, _ = C.shape
    R, b, c_rows = s4_real_system(dt, Lambda, P, B, C)
    T, J = kernel_split(c, L)
    columns, R_half = _krylov(R, b[:, :, None], T)  # (H, N, T): R^t b
    R_T = torch.bmm(R_half, R_half) if T > 1 else R
    rows, _ = _krylov(R_T.transpose(1, 2), c_rows.permute(1, 2, 0), 1 << (J - 1).bit_length())
    rows = rows.unflatten(-1, (-1, c))[:, :, :J].permute(0, 3, 2, 1)  # (H, c, J, N): c (R^T)^j
    K = torch.bmm(rows.flatten(1, 2), columns)  # (H, c J, T)
    return K.view(H, c, J * T)[..., :L].transpose(0, 1)


def s4_kernel_ref(dt, Lambda, P, B, C, L: int) -> torch.Tensor:
    """Direct formula K[c, h, l] = Re C_full A_bar^l B_bar (c, H, L), with the dense N x N A = Lambda - P P^*
    discretised by a linear solve; O(H N^2 + c H L) memory."""
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
            return s4_kernel(dt, Lambda, P, B, C, L)
