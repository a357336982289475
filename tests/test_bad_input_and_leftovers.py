"""Bad input is one ``error:`` line with exit status 2 before anything is measured, and what killed runs
leave behind is cleaned by later ones (issue 29, kinds C and E; issue 27 item 9)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from test_reliability import SWEEP, sleeping, sweep

from bench import trackers
from cli.report import main as report_main
from cli.rouge import main as rouge_main
from cli.sweep import main as sweep_main

REPO = Path(__file__).resolve().parents[1]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- C. bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["d_model=0", "num_layers=-1", "d_state=0", "vocab_size=0", "d_kv=0",
                                   "dropout_rate=-0.5", "layer_norm_epsilon=-1e-6", "eos_token_id=-1"])
def test_a_model_config_value_out_of_range_is_one_error_line(tmp_path, capsys, field):
    assert sweep_main("memory", [*SWEEP[2:], "--out", str(tmp_path), "--model-config", field]) == 2
    assert field.split("=")[0] in one_error_line(capsys)
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was made


@pytest.mark.parametrize("where", ["--run-id", "--out", "--run-id with --dry-run"])
def test_a_name_longer_than_the_filesystem_takes_is_one_error_line(tmp_path, capsys, where):
    long_name = "r" * 300
    argv = [*SWEEP[2:], "--out", str(tmp_path / long_name) if where == "--out" else str(tmp_path)]
    if where != "--out":
        argv += ["--run-id", long_name] + ["--dry-run"] * where.endswith("--dry-run")
    assert sweep_main("memory", argv) == 2
    assert "300 bytes long" in one_error_line(capsys)


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.csv", "folder/docs.json"])
def test_rouge_data_that_is_not_utf8_is_one_error_line_naming_the_byte(tmp_path, capsys, name):
    data = tmp_path / name
    data.parent.mkdir(exist_ok=True)
    text = b'{"document": "caf\\u00e9 ok", "summary": "s"}\n'
    data.write_bytes(text + b'{"document": "caf\xe9", "summary": "s"}\n')  # latin-1, not UTF-8
    source = data.parent if name.startswith("folder/") else data
    assert rouge_main(["--data", str(source), "--out", str(tmp_path / "out")]) == 2
    assert f"byte 0xe9 at offset {len(text) + 17}" in one_error_line(capsys)


def damaged_run(tmp_path: Path, env) -> Path:
    """A run directory of two real records, the second's ``env`` replaced by ``env``."""
    run_dir = tmp_path / "out" / "run"
    sweep(run_dir, sleeping(1, 2))
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    damaged = json.loads(lines[1])
    damaged["env"] = env
    (run_dir / "results.jsonl").write_text(f"{lines[0]}\n{json.dumps(damaged)}\n")
    return run_dir


@pytest.mark.parametrize("env", ["cpu", ["a"], 3])
def test_a_resume_over_a_record_whose_env_is_not_an_object_is_one_error_line(tmp_path, capsys, env):
    run_dir = damaged_run(tmp_path, env)
    before = (run_dir / "results.jsonl").read_bytes()
    assert sweep_main("memory", [*SWEEP[2:], "--out", str(run_dir.parent), "--run-id", "run"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"error: {run_dir / 'results.jsonl'}: line 2 ") and "env" in err[-1], err
    assert (run_dir / "results.jsonl").read_bytes() == before  # nothing measured


def test_a_report_over_a_record_whose_env_is_a_string_lists_it_and_builds(tmp_path, capsys):
    run_dir = damaged_run(tmp_path, "cpu")
    assert report_main(["build", str(run_dir)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert len(pd.read_csv(run_dir / "memory.csv")) == 1  # the damaged record is left out (and listed)
    assert len(pd.read_csv(run_dir / "results.csv")) == 2


def test_a_run_json_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    run_dir = tmp_path / "out" / "run"
    sweep(run_dir, sleeping(1))
    (run_dir / "run.json").write_bytes(b'{"suite": "caf\xe9"}\n')
    assert report_main(["build", str(run_dir)]) == 2
    assert "run.json: not UTF-8 text (byte 0xe9" in one_error_line(capsys)


# --- E. leftovers ------------------------------------------------------------------------------------


def test_a_run_directory_named_twice_is_read_once(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    sweep(run_dir, sleeping(1, 2))
    monkeypatch.chdir(tmp_path)
    assert report_main(["build", "run", f"{run_dir}/", "./run", "--out", str(tmp_path / "report")]) == 0
    assert len(pd.read_csv(tmp_path / "report" / "memory.csv")) == 2


def test_what_killed_runs_and_builds_left_is_removed_by_the_next(tmp_path):
    run_dir = tmp_path / "run"
    sweep(run_dir, sleeping(1))
    gone, alive = dead_pid(), os.getpid()
    leftovers = [run_dir / f"results.csv.tmp{gone}", run_dir / f"run.json.tmp{gone}"]
    staging = [run_dir / f".report-{gone}-abc", run_dir / ".report-x1y2z3"]  # the second: before pids
    for path in leftovers:
        path.write_text("half")
    for path in staging:
        path.mkdir()
        (path / "memory.csv").write_text("half")
    live = run_dir / f".report-{alive}-abc"  # a build in progress (this process)
    live.mkdir()
    sweep(run_dir, sleeping(1))  # the runner, under the run's lock
    assert not any(path.exists() for path in leftovers)
    assert report_main(["build", str(run_dir)]) == 0
    assert not any(path.exists() for path in staging) and live.is_dir()


def test_a_read_only_home_gives_no_matplotlib_warning(tmp_path):
    run_dir = tmp_path / "run"
    sweep(run_dir, sleeping(1, 2))
    unset = ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    # a HOME nobody can write, root included: a directory of /proc
    env.update(HOME="/proc/self/fdinfo", TMPDIR=str(tmp_path), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "reports", "build", str(run_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "atplotlib" not in done.stderr and "mkdir" not in done.stderr, done.stderr
    assert (tmp_path / f"matplotlib-{os.getuid()}").is_dir()  # reused by the next build


# --- issue 27 item 9: peak RSS where /proc is missing -------------------------------------------------


@pytest.mark.parametrize("platform, unit", [("darwin", 1), ("linux", 1024), ("freebsd14", 1024)])
def test_peak_rss_without_proc_is_in_bytes_on_each_platform(monkeypatch, platform, unit):
    """getrusage(2)'s ru_maxrss is in bytes on macOS and in kilobytes on Linux and the BSDs."""
    peak = trackers.status_bytes("VmHWM")  # the peak in bytes, read where /proc exists
    monkeypatch.setattr(trackers, "status_bytes", lambda *args, **kwargs: None)  # no procfs, as on macOS
    monkeypatch.setattr(trackers.sys, "platform", platform)
    monkeypatch.setattr(trackers.resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=peak // unit))
    assert peak - 1024 < trackers._peak_rss() <= peak
