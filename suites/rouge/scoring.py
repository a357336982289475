r"""ROUGE with rouge-score, bootstrap confidence intervals, and relative quality.

Scores are F1 in [0, 1], from ``rouge_scorer.RougeScorer(METRICS, use_stemmer=True, tokenizer=...)``.
``rougeLsum`` needs one sentence per line: predictions and references are split with the regex splitter
of ``suites.rouge.sentences`` before scoring (nltk's punkt data is not available here).

Two ROUGE tokenizers (``ROUGE_TOKENIZERS``; ``--rouge-tokenizer``):

- ``rouge-score`` (default): rouge-score's own, which replicates the original ROUGE-1.5.5: lower-case,
  ``[a-z0-9]`` runs only, Porter stemming of words longer than 3 characters. Comparable with published
  English ROUGE; every word outside ASCII is dropped, so Chinese, Russian or Greek text has no tokens.
- ``unicode``: words of any script (``[^\W_]+`` after case folding); Han, Hiragana and Katakana
  characters one token each (those scripts do not separate words by spaces); Porter stemming of ASCII
  words longer than 3 characters, so English text gets the same tokens as with ``rouge-score``.

``ngram_f1`` recomputes ROUGE-N F1 from n-gram counts with the same tokens; the greedy oracle and
gap-sentence selection use it to try thousands of sentence sets quickly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from records.bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, bootstrap_ci, resample_indices
from suites.rouge.sentences import one_sentence_per_line

METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


ROUGE_TOKENIZERS = ("rouge-score", "unicode")
DEFAULT_ROUGE_TOKENIZER = "rouge-score"
# Scripts written without spaces between words: one token per character.
_PER_CHARACTER = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_UNICODE_TOKEN = re.compile(f"[{_PER_CHARACTER}]|(?:(?![{_PER_CHARACTER}])[^\\W_])+")


class _CachedPorterStemmer:
    def __init__(self):
        from nltk.stem import porter
        self.stem = lru_cache(maxsize=200_000)(porter.PorterStemmer().stem)


@lru_cache(maxsize=1)
def _stemmer() -> _CachedPorterStemmer:
    return _CachedPorterStemmer()


def unicode_tokens(text: str) -> list[str]:
    """Case-folded words of any script, Han/kana one character each, ASCII words over 3 characters
    Porter-stemmed (as rouge-score stems)."""
    stem = _stemmer().stem
    return [stem(t) if len(t) > 3 and t.isascii() else t for t in _UNICODE_TOKEN.findall(text.casefold())]


def rouge_tokens(text: str, tokenizer: str = DEFAULT_ROUGE_TOKENIZER) -> list[str]:
    """The ROUGE tokens of ``text`` under ``tokenizer`` (one of ``ROUGE_TOKENIZERS``)."""
    if tokenizer == "unicode":
        return unicode_tokens(text)
    if tokenizer != "rouge-score":
        raise ValueError(f"unknown ROUGE tokenizer {tokenizer!r}; known: {', '.join(ROUGE_TOKENIZERS)}")
    from rouge_score import tokenize
    return tokenize.tokenize(text, _stemmer())


class _Tokenizer:
    """The object rouge-score's scorer calls ``tokenize`` on."""

    def __init__(self, name: str):
        self.name = name

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text, self.name)


@lru_cache(maxsize=len(ROUGE_TOKENIZERS))
def _scorer(tokenizer: str):
    from rouge_score import rouge_scorer
    rouge_tokens("", tokenizer)  # an unknown name fails here, once
    return rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True, tokenizer=_Tokenizer(tokenizer))


def rouge(prediction: str, reference: str, tokenizer: str = DEFAULT_ROUGE_TOKENIZER) -> dict[str, float]:
    """F1 of every metric for one prediction against one reference."""
    scores = _scorer(tokenizer).score(one_sentence_per_line(reference), one_sentence_per_line(prediction))
    return {metric: float(scores[metric].fmeasure) for metric in METRICS}


#: a reference of which the ROUGE tokenizer keeps a smaller share of word characters is not scored
#: (``pipeline.check_rouge_keeps_references``): ROUGE would compare the few words it keeps, silently
MIN_KEPT_SHARE = 0.9
_WORD_CHARACTER = re.compile(r"[^\W_]")  # a letter or digit of any script
_ROUGE_SCORE_TOKEN = re.compile(r"[a-z0-9]+")  # rouge-score's tokenize: lower-case, then [a-z0-9] runs


def kept_share(text: str, tokenizer: str = DEFAULT_ROUGE_TOKENIZER) -> float | None:
    r"""Share (0..1) of ``text``'s word characters (letters and digits of any script, ``[^\W_]``, after
    the tokenizer's case mapping) that are in its ROUGE tokens under ``tokenizer`` (before stemming):
    1 for English under either tokenizer, ~0 for Russian or Chinese under ``rouge-score`` however many
    ASCII numbers, acronyms or names it holds. None for a text without word characters. Raises
    ValueError for an unknown tokenizer."""
    if tokenizer not in ROUGE_TOKENIZERS:
        rouge_tokens("", tokenizer)  # raises the one error for unknown names
    folded = text.lower() if tokenizer == "rouge-score" else text.casefold()
    words = len(_WORD_CHARACTER.findall(folded))
    if not words:
        return None
    pattern = _ROUGE_SCORE_TOKEN if tokenizer == "rouge-score" else _UNICODE_TOKEN
    kept = sum(len(_WORD_CHARACTER.findall(token)) for token in pattern.findall(folded))
    return kept / words


# --- fast ROUGE-N from counts (same tokens as the scorer) ---------------------------------------


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def f1(overlap: int, predicted: int, reference: int) -> float:
    if overlap == 0 or predicted == 0 or reference == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def ngram_f1(prediction: Counter, reference: Counter) -> float:
    overlap = sum(min(count, reference[gram]) for gram, count in prediction.items())
    return f1(overlap, sum(prediction.values()), sum(reference.values()))


# --- statistics over documents ------------------------------------------------------------------

def ratio_ci(numerator: Sequence[float], denominator: Sequence[float],
             resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
             confidence: float = CONFIDENCE) -> tuple[float | None, float | None, float | None]:
    """Ratio of means of two systems scored on the same documents (paired: both are resampled with
    the same indices), with its percentile bootstrap interval; (None, None, None) where the
    denominator's mean is 0.

    A resample whose denominator mean is 0 is kept, never dropped (dropping narrows the interval): its
    ratio is +inf when its numerator mean is positive, and undefined (0/0) otherwise, which counts as 0
    for the lower bound and +inf for the upper one. A bound that is not finite (more resamples with a
    zero denominator than the tail holds) is returned as None: unbounded. Raises ValueError for unequal
    or empty inputs.
    """
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("ratio of two systems needs the same, non-empty set of documents")
    if b.mean() == 0:
        return None, None, None
    indices = resample_indices(a.size, resamples, seed)
    num, den = a[indices].mean(axis=1), b[indices].mean(axis=1)
    ratios = np.divide(num, den, out=np.full_like(num, np.inf), where=den > 0)
    undefined = (den == 0) & (num == 0)
    tail = (1 - confidence) / 2 * 100
    with np.errstate(invalid="ignore"):  # interpolating between two infinities gives nan: unbounded
        lo = np.percentile(np.where(undefined, 0.0, ratios), tail)
        hi = np.percentile(ratios, 100 - tail)
    return float(a.mean() / b.mean()), *(float(x) if np.isfinite(x) else None for x in (lo, hi))


def summarize(per_doc: Sequence[dict[str, float]]) -> dict[str, float]:
    """``<metric>``, ``<metric>_lo``, ``<metric>_hi`` for every metric, from per-document scores."""
    out = {}
    for metric in METRICS:
        mean, lo, hi = bootstrap_ci([scores[metric] for scores in per_doc])
        out.update({metric: mean, f"{metric}_lo": lo, f"{metric}_hi": hi})
    return out
