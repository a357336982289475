"""Fine-tuning with one budget for every model: same examples in the same order, same steps, tokens
per step, optimizer, schedule and seed.

A plain PyTorch loop: AdamW, linear warm-up then linear or cosine decay to 0, gradient clipping;
bf16 autocast and gradient checkpointing on CUDA, fp32 on CPU. Biases, norms and every parameter
marked ``_no_weight_decay`` (LOCOST's SSM parameters) get no weight decay.

Learning curve (``Validation``): before the first step, every ``every`` optimizer steps and after the
last, the mean NLL per label token (``suites.rouge.likelihood``) of fixed held-out examples, in eval
mode without gradients; it draws no random numbers, so the weights trained do not depend on it.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch

from suites.rouge.errors import SuiteError
from suites.rouge.examples import TrainingExample, collate
from suites.rouge.likelihood import examples_nll, mean_nll

SCHEDULES = ("linear", "cosine")
__all__ = ["Budget", "SCHEDULES", "TrainLog", "TrainingExample", "Validation", "collate", "lr_factor",
           "parameter_groups", "summarization_example", "train"]


@dataclass(frozen=True)
class Budget:
    steps: int = 300
    batch_size: int = 1
    grad_accum: int = 1
    train_len: int = 1024
    target_len: int = 128
    lr: float = 3e-3
    warmup_steps: int = 30
    schedule: str = "linear"
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    gsg_steps: int = 0
    gsg_ratio: float = 0.3

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "train_len", "target_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SuiteError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.warmup_steps < 0 or self.gsg_steps < 0:
            raise SuiteError("warmup-steps and gsg-steps must be >= 0")
        if self.schedule not in SCHEDULES:
            raise SuiteError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if not 0 < self.gsg_ratio < 1:
            raise SuiteError(f"gsg-ratio must lie in (0, 1), got {self.gsg_ratio}")
        if not self.lr > 0:
            raise SuiteError(f"lr must be positive, got {self.lr}")

    @property
    def sequences_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    def describe(self) -> dict:
        return {**asdict(self), "optimizer": "AdamW(betas=(0.9, 0.999), eps=1e-8)",
                "sequences_per_step": self.sequences_per_step,
                "max_input_tokens_per_step": self.sequences_per_step * self.train_len}


@dataclass(frozen=True)
class Validation:
    """The learning curve's held-out examples and how often (optimizer steps) they are scored."""
    examples: list[TrainingExample]
    every: int

    def due(self, step: int, steps: int) -> bool:
        """Whether to score after ``step`` optimizer steps (0: before training) of ``steps``."""
        return step == 0 or step == steps or step % self.every == 0


@dataclass
class TrainLog:
    phase: str
    steps: int
    examples: int  # distinct training examples the steps cycle through
    losses: list[float] = field(default_factory=list)
    input_tokens: int = 0  # non-padding input tokens seen: equal across models by construction
    label_tokens: int = 0
    seconds: float = 0.0  # training and validation
    validation_s: float = 0.0
    #: learning curve: {"step", "val_nll" (nats/token), "val_docs", "train_loss" (mean since the last point)}
    curve: list[dict] = field(default_factory=list)

    def describe(self) -> dict:
        tenth = max(1, len(self.losses) // 10)
        return {"phase": self.phase, "steps": self.steps, "examples": self.examples,
                "input_tokens": self.input_tokens,
                "label_tokens": self.label_tokens, "seconds": round(self.seconds, 2),
                "validation_s": round(self.validation_s, 2),
                "loss_first": _mean(self.losses[:tenth]), "loss_last": _mean(self.losses[-tenth:]),
                "losses": [round(x, 4) for x in self.losses]}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarization_example(document_ids: list[int], summary_ids: list[int], eos: int,
                          train_len: int, target_len: int) -> TrainingExample:
    """Document truncated to ``train_len`` tokens and summary to ``target_len``, EOS included."""
    return TrainingExample(document_ids[:train_len - 1] + [eos], summary_ids[:target_len - 1] + [eos])


def example_order(n_examples: int, n_draws: int, seed: int) -> list[int]:
    """Example indices for ``n_draws`` sequences: seeded permutations, epoch after epoch."""
    rng, order = random.Random(seed), []
    while len(order) < n_draws:
        epoch = list(range(n_examples))
        rng.shuffle(epoch)
        order.extend(epoch)
    return order[:n_draws]


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or getattr(param, "_no_weight_decay", False)
        (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1 - progress)


def _validate(handle, validation: Validation, pad_id: int, log: TrainLog, step: int) -> None:
    """Append the learning curve's point after ``step`` optimizer steps to ``log.curve``."""
    started = time.perf_counter()
    documents = examples_nll(handle, validation.examples, pad_id)
    since = log.losses[log.curve[-1]["step"]:] if log.curve else []
    log.curve.append({"phase": log.phase, "step": step, "val_nll": round(mean_nll(documents), 5),
                      "val_docs": len(documents), "train_loss": _mean(since)})
    log.validation_s += time.perf_counter() - started


def train(handle, examples: list[TrainingExample], budget: Budget, steps: int, phase: str,
          pad_id: int, name: str, progress: bool = True, validation: Validation | None = None) -> TrainLog:
    """Train ``handle.model`` in place for ``steps`` optimizer steps over ``examples``; with
    ``validation``, record its learning curve in the returned log."""
    from tqdm.auto import tqdm

    if not examples:
        raise SuiteError(f"no training examples for the {phase} phase")
    model, device = handle.model, handle.device
    on_cuda = device.type == "cuda"
    if on_cuda:
        try:
            handle.gradient_checkpointing(True)
        except ValueError:  # a model class without checkpointing support: train without it
            pass
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()
    torch.manual_seed(budget.seed)  # dropout masks: the same stream for every model
    optimizer = torch.optim.AdamW(parameter_groups(model, budget.weight_decay), lr=budget.lr,
                                  betas=(0.9, 0.999), eps=1e-8)
    warmup = min(budget.warmup_steps, steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, steps, budget.schedule))
    order = example_order(len(examples), steps * budget.sequences_per_step, budget.seed)
    log = TrainLog(phase=phase, steps=steps, examples=len(examples))
    started = time.perf_counter()
    if validation is not None:
        _validate(handle, validation, pad_id, log, 0)
    model.train()
    bar = tqdm(range(steps), desc=f"{phase} {name}", unit="step", disable=not progress,
               leave=False)
    for step in bar:
        step_loss = 0.0
        for micro in range(budget.grad_accum):
            first = (step * budget.grad_accum + micro) * budget.batch_size
            chunk = [examples[i] for i in order[first:first + budget.batch_size]]
            batch = collate(chunk, pad_id, handle)
            log.input_tokens += int(batch["attention_mask"].sum())
            log.label_tokens += int((batch["labels"] != -100).sum())
            with autocast:
                loss = model(**batch, use_cache=False).loss / budget.grad_accum
            loss.backward()
            step_loss += float(loss.detach())
        if not math.isfinite(step_loss):
            raise RuntimeError(f"{name}: loss is {step_loss} at {phase} step {step}")
        torch.nn.utils.clip_grad_norm_(model.parameters(), budget.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        log.losses.append(step_loss)
        bar.set_postfix(loss=f"{step_loss:.3f}")
        if validation is not None and validation.due(step + 1, steps):
            _validate(handle, validation, pad_id, log, step + 1)
    bar.close()
    log.seconds = time.perf_counter() - started
    model.eval()
    return log
