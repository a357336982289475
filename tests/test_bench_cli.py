"""The suites' command line: bad input gives one ``error:`` line and exit status 2; ``--dry-run``
lists the cells the options describe."""

from dataclasses import replace

import pytest

from bench.workloads import prepare
from cli import scaling
from cli.sweep import busy_host_warning, main, plan
from suites import get_suite


@pytest.mark.parametrize("argv, message", [
    (["--models", "gpt"], "unknown model 'gpt'"),
    (["--sizes", "huge"], "unknown size 'huge'"),
    (["--modes", "infer"], "unknown mode 'infer'"),
    (["--lengths", ","], "the list of lengths is empty"),
    (["--lengths", "4k,0"], "positive"),
    (["--lengths", "4k,99999999999999"],
     "error: argument --lengths: a length must be at most 2,147,483,647 tokens (2**31 - 1, the int32 limit "
     "of torch's 32-bit index math): '99999999999999'\n"),
    (["--flops-max-len", "2048m"], "argument --flops-max-len: a length must be at most 2,147,483,647"),
    (["--batch", "0"], "must be positive"),
    (["--timeout", "-3"], "must be positive"),
    (["--budget-gb", "abc"], "not a number"),
    # options that parse but mean nothing, checked in the engine's unit (bytes, seconds)
    (["--budget-gb", "inf"], "argument --budget-gb: must be a finite number: 'inf'"),
    (["--budget-gb", "nan"], "must be a finite number: 'nan'"),
    (["--budget-gb", "0"], "must be positive: '0'"),
    (["--budget-gb", "-1"], "must be positive: '-1'"),
    (["--budget-gb", "1e-9"], "argument --budget-gb: 1e-09 GiB is 1 bytes, below 1 MiB"),
    (["--budget-gb", "1e300"], "must be at most 1.04858e+06"),
    (["--timeout", "inf"], "argument --timeout: must be a finite number: 'inf'"),
    (["--timeout", "nan"], "must be a finite number"),
    (["--repeats", "0"], "argument --repeats: must be positive"),
    (["--repeats", "2.5"], "argument --repeats: not a number: '2.5'"),
    (["--min-time", "-1"], "argument --min-time: must be positive"),
    (["--warmup", "-1"], "argument --warmup: must be a whole number >= 0"),
    # names that become path components stay inside their parent
    (["--run-id", ".."], "argument --run-id: '..' is not a directory name"),
    (["--run-id", "."], "is not a directory name"),
    (["--run-id", ""], "is not a directory name"),
    (["--device", "tpu"], "unknown device"),
    (["--dtype", "fp8"], "invalid choice"),
    (["--run-id", "a/b"], "argument --run-id: 'a/b' is not a directory name"),
    (["--frobnicate"], "unrecognized arguments"),
    (["--model-config", "cross_attention"], "not a KEY=VALUE config field"),
    (["--models", "locost,led", "--model-config", "cross_attention=absorbed"],
     "led has no config field 'cross_attention'"),
    (["--models", "locost", "--model-config", "cross_attention=none"], "cross_attention must be one of"),
    # values of the field's type only: a string is no flag (it would read as true), nor a width
    (["--models", "locost", "--model-config", "reuse_kernel=maybe"],
     'error: --model-config reuse_kernel="maybe" for locost: expected true or false'),
    (["--models", "locost", "--model-config", "reuse_kernel=False"], "expected true or false"),
    (["--models", "locost", "--model-config", "d_model=abc"],
     'd_model="abc" for locost: expected an integer'),
    (["--models", "locost", "--model-config", "d_model=-4"],
     "--model-config d_model=-4 for locost: a size or count: expected an integer of at least 1"),
])
def test_bad_input_is_one_error_line_and_exit_2(argv, message, capsys):
    assert main("memory", argv + ["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_an_output_directory_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main("throughput", ["--out", str(tmp_path / "file"), "--dry-run"]) == 2
    assert capsys.readouterr().err == f"error: output directory '{tmp_path / 'file'}' is a file\n"


def test_unknown_suite_is_refused(capsys):
    assert main("speed", ["--dry-run"]) == 2
    assert "unknown suite 'speed'" in capsys.readouterr().err


def test_dry_run_lists_the_cells_of_the_options(tmp_path, capsys):
    argv = ["--models", "locost,led", "--sizes", "small", "--modes", "train,generate", "--lengths", "1k,4K",
            "--out", str(tmp_path), "--dry-run", "--threads", "2"]
    assert main("memory", argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"8 cells -> {tmp_path / 'memory-cpu'}"
    assert any("locost-small train 4,096 +128 target" in line for line in lines)
    assert any("led-small generate 1,024 +16 new" in line for line in lines)
    assert not (tmp_path / "memory-cpu").exists()  # a dry run writes nothing


def test_dry_run_flags_lengths_a_model_does_not_take(tmp_path, capsys):
    """LED has 16,384 encoder positions: its 32K cell is listed as unsupported in advance, with the
    message its record would carry; the sweep would still run it (and go on)."""
    argv = ["--models", "locost,led", "--sizes", "tiny", "--modes", "encode", "--lengths", "16k,32k",
            "--out", str(tmp_path), "--dry-run"]
    assert main("memory", argv) == 0
    lines = capsys.readouterr().out.splitlines()
    flagged = [line for line in lines if "(unsupported: " in line]
    assert len(flagged) == 1 and "led-tiny encode 32,768" in flagged[0], lines
    assert flagged[0].endswith("input length 32,768 exceeds it)")
    assert lines[-1] == f"4 cells -> {tmp_path / 'memory-cpu'}"


def test_the_default_cpu_memory_suite(capsys):
    assert main("memory", ["--dry-run", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for family in ("locost", "longt5-tglobal", "longt5-local", "led", "pegasus-x", "locost-s4", "spade"):
        assert f"{family}-small train 1,024 +128 target" in out
        assert f"{family}-small generate 1,024 +16 new" in out


def test_model_config_reaches_every_cell_and_the_built_model():
    planned = scaling.plan(["--models", "locost", "--sizes", "tiny", "--max-len", "2m", "--min-len", "1m",
                            "--model-config", "cross_attention=absorbed,reuse_kernel=true", "--dry-run"])
    cells = planned.sweep.cells("cpu", 1)
    assert [cell.input_len for cell in cells] == [2**20, 2**21, 2**20, 2**21]
    assert all(cell.workload == "bench.workloads:model" and dict(cell.workload_args) ==
               {"cross_attention": "absorbed", "reuse_kernel": True} for cell in cells)
    default = plan("memory", ["--models", "locost", "--dry-run"]).sweep.cells("cpu", 1)[0]
    assert default.workload is None and default.workload_args == ()  # standard cells keep their ids
    bad = replace(cells[0], input_len=8, workload_args=(("cross_attention", "none"),))
    with pytest.raises(ValueError, match="cross_attention must be one of"):
        prepare(bad)  # the fields are given to the model's config


def test_the_default_cpu_throughput_suite_measures_fp32_and_bf16_where_the_cpu_multiplies_bf16(capsys):
    from bench.env import cpu_native_bf16
    assert main("throughput", ["--dry-run", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()[:-1]
    labels = [line.split("  ", 1)[1] for line in lines if "left out" not in line]
    left_out = [line.split("  ", 1)[1] for line in lines if "left out" in line]
    fp32 = {label for label in labels if not label.endswith(" bf16")}
    bf16 = {f"{label} bf16" for label in fp32}
    assert "locost-small encode 4,096" in fp32 and len(fp32) == 63
    if cpu_native_bf16():
        assert set(labels) - fp32 == bf16 and not left_out
    else:  # an emulated bf16 matmul, several times slower than fp32, is not timed by default
        assert set(labels) == fp32 and {line.split("  (left out: ")[0] for line in left_out} == bf16
        assert all(line.endswith("(left out: this CPU has no native bf16 matmul (no AVX512-BF16 or AMX for "
                                 "oneDNN), so bf16 autocast would time an emulation several times slower "
                                 "than fp32; --dtype bf16 measures it)") for line in left_out)
    for chosen in (["--dtype", "bf16"], ["--dtype", "bf16", "--models", "locost"]):
        assert main("throughput", ["--dry-run", "--device", "cpu", *chosen]) == 0
        out = capsys.readouterr().out
        assert " bf16\n" in out and "left out" not in out


def test_a_drop_leaves_out_its_cells_where_its_machine_test_holds_and_until_its_kind_is_chosen():
    from suites.definition import Drop, Sweep
    dtype_drop = {holds: Drop(None, None, 0, "why", dtype="bf16", machine=lambda holds=holds: holds)
                  for holds in (True, False)}
    for holds, expected in ((True, {("a", 1024, "fp32")}),
                            (False, {("a", 1024, "fp32"), ("a", 1024, "bf16")})):
        sweep = Sweep(models=("a",), modes=("encode",), lengths=(1024,), dtype=("fp32", "bf16"),
                      drop=(dtype_drop[holds],))
        assert {(c.family, c.input_len, c.dtype) for c in sweep.cells("cpu", 1)} == expected
    both = Sweep(models=("a", "b"), modes=("encode",), lengths=(1024, 4096), dtype=("fp32", "bf16"),
                 drop=(Drop("b", "encode", 4096, "long"), dtype_drop[True]))
    kept = {options: {(c.family, c.input_len, c.dtype)
                      for c in both.with_options(**dict(options)).cells("cpu", 1)}
            for options in ((), (("models", ("a", "b")),), (("dtype", ("fp32", "bf16")),))}
    assert kept[()] == {("a", 1024, "fp32"), ("a", 4096, "fp32"), ("b", 1024, "fp32")}
    assert kept[(("models", ("a", "b")),)] == kept[()] | {("b", 4096, "fp32")}  # lengths back, bf16 not
    assert kept[(("dtype", ("fp32", "bf16")),)] == kept[()] | {(f, n, "bf16") for f, n, _ in kept[()]}


def test_setting_flags_override_the_suites_settings_as_one_object():
    """The memory suite's CPU settings reach the plan, and each flag replaces only its own field."""
    planned = plan("memory", ["--models", "locost", "--device", "cpu", "--warmup", "0", "--min-time", "2.5",
                              "--budget-gb", "2", "--no-flops", "--worker-start", "exec", "--dry-run"])
    m, s = planned.settings.measurement, planned.settings.supervision
    assert (m.warmup, m.min_time_s, m.flops) == (0, 2.5, False)  # given
    assert (m.repeats, m.warmup_max_len, m.flops_max_len) == (1, 4096, 1024)  # the suite's
    assert (s.timeout_s, s.budget_bytes, s.budget_fraction, s.worker_start) == (600.0, 2 * 2**30, 0.8, "exec")
    assert plan("memory", ["--models", "locost", "--device", "cpu", "--dry-run"]).settings == \
        get_suite("memory").cpu.settings  # no flag: the suite's settings unchanged


def test_settings_replace_routes_each_name_to_its_part_and_refuses_unknown_names():
    from bench.settings import Measurement, Settings, Supervision

    settings = Settings.of(repeats=2, timeout_s=30.0, warmup_max_len=None)
    assert settings == Settings(Measurement(repeats=2), Supervision(timeout_s=30.0))
    assert Settings.of(**settings.to_json()) == settings  # run.json's flat form round-trips
    with pytest.raises(TypeError, match="no setting named timeout"):
        settings.replace(timeout=3)


def test_a_sweep_warns_in_one_line_when_other_work_took_its_cells_cores():
    def cell(length, threads, other, cores=2):
        return {"family": "locost", "size": "small", "model": "locost-small", "mode": "encode",
                "input_len": length, "threads": threads, "status": "ok", "host_other_cores": other,
                "env": {"cpu_count": cores}}

    quiet = [cell(1024, 2, 0.18), cell(2048, 1, 1.05), cell(4096, 2, None)]  # 9%, 5% of their cores
    assert busy_host_warning(quiet) is None and busy_host_warning([]) is None
    busy = quiet + [cell(8192, 2, 0.3), cell(16384, 2, 1.6), cell(32768, 8, 8.7, cores=16)]  # 15%, 80%, 9%
    assert busy_host_warning(busy) == (
        "warning: 2 of 5 cells were timed while other work on the host took their cores (most: locost-small "
        "encode 16,384, 80% of its cores; host_other_cores): their wall times are lengthened")
