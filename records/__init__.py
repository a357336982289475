"""The one record schema and its files: the leaf every layer writes and reads through.

``records.schema`` defines what a measurement is (``Record``: one cell, ``RougeRow``: one ROUGE
system at one input length, ``CapacityRow``: one model's longest input on a simulated GPU), the modes,
dtypes, statuses and environment keys; ``records.io`` the
one atomic write, JSONL append and read, and the environment flattener; ``records.run`` the run
directory's file names and run.json (``RunInfo``). The engine (``bench``)
writes records with it, the report (``reports``) reads them with it, and neither knows the other.
This package imports nothing of the harness (``bench``, ``suites``, ``reports``, ``cli``, ``models``).
"""

from records.io import (
    NOT_AN_OBJECT,
    append_jsonl,
    atomic_path,
    flatten_env,
    latest_records,
    process_alive,
    process_start,
    read_jsonl,
    read_jsonl_numbered,
    remove_stale_temporaries,
    same_process,
    torn_warnings,
    write_csv,
    write_json,
    write_jsonl,
)
from records.lock import RunDirectoryLocked, locked_run_dir
from records.run import (
    CAPACITY,
    CAPACITY_CSV,
    CURVES,
    FLOPS,
    LOGS,
    RELATIVE,
    RESULTS,
    RESULTS_CSV,
    ROUGE,
    ROUGE_DOCS,
    RUN_JSON,
    RunInfo,
    earlier_invocations,
    read_capacity_rows,
    read_run_info,
    search_key,
    write_capacity_csv,
    write_results_csv,
    write_run_info,
)
from records.schema import (
    CAPACITY_FIELDS,
    CLAIM_SIZES,
    DTYPES,
    ENV_KEYS,
    FAILURES_THAT_SKIP_LONGER,
    MODES,
    PRODUCERS,
    RECORD_FIELDS,
    ROUGE_FIELDS,
    ROUGE_METRICS,
    SIZE_ROLES,
    STATUSES,
    CapacityRow,
    Record,
    RougeDocRow,
    RougeRow,
    record_problem,
    settled,
)

__all__ = [
    "DTYPES", "ENV_KEYS", "FAILURES_THAT_SKIP_LONGER", "MODES", "RECORD_FIELDS", "ROUGE_FIELDS",
    "ROUGE_METRICS", "STATUSES", "Record", "RougeRow", "append_jsonl", "atomic_path", "flatten_env",
    "read_jsonl", "write_json", "write_jsonl", "RunDirectoryLocked", "locked_run_dir", "RESULTS",
    "RESULTS_CSV", "latest_records", "read_jsonl_numbered", "write_results_csv", "record_problem",
    "SIZE_ROLES", "CLAIM_SIZES", "PRODUCERS", "ROUGE_DOCS", "RougeDocRow",
    "write_csv", "NOT_AN_OBJECT", "torn_warnings", "settled", "remove_stale_temporaries",
    "process_alive", "process_start", "same_process", "RUN_JSON", "FLOPS", "LOGS", "ROUGE", "RELATIVE",
    "CURVES", "RunInfo", "read_run_info", "write_run_info", "CAPACITY", "CAPACITY_FIELDS", "CapacityRow",
    "CAPACITY_CSV", "earlier_invocations", "read_capacity_rows", "search_key", "write_capacity_csv",
]
