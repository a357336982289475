"""Reference-summary NLL (suites.rouge.likelihood), its per-document files and aggregates, the
"quality rises with input length" rule, and learning curves that do not change what is trained."""

import pytest
import torch

from models import build
from records import read_jsonl, write_jsonl
from reports.claims import INCONCLUSIVE, NOT_MEASURED, NOT_REPRODUCED, REPRODUCED, evaluate, length_verdict
from reports.runs import records_frame, rouge_frame
from suites.rouge.evaluation import nll_fields, read_nll
from suites.rouge.likelihood import batch_nll, examples_nll
from suites.rouge.training import Budget, TrainingExample, Validation, collate, train

VOCAB = 64


def nll_ref(handle, example: TrainingExample) -> float:
    """Float64, one example, no padding anywhere: decoder fed [start] + labels[:-1] explicitly; the sum
    over reference positions of -log_softmax(logits)[label], divided by the number of positions."""
    model = handle.model.eval()
    ids = torch.tensor([example.input_ids])
    inputs = handle.prepare_inputs(ids, torch.ones_like(ids))
    start = model.config.decoder_start_token_id
    decoder_ids = torch.tensor([[start] + example.labels[:-1]])
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=decoder_ids, use_cache=False).logits[0].double()
    total = 0.0
    for position, label in enumerate(example.labels):
        total -= torch.log_softmax(logits[position], dim=-1)[label].item()
    return total / len(example.labels)


@pytest.mark.parametrize("family", ["locost", "led"])
def test_batched_nll_equals_a_float64_loop_and_ignores_label_padding(family):
    handle = build(family, "tiny", vocab_size=VOCAB)
    generator = torch.Generator().manual_seed(1)
    draw = lambda n: torch.randint(3, VOCAB, (n,), generator=generator).tolist()  # noqa: E731
    examples = [TrainingExample(draw(40) + [1], draw(11) + [1]),
                TrainingExample(draw(40) + [1], draw(5) + [1])]
    batch = collate(examples, 0, handle)  # same input length, labels padded with -100 in the second row
    assert int((batch["labels"] == -100).sum()) == 6
    batched = batch_nll(handle, batch)
    one_by_one = examples_nll(handle, examples, 0)
    for example, row, single in zip(examples, batched, one_by_one, strict=True):
        assert row.tokens == single.tokens == len(example.labels)
        assert row.nll == pytest.approx(nll_ref(handle, example), rel=1e-5)
        assert single.nll == pytest.approx(nll_ref(handle, example), rel=1e-5)


def test_per_document_rows_round_trip_and_aggregate(tmp_path):
    rows = {1024: [{"id": "a", "input_len": 1024, "reference_tokens": 10, "nll_sum": 50.0, "nll": 5.0},
                   {"id": "b", "input_len": 900, "reference_tokens": 20, "nll_sum": 80.0, "nll": 4.0}],
            None: [{"id": "a", "input_len": 3000, "reference_tokens": 10, "nll_sum": 45.0, "nll": 4.5},
                   {"id": "b", "input_len": 900, "reference_tokens": 20, "nll_sum": 80.0, "nll": 4.0}]}
    for length, label in ((1024, "1024"), (None, "full")):
        (tmp_path / "nll").mkdir(exist_ok=True)
        write_jsonl(tmp_path / "nll" / f"m-{label}.jsonl", rows[length])
    found = read_nll(tmp_path, "m", [1024, 2048, None], ["a", "b"])
    assert found == rows  # 2048 was not scored: absent, not empty
    full = nll_fields(found, None)
    assert full["nll"] == pytest.approx(4.25) and full["nll_tokens"] == 30
    assert full["nll_gain"] == pytest.approx(0.25) and full["nll_gain_from"] == 1024
    assert full["nll_lo"] <= full["nll"] <= full["nll_hi"]
    assert nll_fields(found, 1024)["nll_gain"] == 0.0 and nll_fields(found, 2048) == {}
    assert read_jsonl(tmp_path / "nll" / "m-full.jsonl")[0] == rows[None]


def _gain(short: list[float], long: list[float]) -> dict:
    doc = lambda i, v, n: {"id": str(i), "input_len": n, "reference_tokens": 8, "nll_sum": 8 * v, "nll": v}  # noqa: E731
    return nll_fields({1024: [doc(i, v, 1024) for i, v in enumerate(short)],
                       4096: [doc(i, v, 4096) for i, v in enumerate(long)]}, 4096)


@pytest.mark.parametrize("long, verdict", [
    ([4.9, 4.8, 4.95, 4.7, 4.85, 4.9], REPRODUCED),  # every document lower at 4K
    ([5.1, 5.2, 5.05, 5.3, 5.15, 5.1], NOT_REPRODUCED),  # every document higher
    ([4.5, 5.5, 4.6, 5.4, 5.0, 5.0], INCONCLUSIVE),  # up and down: the CI holds 0
    ([5.0 - 1e-5 * (1 + i % 2) for i in range(6)], INCONCLUSIVE),  # the CI excludes 0, float noise only
])
def test_quality_rises_with_length_rule_on_constructed_documents(long, verdict):
    long = long * 2  # 12 documents: the rule judges from >= 10 (claims.MIN_DOCS)
    fields = _gain([5.0] * 12, long)
    assert length_verdict(fields["nll_gain"], fields["nll_gain_lo"], fields["nll_gain_hi"])[0] == verdict
    rows = [{"system": "locost-tiny", "kind": "model", "family": "locost", "size": "tiny", "input_len": n,
             "n_docs": 12, "dataset": "toy", "train_steps": 3, "rouge1": 0.1, "rouge1_lo": 0.09,
             "rouge1_hi": 0.11, **f}
            for n, f in ((1024, _gain([5.0] * 12, [5.0] * 12)), (4096, fields))]

    def length_claim(lead_rouge1, longest=4096):
        leads = [{"system": "lead-3", "kind": "extractive", "input_len": n, "n_docs": 12, "dataset": "toy",
                  "rouge1": lead_rouge1, "rouge1_lo": lead_rouge1 - 0.01, "rouge1_hi": lead_rouge1 + 0.01}
                 for n in (1024, longest)]
        claims = evaluate(records_frame([]), rouge_frame(rows + leads))
        headline = claims["claim"].eq("quality rises with input length") & claims["scope"].eq("all")
        return claims[headline].iloc[0]

    row = length_claim(0.05)  # the model beats Lead-3 at both lengths: the NLL gain decides
    assert row["verdict"] == verdict and row["best_value"] == pytest.approx(fields["nll_gain"])
    assert "1K → 4K" in row["conditions"]
    below = length_claim(0.2)  # below Lead-3: a decided gain becomes inconclusive, with the reason
    expected = "models below Lead-3: 2 of 2 model–length pairs, worst locost-tiny rouge1 10.0 vs 20.0 at 1K"
    assert (below["verdict"], below["reason"]) == ((INCONCLUSIVE, expected) if verdict != INCONCLUSIVE
                                                   else (INCONCLUSIVE, row["reason"]))
    rows[1]["input_len"] = None  # the longest length is the full document: Lead-3 there too
    full = length_claim(0.2, longest=None)
    assert (full["verdict"], full["reason"]) == (below["verdict"], below["reason"])


def test_quality_rises_with_length_is_not_measured_without_two_lengths():
    assert length_verdict(None, None, None)[0] == NOT_MEASURED
    rows = [{"system": "locost-tiny", "kind": "model", "family": "locost", "input_len": 1024, "n_docs": 6,
             "dataset": "toy", **_gain([5.0] * 6, [5.0] * 6), "nll_gain_from": 1024}]
    claims = evaluate(records_frame([]), rouge_frame(rows))
    assert claims[claims["claim"].eq("quality rises with input length")]["verdict"].tolist() == [NOT_MEASURED]


def test_learning_curve_points_leave_the_trained_weights_unchanged():
    generator = torch.Generator().manual_seed(2)
    draw = lambda n: torch.randint(3, VOCAB, (n,), generator=generator).tolist()  # noqa: E731
    examples = [TrainingExample(draw(30) + [1], draw(6) + [1]) for _ in range(3)]
    held_out = [TrainingExample(draw(30) + [1], draw(6) + [1]) for _ in range(2)]
    budget = Budget(steps=3, train_len=32, target_len=8, warmup_steps=1, lr=1e-2)
    weights, logs = [], []
    for validation in (None, Validation(held_out, every=2)):
        handle = build("locost", "tiny", vocab_size=VOCAB, dropout_rate=0.1)  # dropout draws random numbers
        logs.append(train(handle, examples, budget, budget.steps, "finetune", 0, "m", False, validation))
        weights.append([p.detach().clone() for p in handle.model.parameters()])
    for plain, curved in zip(*weights, strict=True):
        assert torch.equal(plain, curved)
    assert logs[0].losses == logs[1].losses and logs[0].curve == []
    assert [p["step"] for p in logs[1].curve] == [0, 2, 3]
    assert logs[1].curve[1]["train_loss"] == pytest.approx(sum(logs[1].losses[:2]) / 2, abs=1e-4)
    handle = build("locost", "tiny", vocab_size=VOCAB)  # the first point is the untrained model's NLL
    first = sum(d.nll for d in examples_nll(handle, held_out, 0)) / 2
    assert logs[1].curve[0]["val_nll"] == pytest.approx(first, abs=1e-5)
