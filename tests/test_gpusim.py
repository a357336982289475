"""Simulated GPU cells (``bench.gpusim``): the fake step's peak equals the real step's, tensor by tensor.

The reference runs the same step on real CPU tensors (real weights, real values) and counts the live
bytes of every storage the step creates (``LiveBytes``, a dispatch mode; not RSS); the simulation runs
it on fake tensors. Equal peaks mean the fake run allocated and freed what the real one did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from itertools import product

import pytest
import torch

from bench.cuda_autocast import cuda_autocast_rules
from bench.gpusim import (
    GPUS,
    CpuTensorError,
    LiveBytes,
    block_bytes,
    held_bytes,
    parse_gpu,
    simulate_step,
)
from models import FAMILIES, build

LENGTH, TARGET, NEW = 512, 16, 3
#: input length of the equality test per size: ``small`` at a short one (LED pads it to its 1,024-token
#: attention window, PEGASUS-X to its block)
LENGTHS = {"tiny": LENGTH, "small": 32}
#: (size, dtype) of the equality test: ``tiny`` in both dtypes (bf16: CUDA's autocast rules); ``small`` in
#: fp32, since a CPU without native bf16 matmul (this project's AMD EPYC machine kind) runs the real bf16
#: steps emulated: ~230 CPU s for the 21 ``small`` cases there (LED 93, PEGASUS-X 53), against ~90 in fp32
EQUALITY_CASES = [("tiny", "fp32"), ("tiny", "bf16"), ("small", "fp32")]


def real_peak(family: str, mode: str, dtype: str, size: str = "tiny") -> tuple[int, int]:
    """(base, peak above base) of the step on real CPU tensors, counted by a dispatch mode."""
    handle = build(family, size)
    return live_peak(handle, handle.make_batch(LENGTHS[size], target_len=TARGET), mode, dtype, NEW)


def live_peak(handle, batch: dict, mode: str, dtype: str, new_tokens: int) -> tuple[int, int]:
    """(base, peak above base) of ``handle``'s ``mode`` step on ``batch`` (real tensors), by ``LiveBytes``."""
    step = {"train": lambda: handle.train_loss(batch), "encode": lambda: handle.encode(batch),
            "generate": lambda: handle.greedy_decode(batch, new_tokens)}[mode]
    counter = LiveBytes()
    base = counter.hold([*handle.model.parameters(), *handle.model.buffers(), *batch.values()])
    with contextlib.ExitStack() as stack:
        stack.callback(counter.close)
        if dtype == "bf16":
            stack.enter_context(cuda_autocast_rules())
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        stack.enter_context(counter)
        step()
    return base, counter.peak


def simulated(family: str, mode: str, dtype: str, length: int = LENGTH, size: str = "tiny", memoise=True):
    handle = build(family, size, device="meta")
    return simulate_step(handle, lambda: handle.make_batch(length, target_len=TARGET), mode,
                         new_tokens=NEW, dtype=dtype, memoise=memoise)


@pytest.mark.parametrize("size, dtype", EQUALITY_CASES)
@pytest.mark.parametrize("mode", ["train", "encode", "generate"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_simulated_peak_equals_the_real_steps_live_bytes(family, mode, size, dtype):
    base, peak = real_peak(family, mode, dtype, size)
    sim = simulated(family, mode, dtype, LENGTHS[size], size)
    assert sim.base_bytes == base
    assert peak > 0
    assert abs(sim.peak_bytes - peak) <= 0.01 * peak, (sim.peak_bytes, peak)


@pytest.mark.parametrize("fake", [False, True])
def test_a_view_of_a_held_weight_allocates_nothing(fake):
    """``nn.Linear`` in fp32 views its weight (``aten.t`` inside ``F.linear``) and allocates only its
    output: the step's peak is its outputs' blocks, hand-computed, over real tensors (``LiveBytes``)
    and fake ones (``Simulator``). Both counted the 4 MiB weight as new before (a view of a storage held
    before the step was taken for a new storage, and never freed)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.gpusim import Simulator, to_fake

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    counter = Simulator(fake_mode) if fake else LiveBytes()
    with torch.device("meta" if fake else "cpu"):
        linear = torch.nn.Linear(1024, 1024, bias=False)
    if fake:
        to_fake(linear, fake_mode)
    x = counter.fake(torch.ones(1, 8, 1024)) if fake else torch.ones(1, 8, 1024)
    assert counter.hold([linear.weight, x]) == 1024 * 1024 * 4 + 8 * 1024 * 4
    with contextlib.ExitStack() as stack, torch.no_grad():
        stack.callback(counter.close)
        if fake:
            stack.enter_context(fake_mode)
        stack.enter_context(counter)
        y = linear(x)
        both = torch.cat([y, x @ linear.weight.t()])
    one = block_bytes(8 * 1024 * 4)  # y, then x @ w.t(), then both concatenated: 1 + 1 + 2 outputs' blocks
    assert both.shape == (2, 8, 1024) and counter.peak == 4 * one, counter.peak


def test_greedy_decode_gives_generates_tokens():
    """The simulation's generation makes generate's model calls: same tokens, on real tensors."""
    for family in FAMILIES:
        handle = build(family, "tiny")
        batch = handle.make_batch(200, target_len=4)
        assert torch.equal(handle.greedy_decode(batch, 5), handle.generate(batch, 5)), family


def test_cuda_autocast_rules_give_float32_softmax_and_leave_cpu_autocast_alone():
    x = torch.randn(4, 8)

    def dtypes():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = torch.nn.functional.linear(x, torch.randn(8, 8))
            return h.dtype, torch.softmax(h, -1).dtype, torch.nn.functional.layer_norm(h, (8,)).dtype

    assert dtypes() == (torch.bfloat16, torch.bfloat16, torch.bfloat16)
    with cuda_autocast_rules():
        assert dtypes() == (torch.bfloat16, torch.float32, torch.float32)
    assert dtypes() == (torch.bfloat16, torch.bfloat16, torch.bfloat16)


def test_a_cpu_tensor_in_a_simulated_cell_fails_with_the_op():
    handle = build("locost", "tiny", device="meta")
    stray = torch.ones(1, 4, handle.model.config.d_model)
    original = handle.model.encoder.forward

    def forward(*args, **kwargs):
        out = original(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state + stray  # a tensor a CUDA run would leave on the CPU
        return out

    handle.model.encoder.forward = forward
    with pytest.raises(CpuTensorError, match=r"^aten\.add\.Tensor: a CPU tensor of shape \(1, 4, 64\)"):
        simulate_step(handle, lambda: handle.make_batch(4, target_len=2), "encode")


def test_allocator_blocks_and_gpu_table():
    assert [block_bytes(n) for n in (0, 1, 512, 513, 4096)] == [0, 512, 512, 1024, 4096]
    assert parse_gpu("H100-80GB") is GPUS["h100-80gb"]
    assert parse_gpu("80GiB").memory_bytes == 80 * 2**30
    assert parse_gpu("85899345920").memory_bytes == 85899345920
    # one size, one name: records of --simulate 80GB and --simulate 80GiB pair in a report and resume
    same = ("80GB", "80GiB", "80 gib", "81920MiB", "85899345920")
    assert {parse_gpu(text).name for text in same} == {"80gib"}
    odd = str(1126 * 2**20 + 2**19)
    assert [parse_gpu(text).name for text in ("1126MiB", "1126.5MiB")] == ["1126mib", odd]
    with pytest.raises(ValueError, match="unknown GPU 'v100'; use one of h100-80gb"):
        parse_gpu("v100")


@pytest.mark.parametrize(("mode", "dtype", "length", "size"), [
    *((mode, dtype, LENGTH, "tiny") for mode in ("train", "encode", "generate")
      for dtype in ("fp32", "bf16")),
    ("train", "bf16", 4096, "base")])
def test_memoised_kernels_give_the_simulated_peak_to_the_byte(mode, dtype, length, size):
    """LOCOST's S4D kernel (and its backward in training) simulated once per call signature and replayed
    in the other layers: the same base and peak as simulating every call."""
    plain = simulated("locost", mode, dtype, length, size, memoise=False)
    memo = simulated("locost", mode, dtype, length, size)
    assert (memo.base_bytes, memo.peak_bytes) == (plain.base_bytes, plain.peak_bytes)
    assert plain.memo_replays == 0 and memo.memo_replays > 0


def test_a_replayed_kernel_call_raises_the_peak_by_its_transient_at_its_own_entry():
    """The S4D kernel and its backward called twice with the same shapes, more bytes live at the second
    call: the replay's peak (entry + recorded transient) equals the one of simulating both calls, and
    above the first call's; the real functions are back after the simulation."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.gpusim import Simulator, memoising
    from models.ssm import s4d

    def peaks(memoise: bool) -> tuple[int, int, int]:
        fake_mode = FakeTensorMode()
        simulator = Simulator(fake_mode)
        with contextlib.ExitStack() as stack:
            memo = stack.enter_context(memoising(simulator)) if memoise else None
            stack.enter_context(fake_mode)
            parameter = torch.empty(2, 64, 32)  # made before counting starts, no values: as a model's
            stack.enter_context(simulator)
            dtA, C_tilde = torch.complex(parameter[0], parameter[1]), torch.complex(parameter, parameter)
            first = s4d.ssm_kernel(dtA, C_tilde, 3000)
            s4d.ssm_kernel_backward(dtA, C_tilde, first)
            after_first = simulator.peak
            held = torch.empty(4 * 2**20)  # 16 MiB more live at the second calls
            second = s4d.ssm_kernel(dtA, C_tilde, 3000)
            s4d.ssm_kernel_backward(dtA, C_tilde, second)
            del held
        return after_first, simulator.peak, memo.replays if memo else 0

    plain, memo = peaks(False), peaks(True)
    assert memo[:2] == plain[:2] and plain[1] > plain[0] + 16 * 2**20
    assert memo[2] == 2
    assert s4d.ssm_kernel.__module__ == "models.ssm.s4d" and s4d.ssm_kernel.__name__ == "ssm_kernel"
    assert not hasattr(s4d.ssm_kernel, "__wrapped__")


#: (family, mode) of the ``base`` cells simulated at 64K: every family's training (the attention families'
#: and SPADE's dispatch few ops at any length), and LOCOST's and LOCOST-S4's encoding and generation too
#: (their SSM kernels' channel chunks are simulated once per call signature: ``bench.gpusim.Memo``)
CELLS_64K = (*((family, "train") for family in ("longt5-tglobal", "longt5-local", "led", "pegasus-x", "spade",
                                                  "locost", "locost-s4")),
             *((family, mode) for family in ("locost", "locost-s4") for mode in ("encode", "generate")))


def test_base_cells_up_to_64k_simulate():
    """The ``CELLS_64K`` (bf16; LED at its 16K limit; generation with 3 new tokens) simulate to a peak of
    over 1 GiB in training and 256 MiB in encoding and generation, in a new process so that no earlier
    test's known values help. Their cost is a benchmark figure, not asserted here (CPU seconds, printed
    with -s; on the 2-core box, 2026-12-06: see the README's section on simulated GPU figures)."""
    code = ("import sys, time; from tests.test_gpusim import simulated\n"
            "for cell in sys.argv[1:]:\n"
            "    family, mode = cell.split(':')\n"
            "    start = time.process_time()\n"
            "    sim = simulated(family, mode, 'bf16', 16384 if family == 'led' else 65536, 'base')\n"
            "    print(family, mode, round(time.process_time() - start, 1), sim.peak_bytes)\n")
    cells = [f"{family}:{mode}" for family, mode in CELLS_64K]
    out = subprocess.run([sys.executable, "-c", code, *cells], capture_output=True, text=True,
                         timeout=900, check=True).stdout
    rows = [line.split() for line in out.splitlines()]
    assert [(row[0], row[1]) for row in rows] == list(CELLS_64K)
    for family, mode, _seconds, peak in rows:
        assert int(peak) > (2**30 if mode == "train" else 2**28), (family, mode, peak)
    print(out)


def test_simulated_cells_through_the_cli_record_the_simulation_and_an_over_the_gpu_peak_as_oom(tmp_path):
    """A real sweep (worker processes) on a made-up GPU with 40 MiB usable: the encode cell's record
    holds the same peak as ``simulate_step`` in this process, no time figures; the train cell passes
    the GPU and is ``oom`` with its simulated peak."""
    from records import read_jsonl

    gpu = str(2**30 + 40 * 2**20)
    subprocess.run([sys.executable, "-m", "bench.memory", "--simulate", gpu, "--models", "longt5-local",
                    "--sizes", "tiny", "--lengths", "512", "--modes", "train,encode", "--target-len", "16",
                    "--out", str(tmp_path), "--run-id", "sim", "--no-progress", "--no-report"],
                   check=True, capture_output=True, timeout=600)
    records = {r["mode"]: r for r in read_jsonl(tmp_path / "sim" / "results.jsonl")[0]}
    encode, train = records["encode"], records["train"]
    assert (encode["status"], encode["produced_by"], encode["simulated_gpu"], encode["device"]) == \
        ("ok", "simulation", "1064mib", "cuda")
    assert encode["simulated_gpu_bytes"] == int(gpu) and encode["dtype"] == "bf16"
    assert encode["time_median_s"] is None and encode["tokens_per_s"] is None
    here = simulated("longt5-local", "encode", "bf16")
    assert encode["mem_base_bytes"] == here.base_bytes
    assert encode["mem_peak_above_base_bytes"] == here.peak_bytes
    assert train["status"] == "oom" and train["mem_peak_bytes"] > 40 * 2**20
    peak = train["mem_peak_bytes"] / 2**30
    assert train["message"].startswith(f"SimulatedOutOfMemory: simulated peak {peak:.2f} GiB")
    assert "> 0.04 GiB usable on 1064mib (1.04 GiB less 1 GiB CUDA context)" in train["message"]


def test_capacity_search_brackets_the_exact_longest_length():
    from bench.gpusim import longest_fitting

    peaks = {"linear": lambda n: 100 * n + 5_000, "quadratic": lambda n: n * n // 1_000 + 50 * n,
             "square root": lambda n: int(1_000 * n ** 0.5), "jump": lambda n: 10 if n < 300_000 else 10**12}
    for (name, peak_of), usable in product(peaks.items(), (150_000, 30_000_000, 300_000_007)):
        probes: list[int] = []

        def peak(length: int, probes=probes, peak_of=peak_of) -> int:
            probes.append(length)
            return peak_of(length)

        cap = longest_fitting(peak, usable)
        exact = max((n for n in range(1, 4 * 2**20 + 1, 64) if peak_of(n) <= usable), default=None)
        assert peak_of(cap.longest_ok) <= usable and cap.peak_bytes == peak_of(cap.longest_ok), (name, cap)
        if cap.first_failure is not None:
            assert peak_of(cap.first_failure) > usable and cap.reason == "oom", (name, cap)
            assert cap.longest_ok <= exact + 63 < cap.first_failure + 64
            assert cap.first_failure - cap.longest_ok <= max(1024, 0.01 * cap.longest_ok), (name, cap)
        assert len(probes) < 30
        if name == "linear" and cap.first_failure:  # the power law through the bracket: 2-3 probes close it
            doubling = next(i for i, n in enumerate(probes) if peak_of(n) > usable) + 1
            assert len(probes) - doubling <= 3, (usable, probes)
    assert longest_fitting(lambda length: length, 10**12).first_failure is None
    limited = longest_fitting(lambda length: "unsupported: 16,384 positions" if length > 16384 else 1, 10)
    assert (limited.longest_ok, limited.reason) == (16384, "unsupported: 16,384 positions")


def test_capacity_cli_reports_the_bracket_its_simulations_give(tmp_path):
    """``python -m bench.capacity`` on a made-up GPU with 102 MiB usable: the longest length it prints
    fits and the first failure does not, by ``simulate_step`` in this process."""
    out = subprocess.run([sys.executable, "-m", "bench.capacity", "--gpu", "1126MiB", "--size", "tiny",
                          "--models", "longt5-local", "--modes", "encode", "--out", str(tmp_path),
                          "--no-report"],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("longt5-local"))
    longest, failure = (int(value.replace(",", "")) for value in row[2:4])
    usable = 1126 * 2**20 - 2**30

    def total(length: int) -> int:
        handle = build("longt5-local", "tiny", device="meta")
        sim = simulate_step(handle, lambda: handle.make_batch(length, target_len=1), "encode", dtype="bf16")
        return sim.base_bytes + sim.peak_bytes

    assert total(longest) <= usable < total(failure)
    assert failure - longest <= 1024 and row[-1] == "oom"
    assert out.startswith("longest input (tokens) of the tiny presets on 1126mib ")
    assert f"{total(longest) / 2**30:.2f}" == row[4]


def test_generation_capacity_is_searched_on_one_token_and_settled_with_the_full_recipe(capsys):
    """``cli.capacity.capacity`` for generation: the search probes with one new token, then the longest
    length found is simulated once with the GPU default's 64 new tokens, and the bracket holds for 64."""
    from cli.capacity import capacity

    def total(length: int, new_tokens: int) -> int:
        handle = build("longt5-local", "tiny", device="meta")
        sim = simulate_step(handle, lambda: handle.make_batch(length, target_len=1), "generate",
                            new_tokens=new_tokens, dtype="bf16")
        return sim.base_bytes + sim.peak_bytes

    usable = total(6 * 1024, 64)  # the full recipe at 6K just fits
    cap = capacity("longt5-local", "tiny", "generate", (), usable, 4 * 2**20)
    probes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("  longt5-local")]
    assert [line for line in probes if "(+64 new)" in line] == [
        f"  longt5-local generate {cap.longest_ok:,} (+64 new): {cap.peak_bytes / 2**30:.2f} GiB"]
    assert len(probes) > 2 and all("(+1 new)" in line for line in probes[:-1])
    assert cap.peak_bytes == total(cap.longest_ok, 64) <= usable < total(cap.first_failure, 1)
    assert cap.first_failure - cap.longest_ok <= 1024 and cap.reason == "oom"


def test_capacity_refuses_a_model_config_field_the_model_lacks():
    """``--model-config`` of ``bench.capacity`` is checked as the sweeps check it: a field no config has is
    one ``error:`` line and exit 2 before any simulation (it used to be dropped silently)."""
    out = subprocess.run([sys.executable, "-m", "bench.capacity", "--gpu", "h100-80gb", "--size", "tiny",
                          "--models", "locost", "--max-len", "1k", "--model-config", "foo=1"],
                         capture_output=True, text=True, timeout=600)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == ("error: locost has no config field 'foo' (--model-config; give --models only the "
                          "families that have it)\n")


@pytest.mark.parametrize("argv, line", [
    (["--gpu", "80"], "error: argument --gpu: a GPU memory size must be a whole number of bytes above the "
                      "1 GiB CUDA context: '80'"),
    (["--gpu", "h100-80gb", "--run-id", "../up"], "error: argument --run-id: '../up' is not a directory name "
                                                  "(use letters, digits and . _ + -, not . or ..)"),
    (["--gpu", "h100-80gb", "--modes", "decode"], "error: unknown mode 'decode'; known: train, encode, "
                                                  "generate"),
])
def test_capacity_refuses_bad_input_in_one_line_and_writes_nothing(argv, line, tmp_path):
    """A bad ``--gpu``, ``--run-id`` or mode: one ``error:`` line, exit 2, and no run directory."""
    out = subprocess.run([sys.executable, "-m", "bench.capacity", *argv, "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", line + "\n")
    assert not (tmp_path / "out").exists()


def test_a_ctrl_c_handled_inside_a_freed_storages_callback_still_interrupts_the_step(monkeypatch):
    """Python runs a signal's handler at the next bytecode, during a simulated step often inside a
    ``LiveBytes`` weakref callback (one per freed storage), and drops what a weakref callback raises: that
    Ctrl-C was lost and the step ran to its end. Here a real SIGINT is raised inside the first such
    callback; the step must still end in ``KeyboardInterrupt``, and the handler be the default again."""
    raised = []
    free = LiveBytes._free

    def free_and_interrupt(self, key, size):
        if not raised:
            raised.append(key)
            signal.raise_signal(signal.SIGINT)
        free(self, key, size)

    monkeypatch.setattr(LiveBytes, "_free", free_and_interrupt)
    # Ctrl-C handled as in a terminal, also where pytest inherited SIGINT ignored (a script's background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            simulated("locost", "train", "fp32")
        assert raised and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_nested_deferrals_deliver_the_first_signal_with_the_programs_handler():
    """``bench.signals.DEFERRED`` nests (capacity around each probe's step): a signal noted inside is raised
    by the handler the program had (``cli.args``' SIGTERM as ``Terminated``, Ctrl-C's ``KeyboardInterrupt``),
    at ``deliver()`` or on leaving the inner opening, never absorbed by the outer one; after the outermost,
    the program's handlers are back and nothing is left noted."""
    from bench.signals import DEFERRED
    from cli.args import Terminated, _terminate

    programs = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _terminate}
    previous = {signum: signal.signal(signum, handler) for signum, handler in programs.items()}
    reached = []
    try:
        with pytest.raises(Terminated), DEFERRED, DEFERRED:
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
            reached.append(list(DEFERRED.pending))  # noted, not raised
            DEFERRED.deliver()
            reached.append("after deliver")
        assert reached == [[signal.SIGTERM, signal.SIGINT]]
        with pytest.raises(KeyboardInterrupt), DEFERRED:
            with DEFERRED:
                signal.raise_signal(signal.SIGINT)
            reached.append("after the inner opening")
        assert reached == [[signal.SIGTERM, signal.SIGINT]] and DEFERRED.pending == []
        assert {signum: signal.getsignal(signum) for signum in programs} == programs
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_signal_noted_before_a_step_is_raised_at_its_first_op_not_in_a_metadata_query():
    """A Ctrl-C noted between two probes of the capacity bisection is raised at the next step's first op.
    The first call a step dispatches is ``prim.device``, which ``embedding``'s device guard asks where C++
    cannot let an exception through: raised there, it aborted the process ("terminate called after
    throwing an instance of 'python_error'", status -6). In a new process, so that an abort fails only this
    test."""
    code = ("import signal; from bench.signals import DEFERRED; from tests.test_gpusim import simulated\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "with DEFERRED:\n"
            "    signal.raise_signal(signal.SIGINT)\n"
            "    try:\n"
            "        simulated('locost', 'train', 'fp32')\n"
            "    except KeyboardInterrupt:\n"
            "        print('KeyboardInterrupt', DEFERRED.pending)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (0, "KeyboardInterrupt []\n"), done.stderr[-2000:]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_capacity_stops_at_a_signal_python_would_drop_between_probes(monkeypatch, capsys, signum, status,
                                                                      tmp_path):
    """A Ctrl-C or SIGTERM whose handler runs inside a weakref callback between two probes (as those of
    freed fake tensors do; Python prints and drops what a weakref callback raises) ends the bisection in the
    next probe's step, with the program's line and status: the SIGTERM used to be dropped and the
    bisection ran to its end. Deterministic: the signal is raised inside a real weakref callback."""
    import weakref

    import bench.gpusim
    from cli.capacity import main

    steps, step = [], bench.gpusim.simulate_step

    class Freed:
        pass

    def step_then_signal(*args, **kwargs):
        steps.append("started")
        sim = step(*args, **kwargs)
        steps.append("done")
        if len(steps) == 2:  # after the first probe's step
            freed = Freed()
            ref = weakref.ref(freed, lambda _: signal.raise_signal(signum))
            del freed  # its callback runs now and raises the signal
            assert ref() is None
        return sim

    monkeypatch.setattr(bench.gpusim, "simulate_step", step_then_signal)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        code = main(["--gpu", "h100-80gb", "--size", "tiny", "--models", "locost", "--modes", "encode",
                     "--max-len", "4k", "--out", str(tmp_path)])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert (code, steps) == (status, ["started", "done"]), err
    assert err.splitlines()[-1] == (f"interrupted: 0 capacity rows kept in {tmp_path}/capacity-h100-80gb/"
                                    "capacity.jsonl; rerun the same command to resume")
    assert "Exception ignored" not in err


def _sigint_as_in_a_terminal() -> None:
    """In a child before exec: SIGINT handled (a background job of a script inherits it ignored, and
    Python keeps an ignored SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_capacity_interrupted_during_a_search_keeps_the_rows_it_found(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during the second search, after its
    first probe: one line, exit 130, the first search's row (training: not even 1,024 tokens fit) kept in
    capacity.jsonl, and a rerun of the same command keeps that row and searches only the second. The
    Ctrl-C used to be lost now and then (the test above), and capacity ran to its end."""
    command = [sys.executable, "-m", "bench.capacity", "--gpu", "1126MiB", "--size", "tiny", "--models",
               "locost", "--modes", "train,encode", "--out", str(tmp_path), "--no-report"]
    child = subprocess.Popen(command,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=_sigint_as_in_a_terminal)
    first = ""
    while not first.startswith("  locost encode "):  # the train search ends before encode's first probe
        first = child.stderr.readline()
        assert first, "the capacity run ended before its encode search began"
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=300)
    rows = tmp_path / "capacity-1126mib" / "capacity.jsonl"
    assert (child.returncode, out) == (130, "")
    assert err.splitlines()[-1] == (f"interrupted: 1 capacity rows kept in {rows}; rerun the same command to "
                                    "resume")
    kept = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [(row["family"], row["mode"], row["longest_ok"]) for row in kept] == [("locost", "train", None)]
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    assert again.stderr.splitlines()[0] == "  locost train: kept from capacity.jsonl"
    assert not any(line.startswith("  locost train ") for line in again.stderr.splitlines())
    assert [json.loads(line)["mode"] for line in rows.read_text().splitlines()] == ["train", "encode"]


def test_the_rouge_recipe_is_the_command_bench_rouge_help_prints():
    """``bench.capacity --rouge-recipe`` checks the configuration ``bench.rouge --help`` prints: the values
    read back from the help text of a real ``bench.rouge`` process."""
    import re

    from cli.args import parse_length
    from cli.capacity import rouge_recipe

    text = subprocess.run([sys.executable, "-m", "bench.rouge", "--help"], check=True, capture_output=True,
                          text=True, timeout=300).stdout
    command = text[text.index("GPU configuration"):].split("\n\n")[1]

    def value(option: str) -> str:
        return re.search(rf"--{option} (\S+)", command).group(1)

    cfg = rouge_recipe()
    assert (cfg.size, cfg.budget.batch_size, cfg.budget.train_len, cfg.budget.target_len) == \
        (value("size"), int(value("batch-size")), parse_length(value("train-len")), int(value("target-len")))
    assert cfg.eval_lens == [parse_length(text) for text in value("eval-lens").split(",")]
    assert (cfg.generation.batch_size, cfg.generation.max_new_tokens) == \
        (int(value("eval-batch-size")), int(value("max-new-tokens")))
    assert cfg.models is None and "--models" not in command  # the suite's default models


def test_rouge_recipe_peaks_equal_the_real_steps_bytes_with_checkpointing_and_the_adamw_state():
    """The recipe's check, on a shrunk recipe (tiny, batch 2, 256 / 16 tokens, 3 new tokens): the train
    figure is the real step's base and peak (gradient checkpointing on, counted by ``LiveBytes`` over
    real tensors) plus the bytes of the state a real ``torch.optim.AdamW`` step creates (its ``step``
    counters are 0-dim CPU tensors, off the GPU); the generate figure the real greedy generation's."""
    import dataclasses

    from cli.capacity import recipe_peaks, rouge_recipe

    cfg = rouge_recipe()
    cfg = dataclasses.replace(cfg, size="tiny", eval_lens=[128, 256, None],
                              budget=dataclasses.replace(cfg.budget, batch_size=2, train_len=256,
                                                         target_len=16),
                              generation=dataclasses.replace(cfg.generation, batch_size=2, max_new_tokens=3))
    peaks = recipe_peaks(cfg, "locost")
    handle = build("locost", "tiny", vocab_size=cfg.vocab_size)
    handle.gradient_checkpointing(True)
    batch = handle.make_batch(256, target_len=16, batch_size=2)
    base, peak = live_peak(handle, batch, "train", "bf16", 1)
    optimizer = torch.optim.AdamW(handle.model.parameters())
    handle.model(**batch, use_cache=False).loss.backward()
    optimizer.step()
    state = held_bytes([t for s in optimizer.state.values() for t in s.values() if t.dim() > 0])
    real = base + state + peak
    assert abs(peaks["train"] - real) <= 0.01 * real, (peaks, base, state, peak)
    handle = build("locost", "tiny", vocab_size=cfg.vocab_size)
    base, peak = live_peak(handle, handle.make_batch(256, target_len=1, batch_size=2), "generate", "bf16", 3)
    assert abs(peaks["generate"] - (base + peak)) <= 0.01 * (base + peak), (peaks, base, peak)


def test_a_recipe_step_the_simulation_cannot_run_says_why_instead_of_failing(monkeypatch):
    """LED reads ``.item()`` of a (batch, L) slice of a mask it expands to (batch, 1, L, L): where even
    the slice is over ``VALUE_NUMEL`` elements, too many to compute for real, the whole check died with
    ``ValueNeeded``. Here ``VALUE_NUMEL`` is shrunk so that a tiny LED generation meets that limit (its
    training, at batch 1, stays within it)."""
    import dataclasses

    import bench.gpusim
    from cli.capacity import recipe_peaks, rouge_recipe

    cfg = rouge_recipe()
    cfg = dataclasses.replace(cfg, size="tiny", eval_lens=[256],
                              budget=dataclasses.replace(cfg.budget, batch_size=1, train_len=256,
                                                         target_len=16),
                              generation=dataclasses.replace(cfg.generation, batch_size=2, max_new_tokens=2))
    monkeypatch.setattr(bench.gpusim, "VALUE_NUMEL", 2 * 256 - 1)
    peaks = recipe_peaks(cfg, "led")
    assert isinstance(peaks["train"], int)  # (1, 1, 256, 256): one slice of 256 elements
    assert peaks["generate"] == ("not simulated: aten._local_scalar_dense.default needs values of a tensor "
                                 "the simulation does not know")


def test_leds_generation_over_value_numel_simulates_to_the_byte_with_its_mask_known_on_one_slice(monkeypatch):
    """LED converts, inverts and fills its mask expanded to (batch, 1, L, L), then reads ``.item()`` of a
    (batch, L) slice of it: at the ROUGE recipe's 8 x 16K that is 2^31 elements, over ``VALUE_NUMEL``,
    and the generation raised ``ValueNeeded``. Here ``VALUE_NUMEL`` is shrunk below a tiny LED's
    (2, 1, 256, 256) mask: the step simulates, its mask known on one (2, 1, 1, 256) slice, with the
    base, peak and modelled reserved peak of the same step with every value computed in full (the
    reference: ``VALUE_NUMEL`` large), and the real step's live bytes."""
    import bench.gpusim

    def simulated_with(value_numel: int) -> tuple:
        monkeypatch.setattr(bench.gpusim, "VALUE_NUMEL", value_numel)
        handle = build("led", "tiny", device="meta")
        sim = simulate_step(handle, lambda: handle.make_batch(256, target_len=1, batch_size=2), "generate",
                            new_tokens=2, dtype="bf16")
        return sim.base_bytes, sim.peak_bytes, sim.reserved_peak_bytes

    shrunk = simulated_with(2 * 256 * 256 - 1)
    assert shrunk == simulated_with(1 << 28)
    handle = build("led", "tiny")
    assert shrunk[:2] == live_peak(handle, handle.make_batch(256, target_len=1, batch_size=2), "generate",
                                   "bf16", 2)


def test_the_rouge_recipes_led_generation_at_8_x_16k_simulates():
    """The recipe check's LED generation (8 x 16K, ``small``, its vocabulary), with 1 new token instead of
    256 (~10 s CPU instead of ~55; the same peak: the encoder's): it raised ``ValueNeeded`` at LED's
    ``.item()`` of its (8, 1, 16K, 16K) mask; now it simulates, its total above the float32 mask's 8 GiB
    that a GPU run holds too."""
    from cli.capacity import rouge_recipe

    cfg = rouge_recipe()
    length = max(length for length in cfg.eval_lens if length is not None)
    handle = build("led", cfg.size, device="meta", vocab_size=cfg.vocab_size)
    sim = simulate_step(handle, lambda: handle.make_batch(length, target_len=1,
                                                          batch_size=cfg.generation.batch_size),
                        "generate", new_tokens=1, dtype="bf16")
    assert (length, cfg.generation.batch_size) == (16384, 8)
    assert sim.base_bytes + sim.peak_bytes > 4 * 8 * 16384 ** 2


@pytest.fixture
def simulator(monkeypatch):
    """A ``Simulator`` over a fake mode (neither open), ``VALUE_NUMEL`` shrunk to 64 elements."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    import bench.gpusim

    monkeypatch.setattr(bench.gpusim, "VALUE_NUMEL", 64)
    return bench.gpusim.Simulator(FakeTensorMode(allow_non_fake_inputs=True))


def test_a_broadcast_value_is_known_through_element_by_element_ops_only(simulator):
    """An element-by-element op on a value constant along a dimension (an ``expand``) over ``VALUE_NUMEL``
    elements is known, equal to the same ops on real tensors; a reduction, a scan, a view that only a
    copy could give and ``as_strided`` of it are not (a one-slice rule would give them wrong values:
    the sum of 4 x 1,000 elements is not 1,000 x a slice's ...), so reading them raises ``ValueNeeded``."""
    from bench.gpusim import ValueNeeded

    row = torch.arange(4.0)
    reference = (row[:, None].expand(4, 1000) * 2 + 1).masked_fill(row[:, None] == 3, -1.0).double()
    fake = simulator.fake(row)
    with simulator.fake_mode, simulator:
        wide = fake[:, None].expand(4, 1000)
        odd = (wide * 2 + 1).masked_fill(wide == 3, -1.0).to(torch.float64)  # 4,000 elements each
        assert odd[:, 999].sum().item() == 1 + 3 + 5 - 1  # a slice: 4 elements, computed for real
        for unknowable in (lambda: odd.sum(), lambda: odd.cumsum(1)[:, -1].sum(), lambda: odd.view(-1)[1000],
                           lambda: odd.as_strided((2,), (1000,))[1], lambda: odd.amax(0)[0]):
            with pytest.raises(ValueNeeded, match="_local_scalar_dense"):
                unknowable().item()
    assert torch.equal(simulator.known[odd], reference)


def test_writing_a_broadcast_value_forgets_its_views(simulator):
    """A write of unknown values into a tensor whose value is a broadcast one leaves none of its views
    known: a view of it kept its old value and ``.item()`` gave it (1, where the real tensor holds 2)."""
    from bench.gpusim import ValueNeeded

    row = simulator.fake(torch.arange(4.0))
    with simulator.fake_mode, simulator:
        wide = row[:, None].expand(4, 1000) * 2 + 1
        column = wide[:, 0]
        assert column[0].item() == 1.0
        wide.add_(1)
        with pytest.raises(ValueNeeded):
            column[0].item()


def test_throughput_refuses_to_simulate_since_a_simulation_has_no_times(tmp_path):
    """``bench.throughput --simulate`` used to run cells whose records hold no time: a throughput run
    without a throughput. It is one ``error:`` line and exit 2 before any cell."""
    out = subprocess.run([sys.executable, "-m", "bench.throughput", "--simulate", "h100-80gb", "--models",
                          "locost", "--sizes", "tiny", "--lengths", "512", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert (out.returncode, out.stdout, list(tmp_path.iterdir())) == (2, "", [])
    assert out.stderr == ("error: --simulate gives peak memory only, no times: use it with bench.memory or "
                          "bench.scaling\n")


def test_the_sweep_table_of_simulated_cells_says_simulated_and_on_which_gpu():
    """The table a simulated sweep prints names the GPU beside dtype and batch, as the report does."""
    from cli.table import summary_table

    record = {"model": "locost-tiny", "mode": "train", "input_len": 512, "dtype": "bf16", "batch": 1,
              "status": "ok", "mem_peak_above_base_bytes": 254 * 2**20, "simulated_gpu": "h100-80gb"}
    measured = dict(record, model="led-tiny", simulated_gpu=None)
    rows = [" ".join(line.split()) for line in summary_table([record, measured]).splitlines()[3:]]
    assert rows == ["locost-tiny train bf16 b1, simulated h100-80gb 254", "led-tiny train bf16 b1 254"]


def test_jobs_with_simulate_runs_cells_side_by_side_unmarked(tmp_path):
    """``--jobs 2 --simulate`` was refused with the CPU-contention message, which is about measured times
    and RSS; a simulated peak is computed from tensor sizes and cannot be spoiled by a neighbour. Under
    ``--jobs 2`` the records equal a one-at-a-time run's, with no contention mark."""
    from records import read_jsonl

    def run(run_id: str, *extra: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "bench.memory", "--simulate", "h100-80gb", "--models",
                               "longt5-local,locost", "--sizes", "tiny", "--lengths", "512", "--modes",
                               "encode", "--out", str(tmp_path), "--run-id", run_id, "--no-progress",
                               "--no-report", *extra], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return {r["model"]: r for r in read_jsonl(tmp_path / run_id / "results.jsonl")[0]}

    side_by_side, one_at_a_time = run("jobs2", "--jobs", "2"), run("jobs1")
    assert sorted(side_by_side) == ["locost-tiny", "longt5-local-tiny"]
    for model, record in side_by_side.items():
        assert (record["status"], record["contention"]) == ("ok", None)
        assert record["mem_peak_bytes"] == one_at_a_time[model]["mem_peak_bytes"] > 0
