"""Real tiny models through the whole engine: a sweep and the command line produce the records a
report needs, LED beyond its 16,384 positions is ``unsupported`` and longer inputs are ``skipped``."""

import json

import pandas as pd
import pytest

from bench.cells import Cell
from bench.results import read_records
from bench.settings import Settings
from bench.sweep import run_sweep
from cli.sweep import main
from models import MODE_STATES, build, config

SETTINGS = Settings.of(warmup=1, repeats=1, timeout_s=300, budget_bytes=3 * 2**30)


def test_a_tiny_sweep_of_train_and_generate_gives_complete_records(tmp_path):
    cells = [Cell("longt5-local", "tiny", mode, length, target_len=8, new_tokens=4)
             for mode in ("train", "generate") for length in (128, 256)]
    records = run_sweep(cells, tmp_path, suite="memory", settings=SETTINGS, progress=False)
    assert [(r["mode"], r["input_len"], r["status"]) for r in records] == [
        ("train", 128, "ok"), ("generate", 128, "ok"), ("train", 256, "ok"), ("generate", 256, "ok")]
    for r in records:
        assert r["model"] == "longt5-local-tiny" and r["run_id"] == tmp_path.name
        assert r["params_total"] == r["params_embedding"] + r["params_non_embedding"] > 0
        assert r["mem_peak_bytes"] >= r["mem_base_bytes"] > 0 and r["mem_peak_above_base_bytes"] >= 0
        assert r["mem_reserved_bytes"] is None and r["nvml_device_bytes"] is None  # CPU: not measured
        assert r["time_min_s"] <= r["time_median_s"] <= r["time_max_s"] and r["repeats"] == 1
        assert r["tokens_per_s"] == pytest.approx(r["input_len"] / r["time_median_s"])
        assert r["env"]["threads"] == r["threads"] and r["env"]["torch"]
    train, generate = records[0], records[1]
    assert train["target_len"] == 8 and train["new_tokens"] is None
    assert train["generated_tokens_per_s"] is None
    assert generate["new_tokens"] == 4 and generate["target_len"] is None
    assert generate["generated_tokens_per_s"] == pytest.approx(4 / generate["time_median_s"])
    csv = pd.read_csv(tmp_path / "results.csv")
    assert len(csv) == 4 and "env_torch" in csv.columns


def test_records_say_whether_locosts_kernel_was_reused_and_built_during_the_timed_steps(tmp_path):
    reuse = {"workload": "bench.workloads:model", "workload_args": (("reuse_kernel", True),)}
    cells = [Cell("locost", "tiny", "encode", 128, **reuse), Cell("locost", "tiny", "encode", 128),
             Cell("longt5-local", "tiny", "encode", 128)]
    reused, built, other = run_sweep(cells, tmp_path, suite="memory", progress=False,
                                     settings=Settings.of(warmup=1, repeats=2, budget_bytes=3 * 2**30))
    layers = build("locost", "tiny").model.config.num_layers  # one kernel per layer and call at 128 tokens
    assert (reused["reuse_kernel"], reused["kernel_builds"]) == (True, 0)  # built in the warm-up
    assert (built["reuse_kernel"], built["kernel_builds"]) == (False, 2 * layers)
    assert (other["reuse_kernel"], other["kernel_builds"]) == (None, None)
    for r in (reused, built, other):
        assert r["first_call_s"] == r["warmup_s"] > 0 and r["time_total_s"] >= r["time_median_s"] * 2 * 0.999
        # every timed step's time is kept: the samples of the median, in the order they ran
        assert len(r["times_s"]) == r["repeats"] == 2
        assert sum(r["times_s"]) == pytest.approx(r["time_total_s"])
        assert sorted(r["times_s"]) == [r["time_min_s"], r["time_max_s"]]
        assert len(r["cpu_times_s"]) == 2 and min(r["cpu_times_s"]) > 0  # process CPU time of the same steps
        assert r["host_other_cores"] is None  # steps of milliseconds: too short for /proc/stat's ticks
    # the attention each family ran: LOCOST's decoder through SDPA, transformers' LongT5 eager
    assert (reused["attn_implementation"], other["attn_implementation"]) == ("sdpa", "eager")
    [cold] = run_sweep([Cell("locost", "tiny", "encode", 256, **reuse)], tmp_path / "cold", suite="memory",
                       progress=False, settings=Settings.of(warmup=0, repeats=2, budget_bytes=3 * 2**30))
    assert cold["kernel_builds"] == layers  # the first timed step built them, the second reused them
    assert cold["first_call_s"] == cold["time_min_s"] or cold["first_call_s"] == cold["time_max_s"]


def test_the_cli_records_led_beyond_its_positions_as_unsupported_and_skips_longer(tmp_path, capsys):
    argv = ["--models", "led", "--sizes", "tiny", "--modes", "train", "--lengths", "20000,40k",
            "--target-len", "8", "--out", str(tmp_path), "--run-id", "tiny", "--no-report",
            "--no-progress", "--budget-gb", "3", "--threads", "1"]
    assert main("memory", argv) == 0
    records = {r["input_len"]: r for r in read_records(tmp_path / "tiny")}
    assert records[20000]["status"] == "unsupported" and "16,384" in records[20000]["message"]
    assert records[40960]["status"] == "skipped" and "unsupported at 20,000" in records[40960]["message"]
    assert records[40960]["mem_peak_bytes"] is None  # not measured: null, never 0
    out = capsys.readouterr().out
    assert "led-tiny" in out and "unsup." in out and "skip" in out
    run = json.loads((tmp_path / "tiny" / "run.json").read_text())
    assert run["settings"]["budget_bytes"] == 3 * 2**30 and run["settings"]["timeout_s"] > 0
    assert run["modes"] == {"train": MODE_STATES["train"]}  # what the report's conditions state
    assert run["dropout"]["led-tiny"]["dropout"] == config("led", "tiny").dropout > 0

    # the same command again measures nothing: every cell is recorded
    assert main("memory", argv) == 0
    assert len((tmp_path / "tiny" / "results.jsonl").read_text().splitlines()) == 2
