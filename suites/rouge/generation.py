"""Inputs at a given length, and summaries generated from them.

An input at length L is the document's first L-1 tokens followed by EOS (the whole document + EOS
when it is shorter), so that no model ever sees more than L tokens; ``None`` means the full
document. The text behind the kept tokens is what extractive references work on.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from suites.rouge.errors import SuiteError
from suites.rouge.tokenizer import Encoded, SharedTokenizer


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 96
    beams: int = 1
    no_repeat_ngram: int = 3
    batch_size: int = 1

    def __post_init__(self):
        for name in ("max_new_tokens", "beams", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SuiteError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.no_repeat_ngram < 0:
            raise SuiteError("no-repeat-ngram must be >= 0")

    def describe(self) -> dict:
        return {**asdict(self), "decoding": "greedy" if self.beams == 1 else f"beam search ({self.beams})",
                "stops_at_eos": True}


def truncate(encoded: Encoded, length: int | None, eos: int) -> tuple[list[int], int]:
    """The ids fed to a model at ``length`` (at most ``length`` of them, EOS last) and how many
    document tokens they keep."""
    kept = len(encoded) if length is None else min(len(encoded), length - 1)
    return encoded.ids[:kept] + [eos], kept


def visible_text(document: str, encoded: Encoded, kept: int) -> str:
    """The prefix of ``document`` covered by its first ``kept`` tokens."""
    if kept >= len(encoded):
        return document
    return document[:encoded.char_ends[kept - 1]] if kept > 0 else ""


@torch.no_grad()
def generate(handle, tokenizer: SharedTokenizer, inputs: list[list[int]], settings: GenerationSettings,
             desc: str = "generate", progress: bool = True) -> list[str]:
    """Decoded summaries of ``inputs`` (each a list of ids), in order, generated with ``settings`` and the
    tokenizer's special ids (``SharedTokenizer.token_ids``) alone: nothing of the model's own
    ``generation_config`` (e.g. PEGASUS-X's forced EOS id 1) applies."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, num_beams=settings.beams, do_sample=False,
        early_stopping=settings.beams > 1, no_repeat_ngram_size=settings.no_repeat_ngram,
        **tokenizer.token_ids())
    model = handle.model
    model.eval()
    # generate() fills every field left None in `config` from model.generation_config (a checkpoint's
    # forced_eos_token_id, suppress_tokens, length_penalty...): while generating, `config` is that too
    kept, model.generation_config = model.generation_config, config
    try:
        return _generate(handle, tokenizer, inputs, settings, config, desc, progress)
    finally:
        model.generation_config = kept


def _generate(handle, tokenizer, inputs, settings, config, desc, progress) -> list[str]:
    from tqdm.auto import tqdm

    special, model, device = tokenizer.special, handle.model, handle.device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    outputs: list[str] = []
    for start in tqdm(range(0, len(inputs), settings.batch_size), desc=desc, unit="batch",
                      disable=not progress, leave=False):
        chunk = inputs[start:start + settings.batch_size]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), width), special.pad, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, ids in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention_mask[row, :len(ids)] = 1
        with autocast:
            generated = model.generate(**handle.prepare_inputs(input_ids, attention_mask),
                                       generation_config=config)
        outputs.extend(tokenizer.decode(row.tolist()) for row in generated)
    return outputs
