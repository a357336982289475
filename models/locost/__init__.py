"""LOCOST: long-context summarisation with a state-space encoder (arXiv 2401.17919), in plain PyTorch.

Importing this package registers `model_type="locost"` with `AutoConfig` and `AutoModelForSeq2SeqLM`.
"""

from transformers import AutoConfig, AutoModelForSeq2SeqLM

from .configuration_locost import PRESETS, LocostConfig
from .convert import (
    convert_released_state_dict,
    load_released_checkpoint,
    load_released_state_dict,
    to_released_state_dict,
)
from .modeling_locost import LocostForConditionalGeneration, LocostPreTrainedModel

AutoConfig.register("locost", LocostConfig, exist_ok=True)
AutoModelForSeq2SeqLM.register(LocostConfig, LocostForConditionalGeneration, exist_ok=True)

__all__ = [
    "PRESETS",
    "LocostConfig",
    "LocostForConditionalGeneration",
    "LocostPreTrainedModel",
    "convert_released_state_dict",
    "load_released_checkpoint",
    "load_released_state_dict",
    "to_released_state_dict",
]
