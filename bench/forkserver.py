"""Workers forked from a preloaded server: a fresh process per cell, without an interpreter start and
imports per cell (about 10-15 s on 2 loaded cores for torch, transformers and the models).

``start(spec_path, log_path, env)`` has multiprocessing's fork server (one per runner process,
started at the first cell with ``PRELOAD`` imported, restarted if it died) fork a process that runs
``child``: it takes a new session (the runner kills its whole group), sends its output to the cell's
log, takes the cell's environment variables and the repository as its working directory, dies with
the server (``PR_SET_PDEATHSIG``) and with the runner (``bench.worker.follow_runner``), and runs
``bench.worker.run`` as ``python -m bench.worker`` would. Nothing of one cell reaches the next: each
is a copy of the server as it was after its imports, and it ends with its cell.

Memory: a forked child's RSS includes the server's anonymous pages, which it shares copy-on-write
(as a spawned worker's includes what its own imports allocated), and Linux starts its ``VmHWM`` and
``ru_maxrss`` at that RSS, not at the server's peak. The memory base is taken in the child after the
build and the high-water mark reset there (``bench.trackers.HostMemory``), so the peak above base is
the cell's alone; ``tests/test_forkserver.py`` checks it against a server holding a large allocation.
Linux does not copy the page tables of file mappings at fork, though: the library code the imports
touched (about 100 MB: torch's) would be faulted in again during the first steps and counted in the
peak above base, which a spawned worker counts in its base (measured: +1.4 to +3.2 MiB above base on
tiny cells). So the server notes its resident file pages once (``note_file_pages``) and each child
maps the same pages (``MADV_POPULATE_READ``, ~20 ms) before anything else.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

from bench.env import REPO

#: modules the server imports before it forks anything (a test may add one before the first start)
PRELOAD = ["bench.preload"]
_lock = threading.Lock()
#: (address, bytes) of the runs of file-mapped pages resident in the server (``note_file_pages``)
FILE_PAGES: list[tuple[int, int]] = []
MADV_POPULATE_READ = 22  # Linux 5.14+


def note_file_pages() -> None:
    """Fill ``FILE_PAGES`` from ``/proc/self/maps`` and the present bits of ``/proc/self/pagemap``
    (the server calls it once its imports are done; left empty where they cannot be read)."""
    import numpy as np

    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
            for line in maps:
                fields = line.split()
                if len(fields) < 6 or not fields[5].startswith("/") or fields[5].startswith("/dev/"):
                    continue  # anonymous memory (copied at fork), stacks, devices
                start, end = (int(x, 16) for x in fields[0].split("-"))
                pagemap.seek(start // page * 8)
                entries = np.frombuffer(pagemap.read((end - start) // page * 8), dtype=np.uint64)
                edges = np.diff(np.concatenate(([0], (entries >> np.uint64(63)).astype(np.int8), [0])))
                FILE_PAGES.extend((start + int(a) * page, int(b - a) * page)
                                  for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1),
                                                  strict=True))
    except OSError:
        FILE_PAGES.clear()


def _map_file_pages() -> None:
    """Map ``FILE_PAGES`` into this (forked) process, as they were in the server; a run the kernel
    refuses (an older kernel, a mapping gone) is left to be faulted in when used."""
    import ctypes

    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for address, length in FILE_PAGES:
        madvise(address, length, MADV_POPULATE_READ)


class Forked:
    """A forked worker, with the part of ``subprocess.Popen``'s interface the runner uses."""

    def __init__(self, process: multiprocessing.Process):
        self.process, self.pid, self.returncode = process, process.pid, None

    def poll(self) -> int | None:
        return self.wait(0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status (negative: killed by that signal); raises ``subprocess.TimeoutExpired``
        when the worker still runs after ``timeout`` seconds."""
        if self.returncode is None:
            self.process.join(timeout)
            if self.process.exitcode is None:
                raise subprocess.TimeoutExpired("bench.worker", timeout)
            self.returncode = self.process.exitcode
            self.process.close()  # its pipe to the server: a sweep starts thousands of workers
        return self.returncode


def start(spec_path: Path | str, log_path: Path | str | None, env: dict) -> Forked:
    """A worker measuring the cell of ``spec_path``, its output in ``log_path`` (None: discarded),
    with ``env`` added to its environment."""
    return Forked(_fork(child, str(spec_path), str(log_path or os.devnull), env, str(REPO)))


def warm() -> float:
    """Start the server now and wait until it has imported ``PRELOAD`` (by forking a process that does
    nothing); the seconds that took (near 0 when it was running), so that a sweep pays its start before
    its first cell, not in that cell's ``wall_s``."""
    started = time.monotonic()
    Forked(_fork(_nothing)).wait()
    return time.monotonic() - started


def _nothing() -> None:
    pass


def _fork(target, *args) -> multiprocessing.Process:
    context = multiprocessing.get_context("forkserver")
    with _lock:
        context.set_forkserver_preload(list(PRELOAD))
        _ensure_server()
        process = context.Process(target=target, args=args, name="bench-worker")
        with _main_hidden():
            process.start()
    return process


@contextlib.contextmanager
def _main_hidden():
    """Hide the runner's ``__main__`` while a worker starts: multiprocessing would run the main module
    (a script, ``python -m bench.memory``) again in each child before its target, which costs time and
    runs any unguarded top-level code of a caller's script; a worker needs nothing of it."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


#: the server's environment: one OpenMP / MKL thread, so that an op run by a preloaded import starts no
#: thread pool (GNU libgomp's does not survive fork: a child's first parallel op would hang); each child
#: sets its cell's thread count
SERVER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _ensure_server() -> None:
    """Start the server (unless it runs) with this checkout first on its path, as a spawned worker
    has it (the runner's own path could find another checkout of the harness, an editable install),
    single-threaded (``SERVER_ENV``) and deaf to Ctrl-C from its start (``_sigint_ignored``): it shares
    the runner's process group, and the runner alone answers an interrupt."""
    changes = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               **SERVER_ENV}
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        with _sigint_ignored():
            multiprocessing.forkserver.ensure_running()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while the server is spawned: an ignored signal stays ignored across exec (Python
    keeps it so at its start), while multiprocessing ignores it in the server only after the imports,
    and a blocked one would not stay blocked (the spawn resets the mask). A no-op outside the main
    thread, where handlers cannot change (``warm``, in the main thread, starts the server first)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def server_threads() -> int:
    """Threads of the fork server, this forked child's parent (1 where /proc cannot tell)."""
    try:
        return len(os.listdir(f"/proc/{os.getppid()}/task"))
    except OSError:
        return 1


def child(spec_path: str, log_path: str, env: dict, repo: str) -> None:
    """The forked worker's body (see the module docstring); exits with ``bench.worker.run``'s status."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # ignored in the server, not in a worker
    _map_file_pages()
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    if REPO != Path(repo):
        sys.exit(f"error: the fork server imported the harness from {REPO}, the runner from {repo}")
    os.chdir(repo)
    if sys.path[:1] != [repo]:  # the server has the runner's sys.path; an exec'd worker has PYTHONPATH=REPO
        sys.path.insert(0, repo)  # first, so workloads of this checkout (e.g. tests.*) import the same way
    os.environ.update(env)
    from bench import worker
    from bench.protocol import WorkerResult, WorkerSpec

    spec = WorkerSpec.read(spec_path)
    if (threads := server_threads()) > 1:  # not the cell's failure: a rerun with exec measures it
        message = (f"the fork server runs {threads} threads (a preloaded import started a thread pool, e.g. "
                   "torch.set_num_threads and a parallel op): a forked worker would hang in its first "
                   "parallel op; use --worker-start exec")
        refused = {"status": "error", "message": message, "harness_failure": True}
        WorkerResult("done", refused).write(spec.result)
        sys.exit(0)
    if "torch" in sys.modules:  # the server's torch took its thread count from the server's environment
        sys.modules["torch"].set_num_threads(spec.cell.threads)
    worker.die_with_parent(None)  # the parent is the server
    worker.follow_runner(spec.parent)
    sys.exit(worker.run(spec))
