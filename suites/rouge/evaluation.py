"""Scores of a ROUGE run: every system's predictions at every length -> ``RougeRow``s (mean F1 with
bootstrap CIs, ``records.RougeRow``; for models also the reference NLL and its paired gain over the
shortest length) and LOCOST's relative quality against each baseline."""

from __future__ import annotations

from pathlib import Path

from records import RougeDocRow, RougeRow
from suites.rouge import scoring
from suites.rouge.config import length_label
from suites.rouge.errors import SuiteError
from suites.rouge.systems import nll_path, prediction_path, read_predictions


def _by_length(lengths: list) -> list:
    """``lengths`` shortest first; None (the full document) is the longest."""
    return sorted(lengths, key=lambda x: (x is None, x or 0))


def read_nll(run_dir: Path, system: str, lengths: list, ids: list[str]) -> dict:
    """length -> per-document NLL rows (``nll/<system>-<length>.jsonl``), for the lengths scored."""
    found = {}
    for length in lengths:
        path = run_dir / nll_path(system, length)
        if path.is_file():
            rows = read_predictions(path)
            if [r["id"] for r in rows] != ids:
                raise SuiteError(f"{path} does not hold the evaluation documents; rerun with --force")
            found[length] = rows
    return found


def nll_fields(per_length: dict, length) -> dict:
    """``RougeRow``'s nll fields at ``length`` from per-document rows by length (``read_nll``):
    mean NLL per token with its bootstrap CI, and the paired gain over the shortest scored length."""
    if length not in per_length:
        return {}
    rows = per_length[length]
    mean, lo, hi = scoring.bootstrap_ci([r["nll"] for r in rows])
    shortest = _by_length(list(per_length))[0]
    gain = [s["nll"] - r["nll"] for s, r in zip(per_length[shortest], rows, strict=True)]
    gain_mean, gain_lo, gain_hi = scoring.bootstrap_ci(gain)
    return {"nll": mean, "nll_lo": lo, "nll_hi": hi, "nll_tokens": sum(r["reference_tokens"] for r in rows),
            "nll_gain": gain_mean, "nll_gain_lo": gain_lo, "nll_gain_hi": gain_hi, "nll_gain_from": shortest}


def score_systems(systems: list[dict], lengths: list, run_dir: Path, ids: list[str], dataset: str,
                  rouge_tokenizer: str) -> tuple[list[RougeRow], dict]:
    """(one row per system and length with predictions, per-document scores by (system, length))."""
    scores, rows = {}, []
    for system in systems:
        per_length = read_nll(run_dir, system["system"], lengths, ids) if system["kind"] == "model" else {}
        for length in lengths:
            path = run_dir / prediction_path(system["system"], length)
            if length_label(length) in system.get("unsupported", {}) or not path.is_file():
                continue
            predictions = read_predictions(path)
            if [p["id"] for p in predictions] != ids:
                raise SuiteError(f"{path} does not hold the evaluation documents; rerun with --force")
            per_doc = [scoring.rouge(p["prediction"], p["reference"], rouge_tokenizer) for p in predictions]
            scores[system["system"], length] = per_doc
            params = system.get("params")
            rows.append(RougeRow(system=system["system"], kind=system["kind"], family=system.get("family"),
                                 size=system.get("size"), input_len=length, n_docs=len(per_doc),
                                 **scoring.summarize(per_doc),
                                 params_total=params["total"] if params else None,
                                 train_steps=system.get("train_steps"), dataset=dataset,
                                 rouge_tokenizer=rouge_tokenizer, **nll_fields(per_length, length)))
    return rows, scores


def document_rows(scores: dict, ids: list[str], dataset: str) -> list[dict]:
    """rouge_docs.jsonl's lines (records.RougeDocRow): every system's F1 per document and length, from
    ``score_systems``' per-document scores, for paired comparisons such as a model against Lead-k."""
    return [RougeDocRow(system=system, dataset=dataset, input_len=length, doc_id=doc_id, **doc).to_json()
            for (system, length), docs in scores.items() for doc_id, doc in zip(ids, docs, strict=True)]


def relative_quality(systems: list[dict], scores: dict, lengths: list) -> list[dict]:
    """LOCOST ROUGE / baseline ROUGE (the paper's relative-quality measure) for every LOCOST system
    against every other model, per input length, with paired bootstrap CIs."""
    models = [s for s in systems if s["kind"] == "model"]
    locost = [s for s in models if str(s.get("family") or "").startswith("locost")]
    rows = []
    for ours in locost:
        for baseline in models:
            if baseline is ours:
                continue
            for length in lengths:
                a, b = scores.get((ours["system"], length)), scores.get((baseline["system"], length))
                if a is None or b is None:
                    continue
                row = {"system": ours["system"], "baseline": baseline["system"], "input_len": length,
                       "n_docs": len(a)}
                for metric in scoring.METRICS:
                    ratio, lo, hi = scoring.ratio_ci([s[metric] for s in a], [s[metric] for s in b])
                    row.update({metric: ratio, f"{metric}_lo": lo, f"{metric}_hi": hi})
                rows.append(row)
    return rows
