"""The ROUGE suite's configuration: what data, which systems, what budget, which lengths.

``RougeConfig`` is what ``python -m bench.rouge`` (``cli.rouge``) builds from its options and
``suites.rouge.pipeline.run`` consumes; ``check`` refuses what cannot run, with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from suites.rouge.errors import SuiteError
from suites.rouge.generation import GenerationSettings
from suites.rouge.scoring import DEFAULT_ROUGE_TOKENIZER, ROUGE_TOKENIZERS
from suites.rouge.training import Budget

DEFAULT_MODELS = ("locost", "longt5-tglobal", "led")


@dataclass
class RougeConfig:
    """One ROUGE run. Lengths are in tokens of the shared tokenizer; counts are documents."""
    data: str = "aclsum"  #: 'aclsum' (offline), a local file/directory, or hub:<dataset id>
    data_config: str | None = None  #: dataset configuration name (hub datasets)
    doc_column: str = "document"  #: column of the input document
    summary_column: str = "summary"  #: column of the reference summary
    id_column: str | None = None  #: None: 'id' when present, else <split>-<row>
    train_split: str = "train"
    eval_split: str = "test"
    train_docs: int | None = None  #: None: as many as the budget draws (``budget_draws``)
    tokenizer_docs: int = 1000  #: the tokenizer is trained on the first N training documents + summaries
    eval_docs: int | None = 20  #: the first N valid documents of the evaluation split
    val_split: str = "validation"  #: held-out documents of the learning curves (none if the split is absent)
    curve_docs: int = 8  #: the first N valid documents of ``val_split`` the learning curves score
    curve_every: int = 50  #: score the learning curves every N optimizer steps; 0: no learning curves
    tokenizer: str | None = None  #: a tokenizer file or directory; None: train a Unigram tokenizer
    vocab_size: int = 8000  #: pieces of a trained tokenizer
    models: list[str] | None = None  #: families (models.FAMILIES); None: DEFAULT_MODELS unless checkpoints
    size: str = "tiny"  #: preset size of every trained model
    checkpoints: list[str] = field(default_factory=list)  #: saved models evaluated without training
    budget: Budget = field(default_factory=Budget)  #: the one training budget of every model
    #: input lengths in tokens (the first L-1 document tokens + EOS); None: the whole document
    eval_lens: list[int | None] = field(default_factory=lambda: [1024, 2048, 4096, None])
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    lead_k: int = 3  #: sentences of the Lead-k reference
    extractive: bool = True  #: also score Lead-k and the greedy oracle
    #: words ROUGE counts: rouge-score ([a-z0-9], published English ROUGE) or unicode (any script)
    rouge_tokenizer: str = DEFAULT_ROUGE_TOKENIZER
    device: str = "auto"  #: auto, cpu or cuda[:N]
    out: Path = Path("reports/out")  #: parent of the run directory
    run_id: str | None = None  #: run directory name; None: rouge-<device type>
    force: bool = False  #: retrain and regenerate everything
    cache_dir: Path | None = None  #: converted data and tokenizers; None: default_cache_dir()
    progress: bool = True  #: progress bars on stderr
    args: dict = field(default_factory=dict)  #: the command line, recorded in run.json


@dataclass(frozen=True)
class ModelSpec:
    """A system to evaluate: a family at the config's size, or a checkpoint directory."""
    name: str  #: the system's name in every output: <family>-<size>, or the checkpoint directory's
    family: str | None = None
    size: str | None = None
    checkpoint: Path | None = None


def length_label(length: int | None) -> str:
    return "full" if length is None else str(length)


def budget_draws(budget: Budget) -> int:
    """How many training sequences the budget draws: no point in loading more documents."""
    return (budget.steps + budget.gsg_steps) * budget.sequences_per_step


def check(cfg: RougeConfig) -> None:
    """Raise ``SuiteError`` for counts and lengths that cannot run."""
    if cfg.lead_k < 1:
        raise SuiteError(f"lead-k must be a positive integer, got {cfg.lead_k}")
    if cfg.rouge_tokenizer not in ROUGE_TOKENIZERS:
        raise SuiteError(f"unknown ROUGE tokenizer {cfg.rouge_tokenizer!r}; "
                         f"known: {', '.join(ROUGE_TOKENIZERS)}")
    if cfg.curve_every < 0:
        raise SuiteError(f"curve-every must be >= 0, got {cfg.curve_every}")
    for name in ("train_docs", "eval_docs", "tokenizer_docs", "curve_docs"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise SuiteError(f"{name.replace('_', '-')} must be a positive integer, got {value}")
    for length in cfg.eval_lens:
        if length is not None and length < 2:
            raise SuiteError(f"bad length {length}: an input needs at least 2 tokens (text + EOS)")


def model_specs(cfg: RougeConfig) -> list[ModelSpec]:
    """The systems of the run, in order: the trained families, then the checkpoints."""
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
        if not path.resolve().name:  # the system's name becomes a file name under the run directory
            raise SuiteError(f"checkpoint {str(path)!r} has no directory name to name its system by")
        specs.append(ModelSpec(path.resolve().name, checkpoint=path))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SuiteError(f"two systems share a name: {', '.join(names)}")
    if not specs and not cfg.extractive:
        raise SuiteError("nothing to evaluate: no models, no checkpoints, extractive references off")
    return specs
