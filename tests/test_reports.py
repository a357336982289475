"""Reports: CSVs, savings, claim verdicts, the power-law fit, the CLI, and the HTML in a real browser.

Every test writes its own small result set in the record schema (no model is run here).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports import ReportError, build, fit_power_law
from reports.analysis import memory_comparisons, rouge_relative, scaling_fits, t_quantile_975
from reports.claims import NOT_MEASURED, NOT_REPRODUCED, REPRODUCED, evaluate
from reports.runs import MIB, records_frame, rouge_frame

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "reports" / "out" / "test-artifacts"
ENV = {
    "python": "3.11.2",
    "torch": "2.13.0",
    "transformers": "5.23.0",
    "device_name": None,
    "cpu_model": "Test CPU 9000",
    "cpu_count": 2,
    "threads": 1,
    "git_commit": "0123456789abcdef",
    "hostname": "testhost",
    "platform": "Linux-x86_64",
}
BUDGET_MIB = 40 * 1024  # the runner's host-memory budget per cell in these runs
SETTINGS = {"warmup": 1, "repeats": 3, "min_time_s": 0.0, "timeout_s": 600.0,
            "budget_bytes": BUDGET_MIB * MIB, "budget_fraction": 0.8}
PARAMS = {
    "locost": 52_000_000,
    "longt5-tglobal": 55_000_000,
    "longt5-local": 55_000_000,
    "led": 50_000_000,
    "pegasus-x": 57_000_000,
}


def record(
    family: str,
    mode: str,
    input_len: int,
    mib: float | None = None,
    status: str = "ok",
    seconds: float | None = None,
    size: str = "small",
    suite: str = "memory",
    **fields,
) -> dict:
    """One cell record in the schema of common.md; ``fields`` override anything (dtype, batch, ...)."""
    model = f"{family}-{size}"
    ok = status == "ok"
    seconds = seconds if seconds is not None else (1e-4 * input_len if ok else None)
    row = {
        "run_id": f"{suite}-cpu",
        "suite": suite,
        "family": family,
        "size": size,
        "model": model,
        "mode": mode,
        "input_len": input_len,
        "target_len": 128 if mode == "train" else None,
        "new_tokens": 16 if mode == "generate" else None,
        "batch": 1,
        "dtype": "fp32",
        "device": "cpu",
        "threads": 1,
        "status": status,
        "message": "" if ok else f"{status} at {input_len} tokens",
        "params_total": PARAMS.get(family, 50_000_000),
        "params_embedding": 16_000_000,
        "params_non_embedding": PARAMS.get(family, 50_000_000) - 16_000_000,
        "mem_peak_bytes": int((mib + 400) * MIB) if ok and mib is not None else None,
        "mem_peak_above_base_bytes": int(mib * MIB) if ok and mib is not None else None,
        "mem_base_bytes": 400 * MIB if ok else None,
        "mem_reserved_bytes": None,
        "nvml_process_bytes": None,
        "nvml_device_bytes": None,
        "time_median_s": seconds if ok else None,
        "time_min_s": seconds * 0.95 if ok else None,
        "time_max_s": seconds * 1.1 if ok else None,
        "time_iqr_s": seconds * 0.05 if ok else None,
        "repeats": 3,
        "warmup": 1,
        "tokens_per_s": input_len / seconds if ok else None,
        "generated_tokens_per_s": 16 / seconds if ok and mode == "generate" else None,
        "flops": None,
        "flops_analytic": None,
        "flops_source": None,
        "started_at": "2026-01-01T00:00:00Z",
        "wall_s": 5.0,
        "env": ENV,
    }
    row.update(fields)
    row.setdefault(
        "cell_id",
        "|".join(
            str(row[k])
            for k in ["model", "mode", "input_len", "dtype", "batch", "device", "target_len", "new_tokens"]
        ),
    )
    return row


def write_run(
    path: Path, records: list[dict], suite: str = "memory", rouge: list[dict] | None = None
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(
        json.dumps(
            {
                "run_id": path.name,
                "suite": suite,
                "args": {"sizes": "small", "device": "cpu"},
                "argv": [],
                "settings": SETTINGS,
                "modes": {"train": "model.train(): dropout active", "generate": "model.eval(): dropout off"},
                "dropout": {"locost-small": {"dropout_rate": 0.1}, "led-small": {"dropout": 0.1}},
                "env": ENV,
                "started_at": "2026-01-01T00:00:00Z",
                "finished_at": "2026-01-01T01:00:00Z",
            }
        )
    )
    if records:
        (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if rouge is not None:
        (path / "rouge.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rouge))
    return path


def rouge_row(system: str, input_len: int | None, r1: float, kind: str = "model", **fields) -> dict:
    row = {
        "system": system,
        "kind": kind,
        "family": system.rsplit("-", 1)[0] if kind == "model" else None,
        "size": system.rsplit("-", 1)[1] if kind == "model" else None,
        "input_len": input_len,
        "n_docs": 50,
        "dataset": "toy-sum",
        "params_total": PARAMS.get(system.rsplit("-", 1)[0]),
        "train_steps": 200 if kind == "model" else None,
    }
    for metric, value in [("rouge1", r1), ("rouge2", r1 / 3), ("rougeL", r1 * 0.8), ("rougeLsum", r1 * 0.9)]:
        row.update({metric: value, f"{metric}_lo": value - 0.01, f"{metric}_hi": value + 0.01})
    row.update(fields)
    return row


def claim(claims: pd.DataFrame, name_start: str, scope: str = "all") -> pd.Series:
    rows = claims[claims["claim"].str.startswith(name_start) & claims["scope"].eq(scope)]
    assert len(rows) == 1, claims[["claim", "scope"]]
    return rows.iloc[0]


# --- the power-law fit ------------------------------------------------------------------------------


def test_fit_power_law_recovers_a_known_exponent_within_its_ci():
    rng = np.random.default_rng(0)
    lengths = 2.0 ** np.arange(10, 19)
    values = 3e-6 * lengths**1.3 * np.exp(rng.normal(0, 0.05, lengths.size))
    fit = fit_power_law(lengths, values)
    assert fit.n == 9
    assert fit.ci_low < 1.3 < fit.ci_high
    assert fit.ci_high - fit.ci_low < 0.1
    assert abs(fit.intercept - math.log(3e-6)) < 0.5


def test_fit_power_law_exact_and_two_point_cases():
    exact = fit_power_law([1024, 2048, 4096], [2.0, 8.0, 32.0])
    assert exact.slope == pytest.approx(2.0) and exact.ci_low == pytest.approx(2.0)
    two = fit_power_law([1000, 4000], [1.0, 2.0])
    assert two.slope == pytest.approx(0.5) and two.ci_low is None and two.ci_high is None and two.n == 2


@pytest.mark.parametrize(
    "dof, quantile",
    [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042), (120, 1.980), (10**6, 1.960)],
)
def test_t_quantile_matches_the_table(dof, quantile):
    assert t_quantile_975(dof) == pytest.approx(quantile, abs=1e-3)


def test_series_from_different_runs_are_fitted_apart():
    records = records_frame(
        [
            record("locost", "encode", n, 0.01 * n, seconds=1e-6 * n**k, run_id=run, suite="scaling")
            for run, k in [("a", 1.0), ("b", 2.0)]
            for n in (4096, 8192, 16384)
        ]
    )
    fits = scaling_fits(records)
    times = fits[fits["metric"].eq("time")].set_index("run_id")["slope"]
    assert times.to_dict() == pytest.approx({"a": 1.0, "b": 2.0})


@pytest.mark.parametrize(
    "lengths, values",
    [([1024, 2048, 4096], [1.0, 0.0, 2.0]), ([1024], [1.0]), ([1024, 1024], [1.0, 2.0]), ([1, 2], [1.0])],
)
def test_fit_power_law_rejects_what_it_cannot_fit(lengths, values):
    with pytest.raises(ValueError):
        fit_power_law(lengths, values)


# --- savings and claims -----------------------------------------------------------------------------


def test_savings_are_locost_over_the_baseline_at_identical_conditions():
    records = records_frame(
        [
            record("locost", "train", 4096, 300),
            record("longt5-tglobal", "train", 4096, 1000),
            record("locost", "generate", 65536, 500),
            record("longt5-tglobal", "generate", 65536, status="oom"),
        ]
    )
    comparisons = memory_comparisons(records).set_index("mode")
    assert comparisons.loc["train", "ratio"] == pytest.approx(0.3)
    assert comparisons.loc["train", "saving_pct"] == pytest.approx(70.0)
    assert comparisons.loc["generate", "note"] == "baseline oom"
    assert pd.isna(comparisons.loc["generate", "saving_pct"])


@pytest.mark.parametrize("locost_mib, verdict", [(510, NOT_REPRODUCED), (490, REPRODUCED), (500, REPRODUCED)])
def test_training_memory_verdict_flips_at_50_percent(locost_mib, verdict):
    records = records_frame(
        [
            record("locost", "train", 8192, locost_mib),
            record("led", "train", 8192, 1000),
            record("longt5-local", "train", 8192, 900),
        ]
    )
    claims = evaluate(records)
    row = claim(claims, "up to 50% less memory in training")
    assert row["verdict"] == verdict
    assert row["best_value"] == pytest.approx(100 * (1 - locost_mib / 1000))
    assert row["typical_value"] == pytest.approx(100 * (1 - locost_mib / 1000 + 1 - locost_mib / 900) / 2)
    assert "vs led-small" in row["conditions"] and "8,192" in row["conditions"]
    per_baseline = claim(claims, "up to 50% less memory in training", "vs longt5-local")
    assert per_baseline["best_value"] == pytest.approx(100 * (1 - locost_mib / 900))
    assert per_baseline["verdict"] == NOT_REPRODUCED


@pytest.mark.parametrize("locost_mib, verdict", [(140, NOT_REPRODUCED), (120, REPRODUCED)])
def test_inference_memory_verdict_flips_at_87_percent(locost_mib, verdict):
    records = records_frame(
        [
            record("locost", "encode", 32768, locost_mib),
            record("pegasus-x", "encode", 32768, 1000),
            record("locost", "train", 32768, 10),
            record("pegasus-x", "train", 32768, 1000),
        ]
    )
    row = claim(evaluate(records), "up to 87% less memory in inference")
    assert row["verdict"] == verdict
    assert row["best_value"] == pytest.approx(100 * (1 - locost_mib / 1000))


@pytest.mark.parametrize("condition", [{"dtype": "bf16"}, {"batch": 2}, {"device": "cuda"}, {"size": "base"}])
def test_cells_under_other_conditions_are_never_compared(condition):
    records = records_frame(
        [record("locost", "train", 4096, 100, **condition), record("longt5-tglobal", "train", 4096, 1000)]
    )
    assert memory_comparisons(records).empty
    row = claim(evaluate(records), "up to 50% less memory in training")
    assert row["verdict"] == NOT_MEASURED and pd.isna(row["best_value"])


def test_the_same_cell_from_two_runs_is_compared_once_preferring_ok():
    records = records_frame(
        [
            record("locost", "train", 4096, 300),
            record("longt5-tglobal", "train", 4096, status="oom", run_id="memory-old"),
            record("longt5-tglobal", "train", 4096, 1000, run_id="memory-new"),
        ]
    )
    comparisons = memory_comparisons(records)
    assert len(comparisons) == 1 and comparisons["saving_pct"].iloc[0] == pytest.approx(70.0)


def test_the_memory_suite_figure_is_preferred_over_other_suites_for_the_same_cell():
    records = records_frame(
        [
            record("locost", "encode", 4096, 100, suite="throughput", run_id="throughput-cpu"),
            record("locost", "encode", 4096, 300),
            record("led", "encode", 4096, 1000),
        ]
    )
    comparisons = memory_comparisons(records)
    assert comparisons["locost_mib"].tolist() == [300] and comparisons["locost_run_id"].tolist() == [
        "memory-cpu"
    ]


@pytest.mark.parametrize(
    "cells, verdict, longest",
    [
        ([(524288, "ok"), (600000, "ok")], REPRODUCED, 600000),
        ([(524288, "ok"), (655360, "oom")], NOT_REPRODUCED, 524288),
        ([(524288, "ok")], NOT_MEASURED, 524288),
        ([(524288, "ok"), (1048576, "skipped")], NOT_MEASURED, 524288),
    ],
)
def test_long_input_verdict(cells, verdict, longest):
    records = records_frame(
        [record("locost", "encode", n, 100, status=status, suite="scaling") for n, status in cells]
        + [record("led", "encode", 1048576, status="ok", mib=1)]
    )
    row = claim(evaluate(records), "handles more than 600K tokens")
    assert row["verdict"] == verdict
    assert row["best_value"] == longest


@pytest.mark.parametrize("exponent, verdict", [(1.05, REPRODUCED), (2.0, NOT_REPRODUCED)])
def test_time_exponent_verdict(exponent, verdict):
    lengths = [2**k for k in range(12, 18)]
    records = records_frame(
        [record("locost", "encode", n, 100, seconds=1e-6 * n**exponent, suite="scaling") for n in lengths]
    )
    row = claim(evaluate(records), "O(L log L)")
    assert row["verdict"] == verdict
    assert row["best_value"] == pytest.approx(exponent)
    assert "4,096–131,072" in row["conditions"]


def test_time_exponent_needs_three_lengths():
    records = records_frame([record("locost", "encode", n, 100, suite="scaling") for n in (4096, 8192)])
    assert claim(evaluate(records), "O(L log L)")["verdict"] == NOT_MEASURED


def test_rouge_relative_quality_pairs_same_conditions_only():
    rouge = rouge_frame(
        [
            rouge_row("locost-small", 4096, 0.30),
            rouge_row("longt5-tglobal-small", 4096, 0.32),
            rouge_row("led-small", 4096, 0.30, train_steps=999),  # other training: not compared
            rouge_row("pegasus-x-base", 4096, 0.30),  # other size: not compared
            rouge_row("lead-3", None, 0.25, kind="extractive"),
        ]
    )
    relative = rouge_relative(rouge)
    assert set(relative["baseline_system"]) == {"longt5-tglobal-small"}
    r1 = relative[relative["metric"].eq("rouge1")].iloc[0]
    assert r1["relative_pct"] == pytest.approx(93.75)
    row = claim(evaluate(records_frame([]), rouge), "ROUGE 93–96%")
    assert row["verdict"] == REPRODUCED and row["typical_value"] == pytest.approx(93.75)


# --- building the report ----------------------------------------------------------------------------


def realistic_runs(root: Path) -> list[Path]:
    """A memory run, a scaling run and a ROUGE run shaped like the real ones (synthetic numbers)."""
    lengths = [1024 * 2**k for k in range(7)]  # 1K .. 64K
    slopes = {"locost": 0.9, "longt5-tglobal": 1.4, "longt5-local": 1.0, "led": 1.1, "pegasus-x": 1.0}
    memory = []
    for family, slope in slopes.items():
        for mode, scale, new_limit in [
            ("train", 2.0, 16384),
            ("encode", 0.3, 65536),
            ("generate", 0.5, 32768),
        ]:
            limit = 65536 if family == "locost" else new_limit
            for n in lengths:
                if family == "led" and n > 16384:
                    memory.append(record(family, mode, n, status="unsupported"))
                elif n == limit * 2:  # killed past the budget: the peak it had reached is recorded
                    memory.append(record(family, mode, n, status="oom",
                                         mem_peak_above_base_bytes=(BUDGET_MIB - 300) * MIB))
                elif n > limit:
                    memory.append(record(family, mode, n, status="skipped"))
                else:
                    memory.append(
                        record(
                            family,
                            mode,
                            n,
                            scale * 300 * (n / 1024) ** slope,
                            seconds=2e-5 * n ** (1.0 + 0.3 * (family != "locost")),
                        )
                    )
    scaling = [
        record("locost", mode, n, 0.1 * n**0.95, seconds=3e-6 * n * math.log2(n), suite="scaling")
        for mode in ("encode", "generate")
        for n in [4096 * 2**k for k in range(8)]
    ]
    scaling += [
        record("locost", "encode", 1048576, status="oom", suite="scaling"),
        record("longt5-tglobal", "encode", 4096, 300, seconds=0.5, suite="scaling"),
        record("longt5-tglobal", "encode", 8192, 900, seconds=1.6, suite="scaling"),
        record("longt5-tglobal", "encode", 16384, 2900, seconds=5.1, suite="scaling"),
        record("longt5-tglobal", "encode", 32768, status="timeout", suite="scaling"),
    ]
    throughput = [
        record(
            family,
            mode,
            n,
            100,
            seconds=1e-5 * n ** (1.0 + 0.2 * (family != "locost")),
            suite="throughput",
            threads=2,
        )
        for family in ("locost", "longt5-local")
        for mode in ("encode", "generate")
        for n in lengths[:5]
    ]
    rouge = [
        rouge_row(f"{family}-small", n, r1 + 0.01 * k)
        for family, r1 in [("locost", 0.30), ("longt5-tglobal", 0.32), ("pegasus-x", 0.31)]
        for k, n in enumerate([1024, 2048, 4096])
    ]
    rouge += [
        rouge_row("lead-3", None, 0.26, kind="extractive"),
        rouge_row("oracle", None, 0.45, kind="extractive"),
    ]
    return [
        write_run(root / "memory-cpu", memory),
        write_run(root / "scaling-cpu", scaling, "scaling"),
        write_run(root / "throughput-cpu", throughput, "throughput"),
        write_run(root / "rouge-cpu", [], "rouge", rouge),
    ]


@pytest.fixture(scope="module")
def built_report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    return build(realistic_runs(root), root / "report")


def test_build_writes_tidy_csvs_figures_and_one_self_contained_html(built_report):
    out = built_report.parent
    names = {p.name for p in out.iterdir()}
    assert {
        "report.html",
        "memory.csv",
        "throughput.csv",
        "scaling.csv",
        "rouge.csv",
        "claims.csv",
        "savings.csv",
        "scaling_fits.csv",
        "rouge_relative.csv",
    } <= names
    assert any(n.startswith("memory-cpu") and n.endswith(".png") for n in names)
    assert any(n.startswith("throughput-cpu") and n.endswith(".png") for n in names)
    assert any(n.startswith("scaling-cpu") and n.endswith(".png") for n in names)
    assert "rouge-toy-sum.png" in names

    memory = pd.read_csv(out / "memory.csv")
    for column in [
        "model",
        "family",
        "size",
        "mode",
        "input_len",
        "status",
        "message",
        "dtype",
        "batch",
        "mem_peak_above_base_bytes",
        "mem_peak_above_base_mib",
        "time_median_s",
        "env_torch",
        "env_cpu_model",
    ]:
        assert column in memory.columns
    assert len(memory) == 5 * 3 * 7 and "condition_key" not in memory.columns
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.columns[:5]) == ["claim", "scope", "paper_value", "best_measured", "typical_measured"]
    assert set(claims["verdict"]) <= {REPRODUCED, NOT_REPRODUCED, NOT_MEASURED}
    savings = pd.read_csv(out / "savings.csv")
    train_4k = savings[
        savings["mode"].eq("train")
        & savings["input_len"].eq(4096)
        & savings["baseline_model"].eq("longt5-tglobal-small")
    ].iloc[0]
    expected = 100 * (1 - (300 * 2 * 4**0.9 * 2) / (300 * 2 * 4**1.4 * 2))
    assert train_4k["saving_pct"] == pytest.approx(expected, rel=1e-6)

    html = built_report.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    sources = [part.split('"', 1)[0] for part in html.split('<img src="')[1:]]
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for section in [
        "Claims",
        "Run conditions",
        "Models",
        "Peak memory vs input length",
        "Memory savings",
        "Throughput vs input length",
        "Scaling",
        "Summary quality (ROUGE)",
        "Relative quality",
        "Failures",
        "baseline oom",
        "Test CPU 9000",
    ]:
        assert section in html


def test_a_torn_last_line_is_skipped_and_reported(tmp_path):
    run = write_run(
        tmp_path / "run", [record("locost", "train", 4096, 300), record("led", "train", 4096, 1000)]
    )
    with open(run / "results.jsonl", "a") as results:
        results.write(json.dumps(record("led", "train", 8192, 2000))[:57])
    report = build([run])
    assert report == run / "report.html"
    assert len(pd.read_csv(run / "memory.csv")) == 2
    assert "torn write" in report.read_text()
    written = {p.name for p in run.iterdir()}
    assert not written & {
        "throughput.csv",
        "scaling.csv",
        "rouge.csv",
        "scaling_fits.csv",
    }  # no data, no file
    assert "Summary quality" not in report.read_text() and "Failures" not in report.read_text()


def test_several_runs_default_to_a_combined_folder(tmp_path, monkeypatch):
    build_module = importlib.import_module("reports.build")
    monkeypatch.setattr(build_module, "OUT_ROOT", tmp_path / "out")
    first = write_run(tmp_path / "a", [record("locost", "train", 4096, 300)])
    second = write_run(tmp_path / "b", [record("led", "train", 4096, 1000)], suite="memory")
    report = build([first, second])
    assert report.parent.parent == tmp_path / "out" and report.parent.name.startswith("combined-")
    assert pd.read_csv(report.parent / "savings.csv")["saving_pct"].iloc[0] == pytest.approx(70.0)


def test_a_rouge_only_run_builds_its_rouge_section(tmp_path):
    run = write_run(
        tmp_path / "rouge",
        [],
        "rouge",
        [
            rouge_row("locost-tiny", 1024, 0.2),
            rouge_row("led-tiny", 1024, 0.25),
            rouge_row("oracle", None, 0.4, kind="extractive"),
        ],
    )
    html = build([run]).read_text()
    written = {p.name for p in run.iterdir()}
    assert {"rouge.csv", "rouge_relative.csv", "claims.csv", "rouge-toy-sum.png"} <= written
    assert "memory.csv" not in written and "Peak memory" not in html
    relative = pd.read_csv(run / "rouge_relative.csv")
    assert relative["relative_pct"].iloc[0] == pytest.approx(80.0)


def test_missing_or_empty_run_directories_are_one_line_errors(tmp_path):
    with pytest.raises(ReportError, match="no such run directory"):
        build([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no results.jsonl"):
        build([tmp_path / "empty"])
    (tmp_path / "empty" / "results.jsonl").write_text("")
    with pytest.raises(ReportError, match="no results recorded"):
        build([tmp_path / "empty"])


def test_cli_builds_and_rejects_bad_directories(tmp_path):
    run = write_run(tmp_path / "run", [record("locost", "train", 4096, 300)])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "reports", "build", str(run), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "o" / "report.html")
    bad = subprocess.run(
        [sys.executable, "-m", "reports", "build", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")


# --- the report in a real browser -------------------------------------------------------------------


def _chromium() -> tuple[str, str] | None:
    browser = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(
    _chromium() is None,
    reason="Chromium and chromedriver not found (Debian: apt-get install -y chromium chromium-driver)",
)
def test_report_renders_in_headless_chromium(built_report, tmp_path):
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed (pip install selenium)"
    )
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--hide-scrollbars",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        driver.get(built_report.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images, i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt]);"
        )
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        title = driver.title
        verdicts = driver.execute_script("return document.querySelectorAll('td.verdict').length;")
        conditions = driver.execute_script("return document.getElementById('conditions').innerText;")
        layouts = {width: _layout_at(driver, width, tmp_path / f"report-{width}.png")
                   for width in (1400, 1000)}
    finally:
        driver.quit()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in layouts:
        shutil.copy(tmp_path / f"report-{width}.png", ARTIFACTS / f"report-{width}.png")
    assert errors == []
    assert title == "LOCOST efficiency report"
    assert len(images) >= 3 and all(complete and width > 0 and h > 0 for complete, width, h, _ in images)
    assert any(alt.startswith("LOCOST's peak memory as a fraction of each baseline's") for *_, alt in images)
    assert verdicts >= 5
    for expected in ["host-memory budget per cell\t40.0 GiB", "timeout per cell\t600 s",
                     "1 warm-up + 3 timed steps: 1K–64K", "dropout (train steps)"]:
        assert expected in conditions, (expected, conditions)
    for width, (overlaps, tallest_claim_row, overflow) in layouts.items():
        assert overlaps == [], (width, overlaps)  # no figure covers a caption, a table or another figure
        assert tallest_claim_row < 170, (width, tallest_claim_row)  # readable rows, not columns of words
        assert overflow <= 0, (width, overflow)  # and the page needs no sideways scrolling
    for width in layouts:
        assert (tmp_path / f"report-{width}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


#: [[image, element], ...] of every image whose box intersects the box of an element that is not
#: its ancestor (a heading, paragraph, table, caption or other image), by more than a pixel each way
_OVERLAPS_JS = """
const others = Array.from(document.querySelectorAll('h1, h2, h3, p, table, figcaption, img, nav'));
const found = [];
for (const img of document.images) {
  const a = img.getBoundingClientRect();
  for (const el of others) {
    if (el === img || el.contains(img)) continue;
    const b = el.getBoundingClientRect();
    const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (x > 1 && y > 1) found.push([img.alt, el.tagName + ' ' + (el.innerText || el.alt || '').slice(0, 60)]);
  }
}
return found;
"""


def _layout_at(driver, width: int, screenshot: Path) -> tuple[list, float, float]:
    """At a window ``width`` px wide: (overlapping image/element pairs, the tallest row of the claims
    table in px, how far the page is wider than the window), and a full-page screenshot."""
    driver.set_window_size(width, 1000)
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, min(height + 100, 16000))
    overlaps = driver.execute_script(_OVERLAPS_JS)
    tallest = driver.execute_script(
        "return Math.max(...Array.from(document.querySelectorAll('table.claims tbody tr'),"
        " r => r.getBoundingClientRect().height));")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
    assert driver.save_screenshot(str(screenshot))
    return overlaps, tallest, overflow


def test_memory_claims_count_only_the_papers_baselines_but_savings_show_every_system():
    """LOCOST-S4 and SPADE rows enter the savings table; a 95% saving against SPADE does not make the
    paper's 87% inference claim 'reproduced' (only 50% against the paper's baselines here)."""
    records = records_frame(
        [
            record("locost", "generate", 16384, 100),
            record("longt5-local", "generate", 16384, 200),
            record("spade", "generate", 16384, 2000),
            record("locost-s4", "generate", 16384, 120),
        ]
    )
    comparisons = memory_comparisons(records)
    assert set(comparisons["baseline_family"]) == {"longt5-local", "spade", "locost-s4"}
    row = claim(evaluate(records), "up to 87% less memory in inference")
    assert row["verdict"] == NOT_REPRODUCED and row["best_value"] == pytest.approx(50.0)


def test_locost_variants_get_their_own_colour_and_are_not_locost_in_rouge():
    from reports.plots import color_of
    assert len({color_of(family) for family in ("locost", "locost-s4", "spade", "longt5-local")}) == 4
    rouge = rouge_frame([rouge_row("locost-small", 4096, 0.30), rouge_row("locost-s4-small", 4096, 0.32)])
    relative = rouge_relative(rouge)
    assert set(relative["locost_system"]) == {"locost-small"}
    assert set(relative["baseline_system"]) == {"locost-s4-small"}


# --- malformed records (issue 12) -------------------------------------------------------------------


def test_records_that_do_not_fit_the_schema_are_skipped_and_listed_with_their_line_numbers(tmp_path):
    good = [record("locost", "train", 1024, mib=100.0), record("led", "train", 1024, mib=400.0)]
    bad = [
        {k: v for k, v in record("led", "train", 2048, mib=1.0).items() if k != "mode"},
        {k: v for k, v in record("led", "train", 4096, mib=1.0).items() if k != "family"},
        {k: v for k, v in record("led", "train", 8192, mib=1.0).items() if k != "input_len"},
        {**record("led", "train", 16384, mib=1.0), "input_len": "long"},
        record("led", "encode", 2048, mib=1.0, mem_peak_bytes="lots"),
        {},
        {k: v for k, v in record("led", "encode", 4096, mib=1.0).items() if k != "status"},
    ]
    run = write_run(tmp_path / "run", good[:1] + bad + good[1:])
    report = build(run).read_text()
    for line, reason in [(2, "mode None is not one of train, encode, generate"),
                         (3, "family None is not a model family name"),
                         (4, "input_len None is not a positive whole number of tokens"),
                         (5, "input_len &#39;long&#39; is not a positive whole number of tokens"),
                         (6, "mem_peak_bytes &#39;lots&#39; is not a number"),
                         (7, "no status (not a record of this harness?)"),
                         (8, "no status (not a record of this harness?)")]:
        assert f"<td>{line}</td>" in report and reason in report, (line, reason)
    assert "Records skipped" in report and "7 lines left out" in report
    savings = pd.read_csv(run / "savings.csv")  # the valid records still make their comparison
    assert savings["ratio"].tolist() == [pytest.approx(0.25)]
    assert len(pd.read_csv(run / "results.csv")) == len(good) + len(bad) - 1  # {} has no cell_id


def test_a_file_of_empty_objects_is_one_error_line_and_leaves_no_partial_output(tmp_path, capsys):
    from cli.report import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("{}\n{}\n{}\n")
    assert main(["build", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {run / 'results.jsonl'}: none of its 3 records is valid "
                   "(line 1: no status (not a record of this harness?))\n")
    assert sorted(p.name for p in run.iterdir()) == ["results.jsonl"]


def test_a_failing_build_leaves_no_partial_csvs(tmp_path, monkeypatch):
    build_module = importlib.import_module("reports.build")  # the package's build() shadows the name
    run = write_run(tmp_path / "run", [record("locost", "train", 1024, mib=100.0),
                                       record("led", "train", 1024, mib=400.0)])
    before = sorted(p.name for p in run.iterdir())

    def broken(*args, **kwargs):
        raise RuntimeError("a figure that cannot be drawn")

    monkeypatch.setattr(build_module, "_write_figures", broken)  # after every CSV is written
    with pytest.raises(RuntimeError):
        build(run)
    assert sorted(p.name for p in run.iterdir()) == sorted([*before, "results.csv"])


def test_the_report_rebuilds_a_missing_or_stale_results_csv_from_the_jsonl(tmp_path):
    rows = [record("locost", "train", 1024, mib=100.0), record("led", "train", 1024, mib=400.0)]
    run = write_run(tmp_path / "run", rows)
    (run / "results.csv").write_text("cell_id\nstale\n")
    build(run)
    assert pd.read_csv(run / "results.csv")["cell_id"].tolist() == [r["cell_id"] for r in rows]
    (run / "results.csv").unlink()
    build(run)
    assert len(pd.read_csv(run / "results.csv")) == 2


def test_cells_measured_with_other_versions_are_never_paired():
    locost = record("locost", "train", 1024, mib=100.0)
    for key, value in [("transformers", "5.24.0"), ("torch", "2.12.0"), ("git_commit", "fedcba")]:
        led = record("led", "train", 1024, mib=400.0, env={**ENV, key: value})
        assert memory_comparisons(records_frame([locost, led]))["ratio"].dropna().empty, key
    same = record("led", "train", 1024, mib=400.0)
    assert memory_comparisons(records_frame([locost, same]))["ratio"].tolist() == [pytest.approx(0.25)]


# --- CSVs (issue 18) --------------------------------------------------------------------------------


def test_every_csv_writes_integers_as_integers(tmp_path):
    """A train cell has target_len 128 and a generate cell none: pandas holds the column as floats,
    and the CSVs must still read 128, not 128.0 (bytes and counts likewise)."""
    rows = [record("locost", "train", 1024, mib=100.0), record("led", "train", 1024, mib=400.0),
            record("locost", "generate", 1024, mib=50.0), record("led", "generate", 1024, status="oom")]
    run = write_run(tmp_path / "run", rows)
    build(run)
    for name in ["results.csv", "memory.csv", "savings.csv"]:
        lines = (run / name).read_text().splitlines()
        header = lines[0].split(",")
        for column in {"target_len", "new_tokens", "input_len", "mem_peak_bytes", "batch"} & set(header):
            values = [line.split(",")[header.index(column)] for line in lines[1:]]
            assert all(v == "" or v.isdigit() for v in values), (name, column, values)
            assert any(v.isdigit() for v in values), (name, column)
    results = pd.read_csv(run / "results.csv")
    assert results["target_len"].tolist()[:2] == [128, 128] and results["mem_peak_bytes"].iloc[0] == 500 * MIB


def test_a_baseline_that_ran_out_of_memory_gives_a_bound_and_single_step_times_are_marked(tmp_path):
    """LED killed past the budget at 16K after reaching 8,000 MiB above its weights: LOCOST's 2,000
    MiB there is at most 0.25× of LED's peak, shown as such in savings.csv, the savings table, the
    ratio figure and the top of the page; every time was one step, and the time verdict says so."""
    rows = [record("locost", "train", n, mib, seconds=1e-6 * n, repeats=1, warmup=0 if n > 4096 else 1)
            for n, mib in [(1024, 200.0), (4096, 600.0), (16384, 2000.0)]]
    rows += [record("led", "train", 1024, 400.0, repeats=1), record("led", "train", 4096, 1500.0, repeats=1),
             record("led", "train", 16384, status="oom", mem_peak_above_base_bytes=8000 * MIB)]
    rows += [record("locost", "encode", n, 10.0, seconds=1e-6 * n, repeats=1, warmup=0 if n > 4096 else 1)
             for n in (1024, 4096, 16384)]
    run = write_run(tmp_path / "run", rows)
    html = build(run).read_text()
    savings = pd.read_csv(run / "savings.csv").set_index("input_len")
    assert savings.loc[16384, "ratio_bound"] == pytest.approx(0.25) and pd.isna(savings.loc[16384, "ratio"])
    assert pd.isna(savings.loc[4096, "ratio_bound"]) and savings.loc[4096, "ratio"] == pytest.approx(0.4)
    assert "≥ 75.0% less" in html and "≤ 0.25×: baseline oom, killed at 8,000 MiB" in html
    assert "train: ≤ 0.25× led-small at 16K (baseline oom)</li>" in html
    assert "LOCOST&#39;s peak memory as a fraction of each baseline&#39;s" in html  # the ratio figure
    marked = "LOCOST&#39;s times: one timed step (every cell; no median, no spread)"
    assert html.count(marked) == 2  # under the O(L log L) verdict: its card at the top and its table row
    assert "1 warm-up + 1 timed step: 1K–4K; no warm-up, 1 timed step: 16K" in html
    assert "every cell timed once" in html


def test_exponent_labels_of_lines_ending_together_do_not_overlap():
    """Five fits ending at the same point (the scaling plot's case): their k labels are moved apart,
    each text box clear of the others once drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.text import Text

    from reports.plots import _spread_labels

    fig = MplFigure(figsize=(4, 3), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e3, 1e6)
    ax.set_ylim(1, 1e4)
    labels = [(5e5, 100 * (1 + 0.01 * i), f"k={1 + i / 10:.2f}", "k") for i in range(5)]
    fig.draw_without_rendering()
    _spread_labels(ax, labels)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text alone, not its connector
    assert len(boxes) == 5
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
