"""``ModelHandle``: the one interface every suite measures through.

A handle wraps a Hugging Face seq2seq model with what a measurement needs: its family and size,
parameter counts, the lengths it accepts, batches of a given shape, and the three timed
operations (a training step, an encoder forward, generation of N new tokens). Family quirks are
applied here from the family's description, never by callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from transformers import PreTrainedModel

from models.compat import cache_field, output_cache, set_activation_checkpointing
from models.errors import UnsupportedLengthError
from models.families import Family

#: the module state of each measured operation (``ModelHandle.train_step``, ``encode``, ``generate``),
#: written into a sweep's run.json so that a figure carries it
MODE_STATES = {
    "train": "model.train(): dropout active; forward with labels + backward, gradients freed, "
             "no optimizer step",
    "encode": "model.eval() under torch.no_grad(): dropout off; encoder forward only",
    "generate": "model.eval() under torch.no_grad(): dropout off; greedy, exactly the new tokens, "
                "decoder cache on",
}


@dataclass(frozen=True)
class ParamCounts:
    total: int
    embedding: int
    non_embedding: int


def count_parameters(model: nn.Module) -> ParamCounts:
    """Unique parameters; embeddings are every ``nn.Embedding`` (tokens, learned positions,
    relative-position tables) plus an output projection that is not tied to them."""
    seen: set[int] = set()

    def unique(params) -> int:
        n = 0
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    embedding = sum(unique(m.parameters()) for m in model.modules() if isinstance(m, nn.Embedding))
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None:
        embedding += unique(output.parameters())
    total = embedding + unique(model.parameters())
    return ParamCounts(total=total, embedding=embedding, non_embedding=total - embedding)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnsupportedLengthError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass
class ModelHandle:
    """A seq2seq model with what a measurement needs (see the module docstring).

    ``model``: the Hugging Face model, in place (its device is the handle's); ``family``: the
    ``models.families.Family`` whose quirks apply; ``size``: the preset it was built at (tiny,
    small, base), None for a loaded checkpoint. Lengths are in tokens; ``params`` counts parameters.
    """
    model: PreTrainedModel
    family: Family
    size: str | None = None

    @property
    def name(self) -> str:
        return f"{self.family.name}-{self.size}" if self.size else self.family.name

    @cached_property
    def params(self) -> ParamCounts:
        return count_parameters(self.model)

    @property
    def max_input_len(self) -> int | None:
        """Longest input the architecture accepts (None: unbounded)."""
        return self.family.max_input_len(self.model.config)

    @property
    def max_target_len(self) -> int | None:
        return self.family.max_target_len(self.model.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> ModelHandle:
        self.model.to(device=device, dtype=dtype)
        return self

    def check_lengths(self, input_len: int, target_len: int = 1, batch_size: int = 1) -> None:
        """Raise ``UnsupportedLengthError`` for lengths the model cannot take by construction."""
        _check_positive("input length", input_len)
        _check_positive("target length", target_len)
        _check_positive("batch size", batch_size)
        limit = self.max_input_len
        if limit is not None and input_len > limit:
            reason = self.family.length_reason.format(n=limit) or f"{self.name} accepts {limit:,} tokens"
            raise UnsupportedLengthError(
                f"{reason}; input length {input_len:,} exceeds it")
        limit = self.max_target_len
        if limit is not None and target_len > limit:
            raise UnsupportedLengthError(
                f"{self.name} has {limit:,} decoder positions; "
                f"target length {target_len:,} exceeds it")

    # --- inputs ------------------------------------------------------------------------------

    def make_batch(self, input_len: int, target_len: int = 16, batch_size: int = 1, *,
                   token_ids: torch.Tensor | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """Inputs for ``model(**batch)``: ids, mask, labels, explicit decoder inputs, and the family's
        extra inputs. ``token_ids`` (1-D, real tokenized text) is repeated as needed and cut to
        ``input_len`` tokens of document followed by ``target_len`` tokens of target; otherwise ids
        are drawn uniformly from the non-special part of the vocabulary."""
        self.check_lengths(input_len, target_len, batch_size)
        vocab = self.model.config.vocab_size
        if token_ids is None:
            generator = torch.Generator().manual_seed(seed)
            ids = torch.randint(self.family.first_plain_token, vocab,
                                (batch_size, input_len + target_len), generator=generator)
        else:
            token_ids = torch.as_tensor(token_ids, dtype=torch.long).flatten()
            if token_ids.numel() == 0:
                raise UnsupportedLengthError("token_ids is empty")
            if int(token_ids.max()) >= vocab or int(token_ids.min()) < 0:
                raise UnsupportedLengthError(
                    f"token ids must lie in [0, {vocab}) for {self.name}'s vocabulary")
            need = input_len + target_len
            ids = token_ids.repeat(-(-need // token_ids.numel()))[:need].expand(batch_size, -1)
        input_ids, labels = ids[:, :input_len].contiguous(), ids[:, input_len:].contiguous()
        return self.prepare_inputs(input_ids, torch.ones_like(input_ids), labels)

    def prepare_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything ``model(**batch)`` or ``model.generate(**batch)`` needs, on the model's device.

        ``input_ids`` (B, L) token ids; ``attention_mask`` (B, L), 1 for a token, 0 for padding;
        ``labels`` (B, T) target ids, -100 where ignored by the loss (then also ``decoder_input_ids``
        (B, T), the labels shifted right, ignored positions as padding). The family's extra inputs
        (LED's ``global_attention_mask``) are derived from the mask here, never by callers."""
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if labels is not None:
            shifted = labels.masked_fill(labels == -100, self.model.config.pad_token_id)
            batch.update(labels=labels,
                         decoder_input_ids=self.model.prepare_decoder_input_ids_from_labels(labels=shifted))
        batch.update(self.family.extra_inputs(attention_mask))
        return {key: value.to(self.device) for key, value in batch.items()}

    @staticmethod
    def _without_targets(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if k not in ("labels", "decoder_input_ids")}

    # --- the three measured operations -------------------------------------------------------

    def train_step(self, batch: dict) -> float:
        """Forward with labels and backward (no optimizer); gradients are released afterwards so
        that every step starts from the same memory state. Returns the loss."""
        return float(self.train_loss(batch))

    def train_loss(self, batch: dict) -> torch.Tensor:
        """``train_step`` without reading the loss's value: the detached loss tensor (0-dim)."""
        self.model.train()
        loss = self.model(**batch, use_cache=False).loss
        loss.backward()
        self.model.zero_grad(set_to_none=True)
        return loss.detach()

    @torch.no_grad()
    def encode(self, batch: dict) -> torch.Tensor:
        """Encoder forward only; returns the last hidden state."""
        self.model.eval()
        return self.model.get_encoder()(**self._without_targets(batch)).last_hidden_state

    @torch.no_grad()
    def generate(self, batch: dict, new_tokens: int) -> torch.Tensor:
        """Greedy generation of exactly ``new_tokens`` tokens (EOS does not stop it early)."""
        _check_positive("new tokens", new_tokens)
        self.check_lengths(batch["input_ids"].shape[1], new_tokens + 1)
        self.model.eval()
        return self.model.generate(**self._without_targets(batch), max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False, num_beams=1)

    @torch.no_grad()
    def greedy_decode(self, batch: dict, new_tokens: int) -> torch.Tensor:
        """What ``generate`` computes for greedy decoding of exactly ``new_tokens`` tokens, as the same
        model calls: the encoder once, then one decoder call per token with the decoder cache, each
        next token the argmax of the last logits. Reads no token value (``generate`` does, to stop), so
        it runs on fake tensors too. Returns (B, 1 + new_tokens) ids, the start token first."""
        _check_positive("new tokens", new_tokens)
        self.check_lengths(batch["input_ids"].shape[1], new_tokens + 1)
        self.model.eval()
        inputs = self._without_targets(batch)
        encoder_outputs = self.model.get_encoder()(**inputs)
        start = self.model.config.decoder_start_token_id
        tokens = [torch.full((inputs["input_ids"].shape[0], 1), start, dtype=torch.long,
                             device=inputs["input_ids"].device)]
        cache = {}
        for _ in range(new_tokens):
            out = self.model(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"],
                             decoder_input_ids=tokens[-1], use_cache=True, **cache)
            cache = cache_field(output_cache(out))
            scores = self._greedy_scores(out.logits[:, -1, :], last=len(tokens) == new_tokens)
            tokens.append(scores.argmax(-1, keepdim=True))
        return torch.cat(tokens, dim=1)

    def _greedy_scores(self, logits: torch.Tensor, last: bool) -> torch.Tensor:
        """(B, V) float32 scores of the next token as ``generate`` makes them for ``generate``'s
        arguments: EOS suppressed (``min_new_tokens``), all but the forced EOS on the last token."""
        config = self.model.generation_config
        scores = logits.to(dtype=torch.float32, copy=True)
        eos = config.eos_token_id
        if eos is not None:
            scores[:, eos if isinstance(eos, list) else [eos]] = -float("inf")
        if last and config.forced_eos_token_id is not None:
            scores.fill_(-float("inf"))
            scores[:, config.forced_eos_token_id] = 0
        return scores

    def analytic_flop_hooks(self, add) -> list:
        """Forward hooks that call ``add(flops)`` with the FLOPs of what fvcore cannot trace in this
        family (LOCOST: ``models.locost.flops``); [] when fvcore sees everything."""
        return self.family.analytic_flop_hooks(self.model, add)

    def gradient_checkpointing(self, enabled: bool = True) -> ModelHandle:
        """Activation (gradient) checkpointing on or off, under the installed transformers' method name."""
        set_activation_checkpointing(self.model, enabled)
        return self
