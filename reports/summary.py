"""The top of the report: what was measured, on what, and the headline ratios, in a few sentences."""

from __future__ import annotations

import pandas as pd

from reports import text
from reports.claims import LONG_INPUT_CLAIM
from reports.runs import CONDITION_COLUMNS, MODES, PAPER_BASELINES, key_of

WHAT = {  # record column -> what it measures
    "mem_peak_above_base_bytes": "peak memory above the weights",
    "time_median_s": "time per step",
}


def measured(records: pd.DataFrame) -> str:
    """'Peak memory above the weights and time per step of 7 models (…) in train / generate at
    1K–16K input tokens (41 cells, 36 ok), on cpu (…), fp32, …' — empty without records."""
    if records.empty:
        return ""
    what = [words for column, words in WHAT.items() if records[column].notna().any()] or ["cells"]
    models = text.distinct(records.sort_values("model"), "model")
    modes = [m for m in MODES if m in set(records["mode"])]
    lengths = sorted(records["input_len"].dropna().unique())
    span = text.length(lengths[0]) + ("" if len(lengths) == 1 else f"–{text.length(lengths[-1])}")
    ok = int(records["status"].eq("ok").sum())
    return (f"Measured: {' and '.join(what)} of {len(models)} model{'s' * (len(models) != 1)} "
            f"({', '.join(models)}) in {' / '.join(modes)} at {span} input tokens ({len(records)} cells, "
            f"{ok} ok), on {text.conditions(records).replace(' · ', ', ')}.")


def _figure(pair) -> str | None:
    """'0.49× led-small at 16K', '≤ 0.38× longt5-tglobal-small at 16K (baseline oom)', or None."""
    where = f"{pair.baseline_model} at {text.length(pair.input_len)}"
    if pd.notna(pair.ratio):
        return f"{pair.ratio:.2f}× {where}"
    if pd.notna(pair.ratio_bound):
        return f"≤ {pair.ratio_bound:.2f}× {where} (baseline oom)"
    return None


#: how a condition column is named where two sets of conditions need telling apart
CONDITION_NAMES = {"env_device_name": "device", "env_torch": "torch", "env_transformers": "transformers",
                   "env_git_commit": "commit", "inputs": "inputs from"}

HEADLINE = ("LOCOST's peak memory above the weights as a fraction of each of the paper's baselines', at "
            "the longest input length that gives a figure (≤: a bound, the baseline ran out of memory "
            "there):")


def headlines(comparisons: pd.DataFrame) -> list[str]:
    """One line per conditions and mode, 'train: 0.49× led-small at 16K, ≤ 0.38× …' (``HEADLINE`` says
    what they are): LOCOST's peak memory as a fraction of each of the paper's baselines' at the longest
    length that gives a figure (a ratio, or the bound of a baseline that ran out of memory); the
    baselines' other failures are named with the length of their first one."""
    if comparisons.empty:
        return []
    paper = comparisons[comparisons["baseline_family"].isin(PAPER_BASELINES)]
    shared = [c for c in CONDITION_COLUMNS if c not in ("target_len", "new_tokens")]  # modes in one sentence
    keys = key_of(paper, shared)
    differing = [c for c in shared if paper[c].astype(str).nunique() > 1]  # what tells the lines apart
    sentences = []
    for _, group in paper.groupby(keys, sort=True):
        parts = []
        for mode in [m for m in MODES if m in set(group["mode"])]:
            figures = []
            for _, pairs in group[group["mode"].eq(mode)].groupby("baseline_model", sort=True):
                worded = [f for f in map(_figure, pairs.sort_values("input_len").itertuples()) if f]
                failed = pairs[~pairs["baseline_status"].isin(["ok", "skipped"])]
                if worded:
                    figures.append(worded[-1])
                elif not failed.empty:
                    first = failed.sort_values("input_len").iloc[0]
                    figures.append(f"{first['baseline_model']} {first['baseline_status']} from "
                                   f"{text.length(first['input_len'])}")
            if figures:
                parts.append(f"{mode}: {', '.join(figures)}")
        first = group.iloc[0]
        simulated = not text.is_missing(first["simulated_gpu"])  # no device ran it: name the GPU simulated
        hidden = {"produced_by", "simulated_gpu"} | ({"device", "env_device_name"} if simulated else set())
        values = {c: text.commit(first[c]) if c == "env_git_commit" else first[c]
                  for c in differing if c not in hidden}
        prefix = (f"simulated {first['simulated_gpu']}, " if simulated else "") + "".join(
            f"{CONDITION_NAMES.get(c, c)} {value}, " for c, value in values.items())
        sentences += [prefix + part for part in parts]
    return sentences


def verdict_figure(claim: dict) -> str:
    """The figure a verdict card shows beside its verdict (``claim``: a row of ``claims.evaluate``):
    ``best <best measured>``; for the > 600K claim, whose figure is the longest input LOCOST ran ok at
    any length, ``longest input run ok: 1,024 tokens``: a 'best 1,024' beside 'not measured' would read
    as a result of the claim."""
    if claim["claim"] == LONG_INPUT_CLAIM and not text.is_missing(claim["best_value"]):
        return f"longest input run ok: {text.integer(claim['best_value'])} tokens"
    return f"best {claim['best_measured']}"
