"""Negative log-likelihood of reference summaries under teacher forcing, in nats per token.

For one (document, reference) pair the decoder is fed the reference shifted right (teacher forcing)
and scores every reference token: NLL = -sum_t log p(y_t | y_<t, x), natural log, over the label
positions (``labels != -100``; padding excluded), divided by their count. The labels are the
reference's first ``target_len - 1`` tokens of the suite's shared tokenizer + EOS (the fine-tuning
objective, ``training.summarization_example``), so that every model is scored on the same tokens.
A set of documents is summarized by the mean over documents of each document's NLL per token (every
document weighs the same, and the bootstrap resamples documents).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from suites.rouge.examples import TrainingExample, collate


@dataclass(frozen=True)
class DocumentNLL:
    nll_sum: float  #: -sum of log p over the label tokens, nats
    tokens: int  #: label tokens scored

    @property
    def nll(self) -> float:
        """Nats per reference token."""
        return self.nll_sum / self.tokens


@torch.no_grad()
def batch_nll(handle, batch: dict[str, torch.Tensor]) -> list[DocumentNLL]:
    """Per row of a collated batch (``training.collate``): the summed NLL of its label tokens
    (``labels`` (B, T), -100 ignored) and their count. Log-softmax in float32 over logits (B, T, V)."""
    model = handle.model
    was_training = model.training
    model.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if handle.device.type == "cuda" else nullcontext()
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    try:
        with autocast:
            logits = model(**inputs, use_cache=False).logits
    finally:
        model.train(was_training)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    kept = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    sums = -(picked * kept).sum(dim=1)
    return [DocumentNLL(float(s), int(n)) for s, n in zip(sums, kept.sum(dim=1), strict=True)]


def examples_nll(handle, examples: list[TrainingExample], pad_id: int) -> list[DocumentNLL]:
    """One ``DocumentNLL`` per example, one example per forward pass (no input padding)."""
    return [batch_nll(handle, collate([example], pad_id, handle))[0] for example in examples]


def mean_nll(documents: list[DocumentNLL]) -> float:
    """Mean over documents of each document's NLL per token (nats/token)."""
    return sum(d.nll for d in documents) / len(documents)
