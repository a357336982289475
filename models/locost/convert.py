"""Map the released LOCOST checkpoint's (LongT5-style) state dict to ours and back.

Our module names follow the release, so the mapping is nearly the identity:
- `...ssm_layer.kernel.inv_A_real` (which holds log(-Re A)) <-> `...ssm_layer.kernel.A_re_log`
- `...ssm_layer.kernel.A_imag` <-> `...ssm_layer.kernel.A_im`
- `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight` are copies of `shared.weight` there;
  ours keeps the shared embedding once.
"""

import torch

from .configuration_locost import LocostConfig
from .modeling_locost import LocostForConditionalGeneration

__all__ = ["convert_released_state_dict", "to_released_state_dict", "load_released_state_dict"]

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
