"""Files of a run directory, written whole or not at all.

- ``atomic_path(path)``: a temporary sibling to write, renamed over ``path`` on success (removed on
  failure), so that a reader never sees half a file. Every file the harness writes goes through it.
- ``append_jsonl(path, row)``: one whole line under an exclusive lock, then fsync, or ``OSError`` with
  the file as it was (a short write on a full disk is cut back). A writer killed mid-write can still
  leave a torn last line: the next append starts on a fresh line and ``read_jsonl`` skips what does
  not parse, with a warning.
- ``flatten_env(row)``: a record with its ``env`` dict spread into ``env_<key>`` columns.
- ``remove_stale_temporaries(directory)``: the ``<name>.tmp<pid>`` files of writers killed mid-write.
- ``write_csv(frame, path)``: the one CSV writer (results.csv and every table of the report): the
  schema's integer columns are written as integers (``128``, never ``128.0``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from records.schema import Record, RougeRow


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path | str, data, *, indent: int | None = 2) -> None:
    """``data`` as JSON (non-JSON values as ``str``), atomically; indented with a final newline."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, default=str) + ("\n" if indent else ""))


def write_jsonl(path: Path | str, rows: list[dict]) -> None:
    """One JSON object per line, atomically (the whole file is replaced)."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))


def append_jsonl(path: Path | str, row: dict) -> None:
    """Append ``row`` as one whole line, locked and fsynced, or raise ``OSError`` (a full disk: ENOSPC,
    a file size limit: EFBIG) with the file cut back to its size before; a torn line before it (from a
    writer killed mid-write) stays alone."""
    line = (json.dumps(row) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn line from a killed writer stays alone (and is skipped)
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # not a regular file (/dev/full): nothing to cut
                os.ftruncate(fd, size)  # no torn line of ours: the file as it was
            raise
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (``os.write`` may write part of it: a disk that fills, a size limit); a
    write that makes no progress raises ``OSError(ENOSPC)``."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


#: why a line of a JSONL file is skipped when it does not parse as a JSON object
NOT_AN_OBJECT = "not a JSON object (a torn write?)"


def read_jsonl(path: Path | str) -> tuple[list[dict], list[str]]:
    """(JSON objects of a JSONL file in file order, warnings). A line that is not a JSON object (a
    torn write) is skipped with a one-line warning; a missing file reads as no rows."""
    numbered, torn = read_jsonl_numbered(path)
    return [row for _, row in numbered], torn_warnings(path, torn)


def read_jsonl_numbered(path: Path | str) -> tuple[list[tuple[int, dict]], list[int]]:
    """(each JSON object of the file with its line number (from 1), the numbers of the lines that are
    not a JSON object); blank lines are neither."""
    path = Path(path)
    if not path.is_file():
        return [], []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows, torn = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append((number, row))
        else:
            torn.append(number)
    return rows, torn


def torn_warnings(path: Path | str, torn: list[int]) -> list[str]:
    """One warning per line number of ``torn`` (lines of ``path`` that are not a JSON object)."""
    return [f"{path}: skipped line {number}: {NOT_AN_OBJECT}" for number in torn]


def latest_records(rows: list[dict]) -> list[dict]:
    """One record per ``cell_id`` (its last: a ``--force`` rerun appends), in file order of first
    appearance; rows without a ``cell_id`` are not records."""
    return list({row["cell_id"]: row for row in rows if "cell_id" in row}.values())


#: columns holding whole numbers (counts, token lengths, bytes): the schemas' ``int`` and ``bytes``
#: fields, the FLOP counts (whole, though held as floats) and the integer environment keys
INTEGER_COLUMNS = frozenset([*Record.of_kind("int", "bytes"), *RougeRow.of_kind("int"), "flops",
                             "flops_analytic", "env_cpu_count", "env_threads"])


def write_csv(frame, path: Path | str) -> None:
    """``frame`` (a pandas DataFrame) as CSV without its index, atomically. Columns in
    ``INTEGER_COLUMNS`` whose values are all whole numbers are written as integers: pandas holds an
    integer column with a null as floats, which ``to_csv`` would write as ``128.0``."""
    import pandas as pd

    frame = frame.copy()
    for column in INTEGER_COLUMNS.intersection(frame.columns):
        values = pd.to_numeric(frame[column], errors="coerce")
        whole = values.dropna()
        if (values.notna().sum() == frame[column].notna().sum() and (whole == whole.round()).all()
                and (whole.abs() < 2**63).all()):
            frame[column] = values.round().astype("Int64")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def flatten_env(row: dict) -> dict:
    """``row`` without its ``env`` dict, whose keys become ``env_<key>`` columns (an ``env`` that is
    not an object, from a damaged or foreign record, stays one ``env`` column)."""
    env = row.get("env")
    if env is not None and not isinstance(env, dict):
        return dict(row)
    flat = {key: value for key, value in row.items() if key != "env"}
    flat.update({f"env_{key}": value for key, value in (env or {}).items()})
    return flat


_TEMPORARY = re.compile(r".+\.tmp(\d+)")


def remove_stale_temporaries(directory: Path | str) -> list[Path]:
    """Remove the temporary files ``atomic_path`` left in ``directory`` (``<name>.tmp<pid>``) whose
    writer is no longer running (killed with SIGKILL mid-write); returns them."""
    removed = []
    for path in Path(directory).glob("*.tmp*"):
        match = _TEMPORARY.fullmatch(path.name)
        if match and path.is_file() and not process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a runner a worker follows, a task's process, the
    writer of a temporary file)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid is that large
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return not fields or fields[0] != "Z"  # a zombie left by a killed parent is not alive


def process_start(pid: int) -> int | None:
    """When process ``pid`` started: field 22 of ``/proc/PID/stat`` (clock ticks since boot), the part of
    a process's identity that a recycled PID does not share (proc(5)); None where it cannot be read."""
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (field 3, the state, first; proc(5)), or []
    where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def same_process(pid: int, start: int | None) -> bool:
    """Whether ``pid`` is alive and is the process that started at ``start`` (``process_start``'s value,
    noted when it was launched); a PID whose start is unknown (None) cannot be told from a recycled one,
    so it does not count as the same process."""
    return start is not None and process_alive(pid) and process_start(pid) == start
