"""Map the released LOCOST checkpoint's (LongT5-style) state dict to ours and back.

Our module names follow the release, so the mapping is nearly the identity:
- `...ssm_layer.kernel.inv_A_real` (which holds log(-Re A)) <-> `...ssm_layer.kernel.A_re_log`
- `...ssm_layer.kernel.A_imag` <-> `...ssm_layer.kernel.A_im`
- `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight` are copies of `shared.weight` there;
  ours keeps the shared embedding once.

A released-layout checkpoint directory (the release's config.json, whose LOCOSTConfig has no model_type,
and its state dict in pytorch_model.bin or model.safetensors, e.g. a download of
flbbb/locost-gsg-pretrained) loads with `load_released_checkpoint`; `models.load` calls it. The
released configurations set `use_fast_fft_conv=True`, and so does the converted config: the weights are
then evaluated with the convolution they were trained with (`ssm.released_fast_conv`, not the exact
bidirectional convolution at lengths that are not powers of two).
"""

import json
from pathlib import Path

import torch

from .configuration_locost import LocostConfig
from .modeling_locost import LocostForConditionalGeneration

__all__ = [
    "convert_released_state_dict",
    "to_released_state_dict",
    "load_released_state_dict",
    "is_released_config",
    "released_config",
    "load_released_checkpoint",
]

_RENAMES = {".kernel.inv_A_real": ".kernel.A_re_log", ".kernel.A_imag": ".kernel.A_im"}
_EMBEDDING_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# T5 checkpoints sometimes carry an unused bias in the first cross-attention layer.
_UNUSED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


def _rename(key: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def convert_released_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released layout -> ours. Embedding copies must equal `shared.weight` (else the checkpoint is
    not the tied model this class implements)."""
    shared = state_dict["shared.weight"]
    converted = {}
    for key, value in state_dict.items():
        if key in _EMBEDDING_COPIES:
            if not torch.equal(value, shared):
                raise ValueError(
                    f"{key} differs from shared.weight: untied input embeddings are not supported"
                )
        elif key not in _UNUSED:
            converted[_rename(key, _RENAMES)] = value
    return converted


def to_released_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ours -> released layout (with the embedding copies and `lm_head.weight` written out)."""
    released = {_rename(key, {new: old for old, new in _RENAMES.items()}): v for key, v in state_dict.items()}
    for key in _EMBEDDING_COPIES:
        released[key] = state_dict["shared.weight"]
    released.setdefault("lm_head.weight", state_dict["shared.weight"])
    return released


def load_released_state_dict(
    state_dict: dict[str, torch.Tensor], config: LocostConfig
) -> LocostForConditionalGeneration:
    """Build a model for `config` and load a released-layout state dict into it (every key must match)."""
    model = LocostForConditionalGeneration(config)
    ours = convert_released_state_dict(state_dict)
    if config.tie_word_embeddings and "lm_head.weight" in ours:
        if not torch.equal(ours.pop("lm_head.weight"), ours["shared.weight"]):
            raise ValueError(
                "lm_head.weight differs from shared.weight but config.tie_word_embeddings is True"
            )
    missing, unexpected = model.load_state_dict(ours, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise KeyError(f"state dict does not match the model: missing {missing}, unexpected {unexpected}")
    return model.eval()


# The release's LOCOSTConfig fields that ours has with the same meaning (its defaults where absent).
_RELEASED_FIELDS = {
    "vocab_size": 32128, "d_model": 512, "d_state": 128, "d_kv": 64, "d_ff": 2048, "num_layers": 6,
    "num_decoder_layers": None, "num_heads": 8, "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6,
    "initializer_factor": 1.0, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    "use_fast_fft_conv": True, "bidirectional": True, "gating": True, "tie_word_embeddings": True,
}
_RELEASED_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def is_released_config(raw: dict) -> bool:
    """Whether a config.json (as a dict) is the release's LOCOSTConfig: it has `use_fast_fft_conv` and
    `d_state` and no model_type of ours."""
    ours = raw.get("model_type") == LocostConfig.model_type
    return "use_fast_fft_conv" in raw and "d_state" in raw and not ours


def released_config(raw: dict) -> LocostConfig:
    """Our config for the release's config.json. Raises ValueError for what this class does not
    implement: several SSM heads (`num_ssm_heads` != 1) or an FFN other than gated GELU."""
    if raw.get("num_ssm_heads", 8) != 1:
        raise ValueError(f"num_ssm_heads {raw.get('num_ssm_heads', 8)}: only 1 SSM head is supported")
    if raw.get("feed_forward_proj", "gated-gelu") != "gated-gelu":
        raise ValueError(f"feed_forward_proj {raw['feed_forward_proj']!r}: only 'gated-gelu' is supported")
    return LocostConfig(**{key: raw.get(key, default) for key, default in _RELEASED_FIELDS.items()})


def load_released_checkpoint(path) -> LocostForConditionalGeneration:
    """The model of a released-layout checkpoint directory (config.json and model.safetensors or
    pytorch_model.bin), converted; in eval mode. Raises ValueError (bad config, no weights, or weights
    that do not match the config: KeyError's message)."""
    path = Path(path)
    config = released_config(json.loads((path / "config.json").read_text()))
    weights = next((path / name for name in _RELEASED_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise ValueError(f"{path} has no {' or '.join(_RELEASED_WEIGHTS)}")
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file
        state_dict = load_file(str(weights))
    else:
        state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        return load_released_state_dict(state_dict, config)
    except KeyError as exc:
        raise ValueError(f"{weights}: {exc.args[0]}") from None
    except RuntimeError as exc:  # load_state_dict's shape mismatches: one line, the first of them
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise ValueError(f"{weights}: state dict does not match the model: {first}") from None
