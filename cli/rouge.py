"""ROUGE across input lengths on real data, with the same training budget for every model.

    python -m bench.rouge                       # CPU default: ACLSum, tiny models (about 7 min of CPU
                                                # time, measured 2026-11-30 on 2 cores)
    python -m bench.rouge --models locost,longt5-tglobal,led,longt5-local,pegasus-x
    python -m bench.rouge --checkpoint reports/out/rouge-cpu/checkpoints/locost-tiny --eval-lens 4k,full

CPU default: locost, longt5-tglobal and led at size tiny; 300 fine-tuning steps x 1 sequence of
1,024 input / 128 target tokens, AdamW 3e-3 with 30 warm-up steps and linear decay; 20 test papers
at 1k, 2k, 4k and full length, greedy, 96 new tokens, no repeated 3-grams; reference NLL of the first
127 abstract tokens + EOS at every length; learning curves every 50 steps on 8 validation papers; 1 CPU
thread.

GPU configuration (a stated budget: 2,000 steps x 8 sequences x 4,096 input tokens, bf16 autocast,
gradient checkpointing), for arXiv from the hub (a network is needed; unset HF_DATASETS_OFFLINE):

    python -m bench.rouge --data hub:ccdv/arxiv-summarization --doc-column article \\
        --summary-column abstract --eval-split test --size small --steps 2000 --batch-size 8 \\
        --train-len 4096 --target-len 256 --lr 5e-4 --warmup-steps 200 --schedule cosine \\
        --eval-lens 1k,2k,4k,8k,16k --eval-docs 500 --max-new-tokens 256 --eval-batch-size 8

--executor slurm (or submitit-local) runs each model system, its training or --checkpoint loading and its
generation, as one task of a Slurm job array (--slurm-* as for the sweeps; a task asks for --threads CPUs,
a whole node on CPU, and 70 minutes unless --slurm-time); the tasks write into the same run directory and
this process scores them, so that rouge.jsonl and the report are those of a local run.

Outputs go to reports/out/<run-id>/ (default run-id rouge-<device>; rerunning resumes): run.json,
rouge.jsonl (one row per system and input length, F1 in [0, 1] with bootstrap 95% CIs, and for models
the reference summary's NLL in nats/token under teacher forcing with its CI and its paired gain over
the shortest length), relative.jsonl (LOCOST ROUGE / baseline ROUGE, paired bootstrap CIs),
predictions/<system>-<len>.jsonl, nll/<system>-<len>.jsonl (per document), curves/<system>.jsonl
(validation NLL every --curve-every steps), checkpoints/.
Models start from random weights: the point of the CPU default is the pipeline and the extractive
references, not paper-level ROUGE. See suites/rouge/data.py for the other datasets' recipes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import cluster
from cli.args import (
    Parser,
    UsageError,
    build_report,
    check_output,
    fail,
    finite,
    guard,
    lengths_or_full,
    non_negative_int,
    parse_length,
    path_name,
    positive,
)
from records import RunDirectoryLocked
from suites.rouge.scoring import DEFAULT_ROUGE_TOKENIZER, ROUGE_TOKENIZERS


def _data_options(d) -> None:
    d.add_argument("--data", default="aclsum",
                   help="'aclsum' (default, offline), a local file/directory, or hub:ID")
    d.add_argument("--data-config", help="dataset configuration name (hub datasets)")
    d.add_argument("--doc-column", default="document")
    d.add_argument("--summary-column", default="summary")
    d.add_argument("--id-column", help="default: 'id' when present, else <split>-<row>")
    d.add_argument("--train-split", default="train")
    d.add_argument("--eval-split", default="test")
    d.add_argument("--train-docs", type=positive(int),
                   help="at most this many training documents (default: as many as the budget draws, "
                        "(steps + gsg-steps) x batch-size x grad-accum)")
    d.add_argument("--eval-docs", type=positive(int), default=20,
                   help="evaluate on the first N valid documents of the evaluation split (default 20)")
    d.add_argument("--val-split", default="validation",
                   help="held-out split of the learning curves (default validation; none if absent)")
    d.add_argument("--cache-dir", type=Path,
                   help="converted data and tokenizers "
                        "(default $LOCOST_HARNESS_CACHE or ~/.cache/locost-harness)")

def _tokenizer_options(t) -> None:
    t.add_argument("--tokenizer", help="a tokenizers JSON file or Hugging Face tokenizer directory "
                                       "(default: train a Unigram tokenizer on the training split)")
    t.add_argument("--vocab-size", type=positive(int), default=8000)
    t.add_argument("--tokenizer-docs", type=positive(int), default=1000,
                   help="train the tokenizer on the first N training documents and summaries (default 1000)")

def _model_options(m) -> None:
    m.add_argument("--models", help="comma-separated families (default locost,longt5-tglobal,led; "
                                    "also longt5-local, pegasus-x)")
    m.add_argument("--size", default="tiny", help="preset size: tiny, small, base (default tiny)")
    m.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                   help="evaluate this saved model instead of training (repeatable)")
    m.add_argument("--steps", type=positive(int), default=300, help="fine-tuning optimizer steps")
    m.add_argument("--batch-size", type=positive(int), default=1)
    m.add_argument("--grad-accum", type=positive(int), default=1)
    m.add_argument("--train-len", default="1k", help="training input tokens (default 1k = 1024)")
    m.add_argument("--target-len", type=positive(int), default=128, help="training target tokens")
    m.add_argument("--lr", type=positive(float), default=3e-3,
                   help="peak learning rate (default 3e-3, for tiny)")
    m.add_argument("--warmup-steps", type=non_negative_int, default=30)
    m.add_argument("--schedule", choices=["linear", "cosine"], default="linear")
    m.add_argument("--weight-decay", type=finite(0.0), default=0.01)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--gsg-steps", type=non_negative_int, default=0,
                   help="gap-sentence pre-training steps before fine-tuning (default 0)")
    m.add_argument("--gsg-ratio", type=finite(0.0, 1.0), default=0.3, help="fraction of sentences masked")

def _evaluation_options(e) -> None:
    e.add_argument("--eval-lens", default="1k,2k,4k,full",
                   help="input lengths: integers, Nk (N x 1024), Nm or 'full' (default 1k,2k,4k,full)")
    e.add_argument("--max-new-tokens", type=positive(int), default=96)
    e.add_argument("--beams", type=positive(int), default=1, help="1 = greedy (default)")
    e.add_argument("--no-repeat-ngram", type=non_negative_int, default=3,
                   help="block repeated n-grams in generation, as LED/BART summarizers do "
                        "(default 3; 0 = off)")
    e.add_argument("--eval-batch-size", type=positive(int), default=1)
    e.add_argument("--curve-every", type=non_negative_int, default=50,
                   help="learning curves: validation NLL every N optimizer steps, in fine-tuning and "
                        "gap-sentence pre-training (default 50; 0 = off)")
    e.add_argument("--curve-docs", type=positive(int), default=8,
                   help="learning curves: the first N valid documents of --val-split (default 8)")
    e.add_argument("--lead-k", type=positive(int), default=3)
    e.add_argument("--no-extractive", action="store_true", help="skip Lead-k and the oracle")
    e.add_argument("--rouge-tokenizer", choices=ROUGE_TOKENIZERS, default=DEFAULT_ROUGE_TOKENIZER,
                   help="rouge-score (default: its own [a-z0-9] tokenizer, as published English ROUGE) or "
                        "unicode (words of any script, Han/kana per character)")

def _run_options(r) -> None:
    r.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    r.add_argument("--threads", type=positive(int),
                   help="torch CPU threads (default: $OMP_NUM_THREADS, else 1: tiny models gain nothing "
                        "from more, and a shared box punishes them hard)")
    r.add_argument("--out", type=Path, default=Path("reports/out"))
    r.add_argument("--run-id", type=path_name, help="default rouge-<device>")
    r.add_argument("--force", action="store_true", help="retrain and regenerate everything")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--no-report", action="store_true", help="do not build report.html at the end")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bench.rouge", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_options(p.add_argument_group("data"))
    _tokenizer_options(p.add_argument_group("tokenizer"))
    _model_options(p.add_argument_group("models and budget (the same for every model)"))
    _evaluation_options(p.add_argument_group("evaluation"))
    _run_options(p.add_argument_group("run"))
    cluster.add_arguments(p)
    return p


def config_from_args(args: argparse.Namespace):
    from suites.rouge.config import RougeConfig
    from suites.rouge.generation import GenerationSettings
    from suites.rouge.training import Budget

    budget = Budget(steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                    train_len=_option("--train-len", args.train_len, parse_length),
                    target_len=args.target_len, lr=args.lr,
                    warmup_steps=args.warmup_steps, schedule=args.schedule,
                    weight_decay=args.weight_decay, seed=args.seed, gsg_steps=args.gsg_steps,
                    gsg_ratio=args.gsg_ratio)
    generation = GenerationSettings(max_new_tokens=args.max_new_tokens, beams=args.beams,
                                    no_repeat_ngram=args.no_repeat_ngram,
                                    batch_size=args.eval_batch_size)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    return RougeConfig(
        data=args.data, data_config=args.data_config, doc_column=args.doc_column,
        summary_column=args.summary_column, id_column=args.id_column, train_split=args.train_split,
        eval_split=args.eval_split, train_docs=args.train_docs, eval_docs=args.eval_docs,
        val_split=args.val_split, curve_every=args.curve_every, curve_docs=args.curve_docs,
        tokenizer=args.tokenizer, vocab_size=args.vocab_size, tokenizer_docs=args.tokenizer_docs,
        models=models, size=args.size, checkpoints=args.checkpoint, budget=budget,
        eval_lens=list(_option("--eval-lens", args.eval_lens, lengths_or_full)),
        generation=generation, lead_k=args.lead_k, rouge_tokenizer=args.rouge_tokenizer,
        extractive=not args.no_extractive, device=args.device, out=args.out, run_id=args.run_id,
        force=args.force, cache_dir=args.cache_dir, progress=not args.no_progress,
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})


def _option(name: str, text: str, parse):
    """A length option parsed after argparse, so that run.json records it as typed."""
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"argument {name}: {exc}") from None


#: the time a system's task may run under --executor slurm / submitit-local, s (Slurm --time: this + 10
#: minutes); --slurm-time sets it
TASK_S = 3600


def _device(name: str) -> str:
    """``--device`` resolved (``bench.env.resolve_device``: auto -> cuda or cpu), or a ``UsageError``."""
    from bench.env import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise UsageError(f"argument --device: {exc}") from None


def _quiet_transformers() -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # e.g. LED's "input ids are padded" on every length
    transformers_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    from bench.env import default_threads
    from models import ModelError
    from suites.rouge.data import check_source
    from suites.rouge.errors import SuiteError

    try:
        args = parser().parse_args(argv)
        check_output(args.out, args.out / args.run_id if args.run_id else None)
        check_source(args.data)  # before the slow imports below
        device = _device(args.device)
        cluster.check(args, device)
        if args.executor == "local" and args.jobs is not None:
            raise UsageError("--jobs applies to --executor slurm or submitit-local: locally the ROUGE suite "
                             "runs its systems one after another in this process")
    except (UsageError, SuiteError) as exc:
        return fail(exc)
    import torch

    from suites.rouge.pipeline import failed_systems, run

    _quiet_transformers()
    torch.set_num_threads(args.threads or default_threads(fallback=1))

    def work() -> int:
        run_dir = args.out / (args.run_id or f"rouge-{device.split(':')[0]}")
        executor = None if args.executor == "local" else cluster.executor(args, device, run_dir, TASK_S)
        run_dir = run(config_from_args(args), executor)
        if not args.no_report:
            build_report(run_dir)
        failed = failed_systems(run_dir)
        for system in failed:
            print(f"error: {system['failed']}", file=sys.stderr)
        return 1 if failed else 0

    return guard(work, lambda: kept(args), errors=(SuiteError, ModelError, RunDirectoryLocked))


def kept(args) -> str:
    """What an interrupted or failed run leaves in its run directory, counted on disk, in one phrase."""
    from bench.env import resolve_device

    try:
        device = resolve_device(args.device).split(":")[0]
    except ValueError:  # the run never started
        device = args.device
    run_dir = args.out / (args.run_id or f"rouge-{device}")
    checkpoints = len(list(run_dir.glob("checkpoints/*")))
    predictions = len(list(run_dir.glob("predictions/*.jsonl")))
    if not checkpoints + predictions:
        return f"no trained model or prediction kept in {run_dir}"
    return f"{checkpoints} trained model(s) and {predictions} prediction file(s) kept in {run_dir}"


if __name__ == "__main__":
    sys.exit(main())
