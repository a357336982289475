"""Fast S4D kernel / FFT convolution against their direct references (float64)."""

import math

import pytest
import torch

import models.ssm.s4d as s4d
from models.locost.configuration_locost import LocostConfig
from models.locost.modeling_locost import LocostSSM
from models.ssm.fftconv import (
    FFTConv,
    bidirectional_conv_ref,
    fast_fft_size,
    fft_conv,
    released_fast_conv,
    released_fast_fft_size,
)
from models.ssm.s4d import (
    S4DKernel,
    exp_grid,
    flush_threshold,
    s4d_discretize,
    s4d_kernel,
    ssm_kernel,
    ssm_kernel_backward,
    ssm_kernel_ref,
)

torch.set_num_threads(1)
F64 = torch.float64


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def random_system(H=3, M=4, c=2, seed=0):
    """Real-layout S4D parameters with a spread of decay rates and frequencies."""
    g = torch.Generator().manual_seed(seed)
    log_dt = torch.empty(H, dtype=F64).uniform_(math.log(1e-3), math.log(0.5), generator=g)
    A_re_log = torch.randn(H, M, dtype=F64, generator=g) * 0.5
    A_im = torch.randn(H, M, dtype=F64, generator=g) * 5
    B = torch.randn(H, M, 2, dtype=F64, generator=g)
    C = torch.randn(c, H, M, 2, dtype=F64, generator=g)
    return log_dt, A_re_log, A_im, B, C


def test_fast_fft_size_is_smallest_5_smooth():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in [1, 2, 3, 7, 11, 97, 1000, 4097, 65537, 1_200_001]:
        size = fast_fft_size(n)
        assert size >= n and smooth(size)
        assert not any(smooth(m) for m in range(n, size))


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("L", [1, 2, 7, 10, 64, 127, 1000, 4097])
def test_fast_kernel_matches_vandermonde(c, L):
    dtA, C_tilde = s4d_discretize(*random_system(c=c), dtype=F64)
    fast, ref = ssm_kernel(dtA, C_tilde, L), ssm_kernel_ref(dtA, C_tilde, L)
    assert fast.shape == (c, 3, L)
    assert rel_err(fast, ref) < 1e-10


@pytest.mark.parametrize("c", [1, 2])
def test_kernel_channel_chunks_match_vandermonde(monkeypatch, c):
    """One channel per chunk (forward and the analytic backward) against the float64 references."""
    monkeypatch.setattr(s4d, "KERNEL_CHUNK_BYTES", 1)
    dtA, C_tilde = s4d_discretize(*random_system(H=5, c=c), dtype=F64)
    assert rel_err(ssm_kernel(dtA, C_tilde, 300), ssm_kernel_ref(dtA, C_tilde, 300)) < 1e-10
    dtA, C_tilde = dtA.requires_grad_(), C_tilde.requires_grad_()
    grad_K = torch.randn(c, 5, 300, dtype=F64)
    expected = torch.autograd.grad((ssm_kernel_ref(dtA, C_tilde, 300) * grad_K).sum(), (dtA, C_tilde))
    for fast, ref in zip(ssm_kernel_backward(dtA.detach(), C_tilde.detach(), grad_K), expected, strict=True):
        assert rel_err(fast, ref) < 1e-10


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("L", [1, 2, 7, 64, 1000])
def test_kernel_backward_matches_autograd_of_vandermonde(c, L):
    dtA, C_tilde = (x.requires_grad_() for x in s4d_discretize(*random_system(c=c, seed=L), dtype=F64))
    grad_K = torch.randn(c, 3, L, dtype=F64, generator=torch.Generator().manual_seed(L))
    expected = torch.autograd.grad((ssm_kernel_ref(dtA, C_tilde, L) * grad_K).sum(), (dtA, C_tilde))
    for fast, ref in zip(ssm_kernel_backward(dtA.detach(), C_tilde.detach(), grad_K), expected, strict=True):
        assert fast.shape == ref.shape and rel_err(fast, ref) < 1e-10


@pytest.mark.parametrize("c", [1, 2])
def test_s4d_kernel_function_gradcheck(c):
    params = [p.requires_grad_() for p in random_system(H=2, M=3, c=c)]
    assert torch.autograd.gradcheck(lambda *p: S4DKernel.apply(9, F64, *p), params)


def test_s4d_kernel_saves_only_its_parameters():
    params = [p.requires_grad_() for p in random_system(H=4, M=8, c=2)]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        K = s4d_kernel(500, *params, dtype=F64)
    assert K.shape == (2, 4, 500) and K.requires_grad
    assert sorted(t.numel() for t in saved) == sorted(p.numel() for p in params)


def test_fast_decaying_modes_leave_no_subnormal_factors():
    """float32 modes that decay below the smallest normal number within L: the factors hold zeros
    instead of subnormals (slow on x86) and the kernel still matches the float64 reference."""
    log_dt, A_re_log, A_im, B, C = random_system(H=4, M=8, c=2)
    params = (torch.full_like(log_dt, math.log(0.5)), A_re_log + 2, A_im, B, C)  # exp(dtA l) < 1e-38 soon
    dtA, C_tilde = s4d_discretize(*params, dtype=torch.float32)
    tiny = torch.finfo(torch.float32).tiny
    assert flush_threshold(torch.float32) ** 2 > tiny
    for grid in (exp_grid(dtA, 1, 300), exp_grid(dtA, 40, 50)):
        parts = torch.view_as_real(grid)
        assert (parts == 0).any() and not ((parts != 0) & (parts.abs() < tiny)).any()
    reference = ssm_kernel_ref(*s4d_discretize(*params, dtype=F64), 2000)
    assert rel_err(ssm_kernel(dtA, C_tilde, 2000).double(), reference) < 1e-6


def test_kernel_ref_matches_recurrence():
    """The discretised system run as a recurrence x_l = e^{dtA} x_{l-1} + B u_l, y = 2 Re C x reproduces
    the kernel (impulse response) K[l] = 2 Re C~ e^{dtA l}; C~ includes the ZOH factor (e^{dtA}-1)/A."""
    log_dt, A_re_log, A_im, B, C = random_system(H=2, M=3, c=1)
    dtA, C_tilde = s4d_discretize(log_dt, A_re_log, A_im, B, C, dtype=F64)
    A = torch.complex(-A_re_log.exp(), A_im)
    B_bar = torch.complex(B[..., 0], B[..., 1]) * torch.expm1(dtA) / A
    Cc = torch.complex(C[0, ..., 0], C[0, ..., 1])
    x, impulse = torch.zeros_like(dtA), []
    for step in range(20):
        x = torch.exp(dtA) * x + (B_bar if step == 0 else 0)
        impulse.append(2 * (Cc * x).sum(-1).real)
    assert rel_err(ssm_kernel_ref(dtA, C_tilde, 20)[0], torch.stack(impulse, -1)) < 1e-12


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("L", [1, 2, 7, 64, 127, 1000, 4097])
def test_fft_conv_matches_direct(c, L):
    g = torch.Generator().manual_seed(L)
    u = torch.randn(2, L, 3, dtype=F64, generator=g)
    K = torch.randn(c, 3, L, dtype=F64, generator=g)
    assert rel_err(fft_conv(u, K), bidirectional_conv_ref(u, K)) < 1e-6


def test_conv_ref_lag_convention():
    """Lag +j uses K_fwd[j], lag -j uses K_bwd[j], lag 0 uses both."""
    L = 5
    K = torch.zeros(2, 1, L, dtype=F64)
    K[0, 0] = torch.tensor([1.0, 2, 3, 4, 5])
    K[1, 0] = torch.tensor([10.0, 20, 30, 40, 50])
    u = torch.zeros(1, L, 1, dtype=F64)
    u[0, 2, 0] = 1.0  # impulse at position 2
    expected = torch.tensor([30.0, 20, 11, 2, 3], dtype=F64)
    assert torch.equal(bidirectional_conv_ref(u, K)[0, :, 0], expected)
    assert torch.allclose(fft_conv(u, K)[0, :, 0], expected)


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("L", [1, 2, 6])
def test_fft_conv_gradcheck(c, L):
    u = torch.randn(2, L, 3, dtype=F64, requires_grad=True)
    K = torch.randn(c, 3, L, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(FFTConv.apply, (u, K))


def test_fast_path_gradients_match_reference():
    params = [p.requires_grad_() for p in random_system(c=2)]
    u = torch.randn(2, 37, 3, dtype=F64, requires_grad=True)
    weights = torch.randn(2, 37, 3, dtype=F64)

    def fast():
        return fft_conv(u, s4d_kernel(37, *params, dtype=F64))

    def ref():
        return bidirectional_conv_ref(u, ssm_kernel_ref(*s4d_discretize(*params, dtype=F64), 37))

    grads = [torch.autograd.grad((path() * weights).sum(), [u, *params]) for path in (fast, ref)]
    for fast_grad, ref_grad in zip(*grads, strict=True):
        assert rel_err(fast_grad, ref_grad) < 1e-9


def tiny_ssm(**overrides):
    config = LocostConfig(d_model=4, d_state=6, **overrides)
    layer = LocostSSM(config).double()
    torch.manual_seed(0)
    for p in layer.parameters():
        p.data.normal_(0, 0.5)
    layer.kernel.log_dt.data.uniform_(math.log(1e-2), math.log(0.5))
    return layer


@pytest.mark.parametrize("overrides", [{}, {"gating": False}, {"bidirectional": False}])
def test_ssm_layer_gradcheck(overrides):
    layer = tiny_ssm(**overrides)
    u = torch.randn(2, 5, 4, dtype=F64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    names, params = zip(*layer.named_parameters(), strict=True)

    def fn(u, *values):
        return torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (u, mask))

    assert torch.autograd.gradcheck(fn, (u, *[p.detach().clone().requires_grad_() for p in params]))


def test_ssm_layer_matches_formula():
    """LocostSSM == W_o (q * (K_bi * k + D k)) + b_o built from the reference functions."""
    layer = tiny_ssm()
    u = torch.randn(2, 9, 4, dtype=F64)
    mask = torch.ones(2, 9)
    mask[1, 6:] = 0
    kernel = layer.kernel
    dtA, C_tilde = s4d_discretize(kernel.log_dt, kernel.A_re_log, kernel.A_im, kernel.B, kernel.C, F64)
    K = ssm_kernel_ref(dtA, C_tilde, 9)
    k = (u @ layer.k_proj.weight.T + layer.k_proj.bias) * mask[..., None]
    q = u @ layer.q_proj.weight.T + layer.q_proj.bias
    y = q * (bidirectional_conv_ref(k, K) + layer.D * k)
    expected = y @ layer.output_linear.weight.T + layer.output_linear.bias
    assert rel_err(layer(u, mask), expected) < 1e-12


def test_no_grad_channel_chunks_match_full_width():
    layer = tiny_ssm()
    u = torch.randn(2, 33, 4, dtype=F64)
    full = layer(u)  # grad enabled: one full-width pass
    with torch.no_grad():
        for chunk in (1, 3, 4):
            layer.chunk_channels = chunk
            assert len(layer._channel_chunks(u)) == math.ceil(4 / chunk)
            assert rel_err(layer(u), full) < 1e-12


def test_ssm_params_stay_float32_under_half_casts():
    layer = LocostSSM(LocostConfig(d_model=4, d_state=6)).to(torch.bfloat16)
    assert layer.k_proj.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in [layer.D, *layer.kernel.parameters()])
    assert all(getattr(p, "_no_weight_decay", False) for p in [layer.D, *layer.kernel.parameters()])


def test_kernel_and_conv_ignore_autocast():
    """Under bfloat16 autocast the kernel matmul and the FFTs still run in float32."""
    layer = LocostSSM(LocostConfig(d_model=8, d_state=16))
    for p in layer.parameters():
        p.data.normal_(0.0, 0.5)
    layer.kernel.reset_parameters()
    u = torch.randn(2, 50, 8)
    K = layer.kernel(50)
    y = fft_conv(u, K)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        K_autocast = layer.kernel(50)
        y_autocast = fft_conv(u, K_autocast)
        out = layer(u)
    assert K_autocast.dtype == torch.float32 and torch.equal(K_autocast, K)
    assert y_autocast.dtype == torch.float32 and torch.equal(y_autocast, y)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_float32_fast_kernel_is_accurate_at_long_lengths():
    """S4D-Lin init in float32 (the production dtype) against the float64 Vandermonde sum."""
    torch.manual_seed(0)
    kernel = LocostSSM(LocostConfig(d_model=2, d_state=64)).kernel
    kernel.reset_parameters()
    params = (kernel.log_dt, kernel.A_re_log, kernel.A_im, kernel.B, kernel.C)
    reference = ssm_kernel_ref(*s4d_discretize(*params, dtype=F64), 20_000)
    assert rel_err(kernel(20_000).double(), reference) < 1e-4


# --- the released code's fast path (use_fast_fft_conv=True) ---------------------------------------


def released_fast_conv_ref(u, K):
    """The released fast path from its published formulas, by direct sums in float64: the filter of its
    make_bidirectional (K_fwd zero-padded to 2L, plus K_bwd flipped, left-padded by L and rolled by one),
    circularly convolved with u at its FFT size max(2 * 2^ceil(log2 L), 16), output cut to L."""
    B, L, H = u.shape
    n = max(2 * 2 ** math.ceil(math.log2(L)), 16)
    k = torch.cat([K[0], torch.zeros(H, L, dtype=K.dtype)], dim=-1)
    if K.shape[0] == 2:
        k = k + torch.roll(torch.cat([torch.zeros(H, L, dtype=K.dtype), K[1].flip(-1)], dim=-1), 1, dims=-1)
    padded = torch.cat([u, torch.zeros(B, n - L, H, dtype=u.dtype)], dim=1)
    y = torch.zeros_like(u)
    for t in range(L):
        for m in range(k.shape[-1]):
            y[:, t] += k[:, m] * padded[:, (t - m) % n]
    return y


def _conv_case(L, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, L, 3, dtype=F64, generator=g), torch.randn(c, 3, L, dtype=F64, generator=g)


@pytest.mark.parametrize("L", [1, 5, 8, 16, 37, 38, 50, 64, 100, 129])
def test_released_fast_conv_matches_the_published_formulas(L):
    for c in (1, 2):
        u, K = _conv_case(L, c)
        assert rel_err(released_fast_conv(u, K), released_fast_conv_ref(u, K)) < 1e-12


@pytest.mark.parametrize("L", [16, 64, 256, 1024])
def test_released_fast_conv_is_the_exact_convolution_at_powers_of_two(L):
    u, K = _conv_case(L)
    assert rel_err(released_fast_conv(u, K), bidirectional_conv_ref(u, K)) < 1e-12


@pytest.mark.parametrize("L", [38, 300, 600, 1300])
def test_released_fast_conv_loses_the_backward_kernel_between_powers_of_two(L):
    """n - 2L >= L - 1 (2^k < L <= 4/3 2^k): every backward lag but 0 falls outside the input."""
    u, K = _conv_case(L)
    causal = K.clone()
    causal[1, :, 1:] = 0
    fast = released_fast_conv(u, K)
    assert rel_err(fast, bidirectional_conv_ref(u, causal)) < 1e-12
    assert rel_err(fast, bidirectional_conv_ref(u, K)) > 0.1


@pytest.mark.parametrize("L", [100, 200, 700])
def test_released_fast_conv_shifts_the_backward_kernel(L):
    """n - 2L < L - 1: lag -j reads u[l + j + n - 2L], neither the exact nor the causal convolution."""
    u, K = _conv_case(L)
    s = released_fast_fft_size(L) - 2 * L
    shifted = torch.zeros(2, 3, L, dtype=F64)
    shifted[0] = K[0]
    shifted[1, :, 0] = K[1, :, 0]
    shifted[1, :, 1 + s:] = K[1, :, 1 : L - s]  # lag -(j + s) carries K_bwd[j]
    fast = released_fast_conv(u, K)
    assert rel_err(fast, bidirectional_conv_ref(u, shifted)) < 1e-12
    assert rel_err(fast, bidirectional_conv_ref(u, K)) > 0.1


def test_the_fast_path_option_pads_odd_lengths_as_the_release_does():
    """use_fast_fft_conv: exact at 64; at 63 padded to 64 by one zero input row (k = 0 there under an
    attention mask: exact again; without a mask k = b_k there); at 37 padded to 38, backward lost."""
    config = dict(d_model=6, d_state=8, dropout_rate=0.0)
    torch.manual_seed(0)
    exact = LocostSSM(LocostConfig(**config)).double()
    for p in exact.parameters():
        torch.nn.init.normal_(p, std=0.5)
    fast = LocostSSM(LocostConfig(**config, use_fast_fft_conv=True)).double()
    fast.load_state_dict(exact.state_dict())
    u = torch.randn(2, 64, 6, dtype=F64)
    ones = torch.ones(2, 64, dtype=F64)
    assert rel_err(fast(u), exact(u)) < 1e-12
    assert rel_err(fast(u[:, :63], ones[:, :63]), exact(u[:, :63], ones[:, :63])) < 1e-12
    with_bias = exact(torch.cat([u[:, :63], torch.zeros(2, 1, 6, dtype=F64)], dim=1))[:, :63]
    assert rel_err(fast(u[:, :63]), with_bias) < 1e-12
    assert rel_err(fast(u[:, :37], ones[:, :37]), exact(u[:, :37], ones[:, :37])) > 0.05
