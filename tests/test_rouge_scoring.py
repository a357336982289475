"""ROUGE scoring, sentence splitting, extractive references and bootstrap statistics."""

import math

import numpy as np
import pytest

from records.bootstrap import resample_indices
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


NON_LATIN = {
    "chinese": "巴黎是法国的首都。它位于塞纳河畔。",
    "russian": "Москва — столица России. Она стоит на реке Москве.",
    "greek": "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας. Βρίσκεται στην Αττική.",
}


@pytest.mark.parametrize("language", NON_LATIN)
def test_identical_non_latin_texts_score_one_with_the_unicode_tokenizer(language):
    text = NON_LATIN[language]
    assert scoring.rouge(text, text, "unicode") == {m: 1.0 for m in scoring.METRICS}
    # rouge-score's own tokenizer sees no token at all: the fault the unicode tokenizer exists for
    assert scoring.rouge(text, text, "rouge-score") == {m: 0.0 for m in scoring.METRICS}
    other = NON_LATIN["russian" if language != "russian" else "greek"]
    assert scoring.rouge(other, text, "unicode")["rouge1"] == 0.0


def test_unicode_tokens_by_hand_and_equal_to_rouge_score_on_english():
    assert scoring.rouge_tokens("巴黎是首都。Москва Running, ΑΘΉΝΑ x_y", "unicode") == [
        "巴", "黎", "是", "首", "都", "москва", "run", "αθήνα", "x", "y"]
    english = "The cats were running quickly; 3.5 dogs (e.g. 42) didn't bark at the U.S. Army."
    assert scoring.rouge_tokens(english, "unicode") == scoring.rouge_tokens(english, "rouge-score")
    with pytest.raises(ValueError, match="unknown ROUGE tokenizer 'nltk'; known: rouge-score, unicode"):
        scoring.rouge("a", "a", "nltk")


@pytest.mark.parametrize("text, expected", [
    ("He lives in Paris. École is near.", ["He lives in Paris.", "École is near."]),
    ("Это город. Он большой! «Да», сказал он.", ["Это город.", "Он большой!", "«Да», сказал он."]),
    ("Η Αθήνα. Ω θεέ μου.", ["Η Αθήνα.", "Ω θεέ μου."]),
    ("巴黎是首都。东京也是！真的吗？是的", ["巴黎是首都。", "东京也是！", "真的吗？", "是的"]),
    ("तुम कहाँ हो। मैं यहाँ हूँ।", ["तुम कहाँ हो।", "मैं यहाँ हूँ।"]),
    ("Это не конец. а продолжение.", ["Это не конец. а продолжение."]),  # lower case joins, as in Latin
])
def test_sentence_starts_in_any_script(text, expected):
    assert split_sentences(text) == expected


def test_lead_3_of_a_non_latin_document_whose_summary_is_its_first_three_sentences():
    document = "Первое предложение. Второе предложение! 第三句话。Четвёртое предложение. Пятое."
    reference = "Первое предложение. Второе предложение! 第三句话。"
    assert extractive.lead(document, 3) == "Первое предложение.\nВторое предложение!\n第三句话。"
    assert scoring.rouge(extractive.lead(document, 3), reference, "unicode") == {
        m: 1.0 for m in scoring.METRICS}
    # lead-2 by hand: tokens первое предложение второе предложение (4) against 8 reference tokens
    # (4 + 第 三 句 话): R1 P = 1, R = 4/8, F1 = 2/3; bigrams 3 of 3 predicted, of 7 reference: F1 = 0.6
    scores = scoring.rouge(extractive.lead(document, 2), reference, "unicode")
    assert scores["rouge1"] == pytest.approx(2 / 3) and scores["rouge2"] == pytest.approx(0.6)
    assert extractive.oracle(document, reference, "unicode").splitlines() == split_sentences(reference)


def ratio_ci_ref(a, b, resamples=1000, seed=0):
    """Per-resample ratios by a plain loop over the same resamples: a zero baseline mean gives +inf (or, for
    0/0, 0 at the lower bound and +inf at the upper); non-finite bounds are None."""
    low, high = [], []
    for row in resample_indices(len(a), resamples, seed):
        num, den = sum(a[i] for i in row), sum(b[i] for i in row)
        ratio = num / den if den > 0 else math.inf
        low.append(0.0 if den == 0 and num == 0 else ratio)
        high.append(ratio)
    with np.errstate(invalid="ignore"):
        bounds = np.percentile(low, 2.5), np.percentile(high, 97.5)
    return sum(a) / sum(b), *(float(x) if np.isfinite(x) else None for x in bounds)


@pytest.mark.parametrize("a, b", [
    ([0.3, 0.2, 0.4, 0.1, 0.3], [0.0, 0.0, 0.5, 0.2, 0.4]),  # 1% of resamples: a finite upper bound
    ([0.1, 0.2, 0.3, 0.2], [0.0, 0.0, 0.0, 0.4]),  # 32%: unbounded above
    ([0.0, 0.0, 0.3, 0.2], [0.0, 0.0, 0.4, 0.1]),  # 0/0 resamples: undefined ratios
    ([0.0, 0.1, 0.0, 0.3, 0.2], [0.2, 0.0, 0.0, 0.3, 0.1]),
])
def test_ratio_ci_keeps_resamples_whose_baseline_mean_is_zero(a, b):
    ratio, lo, hi = scoring.ratio_ci(a, b)
    expected = ratio_ci_ref(a, b)
    assert ratio == pytest.approx(expected[0], rel=1e-12)
    assert lo == pytest.approx(expected[1], rel=1e-12)
    assert hi == (None if expected[2] is None else pytest.approx(expected[2], rel=1e-12))


# (text, its letters and digits counted by hand, how many of them are [a-z0-9] after lower-casing)
MIXED_SCRIPTS = [
    ("Путин посетил G20 в 2023 году.", 24, 7),  # Russian with an acronym and a year
    ("中国GDP增长5%。", 8, 4),  # Chinese with an acronym and a number
    ("Η ΕΕ και το NATO.", 12, 4),  # Greek with an acronym
    ("زار Macron القاهرة", 16, 6),  # Arabic with a Latin name
    ("東京でiPhone 15を買った", 15, 8),  # Japanese with a product name
    ("Zoë Müller met the CEO in 2021.", 24, 22),  # English with two accented letters
    ("The model reads 16,384 tokens.", 24, 24),
]


@pytest.mark.parametrize("text, letters, ascii_kept", MIXED_SCRIPTS)
def test_kept_share_counts_the_letters_each_rouge_tokenizer_keeps(text, letters, ascii_kept):
    assert scoring.kept_share(text) == pytest.approx(ascii_kept / letters)
    assert scoring.kept_share(text, "unicode") == 1.0  # words of any script
    assert scoring.kept_share("— !? …") is None


@pytest.mark.parametrize("text, letters, ascii_kept", MIXED_SCRIPTS)
def test_references_rouge_would_score_on_a_few_ascii_words_are_refused(text, letters, ascii_kept):
    from suites.rouge.errors import SuiteError
    from suites.rouge.pipeline import check_rouge_keeps_references

    english = ["The state-space encoder reads long documents."] * 3
    check_rouge_keeps_references(english + [text], "unicode")
    if ascii_kept / letters >= scoring.MIN_KEPT_SHARE:
        check_rouge_keeps_references(english + [text], "rouge-score")
        return
    with pytest.raises(SuiteError) as refused:
        check_rouge_keeps_references(english + [text], "rouge-score")
    assert str(refused.value) == (
        f"1 of 4 reference summaries keep less than 90% of their letters and digits as ROUGE tokens under "
        f"the 'rouge-score' tokenizer (as little as {ascii_kept / letters:.0%}); rouge-score's tokenizer "
        "keeps [a-z0-9] only: rerun with --rouge-tokenizer unicode")
