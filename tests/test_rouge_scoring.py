"""ROUGE scoring, sentence splitting, extractive references and bootstrap statistics."""

import numpy as np
import pytest

from suites.rouge import extractive, scoring
from suites.rouge.sentences import one_sentence_per_line, split_sentences


def test_identical_texts_score_one_and_disjoint_texts_zero():
    text = "The state-space encoder scales linearly. It summarizes long documents."
    assert scoring.rouge(text, text) == {metric: pytest.approx(1.0) for metric in scoring.METRICS}
    assert scoring.rouge("alpha beta gamma.", "delta epsilon zeta.") == {m: 0.0 for m in scoring.METRICS}


def test_rougelsum_sees_sentences_of_unsplit_text():
    # prediction and reference hold the same sentences in another order: the summary-level LCS
    # (one sentence per line) matches them all, the flat LCS does not
    reference = "Cats sleep all day. Dogs bark at night."
    prediction = "Dogs bark at night. Cats sleep all day."
    scores = scoring.rouge(prediction, reference)
    assert scores["rougeLsum"] == pytest.approx(1.0)
    assert scores["rougeL"] < 1.0


def test_ngram_f1_matches_rouge_score():
    prediction, reference = "the cat sat on a mat today", "a cat sat on the mat"
    scores = scoring.rouge(prediction, reference)
    for n, metric in ((1, "rouge1"), (2, "rouge2")):
        grams = [scoring.ngrams(scoring.rouge_tokens(t), n) for t in (prediction, reference)]
        assert scoring.ngram_f1(*grams) == pytest.approx(scores[metric])


@pytest.mark.parametrize("text, expected", [
    ("Fig. 3 shows the results. We improve by 3.5 points.",
     ["Fig. 3 shows the results.", "We improve by 3.5 points."]),
    ("Models, e.g. BERT, help. See Sec. 4 and Eq. 2 for details.",
     ["Models, e.g. BERT, help.", "See Sec. 4 and Eq. 2 for details."]),
    ("As Smith et al. (2019) show, it works. J. Smith agrees with the U.S. Army.",
     ["As Smith et al. (2019) show, it works.", "J. Smith agrees with the U.S. Army."]),
    ("Really? Yes! \"Quoted.\" Then (a bracket). Version 1.2 is out.",
     ["Really?", "Yes!", "\"Quoted.\"", "Then (a bracket).", "Version 1.2 is out."]),
    ("first line without a period\nSecond line. third stays joined.",
     ["first line without a period", "Second line. third stays joined."]),
    ("", []),
])
def test_sentence_splitter_tricky_cases(text, expected):
    assert split_sentences(text) == expected


def test_one_sentence_per_line():
    text = "Alpha beta. Gamma delta.\n\nEpsilon."
    assert one_sentence_per_line(text) == "Alpha beta.\nGamma delta.\nEpsilon."
    # a single letter before the period reads as an initial (documented limit)
    assert one_sentence_per_line("We use k. Then") == "We use k. Then"


DOCUMENT = "Dogs bark loudly. The cat sat. On the mat. The cat sat on the mat and the dog sat on the cat."
REFERENCE = "the cat sat on the mat"


def test_lead_k_by_hand():
    assert extractive.lead(DOCUMENT, 2) == "Dogs bark loudly.\nThe cat sat."
    assert extractive.lead(DOCUMENT, 10).count("\n") == 3  # all four sentences
    # lead-2 tokens: dog bark loudli the cat sat -> 3 of 6 unigrams, 2 of 5 bigrams match
    scores = scoring.rouge(extractive.lead(DOCUMENT, 2), REFERENCE)
    assert scores["rouge1"] == pytest.approx(0.5)
    assert scores["rouge2"] == pytest.approx(0.4)


def test_greedy_oracle_by_hand():
    sentences = split_sentences(DOCUMENT)
    # step 1: "The cat sat." and "On the mat." tie at mean(R1 2/3, R2 4/7) = 0.619 (the long last
    # sentence gets mean(12/19, 10/17) = 0.610): the earlier wins; step 2: adding "On the mat."
    # gives mean(1, 8/9) = 0.944; step 3: any other sentence lowers precision, so the oracle stops
    assert extractive.oracle_indices(sentences, REFERENCE) == [1, 2]
    summary = extractive.oracle(DOCUMENT, REFERENCE)
    assert summary == "The cat sat.\nOn the mat."
    assert scoring.rouge(summary, REFERENCE)["rouge1"] == pytest.approx(1.0)
    assert extractive.oracle_indices(sentences, "zebra quantum") == []


def test_bootstrap_interval_contains_mean_and_narrows_with_more_documents():
    rng = np.random.default_rng(1)
    few, many = rng.uniform(0, 1, 20), rng.uniform(0, 1, 500)
    for values in (few, many):
        mean, lo, hi = scoring.bootstrap_ci(values)
        assert lo <= mean <= hi
        assert mean == pytest.approx(values.mean())
    width = lambda v: scoring.bootstrap_ci(v)[2] - scoring.bootstrap_ci(v)[1]
    assert width(many) < width(few) / 2
    assert scoring.bootstrap_ci(few) == scoring.bootstrap_ci(few)  # fixed seed


def test_paired_ratio():
    base = np.linspace(0.2, 0.4, 30)
    ratio, lo, hi = scoring.ratio_ci(0.9 * base, base)
    assert ratio == pytest.approx(0.9) and lo == pytest.approx(0.9) and hi == pytest.approx(0.9)
    ratio, lo, hi = scoring.ratio_ci(base[::-1], base)
    assert ratio == pytest.approx(1.0)
    assert lo < ratio < hi
    assert scoring.ratio_ci([0.1, 0.2], [0.0, 0.0]) == (None, None, None)


def test_summarize_fields():
    summary = scoring.summarize([scoring.rouge("a b c.", "a b d."), scoring.rouge("x y.", "x y.")])
    assert list(summary) == [f"{m}{s}" for m in scoring.METRICS for s in ("", "_lo", "_hi")]
