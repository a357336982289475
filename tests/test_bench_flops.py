"""FLOP counting: fvcore on the traced step plus analytic counts for LOCOST's FFT convolution; the
encoder and decoder parts add up to one trace of the whole model, and a run traces each part once."""

import json
import math

import pytest

from bench.cells import Cell
from bench.flops import FlopCache, count_flops, count_flops_ref
from bench.settings import Settings
from bench.sweep import run_sweep
from models import FAMILIES, build
from models.ssm.flops import fft_conv_flops, s4d_kernel_matmul_flops


def test_fft_convolution_flops_follow_the_formula():
    n, H = 2048, 8
    assert fft_conv_flops(1, 1024, H, n) == H * 3 * 2.5 * n * math.log2(n) + 6 * H * (n // 2 + 1)
    # T = ceil(sqrt(2 * 1024)) = 46, J = ceil(1024 / 46) = 23
    assert s4d_kernel_matmul_flops(4, 8, 2, 1024) == 2 * 4 * 2 * 23 * 16 * 46


def test_fvcore_counts_grow_linearly_for_local_attention_and_train_is_three_forwards():
    handle = build("longt5-local", "tiny")
    short, long = (count_flops(handle, handle.make_batch(n, 8), "encode") for n in (512, 1024))
    assert short.source == "fvcore" and short.analytic == 0
    assert 1.8 < long.total / short.total < 2.2
    train = count_flops(handle, handle.make_batch(512, 8), "train")
    assert train.source == "fvcore (train = 3 x forward)" and train.total > 3 * short.total
    with pytest.raises(ValueError, match="generate"):
        count_flops(handle, handle.make_batch(512, 8), "generate")


def test_locost_adds_analytic_fft_flops_to_fvcore():
    handle = build("locost", "tiny")
    config = handle.model.config
    count = count_flops(handle, handle.make_batch(512, 8), "encode")  # fvcore traces the model
    from models.ssm.fftconv import fast_fft_size
    expected_fft = config.num_layers * fft_conv_flops(1, 512, config.d_model, fast_fft_size(1024))
    assert count.source == "fvcore+analytic"
    assert type(count.total) is float and type(count.analytic) is float  # plain numbers, JSON-serialisable
    assert expected_fft < count.analytic < 1.1 * expected_fft  # plus the kernel's exponentials
    assert count.total > count.analytic


@pytest.mark.parametrize("name, layers", [("locost-s4", 2), ("spade", 1)])
def test_s4_models_add_analytic_fft_and_kernel_flops(name, layers):
    """LOCOST-S4 (every encoder layer) and SPADE (encoder layer 0 only): FFT convolution + the S4 kernel's
    elementwise term; the kernel's batched products are fvcore's."""
    from models.ssm.fftconv import fast_fft_size
    from models.ssm.flops import s4_kernel_analytic_flops
    handle = build(name, "tiny")
    config = handle.model.config
    count = count_flops(handle, handle.make_batch(300, 8), "encode")
    per_layer = (fft_conv_flops(1, 300, config.d_model, fast_fft_size(600))
                 + s4_kernel_analytic_flops(config.d_model, config.d_state // 2, 2, 300))
    assert count.source == "fvcore+analytic" and count.analytic == layers * per_layer
    # the rank-1 term of the 16 x 16 real A_bar
    assert s4_kernel_analytic_flops(config.d_model, 8, 2, 300) == 2 * config.d_model * 16**2


def test_fvcore_counts_the_s4_kernels_products():
    """One S4 kernel call (H = 4, N = 16, c = 2, L = 300: T = 32, J = 10, doubling to 16 rows): the
    products of the doubling and the final product, as traced, equal the sqrt(L) factorisation's count."""
    from fvcore.nn import FlopCountAnalysis

    from models.ssm.s4 import S4Kernel
    kernel = S4Kernel(4, 16)
    kernel.reset_parameters()
    H, N, T, J = 4, 16, 32, 10
    columns = sum(H * N * N * 2**i for i in range(5)) + 4 * H * N**3 + H * N**3  # products, squarings, R^T
    rows = sum(H * N * N * 2 * 2**i for i in range(4)) + 3 * H * N**3
    assert FlopCountAnalysis(kernel, (300,)).unsupported_ops_warnings(False).total() == (
        columns + rows + H * 2 * J * N * T)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_encoder_and_decoder_parts_add_up_to_one_trace_of_the_whole_model(family, tmp_path):
    handle = build(family, "tiny")
    batch = handle.make_batch(96, 8)
    cache = FlopCache(tmp_path / "flops.jsonl")
    parts = count_flops(handle, batch, "train", cache, {"model": family})
    assert parts == count_flops_ref(handle, batch, "train")
    encode = count_flops(handle, batch, "encode", cache, {"model": family})  # the encoder part, cached
    encoder = json.loads((tmp_path / "flops.jsonl").read_text().splitlines()[0])
    assert encode.total == encoder["counted"] + encoder["analytic"] and encode.source in parts.source
    assert len((tmp_path / "flops.jsonl").read_text().splitlines()) == 2


def test_a_run_traces_each_part_once_across_modes_and_resumes_and_anew_for_another_key(tmp_path):
    reuse = {"workload": "bench.workloads:model", "workload_args": (("reuse_kernel", True),)}
    cells = [Cell("locost", "tiny", "train", 64, target_len=8), Cell("locost", "tiny", "encode", 64),
             Cell("locost", "tiny", "encode", 64, dtype="bf16"),
             Cell("locost", "tiny", "encode", 64, **reuse), Cell("locost", "tiny", "encode", 128)]
    settings = Settings.of(warmup=0, repeats=1, flops=True, budget_bytes=3 * 2**30)
    records = run_sweep(cells, tmp_path, suite="test", settings=settings, progress=False)
    assert [r["status"] for r in records] == ["ok"] * 5
    lines = [json.loads(line) for line in (tmp_path / "flops.jsonl").read_text().splitlines()]
    assert [(line["key"]["part"], line["key"]["shapes"]["input_ids"][1], line["key"]["dtype"])
            for line in lines] == [("encoder", 64, "fp32"), ("decoder", 64, "fp32"), ("encoder", 64, "bf16"),
                                   ("encoder", 64, "fp32"), ("encoder", 128, "fp32")]
    assert lines[3]["key"]["config"] != lines[0]["key"]["config"]  # reuse_kernel: another config
    train, encode = records[0], records[1]
    encoder, decoder = (line["counted"] + line["analytic"] for line in lines[:2])
    assert encode["flops"] == encoder and train["flops"] == 3 * (encoder + decoder)
    handle = build("locost", "tiny")
    assert train["flops"] == count_flops_ref(handle, handle.make_batch(64, 8), "train").total
    run_sweep(cells, tmp_path, suite="test", settings=settings, progress=False, force=True)
    assert len((tmp_path / "flops.jsonl").read_text().splitlines()) == 5  # measured again, traced never
