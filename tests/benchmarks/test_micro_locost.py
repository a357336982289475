"""Micro-benchmarks of LOCOST's S4D kernel and FFT convolution (pytest-benchmark).

``nox -s bench-micro`` runs them with ``--benchmark-only --benchmark-autosave`` (JSON under
``.benchmarks/`` for ``pytest-benchmark compare``). Plain test runs pass ``--benchmark-disable``,
which runs each benchmark once as a smoke test; without it, the marker below bounds each (three
rounds, more only while they take under half a second). Sizes follow the ``small`` preset:
H = 512 channels, N = 256 (M = 128 complex modes), bidirectional (c = 2), batch 1.
"""

import pytest
import torch

from models.ssm import fftconv, s4d
from models.ssm.flops import fft_conv_flops, s4d_kernel_elementwise_flops, s4d_kernel_matmul_flops

pytestmark = pytest.mark.benchmark(min_rounds=3, max_time=0.5, warmup=False)

H, M, C = 512, 128, 2
LENGTHS = [1024, 4096]


def _kernel_parameters(generator: torch.Generator):
    log_dt = torch.empty(H).uniform_(-6.9, -2.3, generator=generator)
    A_re_log = torch.full((H, M), -0.69)
    A_im = torch.pi * torch.arange(M, dtype=torch.float32).expand(H, M)
    B = torch.tensor([1.0, 0.0]).expand(H, M, 2)
    Cs = torch.randn(C, H, M, 2, generator=generator) * 0.7
    return s4d.s4d_discretize(log_dt, A_re_log, A_im, B, Cs)


def _info(benchmark, L: int, flops: float) -> None:
    benchmark.extra_info.update(H=H, M=M, kernels=C, L=L, threads=torch.get_num_threads(),
                                analytic_flops=flops)


@pytest.mark.parametrize("L", LENGTHS)
def test_s4d_kernel(benchmark, L):
    benchmark.group = "s4d kernel (sqrt-L factorised)"
    dtA, C_tilde = _kernel_parameters(torch.Generator().manual_seed(0))
    _info(benchmark, L, s4d_kernel_matmul_flops(H, M, C, L) + s4d_kernel_elementwise_flops(H, M, C, L))
    K = benchmark(s4d.ssm_kernel, dtA, C_tilde, L)
    assert K.shape == (C, H, L) and torch.isfinite(K).all()


@pytest.mark.parametrize("L", LENGTHS)
def test_fft_conv_forward(benchmark, L):
    benchmark.group = "fft conv forward"
    generator = torch.Generator().manual_seed(0)
    u, K = torch.randn(1, L, H, generator=generator), torch.randn(C, H, L, generator=generator) / L
    _info(benchmark, L, fft_conv_flops(1, L, H, fftconv.fast_fft_size(2 * L)))
    with torch.no_grad():
        y = benchmark(fftconv.fft_conv, u, K)
    assert y.shape == u.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("L", LENGTHS)
def test_fft_conv_forward_backward(benchmark, L):
    benchmark.group = "fft conv forward + backward"
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(1, L, H, generator=generator, requires_grad=True)
    K = (torch.randn(C, H, L, generator=generator) / L).requires_grad_()

    def step():
        fftconv.fft_conv(u, K).square().mean().backward()
        u.grad = K.grad = None

    _info(benchmark, L, 3 * fft_conv_flops(1, L, H, fftconv.fast_fft_size(2 * L)))
    benchmark(step)
