"""Crossover lengths: from which input length LOCOST needs less time, and less memory, than a baseline
(log-log interpolation between the bracketing measured lengths), against hand-computed values, in
crossovers.csv, claims.csv, the report's table and its figures."""

import csv
import math

import pytest
from test_reports import record, write_run

from reports import build
from reports.analysis import BELOW_SHORTEST, NOT_IN_RANGE, crossover_length, crossovers
from reports.runs import records_frame

LENGTHS = [1024, 4096, 16384]


@pytest.mark.parametrize("lengths, locost, baseline, expected, bracket", [
    # LOCOST / baseline 2 at 1K, 1/2 at 4K: d = ±ln 2, the midpoint in log length: √(1024 · 4096)
    ([1024, 4096], [2.0, 1.0], [1.0, 2.0], 2048.0, (1024, 4096)),
    # 4 at 1K, 1/2 at 2K: d = 2 ln 2, -ln 2: two thirds of the way, 1024 · 2^(2/3)
    ([1024, 2048], [4.0, 1.0], [1.0, 2.0], 1024 * 2 ** (2 / 3), (1024, 2048)),
    # below, above, below: the last length where LOCOST is not below starts the bracket (given unsorted)
    ([4096, 1024, 2048], [0.9, 0.8, 1.2], [1.0, 1.0, 1.0],
     2048 * 2 ** (math.log(1.2) / (math.log(1.2) - math.log(0.9))), (2048, 4096)),
])
def test_the_crossover_is_interpolated_on_log_log_between_its_bracket(lengths, locost, baseline, expected,
                                                                      bracket):
    found = crossover_length(lengths, locost, baseline)
    assert found.length == pytest.approx(expected, rel=1e-12) and (found.low, found.high) == bracket


def test_no_crossing_is_below_the_shortest_or_not_within_the_measured_range():
    assert crossover_length(LENGTHS, [1, 2, 3], [2, 4, 6]).where == BELOW_SHORTEST
    assert crossover_length(LENGTHS, [1, 2, 3], [0.5, 4, 3]).where == NOT_IN_RANGE  # equal at the longest
    assert crossover_length(LENGTHS, [1, 2, 3], [2, 4, 3]).length is None


def _records(suite: str = "memory") -> list[dict]:
    """LOCOST against LED (memory crosses at 2,048, time at 8,192) and LongT5-local (memory: LOCOST
    less everywhere; time: LOCOST never less), training."""
    cells = {"locost": ([300, 600, 1200], [1.0, 2.0, 4.0]), "led": ([150, 1200, 4800], [0.5, 1.0, 8.0]),
             "longt5-local": ([600, 1200, 2400], [0.5, 1.0, 2.0])}
    return [record(family, "train", length, mib, seconds=seconds, suite=suite)
            for family, (mibs, times) in cells.items()
            for length, mib, seconds in zip(LENGTHS, mibs, times, strict=True)]


def test_crossovers_per_baseline_mode_and_metric_from_records():
    found = crossovers(records_frame(_records()))
    table = {(r.metric, r.baseline_model): (r.crossover_len, r.bracket_low, r.bracket_high, r.where)
             for r in found.itertuples(index=False)}
    assert table[("memory", "led-small")][:3] == (2048, 1024, 4096)
    assert table[("memory", "led-small")][3] == "≈ 2,048 tokens (between 1K and 4K)"
    assert table[("time", "led-small")][:3] == (8192, 4096, 16384)
    assert table[("memory", "longt5-local-small")][3] == "below the shortest (1K)"
    assert table[("time", "longt5-local-small")][3] == "not within the measured range (1K–16K)"


def test_a_baseline_that_failed_at_a_length_is_compared_where_both_ran_ok():
    rows = _records()
    rows[-4] = record("led", "train", 16384, status="oom")  # LED's 16K cell: the time bracket is gone
    found = crossovers(records_frame(rows))
    led = found[found["baseline_model"].eq("led-small")].set_index("metric")
    assert led.loc["time", "where"] == "not within the measured range (1K–4K)"
    assert led.loc["memory", "crossover_len"] == 2048 and led.loc["memory", "lengths"] == 2


def test_the_report_writes_crossovers_csv_claims_rows_a_table_and_marks_the_figures(tmp_path):
    run = write_run(tmp_path / "run", _records())
    html = build([run]).read_text()
    with open(run / "crossovers.csv", newline="") as file:
        rows = {(r["metric"], r["baseline_model"]): r for r in csv.DictReader(file)}
    assert (rows[("memory", "led-small")]["crossover_len"], rows[("time", "led-small")]["bracket_high"]) == (
        "2048", "16384")
    with open(run / "claims.csv", newline="") as file:
        claims = {(r["claim"], r["scope"]): r for r in csv.DictReader(file)}
    memory = claims[("LOCOST needs less memory than the baseline from (crossover length)",
                     "vs led-small, train")]
    assert (memory["best_value"], memory["best_measured"]) == ("2048", "≈ 2,048 tokens (between 1K and 4K)")
    time = claims[("LOCOST needs less time than the baseline from (crossover length)",
                   "vs longt5-local-small, train")]
    assert (time["best_value"], time["verdict"]) == ("", "")  # no length, and a figure, not a verdict
    assert 'id="crossovers"' in html and "≈ 8,192 tokens (between 4K and 16K)" in html
    # the memory figure's caption names the mark it draws
    assert "dotted verticals (◆ on the length axis): LOCOST needs less memory than led-small (train) from " \
           "≈ 2,048 tokens (between 1K and 4K)" in html


def test_one_thread_cpu_cells_cross_on_process_cpu_time_not_on_a_loaded_wall_clock():
    cpu = {"locost": [1.0, 2.0, 4.0], "led": [0.5, 1.0, 8.0]}  # LOCOST / LED: 2, 2, 1/2 -> 8,192
    wall = {"locost": [1.0, 2.0, 40.0], "led": [0.5, 1.0, 8.0]}  # LOCOST's 16K step slowed by other jobs
    rows = [record(family, "encode", length, 100.0, seconds=wall[family][i], cpu_times_s=[cpu[family][i]] * 3)
            for family in cpu for i, length in enumerate(LENGTHS)]
    time = crossovers(records_frame(rows)).set_index("metric").loc["time"]
    assert (time["clock"], time["crossover_len"], time["bracket_low"]) == ("process CPU", 8192, 4096)
    rows[5]["cpu_times_s"] = None  # one cell without CPU times (an older record): the pair uses wall time
    wall_only = crossovers(records_frame(rows)).set_index("metric").loc["time"]
    assert wall_only["clock"] == "wall" and wall_only["where"] == "not within the measured range (1K–16K)"
