"""Simulated GPU figures (``bench.gpusim``) in the report and in the main job, from real runs.

The main job here is ``python -m bench.memory`` with no option, run in this process with the memory suite's
defaults replaced by tiny sweeps (``tiny_memory_suite``); every cell still runs in its own worker. The
"measured on a GPU" side of the simulated-vs-measured pairing cannot be produced on this CPU-only machine:
it is the CPU run's own records with their device fields edited to say a real H100 ran them
(``as_if_measured_on_a_gpu``), so that the pairing, the relative error and the badges are checked on real
records; the figures themselves are CPU figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure as MplFigure
from test_reports import _chromium, record

from bench.settings import Settings
from cli.sweep import main
from records import read_jsonl
from reports import build, plots
from reports.claims import NOT_REPRODUCED, REPRODUCED, evaluate, verdict_words
from reports.runs import load_run, records_frame
from suites import Sweep, get_suite
from suites.memory import MEMORY

REPO = Path(__file__).resolve().parents[1]
GPU = "h100-80gb"
SIM_RUN, CPU_RUN = f"memory-{GPU}-sim", "memory-cpu"
H100_NAME = "NVIDIA H100 80GB HBM3"
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU default applies where no GPU is found")


def tiny_memory_suite():
    """The memory suite with tiny defaults: both sweeps bf16 with the same target / new tokens (so that the
    CPU records can stand for GPU ones), the GPU one with a length more than the CPU one."""
    cpu = Sweep(models=("locost", "longt5-local"), sizes=("tiny",), modes=("train", "encode"), lengths=(512,),
                target_len=16, new_tokens=2, dtype="bf16",
                settings=Settings.of(warmup=0, repeats=1, timeout_s=300.0))
    return replace(MEMORY, cpu=cpu, cuda=replace(cpu, lengths=(256, 512)))


@pytest.fixture(scope="module")
def main_job(tmp_path_factory) -> Path:
    """The tiny main job's output directory (``memory-cpu``, ``memory-h100-80gb-sim``)."""
    if torch.cuda.is_available():
        pytest.skip("the CPU default applies where no GPU is found")
    out = tmp_path_factory.mktemp("main-job")
    with pytest.MonkeyPatch.context() as patch:
        tiny = tiny_memory_suite()
        patch.setattr("suites.memory.MEMORY", tiny)
        patch.setattr("suites.MEMORY", tiny)  # what suites.suites() hands the command
        assert get_suite("memory") is tiny
        assert main("memory", ["--out", str(out), "--no-progress", "--threads", "1"]) == 0
    return out


def records_of(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "results.jsonl")[0]


@no_gpu
def test_the_main_job_simulates_the_gpu_default_beside_the_cpu_one_into_one_report(main_job):
    cpu, sim = records_of(main_job / CPU_RUN), records_of(main_job / SIM_RUN)
    assert {(r["produced_by"], r["device"], r["simulated_gpu"], r["input_len"]) for r in cpu} == \
        {("measurement", "cpu", None, 512)}
    assert {(r["produced_by"], r["device"], r["simulated_gpu"], r["input_len"]) for r in sim} == \
        {("simulation", "cuda", GPU, 256), ("simulation", "cuda", GPU, 512)}  # the GPU sweep's lengths
    assert len(cpu) == 4 and len(sim) == 8 and all(r["status"] == "ok" for r in cpu + sim)
    report = main_job / CPU_RUN
    assert set(pd.read_csv(report / "memory.csv")["run_id"]) == {CPU_RUN, SIM_RUN}  # one report of both
    claims = pd.read_csv(report / "claims.csv", keep_default_na=False)
    training = claims[claims["claim"].eq("up to 50% less memory in training") & claims["scope"].eq("all")]
    assert list(training["judged_on"]) == ["measured", f"simulated {GPU}"]  # judged apart, never mixed
    html = (report / "report.html").read_text()
    for verdict in training["verdict"]:
        assert verdict == "inconclusive"  # tiny models: smoke tests
    assert f">inconclusive, simulated {GPU}<" in html and ">inconclusive<" in html
    assert not (main_job / SIM_RUN / "report.html").exists()  # the one report is the CPU run's


@no_gpu
def test_every_csv_of_the_report_says_which_figures_are_simulated(main_job):
    report = main_job / CPU_RUN
    for name in ("memory.csv", "savings.csv", "crossovers.csv"):
        frame = pd.read_csv(report / name)
        simulated = frame["produced_by"].eq("simulation")
        assert simulated.any() and (~simulated).any(), name
        assert set(frame.loc[simulated, "simulated_gpu"]) == {GPU}, name
        assert frame.loc[~simulated, "simulated_gpu"].isna().all(), name
    claims = pd.read_csv(report / "claims.csv", keep_default_na=False)
    assert set(claims["judged_on"]) == {"measured", f"simulated {GPU}"}
    for run in (CPU_RUN, SIM_RUN):
        results = pd.read_csv(main_job / run / "results.csv")
        assert set(results["produced_by"]) == {"simulation" if run == SIM_RUN else "measurement"}


@no_gpu
def test_the_default_dry_run_lists_the_simulated_gpu_cells_and_options_that_leave_them_out(tmp_path, capsys):
    """The real defaults: 42 CPU cells, then the GPU default (base, bf16, 1K-64K, 512 target / 64 new
    tokens, train, generate and encode, all seven families: 147 cells) simulated on an H100."""
    assert main("memory", ["--dry-run", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"42 cells -> {tmp_path / CPU_RUN}" in lines and lines[-1] == f"147 cells -> {tmp_path / SIM_RUN}"
    simulated = [line.split("  ", 1)[1] for line in lines if f"(simulated {GPU})" in line]
    assert len(simulated) == 147
    assert sum("(unsupported: " in line for line in simulated) == 6  # LED's 32K and 64K: 16,384 positions
    assert "locost-base train 65,536 +512 target bf16 (simulated h100-80gb)" in simulated
    assert "spade-base generate 1,024 +64 new bf16 (simulated h100-80gb)" in simulated
    assert "led-base encode 2,048 bf16 (simulated h100-80gb)" in simulated
    for argv in (["--no-simulate"], ["--lengths", "1k"], ["--sizes", "tiny"], ["--device", "cpu"]):
        assert main("memory", ["--dry-run", "--out", str(tmp_path), *argv]) == 0
        assert "simulated" not in capsys.readouterr().out, argv
    assert main("memory", ["--dry-run", "--out", str(tmp_path), "--models", "led", "--run-id", "x"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"21 cells -> {tmp_path / f'x-{GPU}-sim'}"  # --models applies to both, 3 x 7 cells
    assert main("memory", ["--dry-run", "--no-simulate", "--simulate", GPU]) == 2
    assert capsys.readouterr().err == "error: --no-simulate and --simulate contradict each other\n"


def test_a_claim_is_judged_apart_on_measured_and_on_simulated_peaks_and_the_verdict_names_the_gpu():
    """Measured CPU cells with a 30% saving and H100-simulated base cells with a 60% one: two headline rows,
    not reproduced (measured) and reproduced (simulated h100-80gb); one maximum over both would have
    called the measured claim reproduced."""
    sim = dict(size="base", device="cuda", dtype="bf16", produced_by="simulation", simulated_gpu=GPU,
               run_id=SIM_RUN)
    records = records_frame([record("locost", "train", 8192, 700), record("led", "train", 8192, 1000),
                             record("locost", "train", 8192, 400, **sim),
                             record("led", "train", 8192, 1000, **sim)])
    claims = evaluate(records)
    rows = claims[claims["claim"].eq("up to 50% less memory in training") & claims["scope"].eq("all")]
    assert list(zip(rows["judged_on"], rows["verdict"], rows["best_value"], strict=True)) == [
        ("measured", NOT_REPRODUCED, pytest.approx(30.0)),
        (f"simulated {GPU}", REPRODUCED, pytest.approx(60.0))]
    assert [verdict_words(row) for row in rows.to_dict("records")] == [
        "not reproduced", f"reproduced, simulated {GPU}"]
    assert rows["reason"].iloc[1].startswith(f"simulated {GPU} (bench.gpusim): best saving 60.0%")


def as_if_measured_on_a_gpu(cpu_run: Path, to: Path) -> Path:
    """A copy of ``cpu_run`` whose records say a real H100 measured them (device, device name): the figures
    stay the CPU's. Stands for the real GPU records this machine cannot produce."""
    shutil.copytree(cpu_run, to)
    rows = [dict(r, device="cuda", env=dict(r["env"], device_name=H100_NAME)) for r in records_of(cpu_run)]
    (to / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for stale in ("results.csv", "report.html"):
        (to / stale).unlink(missing_ok=True)
    return to


@pytest.fixture(scope="module")
def measured_on_gpu(main_job, tmp_path_factory) -> Path:
    return as_if_measured_on_a_gpu(main_job / CPU_RUN, tmp_path_factory.mktemp("gpu") / "memory-cuda")


@pytest.fixture(scope="module")
def side_by_side(main_job, measured_on_gpu, tmp_path_factory) -> Path:
    """report.html of the simulated run beside the 'measured on a GPU' one."""
    return build([main_job / SIM_RUN, measured_on_gpu], tmp_path_factory.mktemp("report"))


@no_gpu
def test_simulated_and_measured_gpu_peaks_of_the_same_cell_stand_side_by_side(main_job, side_by_side):
    measured = {(r["model"], r["mode"], r["input_len"]): r for r in records_of(main_job / CPU_RUN)}
    simulated = {(r["model"], r["mode"], r["input_len"]): r for r in records_of(main_job / SIM_RUN)}
    paired = pd.read_csv(side_by_side.parent / "sim_vs_measured.csv")
    assert len(paired) == 4  # the four 512-token cells; the simulated 256-token ones have no GPU record
    for row in paired.itertuples():
        key = (row.model, row.mode, row.input_len)
        sim, real = (r[key]["mem_peak_above_base_bytes"] for r in (simulated, measured))
        assert row.simulated_mib == sim / 2**20 and row.measured_mib == real / 2**20
        assert row.relative_error_pct == pytest.approx(100 * (sim - real) / real, rel=1e-12)
        assert (row.simulated_gpu, row.measured_device, row.input_len) == (GPU, H100_NAME, 512)
    html = side_by_side.read_text()
    assert "Simulated and measured peaks of the same cells" in html
    first = paired.iloc[0]
    assert f"{first.relative_error_pct:+.1f}%" in html


@no_gpu
def test_gpu_checks_side_by_side_script_prints_the_reports_pairs(main_job, measured_on_gpu, side_by_side):
    """``scripts/side_by_side.py`` (what gpu_check.sh prints) pairs as the report does: the same cells, peaks
    in GiB and errors as in sim_vs_measured.csv."""
    argv = [sys.executable, "scripts/side_by_side.py", str(measured_on_gpu), str(main_job / SIM_RUN)]
    done = subprocess.run(argv,
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))  # as gpu_check.sh runs it
    paired = pd.read_csv(side_by_side.parent / "sim_vs_measured.csv")
    expected = [[p.model, p.mode, f"{p.input_len:,}", f"{p.measured_mib / 1024:.2f}",
                 f"{p.simulated_mib / 1024:.2f}", f"{p.relative_error_pct:+.1f}%"]
                for p in paired.itertuples()]
    assert [line.split() for line in done.stdout.splitlines()[1:]] == expected


@no_gpu
def test_simulated_series_have_hollow_markers_a_legend_entry_and_figures_of_their_own(main_job):
    records = pd.concat([load_run(main_job / run).records for run in (CPU_RUN, SIM_RUN)], ignore_index=True)
    train = records[records["mode"].eq("train")]
    fig = MplFigure()
    ax = fig.subplots()
    plots._draw_panel(ax, train, "mem_peak_above_base_mib")
    faces = {line.get_label(): line.get_markerfacecolor() for line in ax.lines}
    assert {label: face == "none" for label, face in faces.items()} == {
        f"{model} ({run})": run == SIM_RUN for model in ("locost-tiny", "longt5-local-tiny")
        for run in (CPU_RUN, SIM_RUN)}
    plots._legend(fig, [ax], train)
    assert f"simulated {GPU}" in [t.get_text() for t in fig.legends[0].get_texts()]
    figures = plots.length_figures(records, "memory", "mem_peak_above_base_mib", "MiB", "Peak")
    titles = [figure.title for figure in figures]
    assert sum(f"simulated {GPU}" in title for title in titles) == 1 and len(titles) == 2


def _chromium_report(path: Path, script: str, tmp_path: Path):
    """``script``'s value on ``path`` loaded in headless Chromium (skips without it)."""
    if _chromium() is None:
        pytest.skip("Chromium and chromedriver not found (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        driver.get(path.as_uri())
        return driver.execute_script(script)
    finally:
        driver.quit()


#: per table: its title, its title's badge and its rows of cells, each [text, badge]; the run conditions'
#: rows; the verdicts of the header's cards
_BADGES_JS = """
const tables = Array.from(document.querySelectorAll('h3'), h => {
  const table = h.nextElementSibling.nextElementSibling.querySelector('table');
  const badge = h.querySelector('.badge');
  return [h.firstChild.textContent.trim(), badge ? badge.innerText : '',
          Array.from(table.tBodies[0].rows, row => Array.from(row.cells, td => {
            const b = td.querySelector(':scope > .badge');
            return [td.firstChild ? td.firstChild.textContent.trim() : '', b ? b.innerText : ''];
          }))];
});
const figures = Array.from(document.querySelectorAll('#conditions tr'),
                           tr => Array.from(tr.cells, c => c.innerText));
const cards = Array.from(document.querySelectorAll('.summary span.verdict'), s => s.innerText);
return [tables, figures, cards];
"""


@no_gpu
def test_the_html_badges_every_simulated_cell_table_and_run_in_a_browser(side_by_side, tmp_path):
    tables, conditions, cards = _chromium_report(side_by_side, _BADGES_JS, tmp_path)
    by_title = {title: (badge, cells) for title, badge, cells in tables}
    [pairs] = [v for k, v in by_title.items() if k.startswith("Simulated and measured peaks")]
    assert pairs[0] == f"simulated {GPU}"
    badges = [[badge for _, badge in row] for row in pairs[1]]
    assert len(badges) == 4 and all(row[4] == f"simulated {GPU}" and row.count("") == len(row) - 1
                                    for row in badges)  # the simulated peak's cell, no other
    values = {k: v for k, v in by_title.items() if k.startswith("peak memory above weights")}
    assert len(values) == 2  # the simulated cells' table and the measured ones'
    for badge, rows in values.values():  # rows: mode, length, then a value per model
        assert len(rows) == (4 if badge else 2)  # (train, encode) x (256, 512) simulated; 512 measured
        assert all([b for _, b in row] == ["", ""] + ["simulated" if badge else ""] * 2 for row in rows), rows
    assert {badge for badge, _ in values.values()} == {f"simulated {GPU}", ""}
    [produced] = [row for row in conditions if row and row[0] == "figures"]
    assert produced[1].startswith("simulated: fake tensors") and produced[1].endswith(f"simulated {GPU}")
    assert produced[2] == "measured"
    assert any(card.endswith(f", simulated {GPU}") for card in cards)
    assert any(not card.endswith(f"simulated {GPU}") for card in cards)


GPU_CHECK = REPO / "scripts" / "gpu_check.sh"


@pytest.mark.parametrize("argv, status, out, err", [
    (["--help"], 0, "usage: scripts/gpu_check.sh [GPU]", ""),
    (["-h"], 0, "usage: scripts/gpu_check.sh [GPU]", ""),
    (["--frobnicate"], 2, "", "error: unknown option: --frobnicate"),
    (["h100-80gb", "a100-40gb"], 2, "", "error: one GPU name at most, got 2: h100-80gb a100-40gb"),
    (["--", "nonsense"], 2, "", "error: unknown option: --"),
    (["nonsense"], 2, "", "error: argument --simulate: unknown GPU 'nonsense'; use one of h100-80gb"),
])
def test_gpu_check_takes_help_as_help_and_refuses_bad_input_before_any_cell(argv, status, out, err):
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    done = subprocess.run(["bash", str(GPU_CHECK), *argv], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == status, done.stderr
    assert done.stdout.startswith(out) and (out or done.stdout == "")
    last = done.stderr.splitlines()[-1] if done.stderr else ""
    assert last.startswith(err) if err else done.stderr == ""


def test_the_headline_ratios_name_the_simulated_gpu_not_the_host_that_computed_it():
    """A simulated cell's device name is the host's CPU: the headline says "simulated h100-80gb" instead."""
    from reports.analysis import memory_comparisons
    from reports.summary import headlines

    sim = dict(device="cuda", produced_by="simulation", simulated_gpu=GPU, env={"device_name": "AMD EPYC"})
    records = records_frame([record("locost", "train", 8192, 700), record("led", "train", 8192, 1000),
                             record("locost", "train", 8192, 400, **sim),
                             record("led", "train", 8192, 1000, **sim)])
    assert headlines(memory_comparisons(records)) == [
        "device cpu, train: 0.70× led-small at 8K", f"simulated {GPU}, train: 0.40× led-small at 8K"]


_CAPACITY_JS = _BADGES_JS.replace("return [tables, figures, cards];", """
const images = Array.from(document.querySelectorAll('#capacity figure img'),
                          img => [img.alt, img.naturalWidth]);
return [tables, images];""")


@no_gpu
def test_a_capacity_run_is_a_table_and_a_figure_of_the_report_beside_measured_runs(main_job, tmp_path):
    """``python -m bench.capacity`` writes its rows to capacity.jsonl and builds its report; ``reports build``
    of it beside the main job's CPU run shows, in a browser, one table of the searches (badged simulated,
    each row the file's row, LOCOST's longest over each model's) and their figure, and writes
    longest_inputs.csv with the file's rows; the run's own capacity.csv stays the command's (one writer)."""
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "bench.capacity", "--gpu", "1126MiB", "--size", "tiny",
                           "--models", "longt5-local,locost", "--modes", "encode", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run = out / "capacity-1126mib"
    assert done.stdout.splitlines()[-1] == f"report: {run / 'report.html'}"
    rows = {row["family"]: row for row in read_jsonl(run / "capacity.jsonl")[0]}
    assert set(rows) == {"longt5-local", "locost"} and rows["locost"]["produced_by"] == "simulation"
    assert "peak_gib" not in pd.read_csv(run / "capacity.csv").columns  # its report left it alone
    report = build([main_job / CPU_RUN, run], tmp_path / "combined")
    csv = pd.read_csv(report.parent / "longest_inputs.csv")
    columns = ["longest_ok", "first_failure", "peak_bytes"]
    assert {r["family"]: [r[c] for c in columns] for r in csv.to_dict("records")} == {
        f: [r[c] for c in columns] for f, r in rows.items()}
    tables, images = _chromium_report(report, _CAPACITY_JS, tmp_path)
    [(badge, cells)] = [(b, c) for title, b, c in tables
                        if title == "Longest input (tokens) on 1126mib, tiny presets"]
    ours, theirs = rows["locost"], rows["longt5-local"]
    assert badge == "simulated 1126mib"
    assert [[text for text, _ in row] for row in cells] == [
        ["locost-tiny", "encode", f"{ours['longest_ok']:,}", f"{ours['first_failure']:,}", "oom",
         f"{ours['peak_bytes'] / 2**30:.2f}", "–"],
        ["longt5-local-tiny", "encode", f"{theirs['longest_ok']:,}", f"{theirs['first_failure']:,}", "oom",
         f"{theirs['peak_bytes'] / 2**30:.2f}", f"{ours['longest_ok'] / theirs['longest_ok']:.2f}×"]]
    assert [alt for alt, _ in images] == ["Longest input that fits — simulated 1126mib, tiny presets"]
    assert all(width > 0 for _, width in images)
    assert any(title.startswith("peak memory above weights") for title, _, _ in tables)  # the CPU run's
