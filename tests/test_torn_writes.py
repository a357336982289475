"""A record is appended whole or not at all (issue 29, kind B): ``records.append_jsonl`` on a filesystem
that fills mid-line, and under a file-size limit that cuts the write short, raises and leaves the file
as it was (no torn line)."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from records import append_jsonl, read_jsonl

REPO = Path(__file__).resolve().parents[1]
ROW = {"cell_id": "a" * 12, "message": "x" * 1400}  # ~1.4 kB, as a full record


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root only), unmounted after the test."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", f"tmpfs-{uuid.uuid4().hex[:8]}",
                           str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"tmpfs cannot be mounted here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def fill(directory: Path) -> None:
    """Write a file in ``directory`` until its filesystem has no free block left."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_disk_that_fills_mid_line_raises_and_leaves_no_torn_line(small_tmpfs):
    path = small_tmpfs / "results.jsonl"
    append_jsonl(path, {"cell_id": "b" * 12})
    before = path.read_bytes()
    fill(small_tmpfs)  # the last block of results.jsonl has room for about two more lines
    with pytest.raises(OSError) as raised:
        for _ in range(8):  # the first append that does not fit the block: part of it is written
            append_jsonl(path, ROW)
    assert raised.value.errno == errno.ENOSPC
    (small_tmpfs / "filler").unlink()
    rows, warnings = read_jsonl(path)
    assert warnings == [] and path.read_bytes().startswith(before)
    assert all(row == ROW for row in rows[1:]) and rows[0] == {"cell_id": "b" * 12}


def test_a_write_cut_short_by_a_size_limit_raises_and_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"cell_id": "b" * 12})
    before = path.read_bytes()
    code = textwrap.dedent(f"""
        import json, resource, signal, sys
        from records import append_jsonl
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 96}, {len(before) + 96}))
        try:
            append_jsonl({str(path)!r}, json.loads({json.dumps(json.dumps(ROW))}))
        except OSError as exc:
            print(exc.errno)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(errno.EFBIG)  # 96 bytes were written, then the limit
    assert path.read_bytes() == before
