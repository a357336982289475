"""What a measurement is: the fields of a cell's record and of a ROUGE row, with their units.

A ``Record`` is one cell measured in its own process (``bench.worker``), completed by the sweep
(``bench.sweep.make_record``) and appended to ``results.jsonl``; a ``RougeRow`` is one system at one input
length of the ROUGE suite, written to ``rouge.jsonl``; a ``CapacityRow`` is the longest input one model
takes on a simulated GPU in one mode, written to ``capacity.jsonl`` (``bench.capacity``). Units are in
the field names (``_bytes``, ``_s``, ``_per_s``) and in each field's ``help``. Writers build these
dataclasses; readers take their column lists and kinds (``RECORD_FIELDS``, ``Record.kind``) from here,
never from a copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

MODES = ("train", "encode", "generate")
DTYPES = ("fp32", "bf16", "fp16")
#: statuses a cell ends with; ``skipped`` is given by the runner, never measured
STATUSES = ("ok", "oom", "timeout", "unsupported", "error", "skipped")
#: who produced a record's figures (``Record.produced_by``)
PRODUCERS = ("measurement", "simulation")
#: failures after which longer inputs of the same model and mode are not attempted
FAILURES_THAT_SKIP_LONGER = ("oom", "timeout", "unsupported")
#: keys of a record's ``env`` (``bench.env.environment``), flattened to ``env_<key>`` columns
ENV_KEYS = ("python", "torch", "transformers", "device_name", "cpu_model", "cpu_native_bf16", "cpu_count",
            "threads", "git_commit", "hostname", "platform")
ROUGE_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
#: what each preset size (``models.SIZES``; their shapes in ``models.families``) is for. The paper's
#: claims are about models of a stated size: a report judges them only from ``CLAIM_SIZES``, never
#: from smoke-test presets (``tiny``: mostly embedding parameters, for tests)
SIZE_ROLES = {"tiny": "smoke test", "small": "CPU benchmark", "base": "the released configurations"}
CLAIM_SIZES = ("small", "base")


def _f(help: str, kind: str = "str", default=None, default_factory=None):
    """A schema field: ``help`` says meaning and unit, ``kind`` is int, float, str, bytes, bool, dict or
    floats (a list of numbers)."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"help": help, "kind": kind})
    return field(default=default, metadata={"help": help, "kind": kind})


class _Row:
    """What a row dataclass of this schema answers from its field declarations."""

    @classmethod
    def of_kind(cls, *kinds: str) -> list[str]:
        """The names of the fields whose kind (``_f``) is one of ``kinds``, in declaration order."""
        return [f.name for f in fields(cls) if f.metadata["kind"] in kinds]

    def to_json(self) -> dict:
        """Every field in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Record:
    """One cell's measurement; every field is present in the file, ``None`` where not measured."""
    run_id: str | None = _f("run directory name")
    suite: str | None = _f("suite name: memory, throughput, scaling (or a caller's)")
    cell_id: str | None = _f("stable 12-hex hash of the cell's key (bench.cells.Cell.cell_id)")
    family: str | None = _f("model family (models.FAMILIES) or a synthetic workload's label")
    size: str | None = _f("preset size: tiny, small, base (their roles: SIZE_ROLES)")
    model: str | None = _f("<family>-<size>")
    mode: str | None = _f("train (forward + backward), encode (encoder forward) or generate")
    input_len: int | None = _f("input tokens per sequence", "int")
    target_len: int | None = _f("label tokens per sequence of a train step; None otherwise", "int")
    new_tokens: int | None = _f("tokens generated (greedy, exact) by a generate step; None otherwise", "int")
    batch: int | None = _f("sequences per step", "int")
    dtype: str | None = _f("fp32, or bf16/fp16 autocast over fp32 weights")
    device: str | None = _f("cpu or cuda[:N]")
    threads: int | None = _f("CPU threads the cell was given", "int")
    inputs: str | None = _f("token-id tensor file of a real text; None: random ids")
    status: str | None = _f("ok, oom, timeout, unsupported, error or skipped (records.STATUSES)")
    harness_failure: bool | None = _f("true: the failure is not the cell's own but the harness's or the "
                                      "machine's (the worker never started or lost its fork server, the disk "
                                      "filled, a signal from outside killed it): the cell counts as not "
                                      "measured, and a plain rerun measures it again; None otherwise", "bool")
    message: str = _f("one line on a failure or a partial result; '' when ok", default="")
    params_total: int | None = _f("unique parameters, count", "int")
    params_embedding: int | None = _f("embedding parameters (tables, untied output projection)", "int")
    params_non_embedding: int | None = _f("params_total - params_embedding, count", "int")
    mem_peak_bytes: int | None = _f("step peak: CPU peak RSS, CUDA max allocated; bytes", "bytes")
    mem_peak_above_base_bytes: int | None = _f("mem_peak_bytes - mem_base_bytes: what the step adds "
                                               "to the built model; bytes", "bytes")
    mem_base_bytes: int | None = _f("memory held after building the model and batch, before the step; bytes",
                                    "bytes")
    mem_reserved_bytes: int | None = _f("CUDA caching allocator's peak reserved memory (a simulation's: "
                                        "modelled from its allocations, bench.allocator); bytes", "bytes")
    nvml_process_bytes: int | None = _f("NVML: the process's GPU memory at the peak; bytes", "bytes")
    nvml_device_bytes: int | None = _f("NVML: the whole device's used memory at the peak; bytes", "bytes")
    time_median_s: float | None = _f("median wall time of a timed step; seconds", "float")
    time_min_s: float | None = _f("fastest timed step; seconds", "float")
    time_max_s: float | None = _f("slowest timed step; seconds", "float")
    time_iqr_s: float | None = _f("interquartile range of the timed steps; seconds", "float")
    times_s: list | None = _f("every timed step's wall time, in the order they ran (the samples behind "
                              "time_median_s, which run-against-run comparisons test); seconds", "floats")
    cpu_times_s: list | None = _f("process CPU time (user + system, all threads) of every timed step, in "
                                  "order: on one thread the step's time without the waits other jobs on "
                                  "the cores cause; CPU cells only, None on CUDA; seconds", "floats")
    host_other_cores: float | None = _f("cores the host kept busy with anything but this cell during its "
                                        "timed steps, on average: the busy time of the CPUs it may run on "
                                        "(its affinity; /proc/stat: other processes, interrupts, a "
                                        "hypervisor's steal) minus the cell's CPU time, over the steps' wall "
                                        "time. More than the cores the cell left free (env cpu_count - "
                                        "threads) means other work took its threads' cores and lengthened "
                                        "its wall times. CPU cells on Linux only; None elsewhere, and where "
                                        "the steps were too short for /proc/stat's clock ticks "
                                        "(bench.trackers.HostLoad); cores", "float")
    repeats: int | None = _f("timed steps", "int")
    warmup: int | None = _f("warm-up steps before them (timed, outside the statistics)", "int")
    warmup_s: float | None = _f("the warm-up steps together; seconds", "float")
    time_total_s: float | None = _f("the timed steps together; seconds", "float")
    first_call_s: float | None = _f("the first step of the cell's process (its first warm-up step, or its "
                                    "first timed step without warm-up): a new input length, before "
                                    "anything is kept from an earlier call; seconds", "float")
    tokens_per_s: float | None = _f("batch x input_len / time_median_s; input tokens per second", "float")
    generated_tokens_per_s: float | None = _f("batch x new_tokens / time_median_s (generate only)", "float")
    flops: float | None = _f("floating-point operations of one step (multiply-add = 2)", "float")
    flops_analytic: float | None = _f("the part of flops counted by formula, not by fvcore", "float")
    flops_source: str | None = _f("how flops was counted, e.g. 'fvcore+analytic (train = 3 x forward)'")
    reuse_kernel: bool | None = _f("the model keeps its S4D kernels and reuses them in eval mode without "
                                   "gradients (LOCOST's reuse_kernel); None: it has no such kernels", "bool")
    attn_implementation: str | None = _f("attention implementation the model ran: eager, sdpa, "
                                         "flash_attention_2, xformers, ... (its config's "
                                         "_attn_implementation; LOCOST's cross-attention is sdpa); "
                                         "None: not known", "str")
    kernel_builds: int | None = _f("SSM kernels computed during the timed steps, one per layer, channel "
                                   "chunk and call (0: the timed steps reused kernels built before them, so "
                                   "their times exclude kernel generation); None: the model does not count "
                                   "them", "int")
    started_at: str | None = _f("UTC ISO-8601 time the cell started")
    wall_s: float | None = _f("wall time of the cell, process and build included; s", "float")
    overhead_s: float | None = _f("wall_s - warmup_s - time_total_s: what the cell costs besides its steps "
                                  "(starting the worker, imports, building the model and batch, FLOP "
                                  "counting, results); None when its steps did not all run; s", "float")
    contention: int | None = _f("cells run at once on the same CPU cores and host memory when this one was "
                                "measured (--jobs N --allow-contention): N, its figures are spoiled; None: "
                                "alone on its device", "int")
    produced_by: str | None = _f("measurement (trackers read the device) or simulation (bench.gpusim: the "
                                 "step on fake tensors, CUDA's allocator rounding; no time figures); None: a "
                                 "record older than the field, a measurement")
    simulated_gpu: str | None = _f("the GPU a simulation stood for (bench.gpusim.GPUS name or its memory in "
                                   "bytes); None: measured")
    simulated_gpu_bytes: int | None = _f("that GPU's memory, as nvidia-smi reports its total; bytes", "bytes")
    env: dict | None = _f("environment the cell ran in (ENV_KEYS)", "dict")
    #: a synthetic workload's ``module:function`` and arguments; written only when set
    workload: str | None = _f("importable 'module:function' that replaced the model; None: the model")
    workload_args: dict | None = _f("keyword arguments of the workload", "dict")

    @classmethod
    def kind(cls, name: str) -> str:
        """int, float, str, bytes, bool, dict or floats: how a reader converts the column ``name``."""
        return _KINDS[name]

    @classmethod
    def of_kind(cls, *kinds: str) -> list[str]:
        return [name for name in RECORD_FIELDS if _KINDS[name] in kinds]

    def to_json(self) -> dict:
        """The fields in schema order; ``workload`` and its arguments only when a workload ran."""
        row = {name: getattr(self, name) for name in RECORD_FIELDS}
        if self.workload is not None:
            row.update(workload=self.workload, workload_args=self.workload_args)
        return row

    @classmethod
    def from_json(cls, row: dict) -> Record:
        """A record from a parsed line; keys the schema does not know are ignored."""
        return cls(**{name: row[name] for name in _KINDS if name in row})


_KINDS = {f.name: f.metadata["kind"] for f in fields(Record)}
#: every record carries these keys (null where not measured), in this order
RECORD_FIELDS = tuple(name for name in _KINDS if name not in ("workload", "workload_args"))


@dataclass
class RougeRow(_Row):
    """One system at one input length of the ROUGE suite: F1 in [0, 1] with 95% bootstrap CIs."""
    system: str = _f("system name: <family>-<size>, a checkpoint directory name, lead-k or oracle")
    kind: str = _f("model (trained or loaded) or extractive (a reference that copies sentences)")
    family: str | None = _f("model family (models.FAMILIES); None for extractive systems")
    size: str | None = _f("preset size; None for checkpoints and extractive systems")
    input_len: int | None = _f("input tokens (the first L-1 document tokens + EOS); None: full document",
                               "int")
    n_docs: int = _f("evaluation documents scored", "int")
    rouge1: float = _f("mean ROUGE-1 F1 over documents, in [0, 1]", "float")
    rouge1_lo: float = _f("2.5th percentile of the bootstrap of rouge1", "float")
    rouge1_hi: float = _f("97.5th percentile of the bootstrap of rouge1", "float")
    rouge2: float = _f("mean ROUGE-2 F1", "float")
    rouge2_lo: float = _f("lower 95% bound of rouge2", "float")
    rouge2_hi: float = _f("upper 95% bound of rouge2", "float")
    rougeL: float = _f("mean ROUGE-L F1", "float")
    rougeL_lo: float = _f("lower 95% bound of rougeL", "float")
    rougeL_hi: float = _f("upper 95% bound of rougeL", "float")
    rougeLsum: float = _f("mean ROUGE-Lsum F1 (sentence-level LCS)", "float")
    rougeLsum_lo: float = _f("lower 95% bound of rougeLsum", "float")
    rougeLsum_hi: float = _f("upper 95% bound of rougeLsum", "float")
    params_total: int | None = _f("the model's unique parameters; None for extractive systems", "int")
    train_steps: int | None = _f("fine-tuning optimizer steps; None when unknown or extractive", "int")
    dataset: str = _f("<dataset>:<evaluation split>")
    rouge_tokenizer: str = _f("tokenizer of the ROUGE scorer: rouge-score ([a-z0-9] words) or unicode")
    nll: float | None = _f("reference-summary NLL under teacher forcing, nats per token of the suite's "
                           "shared tokenizer: mean over documents of each one's mean; None for extractive "
                           "systems",
                           "float")
    nll_lo: float | None = _f("2.5th percentile of the bootstrap of nll", "float")
    nll_hi: float | None = _f("97.5th percentile of the bootstrap of nll", "float")
    nll_tokens: int | None = _f("reference tokens scored, summed over documents", "int")
    nll_gain: float | None = _f("mean over documents of nll at nll_gain_from minus nll here (paired), "
                                "nats/token; > 0: the longer input makes the reference more likely", "float")
    nll_gain_lo: float | None = _f("2.5th percentile of the paired bootstrap of nll_gain", "float")
    nll_gain_hi: float | None = _f("97.5th percentile of the paired bootstrap of nll_gain", "float")
    nll_gain_from: int | None = _f("the system's shortest scored input length, the gain's reference", "int")


ROUGE_FIELDS = tuple(f.name for f in fields(RougeRow))


@dataclass
class CapacityRow(_Row):
    """One model and mode of a capacity search (``bench.capacity``, ``records.run.CAPACITY``): the longest
    input that fits a GPU, searched on simulated peaks (``bench.gpusim.longest_fitting``), never measured."""
    gpu: str = _f("the simulated GPU: a name of bench.gpusim.GPUS or a memory size's name (80gib)")
    gpu_memory_bytes: int = _f("the GPU's total memory as nvidia-smi reports it", "bytes")
    usable_bytes: int = _f("what tensors may take: the total less the CUDA context (bench.gpusim)", "bytes")
    family: str = _f("model family (models.FAMILIES)")
    size: str = _f("preset size")
    model: str = _f("<family>-<size>")
    mode: str = _f("train (forward + backward), encode or generate")
    longest_ok: int | None = _f("the longest input (tokens) found to fit; None: not the shortest", "int")
    first_failure: int | None = _f("the shortest input found not to fit; None: the longest tried fits", "int")
    peak_bytes: int | None = _f("built model + batch + the step's simulated peak at longest_ok", "bytes")
    reason: str = _f("why first_failure does not fit: oom, or 'unsupported: <the model's length limit>'")
    max_len: int = _f("the longest input tried (tokens)", "int")
    dtype: str = _f("bf16 autocast over fp32 weights (the GPU default)")
    batch: int = _f("sequences per step", "int")
    target_len: int | None = _f("label tokens of a train step; None otherwise", "int")
    new_tokens: int | None = _f("greedy tokens of a generate step (searched with 1, settled with it)", "int")
    model_config: dict = _f("config fields given with --model-config", "dict", default_factory=dict)
    produced_by: str = _f("always simulation (records.PRODUCERS)", default="simulation")
    env: dict = _f("bench.env.environment of the host that simulated it", "dict", default_factory=dict)


CAPACITY_FIELDS = tuple(f.name for f in fields(CapacityRow))


@dataclass
class RougeDocRow(_Row):
    """One system's ROUGE F1 on one evaluation document at one input length (``records.run.ROUGE_DOCS``): what
    paired comparisons (a model against Lead-k on the same documents) resample."""
    system: str = _f("system name, as in RougeRow")
    dataset: str = _f("<dataset>:<evaluation split>, as in RougeRow")
    input_len: int | None = _f("input tokens; None: full document", "int")
    doc_id: str = _f("the evaluation document's id")
    rouge1: float = _f("ROUGE-1 F1 of this document, in [0, 1]", "float")
    rouge2: float = _f("ROUGE-2 F1", "float")
    rougeL: float = _f("ROUGE-L F1", "float")
    rougeLsum: float = _f("ROUGE-Lsum F1", "float")


def settled(row: dict) -> bool:
    """Whether a record counts as its cell's result (a resume skips its cell): every record but one of
    a failure that was not the cell's own (``harness_failure``)."""
    return row.get("harness_failure") is not True


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf")


def record_problem(row: dict, finite: bool = True) -> str | None:
    """Why ``row`` (a parsed line of ``results.jsonl``) is not a ``Record`` a report can use, in one
    phrase; None when it is one. Checked: ``status`` in ``STATUSES``, ``mode`` in ``MODES``, a
    ``family`` name, a positive whole ``input_len``, and every other field of its schema kind
    (numbers not booleans, and finite unless not ``finite``; null allowed wherever a field may be
    unmeasured)."""
    if "status" not in row:
        return "no status (not a record of this harness?)"
    if row["status"] not in STATUSES:
        return f"status {row['status']!r} is not one of {', '.join(STATUSES)}"
    if row.get("mode") not in MODES:
        return f"mode {row.get('mode')!r} is not one of {', '.join(MODES)}"
    if not isinstance(row.get("family"), str) or not row["family"]:
        return f"family {row.get('family')!r} is not a model family name"
    if row.get("produced_by") not in (None, *PRODUCERS):
        return f"produced_by {row['produced_by']!r} is not one of {', '.join(PRODUCERS)}"
    length = row.get("input_len")
    if not (_is_number(length) and length == int(length) and length > 0):
        return f"input_len {length!r} is not a positive whole number of tokens"
    for name, kind in _KINDS.items():
        value = row.get(name)
        if value is None:
            continue
        number = _is_number(value) or not finite and isinstance(value, (int, float)) and not isinstance(
            value, bool)
        if kind in ("int", "bytes", "float") and not number:
            return f"{name} {value!r} is not a number"
        if kind == "bool" and not isinstance(value, bool):
            return f"{name} {value!r} is not true or false"
        if kind == "dict" and not isinstance(value, dict):
            return f"{name} {value!r} is not an object"
        if kind == "str" and not isinstance(value, str):
            return f"{name} {value!r} is not a string"
        if kind == "floats" and not (isinstance(value, list) and all(map(_is_number, value))):
            return f"{name} {value!r} is not a list of numbers"
    return None
