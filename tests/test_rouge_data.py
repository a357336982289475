"""Data loading through datasets: local files, derived splits, malformed rows, bad input; the tokenizer."""

import json

import pytest

from suites.rouge.data import load_data, take_examples
from suites.rouge.errors import SuiteError
from suites.rouge.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


GOOD = [{"id": f"d{i}", "article": f"Document number {i}. It has two sentences.",
         "abstract": f"Summary {i}."} for i in range(20)]


def test_malformed_rows_are_skipped_and_counted():
    rows = [
        {"id": "a", "document": "Fine text.", "summary": "Fine."},
        {"id": "b", "document": "No summary here."},
        {"id": "c", "document": "   ", "summary": "Empty document."},
        {"id": "d", "document": 42, "summary": "Not a string."},
        {"id": "e", "document": "Text.", "summary": None},
        {"id": "a", "document": "Duplicate id.", "summary": "Again."},
        {"document": "No id column value.", "summary": "Still fine."},
    ]
    split = take_examples(rows, "test", "document", "summary", "id")
    assert [e.id for e in split.examples] == ["a", "test-6"]
    assert split.scanned == 7
    assert dict(split.skipped) == {"missing summary": 2, "empty document": 1,
                                   "non-string document": 1, "duplicate id": 1}
    assert take_examples(rows, "test", "document", "summary", "id", limit=1).scanned == 1


def test_local_jsonl_with_custom_columns_and_derived_splits(tmp_path):
    rows = GOOD + [{"id": "bad1", "article": "", "abstract": "x"},
                   {"id": "bad2", "article": "y", "abstract": ""}]
    path = _write_jsonl(tmp_path / "papers.jsonl", rows)
    data = load_data(str(path), doc_column="article", summary_column="abstract",
                     cache_dir=tmp_path / "cache")
    assert data.derived_splits  # one file = one split, divided 80/10/10 with a fixed seed
    assert (data.train.scanned, data.eval.scanned) == (18, 2)  # of 22 rows: 18 / 2 / 2
    skipped = sum(data.train.skipped.values()) + sum(data.eval.skipped.values())
    assert len(data.train.examples) + len(data.eval.examples) + skipped == 20
    assert not {e.id for e in data.train.examples} & {e.id for e in data.eval.examples}
    again = load_data(str(path), doc_column="article", summary_column="abstract",
                      cache_dir=tmp_path / "cache")
    assert [e.id for e in again.eval.examples] == [e.id for e in data.eval.examples]


def test_local_csv_with_named_splits(tmp_path):
    import csv
    for split, count in (("train", 5), ("test", 3)):
        with open(tmp_path / f"{split}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "document", "summary"])
            writer.writeheader()
            for i in range(count):
                writer.writerow({"id": f"{split}{i}", "document": f"Doc {i}.", "summary": f"Sum {i}."})
    data = load_data(str(tmp_path), cache_dir=tmp_path / "cache", eval_docs=2)
    assert not data.derived_splits
    assert [e.id for e in data.eval.examples] == ["test0", "test1"]
    assert len(data.train.examples) == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"spec": "missing.jsonl"}, "data not found"),
    ({"doc_column": "body"}, "unknown column 'body'"),
    ({"eval_split": "validation", "train_split": "nope"}, "unknown split 'nope'"),
])
def test_bad_input_is_one_clear_error(tmp_path, kwargs, message):
    _write_jsonl(tmp_path / "train.jsonl", GOOD)
    _write_jsonl(tmp_path / "validation.jsonl", GOOD[:3])
    spec = kwargs.pop("spec", str(tmp_path))
    if spec == "missing.jsonl":
        spec = str(tmp_path / spec)
    kwargs.setdefault("doc_column", "article")
    kwargs.setdefault("eval_split", "validation")
    with pytest.raises(SuiteError, match=message):
        load_data(spec, summary_column="abstract", cache_dir=tmp_path / "cache", **kwargs)


def test_empty_after_filtering_is_an_error(tmp_path):
    path = _write_jsonl(tmp_path / "all_bad.jsonl",
                        [{"id": str(i), "document": "", "summary": "x"} for i in range(10)])
    with pytest.raises(SuiteError, match="no valid examples"):
        load_data(str(path), cache_dir=tmp_path / "cache")


def test_aclsum_default_is_full_text_and_abstract(tmp_path):
    data = load_data("aclsum", cache_dir=tmp_path, eval_docs=3)
    assert len(data.train.examples) == 100 and data.eval.name == "test"
    example = data.eval.examples[0]
    assert len(example.document) > 10 * len(example.summary) > 0
    assert any(tmp_path.glob("aclsum-*/validation.jsonl"))  # converted once into the cache


def test_tokenizer_training_is_cached_and_shared(tmp_path):
    texts = [f"The encoder reads document {i} and the decoder writes summary {i}." for i in range(50)]
    tokenizer = train_tokenizer(texts, vocab_size=120, cache_dir=tmp_path)
    assert [tokenizer.backend.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tokenizer.model_overrides() == {"vocab_size": tokenizer.vocab_size, "pad_token_id": 0,
                                           "eos_token_id": 1, "decoder_start_token_id": 3,
                                           "bos_token_id": 3, "forced_eos_token_id": None,
                                           "forced_bos_token_id": None}
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 1
    assert train_tokenizer(texts, vocab_size=120, cache_dir=tmp_path).fingerprint == tokenizer.fingerprint
    saved = tokenizer.save(tmp_path / "tok" / "tokenizer.json")
    for path in (saved, saved.parent):
        assert load_tokenizer(path).fingerprint == tokenizer.fingerprint
    encoded = tokenizer.encode("the decoder writes")
    assert tokenizer.decode(encoded.ids + [1, 0]) == "the decoder writes"
    with pytest.raises(SuiteError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "nowhere")
