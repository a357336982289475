"""``python -m reports compare``: the rule on seeded synthetic samples (its false-positive rate and its
power, with and without a per-process offset), hand-computed cases, and the command on run directories
of real record files (one or several runs per side)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cli.report import main
from records import Record
from reports.compare import (
    ALPHA,
    FASTER,
    INCONCLUSIVE,
    MEMORY_RULE,
    NO_CHANGE,
    NOISE_BAND,
    PROCESS_SD,
    PROCESS_SD_DF,
    SLOWER,
    TIME_RULE,
    memory_change,
    time_change,
)

TRIALS = 20
CHANGES = (FASTER, SLOWER)


def _side(rng, median: float, processes: int, steps: int, noise: float, process_sd: float) -> list:
    """``processes`` processes of ``steps`` lognormal steps (relative spread ``noise``), each process's
    steps all scaled by its own lognormal offset (relative spread ``process_sd``): what one process draws
    (memory layout, the core it shares) moves all of its steps."""
    return [median * math.exp(rng.normal(0.0, process_sd)) * np.exp(rng.normal(0.0, noise, steps))
            for _ in range(processes)]


def _sides(trial: int, change: float, processes: int, noise: float, process_sd: float, steps: int = 8):
    rng = np.random.default_rng(1000 + trial)
    return (_side(rng, 2.0, processes, steps, noise, process_sd),
            _side(rng, 2.0 * change, processes, steps, noise, process_sd))


def _trials(change: float, noise: float, process_sd: float = 0.0, processes: int = 1) -> dict[str, int]:
    """Verdicts of ``TRIALS`` seeded trials of the rule, B's median ``change`` times A's."""
    verdicts: dict[str, int] = {}
    for trial in range(TRIALS):
        verdict = time_change(*_sides(trial, change, processes, noise, process_sd)).verdict
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return verdicts


def _steps_rule_changes(change: float, noise: float, process_sd: float, processes: int) -> int:
    """Trials in which the earlier rule names a change: asv's test on the pooled steps (two-sided
    Mann-Whitney U at p < 0.002 and B/A of the step medians beyond ±5%), the steps taken as independent."""
    named = 0
    for trial in range(TRIALS):
        a, b = (np.concatenate(side) for side in _sides(trial, change, processes, noise, process_sd))
        ratio = np.median(b) / np.median(a)
        p = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
        named += bool(p < ALPHA and not 1 / (1 + NOISE_BAND) < ratio < 1 + NOISE_BAND)
    return named


@pytest.mark.parametrize("noise", [0.03, 0.05])
@pytest.mark.parametrize("processes", [1, 4])
def test_identical_distributions_give_no_verdict_of_change_in_at_least_19_of_20_trials(noise, processes):
    verdicts = _trials(1.0, noise, processes=processes)
    assert verdicts.get(NO_CHANGE, 0) + verdicts.get(INCONCLUSIVE, 0) >= 19, verdicts


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_a_per_process_offset_fools_the_steps_rule_but_not_the_process_rule(processes):
    """Identical code, each process offset by the between-process spread measured here (PROCESS_SD): the
    earlier rule (steps as samples, asv's pooling over processes included) names a change in many
    trials; the rule on per-process medians in at most 1 of 20."""
    assert _steps_rule_changes(1.0, 0.03, PROCESS_SD, processes) >= 6  # 15, 6, 6 of 20
    verdicts = _trials(1.0, 0.03, PROCESS_SD, processes)
    assert sum(verdicts.get(v, 0) for v in CHANGES) <= 1, verdicts


@pytest.mark.parametrize("noise, process_sd, processes", [(0.03, 0.0, 1), (0.05, 0.0, 1),
                                                           (0.03, PROCESS_SD, 8)])
def test_a_large_change_is_found_every_time_both_ways(noise, process_sd, processes):
    """A halving or doubling stands out of the between-process spread with one process per side; a 30%
    change with per-process offsets of the measured size needs several processes per side."""
    change = 0.5 if processes == 1 else 0.7
    assert _trials(change, noise, process_sd, processes) == {FASTER: TRIALS}
    assert _trials(1 / change, noise, process_sd, processes) == {SLOWER: TRIALS}


def test_a_30_percent_change_with_one_process_per_side_is_inconclusive_not_a_verdict():
    """One process per side cannot tell a 30% change from the measured between-process spread: never a
    wrong direction, and no verdict from a single pair of processes however tight its steps."""
    verdicts = _trials(0.7, 0.03, PROCESS_SD, 1)
    assert SLOWER not in verdicts and verdicts.get(INCONCLUSIVE, 0) >= 10, verdicts


def test_the_power_at_a_10_percent_change_grows_with_the_processes_and_never_names_the_wrong_direction():
    few, many = _trials(0.9, 0.03, 0.02, 4), _trials(0.9, 0.03, 0.02, 32)
    assert few.get(FASTER, 0) <= 2 < 19 <= many.get(FASTER, 0), (few, many)
    assert SLOWER not in few and SLOWER not in many


def test_the_ratio_and_its_interval_match_the_moderated_t_formula_in_float64():
    """B/A is the ratio of the geometric means of the per-process medians; the CI and p follow Smyth's
    moderated t with the prior of TIME_RULE, computed here from the formula by hand."""
    a = [[1.0, 1.1, 0.9], [1.2, 1.2], [0.8]]  # medians 1.0, 1.2, 0.8
    b = [[2.0], [2.4, 2.6, 2.5]]  # medians 2.0, 2.5
    change = time_change(a, b)
    la, lb = np.log([1.0, 1.2, 0.8]), np.log([2.0, 2.5])
    d = lb.mean() - la.mean()
    df = PROCESS_SD_DF + 3
    s2 = (PROCESS_SD_DF * PROCESS_SD**2 + ((la - la.mean()) ** 2).sum() + ((lb - lb.mean()) ** 2).sum()) / df
    se = math.sqrt(s2 * (1 / 3 + 1 / 2))
    q = stats.t.ppf(0.995, df)
    assert change.ratio == pytest.approx(math.sqrt(2.0 * 2.5) / (1.0 * 1.2 * 0.8) ** (1 / 3), rel=1e-12)
    assert change.low == pytest.approx(math.exp(d - q * se), rel=1e-9)
    assert change.high == pytest.approx(math.exp(d + q * se), rel=1e-9)
    assert change.p_value == pytest.approx(2 * stats.t.sf(d / se, df), rel=1e-9)
    assert change.verdict == (SLOWER if change.p_value < ALPHA else INCONCLUSIVE)


def test_one_process_per_side_is_judged_against_the_measured_between_process_spread():
    """With one process per side the spread is the prior's alone: p = 2·t_sf(|ln(B/A)| / (s0·√2), d0),
    whatever the steps' own spread."""
    tight = time_change([[1.0] * 8], [[1.3] * 8])
    expected = 2 * stats.t.sf(math.log(1.3) / (PROCESS_SD * math.sqrt(2)), PROCESS_SD_DF)
    assert tight.p_value == pytest.approx(expected, rel=1e-9)
    assert (tight.verdict == SLOWER) == (expected < ALPHA)
    assert time_change([[1.0] * 8], [[1.0] * 8]).verdict == INCONCLUSIVE  # the CI spans more than ±5%


def test_a_side_without_timed_steps_is_inconclusive():
    change = time_change([[], []], [[1.0, 1.0]])
    assert change.verdict == INCONCLUSIVE and "no timed steps (0 and 1 processes" in change.reason


def test_a_significant_change_inside_the_noise_band_is_no_change():
    a = [np.full(5, 1.0) * (1 + 0.001 * i) for i in range(100)]
    change = time_change(a, [steps * 1.03 for steps in a])  # 100 + 100 tight processes: p < 0.002, 3% < 5%
    assert change.p_value < ALPHA and change.verdict == NO_CHANGE


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
    b = _run(tmp_path / "b", [_record("b", 1024, list(0.4 * steps), "bbbbbbb", 300.0),
                              _record("b", 4096, list(10 * steps), "bbbbbbb", 910.0),
                              _record("b", 16384, [9.0] * 8, "bbbbbbb", 1000.0)])
    return a, b


def test_compare_pairs_cells_and_lists_the_unmatched_and_what_differs(two_runs, tmp_path, capsys):
    a, b = two_runs
    assert main(["compare", a, b, "--csv", str(tmp_path / "c.csv"), "--html", str(tmp_path / "c.html")]) == 0
    frame = pd.read_csv(tmp_path / "c.csv")
    verdicts = dict(zip(frame["input_len"], frame["verdict"], strict=True))
    assert verdicts == {1024: FASTER, 4096: SLOWER, 8192: "only in A", 16384: "only in B"}
    faster = frame[frame["input_len"].eq(1024)].iloc[0]
    assert faster["time_ratio"] == pytest.approx(0.4) and faster["mem_ratio"] == pytest.approx(0.6)
    assert (faster["processes_a"], faster["processes_b"], faster["n_a"], faster["n_b"]) == (1, 1, 8, 8)
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
    assert (frame.loc[1024, "clock"], frame.loc[1024, "verdict"]) == ("process CPU", INCONCLUSIVE)
    assert frame.loc[1024, "time_ratio"] == pytest.approx(1.0)
    assert (frame.loc[2048, "clock"], frame.loc[2048, "verdict"]) == ("wall", SLOWER)  # 2 threads: wall
    assert frame.loc[2048, "time_ratio"] == pytest.approx(2.0)



def test_wall_times_taken_while_other_work_took_the_cores_decide_nothing(tmp_path):
    """B's 2-thread cell on 2 cores lost 1.2 cores to another job (host_other_cores): its doubled wall
    time is no evidence of a slowdown; A's 0.1 core of other work (5% of its cores) is within the rule."""
    steps, env = list(np.linspace(1.0, 1.04, 8)), {"cpu_count": 2, "git_commit": "c"}
    a = _run(tmp_path / "a", [_record("a", 2048, steps, "c", 500.0, threads=2, env=env,
                                      host_other_cores=0.1)])
    b = _run(tmp_path / "b", [_record("b", 2048, [2 * t for t in steps], "c", 500.0, threads=2, env=env,
                                      host_other_cores=1.2)])
    assert main(["compare", a, b, "--csv", str(tmp_path / "c.csv")]) == 0
    row = pd.read_csv(tmp_path / "c.csv").iloc[0]
    assert (row["clock"], row["verdict"], row["time_ratio"]) == ("wall", INCONCLUSIVE, pytest.approx(2.0))
    assert row["reason"] == ("B: other work on the host took up to 60% of its cores, its wall times are "
                             "lengthened")
    assert main(["compare", a, a, "--csv", str(tmp_path / "same.csv")]) == 0
    assert pd.read_csv(tmp_path / "same.csv").iloc[0]["reason"].startswith("p = ")  # 5%: not busy


def test_fail_on_slower_is_the_only_non_zero_exit_of_a_comparison(two_runs):
    a, b = two_runs
    assert main(["compare", a, b, "--fail-on-slower"]) == 1
    assert main(["compare", a, a, "--fail-on-slower"]) == 0


def test_a_run_against_itself_is_never_faster_or_slower(two_runs, tmp_path):
    """One process per side cannot show that a change is within ±5% either: the between-process spread
    alone is wider. The page of a run on both sides is written too (the run taken once)."""
    a, _ = two_runs
    outputs = ["--csv", str(tmp_path / "same.csv"), "--html", str(tmp_path / "same.html")]
    assert main(["compare", a, a, *outputs]) == 0
    assert set(pd.read_csv(tmp_path / "same.csv")["verdict"]) == {INCONCLUSIVE}
    assert '<td class="verdict unsure">inconclusive' in (tmp_path / "same.html").read_text()


def _processes(tmp_path, side: str, medians: list[float], status: str = "ok") -> list[str]:
    """One run directory per process of a side, each with one 1K cell of 8 steps around its median."""
    steps = np.linspace(0.98, 1.02, 8)
    return [_run(tmp_path / f"{side}{i}", [_record(f"{side}{i}", 1024, list(m * steps), "c", 100.0 + i,
                                                   status=status if i == 0 else "ok")])
            for i, m in enumerate(medians)]


def test_several_runs_per_side_make_the_processes_the_samples(tmp_path, capsys):
    """--a/--b: each run is one process; B/A is the ratio of the geometric means of the per-process
    medians, the memory the median of the processes' peaks, and a change beyond their spread is named."""
    a_medians, b_medians = [1.0, 1.1, 0.95, 1.05], [1.5, 1.6, 1.55, 1.45]
    runs_a, runs_b = _processes(tmp_path, "a", a_medians), _processes(tmp_path, "b", b_medians)
    assert main(["compare", "--a", *runs_a, "--b", *runs_b, "--csv", str(tmp_path / "c.csv")]) == 0
    row = pd.read_csv(tmp_path / "c.csv").iloc[0]
    assert (row["processes_a"], row["processes_b"], row["n_a"], row["n_b"]) == (4, 4, 32, 32)
    expected = math.exp(np.log(b_medians).mean() - np.log(a_medians).mean())
    assert row["time_ratio"] == pytest.approx(expected, rel=1e-9) and row["verdict"] == SLOWER
    assert row["time_a_s"] == pytest.approx(math.exp(np.log(a_medians).mean()), rel=1e-9)
    assert row["mem_a_mib"] == pytest.approx(101.5) and row["run_a"] == "a0,a1,a2,a3"
    out = capsys.readouterr().out
    assert f"A: {' '.join(runs_a)}" in out and "4+4 (32+32 steps), wall" in out
    # one process per side: the first pair alone cannot tell 1.5× from the between-process spread
    assert main(["compare", runs_a[0], runs_b[0], "--csv", str(tmp_path / "one.csv")]) == 0
    assert pd.read_csv(tmp_path / "one.csv").iloc[0]["verdict"] == INCONCLUSIVE


def test_a_process_that_failed_is_left_out_and_its_status_shown(tmp_path):
    runs_a = _processes(tmp_path, "a", [1.0, 1.1, 0.95], status="oom")
    runs_b = _processes(tmp_path, "b", [1.0, 1.1], status="timeout")
    assert main(["compare", "--a", *runs_a, "--b", *runs_b, "--csv", str(tmp_path / "c.csv")]) == 0
    row = pd.read_csv(tmp_path / "c.csv").iloc[0]
    assert (row["status_a"], row["status_b"]) == ("oom 1, ok 2", "timeout 1, ok 1")
    assert (row["processes_a"], row["processes_b"]) == (2, 1)


@pytest.mark.parametrize("argv, message", [
    (["compare", "{a}", "{missing}"], "error: {missing}: no such run directory"),
    (["compare", "{a}", "{a}", "--csv", "{tmp}"], "error: {tmp}: is a directory (give a file name)"),
    (["compare", "{a}", "{a}", "--html", "{missing}/c.html"],
     "error: {missing}/c.html: no such directory {missing}"),
    (["compare", "{a}", "{rouge}"], "error: {rouge}: no cell records to compare (a ROUGE-only run?)"),
    (["compare", "{a}"], "error: give two run directories (RUN_A RUN_B), or several per side with --a ... "
                         "--b ...; got 1"),
    (["compare", "{a}", "{a}", "{a}"], "error: give two run directories (RUN_A RUN_B), or several per side "
                                       "with --a ... --b ...; got 3"),
    (["compare", "--a", "{a}", "{a}/"], "error: give RUN_A RUN_B, or --a RUN_A... --b RUN_B..., not both and "
                                       "not one side alone"),
    (["compare", "{a}", "--a", "{a}", "--b", "{a}"], "error: give RUN_A RUN_B, or --a RUN_A... --b RUN_B..., "
                                                     "not both and not one side alone"),
    (["compare", "--a", "{a}", "{a}/", "--b", "{a}"],
     "error: {a}: given twice to --a (each run is one process of the side)"),
    (["compare", "--a", "{a}", "--b", "{a}", "{missing}"], "error: {missing}: no such run directory"),
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
