"""The house's layers hold: cli -> suites -> bench -> records <- reports, models beside them.

Read from the source with ``ast`` (no import runs): every ``import``/``from`` at any depth, inside
functions too, of every module of a package is checked against what its layer may import.
"""

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from bench.protocol import MEASURED_FIELDS
from bench.sweep import make_record
from records import ENV_KEYS, RECORD_FIELDS, ROUGE_FIELDS, Record, RougeRow

ROOT = Path(__file__).resolve().parents[1]
HARNESS = {"bench", "cli", "models", "records", "reports", "suites"}
#: what each package may import of the harness (itself always)
ALLOWED = {
    "records": set(),
    "models": set(),
    "bench": {"records", "models"},
    "reports": {"records"},
    "suites": {"bench", "records", "models"},
    "cli": {"suites", "bench", "records", "reports", "models"},
}
#: ``python -m bench.memory`` etc. stay as two-line shims of the cli layer; they are not the engine
SHIMS = {"bench/memory.py", "bench/throughput.py", "bench/scaling.py", "bench/rouge.py", "bench/capacity.py",
         "reports/__main__.py"}
MAX_FUNCTION_LINES = 60
#: functions longer than that, with the reason they stay
LONG_FUNCTIONS: set[tuple[str, str]] = set()  # (path, function) allowed past the limit: none


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & HARNESS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(package):
    wrong = {}
    for path in _modules(package):
        relative = path.relative_to(ROOT).as_posix()
        if relative in SHIMS:
            continue
        extra = _imported_packages(path) - ALLOWED[package] - {package}
        if extra:
            wrong[relative] = sorted(extra)
    assert not wrong, f"imports across the layers: {wrong}"


def test_the_import_walk_sees_imports_hidden_in_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from reports.build import build\n    import suites.rouge\n")
    assert _imported_packages(module) == {"reports", "suites"}


def test_the_shims_only_hand_over_to_the_cli():
    for relative in SHIMS:
        assert _imported_packages(ROOT / relative) == {"cli"}, relative


def test_no_function_outside_the_tests_exceeds_60_lines():
    long = []
    for package in sorted(HARNESS):
        for path in _modules(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    where = (path.relative_to(ROOT).as_posix(), node.name)
                    if lines > MAX_FUNCTION_LINES and where not in LONG_FUNCTIONS:
                        long.append(f"{where[0]}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


# --- one record schema: the writer's fields are the reader's ------------------------------------

def test_the_runner_writes_exactly_the_schema_and_the_report_reads_it():
    from bench.cells import Cell
    from reports.runs import BYTE_COLUMNS, INTEGER_COLUMNS, RECORD_COLUMNS, ROUGE_COLUMNS, records_frame

    cell = Cell("locost", "tiny", "train", 1024, target_len=8)
    record = make_record(cell, {"status": "ok", "mem_peak_bytes": 3 * 2**20, "env": {"python": "3"}},
                         run_id="r", suite="memory", started_at="t", wall_s=1.0)
    assert tuple(record) == RECORD_FIELDS
    assert RECORD_COLUMNS == [name for name in RECORD_FIELDS if name != "env"]
    assert ROUGE_COLUMNS == list(ROUGE_FIELDS)
    assert set(BYTE_COLUMNS) == {name for name in RECORD_FIELDS if name.endswith("_bytes")}
    assert {"input_len", "batch", "params_total", "repeats"} <= set(INTEGER_COLUMNS)
    frame = records_frame([record])
    assert list(frame.columns[:len(RECORD_COLUMNS)]) == RECORD_COLUMNS
    assert [c for c in frame.columns if c.startswith("env_")] == [f"env_{key}" for key in ENV_KEYS]
    assert frame.loc[0, "mem_peak_mib"] == 3.0 and frame.loc[0, "input_len"] == 1024


def test_the_environment_has_exactly_the_schema_keys():
    from bench.env import environment

    assert tuple(environment("cpu")) == ENV_KEYS


def test_a_worker_reports_only_fields_of_the_record():
    assert MEASURED_FIELDS < set(RECORD_FIELDS)
    assert {"mem_peak_bytes", "time_median_s", "status", "env", "flops"} <= MEASURED_FIELDS


def test_every_schema_field_says_what_it_means():
    for schema in (Record, RougeRow):
        for field in dataclasses.fields(schema):
            assert field.metadata["help"], field.name
            assert field.metadata["kind"] in ("int", "float", "str", "bytes", "bool", "dict", "floats"), \
                field.name


def test_kernel_reuse_is_true_false_or_null_in_a_record():
    from records import record_problem

    row = {"status": "ok", "mode": "encode", "family": "locost", "input_len": 1024}
    assert record_problem({**row, "reuse_kernel": True, "kernel_builds": 0}) is None
    assert record_problem({**row, "reuse_kernel": None}) is None
    assert record_problem({**row, "reuse_kernel": 1}) == "reuse_kernel 1 is not true or false"
    assert record_problem({**row, "kernel_builds": True}) == "kernel_builds True is not a number"


def test_the_timed_steps_are_a_list_of_numbers_in_a_record():
    from records import record_problem

    row = {"status": "ok", "mode": "encode", "family": "locost", "input_len": 1024}
    assert record_problem({**row, "times_s": [0.5, 0.25], "attn_implementation": "sdpa"}) is None
    assert record_problem({**row, "times_s": 0.5}) == "times_s 0.5 is not a list of numbers"
    assert record_problem({**row, "times_s": [0.5, "x"]}) == "times_s [0.5, 'x'] is not a list of numbers"
    assert record_problem({**row, "times_s": [float("nan")]}) == "times_s [nan] is not a list of numbers"


# --- one home per idea in the engine ------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the harness modules it imports, at any depth (``from bench import forkserver``: the
    module bench.forkserver; ``from bench.cells import Cell``: bench.cells)."""
    modules = {_module_name(path) for package in HARNESS for path in _modules(package)}

    def resolve(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for package in HARNESS:
        for path in _modules(package):
            edges = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    edges |= {resolve(a.name) for a in node.names if a.name.split(".")[0] in HARNESS}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                        and node.module.split(".")[0] in HARNESS:
                    edges |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                              else resolve(node.module) for a in node.names}
            graph[_module_name(path)] = edges - {_module_name(path)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, found = {}, {}, [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_harness_imports_itself_back():
    """No import cycle, counting imports inside functions (the sweep once imported its executors from
    inside a function because they imported the runner it lived in)."""
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


#: classes that may hold a field named like a setting: they hold what a cell's steps were, not how to run
#: them (the record's warm-up and repeat counts, the timer's summaries)
READINGS = {("records/schema.py", "Record"), ("bench/trackers.py", "TimeSummary"),
            ("bench/trackers.py", "Runs")}


def test_every_measurement_setting_is_declared_once_in_bench_settings():
    from bench.settings import setting_fields

    names = set(setting_fields())
    assert {"warmup", "warmup_max_len", "repeats", "min_time_s", "flops", "flops_max_len", "timeout_s",
            "budget_bytes"} <= names
    again = []
    for package in sorted(HARNESS):
        for path in _modules(package):
            relative = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and relative != "bench/settings.py" \
                        and (relative, node.name) not in READINGS:
                    again += [f"{relative} {node.name}.{field.target.id}" for field in node.body
                              if isinstance(field, ast.AnnAssign)
                              and getattr(field.target, "id", None) in names]
    assert not again, f"settings declared outside bench/settings.py: {again}"


def test_every_setting_has_a_unit_and_help():
    from bench.settings import setting_fields

    for name, field in setting_fields().items():
        assert field.metadata["help"] and "unit" in field.metadata, name


def test_run_json_is_named_and_written_only_through_records_run():
    """No module outside ``records`` spells the file's name: they write ``records.write_run_info`` and
    read ``records.read_run_info`` (``records.RunInfo``)."""
    spelled = []
    for package in sorted(HARNESS - {"records"}):
        for path in _modules(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and node.value.strip("'\"/") == "run.json":
                    spelled.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    assert not spelled, f"run.json spelled out (use records.RUN_JSON, write/read_run_info): {spelled}"
# --- models: the families share the SSM pieces through models.ssm ------------------------------

#: families whose code may not import another family's; shared pieces live in ``models.ssm``
FAMILY_PACKAGES = ("models.locost", "models.spade")


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of every module ``path`` imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            found.update({module} if node.module else {f"{module}.{alias.name}" for alias in node.names})
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_module_walk_resolves_relative_imports():
    path = ROOT / "models" / "spade" / "modeling_spade.py"
    assert {"models.ssm.fftconv", "models.ssm.s4", "models.precision"} <= _imported_modules(path)
    assert "models.spade.configuration_spade" in _imported_modules(path)
    assert _imported_modules(ROOT / "models" / "ssm" / "flops.py") >= {"models.ssm.s4d", "torch"}


def test_no_family_imports_another_and_the_shared_ssm_package_imports_none():
    wrong = []
    for package in (*FAMILY_PACKAGES, "models.ssm"):
        others = [p for p in FAMILY_PACKAGES if p != package]
        for path in _modules(package.replace(".", "/")):
            wrong += [f"{path.relative_to(ROOT)}: {module}" for module in sorted(_imported_modules(path))
                      if any(_within(module, other) for other in others)]
    assert not wrong, wrong


def test_locost_and_spade_take_the_kernels_and_the_convolution_from_models_ssm():
    locost = _imported_modules(ROOT / "models" / "locost" / "modeling_locost.py")
    spade = _imported_modules(ROOT / "models" / "spade" / "modeling_spade.py")
    assert {"models.ssm.fftconv", "models.ssm.s4d", "models.ssm.s4"} <= locost
    assert {"models.ssm.fftconv", "models.ssm.s4", "models.ssm.flops"} <= spade


# --- reports: a suite's report behaviour is its declaration (records.suites), never its name ---------

def _suite_name_matches(path: Path, names: set[str]) -> list[str]:
    """Where ``path`` picks records by a suite's name: a collection literal of two or more declared suite
    names, or a comparison, subscript or call (``eq``, ``startswith``, ``isin``) that mentions a suite or a
    section and holds a suite's name as a string literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        literals = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in names}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            direct = {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names}
            if len(direct) >= 2:
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, (ast.Compare, ast.Subscript, ast.Call)) and literals:
            source = ast.unparse(node)
            if ("suite" in source or "section" in source) and (not isinstance(node, ast.Call) or any(
                    isinstance(a, ast.Constant) and a.value in names for a in node.args)):
                found.append(f"{path.name}:{node.lineno} {source}")
    return found


def test_the_suite_name_walk_finds_name_matching(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('SUITES = ("memory", "scaling")\nx = by_section["memory"]\n'
                      'y = records["suite"].eq("throughput")\nz = metric == "memory"\n'
                      'w = f(suite, "other")\n')
    assert [line.split(" ")[0] for line in _suite_name_matches(module, {"memory", "scaling", "throughput"})] \
        == ["m.py:1", "m.py:2", "m.py:3"]


def test_no_report_module_matches_a_suite_by_name():
    from records.suites import SUITE_REPORTS

    names = {report.suite for report in SUITE_REPORTS}
    found = [hit for path in _modules("reports") for hit in _suite_name_matches(path, names)]
    assert not found, found


def test_every_suite_carries_its_report_declaration():
    from records.suites import SUITE_REPORTS
    from suites import suites

    assert {suite.report for suite in suites().values()} == set(SUITE_REPORTS)
    assert all(name == suite.report.suite for name, suite in suites().items())


# --- bench: a reader who opens it finds a map, the engine first -----------------------------------

def test_the_bench_map_names_every_module_the_engine_before_the_entry_points():
    doc = ast.get_docstring(ast.parse((ROOT / "bench" / "__init__.py").read_text()))
    engine, entry_points = doc.split("\nEntry points")
    modules = {path.stem for path in (ROOT / "bench").glob("*.py")} - {"__init__"}
    shims = {Path(relative).stem for relative in SHIMS if relative.startswith("bench/")}
    assert _listed(engine) == modules - shims
    assert _listed(entry_points) == shims


def _listed(text: str) -> set[str]:
    """Modules a map's lines start with: "- ``a``:", "- ``a``, ``b``:" or "- ``a`` with ``b``:"."""
    found = re.findall(r"^- ``(\w+)``(?:, ``(\w+)``| with ``(\w+)``)?:", text, re.M)
    return {name for names in found for name in names if name}
