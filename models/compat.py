"""What differs between the transformers releases this project admits (``transformers>=5.4,<6``).

- The decoder cache: from 5.24 ``generate()`` hands it to ``forward`` as ``cache=`` and reads it back
  from the output's ``cache`` field; 5.4-5.23 use ``past_key_values`` for both (5.24 still accepts the
  old name with a deprecation warning). Our models take either keyword and return the cache under the
  installed release's name, so no step of ``generate`` loses its cache and none of our calls warns.
- Activation checkpointing: 5.24 renames ``gradient_checkpointing_enable/disable`` to
  ``activation_checkpointing_enable/disable`` and warns on the old names.
"""

from __future__ import annotations

from dataclasses import fields

from transformers import PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput

#: The name under which the installed transformers passes the decoder cache to ``forward`` and reads
#: it from a model output: ``"cache"`` (5.24 and newer) or ``"past_key_values"`` (older releases).
CACHE_NAME = "cache" if "cache" in {f.name for f in fields(Seq2SeqLMOutput)} else "past_key_values"


def pick_cache(cache, past_key_values):
    """The decoder cache given under either keyword (``cache`` is the current name).

    Raises ``ValueError`` when both are given."""
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the decoder cache as `cache` or as `past_key_values`, not both")
    return cache if cache is not None else past_key_values


def cache_field(cache) -> dict:
    """``{name: cache}`` for a model output's constructor, under the installed release's name."""
    return {CACHE_NAME: cache}


def output_cache(output):
    """The cache of a model output, read under the installed release's name (no deprecation warning)."""
    return getattr(output, CACHE_NAME)


def set_activation_checkpointing(model: PreTrainedModel, enabled: bool) -> None:
    """Turn activation (gradient) checkpointing on or off under the installed release's method name."""
    prefix = ("activation_checkpointing" if hasattr(model, "activation_checkpointing_enable")
              else "gradient_checkpointing")
    getattr(model, f"{prefix}_{'enable' if enabled else 'disable'}")()
