"""Reliability of the programs (issue 12), with real processes: one runner per run directory, clean
interrupts, results.csv rebuilt from results.jsonl, unwritable outputs refused before measuring,
a resume in another environment refused, and one ``error:`` line for each of them."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import alive, descendants, processes_mentioning

from bench.cells import Cell
from bench.results import read_records
from bench.settings import Settings
from bench.sweep import MixedEnvironmentError, run_sweep
from cli.args import guard
from cli.sweep import ENGINE_ERRORS, kept
from cli.sweep import main as sweep_main

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30
#: a real sweep command whose single cell takes a few seconds (a tiny LOCOST, built in its worker)
SWEEP = ["-m", "bench.memory", "--models", "locost", "--sizes", "tiny", "--modes", "encode",
         "--lengths", "64", "--device", "cpu", "--threads", "1", "--repeats", "1", "--warmup", "0",
         "--no-report", "--no-progress"]
#: the same with a cell that lasts (timed steps repeated for 300 s, at most 1,000 of them: at 16,384
#: tokens that is minutes, at 2,048 tokens only ~15 s since the kernel rewrite), for a runner to be
#: caught in
LASTING = [*SWEEP, "--lengths", "16k", "--min-time", "300"]


def sleeping(*lengths, seconds=0.01) -> list[Cell]:
    return [Cell("synthetic", "sleep", "train", n, target_len=1, workload="bench.workloads:sleep",
                 workload_args=(("seconds", seconds),)) for n in lengths]


def sweep(run_dir, cells, **options):
    return run_sweep(cells, run_dir, suite="test", progress=False,
                     settings=Settings.of(warmup=0, repeats=1, budget_bytes=GiB), **options)


def environ(tmp_path: Path) -> dict:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path / "tmp"), HF_HUB_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false")


def start(argv: list[str], tmp_path: Path) -> subprocess.Popen:
    """A program in its own session with SIGINT at its default (a background shell ignores it)."""
    return subprocess.Popen([sys.executable, *argv], cwd=REPO, env=environ(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, proc: subprocess.Popen | None = None, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.05)




def cell_dirs(tmp_path: Path) -> list[Path]:
    """The workers' directories: in a run directory's logs/, or in the temporary directory."""
    return sorted([*tmp_path.glob("out/*/logs/bench-cell-*"), *(tmp_path / "tmp").glob("bench-cell-*")])


# --- 1. one runner per run directory ---------------------------------------------------------------


def test_a_second_runner_on_a_run_directory_exits_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    first = start([*LASTING, "--out", str(out), "--run-id", "run"], tmp_path)
    try:
        wait_for(lambda: cell_dirs(tmp_path), first)  # the first runner is measuring its cell
        second = subprocess.run([sys.executable, *SWEEP, "--out", str(out), "--run-id", "run"], cwd=REPO,
                                env=environ(tmp_path), capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 2
    assert second.stderr == (f"error: run directory '{out / 'run'}' is in use by another runner "
                             f"(PID {first.pid}); wait for it to finish or use another --run-id\n")
    assert not (out / "run" / "results.jsonl").read_text()  # the second measured nothing
    # the killed runner left its PID in the lock file: a stale lock, which does not block
    assert (out / "run" / ".lock").read_text().strip() == str(first.pid)
    assert [r["status"] for r in sweep(out / "run", sleeping(1))] == ["ok"]


def test_the_rouge_program_refuses_a_run_directory_in_use(tmp_path):
    holder = start(["-c", "import time; from records import locked_run_dir\n"
                          f"with locked_run_dir({str(tmp_path / 'out' / 'r')!r}):\n"
                          "    print('held', flush=True); time.sleep(120)"], tmp_path)
    try:
        assert holder.stdout.readline() == "held\n"
        rouge = subprocess.run([sys.executable, "-m", "bench.rouge", "--out", str(tmp_path / "out"),
                                "--run-id", "r", "--device", "cpu", "--no-report", "--no-progress"],
                               cwd=REPO, env=environ(tmp_path), capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert rouge.returncode == 2
    assert rouge.stderr.splitlines()[-1] == (
        f"error: run directory '{tmp_path / 'out' / 'r'}' is in use by another runner (PID {holder.pid}); "
        "wait for it to finish or use another --run-id")


# --- 2. Ctrl-C and SIGTERM -------------------------------------------------------------------------


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_sweep_says_what_it_kept_and_leaves_no_worker_or_temporary_directory(
        tmp_path, signum, status):
    run_dir = tmp_path / "out" / "run"
    sweep(run_dir, sleeping(1))  # a record of an earlier invocation
    proc = start([*LASTING, "--out", str(tmp_path / "out"), "--run-id", "run"], tmp_path)
    wait_for(lambda: any((d / "result.json").exists() for d in cell_dirs(tmp_path)), proc, seconds=240)
    below = descendants(proc.pid)  # its worker (forked from the fork server, also below it)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert err.splitlines()[-1] == (f"interrupted: 1 record kept in {run_dir / 'results.jsonl'}; "
                                    "rerun the same command to resume")
    assert "Traceback" not in err
    assert cell_dirs(tmp_path) == []
    assert processes_mentioning(str(tmp_path)) == []
    wait_for(lambda: not any(alive(pid) for pid in below), seconds=5)  # no orphan worker, no server
    assert len((run_dir / "results.csv").read_text().splitlines()) == 2  # header + the kept record


def test_the_next_runner_removes_what_a_runner_killed_with_sigkill_left(tmp_path):
    proc = start([*LASTING, "--out", str(tmp_path / "out"), "--run-id", "run"], tmp_path)
    wait_for(lambda: cell_dirs(tmp_path), proc)
    proc.kill()  # SIGKILL: no clean-up can run; the worker dies with it (PR_SET_PDEATHSIG)
    proc.wait()
    left = cell_dirs(tmp_path)
    assert len(left) == 1 and left[0].parent == tmp_path / "out" / "run" / "logs"
    sweep(tmp_path / "out" / "run", sleeping(1))  # the next runner, under the lock
    assert cell_dirs(tmp_path) == []


# --- 3. results.csv from results.jsonl ---------------------------------------------------------------


def test_every_run_regenerates_results_csv_even_with_nothing_left_to_measure(tmp_path):
    run_dir = tmp_path / "run"
    sweep(run_dir, sleeping(1, 2))
    (run_dir / "results.csv").unlink()  # a kill between the JSONL append and the CSV write
    assert len(sweep(run_dir, sleeping(1, 2))) == 2  # nothing left to measure
    assert len((run_dir / "results.csv").read_text().splitlines()) == 3
    (run_dir / "results.csv").write_text("cell_id\n")  # stale
    sweep(run_dir, sleeping(1, 2))
    assert len((run_dir / "results.csv").read_text().splitlines()) == 3


# --- 4. unwritable output ----------------------------------------------------------------------------


def _unwritable(tmp_path: Path, how: str) -> tuple[list[str], str]:
    """(--out and --run-id of a place root cannot write either, the start of the error line)."""
    if how == "out under /proc":
        return ["--out", "/proc/locost-out"], "error: /proc/locost-out: No such file or directory; "
    if how == "out under a file":
        (tmp_path / "file").write_text("")
        return (["--out", str(tmp_path / "file" / "out")],
                f"error: {tmp_path / 'file' / 'out' / 'memory-cpu'}: Not a directory; ")
    run_dir = tmp_path / "out" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "results.jsonl").mkdir()
    return (["--out", str(tmp_path / "out"), "--run-id", "run"],
            f"error: {run_dir / 'results.jsonl'}: Is a directory; ")


@pytest.mark.parametrize("how", ["out under /proc", "out under a file", "results.jsonl a directory"])
def test_an_unwritable_output_is_one_error_line_before_anything_is_measured(tmp_path, capsys, how):
    argv, start_of_line = _unwritable(tmp_path, how)
    assert sweep_main("memory", [*SWEEP[2:], *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(start_of_line) and err.count("\n") == 1, err
    assert "0 records kept in" in err
    assert not list((tmp_path / "out").rglob("*.log"))  # no cell was started


def chattr(flag: str, path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: no read-only condition that root cannot bypass")
    result = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"chattr {flag} is not supported here: {result.stderr.strip()}")


@pytest.mark.parametrize("target", ["results.jsonl", "the run directory"])
def test_a_read_only_run_loses_no_record_and_measures_nothing(tmp_path, target):
    run_dir = tmp_path / "run"
    sweep(run_dir, sleeping(1))
    before = (run_dir / "results.jsonl").read_bytes()
    path = run_dir / "results.jsonl" if target == "results.jsonl" else run_dir
    chattr("+i", path)  # immutable: refused even to root
    try:
        with pytest.raises(PermissionError):
            sweep(run_dir, sleeping(1, 2, seconds=30))  # would take 30 s if it measured
        status = guard(lambda: sweep(run_dir, sleeping(1, 2)) and 0, lambda: kept(run_dir),
                       errors=ENGINE_ERRORS)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert status == 2
    assert (run_dir / "results.jsonl").read_bytes() == before
    assert len(read_records(run_dir)) == 1


def test_a_full_disk_is_one_error_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
    status = guard(lambda: sweep(run_dir, sleeping(1)) and 0, lambda: kept(run_dir), errors=ENGINE_ERRORS)
    assert status == 2
    assert capsys.readouterr().err == (
        f"error: No space left on device; 0 records kept in {run_dir / 'results.jsonl'}\n")


# --- 7. a resume in another environment --------------------------------------------------------------


def test_a_resume_in_another_environment_stops_unless_mixing_is_allowed(tmp_path):
    run_dir = tmp_path / "run"
    sweep(run_dir, sleeping(1))
    recorded = json.loads((run_dir / "results.jsonl").read_text())
    now = recorded["env"]["transformers"]
    recorded["env"].update(transformers="5.23.0", git_commit="0" * 40)
    (run_dir / "results.jsonl").write_text(json.dumps(recorded) + "\n")
    with pytest.raises(MixedEnvironmentError) as refused:
        sweep(run_dir, sleeping(1, 2))
    assert str(refused.value) == (
        f"{run_dir} was measured in another environment: transformers 5.23.0 (recorded) -> {now} (now); "
        f"git_commit {'0' * 40} (recorded) -> {_commit()} (now); resume it "
        "there, use another --run-id, or --allow-mixed-env (the report then never pairs across them)")
    assert len(read_records(run_dir)) == 1  # nothing measured
    records = sweep(run_dir, sleeping(1, 2), allow_mixed_env=True)
    assert [r["env"]["transformers"] for r in records] == ["5.23.0", now]


def _commit() -> str:
    from bench.env import git_commit

    return git_commit()


# --- 8. small ones -----------------------------------------------------------------------------------


def test_the_models_program_answers_help_and_refuses_unknown_flags(tmp_path):
    help_ = subprocess.run([sys.executable, "-m", "models", "--help"], cwd=REPO, env=environ(tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: python -m models")
    bogus = subprocess.run([sys.executable, "-m", "models", "--bogus"], cwd=REPO, env=environ(tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert (bogus.returncode, bogus.stdout) == (2, "")
    assert bogus.stderr == "error: unrecognized arguments: --bogus\n"


def run_program(argv: list[str], tmp_path: Path, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """``python <argv>`` in the repository, to its end: status, stdout (unless given) and stderr."""
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=environ(tmp_path), stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=300)


def test_a_length_beyond_int32_is_one_error_line(tmp_path):
    done = run_program(["-m", "bench.scaling", "--max-len", "99999999999999", "--dry-run"], tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("error: argument --max-len: a length must be at most 2,147,483,647 tokens "
                           "(2**31 - 1, the int32 limit of torch's 32-bit index math): '99999999999999'\n")


def test_a_reader_that_leaves_early_ends_the_program_quietly_with_status_1(tmp_path):
    """``python -m bench.scaling --dry-run | head -1``, made deterministic: the reader has left before
    the first write. Python's docs (signal, "Note on SIGPIPE") recommend status 1 and no message."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = run_program(["-m", "bench.scaling", "--dry-run", "--out", str(tmp_path / "out")], tmp_path,
                           stdout=write_end)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (1, "")
    assert not (tmp_path / "out").exists()


def test_a_resumed_sweep_says_how_many_cells_are_recorded_already(tmp_path):
    run_dir = tmp_path / "out" / "run"
    argv = [*SWEEP, "--out", str(tmp_path / "out"), "--run-id", "run"]
    first = run_program(argv, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[0] == f"memory: 1 cells on cpu (1 threads) -> {run_dir}"
    resumed = run_program([*argv, "--lengths", "64,128"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.splitlines()[0] == (
        f"memory: 2 cells on cpu (1 threads), 1 already recorded, 1 to run -> {run_dir}")
    assert len(read_records(run_dir)) == 2


def test_a_torn_line_is_warned_of_once_per_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    sweep(run_dir, sleeping(1))
    with open(run_dir / "results.jsonl", "ab") as results:
        results.write(b'{"cell_id": "torn')
    capsys.readouterr()
    sweep(run_dir, sleeping(1, 2, 3))
    err = capsys.readouterr().err
    assert err.count("not a JSON object (a torn write?)") == 1, err


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_while_the_program_is_starting_is_one_line_too(tmp_path, signum, status):
    proc = start([*SWEEP, "--out", str(tmp_path / "out")], tmp_path)
    time.sleep(1.5)  # importing torch and transformers takes longer than that
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (status, "interrupted while starting: nothing was measured or written\n")


# --- 5. the ROUGE program's options ------------------------------------------------------------------


@pytest.mark.parametrize("argv, line", [
    (["--lr", "nan"], "error: argument --lr: must be a finite number: 'nan'"),
    (["--lr", "0"], "error: argument --lr: must be positive: '0'"),
    (["--weight-decay", "-1"], "error: argument --weight-decay: must be a finite number >= 0: '-1'"),
    (["--gsg-ratio", "2"], "error: argument --gsg-ratio: must be a finite number in [0, 1]: '2'"),
    (["--run-id", ".."], "error: argument --run-id: '..' is not a directory name (use letters, digits and "
                         ". _ + -, not . or ..)"),
])
def test_the_rouge_program_refuses_options_that_mean_nothing(argv, line, capsys):
    from cli.rouge import main

    assert main(argv) == 2
    assert capsys.readouterr().err == line + "\n"


def test_the_rouge_program_refuses_an_output_directory_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    done = run_program(["-m", "bench.rouge", "--out", str(tmp_path / "file"), "--no-progress"], tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: output directory '{tmp_path / 'file'}' is a file\n"
    assert (tmp_path / "file").read_text() == ""



def test_an_interrupted_rouge_run_names_what_it_kept_on_disk(tmp_path):
    from argparse import Namespace

    from cli.rouge import kept

    args = Namespace(out=tmp_path, run_id=None, device="cpu")
    assert kept(args) == f"no trained model or prediction kept in {tmp_path / 'rouge-cpu'}"
    (tmp_path / "rouge-cpu" / "checkpoints" / "locost-tiny").mkdir(parents=True)
    (tmp_path / "rouge-cpu" / "predictions").mkdir()
    for name in ("locost-tiny-1024.jsonl", "lead-3-1024.jsonl"):
        (tmp_path / "rouge-cpu" / "predictions" / name).write_text("")
    assert kept(args) == f"1 trained model(s) and 2 prediction file(s) kept in {tmp_path / 'rouge-cpu'}"
