"""Extractive reference points: Lead-k and the greedy ROUGE oracle.

Both work on the text a model would see at a given input length (the document prefix covered by
the truncated tokens), so that they bound what can be extracted from that input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from suites.rouge.scoring import DEFAULT_ROUGE_TOKENIZER, f1, ngrams, rouge_tokens
from suites.rouge.sentences import split_sentences


def lead(text: str, k: int = 3) -> str:
    """The first ``k`` sentences, one per line."""
    return "\n".join(split_sentences(text)[:k])


def oracle_indices(sentences: Sequence[str], reference: str,
                   tokenizer: str = DEFAULT_ROUGE_TOKENIZER) -> list[int]:
    """Greedy oracle (as in Nallapati et al. 2017 / BertSum): repeatedly add the sentence that most
    increases the mean of ROUGE-1 and ROUGE-2 F1 of the selection against the reference; stop when
    no sentence increases it. Ties go to the earlier sentence. Returns indices in document order.
    ``tokenizer``: the ROUGE tokenizer (``scoring.ROUGE_TOKENIZERS``)."""
    reference_tokens = rouge_tokens(reference, tokenizer)
    reference_grams = {n: ngrams(reference_tokens, n) for n in (1, 2)}
    reference_total = {n: sum(reference_grams[n].values()) for n in (1, 2)}
    candidate_grams = [{n: ngrams(rouge_tokens(s, tokenizer), n) for n in (1, 2)} for s in sentences]

    selected: list[int] = []
    chosen = {1: Counter(), 2: Counter()}  # n-grams of the selection
    chosen_total = {1: 0, 2: 0}
    overlap = {1: 0, 2: 0}
    best_score = 0.0
    while True:
        best = None
        for index, grams in enumerate(candidate_grams):
            if index in selected:
                continue
            # overlap after adding the candidate: only the candidate's n-grams can change it
            new_overlap = {n: overlap[n] + sum(
                min(chosen[n][g] + c, reference_grams[n][g]) - min(chosen[n][g], reference_grams[n][g])
                for g, c in grams[n].items()) for n in (1, 2)}
            score = sum(f1(new_overlap[n], chosen_total[n] + sum(grams[n].values()),
                           reference_total[n]) for n in (1, 2)) / 2
            if score > best_score:
                best_score, best = score, (index, new_overlap)
        if best is None:
            return sorted(selected)
        index, overlap = best
        selected.append(index)
        for n in (1, 2):
            chosen[n].update(candidate_grams[index][n])
            chosen_total[n] += sum(candidate_grams[index][n].values())


def oracle(text: str, reference: str, tokenizer: str = DEFAULT_ROUGE_TOKENIZER) -> str:
    """The greedy oracle summary of ``text``, one sentence per line."""
    sentences = split_sentences(text)
    return "\n".join(sentences[i] for i in oracle_indices(sentences, reference, tokenizer))
