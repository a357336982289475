"""Build a model by family and size (random init, no downloads) or load a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from models.errors import NotACheckpointError, UnknownModelError
from models.families import FAMILIES, SIZES, Family, family_of_config
from models.handle import ModelHandle, ParamCounts, count_parameters


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def config(name: str, size: str, **overrides):
    fam = family(name)
    if size not in fam.presets:
        raise UnknownModelError(f"unknown size {size!r} for {name}; known: {', '.join(fam.presets)}")
    return fam.config(size, **overrides)


def build(name: str, size: str = "tiny", *, seed: int = 0, device: str | torch.device = "cpu",
          **overrides) -> ModelHandle:
    """A randomly initialised model of ``name`` at preset ``size``; ``overrides`` change config
    fields (e.g. ``vocab_size=8000``). ``device="meta"`` builds without allocating weights."""
    cfg = config(name, size, **overrides)
    fam = family(name)
    torch.manual_seed(seed)
    with torch.device(device):
        model = fam.model_class()(cfg)
    return ModelHandle(model=model, family=fam, size=size)


def load(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> ModelHandle:
    """Load a checkpoint from a local directory (or a hub id, when a network is available)."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    import models.locost  # noqa: F401  registers the LOCOST auto classes
    import models.spade  # noqa: F401  registers the SPADE auto classes

    path = Path(name_or_path)
    if path.exists() and not (path / "config.json").is_file():
        raise NotACheckpointError(f"not a checkpoint: {path} has no config.json")
    if path.is_dir() and (released := _load_released_locost(path)) is not None:
        return ModelHandle(model=released.to(device), family=family("locost"), size=None)
    try:
        cfg = AutoConfig.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotACheckpointError(
            f"not a checkpoint: cannot load a config from {str(name_or_path)!r} ({first_line})") from None
    fam = family(family_of_config(cfg))
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(str(name_or_path), config=cfg).to(device)
    except (OSError, ValueError) as exc:
        raise NotACheckpointError(f"not a checkpoint: {name_or_path}: {exc}".splitlines()[0]) from None
    return ModelHandle(model=model, family=fam, size=None)


def _load_released_locost(path: Path):
    """The converted model of a released-layout LOCOST checkpoint directory (``models.locost.convert``),
    or None when config.json is not the release's. Raises NotACheckpointError for a bad one."""
    import json

    from models.locost.convert import is_released_config, load_released_checkpoint

    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None  # AutoConfig reports it
    if not isinstance(raw, dict) or not is_released_config(raw):
        return None
    try:
        return load_released_checkpoint(path)
    except (OSError, ValueError) as exc:
        raise NotACheckpointError(f"not a checkpoint: released LOCOST layout in {path}: {exc}") from None


def dropout_rates(name: str, size: str, **overrides) -> dict[str, float]:
    """The dropout probabilities of a preset's config (every ``*dropout*`` field that is a number),
    e.g. {"dropout_rate": 0.1}; what ``train`` steps run with (``models.handle.MODE_STATES``)."""
    cfg = config(name, size, **overrides).to_dict()
    return {key: float(value) for key, value in sorted(cfg.items())
            if "dropout" in key and isinstance(value, (int, float)) and not isinstance(value, bool)}


def preset_counts(name: str, size: str) -> ParamCounts:
    """Parameter counts of a preset, from a model built on the meta device (no memory, no init)."""
    return count_parameters(build(name, size, device="meta").model)


def preset_table() -> list[dict]:
    """One row per family and size, with parameter counts and the longest accepted input."""
    rows = []
    for name in FAMILIES:
        for size in SIZES:
            handle = build(name, size, device="meta")
            counts = count_parameters(handle.model)
            rows.append({"family": name, "size": size, "total": counts.total,
                         "embedding": counts.embedding, "non_embedding": counts.non_embedding,
                         "max_input_len": handle.max_input_len})
    return rows
