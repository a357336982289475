"""``python -m bench.scaling``: doubling lengths, failures as results, real-text inputs, fitted exponents."""

import json

import pytest

from bench.cells import Cell
from bench.settings import Settings
from bench.sweep import run_sweep
from cli import scaling
from suites.scaling import doubling_lengths


def records_of(run_dir):
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("min_len, max_len, expected", [
    (1024, 600_000, (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 600_000)),
    (1024, 4096, (1024, 2048, 4096)),
    (1000, 1000, (1000,)),
    (3, 20, (3, 6, 12, 20)),
])
def test_lengths_double_up_to_exactly_the_maximum(min_len, max_len, expected):
    assert doubling_lengths(min_len, max_len) == expected


def run(tmp_path, *argv):
    return scaling.main([*argv, "--out", str(tmp_path), "--run-id", "run", "--no-report", "--no-progress",
                         "--warmup", "0", "--threads", "1"])


def test_a_short_run_measures_every_length_and_records_failures(tmp_path, capsys):
    assert run(tmp_path, "--models", "locost", "--sizes", "tiny", "--modes", "encode",
               "--min-len", "256", "--max-len", "700") == 0
    assert run(tmp_path, "--models", "led", "--sizes", "tiny", "--modes", "encode",
               "--min-len", "16385", "--max-len", "20000") == 0
    records = {(r["model"], r["input_len"]): r for r in records_of(tmp_path / "run")}
    assert {length for model, length in records if model == "locost-tiny"} == {256, 512, 700}
    assert all(records[("locost-tiny", n)]["status"] == "ok" for n in (256, 512, 700))
    assert records[("led-tiny", 16385)]["status"] == "unsupported"
    assert "LED has 16,384 learned encoder positions" in records[("led-tiny", 16385)]["message"]
    assert records[("led-tiny", 20000)]["status"] == "skipped"
    out = capsys.readouterr().out.splitlines()
    summaries = [out[i + 1] for i, line in enumerate(out) if "longest ok" in line]
    assert summaries[0].split()[:4] == ["locost-tiny", "encode", "700", "-"]
    assert summaries[1].split()[:6] == ["led-tiny", "encode", "none", "unsupported", "at", "16,385"]


def test_real_text_inputs_are_tokenized_once_and_recorded(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("\n\n".join(f"Chapter {i}. The quick brown fox jumps over the lazy dog number {i}."
                                for i in range(300)))
    assert run(tmp_path, "--models", "locost", "--sizes", "tiny", "--modes", "encode",
               "--min-len", "300", "--max-len", "600", "--text", str(text)) == 0
    records = records_of(tmp_path / "run")
    assert [r["status"] for r in records] == ["ok", "ok"]
    token_files = list((tmp_path / "run" / "inputs").glob("book-*.pt"))
    assert len(token_files) == 1 and {r["inputs"] for r in records} == {str(token_files[0].resolve())}


@pytest.mark.parametrize("argv, message", [
    (["--min-len", "4k", "--max-len", "1k"], "error: --max-len 1,024 is below --min-len 4,096"),
    (["--max-len", "lots"], "error: argument --max-len: not a length: 'lots' (use e.g. 4096, 4k, 1m)"),
    (["--text", "/no/such/book.txt"], "error: text file not found: /no/such/book.txt"),
    (["--lengths", "1k,2k"],
     "error: scaling lengths double from --min-len to --max-len; --lengths does not apply"),
    (["--models", "gpt"], "error: unknown model 'gpt'; known: locost, "),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, message):
    assert run(tmp_path, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


def test_fitted_exponents_of_a_synthetic_linear_workload_are_one(tmp_path):
    cells = [Cell("synthetic", "none", "encode", length, workload="bench.workloads:linear",
                  workload_args=(("bytes_per_token", 2_000), ("seconds_per_token", 1e-4)))
             for length in (2_000, 4_000, 8_000, 16_000)]
    records = run_sweep(cells, tmp_path, suite="scaling", settings=Settings.of(warmup=0, repeats=1),
                        progress=False)
    assert [r["status"] for r in records] == ["ok"] * 4
    row = scaling.summary(records).splitlines()[1].split()
    time_exponent, memory_exponent = float(row[4]), float(row[7])
    assert time_exponent == pytest.approx(1.0, abs=0.1)
    assert memory_exponent == pytest.approx(1.0, abs=0.1)


def test_the_default_keeps_the_suites_left_out_cells_and_explicit_lengths_measure_them():
    from cli.scaling import plan
    default = {c.cell_id for c in plan(["--device", "cpu", "--dry-run"]).sweep.cells("cpu", 2)}
    explicit = plan(["--device", "cpu", "--max-len", "600000", "--dry-run"]).sweep.cells("cpu", 2)
    left_out = {c for c in explicit if c.cell_id not in default}
    long = (65536, 131072, 262144, 524288, 600000)
    assert {(c.family, c.mode, c.input_len) for c in left_out if c.family == "locost-s4"} == {
        ("locost-s4", mode, n) for mode in ("encode", "generate") for n in long}
    assert all(c.family in ("locost-s4", "spade") for c in left_out)
