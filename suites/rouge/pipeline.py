"""The ROUGE suite end to end.

data -> shared tokenizer -> every model trained with one budget (or loaded from a checkpoint) ->
summaries generated at each input length -> extractive references on the same inputs -> ROUGE with
bootstrap CIs -> ``rouge.jsonl``, ``relative.jsonl``, ``run.json`` and ``predictions/`` in the run
directory, and tables on stdout.

Rerunning the same command resumes: a trained checkpoint, and predictions made with the same
model, data, lengths and generation settings, are reused (``force=True`` redoes everything).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from suites.rouge import extractive, scoring
from suites.rouge.data import SummarizationData, default_cache_dir, load_data
from suites.rouge.errors import SuiteError
from suites.rouge.generation import GenerationSettings, generate, truncate, visible_text
from suites.rouge.sentences import DESCRIPTION as SENTENCE_SPLITTER
from suites.rouge.tokenizer import SharedTokenizer, load_tokenizer, train_tokenizer
from suites.rouge.training import Budget, TrainLog, summarization_example, train

DEFAULT_MODELS = ("locost", "longt5-tglobal", "led")
ROUGE_FIELDS = ("system", "kind", "input_len", "n_docs",
                *(f"{m}{s}" for m in scoring.METRICS for s in ("", "_lo", "_hi")),
                "params_total", "train_steps", "dataset", "rouge_tokenizer")


# --- configuration ------------------------------------------------------------------------------

def parse_length(text: str) -> int | None:
    """``"4k"`` -> 4096, ``"1500"`` -> 1500, ``"full"`` -> None (the whole document)."""
    value = text.strip().lower()
    if value == "full":
        return None
    match = re.fullmatch(r"(\d+)(k?)", value)
    if not match or int(match.group(1)) == 0:
        raise SuiteError(f"bad length {text!r}: use a positive integer, Nk (N x 1024) or 'full'")
    length = int(match.group(1)) * (1024 if match.group(2) else 1)
    if length < 2:
        raise SuiteError(f"bad length {text!r}: an input needs at least 2 tokens (text + EOS)")
    return length


def parse_lengths(text: str) -> list[int | None]:
    lengths = [parse_length(part) for part in text.split(",") if part.strip()]
    if not lengths:
        raise SuiteError("no evaluation lengths given")
    unique = sorted({x for x in lengths if x is not None})
    return unique + ([None] if None in lengths else [])


def length_label(length: int | None) -> str:
    return "full" if length is None else str(length)


@dataclass
class RougeConfig:
    data: str = "aclsum"
    data_config: str | None = None
    doc_column: str = "document"
    summary_column: str = "summary"
    id_column: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    train_docs: int | None = None  # None: as many as the budget draws (steps x sequences per step)
    tokenizer_docs: int = 1000  # the tokenizer is trained on the first N training documents + summaries
    eval_docs: int | None = 20
    tokenizer: str | None = None
    vocab_size: int = 8000
    models: list[str] | None = None  # None: DEFAULT_MODELS, unless checkpoints are given
    size: str = "tiny"
    checkpoints: list[str] = field(default_factory=list)
    budget: Budget = field(default_factory=Budget)
    eval_lens: list[int | None] = field(default_factory=lambda: [1024, 2048, 4096, None])
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    lead_k: int = 3
    extractive: bool = True
    rouge_tokenizer: str = scoring.DEFAULT_ROUGE_TOKENIZER  # one of scoring.ROUGE_TOKENIZERS
    device: str = "auto"
    out: Path = Path("reports/out")
    run_id: str | None = None
    force: bool = False
    cache_dir: Path | None = None
    progress: bool = True
    report: bool = True  # build report.html with reports.build when it is importable
    args: dict = field(default_factory=dict)  # the command line, recorded in run.json


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str | None = None
    size: str | None = None
    checkpoint: Path | None = None


def model_specs(cfg: RougeConfig) -> list[ModelSpec]:
    from models import FAMILIES, SIZES

    models = cfg.models if cfg.models is not None else ([] if cfg.checkpoints else list(DEFAULT_MODELS))
    for family in models:
        if family not in FAMILIES:
            raise SuiteError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    if models and cfg.size not in SIZES:
        raise SuiteError(f"unknown size {cfg.size!r}; known: {', '.join(SIZES)}")
    specs = [ModelSpec(f"{family}-{cfg.size}", family, cfg.size) for family in models]
    for path in cfg.checkpoints:
        path = Path(path)
        if not path.exists():
            raise SuiteError(f"checkpoint not found: {path}")
        specs.append(ModelSpec(path.resolve().name, checkpoint=path))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SuiteError(f"two systems share a name: {', '.join(names)}")
    if not specs and not cfg.extractive:
        raise SuiteError("nothing to evaluate: no models, no checkpoints, extractive references off")
    return specs


# --- small helpers ------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SuiteError(f"device {name!r} requested but CUDA is not available")
    if not (name == "cpu" or name.startswith("cuda")):
        raise SuiteError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def environment(device: torch.device) -> dict:
    """bench's environment record, plus the device kind and the versions this suite depends on."""
    from bench.env import environment as bench_environment
    from bench.env import package_version

    env = bench_environment(str(device), threads=torch.get_num_threads())
    env["device"] = device.type
    env.update({name: package_version(dist) for name, dist in
                (("datasets", "datasets"), ("tokenizers", "tokenizers"), ("rouge_score", "rouge-score"))})
    return env


class State:
    """What earlier runs in this directory finished: trained systems and prediction files, each
    under the fingerprint of everything that determines it."""

    def __init__(self, path: Path, reset: bool):
        self.path = path
        data = {} if reset or not path.is_file() else json.loads(path.read_text())
        self.systems: dict = data.get("systems", {})
        self.predictions: dict = data.get("predictions", {})

    def save(self) -> None:
        _write_json(self.path, {"systems": self.systems, "predictions": self.predictions})


# --- models -------------------------------------------------------------------------------------

def _training_examples(data: SummarizationData, tokenizer: SharedTokenizer, budget: Budget):
    documents = tokenizer.encode_batch([e.document for e in data.train.examples])
    summaries = tokenizer.encode_batch([e.summary for e in data.train.examples])
    eos = tokenizer.special.eos
    return [summarization_example(d.ids, s.ids, eos, budget.train_len, budget.target_len)
            for d, s in zip(documents, summaries, strict=True)]


def _gsg_examples(data: SummarizationData, tokenizer: SharedTokenizer, budget: Budget, rouge_tokenizer: str):
    from suites.rouge.gsg import gap_sentence_example

    if tokenizer.special.mask is None:
        raise SuiteError("gap-sentence pre-training needs a mask token (<mask>, [MASK], <mask_1> or "
                         "<extra_id_0>) and the tokenizer has none")
    examples = [gap_sentence_example(e.document, tokenizer, budget.train_len, budget.target_len,
                                     budget.gsg_ratio, rouge_tokenizer) for e in data.train.examples]
    return [e for e in examples if e is not None]


def _build(spec: ModelSpec, tokenizer: SharedTokenizer, budget: Budget, device: torch.device):
    from models import ModelError, build

    try:
        handle = build(spec.family, spec.size, seed=budget.seed, device=device,
                       **tokenizer.model_overrides())
        handle.check_lengths(budget.train_len, budget.target_len, budget.batch_size)
    except ModelError as exc:
        raise SuiteError(f"{spec.name}: {exc}") from None
    except ImportError as exc:
        raise SuiteError(f"cannot build {spec.name}: {exc}") from None
    return handle


def _load(path: Path, tokenizer: SharedTokenizer, device: torch.device):
    from models import ModelError, load

    try:
        handle = load(path, device=device)
    except ModelError as exc:
        raise SuiteError(str(exc)) from None
    if handle.model.config.vocab_size < tokenizer.vocab_size:
        raise SuiteError(f"{path}: the model's vocabulary ({handle.model.config.vocab_size}) is smaller "
                         f"than the tokenizer's ({tokenizer.vocab_size}); pass the matching --tokenizer")
    return handle


def _params(handle) -> dict:
    p = handle.params
    return {"total": p.total, "embedding": p.embedding, "non_embedding": p.non_embedding}


class ModelRunner:
    """Trains (or loads) one system and makes its predictions, reusing finished work."""

    def __init__(self, cfg: RougeConfig, run_dir: Path, state: State, tokenizer: SharedTokenizer,
                 data: SummarizationData, device: torch.device):
        self.cfg, self.run_dir, self.state = cfg, run_dir, state
        self.tokenizer, self.data, self.device = tokenizer, data, device
        self._examples: dict[str, list] = {}

    def examples(self, phase: str) -> list:
        if phase not in self._examples:
            if phase == "gsg":
                examples = _gsg_examples(self.data, self.tokenizer, self.cfg.budget, self.cfg.rouge_tokenizer)
            else:
                examples = _training_examples(self.data, self.tokenizer, self.cfg.budget)
            self._examples[phase] = examples
        return self._examples[phase]

    def fingerprint(self, spec: ModelSpec) -> str:
        if spec.checkpoint is not None:
            weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime)
                             for p in Path(spec.checkpoint).iterdir() if p.is_file())
            return _digest("checkpoint", str(Path(spec.checkpoint).resolve()), weights,
                           self.tokenizer.fingerprint)
        from models import config

        preset = config(spec.family, spec.size, **self.tokenizer.model_overrides()).to_dict()
        preset.pop("transformers_version", None)
        gsg_sentences = [self.cfg.rouge_tokenizer] if self.cfg.budget.gsg_steps else []  # picks the gaps
        return _digest("trained", spec.family, spec.size, preset, self.tokenizer.fingerprint,
                       self.cfg.budget.describe(), [e.id for e in self.data.train.examples],
                       self.data.name, self.data.columns, str(self.device.type), *gsg_sentences)

    def obtain(self, spec: ModelSpec, fingerprint: str):
        """(handle, system entry): loaded, reused from this run directory, or built and trained."""
        if spec.checkpoint is not None:
            handle = _load(Path(spec.checkpoint), self.tokenizer, self.device)
            harness = Path(spec.checkpoint) / "harness.json"
            train_steps = json.loads(harness.read_text()).get("train_steps") if harness.is_file() else None
            return handle, {"fingerprint": fingerprint, "params": _params(handle),
                            "train_steps": train_steps, "family": handle.family.name, "size": None,
                            "source": str(spec.checkpoint), "training": None}
        directory = self.run_dir / "checkpoints" / spec.name
        harness = directory / "harness.json"
        if not self.cfg.force and harness.is_file():
            saved = json.loads(harness.read_text())
            if saved.get("fingerprint") == fingerprint:
                handle = _load(directory, self.tokenizer, self.device)
                return handle, {**saved, "source": f"reused {directory}"}
        handle = _build(spec, self.tokenizer, self.cfg.budget, self.device)
        budget, logs = self.cfg.budget, []
        for phase, steps in (("gsg", budget.gsg_steps), ("finetune", budget.steps)):
            if steps:
                log: TrainLog = train(handle, self.examples(phase), budget, steps, phase,
                                      self.tokenizer.special.pad, spec.name, self.cfg.progress)
                logs.append(log.describe())
                print(f"  {spec.name}: {phase} {steps} steps in {log.seconds:.0f} s, loss "
                      f"{logs[-1]['loss_first']} -> {logs[-1]['loss_last']}", flush=True)
        entry = {"fingerprint": fingerprint, "params": _params(handle), "train_steps": budget.steps,
                 "family": spec.family, "size": spec.size, "budget": budget.describe(),
                 "training": logs}
        directory.mkdir(parents=True, exist_ok=True)
        handle.model.save_pretrained(str(directory))
        self.tokenizer.save(directory / "tokenizer.json")
        _write_json(harness, entry)
        return handle, {**entry, "source": "trained in this run"}

    def run(self, spec: ModelSpec, inputs: dict, references: list[str], ids: list[str]) -> dict:
        """Predictions of ``spec`` at every length (``inputs``: length -> list of id lists); returns
        the system's entry, with the lengths it cannot take under ``unsupported``."""
        fingerprint = self.fingerprint(spec)
        settings = self.cfg.generation.describe()
        keys = {length: _digest(fingerprint, ids, length, settings) for length in inputs}
        entry = self.state.systems.get(spec.name)
        if entry is not None and entry.get("fingerprint") != fingerprint:
            entry = None

        def done(length) -> bool:
            path = _prediction_path(spec.name, length)
            record = self.state.predictions.get(path) or {}
            return record.get("key") == keys[length] and (
                record.get("unsupported") is not None or (self.run_dir / path).is_file())

        def unsupported() -> dict:
            records = {length_label(x): self.state.predictions[_prediction_path(spec.name, x)]
                       for x in inputs}
            return {label: r["unsupported"] for label, r in records.items() if r["unsupported"]}

        todo = list(inputs) if entry is None else [length for length in inputs if not done(length)]
        if not todo:
            print(f"  {spec.name}: predictions reused from {self.run_dir}", flush=True)
            return {**entry, "unsupported": unsupported()}
        handle, entry = self.obtain(spec, fingerprint)
        self.state.systems[spec.name] = entry
        for length in todo:
            path = _prediction_path(spec.name, length)
            record = self.state.predictions[path] = {"key": keys[length], "unsupported": None}
            longest = max(len(x) for x in inputs[length])
            try:
                handle.check_lengths(longest, self.cfg.generation.max_new_tokens + 1,
                                     self.cfg.generation.batch_size)
            except ValueError as exc:
                print(f"  {spec.name} @ {length_label(length)}: unsupported: {exc}", flush=True)
                record["unsupported"] = str(exc)
                (self.run_dir / path).unlink(missing_ok=True)
                self.state.save()
                continue
            started = time.perf_counter()
            predictions = generate(handle, self.tokenizer, inputs[length], self.cfg.generation,
                                   desc=f"generate {spec.name} @ {length_label(length)}",
                                   progress=self.cfg.progress)
            entry.setdefault("generation_s", {})[length_label(length)] = round(
                time.perf_counter() - started, 2)
            _write_jsonl(self.run_dir / path, [
                {"id": i, "prediction": p, "reference": r, "input_len": len(x)}
                for i, p, r, x in zip(ids, predictions, references, inputs[length], strict=True)])
            self.state.save()
        del handle
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        entry["unsupported"] = unsupported()
        self.state.save()
        return entry


def _prediction_path(system: str, length: int | None) -> str:
    return f"predictions/{system}-{length_label(length)}.jsonl"


# --- the run ------------------------------------------------------------------------------------

def budget_draws(budget: Budget) -> int:
    """How many training sequences the budget draws: no point in loading more documents."""
    return (budget.steps + budget.gsg_steps) * budget.sequences_per_step


def resolve_tokenizer(cfg: RougeConfig, data: SummarizationData, cache_dir: Path) -> SharedTokenizer:
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    if cfg.checkpoints:
        try:
            found = [load_tokenizer(path) for path in cfg.checkpoints]
        except SuiteError as exc:
            raise SuiteError(f"{exc}; pass --tokenizer") from None
        if len({t.fingerprint for t in found}) > 1:
            raise SuiteError("the checkpoints use different tokenizers; pass one with --tokenizer")
        return found[0]
    examples = data.train.examples[:cfg.tokenizer_docs]
    texts = [e.document for e in examples] + [e.summary for e in examples]
    return train_tokenizer(texts, cfg.vocab_size, cache_dir)


def run(cfg: RougeConfig) -> Path:
    """Run the suite; returns the run directory."""
    started_at, started = _now(), time.perf_counter()
    device = resolve_device(cfg.device)
    if cfg.lead_k < 1:
        raise SuiteError(f"lead-k must be a positive integer, got {cfg.lead_k}")
    if cfg.rouge_tokenizer not in scoring.ROUGE_TOKENIZERS:
        raise SuiteError(f"unknown ROUGE tokenizer {cfg.rouge_tokenizer!r}; known: "
                         f"{', '.join(scoring.ROUGE_TOKENIZERS)}")
    for name in ("train_docs", "eval_docs", "tokenizer_docs"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise SuiteError(f"{name.replace('_', '-')} must be a positive integer, got {value}")
    specs = model_specs(cfg)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    run_dir = Path(cfg.out) / (cfg.run_id or f"rouge-{device.type}")

    data = load_data(cfg.data, doc_column=cfg.doc_column, summary_column=cfg.summary_column,
                     id_column=cfg.id_column, train_split=cfg.train_split, eval_split=cfg.eval_split,
                     train_docs=cfg.train_docs or budget_draws(cfg.budget), eval_docs=cfg.eval_docs,
                     config_name=cfg.data_config,
                     cache_dir=cache_dir, seed=cfg.budget.seed)
    for split in (data.train, data.eval):
        if split.skipped:
            print(f"{split.name}: skipped {sum(split.skipped.values())} malformed rows of "
                  f"{split.scanned} ({', '.join(f'{k}: {v}' for k, v in split.skipped.items())})")
    check_references_have_rouge_tokens([e.summary for e in data.eval.examples], cfg.rouge_tokenizer)
    tokenizer = resolve_tokenizer(cfg, data, cache_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "predictions").mkdir(exist_ok=True)
    state = State(run_dir / "state.json", reset=cfg.force)
    dataset_label = f"{data.name}:{data.eval.name}"

    run_info = {
        "suite": "rouge", "run_id": run_dir.name, "args": cfg.args, "env": environment(device),
        "started_at": started_at, "finished_at": None, "dataset": data.describe(),
        "tokenizer": tokenizer.describe(), "budget": cfg.budget.describe(),
        "generation": cfg.generation.describe(),
        "eval_lens": [length_label(x) for x in cfg.eval_lens],
        "input_truncation": "first L-1 document tokens + EOS (the whole document when shorter); "
                            "extractive references use the text of the kept tokens",
        "sentence_splitter": SENTENCE_SPLITTER,
        "rouge": {"metrics": list(scoring.METRICS), "use_stemmer": True, "scale": "F1 in [0, 1]",
                  "tokenizer": cfg.rouge_tokenizer, "tokenizer_default": scoring.DEFAULT_ROUGE_TOKENIZER,
                  "rougeLsum_sentences": "regex splitter, one sentence per line",
                  "bootstrap": {"resamples": scoring.BOOTSTRAP_RESAMPLES, "seed": scoring.BOOTSTRAP_SEED,
                                "confidence": scoring.CONFIDENCE, "unit": "documents"}},
        "extractive": {"lead_k": cfg.lead_k, "oracle": "greedy, mean of ROUGE-1/2 F1, stop at no gain"}
        if cfg.extractive else None,
        "note": "models are trained from random initialisation (no pre-trained weights) unless "
                "loaded with --checkpoint",
    }
    _write_json(run_dir / "run.json", run_info)

    ids = [e.id for e in data.eval.examples]
    references = [e.summary for e in data.eval.examples]
    documents = [e.document for e in data.eval.examples]
    encoded = tokenizer.encode_batch(documents)
    truncated = {length: [truncate(enc, length, tokenizer.special.eos) for enc in encoded]
                 for length in cfg.eval_lens}
    inputs = {length: [ids_ for ids_, _ in rows] for length, rows in truncated.items()}
    print(f"data {dataset_label}: {len(data.train.examples)} training / {len(ids)} evaluation documents; "
          f"tokenizer {tokenizer.source} ({tokenizer.vocab_size} tokens); evaluation documents "
          f"{min(map(len, encoded))}-{max(map(len, encoded))} tokens", flush=True)

    systems: list[dict] = []
    runner = ModelRunner(cfg, run_dir, state, tokenizer, data, device)
    for spec in specs:
        entry = runner.run(spec, inputs, references, ids)
        systems.append({"system": spec.name, "kind": "model", **entry})

    timings = {"models_s": round(time.perf_counter() - started, 1)}
    if cfg.extractive:
        extract_started = time.perf_counter()
        for name, make in ((f"lead-{cfg.lead_k}", lambda text, ref: extractive.lead(text, cfg.lead_k)),
                           ("oracle", lambda text, ref: extractive.oracle(text, ref, cfg.rouge_tokenizer))):
            for length, rows in truncated.items():
                _write_jsonl(run_dir / _prediction_path(name, length), [
                    {"id": i, "prediction": make(visible_text(doc, enc, kept), ref), "reference": ref,
                     "input_len": len(x)}
                    for i, doc, enc, (x, kept), ref
                    in zip(ids, documents, encoded, rows, references, strict=True)])
            systems.append({"system": name, "kind": "extractive", "params": None, "train_steps": None})
        timings["extractive_s"] = round(time.perf_counter() - extract_started, 1)

    scores, rows = {}, []
    for system in systems:
        for length in cfg.eval_lens:
            path = run_dir / _prediction_path(system["system"], length)
            if length_label(length) in system.get("unsupported", {}) or not path.is_file():
                continue
            predictions = _read_jsonl(path)
            if [p["id"] for p in predictions] != ids:
                raise SuiteError(f"{path} does not hold the evaluation documents; rerun with --force")
            per_doc = [scoring.rouge(p["prediction"], p["reference"], cfg.rouge_tokenizer)
                       for p in predictions]
            scores[system["system"], length] = per_doc
            params = system.get("params")
            rows.append({"system": system["system"], "kind": system["kind"], "input_len": length,
                         "n_docs": len(per_doc), **scoring.summarize(per_doc),
                         "params_total": params["total"] if params else None,
                         "train_steps": system.get("train_steps"), "dataset": dataset_label,
                         "rouge_tokenizer": cfg.rouge_tokenizer})
    assert all(tuple(row) == ROUGE_FIELDS for row in rows)
    _write_jsonl(run_dir / "rouge.jsonl", rows)
    relative = relative_quality(systems, scores, cfg.eval_lens)
    _write_jsonl(run_dir / "relative.jsonl", relative)

    run_info.update(systems=systems, timings={**timings, "total_s": round(time.perf_counter() - started, 1)},
                    finished_at=_now(), outputs=["rouge.jsonl", "relative.jsonl", "predictions/",
                                                 "checkpoints/"])
    _write_json(run_dir / "run.json", run_info)
    print()
    print(rouge_table(rows, cfg.eval_lens))
    if relative:
        print()
        print(relative_table(relative))
    print(f"\nROUGE F1 x 100 (rouge-score, {cfg.rouge_tokenizer} tokenizer, Porter stemming; rougeLsum over "
          f"regex-split sentences); "
          f"95% bootstrap CIs in {run_dir / 'rouge.jsonl'}")
    if cfg.report:
        _build_report(run_dir)
    return run_dir


def check_references_have_rouge_tokens(references: list[str], rouge_tokenizer: str) -> None:
    """Stop (``SuiteError``) when most references have no ROUGE token: every score would be 0."""
    empty = scoring.untokenizable(references, rouge_tokenizer)
    if references and 2 * empty > len(references):
        hint = ("; rouge-score's tokenizer keeps [a-z0-9] only: rerun with --rouge-tokenizer unicode"
                if rouge_tokenizer != "unicode" else "")
        raise SuiteError(f"{empty} of {len(references)} reference summaries have no ROUGE tokens under the "
                         f"{rouge_tokenizer!r} tokenizer{hint}")


def relative_quality(systems: list[dict], scores: dict, lengths: list) -> list[dict]:
    """LOCOST ROUGE / baseline ROUGE (the paper's relative-quality measure) for every LOCOST system
    against every other model, per input length, with paired bootstrap CIs."""
    models = [s for s in systems if s["kind"] == "model"]
    locost = [s for s in models if (s.get("family") or s["system"]).startswith("locost")]
    rows = []
    for ours in locost:
        for baseline in models:
            if baseline is ours:
                continue
            for length in lengths:
                a, b = scores.get((ours["system"], length)), scores.get((baseline["system"], length))
                if a is None or b is None:
                    continue
                row = {"system": ours["system"], "baseline": baseline["system"], "input_len": length,
                       "n_docs": len(a)}
                for metric in scoring.METRICS:
                    ratio, lo, hi = scoring.ratio_ci([s[metric] for s in a], [s[metric] for s in b])
                    row.update({metric: ratio, f"{metric}_lo": lo, f"{metric}_hi": hi})
                rows.append(row)
    return rows


def _format_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rouge_table(rows: list[dict], lengths: list) -> str:
    """System x input length; each cell ROUGE-1/2/L F1 x 100."""
    systems = list(dict.fromkeys(row["system"] for row in rows))
    cell = {(r["system"], r["input_len"]): f"{100 * r['rouge1']:.1f}/{100 * r['rouge2']:.1f}/"
            f"{100 * r['rougeL']:.1f}" for r in rows}
    params = {r["system"]: r["params_total"] for r in rows}
    header = ["system", "params"] + [f"R1/R2/RL @ {length_label(x)}" for x in lengths]
    body = [[s, f"{params[s] / 1e6:.1f}M" if params[s] else "-"]
            + [cell.get((s, x), "n/a") for x in lengths] for s in systems]
    return _format_table(header, body)


def relative_table(rows: list[dict]) -> str:
    """Relative quality, % of the baseline's ROUGE with the 95% CI."""
    def pct(row, metric):
        if row[metric] is None:
            return "n/a"
        return f"{100 * row[metric]:.0f}% [{100 * row[metric + '_lo']:.0f}, {100 * row[metric + '_hi']:.0f}]"
    header = ["system / baseline", "input"] + [m.upper().replace("ROUGE", "R") for m in scoring.METRICS]
    body = [[f"{r['system']} / {r['baseline']}", length_label(r["input_len"])]
            + [pct(r, m) for m in scoring.METRICS] for r in rows]
    title = "Relative quality (system ROUGE / baseline ROUGE, paired bootstrap 95% CI)"
    return title + "\n" + _format_table(header, body)


def _build_report(run_dir: Path) -> None:
    try:
        from reports import build as build_report
    except ImportError:
        return
    try:
        build_report([run_dir])
    except Exception as exc:  # the report is a convenience; the run's records are already written
        print(f"warning: report builder failed: {type(exc).__name__}: {exc}", file=sys.stderr)
