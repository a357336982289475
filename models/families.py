"""Per-family knowledge: presets, config classes and quirks, kept out of every caller.

Each family says how to build its Hugging Face config at a size, which model class to use, which
lengths it can take by construction, and which extra inputs its forward needs. Sizes:

- ``tiny``: tests, seconds on a CPU.
- ``small``: CPU benchmarks (~55M parameters, d_model 512, 6+6 layers).
- ``base``: the released checkpoints' configurations.

Reports judge the paper's claims only from ``small`` and ``base`` (``records.SIZE_ROLES``, the one
home of each size's role; a test keeps the two lists of sizes equal).

``tiny`` and ``small`` share one vocabulary size (LongT5's 32,128) across families so that
parameter counts compare architectures, not tokenizers; ``base`` keeps each release's vocabulary.
FFN widths of the non-gated families (LED, PEGASUS-X) are 1.5x the gated ones' d_ff, as in the
releases, so that the FFN parameter budget matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PretrainedConfig

SHARED_VOCAB = 32128
SIZES = ("tiny", "small", "base")


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    make_config: Callable[[dict], PretrainedConfig]
    model_class: Callable[[], type]
    #: size -> config kwargs; a function so that importing the registry imports no family
    make_presets: Callable[[], dict[str, dict]]
    max_input_len: Callable[[PretrainedConfig], int | None] = lambda config: None
    max_target_len: Callable[[PretrainedConfig], int | None] = lambda config: None
    #: why the input is bounded, completed with the bound in the error message
    length_reason: str = ""
    #: extra forward inputs derived from the attention mask (LED's global attention)
    extra_inputs: Callable[[torch.Tensor], dict] = field(default=lambda attention_mask: {})
    #: first token id that is not a special token, for random inputs
    first_plain_token: int = 3
    #: (model, add) -> forward hooks calling ``add(flops)`` with the FLOPs fvcore cannot trace
    analytic_flop_hooks: Callable[[nn.Module, Callable[[float], None]], list] = \
        field(default=lambda model, add: [])

    @property
    def presets(self) -> dict[str, dict]:
        return self.make_presets()

    def config(self, size: str, **overrides) -> PretrainedConfig:
        return self.make_config({**self.presets[size], **overrides})


# --- LongT5 (transient-global and local) -------------------------------------------------------

def _longt5_presets() -> dict[str, dict]:
    common = dict(feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                  relative_attention_max_distance=128, local_radius=127, global_block_size=16,
                  dropout_rate=0.1, tie_word_embeddings=True,
                  pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return {
        "tiny": dict(common, vocab_size=SHARED_VOCAB, d_model=64, d_ff=128, d_kv=16, num_heads=4,
                     num_layers=2, num_decoder_layers=2),
        "small": dict(common, vocab_size=SHARED_VOCAB, d_model=512, d_ff=1024, d_kv=64, num_heads=8,
                      num_layers=6, num_decoder_layers=6),
        "base": dict(common, vocab_size=32128, d_model=768, d_ff=2048, d_kv=64, num_heads=12,
                     num_layers=12, num_decoder_layers=12),
    }


def _longt5(attention_type: str) -> Callable[[dict], PretrainedConfig]:
    def make(kwargs: dict) -> PretrainedConfig:
        from transformers import LongT5Config
        return LongT5Config(encoder_attention_type=attention_type, **kwargs)
    return make


def _longt5_model():
    from transformers import LongT5ForConditionalGeneration
    return LongT5ForConditionalGeneration


# --- LED ---------------------------------------------------------------------------------------

def _led_config(kwargs: dict) -> PretrainedConfig:
    from transformers import LEDConfig
    return LEDConfig(**kwargs)


def _led_model():
    from transformers import LEDForConditionalGeneration
    return LEDForConditionalGeneration


def _led_global_attention(attention_mask: torch.Tensor) -> dict:
    """LED summarization puts global attention on the first token only."""
    global_mask = torch.zeros_like(attention_mask)
    global_mask[:, 0] = 1
    return {"global_attention_mask": global_mask}


def _led_presets() -> dict[str, dict]:
    common = dict(max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024,
                  dropout=0.1, attention_dropout=0.0, activation_function="gelu",
                  tie_word_embeddings=True)
    return {
        "tiny": dict(common, vocab_size=SHARED_VOCAB, d_model=64, encoder_ffn_dim=192,
                     decoder_ffn_dim=192, encoder_attention_heads=4, decoder_attention_heads=4,
                     encoder_layers=2, decoder_layers=2, attention_window=32),
        # FFN 1024 (not 1.5x): LED's extra global q/k/v projections would otherwise put it 13%
        # above the others in non-embedding parameters
        "small": dict(common, vocab_size=SHARED_VOCAB, d_model=512, encoder_ffn_dim=1024,
                      decoder_ffn_dim=1024, encoder_attention_heads=8, decoder_attention_heads=8,
                      encoder_layers=6, decoder_layers=6, attention_window=1024),
        "base": dict(common, vocab_size=50265, d_model=768, encoder_ffn_dim=3072,
                     decoder_ffn_dim=3072, encoder_attention_heads=12, decoder_attention_heads=12,
                     encoder_layers=6, decoder_layers=6, attention_window=1024),
    }


# --- PEGASUS-X ---------------------------------------------------------------------------------

def _pegasus_x_config(kwargs: dict) -> PretrainedConfig:
    from transformers import PegasusXConfig
    return PegasusXConfig(**kwargs)


def _pegasus_x_model():
    from transformers import PegasusXForConditionalGeneration
    return PegasusXForConditionalGeneration


def _pegasus_x_presets() -> dict[str, dict]:
    common = dict(dropout=0.1, attention_dropout=0.0, activation_function="gelu",
                  stagger_local_blocks=True, tie_word_embeddings=True, max_position_embeddings=16384)
    return {
        "tiny": dict(common, vocab_size=SHARED_VOCAB, d_model=64, encoder_ffn_dim=192,
                     decoder_ffn_dim=192, encoder_attention_heads=4, decoder_attention_heads=4,
                     encoder_layers=2, decoder_layers=2, block_size=32, num_global_tokens=8),
        "small": dict(common, vocab_size=SHARED_VOCAB, d_model=512, encoder_ffn_dim=1536,
                      decoder_ffn_dim=1536, encoder_attention_heads=8, decoder_attention_heads=8,
                      encoder_layers=6, decoder_layers=6, block_size=512, num_global_tokens=64),
        "base": dict(common, vocab_size=96103, d_model=768, encoder_ffn_dim=3072,
                     decoder_ffn_dim=3072, encoder_attention_heads=12, decoder_attention_heads=12,
                     encoder_layers=12, decoder_layers=12, block_size=512, num_global_tokens=128),
    }


# --- LOCOST ------------------------------------------------------------------------------------

def _locost_config(kwargs: dict) -> PretrainedConfig:
    from models.locost import LocostConfig
    return LocostConfig(**kwargs)


def _locost_model():
    from models.locost import LocostForConditionalGeneration
    return LocostForConditionalGeneration


def _locost_flop_hooks(model: nn.Module, add: Callable[[float], None]) -> list:
    from models.locost.flops import analytic_flop_hooks
    return analytic_flop_hooks(model, add)


def _locost_presets() -> dict[str, dict]:
    from models.locost import PRESETS
    return {size: dict(PRESETS[size], **({} if size == "base" else {"vocab_size": SHARED_VOCAB}))
            for size in SIZES}


def _locost_s4_presets() -> dict[str, dict]:
    """LOCOST's presets with the S4 kernel at S4's (and SPADE's) d_state 64 (16 for tiny): the kernel's
    squarings of the dense N x N A_bar cost O(N^3 log L) per channel (`models.ssm.s4`)."""
    return {size: dict(preset, ssm_kernel="s4", d_state=min(preset["d_state"], 64))
            for size, preset in _locost_presets().items()}


# --- SPADE -------------------------------------------------------------------------------------

def _spade_config(kwargs: dict) -> PretrainedConfig:
    from models.spade import SpadeConfig
    return SpadeConfig(**kwargs)


def _spade_model():
    from models.spade import SpadeForConditionalGeneration
    return SpadeForConditionalGeneration


def _spade_flop_hooks(model: nn.Module, add: Callable[[float], None]) -> list:
    from models.spade.modeling_spade import analytic_flop_hooks
    return analytic_flop_hooks(model, add)


def _spade_presets() -> dict[str, dict]:
    """LongT5-local's shapes for tiny/small (parameter-matched: the S4 branch adds ~1.2M at small);
    T5-base dimensions with d_ff 3072 for base, as published."""
    from models.spade import PRESETS
    common = dict(relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
                  pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return {size: dict(common, vocab_size=SHARED_VOCAB, **PRESETS[size]) for size in SIZES}


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in [
        Family("locost", "LOCOST: gated bidirectional S4D encoder + T5 decoder (arXiv 2401.17919)",
               _locost_config, _locost_model, _locost_presets, analytic_flop_hooks=_locost_flop_hooks),
        Family("locost-s4", "LOCOST with the S4 kernel (NPLR HiPPO-LegS, bilinear; arXiv 2111.00396)",
               _locost_config, _locost_model, _locost_s4_presets, analytic_flop_hooks=_locost_flop_hooks),
        Family("longt5-tglobal", "LongT5 with transient-global encoder attention",
               _longt5("transient-global"), _longt5_model, _longt5_presets),
        Family("longt5-local", "LongT5 with local encoder attention",
               _longt5("local"), _longt5_model, _longt5_presets),
        Family("led", "Longformer Encoder-Decoder (sliding window + global first token)",
               _led_config, _led_model, _led_presets,
               max_input_len=lambda c: c.max_encoder_position_embeddings,
               max_target_len=lambda c: c.max_decoder_position_embeddings,
               length_reason="LED has {n:,} learned encoder positions",
               extra_inputs=_led_global_attention, first_plain_token=4),
        Family("spade", "SPADE: LongT5-local + a global S4 branch in encoder layer 0 (arXiv 2212.08136)",
               _spade_config, _spade_model, _spade_presets, analytic_flop_hooks=_spade_flop_hooks),
        Family("pegasus-x", "PEGASUS-X (block-local attention with staggered blocks + global tokens)",
               _pegasus_x_config, _pegasus_x_model, _pegasus_x_presets),
    ]
}

#: Hugging Face ``model_type`` -> family name, for loading checkpoints
MODEL_TYPES = {"locost": "locost", "led": "led", "pegasus_x": "pegasus-x", "spade": "spade"}


def family_of_config(config: PretrainedConfig) -> str:
    """Family name of a loaded config (LongT5 splits by its encoder attention type)."""
    if config.model_type == "locost" and getattr(config, "ssm_kernel", "s4d") == "s4":
        return "locost-s4"
    if config.model_type == "longt5":
        return "longt5-tglobal" if config.encoder_attention_type == "transient-global" else "longt5-local"
    return MODEL_TYPES.get(config.model_type, config.model_type)
