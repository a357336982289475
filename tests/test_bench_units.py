"""Fast in-process checks of the engine's pieces: cells, lengths, trackers, results files, table."""

import gc
import json
import os
import time

import numpy as np
import pytest

from bench.cells import Cell, Failures
from bench.results import append_record, read_records, to_frame
from bench.runner import GiB, exceeds
from bench.sweep import cell_of, make_record
from bench.trackers import (
    MAX_TICK_SHARE,
    HostLoad,
    HostMemory,
    NvmlSampler,
    nvml_device,
    release_free_heap,
    reset_peak_rss,
    status_bytes,
    summarize,
)
from cli.args import parse_length
from cli.table import summary_table

MiB = 2**20


@pytest.mark.parametrize("text, value", [("4096", 4096), ("4k", 4096), ("4K", 4096), ("1m", 1 << 20),
                                         ("1.5k", 1536), (" 16k ", 16384), ("2m", 2_097_152),
                                         ("2147483647", 2**31 - 1)])
def test_lengths_accept_plain_and_suffixed_numbers(text, value):
    assert parse_length(text) == value


@pytest.mark.parametrize("text", ["0", "-4k", "4x", "", "1.3k", "k", "2147483648", "2048m"])
def test_lengths_reject_what_is_not_a_positive_token_count(text):
    with pytest.raises(Exception, match="length"):
        parse_length(text)


def test_cell_id_is_stable_and_ignores_fields_the_mode_does_not_use():
    a = Cell("led", "tiny", "generate", 512, target_len=128, new_tokens=16)
    b = Cell("led", "tiny", "generate", 512, target_len=64, new_tokens=16)
    assert a.cell_id == b.cell_id and a.target_len is None
    assert a.cell_id != Cell("led", "tiny", "generate", 512, new_tokens=32).cell_id
    assert a.cell_id != Cell("led", "tiny", "train", 512, target_len=128).cell_id
    assert Cell.from_json(json.loads(json.dumps(a.to_json()))) == a
    # a hash of the key's JSON, the same in every process and version: resuming depends on it
    assert a.cell_id == "6a63ef56eb0a"


def test_peak_rss_is_reset_and_counts_a_touched_allocation():
    if status_bytes("VmHWM") is None or not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    block = np.ones(300 * MiB, dtype=np.uint8)
    del block
    tracker = HostMemory()
    tracker.start()  # the earlier 300 MiB peak must not count
    assert tracker.hwm_reset
    block = np.ones(100 * MiB, dtype=np.uint8)
    del block  # a transient: the high-water mark must keep it
    above = tracker.stop().above_base_bytes
    assert 90 * MiB <= above <= 150 * MiB


def test_garbage_from_before_start_does_not_hide_the_peak():
    """A collection inside the window (the collector runs whenever it likes) must not free memory
    that the base counted: start() collects first."""
    if status_bytes("VmHWM") is None or not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    cycle = [np.ones(100 * MiB, dtype=np.uint8)]
    cycle.append(cycle)  # only the cyclic collector can free it
    del cycle
    tracker = HostMemory()
    tracker.start()
    gc.collect()  # as if the collector had run during the step
    block = np.ones(100 * MiB, dtype=np.uint8)
    above = tracker.stop().above_base_bytes
    del block
    assert 90 * MiB <= above <= 150 * MiB


def test_freed_but_resident_heap_from_before_start_does_not_hide_the_peak():
    """Memory malloc keeps after free (here ~200 MiB of small blocks, pinned by the last one) would
    serve the step without raising RSS; start() hands it back to the OS first. Without that this
    reads ~0 MiB: what failed CI once, when earlier tests had left such a heap."""
    if status_bytes("VmHWM") is None or not reset_peak_rss() or not release_free_heap():
        pytest.skip("no procfs or no glibc malloc_trim here")
    blocks = [np.ones(64 * 1024, dtype=np.uint8) for _ in range(3200)]  # under the mmap threshold
    last = blocks[-1]
    del blocks
    tracker = HostMemory()
    tracker.start()
    block = np.ones(100 * MiB, dtype=np.uint8)
    above = tracker.stop().above_base_bytes
    del block, last
    assert 90 * MiB <= above <= 150 * MiB


def test_summary_of_times():
    s = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.median_s, s.min_s, s.max_s, s.iqr_s, s.repeats) == (3.0, 1.0, 5.0, 2.0, 5)
    assert summarize([2.0]).iqr_s == 0.0


_BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def _burn_in_children(n: int, seconds: float) -> float:
    """Run ``n`` Python processes that each burn ``seconds`` of CPU at once; their CPU seconds
    together, from the kernel's accounting of each child (``os.wait4``)."""
    import subprocess
    import sys
    children = [subprocess.Popen([sys.executable, "-c", _BURN.format(seconds=seconds)]) for _ in range(n)]
    used = 0.0
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        assert child.returncode == 0
        used += usage.ru_utime + usage.ru_stime
    return used


def test_the_host_load_counts_what_other_processes_did_on_the_cpus_during_the_window():
    """Other work in a window is the busy time of the process's CPUs minus its own: two child processes
    burning CPU while the window's process waits for them are the reference, from the kernel's rusage of
    each. Whatever else runs on the host can only add to it, up to what the CPUs can do in the window."""
    cpus, tick = len(os.sched_getaffinity(0)), 1 / os.sysconf("SC_CLK_TCK")  # /proc/stat: ticks per CPU
    load = HostLoad(threads=cpus)
    load.start()
    children = _burn_in_children(2, 0.6)
    other = load.stop()
    assert children >= 1.2
    assert children - (cpus + 1) * tick <= other * load.wall_s <= (load.wall_s + tick) * cpus
    load.start()  # a window shorter than what one clock tick per CPU can tell: no figure
    assert load.stop() is None and load.wall_s < cpus * tick / (MAX_TICK_SHARE * load.threads)


def _record(cell, status="ok", **fields):
    return make_record(cell, {"status": status, "message": "", **fields}, run_id="r", suite="memory",
                       started_at="t", wall_s=1.0)


def test_a_torn_last_line_is_skipped_and_later_records_stay_whole(tmp_path):
    cells = [Cell("led", "tiny", "train", n, target_len=8) for n in (128, 256, 512)]
    append_record(tmp_path, _record(cells[0]))
    with open(tmp_path / "results.jsonl", "ab") as f:  # a runner killed in the middle of a write
        f.write(b'{"cell_id": "abc", "fam')
    append_record(tmp_path, _record(cells[1]))
    append_record(tmp_path, _record(cells[2], mem_peak_bytes=5))
    append_record(tmp_path, _record(cells[2], mem_peak_bytes=7))  # rerun with --force: latest wins
    records = read_records(tmp_path)
    assert [r["cell_id"] for r in records] == [c.cell_id for c in cells]
    assert records[-1]["mem_peak_bytes"] == 7
    assert len(read_records(tmp_path, latest=False)) == 4
    assert cell_of(records[1]) == cells[1]


def test_records_have_every_schema_field_and_a_flat_csv_row():
    record = _record(Cell("led", "tiny", "generate", 128, new_tokens=4), env={"torch": "x", "threads": 2})
    for key in ("run_id", "suite", "cell_id", "model", "target_len", "new_tokens", "mem_peak_bytes",
                "time_iqr_s", "flops_source", "generated_tokens_per_s", "env", "wall_s"):
        assert key in record
    assert record["model"] == "led-tiny" and record["target_len"] is None and record["new_tokens"] == 4
    frame = to_frame([record])
    assert {"env_torch", "env_threads"} <= set(frame.columns) and "env" not in frame.columns


def test_a_failure_skips_longer_inputs_of_the_same_series_only():
    failures = Failures()
    failures.note(Cell("led", "tiny", "train", 20000, target_len=8), "unsupported")
    failures.note(Cell("led", "tiny", "train", 8000, target_len=8), "ok")
    reason = failures.reason_to_skip(Cell("led", "tiny", "train", 40000, target_len=8))
    assert reason == "skipped: led-tiny train was unsupported at 20,000 tokens"
    assert failures.reason_to_skip(Cell("led", "tiny", "train", 16000, target_len=8)) is None
    assert failures.reason_to_skip(Cell("led", "tiny", "generate", 40000, new_tokens=4)) is None
    assert failures.reason_to_skip(Cell("led", "tiny", "train", 40000, target_len=16)) is None
    failures.note(Cell("led", "tiny", "generate", 1000, new_tokens=4), "error")  # errors do not skip
    assert failures.reason_to_skip(Cell("led", "tiny", "generate", 2000, new_tokens=4)) is None


def test_an_encode_failure_skips_generate_from_that_length_but_not_the_reverse():
    failures = Failures()
    failures.note(Cell("longt5-local", "small", "encode", 4096), "timeout")
    assert failures.reason_to_skip(Cell("longt5-local", "small", "generate", 2048, new_tokens=8)) is None
    reason = failures.reason_to_skip(Cell("longt5-local", "small", "generate", 4096, new_tokens=8))
    assert reason == "skipped: longt5-local-small encode was timeout at 4,096 tokens"
    assert failures.reason_to_skip(Cell("longt5-local", "small", "encode", 4096)) is None
    failures.note(Cell("led", "small", "generate", 4096, new_tokens=8), "oom")
    assert failures.reason_to_skip(Cell("led", "small", "encode", 8192)) is None
    assert failures.reason_to_skip(Cell("longt5-local", "tiny", "generate", 8192, new_tokens=8)) is None


def test_summary_table_shows_memory_or_status_per_model_and_length():
    cells = [Cell("led", "tiny", "train", n, target_len=8) for n in (1024, 2048)]
    records = [_record(cells[0], mem_peak_above_base_bytes=300 * MiB), _record(cells[1], status="oom")]
    table = summary_table(records)
    row = next(line for line in table.splitlines() if line.startswith("led-tiny"))
    assert "300" in row and "OOM" in row
    assert "1,024" in table and "2,048" in table


def test_the_throughput_tables_show_tokens_per_second_and_the_first_call():
    cells = [Cell("locost", "tiny", "encode", n) for n in (1024, 2048)]
    records = [_record(cells[0], tokens_per_s=12345.6, first_call_s=0.8125),
               _record(cells[1], tokens_per_s=None, first_call_s=None, status="timeout")]
    rate, first = (summary_table(records, value) for value in ("throughput", "first_call"))
    assert next(line for line in rate.splitlines() if line.startswith("locost-tiny")).split()[-2:] == [
        "12,346", "timeout"]
    assert next(line for line in first.splitlines() if line.startswith("locost-tiny")).split()[-2:] == [
        "0.812", "timeout"]
    assert first.splitlines()[0].startswith("seconds of the first step")


def test_the_throughput_table_shows_locosts_first_call_and_its_timed_steps_as_separate_rows():
    reused = Cell("locost", "tiny", "encode", 2048, workload="bench.workloads:model",
                  workload_args=(("reuse_kernel", True),))
    records = [_record(Cell("locost", "tiny", "encode", 1024), tokens_per_s=2000.0, first_call_s=1.024,
                       reuse_kernel=False),
               _record(reused, tokens_per_s=4000.0, first_call_s=0.5, reuse_kernel=True),
               _record(Cell("led", "tiny", "encode", 1024), tokens_per_s=900.0, first_call_s=2.0)]
    lines = [" ".join(line.split()) for line in summary_table(records, "throughput").splitlines()[3:]]
    # the timed steps' median, as before; the first call: batch x length / first_call_s (1,024 / 1.024 s)
    assert lines == ["locost-tiny encode, kernel built per call fp32 b1 2,000",
                     "locost-tiny encode, first call fp32 b1 1,000 4,096",
                     "locost-tiny encode, steady (kernel reused) fp32 b1 4,000",
                     "led-tiny encode fp32 b1 900"]  # no SSM kernels: one row


def test_results_file_is_appended_not_rewritten(tmp_path):
    append_record(tmp_path, _record(Cell("led", "tiny", "train", 1, target_len=1)))
    inode = os.stat(tmp_path / "results.jsonl").st_ino
    append_record(tmp_path, _record(Cell("led", "tiny", "train", 2, target_len=1)))
    assert os.stat(tmp_path / "results.jsonl").st_ino == inode


@pytest.mark.parametrize("cuda_index, visible, uuid, nvml", [
    (0, None, None, 0),  # nothing pinned: CUDA's index is NVML's
    (0, "3,5", None, 3),  # a worker pinned by --jobs / Slurm: NVML wants the physical index
    (1, " 3, 5", None, 5),
    (0, "7", None, 7),
    (1, "GPU-6f0e1a2b-aaaa,GPU-1234abcd-bbbb", None, "GPU-1234abcd-bbbb"),  # listed by UUID
    (0, "MIG-0b1c2d3e-cccc", None, "MIG-0b1c2d3e-cccc"),
    (1, "3,5", "1234abcd-bbbb-cccc-dddd-eeeeffff0000", "GPU-1234abcd-bbbb-cccc-dddd-eeeeffff0000"),  # torch's
    (0, None, "GPU-1234abcd-bbbb", "GPU-1234abcd-bbbb"),
])
def test_nvml_is_given_the_physical_gpu_of_a_pinned_worker(cuda_index, visible, uuid, nvml):
    assert nvml_device(cuda_index, visible, uuid) == nvml


@pytest.mark.parametrize("cuda_index, visible", [(2, "3,5"), (0, ""), (1, "4,")])
def test_a_cuda_device_not_in_the_visible_list_has_no_nvml_device(cuda_index, visible):
    with pytest.raises(ValueError, match=f"CUDA device {cuda_index} is not listed in CUDA_VISIBLE_DEVICES"):
        nvml_device(cuda_index, visible)


def test_nvml_sampling_is_optional_without_a_gpu_driver():
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # here: NVMLError_LibraryNotFound
        sampler = NvmlSampler()
        sampler.start()
        assert sampler.stop() == (None, None)
    else:
        pynvml.nvmlShutdown()
        pytest.skip("NVML is available here")


def test_host_memory_keeps_the_highest_sampled_rss_when_the_high_water_mark_lags(monkeypatch):
    from bench import trackers

    readings = [500 * MiB, 500 * MiB, 900 * MiB, 900 * MiB]  # base, first sample, a short 900 MiB peak
    monkeypatch.setattr(trackers, "_current_rss", lambda: readings.pop(0) if readings else 500 * MiB)
    monkeypatch.setattr(trackers, "_peak_rss", lambda: 500 * MiB)  # a high-water mark that missed it
    tracker = trackers.HostMemory(interval_s=0.001)
    tracker.start()
    time.sleep(0.05)
    assert tracker.stop().above_base_bytes == 400 * MiB


def test_budget_message_prints_enough_digits_to_show_the_excess():
    budget = int(0.39 * GiB)
    assert exceeds(budget + 4096, budget) == "RSS 0.390004 GiB > 0.390000 GiB budget"
    assert exceeds(2 * GiB, GiB) == "RSS 2.00 GiB > 1.00 GiB budget"
