"""Training budget, input truncation, gap sentences, and the ROUGE suite end to end (real models)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli.args import lengths_or_full as parse_lengths
from models import build
from models.families import FAMILIES
from records import ROUGE_FIELDS
from suites.rouge.generation import GenerationSettings, generate, truncate, visible_text
from suites.rouge.gsg import gap_sentence_example
from suites.rouge.tokenizer import SharedTokenizer, _special_ids, train_tokenizer
from suites.rouge.training import Budget, TrainingExample, lr_factor, parameter_groups, train

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("state space models read long documents while sparse attention models read windows of tokens "
         "and the decoder writes short summaries from encoder states").split()
SENTENCES = [" ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(6 + i % 5)).capitalize() + "."
             for i in range(60)]
DOCUMENT = " ".join(SENTENCES)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(SENTENCES + [DOCUMENT], vocab_size=200,
                           cache_dir=tmp_path_factory.mktemp("cache"))


def test_learning_rate_schedule():
    assert lr_factor(0, 10, 100, "linear") == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, "linear") == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, "linear") == pytest.approx(0.5)
    assert lr_factor(99, 10, 100, "cosine") == pytest.approx(0.0, abs=1e-3)
    assert lr_factor(55, 10, 100, "cosine") == pytest.approx(0.5)


def test_ssm_parameters_biases_and_norms_get_no_weight_decay():
    model = build("locost", "tiny").model
    decay, no_decay = parameter_groups(model, 0.01)
    exempt = {id(p) for p in no_decay["params"]}
    for name, param in model.named_parameters():
        if getattr(param, "_no_weight_decay", False) or param.ndim < 2:
            assert id(param) in exempt, name
    assert any(getattr(p, "_no_weight_decay", False) and p.ndim >= 2 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_every_model_sees_the_same_tokens(tokenizer):
    encoded = tokenizer.encode_batch(SENTENCES[:6])
    examples = [TrainingExample(e.ids + [1], e.ids[:4] + [1]) for e in encoded]
    budget = Budget(steps=2, batch_size=2, train_len=64, target_len=8, warmup_steps=1)
    logs = []
    for family in ("locost", "led"):
        handle = build(family, "tiny", **tokenizer.model_overrides())
        before = [p.detach().clone() for p in handle.model.parameters()]
        logs.append(train(handle, examples, budget, budget.steps, "finetune", 0, family, progress=False))
        assert any(not torch.equal(a, b) for a, b in zip(before, handle.model.parameters(), strict=True))
    assert logs[0].input_tokens == logs[1].input_tokens > 0
    assert logs[0].label_tokens == logs[1].label_tokens > 0
    assert all(len(log.losses) == 2 for log in logs)


def test_inputs_fed_to_the_model_respect_the_length(tokenizer):
    encoded = tokenizer.encode(DOCUMENT)
    handle = build("longt5-tglobal", "tiny", **tokenizer.model_overrides())
    seen = []
    handle.model.get_encoder().register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    for length in parse_lengths("40,100,full"):
        ids, kept = truncate(encoded, length, tokenizer.special.eos)
        expected = len(encoded) + 1 if length is None else length
        assert len(ids) == expected and ids[-1] == tokenizer.special.eos and kept == expected - 1
        text = visible_text(DOCUMENT, encoded, kept)
        assert DOCUMENT.startswith(text)
        assert tokenizer.encode(text).ids[:kept - 1] == encoded.ids[:kept - 1]
        seen.clear()
        generate(handle, tokenizer, [ids], GenerationSettings(max_new_tokens=3), progress=False)
        assert seen == [expected]
    assert parse_lengths("2k,1k,full,1k") == (1024, 2048, None)


def test_gap_sentence_example(tokenizer):
    example = gap_sentence_example(DOCUMENT, tokenizer, input_len=120, target_len=40, ratio=0.3)
    mask, eos = tokenizer.special.mask, tokenizer.special.eos
    assert len(example.input_ids) <= 120 and len(example.labels) <= 40
    assert example.input_ids[-1] == eos and example.labels[-1] == eos
    n_masks = example.input_ids.count(mask)
    assert n_masks >= 1
    # the target holds exactly the masked sentences: input + target rebuild the window's tokens
    assert len(example.input_ids) - n_masks + len(example.labels) - 1 <= 120
    target = tokenizer.decode(example.labels)
    assert target and all(part.strip() in DOCUMENT for part in target.split(". ") if part.strip())
    assert gap_sentence_example("One sentence only.", tokenizer, 120, 40, 0.3) is None


def _cli(argv):
    from cli.rouge import main
    return main(argv)


def _short_papers(path: Path, cache: Path) -> Path:
    """The opening of 20 ACLSum papers as a local JSONL file, so that 'full' stays short."""
    from suites.rouge.data import load_data

    papers = load_data("aclsum", cache_dir=cache, train_docs=20, eval_docs=1).train.examples
    path.write_text("".join(json.dumps({"id": p.id, "document": p.document[:3000], "summary": p.summary})
                            + "\n" for p in papers))
    return path


def test_end_to_end_tiny_run_and_resume(tmp_path, capsys):
    data = _short_papers(tmp_path / "papers.jsonl", tmp_path / "cache")
    common = ["--data", str(data), "--eval-split", "validation", "--vocab-size", "500",
              "--max-new-tokens", "8", "--no-progress", "--no-report", "--device", "cpu",
              "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    argv = common + ["--models", "locost,longt5-tglobal", "--steps", "2", "--batch-size", "1",
                     "--train-len", "192", "--target-len", "64", "--warmup-steps", "1", "--gsg-steps", "1",
                     "--eval-lens", "128,full", "--curve-every", "1", "--run-id", "tiny"]
    assert _cli(argv) == 0
    run_dir = tmp_path / "tiny"
    rows = [json.loads(line) for line in (run_dir / "rouge.jsonl").read_text().splitlines()]
    assert all(tuple(row) == ROUGE_FIELDS for row in rows)
    systems = {(r["system"], r["input_len"]) for r in rows}
    assert systems == {(s, n) for s in ("locost-tiny", "longt5-tglobal-tiny", "lead-3", "oracle")
                       for n in (128, None)}
    for row in rows:
        assert row["n_docs"] == 2 and row["dataset"] == f"{data}:validation"
        for metric in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert 0 <= row[f"{metric}_lo"] <= row[metric] <= row[f"{metric}_hi"] <= 1
        model = row["kind"] == "model"
        assert (row["params_total"] > 0) if model else row["params_total"] is None
        assert row["train_steps"] == (2 if model else None)
    oracle = {r["input_len"]: r["rouge1"] for r in rows if r["system"] == "oracle"}
    assert oracle[None] >= oracle[128] > 0
    for path in (run_dir / "predictions").glob("*-128.jsonl"):
        assert all(p["input_len"] <= 128 for p in map(json.loads, path.read_text().splitlines()))
    for row in rows:  # the reference NLL beside ROUGE: rouge.jsonl aggregates nll/<system>-<length>.jsonl
        if row["kind"] != "model":
            assert row["nll"] is None and row["nll_gain"] is None
            continue
        label = "full" if row["input_len"] is None else row["input_len"]
        docs = [json.loads(line) for line in (run_dir / "nll" / f"{row['system']}-{label}.jsonl").read_text()
                .splitlines()]
        assert len(docs) == 2 and all(0 < d["reference_tokens"] <= 64 for d in docs)
        assert all(d["nll"] == pytest.approx(d["nll_sum"] / d["reference_tokens"]) for d in docs)
        assert row["nll"] == pytest.approx(sum(d["nll"] for d in docs) / 2)
        assert row["nll_tokens"] == sum(d["reference_tokens"] for d in docs) and row["nll_gain_from"] == 128
    for system in ("locost-tiny", "longt5-tglobal-tiny"):  # learning curves: every step, both phases
        path = run_dir / "curves" / f"{system}.jsonl"
        points = [json.loads(line) for line in path.read_text().splitlines()]
        assert [(p["phase"], p["step"]) for p in points] == [("gsg", 0), ("gsg", 1)] + [
            ("finetune", s) for s in (0, 1, 2)]
        assert all(p["val_nll"] > 0 for p in points)  # one held-out paper has gap sentences within 192 tokens
        assert [p["val_docs"] for p in points] == [1, 1, 2, 2, 2]
    relative = [json.loads(line) for line in (run_dir / "relative.jsonl").read_text().splitlines()]
    assert {(r["system"], r["baseline"]) for r in relative} == {("locost-tiny", "longt5-tglobal-tiny")}
    docs = [json.loads(line) for line in (run_dir / "rouge_docs.jsonl").read_text().splitlines()]
    for row in rows:  # per-document scores average to rouge.jsonl's means, for every system and length
        mine = [d for d in docs if (d["system"], d["input_len"]) == (row["system"], row["input_len"])]
        assert len(mine) == row["n_docs"] and len({d["doc_id"] for d in mine}) == row["n_docs"]
        for metric in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert sum(d[metric] for d in mine) / len(mine) == pytest.approx(row[metric], abs=1e-12)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["finished_at"] and run["rouge"]["use_stemmer"] and "regex" in run["sentence_splitter"]
    phases = [s["training"] for s in run["systems"] if s["kind"] == "model"]
    assert [[p["phase"] for p in phase] for phase in phases] == [["gsg", "finetune"]] * 2
    for first, second in zip(*phases, strict=True):  # same budget: same tokens in every phase
        assert first["input_tokens"] == second["input_tokens"] > 0
        assert first["label_tokens"] == second["label_tokens"] > 0
    assert (run_dir / "checkpoints" / "locost-tiny" / "tokenizer.json").is_file()
    out = capsys.readouterr().out
    assert "R1/R2/RL @ 128" in out and "Relative quality" in out

    assert _cli(argv) == 0  # the same command again reuses checkpoints and predictions
    assert capsys.readouterr().out.count("predictions reused") == 2
    assert [json.loads(line) for line in (run_dir / "rouge.jsonl").read_text().splitlines()] == rows

    # a saved checkpoint evaluated on its own gives the same scores (its tokenizer travels with it)
    checkpoint = run_dir / "checkpoints" / "locost-tiny"
    assert _cli(common + ["--checkpoint", str(checkpoint), "--no-extractive", "--eval-lens", "128",
                          "--target-len", "64", "--run-id", "ckpt"]) == 0
    ckpt_rows = [json.loads(line) for line in (tmp_path / "ckpt" / "rouge.jsonl").read_text().splitlines()]
    assert ckpt_rows == [r for r in rows if r["system"] == "locost-tiny" and r["input_len"] == 128]


@pytest.mark.parametrize("argv, message", [
    (["--eval-lens", "0k"], "argument --eval-lens: a length must be a positive whole number"),
    (["--eval-lens", "1"], "bad length 1: an input needs at least 2 tokens"),
    (["--train-len", "full"], "train-len"),
    (["--models", "gpt2"], "unknown model family"),
    (["--doc-column", "body"], "unknown column 'body'"),
    (["--steps", "-3"], "argument --steps: must be positive"),
    (["--curve-every", "-1"], "argument --curve-every: "),
    (["--curve-docs", "0"], "argument --curve-docs: must be positive"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert _cli(argv + ["--cache-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_cli_missing_data_file_subprocess(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.rouge", "--data", str(tmp_path / "none.jsonl"),
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: data not found: {tmp_path / 'none.jsonl'} "
                                                  "(use 'aclsum', a local file or directory, or hub:ID)"]


def _non_latin_papers(path: Path, ascii_words: bool = False) -> Path:
    """20 short Russian/Chinese documents whose summaries are their first three sentences; with
    `ascii_words` every sentence also holds a number, an acronym or a Latin name."""
    rows, hanzi = [], "一二三四五六七八九十"
    words = "один два три четыре пять шесть семь восемь девять десять".split()
    if ascii_words:
        words = [f"{word} {extra}" for word, extra in zip(words, ["2024", "NASA", "Macron", "G20", "5"] * 2,
                                                               strict=True)]
    for i in range(20):
        sentences = [f"Документ {words[i % 10]} начинается здесь.", f"第{hanzi[i // 2]}个文件的第二句话。",
                     f"Третье предложение {words[i // 2]}!", "Дальше идёт текст.", "还有更多的内容。"]
        rows.append({"id": str(i), "document": " ".join(sentences), "summary": " ".join(sentences[:3])})
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def test_non_latin_references_need_the_unicode_tokenizer(tmp_path, capsys):
    data = _non_latin_papers(tmp_path / "ru-zh.jsonl")
    common = ["--data", str(data), "--eval-split", "test", "--models", ",", "--no-progress", "--no-report",
              "--device", "cpu", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
              "--vocab-size", "300", "--eval-lens", "full"]
    assert _cli(common) == 2  # the default rouge-score tokenizer would score every document 0
    assert capsys.readouterr().err.strip() == (
        "error: 2 of 2 reference summaries keep less than 90% of their letters and digits as ROUGE tokens "
        "under the 'rouge-score' tokenizer (as little as 0%); rouge-score's tokenizer keeps [a-z0-9] only: "
        "rerun with --rouge-tokenizer unicode")
    mixed = ["--data", str(_non_latin_papers(tmp_path / "mixed.jsonl", ascii_words=True)), *common[2:]]
    assert _cli(mixed) == 2  # its ROUGE would compare the numbers and Latin words alone
    assert capsys.readouterr().err.strip() == (
        "error: 2 of 2 reference summaries keep less than 90% of their letters and digits as ROUGE tokens "
        "under the 'rouge-score' tokenizer (as little as 10%); rouge-score's tokenizer keeps [a-z0-9] only: "
        "rerun with --rouge-tokenizer unicode")
    assert _cli(common + ["--rouge-tokenizer", "unicode", "--run-id", "unicode"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "unicode" / "rouge.jsonl").read_text().splitlines()]
    lead = next(r for r in rows if r["system"] == "lead-3")
    assert lead["rouge_tokenizer"] == "unicode" and lead["n_docs"] == 2
    assert [lead[m] for m in ("rouge1", "rouge2", "rougeL", "rougeLsum")] == [1.0] * 4
    run = json.loads((tmp_path / "unicode" / "run.json").read_text())
    assert run["rouge"]["tokenizer"] == "unicode" and run["rouge"]["tokenizer_default"] == "rouge-score"


def hand_tokenizer(specials: dict[int, str]) -> SharedTokenizer:
    """A word-level tokenizer over WORDS with the special tokens at the given ids (the others are words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = iter(dict.fromkeys(WORDS))
    size = len(set(WORDS)) + len(specials)
    vocab = {specials[i] if i in specials else next(words): i for i in range(size)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.add_special_tokens(list(specials.values()))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return SharedTokenizer(backend, _special_ids(backend), "by hand")


#: special ids that are not T5's (pad 0, EOS 1): id 1 is a word in the first and last
HAND_SPECIALS = [
    {0: "<pad>", 3: "</s>", 4: "<unk>", 5: "<s>", 6: "<mask>"},
    {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", 4: "<mask>"},  # LED's / BART's order
    {2: "<unk>", 7: "<pad>", 9: "</s>"},  # no BOS: the decoder starts from PAD
]


def greedy_reference(handle, ids: list[int], eos: int, start: int, steps: int) -> list[int]:
    """Greedy decoding by hand: argmax of the full decoder's last logits, no cache, no forced token."""
    input_ids = torch.tensor([ids])
    inputs = handle.prepare_inputs(input_ids, torch.ones_like(input_ids))
    out = [start]
    with torch.no_grad():
        for _ in range(steps):
            logits = handle.model(**inputs, decoder_input_ids=torch.tensor([out])).logits
            out.append(int(logits[0, -1].argmax()))
            if out[-1] == eos:
                break
    return out[1:]


@pytest.mark.parametrize("specials", HAND_SPECIALS, ids=["eos3", "led-order", "no-bos"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_summaries_use_the_shared_tokenizers_special_ids_in_every_family(family, specials):
    """No family keeps a token id of its own tokenizer: its configs carry the shared tokenizer's ids and
    its summaries are plain greedy decoding (PEGASUS-X forced EOS id 1 at the length cap)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a loaded machine
    try:
        _check_special_ids(family, specials)
    finally:
        torch.set_num_threads(threads)


def _check_special_ids(family, specials):
    tokenizer = hand_tokenizer(specials)
    handle = build(family, "tiny", **tokenizer.model_overrides())
    handle.model.double().eval()
    torch.manual_seed(0)
    with torch.no_grad():  # large random weights: greedy decoding writes varied words, not EOS at once
        for name, p in handle.model.named_parameters():
            if ".kernel." not in name and p.dim() > 1:
                p.normal_(0.0, 0.3)
    s = tokenizer.special
    expected = {"pad_token_id": s.pad, "eos_token_id": s.eos, "bos_token_id": s.bos,
                "decoder_start_token_id": s.decoder_start}  # and no forced first / last token
    for settings in (handle.model.config.to_dict(), handle.model.generation_config.to_dict()):
        carried = {k: v for k, v in settings.items() if k.endswith("_token_id") and v is not None}
        assert carried == {k: v for k, v in expected.items() if v is not None}
    document = tokenizer.encode(DOCUMENT).ids[:40] + [tokenizer.special.eos]
    check_greedy(handle, tokenizer, document)
    # a loaded checkpoint's own generation settings (its tokenizer's ids) do not apply either
    handle.model.generation_config.update(forced_eos_token_id=1, forced_bos_token_id=1, suppress_tokens=[2],
                                          eos_token_id=1)
    check_greedy(handle, tokenizer, document)
    assert handle.model.generation_config.forced_eos_token_id == 1  # and are left as they were


def check_greedy(handle, tokenizer, document):
    for steps in (4, 7):
        special = tokenizer.special
        ids = greedy_reference(handle, document, special.eos, special.decoder_start, steps)
        summary = generate(handle, tokenizer, [document], GenerationSettings(max_new_tokens=steps,
                           no_repeat_ngram=0), progress=False)
        assert summary == [tokenizer.decode(ids)]


def test_the_suite_evaluates_a_released_layout_checkpoint_directly(tmp_path, tokenizer):
    """A directory with the release's config.json and state dict (as downloaded) is a --checkpoint: it is
    converted on load and evaluated with the release's fast-path convolution."""
    from test_locost_model import write_released_checkpoint

    from models.locost import PRESETS, LocostConfig

    config = LocostConfig(**PRESETS["tiny"], vocab_size=tokenizer.vocab_size, dropout_rate=0.0)
    write_released_checkpoint(tmp_path / "locost-released", config)
    data = tmp_path / "papers.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "document": " ".join(SENTENCES[i:i + 8]),
                                        "summary": SENTENCES[i]}) + "\n" for i in range(20)))
    argv = ["--data", str(data), "--eval-split", "test", "--no-progress", "--no-report", "--device", "cpu",
            "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--max-new-tokens", "4",
            "--checkpoint", str(tmp_path / "locost-released"), "--no-extractive", "--eval-lens", "37",
            "--tokenizer", str(tokenizer.save(tmp_path / "tokenizer.json")), "--run-id", "released"]
    assert _cli(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "released" / "rouge.jsonl").read_text().splitlines()]
    assert [(r["system"], r["input_len"]) for r in rows] == [("locost-released", 37)]
    systems = json.loads((tmp_path / "released" / "run.json").read_text())["systems"]
    assert [s["family"] for s in systems if s["kind"] == "model"] == ["locost"]


def rouge_inputs(root: Path) -> tuple[Path, list[Path]]:
    """A data directory (train.jsonl, test.jsonl: three short papers each) and two tiny random-init
    checkpoints, LOCOST and LongT5-TGlobal, with the tokenizer trained on the papers' sentences beside
    their weights (as the suite saves them)."""
    import torch

    from models import build
    from suites.rouge.tokenizer import train_tokenizer

    data = root / "papers"
    data.mkdir()
    for split, first in (("train", 10), ("test", 0)):
        papers = [{"id": str(i), "document": " ".join(SENTENCES[i:i + 8]), "summary": SENTENCES[i]}
                  for i in range(first, first + 3)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(paper) + "\n" for paper in papers))
    tokenizer = train_tokenizer(SENTENCES, vocab_size=200, cache_dir=root / "cache")
    checkpoints = []
    for family in ("locost", "longt5-tglobal"):
        handle = build(family, "tiny", seed=0, device=torch.device("cpu"), **tokenizer.model_overrides())
        checkpoints.append(root / f"{family}-ckpt")
        handle.model.save_pretrained(str(checkpoints[-1]))
        tokenizer.save(checkpoints[-1] / "tokenizer.json")
    return data, checkpoints
