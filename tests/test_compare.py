"""``python -m reports compare RUN_A RUN_B``: the rule on seeded synthetic samples (its false-positive
rate and its power), hand-computed cases, and the command on run directories of real record files."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from cli.report import main
from records import Record
from reports.compare import (
    FASTER,
    INCONCLUSIVE,
    MEMORY_RULE,
    NO_CHANGE,
    SLOWER,
    TIME_RULE,
    memory_change,
    smallest_p,
    time_change,
)

TRIALS = 20


def _trials(change: float, noise: float, repeats: int = 10) -> dict[str, int]:
    """Verdicts of ``TRIALS`` seeded trials: A's and B's steps lognormal with ``noise`` (the relative
    spread of one step), B's median ``change`` times A's."""
    verdicts: dict[str, int] = {}
    for trial in range(TRIALS):
        rng = np.random.default_rng(1000 + trial)
        a = 2.0 * np.exp(rng.normal(0.0, noise, repeats))
        b = 2.0 * change * np.exp(rng.normal(0.0, noise, repeats))
        verdict = time_change(a, b).verdict
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return verdicts


@pytest.mark.parametrize("noise", [0.03, 0.05])
def test_identical_distributions_give_no_verdict_of_change_in_at_least_19_of_20_trials(noise):
    verdicts = _trials(1.0, noise)
    assert verdicts.get(NO_CHANGE, 0) + verdicts.get(INCONCLUSIVE, 0) >= 19, verdicts


@pytest.mark.parametrize("noise", [0.03, 0.05])
def test_a_30_percent_change_is_found_every_time_both_ways(noise):
    assert _trials(0.7, noise) == {FASTER: TRIALS}
    assert _trials(1.3, noise) == {SLOWER: TRIALS}


def test_the_power_at_a_10_percent_change_falls_with_the_noise_and_never_names_the_wrong_direction():
    quiet, noisy = _trials(0.9, 0.03), _trials(0.9, 0.05)
    assert quiet.get(FASTER, 0) >= 19, quiet  # 3% step noise: found in (nearly) every trial
    assert 10 <= noisy.get(FASTER, 0) < quiet.get(FASTER, 0), noisy  # 5%: most, not all
    assert SLOWER not in quiet and SLOWER not in noisy


def test_separated_samples_give_the_exact_smallest_p_and_the_median_ratio():
    a, b = np.arange(1.0, 8.0), np.arange(8.0, 15.0)  # every B step slower than every A step
    change = time_change(a, b)
    assert change.p_value == pytest.approx(2 / math.comb(14, 7)) == pytest.approx(smallest_p(7, 7))
    assert change.ratio == pytest.approx(11.0 / 4.0) and change.verdict == SLOWER
    assert change.low <= change.ratio <= change.high


def test_too_few_repeats_are_inconclusive_however_large_the_change():
    change = time_change([1.0, 1.01, 0.99, 1.0, 1.02, 1.0], [2.0, 2.01, 1.99, 2.0, 2.02, 2.0])
    assert smallest_p(6, 6) == pytest.approx(2 / 924) and 2 / 924 > 0.002
    assert change.verdict == INCONCLUSIVE and "too few repeats" in change.reason
    assert time_change([1.0], [2.0] * 10).verdict == INCONCLUSIVE


def test_a_significant_change_inside_the_noise_band_is_no_change():
    a = np.linspace(1.0, 1.01, 10)
    change = time_change(a, a * 1.03)  # separated, so p < 0.002, but 3% < 5%
    assert change.p_value < 0.002 and change.verdict == NO_CHANGE


def test_memory_differs_only_beyond_its_band():
    assert memory_change(1000.0, 890.0) == (pytest.approx(0.89), "leaner")  # 110 > max(50, 100)
    assert memory_change(1000.0, 905.0)[1] == NO_CHANGE  # 95 < 100
    assert memory_change(200.0, 260.0) == (pytest.approx(1.3), "heavier")  # 60 > max(50, 20)
    assert memory_change(200.0, 240.0)[1] == NO_CHANGE  # 40 < 50 MiB
    assert memory_change(None, 240.0)[1] == ""


# --- the command on run directories ------------------------------------------------------------------

def _record(run_id: str, length: int, times: list[float], commit: str, mib: float, **fields) -> dict:
    row = Record(run_id=run_id, suite="throughput", cell_id=f"c{length}", family="locost", size="small",
                 model="locost-small", mode="encode", input_len=length, batch=1, dtype="fp32", device="cpu",
                 threads=1, status="ok", times_s=times, time_median_s=float(np.median(times)),
                 repeats=len(times), mem_peak_above_base_bytes=int(mib * 2**20),
                 env={"torch": "2.13.0", "transformers": "5.25.0", "device_name": "cpu",
                      "git_commit": commit})
    return {**row.to_json(), **fields}


def _run(directory, records: list[dict]):
    directory.mkdir()
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(directory)


@pytest.fixture
def two_runs(tmp_path):
    steps = np.linspace(1.0, 1.04, 8)
    a = _run(tmp_path / "a", [_record("a", 1024, list(steps), "aaaaaaa", 500.0),
                              _record("a", 4096, list(4 * steps), "aaaaaaa", 900.0),
                              _record("a", 8192, [8.0] * 8, "aaaaaaa", 1000.0)])
    b = _run(tmp_path / "b", [_record("b", 1024, list(0.6 * steps), "bbbbbbb", 300.0),
                              _record("b", 4096, list(4.8 * steps), "bbbbbbb", 910.0),
                              _record("b", 16384, [9.0] * 8, "bbbbbbb", 1000.0)])
    return a, b


def test_compare_pairs_cells_and_lists_the_unmatched_and_what_differs(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["compare", a, b, "--csv", str(tmp_path / "c.csv"), "--html", str(tmp_path / "c.html")]) == 0
    frame = pd.read_csv(tmp_path / "c.csv")
    verdicts = dict(zip(frame["input_len"], frame["verdict"], strict=True))
    assert verdicts == {1024: FASTER, 4096: SLOWER, 8192: "only in A", 16384: "only in B"}
    faster = frame[frame["input_len"].eq(1024)].iloc[0]
    assert faster["time_ratio"] == pytest.approx(0.6) and faster["mem_ratio"] == pytest.approx(0.6)
    assert faster["mem_verdict"] == "leaner" and faster["env_differs"] == "commit aaaaaaa → bbbbbbb"
    assert frame[frame["input_len"].eq(4096)].iloc[0]["mem_verdict"] == NO_CHANGE
    out = capsys.readouterr().out
    assert TIME_RULE in out and MEMORY_RULE in out and "1 faster, 1 slower" in out
    html = (tmp_path / "c.html").read_text()
    assert "run against run" in html and "asv" in html and "http" not in html.replace("http-equiv", "")


def test_cells_kept_apart_by_their_settings_say_which_setting_differs(tmp_path, capsys):
    """A memory run (2 threads) against a throughput run (1 thread) of the same cells: each is listed
    once per side, and the row says why they did not pair, instead of the same label twice unexplained."""
    steps = [1.0] * 8
    a = _run(tmp_path / "a", [_record("a", 512, steps, "c", 10.0),
                              _record("a", 1024, steps, "c", 10.0)])
    b = _run(tmp_path / "b", [_record("b", 512, steps, "c", 10.0, threads=2, target_len=16)])
    assert main(["compare", a, b, "--csv", str(tmp_path / "c.csv")]) == 0
    frame = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    rows = sorted(zip(frame["input_len"], frame["verdict"], frame["reason"], strict=True))
    assert rows == [(512, "only in A", "target_len: A none, B 16; threads: A 1, B 2"),
                    (512, "only in B", "target_len: A none, B 16; threads: A 1, B 2"),
                    (1024, "only in A", "")]
    assert "only in B (target_len: A none, B 16; threads: A 1, B 2)" in capsys.readouterr().out


def test_a_pair_of_cells_simulated_on_two_gpus_or_measured_and_simulated_says_so(tmp_path, capsys):
    """Simulated records (``bench.gpusim``) pair on their settings; what GPU each stood on, or that one
    was measured, is on the row as an environment difference."""
    steps = [1.0] * 8
    a = _run(tmp_path / "a", [_record("a", 512, steps, "c", 254.0, simulated_gpu="h100-80gb"),
                              _record("a", 1024, steps, "c", 283.0)])
    b = _run(tmp_path / "b", [_record("b", 512, steps, "c", 254.0, simulated_gpu="a100-40gb"),
                              _record("b", 1024, steps, "c", 283.0, simulated_gpu="h100-80gb")])
    assert main(["compare", a, b, "--csv", str(tmp_path / "c.csv")]) == 0
    frame = pd.read_csv(tmp_path / "c.csv").set_index("input_len")
    assert frame.loc[512, "env_differs"] == "simulated GPU h100-80gb → a100-40gb"
    assert frame.loc[1024, "env_differs"] == "simulated GPU none (measured) → h100-80gb"


def test_one_thread_cpu_cells_are_compared_on_process_cpu_time_not_on_wall_time(tmp_path, capsys):
    steps = list(np.linspace(1.0, 1.04, 8))
    loaded = [2 * t for t in steps]  # B's wall time doubled by other jobs on the cores, its CPU time not
    a = _run(tmp_path / "a", [_record("a", 1024, steps, "c", 500.0, cpu_times_s=steps),
                              _record("a", 2048, steps, "c", 500.0, threads=2, cpu_times_s=steps)])
    b = _run(tmp_path / "b", [_record("b", 1024, loaded, "c", 500.0, cpu_times_s=steps),
                              _record("b", 2048, loaded, "c", 500.0, threads=2, cpu_times_s=steps)])
    assert main(["compare", a, b, "--csv", str(tmp_path / "c.csv")]) == 0
    frame = pd.read_csv(tmp_path / "c.csv").set_index("input_len")
    assert (frame.loc[1024, "clock"], frame.loc[1024, "verdict"]) == ("process CPU", NO_CHANGE)
    assert (frame.loc[2048, "clock"], frame.loc[2048, "verdict"]) == ("wall", SLOWER)  # 2 threads: wall
    assert frame.loc[2048, "time_ratio"] == pytest.approx(2.0)


def test_fail_on_slower_is_the_only_non_zero_exit_of_a_comparison(two_runs):
    a, b = two_runs
    assert main(["compare", a, b, "--fail-on-slower"]) == 1
    assert main(["compare", a, a, "--fail-on-slower"]) == 0


def test_a_run_against_itself_is_never_faster_or_slower(two_runs, tmp_path):
    a, _ = two_runs
    assert main(["compare", a, a, "--csv", str(tmp_path / "same.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "same.csv")["verdict"]) == {NO_CHANGE}


@pytest.mark.parametrize("argv, message", [
    (["compare", "{a}", "{missing}"], "error: {missing}: no such run directory"),
    (["compare", "{a}", "{a}", "--csv", "{tmp}"], "error: {tmp}: is a directory (give a file name)"),
    (["compare", "{a}", "{a}", "--html", "{missing}/c.html"],
     "error: {missing}/c.html: no such directory {missing}"),
    (["compare", "{a}", "{rouge}"], "error: {rouge}: no cell records to compare (a ROUGE-only run?)"),
    (["compare", "{a}"], None),
])
def test_bad_input_is_one_error_line_and_exit_2(two_runs, tmp_path, capsys, argv, message):
    a, _ = two_runs
    rouge = tmp_path / "rouge"
    rouge.mkdir()
    (rouge / "rouge.jsonl").write_text(json.dumps({"system": "lead-3", "input_len": None}) + "\n")
    names = {"a": a, "missing": str(tmp_path / "missing"), "tmp": str(tmp_path), "rouge": str(rouge)}
    assert main([arg.format(**names) for arg in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    if message is not None:
        assert err[0] == message.format(**names)
