"""Gap-sentence generation (GSG), the self-supervised objective of PEGASUS that LOCOST pre-trains with.

For each document, within the whole sentences that fit in ``input_len`` tokens: every sentence is
scored by its ROUGE-1 F1 against the rest of that window ("Ind-Orig" in PEGASUS), the best-scoring
sentences (``ratio`` of the window's sentences; one that does not fit in the ``target_len`` tokens
left is passed over for the next) are replaced each by one mask token in the input, and the target
is those sentences in document order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from suites.rouge.examples import TrainingExample
from suites.rouge.scoring import DEFAULT_ROUGE_TOKENIZER, ngram_f1, ngrams, rouge_tokens
from suites.rouge.sentences import split_sentences
from suites.rouge.tokenizer import SharedTokenizer


def rank_sentences(sentences: Sequence[str], rouge_tokenizer: str = DEFAULT_ROUGE_TOKENIZER) -> list[int]:
    """Sentence indices, best gap candidate first: by ROUGE-1 F1 of each sentence against the others."""
    unigrams = [ngrams(rouge_tokens(s, rouge_tokenizer), 1) for s in sentences]
    total = sum(unigrams, Counter())
    scores = [ngram_f1(own, total - own) for own in unigrams]
    return sorted(range(len(sentences)), key=lambda i: (-scores[i], i))


def gap_sentence_example(document: str, tokenizer: SharedTokenizer, input_len: int, target_len: int,
                         ratio: float, rouge_tokenizer: str = DEFAULT_ROUGE_TOKENIZER,
                         ) -> TrainingExample | None:
    """One GSG example, or None for a document with fewer than two sentences in its window."""
    eos, mask = tokenizer.special.eos, tokenizer.special.mask
    sentences = split_sentences(document)
    encoded = tokenizer.encode_batch(sentences) if sentences else []
    window, used = [], 0
    for sentence, enc in zip(sentences, encoded, strict=True):
        if used + len(enc) > input_len - 1:  # one position is kept for EOS
            break
        window.append((sentence, enc.ids))
        used += len(enc)
    if len(window) < 2:
        return None
    n_gaps = max(1, round(ratio * len(window)))
    gaps, target_tokens = set(), 0
    for index in rank_sentences([s for s, _ in window], rouge_tokenizer):
        n = len(window[index][1])
        if target_tokens + n <= target_len - 1:  # a sentence too long for the target is passed over
            gaps.add(index)
            target_tokens += n
            if len(gaps) == n_gaps:
                break
    if not gaps:
        return None
    input_ids = [t for i, (_, ids) in enumerate(window) for t in ([mask] if i in gaps else ids)]
    labels = [t for i, (_, ids) in enumerate(window) if i in gaps for t in ids]
    return TrainingExample(input_ids + [eos], labels + [eos])
