"""Scores of a ROUGE run: every system's predictions at every length -> ``RougeRow``s (mean F1 with
bootstrap CIs, ``records.RougeRow``) and LOCOST's relative quality against each baseline."""

from __future__ import annotations

from pathlib import Path

from records import RougeRow
from suites.rouge import scoring
from suites.rouge.config import length_label
from suites.rouge.errors import SuiteError
from suites.rouge.systems import prediction_path, read_predictions


def score_systems(systems: list[dict], lengths: list, run_dir: Path, ids: list[str], dataset: str,
                  rouge_tokenizer: str) -> tuple[list[RougeRow], dict]:
    """(one row per system and length with predictions, per-document scores by (system, length))."""
    scores, rows = {}, []
    for system in systems:
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
                                 rouge_tokenizer=rouge_tokenizer))
    return rows, scores


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
