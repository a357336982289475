"""One tokenizer shared by every model in a comparison.

By default a Unigram tokenizer (the SentencePiece model family T5 uses: NFKC, metaspace, ~8,000
pieces) is trained with ``tokenizers`` on the training split and cached under a content hash of
the training texts and the settings; ``load_tokenizer`` takes a ``tokenizers`` JSON file or a
Hugging Face tokenizer directory instead. Models are then built with the tokenizer's vocabulary
size and special ids (``model_overrides``), so that no family keeps its own conventions (T5's
pad 0 / eos 1, LED's bos 0 / pad 1 / eos 2).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from records import atomic_path
from suites.rouge.errors import SuiteError

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>", "<s>", "<mask>")  # ids 0..4 in a trained tokenizer
#: candidate spellings of each special token in tokenizers we did not train
_CANDIDATES = {
    "pad": ("<pad>", "[PAD]", "<|pad|>"),
    "eos": ("</s>", "[SEP]", "<|endoftext|>"),
    "unk": ("<unk>", "[UNK]"),
    "bos": ("<s>", "[CLS]"),
    "mask": ("<mask>", "[MASK]", "<mask_1>", "<extra_id_0>"),
}


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    eos: int
    unk: int | None
    bos: int | None
    mask: int | None

    @property
    def decoder_start(self) -> int:
        """The first decoder input: BOS when there is one (a learned embedding in every family;
        PAD is a zero ``padding_idx`` row in LED and PEGASUS-X), else PAD as in T5."""
        return self.bos if self.bos is not None else self.pad


@dataclass(frozen=True)
class Encoded:
    """Token ids of one text (no special tokens) and, per token, the end of its span in the text."""
    ids: list[int]
    char_ends: list[int]

    def __len__(self) -> int:
        return len(self.ids)


class SharedTokenizer:
    def __init__(self, backend, special: SpecialIds, source: str):
        self.backend = backend  # a tokenizers.Tokenizer
        self.special = special
        self.source = source

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.backend.to_str().encode()).hexdigest()[:16]

    def encode(self, text: str) -> Encoded:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [Encoded(list(e.ids), [end for _, end in e.offsets]) for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=True).strip()

    def token_ids(self) -> dict:
        """Every config and generation field that carries a token id, with this tokenizer's value:
        pad, EOS, BOS (None when it has none) and the decoder's first input; the forced first / last
        generated tokens are None (PEGASUS-X's configs force EOS id 1 at the length cap; the suite forces
        no token in any family, so that capped summaries end alike)."""
        s = self.special
        return dict(pad_token_id=s.pad, eos_token_id=s.eos, bos_token_id=s.bos,
                    decoder_start_token_id=s.decoder_start,
                    forced_eos_token_id=None, forced_bos_token_id=None)

    def model_overrides(self) -> dict:
        """Config overrides that make any family use this tokenizer's vocabulary and special ids
        (``token_ids``: all of them, so that no family keeps an id of its own tokenizer)."""
        return dict(vocab_size=self.vocab_size, **self.token_ids())

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(path))
        return path

    def describe(self) -> dict:
        return {"source": self.source, "vocab_size": self.vocab_size, "fingerprint": self.fingerprint,
                "special_ids": {**asdict(self.special), "decoder_start": self.special.decoder_start}}


def _special_ids(backend, known: dict[str, int | None] | None = None) -> SpecialIds:
    known = dict(known or {})
    for role, spellings in _CANDIDATES.items():
        if known.get(role) is None:
            known[role] = next((backend.token_to_id(t) for t in spellings
                                if backend.token_to_id(t) is not None), None)
    if known["eos"] is None:
        raise SuiteError("the tokenizer has no end-of-sequence token (</s>, [SEP] or <|endoftext|>)")
    if known["pad"] is None:
        raise SuiteError("the tokenizer has no padding token (<pad> or [PAD])")
    return SpecialIds(**known)


def train_tokenizer(texts: Sequence[str], vocab_size: int = 8000,
                    cache_dir: Path | None = None) -> SharedTokenizer:
    """Train (or fetch from the cache) a Unigram tokenizer on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    settings = {"model": "unigram", "vocab_size": vocab_size, "normalizer": "NFKC",
                "pre_tokenizer": "metaspace", "special_tokens": SPECIAL_TOKENS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    key = digest.hexdigest()[:16]
    cached = Path(cache_dir) / "tokenizers" / f"unigram-{vocab_size}-{key}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        return _wrap(Tokenizer.from_file(str(cached)), f"unigram-{vocab_size} from the cache {cached}")

    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                      unk_token="<unk>", show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    # one JSON round trip fixes the piece scores' float digits, so that the fingerprint of a freshly
    # trained tokenizer equals that of its cached copy
    backend = Tokenizer.from_str(backend.to_str())
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            backend.save(str(tmp))
    return _wrap(backend, f"unigram-{vocab_size} trained on {len(texts)} texts"
                 + (f", saved to {cached}" if cached else ""))


def _wrap(backend, source: str) -> SharedTokenizer:
    return SharedTokenizer(backend, _special_ids(backend), source)


def load_tokenizer(path: str | os.PathLike) -> SharedTokenizer:
    """A ``tokenizers`` JSON file, or a directory holding one (``tokenizer.json``) or any Hugging
    Face tokenizer files (loaded with ``AutoTokenizer``, local files only)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.exists():
        raise SuiteError(f"tokenizer not found: {path}")
    if path.is_file():
        try:
            return _wrap(Tokenizer.from_file(str(path)), f"file {path}")
        except Exception as exc:  # tokenizers raises its own Exception type
            raise SuiteError(f"not a tokenizers JSON file: {path} ({str(exc).splitlines()[0]})") from None
    if (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        backend = hf.backend_tokenizer
    except Exception as exc:  # transformers raises many types for a directory without a tokenizer
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SuiteError(f"no tokenizer in {path} ({reason})") from None
    known = {"pad": hf.pad_token_id, "eos": hf.eos_token_id, "unk": hf.unk_token_id,
             "bos": hf.bos_token_id, "mask": getattr(hf, "mask_token_id", None)}
    return SharedTokenizer(backend, _special_ids(backend, known), f"Hugging Face tokenizer {path}")
