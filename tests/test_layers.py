"""The house's layers hold: cli -> suites -> bench -> records <- reports, models beside them.

Read from the source with ``ast`` (no import runs): every ``import``/``from`` at any depth, inside
functions too, of every module of a package is checked against what its layer may import.
"""

import ast
import dataclasses
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
