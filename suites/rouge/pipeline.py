"""The ROUGE suite end to end, as a list of named stages (``run``).

data -> shared tokenizer -> every model trained with one budget (or loaded from a checkpoint) ->
summaries generated at each input length (``suites.rouge.systems``) -> extractive references on the
same inputs -> ROUGE with bootstrap CIs and the reference summaries' NLL per token
(``suites.rouge.evaluation``, ``suites.rouge.likelihood``) -> ``rouge.jsonl``, ``relative.jsonl``,
``run.json``, ``predictions/``, ``nll/`` and ``curves/`` (learning curves) in the run directory, and
tables on stdout (``suites.rouge.tables``). The configuration is ``suites.rouge.config.RougeConfig``.

Rerunning the same command resumes: a trained checkpoint, and predictions made with the same
model, data, lengths and generation settings, are reused (``force=True`` redoes everything).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench.env import environment as bench_environment
from bench.env import package_version, resolve_device
from records import (
    CURVES,
    RELATIVE,
    ROUGE,
    ROUGE_DOCS,
    RunInfo,
    bootstrap,
    locked_run_dir,
    read_run_info,
    write_jsonl,
    write_run_info,
)
from suites.rouge import scoring
from suites.rouge.config import ModelSpec, RougeConfig, budget_draws, check, length_label, model_specs
from suites.rouge.data import SummarizationData, default_cache_dir, load_data
from suites.rouge.errors import SuiteError
from suites.rouge.evaluation import document_rows, relative_quality, score_systems
from suites.rouge.generation import truncate
from suites.rouge.sentences import DESCRIPTION as SENTENCE_SPLITTER
from suites.rouge.systems import ModelRunner, State, extractive_systems
from suites.rouge.tables import nll_table, relative_table, rouge_table
from suites.rouge.tasks import run_systems
from suites.rouge.tokenizer import SharedTokenizer, load_tokenizer, train_tokenizer


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Setup:
    """What the configuration resolves to before any data is read."""
    device: torch.device
    specs: list[ModelSpec]
    cache_dir: Path
    run_dir: Path


@dataclass
class EvalSet:
    """The evaluation documents, encoded once and cut to every input length."""
    ids: list[str]
    references: list[str]
    documents: list[str]
    encoded: list  #: tokenizer encodings of the documents
    truncated: dict  #: length -> [(ids fed to the model, document tokens kept)]
    labels: list  #: per document, the reference ids whose NLL is scored (likelihood.py)

    @property
    def inputs(self) -> dict:
        """length -> the id lists fed to a model."""
        return {length: [ids for ids, _ in rows] for length, rows in self.truncated.items()}


def environment(device: torch.device) -> dict:
    """bench's environment record, plus the device kind and the versions this suite depends on."""
    env = bench_environment(str(device), threads=torch.get_num_threads())
    env["device"] = device.type
    env.update({name: package_version(dist) for name, dist in
                (("datasets", "datasets"), ("tokenizers", "tokenizers"), ("rouge_score", "rouge-score"))})
    return env


def setup(cfg: RougeConfig) -> Setup:
    """Check the configuration and resolve the device, systems and directories."""
    try:
        device = torch.device(resolve_device(cfg.device))
    except ValueError as exc:
        raise SuiteError(str(exc)) from None
    check(cfg)
    specs = model_specs(cfg)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    return Setup(device, specs, cache_dir, Path(cfg.out) / (cfg.run_id or f"rouge-{device.type}"))


def load(cfg: RougeConfig, cache_dir: Path) -> SummarizationData:
    data = load_data(cfg.data, doc_column=cfg.doc_column, summary_column=cfg.summary_column,
                     id_column=cfg.id_column, train_split=cfg.train_split, eval_split=cfg.eval_split,
                     train_docs=cfg.train_docs or budget_draws(cfg.budget), eval_docs=cfg.eval_docs,
                     config_name=cfg.data_config, cache_dir=cache_dir, seed=cfg.budget.seed,
                     val_split=cfg.val_split, val_docs=cfg.curve_docs if cfg.curve_every else None)
    for split in (data.train, data.eval):
        if split.skipped:
            print(f"{split.name}: skipped {sum(split.skipped.values())} malformed rows of "
                  f"{split.scanned} ({', '.join(f'{k}: {v}' for k, v in split.skipped.items())})")
    check_rouge_keeps_references([e.summary for e in data.eval.examples], cfg.rouge_tokenizer)
    return data


def check_rouge_keeps_references(references: list[str], rouge_tokenizer: str) -> None:
    """Stop (``SuiteError``) when the ROUGE tokenizer keeps less than ``scoring.MIN_KEPT_SHARE`` of any
    reference's word characters (``scoring.kept_share``, any script): its ROUGE would be computed on the
    few words kept (a number, an acronym, a Latin name in a Russian summary), or be 0."""
    shares = (scoring.kept_share(text, rouge_tokenizer) for text in references)
    short = [share for share in shares if share is not None and share < scoring.MIN_KEPT_SHARE]
    if short:
        hint = ("; rouge-score's tokenizer keeps [a-z0-9] only: rerun with --rouge-tokenizer unicode"
                if rouge_tokenizer != "unicode" else "")
        raise SuiteError(f"{len(short)} of {len(references)} reference summaries keep less than "
                         f"{scoring.MIN_KEPT_SHARE:.0%} of their letters and digits as ROUGE tokens under "
                         f"the {rouge_tokenizer!r} tokenizer (as little as {min(short):.0%}){hint}")


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


def run_info(cfg: RougeConfig, run_dir: Path, device: torch.device, data: SummarizationData,
             tokenizer: SharedTokenizer, started_at: str) -> RunInfo:
    """What ``run.json`` says of the run before it starts (systems and timings come at the end)."""
    return RunInfo("rouge", run_dir.name, command=cfg.args, env=environment(device), started_at=started_at,
                   details=_details(cfg, data, tokenizer))


def _details(cfg: RougeConfig, data: SummarizationData, tokenizer: SharedTokenizer) -> dict:
    """The ROUGE suite's own keys of run.json (``RunInfo.details``)."""
    return {
        "dataset": data.describe(),
        "tokenizer": tokenizer.describe(), "budget": cfg.budget.describe(),
        "generation": cfg.generation.describe(),
        "eval_lens": [length_label(x) for x in cfg.eval_lens],
        "input_truncation": "first L-1 document tokens + EOS (the whole document when shorter); "
                            "extractive references use the text of the kept tokens",
        "sentence_splitter": SENTENCE_SPLITTER,
        "rouge": {"metrics": list(scoring.METRICS), "use_stemmer": True, "scale": "F1 in [0, 1]",
                  "tokenizer": cfg.rouge_tokenizer, "tokenizer_default": scoring.DEFAULT_ROUGE_TOKENIZER,
                  "rougeLsum_sentences": "regex splitter, one sentence per line",
                  "bootstrap": {"resamples": bootstrap.BOOTSTRAP_RESAMPLES, "seed": bootstrap.BOOTSTRAP_SEED,
                                "confidence": bootstrap.CONFIDENCE, "unit": "documents"}},
        "likelihood": {"unit": "nats per reference token (natural log), shared tokenizer",
                       "labels": f"the reference's first {cfg.budget.target_len - 1} tokens + EOS "
                                 "(the budget's target_len)",
                       "method": "teacher forcing, one document per forward pass, log-softmax in float32",
                       "aggregate": "mean over documents of each document's mean; bootstrap over documents",
                       "gain": "paired per-document NLL(shortest length) - NLL(length)"},
        "learning_curves": {"every_steps": cfg.curve_every, "split": cfg.val_split,
                            "documents": len(data.validation.examples) if data.validation else 0,
                            "what": "mean NLL per label token of held-out examples built as the phase's "
                                    "training examples (finetune: document -> summary; gsg: gap sentences)"}
        if cfg.curve_every and data.validation else None,
        "extractive": {"lead_k": cfg.lead_k, "oracle": "greedy, mean of ROUGE-1/2 F1, stop at no gain"}
        if cfg.extractive else None,
        "note": "models are trained from random initialisation (no pre-trained weights) unless "
                "loaded with --checkpoint",
    }


def encode_eval_set(cfg: RougeConfig, data: SummarizationData, tokenizer: SharedTokenizer) -> EvalSet:
    documents = [e.document for e in data.eval.examples]
    encoded = tokenizer.encode_batch(documents)
    eos, target_len = tokenizer.special.eos, cfg.budget.target_len
    summaries = tokenizer.encode_batch([e.summary for e in data.eval.examples])
    labels = [s.ids[:target_len - 1] + [eos] for s in summaries]
    truncated = {length: [truncate(enc, length, tokenizer.special.eos) for enc in encoded]
                 for length in cfg.eval_lens}
    eval_set = EvalSet([e.id for e in data.eval.examples], [e.summary for e in data.eval.examples],
                       documents, encoded, truncated, labels)
    print(f"data {data.name}:{data.eval.name}: {len(data.train.examples)} training / {len(eval_set.ids)} "
          f"evaluation documents; tokenizer {tokenizer.source} ({tokenizer.vocab_size} tokens); evaluation "
          f"documents {min(map(len, encoded))}-{max(map(len, encoded))} tokens", flush=True)
    return eval_set


def predict(cfg: RougeConfig, where: Setup, runner: ModelRunner, eval_set: EvalSet,
            started: float, executor=None) -> tuple[list[dict], dict, dict | None]:
    """Every system's predictions at every length: (system entries, timings in seconds, the tasks by
    system or None). Models run here, or each as one task of ``executor`` (``suites.rouge.tasks``)."""
    inputs = (eval_set.inputs, eval_set.references, eval_set.ids, eval_set.labels)
    tasks = None
    if executor is None:
        systems = [{"system": spec.name, "kind": "model", **runner.run(spec, *inputs)}
                   for spec in where.specs]
    else:
        systems, tasks = run_systems(executor, runner, where.specs, inputs)
    timings = {"models_s": round(time.perf_counter() - started, 1)}
    if cfg.extractive:
        extract_started = time.perf_counter()
        systems += extractive_systems(cfg, where.run_dir, eval_set)
        timings["extractive_s"] = round(time.perf_counter() - extract_started, 1)
    return systems, timings, tasks


def print_tables(rows: list[dict], relative: list[dict], cfg: RougeConfig, run_dir: Path) -> None:
    print()
    print(rouge_table(rows, cfg.eval_lens))
    if any(r["nll"] is not None for r in rows):
        print()
        print(nll_table(rows, cfg.eval_lens))
    if relative:
        print()
        print(relative_table(relative))
    print(f"\nROUGE F1 x 100 (rouge-score, {cfg.rouge_tokenizer} tokenizer, Porter stemming; rougeLsum over "
          f"regex-split sentences); 95% bootstrap CIs in {run_dir / ROUGE}")


def run(cfg: RougeConfig, executor=None) -> Path:
    """Run the suite; returns the run directory. Holds the run directory's lock throughout
    (``records.locked_run_dir``: raises ``RunDirectoryLocked`` when another runner holds it).
    ``executor`` (a ``bench.executors.Submitit``): each model system as one task of it; None: here."""
    where = setup(cfg)
    with locked_run_dir(where.run_dir):
        return _run(cfg, where, executor)


def failed_systems(run_dir: Path) -> list[dict]:
    """The systems of the run in ``run_dir`` whose task ended without a result (run.json's entries
    with ``failed``, the one-line reason)."""
    info = read_run_info(run_dir)
    systems = (info.details.get("systems") if info else None) or []
    return [system for system in systems if system.get("failed")]


def _run(cfg: RougeConfig, where: Setup, executor=None) -> Path:
    started_at, started = _now(), time.perf_counter()
    data = load(cfg, where.cache_dir)
    tokenizer = resolve_tokenizer(cfg, data, where.cache_dir)
    run_dir = where.run_dir
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    info = run_info(cfg, run_dir, where.device, data, tokenizer, started_at)
    write_run_info(run_dir, info)
    eval_set = encode_eval_set(cfg, data, tokenizer)
    runner = ModelRunner(cfg, run_dir, State(run_dir / "state.json", reset=cfg.force), tokenizer, data,
                         where.device)
    systems, timings, tasks = predict(cfg, where, runner, eval_set, started, executor)
    scored = [system for system in systems if not system.get("failed")]
    dataset = f"{data.name}:{data.eval.name}"
    rows, scores = score_systems(scored, cfg.eval_lens, run_dir, eval_set.ids, dataset, cfg.rouge_tokenizer)
    rows = [row.to_json() for row in rows]
    write_jsonl(run_dir / ROUGE, rows)
    write_jsonl(run_dir / ROUGE_DOCS, document_rows(scores, eval_set.ids, dataset))
    relative = relative_quality(scored, scores, cfg.eval_lens)
    write_jsonl(run_dir / RELATIVE, relative)
    if tasks is not None:
        info.executor, info.tasks = executor.describe(), tasks
    info.finished_at = _now()
    timings["total_s"] = round(time.perf_counter() - started, 1)
    info.details.update(systems=systems, timings=timings, outputs=[
        ROUGE, ROUGE_DOCS, RELATIVE, "predictions/", "nll/", f"{CURVES}/", "checkpoints/"])
    write_run_info(run_dir, info)
    print_tables(rows, relative, cfg, run_dir)
    return run_dir
