"""The environment a cell ran in, stored with every record."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the harness checkout, with ``-dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def package_version(name: str) -> str | None:
    """Installed version without importing the package (``torch`` is imported only where it runs)."""
    module = sys.modules.get(name)
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def device_name(device: str) -> str:
    if str(device).startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


@lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively: its flags (``/proc/cpuinfo``) name AVX512-BF16 or
    AMX-BF16, the instructions oneDNN's bf16 kernels need (what ``torch.ops.mkldnn._is_mkldnn_bf16_supported``
    reports, read here without importing torch into the parent). Elsewhere bf16 autocast on the CPU runs an
    emulated matmul several times slower than fp32 (1024 x 512 x 512: 8.7 against 73 GFLOP/s on one thread of
    a 2-core AMD EPYC with AVX2, torch 2.13.0, 2026-12-06). True where the flags cannot be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return True
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), None)
    return flags is None or bool({"avx512_bf16", "amx_bf16"} & set(flags))


def environment(device: str = "cpu", *, query_device: bool = True, threads: int | None = None) -> dict:
    """Versions, hardware and thread count of this process (call it where the cell runs).
    ``query_device=False`` leaves a GPU's name out rather than initialise CUDA in this process."""
    on_cuda = str(device).startswith("cuda")
    return {
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "transformers": package_version("transformers"),
        "device_name": device_name(device) if query_device or not on_cuda else None,
        "cpu_model": cpu_model(),
        "cpu_native_bf16": cpu_native_bf16(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": default_threads() if threads is None else threads,
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }


def default_threads(fallback: int | None = None) -> int:
    """Threads to use unless told: ``OMP_NUM_THREADS`` if set, else ``fallback``, else the CPUs this
    process may use (a cell's default; the ROUGE suite falls back to 1)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    if fallback is not None:
        return fallback
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(requested: str | None) -> str:
    """``cpu`` or ``cuda[:N]``; ``None`` or ``auto``: CUDA when available, else CPU. Raises
    ``ValueError`` (one line) for another name or CUDA that is not available."""
    import torch

    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", requested):
        raise ValueError(f"unknown device {requested!r}; use auto, cpu or cuda[:N]")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available here")
    return requested


def mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def oom_kill_count() -> int | None:
    """Processes the kernel's OOM killer has killed since boot (``oom_kill`` in /proc/vmstat, Linux
    4.13+; cgroup OOM kills included); None where it cannot be read."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


if __name__ == "__main__":  # pragma: no cover - a quick look
    print(environment(sys.argv[1] if len(sys.argv) > 1 else "cpu"))
