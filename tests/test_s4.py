"""S4 kernel (real form of the bilinear discretisation, sqrt(L) factorisation) against the dense float64
formula and the recurrence."""

import math

import pytest
import torch

from models.locost import LocostConfig, LocostForConditionalGeneration
from models.locost.modeling_locost import LocostSSM
from models.ssm.fftconv import bidirectional_conv_ref, fft_conv
from models.ssm.s4 import (
    S4Kernel,
    hippo_legs_nplr,
    kernel_split,
    s4_kernel,
    s4_kernel_ref,
    s4_parameters,
    s4_real_system,
)

torch.set_num_threads(1)
F64 = torch.float64
LENGTHS = [1, 2, 7, 64, 127, 128, 129, 1000, 4097]


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def random_system(H=3, N=8, c=2, seed=0, dt_range=(1e-2, 0.5)):
    """HiPPO-LegS perturbed per channel (so channels differ and P, B are not the init's), complex128."""
    g = torch.Generator().manual_seed(seed)

    def noise(*shape, scale):
        return scale * torch.randn(*shape, dtype=torch.complex128, generator=g)

    Lambda, P, B = hippo_legs_nplr(N)
    M = N // 2
    log_dt = torch.empty(H, dtype=F64).uniform_(*map(math.log, dt_range), generator=g)
    return (log_dt.exp(), Lambda + noise(H, M, scale=0.05), P + noise(H, M, scale=0.2),
            B + noise(H, M, scale=0.2), noise(c, H, M, scale=1.0))


def test_hippo_legs_nplr_is_the_legs_matrix():
    """Eigenvalues of Lambda - P P^* are LegS's diagonal -1..-N, and the transfer function
    B^T (sI - A)^-1 B of the LegS matrix is unchanged by the unitary change of basis."""
    N = 8
    Lambda, P, B = hippo_legs_nplr(N)
    full = [torch.cat([x, x.conj()]) for x in (Lambda, P, B)]
    A_nplr = torch.diag(full[0]) - torch.outer(full[1], full[1].conj())
    eig = torch.linalg.eigvals(A_nplr).real.sort().values
    assert torch.allclose(eig, -torch.arange(N, 0, -1, dtype=F64), atol=1e-8)
    n = torch.arange(N, dtype=F64)
    root = torch.sqrt(2 * n + 1).to(torch.complex128)
    A_legs = -(torch.tril(root[:, None] * root[None, :], -1) + torch.diag(n + 1))
    for s in (0.3, 1.7 + 2j):
        legs = root @ torch.linalg.solve(s * torch.eye(N) - A_legs, root)
        nplr = full[2].conj() @ torch.linalg.solve(s * torch.eye(N) - A_nplr, full[2])
        assert abs(legs - nplr) < 1e-9 * abs(legs)


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("L", LENGTHS)
def test_kernel_matches_dense_reference(c, L):
    """Float64: the two paths agree to ~1e-15 measured; 1e-10 leaves room for the log2(L) squarings."""
    system = random_system(c=c)
    fast, ref = s4_kernel(*system, L), s4_kernel_ref(*system, L)
    assert fast.shape == (c, 3, L)
    assert rel_err(fast, ref) < 1e-10


def test_real_form_is_the_dense_discretisation():
    """phi(A_bar x) = R phi(x), phi(B_bar) = b and C_full x = c phi(x) for the conjugate-pair map
    phi([x, conj x]) = [Re x, Im x], with A_bar and B_bar from dense solves (as in s4_kernel_ref)."""
    dt, Lambda, P, B, C = random_system(c=2)
    R, b, c = s4_real_system(dt, Lambda, P, B, C)
    full = [torch.cat([x, x.conj()], dim=-1) for x in (Lambda, P, B)]
    A = torch.diag_embed(full[0]) - full[1][:, :, None] * full[1].conj()[:, None, :]
    left = torch.eye(8) - dt[:, None, None] / 2 * A
    A_bar = torch.linalg.solve(left, torch.eye(8) + dt[:, None, None] / 2 * A)
    B_bar = torch.linalg.solve(left, (dt[:, None] * full[2])[..., None])[..., 0]
    x = torch.randn(3, 4, dtype=torch.complex128)

    def phi(v):
        return torch.cat([v[..., :4].real, v[..., :4].imag], dim=-1)

    A_x = (A_bar @ torch.cat([x, x.conj()], -1)[..., None])[..., 0]
    assert rel_err((R @ phi(torch.cat([x, x.conj()], -1))[..., None])[..., 0], phi(A_x)) < 1e-14
    assert rel_err(b, phi(B_bar)) < 1e-14
    assert rel_err((c * phi(A_x)).sum(-1), (torch.cat([C, C.conj()], -1) * A_x).sum(-1).real) < 1e-14


def test_kernel_split_covers_the_length():
    for c in (1, 2):
        for L in (1, 2, 3, 100, 4096, 16384, 600_000):
            T, J = kernel_split(c, L)
            assert T & (T - 1) == 0 and (J - 1) * T < L <= J * T
            assert T <= 2 * math.sqrt(c * L) and J <= 2 * math.sqrt(L) + 1


@pytest.mark.parametrize("L", LENGTHS)
def test_causal_convolution_matches_the_recurrence(L):
    """y = K * u (FFT path) equals x_l = A_bar x_{l-1} + B_bar u_l, y_l = Re C x_l run step by step."""
    dt, Lambda, P, B, C = random_system(H=2, c=1, seed=L)
    u = torch.randn(2, L, 2, dtype=F64, generator=torch.Generator().manual_seed(L))
    full = [torch.cat([x, x.conj()], dim=-1) for x in (Lambda, P, B, C[0])]
    A = torch.diag_embed(full[0]) - full[1][:, :, None] * full[1].conj()[:, None, :]
    inv = torch.linalg.inv(torch.eye(8) - dt[:, None, None] / 2 * A)
    A_bar = inv @ (torch.eye(8) + dt[:, None, None] / 2 * A)
    B_bar = (inv @ (dt[:, None] * full[2])[..., None])[..., 0]
    x, ys = torch.zeros(2, 2, 8, dtype=torch.complex128), []
    for step in range(L):
        x = torch.einsum("hnm,bhm->bhn", A_bar, x) + B_bar * u[:, step, :, None]
        ys.append((x * full[3]).sum(-1).real)
    assert rel_err(fft_conv(u, s4_kernel(dt, Lambda, P, B, C, L)), torch.stack(ys, 1)) < 1e-9


def test_bidirectional_convolution_through_fft_path():
    system = random_system(c=2)
    u = torch.randn(2, 45, 3, dtype=F64)
    expected = bidirectional_conv_ref(u, s4_kernel_ref(*system, 45))
    assert rel_err(fft_conv(u, s4_kernel(*system, 45)), expected) < 1e-10


def test_gradcheck():
    dt, Lambda, P, B, C = random_system(H=2, N=4, c=2)
    inputs = [t.detach().clone().requires_grad_() for t in (dt, Lambda, P, B, C)]
    assert torch.autograd.gradcheck(lambda *x: s4_kernel(*x, 9), inputs)


def test_gradients_match_reference_gradients():
    inputs = [t.requires_grad_() for t in random_system(c=2)]
    weights = torch.randn(2, 3, 50, dtype=F64)
    grads = [torch.autograd.grad((fn(*inputs, 50) * weights).sum(), inputs)
             for fn in (s4_kernel, s4_kernel_ref)]
    for fast, ref in zip(*grads, strict=True):
        assert rel_err(fast, ref) < 1e-9


def test_backward_keeps_no_modes_by_length_tensor():
    """Forward under autograd saves nothing of size H*M*L (only N x N powers, N x sqrt(L) factors)."""
    kernel = S4Kernel(4, 16)
    kernel.reset_parameters()
    H, M, L = 4, 8, 4096
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        K = kernel(L)
    K.sum().backward()
    assert max(sizes) <= 2 * H * L and max(sizes) < H * M * L / 4
    assert kernel.C.grad is not None and torch.isfinite(kernel.C.grad).all()


def test_float32_module_is_accurate_at_hippo_init():
    """The production path (float32) at S4's init against the float64 dense reference."""
    torch.manual_seed(0)
    kernel = S4Kernel(2, 64, dt_min=1e-3, dt_max=1e-1)
    kernel.reset_parameters()
    params = (kernel.log_dt, kernel.Lambda_re_log, kernel.Lambda_im, kernel.P, kernel.B, kernel.C)
    reference = s4_kernel_ref(*s4_parameters(*params, dtype=F64), 4097)
    assert rel_err(kernel(4097).double(), reference) < 1e-4


def test_frozen_A_and_B_get_no_gradient():
    kernel = S4Kernel(3, 8, freeze_A_B=True)
    kernel.reset_parameters()
    kernel(20).square().sum().backward()
    assert [name for name, p in kernel.named_parameters() if p.grad is not None] == ["log_dt", "C"]


def test_locost_s4_ssm_params_stay_float32_without_weight_decay():
    layer = LocostSSM(LocostConfig(d_model=4, d_state=8, ssm_kernel="s4")).to(torch.bfloat16)
    assert isinstance(layer.kernel, S4Kernel) and layer.k_proj.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in layer.kernel.parameters())
    config = LocostConfig(d_model=8, d_state=8, d_ff=8, num_layers=1, num_heads=2, d_kv=4, vocab_size=16,
                          ssm_kernel="s4")
    names = LocostForConditionalGeneration(config).no_weight_decay_parameter_names()
    assert {n.rsplit(".", 1)[1] for n in names} == {"D", "log_dt", "Lambda_re_log", "Lambda_im", "P", "B",
                                                    "C"}


def test_locost_config_refuses_unknown_kernel():
    with pytest.raises(ValueError, match="ssm_kernel must be 's4d' or 's4', got 's5'"):
        LocostConfig(ssm_kernel="s5")


def test_the_memory_suites_cpu_default_trains_locost_s4_at_16k():
    """No hole in LOCOST-S4's row of the main job: its 16K training cell is measured, not left out."""
    from suites.memory import MEMORY
    cells = [(c.family, c.mode, c.input_len) for c in MEMORY.sweep("cpu").cells("cpu", 2)]
    assert ("locost-s4", "train", 16384) in cells and not MEMORY.sweep("cpu").drop
