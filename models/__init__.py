"""Model registry: every family behind one ``ModelHandle`` interface.

>>> from models import build
>>> handle = build("longt5-tglobal", "tiny")
>>> batch = handle.make_batch(input_len=300, target_len=8)
>>> handle.train_step(batch)  # doctest: +SKIP
"""

from models.errors import ModelError, NotACheckpointError, UnknownModelError, UnsupportedLengthError
from models.families import FAMILIES, SIZES
from models.handle import MODE_STATES, ModelHandle, ParamCounts, count_parameters
from models.registry import build, config, dropout_rates, family, load, preset_counts, preset_table

__all__ = [
    "FAMILIES", "MODE_STATES", "SIZES", "ModelError", "ModelHandle", "NotACheckpointError", "ParamCounts",
    "UnknownModelError", "UnsupportedLengthError", "build", "config", "count_parameters", "dropout_rates",
    "family", "load", "preset_counts", "preset_table",
]
