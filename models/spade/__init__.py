"""SPADE: LongT5-local with a global S4 branch in encoder layer 0 (arXiv 2212.08136), in plain PyTorch.

Importing this package registers `model_type="spade"` with `AutoConfig` and `AutoModelForSeq2SeqLM`.
"""

from transformers import AutoConfig, AutoModelForSeq2SeqLM

from .configuration_spade import PRESETS, SpadeConfig
from .modeling_spade import SpadeForConditionalGeneration

AutoConfig.register("spade", SpadeConfig, exist_ok=True)
AutoModelForSeq2SeqLM.register(SpadeConfig, SpadeForConditionalGeneration, exist_ok=True)

__all__ = ["PRESETS", "SpadeConfig", "SpadeForConditionalGeneration"]
