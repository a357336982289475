"""Trackers: memory and time of one measured step, each a small separate piece.

- ``HostMemory``: peak resident memory of this process (``VmHWM`` in ``/proc/self/status``,
  falling back to ``ru_maxrss``; a polling thread's highest ``VmRSS`` where that is higher).
  ``start()`` first collects cyclic garbage and hands freed heap memory back to the OS (glibc's
  ``malloc_trim``): memory that is freed but still resident would be counted in the base and then
  reused by the step without raising RSS, hiding as much of its peak. It then records the base
  (RSS now) and resets the high-water mark by writing ``5`` to ``/proc/self/clear_refs`` (Linux),
  so that model-building transients do not count; where the reset is refused the peak is the
  process's lifetime peak (``hwm_reset`` says which).
- ``CudaMemory``: the caching allocator's peak above what was allocated before the step.
- ``NvmlSampler``: process and device memory as NVML sees them, sampled by a thread (optional).
- ``Timer``: CUDA events on GPU, ``perf_counter`` on CPU; ``repeat`` times the warm-up and timed calls
  (``Runs``), ``summarize`` gives median/min/max/IQR.
- ``HostLoad``: on CPU, what the cores this process may run on did besides it during the timed calls
  (``host_busy_s`` minus the process's CPU time): whether other work took the cores the steps needed.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import re
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

_STATUS = "/proc/self/status"
_PROC_STAT = "/proc/stat"
#: the busy fields of a /proc/stat ``cpuN`` line (proc(5)): user, nice, system, irq, softirq, steal; idle and
#: iowait left out, guest time already inside user
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
#: /proc/stat counts whole clock ticks, so a window's busy time may be off by one tick per CPU: a HostLoad
#: figure is kept only where that moves it by at most this share of the step's threads
MAX_TICK_SHARE = 0.05


def status_bytes(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/<pid>/status`` in bytes, None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _peak_rss() -> int:
    """This process's peak RSS in bytes: ``VmHWM`` of /proc/self/status, else ``ru_maxrss``."""
    peak = status_bytes("VmHWM")
    return peak if peak is not None else ru_maxrss_bytes()


def ru_maxrss_bytes(platform: str | None = None) -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes on ``platform`` (default ``sys.platform``): macOS
    reports bytes, Linux and the BSDs kilobytes (their getrusage(2) man pages)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if (platform or sys.platform) == "darwin" else peak * 1024


def _current_rss() -> int | None:
    return status_bytes("VmRSS")


def release_free_heap() -> bool:
    """Return memory that malloc holds freed but resident to the OS (glibc ``malloc_trim(0)``);
    False where there is no such call (another libc, another OS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


@dataclass
class MemoryReading:
    peak_bytes: int | None = None
    base_bytes: int | None = None
    reserved_bytes: int | None = None
    nvml_process_bytes: int | None = None
    nvml_device_bytes: int | None = None

    @property
    def above_base_bytes(self) -> int | None:
        if self.peak_bytes is None or self.base_bytes is None:
            return None
        return self.peak_bytes - self.base_bytes


class Poller:
    """Calls ``sample()`` every ``interval_s`` seconds on a daemon thread, and once more at ``stop()``."""

    def __init__(self, sample, interval_s: float):
        self.sample, self.interval_s = sample, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.sample()


class HostMemory:
    """Peak RSS above the RSS at ``start()``: the kernel's ``VmHWM``, or the highest ``VmRSS`` a
    thread sampled every few milliseconds where that is higher (a belt to the high-water mark's
    braces: a kernel may fold page counts into ``VmHWM`` lazily)."""

    def __init__(self, interval_s: float = 0.01):
        self.base: int | None = None
        self.hwm_reset = False
        self.sampled_peak = 0
        self._poller = Poller(self._sample, interval_s)

    def _sample(self) -> None:
        self.sampled_peak = max(self.sampled_peak, _current_rss() or 0)

    def start(self) -> None:
        gc.collect()
        release_free_heap()
        self.base = _current_rss()
        self.hwm_reset = reset_peak_rss()
        if self.base is None:  # no procfs
            self.base = _peak_rss()
        self.sampled_peak = 0
        self._poller.start()

    def stop(self) -> MemoryReading:
        self._poller.stop()
        return MemoryReading(peak_bytes=max(_peak_rss(), self.sampled_peak), base_bytes=self.base)


class CudaMemory:
    def __init__(self, device):
        import torch
        self.torch, self.device = torch, torch.device(device)
        self.base: int | None = None
        index = self.device.index or 0
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        self.nvml = NvmlSampler(nvml_device(index, os.environ.get("CUDA_VISIBLE_DEVICES"),
                                            None if uuid is None else str(uuid)))

    def start(self) -> None:
        gc.collect()
        cuda = self.torch.cuda
        cuda.synchronize(self.device)
        self.base = cuda.memory_allocated(self.device)
        cuda.reset_peak_memory_stats(self.device)
        self.nvml.start()

    def stop(self) -> MemoryReading:
        cuda = self.torch.cuda
        cuda.synchronize(self.device)
        nvml_process, nvml_device = self.nvml.stop()
        return MemoryReading(peak_bytes=cuda.max_memory_allocated(self.device), base_bytes=self.base,
                             reserved_bytes=cuda.max_memory_reserved(self.device),
                             nvml_process_bytes=nvml_process, nvml_device_bytes=nvml_device)


def memory_tracker(device: str):
    return CudaMemory(device) if str(device).startswith("cuda") else HostMemory()


def nvml_device(cuda_index: int, visible: str | None, uuid: str | None = None) -> int | str:
    """How NVML names CUDA device ``cuda_index`` of this process: its UUID ("GPU-..."; ``uuid`` as torch's
    device properties give it, with or without the prefix) when known, exact whatever the device order;
    else through ``visible`` (``CUDA_VISIBLE_DEVICES``; None: unset): a listed UUID/MIG id as it is, a
    listed index as the physical index NVML wants (NVML counts every GPU of the machine in PCI bus order,
    CUDA only the visible ones). Raises ``ValueError`` when ``visible`` lists no such device."""
    if uuid:
        return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    if visible is None:
        return cuda_index
    entries = [entry.strip() for entry in visible.split(",")]
    if cuda_index >= len(entries) or not entries[cuda_index]:
        raise ValueError(f"CUDA device {cuda_index} is not listed in CUDA_VISIBLE_DEVICES={visible!r}")
    entry = entries[cuda_index]
    return int(entry) if entry.isdigit() else entry


class NvmlSampler:
    """Highest NVML process and device memory seen while running; (None, None) without NVML.
    ``device``: NVML's index of the GPU, or its UUID (``nvml_device``)."""

    def __init__(self, device: int | str = 0, interval_s: float = 0.01):
        self.device = device
        self.process_peak: int | None = None
        self.device_peak: int | None = None
        self._nvml = None
        self._poller = Poller(self._sample, interval_s)

    def start(self) -> None:
        try:
            import pynvml
            pynvml.nvmlInit()
            self._handle = (pynvml.nvmlDeviceGetHandleByUUID(self.device) if isinstance(self.device, str)
                            else pynvml.nvmlDeviceGetHandleByIndex(self.device))
        except Exception:  # no library, no driver (NVMLError_LibraryNotFound here): no NVML figures
            return
        self._nvml = pynvml
        self._poller.start()

    def _sample(self) -> None:
        nvml, pid = self._nvml, os.getpid()
        try:
            used = nvml.nvmlDeviceGetMemoryInfo(self._handle).used
            self.device_peak = max(self.device_peak or 0, used)
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    self.process_peak = max(self.process_peak or 0, proc.usedGpuMemory)
        except nvml.NVMLError:
            pass

    def stop(self) -> tuple[int | None, int | None]:
        if self._nvml is None:
            return None, None
        self._poller.stop()
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass
        return self.process_peak, self.device_peak


def _cpus() -> set[int]:
    """The CPUs this process may run on (its affinity)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def host_busy_s(path: str = _PROC_STAT) -> float | None:
    """Seconds the CPUs this process may run on (``os.sched_getaffinity``) have been busy since boot,
    whatever ran on them: processes, the kernel's interrupts, a hypervisor's steal (the ``cpuN`` lines
    of /proc/stat, clock ticks of 1/``SC_CLK_TCK`` s). None where it cannot be read (not Linux)."""
    cpus = _cpus()
    try:
        with open(path) as f:
            lines = [line.split() for line in f if line.startswith("cpu") and line[3].isdigit()]
        mine = [line[1:] for line in lines if int(line[0][3:]) in cpus]
        busy = sum(int(ticks[i]) for ticks in mine for i in _BUSY_FIELDS)
    except (OSError, ValueError, IndexError):
        return None
    return busy * _TICK_S if mine else None


class HostLoad:
    """Cores the CPUs of this process's affinity spent on anything else between ``start()`` and ``stop()``,
    on average: their busy time (``host_busy_s``: other processes, interrupts, a hypervisor's steal) minus
    this process's CPU time, over the window's wall time (``wall_s``). ``stop()`` returns None where
    /proc/stat cannot be read, or where the window is too short for its clock ticks to tell
    (``MAX_TICK_SHARE`` of ``threads``)."""

    def __init__(self, threads: int):
        self.threads = threads
        self.wall_s: float | None = None

    def start(self) -> None:
        self._busy, self._cpu, self._wall = host_busy_s(), time.process_time(), time.perf_counter()

    def stop(self) -> float | None:
        wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
        busy, self.wall_s = host_busy_s(), wall
        resolution = len(_cpus()) * _TICK_S / wall if wall > 0 else math.inf  # cores a tick per CPU moves
        if busy is None or self._busy is None or resolution > MAX_TICK_SHARE * self.threads:
            return None
        return max(0.0, busy - self._busy - cpu) / wall


class Timer:
    """Seconds of one call: CUDA events on a GPU (asynchronous work included), else perf_counter; on
    CPU also ``cpu_s``, the process CPU time (user + system, all threads) of the last call, which
    other jobs sharing the cores do not lengthen (None on a GPU)."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.cpu_s: float | None = None
        if self.cuda:
            import torch
            self.torch = torch

    def time(self, fn) -> float:
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        wall, self.cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        return wall


@dataclass
class TimeSummary:
    median_s: float
    min_s: float
    max_s: float
    iqr_s: float
    repeats: int


def summarize(times: list[float]) -> TimeSummary:
    if not times:
        raise ValueError("no timings to summarize")
    if len(times) > 1:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    else:
        q1 = q3 = times[0]
    return TimeSummary(median_s=statistics.median(times), min_s=min(times), max_s=max(times),
                       iqr_s=q3 - q1, repeats=len(times))


@dataclass
class Runs:
    """Seconds of each call of a measured step: the warm-up calls (left out of the statistics), then
    the timed ones; ``first_s`` is the first call of all (the first at this length in the process)."""
    warmup: list[float]
    timed: list[float]
    #: process CPU seconds of each timed call (``Timer.cpu_s``); empty on a GPU
    timed_cpu: list[float] = field(default_factory=list)
    #: cores busy with anything else while the timed calls ran (``HostLoad``); None on a GPU or unknown
    other_cores: float | None = None

    @property
    def first_s(self) -> float | None:
        calls = self.warmup or self.timed
        return calls[0] if calls else None


def repeat(fn, timer: Timer, *, warmup: int, repeats: int, min_time_s: float = 0.0,
           max_repeats: int = 1000, after_warmup=lambda: None, load: HostLoad | None = None) -> Runs:
    """Run ``fn`` ``warmup`` times (timed too, but not part of the statistics), call ``after_warmup()``,
    then run it timed until ``repeats`` runs are done and they add up to at least ``min_time_s`` (at
    most ``max_repeats`` runs), within ``load``'s window where given."""
    runs = Runs([], [])
    for _ in range(warmup):
        runs.warmup.append(timer.time(fn))
    after_warmup()
    if load is not None:
        load.start()
    while len(runs.timed) < max_repeats and (len(runs.timed) < repeats or sum(runs.timed) < min_time_s):
        runs.timed.append(timer.time(fn))
        if timer.cpu_s is not None:
            runs.timed_cpu.append(timer.cpu_s)
    if load is not None:
        runs.other_cores = load.stop()
    return runs
