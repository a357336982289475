"""A training example and a batch of them: what training (``suites.rouge.training``) steps on and the
likelihood (``suites.rouge.likelihood``) scores, each below both."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainingExample:
    input_ids: list[int]
    labels: list[int]


def collate(examples: list[TrainingExample], pad_id: int, handle) -> dict[str, torch.Tensor]:
    """Right-padded tensors on the model's device (``ModelHandle.prepare_inputs``); padded label
    positions are -100 (ignored by the loss)."""
    width = max(len(e.input_ids) for e in examples)
    label_width = max(len(e.labels) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), label_width), -100, dtype=torch.long)
    for row, example in enumerate(examples):
        input_ids[row, :len(example.input_ids)] = torch.tensor(example.input_ids)
        labels[row, :len(example.labels)] = torch.tensor(example.labels)
    lengths = torch.tensor([len(e.input_ids) for e in examples])
    attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return handle.prepare_inputs(input_ids, attention_mask, labels)
