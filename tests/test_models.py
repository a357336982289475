"""The model registry and the common handle, on every family at the ``tiny`` preset."""

import subprocess
import sys

import pytest
import torch

from models import (
    FAMILIES,
    NotACheckpointError,
    UnknownModelError,
    UnsupportedLengthError,
    build,
    count_parameters,
    load,
    preset_table,
)

FAMILY_NAMES = list(FAMILIES)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def tiny(request):
    return build(request.param, "tiny")


@pytest.mark.parametrize("input_len", [37, 64])
def test_every_family_trains_encodes_and_generates(tiny, input_len):
    batch = tiny.make_batch(input_len, target_len=5)
    loss = tiny.train_step(batch)
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert all(p.grad is None for p in tiny.model.parameters()), "train_step must free gradients"
    hidden = tiny.encode(batch)
    assert hidden.shape == (1, input_len, tiny.model.config.d_model)
    generated = tiny.generate(batch, new_tokens=4)
    assert generated.shape == (1, 1 + 4)  # decoder start token + exactly the new tokens


def test_batch_holds_what_each_family_needs(tiny):
    batch = tiny.make_batch(50, target_len=6, batch_size=2, seed=3)
    assert batch["input_ids"].shape == (2, 50) and batch["labels"].shape == (2, 6)
    assert int(batch["input_ids"].min()) >= tiny.family.first_plain_token
    assert int(batch["input_ids"].max()) < tiny.model.config.vocab_size
    start = tiny.model.config.decoder_start_token_id
    assert torch.equal(batch["decoder_input_ids"][:, 0], torch.full((2,), start))
    assert torch.equal(batch["decoder_input_ids"][:, 1:], batch["labels"][:, :-1])
    assert torch.equal(tiny.make_batch(50, 6, 2, seed=3)["input_ids"], batch["input_ids"])
    if tiny.family.name == "led":
        assert batch["global_attention_mask"][:, 0].tolist() == [1, 1]
        assert int(batch["global_attention_mask"].sum()) == 2
    else:
        assert "global_attention_mask" not in batch


def test_real_token_ids_are_repeated_then_split_into_document_and_target():
    handle = build("longt5-local", "tiny")
    batch = handle.make_batch(7, target_len=3, token_ids=torch.tensor([10, 11, 12, 13]))
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13, 10, 11, 12]]
    assert batch["labels"].tolist() == [[13, 10, 11]]
    with pytest.raises(UnsupportedLengthError, match="token ids must lie in"):
        handle.make_batch(7, token_ids=torch.tensor([10, 10**6]))


def test_preset_table_matches_built_models():
    rows = {(r["family"], r["size"]): r for r in preset_table()}
    assert {size for _, size in rows} == {"tiny", "small", "base"}
    assert {family for family, _ in rows} == set(FAMILY_NAMES)
    for name in FAMILY_NAMES:
        counts = count_parameters(build(name, "tiny").model)
        row = rows[(name, "tiny")]
        assert (row["total"], row["embedding"], row["non_embedding"]) == (
            counts.total, counts.embedding, counts.non_embedding)


@pytest.mark.parametrize("name, millions", [
    ("longt5-tglobal", 222.9),  # transformers 5.x ties LongT5's LM head to the embeddings
    ("led", 161.8),
    ("pegasus-x", 272.3),
])
def test_base_presets_have_the_released_parameter_counts(name, millions):
    total = {(r["family"], r["size"]): r["total"] for r in preset_table()}[(name, "base")]
    assert total / 1e6 == pytest.approx(millions, abs=0.1)


def test_small_presets_are_parameter_matched():
    non_embedding = [r["non_embedding"] for r in preset_table() if r["size"] == "small"]
    assert max(non_embedding) / min(non_embedding) < 1.15


def test_unknown_family_and_size_are_one_line_errors():
    with pytest.raises(UnknownModelError, match=r"unknown model family 'bert'; known: locost, "):
        build("bert", "tiny")
    with pytest.raises(UnknownModelError, match=r"unknown size 'huge' for led; known: tiny, small, base"):
        build("led", "huge")


@pytest.mark.parametrize("input_len, target_len, message", [
    (0, 4, "input length must be a positive integer, got 0"),
    (-3, 4, "input length must be a positive integer, got -3"),
    (10, 0, "target length must be a positive integer, got 0"),
    (2.5, 4, "input length must be a positive integer, got 2.5"),
    (20_000, 4, "LED has 16,384 learned encoder positions; input length 20,000 exceeds it"),
    (100, 2000, "led-tiny has 1,024 decoder positions; target length 2,000 exceeds it"),
])
def test_impossible_lengths_are_refused_before_any_work(input_len, target_len, message):
    handle = build("led", "tiny")
    with pytest.raises(UnsupportedLengthError) as error:
        handle.make_batch(input_len, target_len)
    assert str(error.value) == message


def test_led_takes_exactly_its_learned_positions():
    handle = build("led", "tiny")
    assert handle.max_input_len == 16384
    handle.check_lengths(16384, 8)
    assert build("locost", "tiny").max_input_len is None


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_load_round_trip(tmp_path, name):
    """A saved checkpoint loads back as its own family with the same parameters and identical logits
    (300 tokens: beyond SPADE's and LongT5's local radius)."""
    handle = build(name, "tiny", seed=1)
    handle.model.save_pretrained(tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    assert loaded.family.name == name and loaded.size is None
    assert loaded.params == handle.params
    batch = handle.make_batch(300, 4)
    handle.model.eval()
    with torch.no_grad():
        expected = handle.model(**batch).logits
        actual = loaded.model.eval()(**batch).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_paths_that_are_not_checkpoints(tmp_path):
    with pytest.raises(NotACheckpointError, match=r"^not a checkpoint: .* has no config.json$"):
        load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(NotACheckpointError, match="^not a checkpoint: cannot load a config from"):
        load(tmp_path)


def test_cli_prints_the_preset_table():
    out = subprocess.run([sys.executable, "-m", "models"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["family", "size", "total", "embedding", "non-emb"]
    assert len(lines) == 2 + 3 * len(FAMILY_NAMES)
    led_base = next(line for line in lines if line.startswith("led ") and " base " in line)
    assert "161.8M" in led_base and led_base.endswith("16,384")


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_greedy_generate_matches_a_manual_loop_without_cache(name):
    """`generate` (with the installed transformers' decoder cache) decodes what re-running the whole
    decoder on the growing prefix without a cache decodes: the same tokens, and the same logits at every
    step (float64; compared in float32, as generate returns them), so a cache that loses history shows
    even where greedy picks the same token."""
    handle = build(name, "tiny", seed=3)
    handle.model.double().eval()
    torch.manual_seed(0)
    with torch.no_grad():  # large random weights, so that greedy decoding does not echo one token
        for param_name, p in handle.model.named_parameters():
            if ".kernel." not in param_name:
                p.normal_(0.0, 0.3 if p.dim() > 1 else 1.0)
    handle.model.generation_config.eos_token_id = None  # fixed length, no EOS forced at the end
    handle.model.generation_config.forced_eos_token_id = None
    batch = handle.make_batch(40, target_len=4, batch_size=2, seed=5)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "decoder_input_ids")}
    decoded, logits = batch["decoder_input_ids"][:, :1], []
    with torch.no_grad():
        for _ in range(6):
            logits.append(handle.model(**inputs, decoder_input_ids=decoded, use_cache=False).logits[:, -1])
            decoded = torch.cat([decoded, logits[-1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(handle.generate(batch, new_tokens=6), decoded)
    cached = handle.model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1,
                                   output_logits=True, return_dict_in_generate=True)
    # generate() hands logits back in float32
    torch.testing.assert_close(torch.stack(cached.logits, 1), torch.stack(logits, 1).float())
