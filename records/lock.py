"""One runner per run directory: an exclusive ``flock`` on ``<run_dir>/.lock`` held for the life
of the runner, with the holder's PID written in the file so that a second runner can name it.

The kernel releases a ``flock`` when its holder dies, however it dies, so a lock file left behind
by a killed runner (a stale lock) never blocks the next one: only a live holder does. The lock is
re-entrant within a process (a program may take it before the engine takes it again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK = ".lock"
#: run directories this process holds, with how many times (the lock is re-entrant)
_HELD: dict[Path, int] = {}


class RunDirectoryLocked(Exception):
    """Another live process holds the run directory; ``str()`` is the one line to print."""

    def __init__(self, run_dir: Path, holder: int | None):
        self.holder = holder
        who = f"PID {holder}" if holder else "another process"
        super().__init__(f"run directory {str(run_dir)!r} is in use by another runner ({who}); "
                         "wait for it to finish or use another --run-id")


def holder_of(lock_path: Path) -> int | None:
    """The PID written in a lock file (None: none readable)."""
    try:
        text = Path(lock_path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def locked_run_dir(run_dir: Path | str) -> Iterator[Path]:
    """Create ``run_dir`` (and its parents) and hold its lock until the block exits.

    Raises ``RunDirectoryLocked`` at once when another live process holds it, ``OSError`` when the
    directory cannot be created or the lock file written (a read-only place, say)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield run_dir
        finally:
            _HELD[key] -= 1
        return
    with _flock(run_dir):
        _HELD[key] = 1
        try:
            yield run_dir
        finally:
            del _HELD[key]


@contextlib.contextmanager
def _flock(run_dir: Path) -> Iterator[None]:
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirectoryLocked(run_dir, holder_of(path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the PID leaves with its holder; the file may stay
    finally:
        os.close(fd)  # releases the lock
