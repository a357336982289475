"""The LOCOST paper's claims, checked against what was measured (never typed in).

Each claim gives one headline row (scope "all") and, where useful, one row per baseline or per
measured series. Verdicts: ``reproduced`` / ``not reproduced`` / ``inconclusive`` (measured, but the
data cannot decide) / ``not measured``; the rule that decides is written beside every row.
"""

from __future__ import annotations

import pandas as pd

from reports import text
from reports.analysis import memory_comparisons, rouge_relative, scaling_fits
from reports.runs import INFERENCE_MODES, LOCOST, PAPER_BASELINES

REPRODUCED, NOT_REPRODUCED, NOT_MEASURED = "reproduced", "not reproduced", "not measured"
INCONCLUSIVE = "inconclusive"

TRAIN_SAVING = 50.0
INFERENCE_SAVING = 87.0
LONG_INPUT = 600_000
MAX_EXPONENT = 1.25
ROUGE_SHARE = 93.0

COLUMNS = [
    "claim",
    "scope",
    "paper_value",
    "best_measured",
    "typical_measured",
    "best_value",
    "typical_value",
    "n_compared",
    "conditions",
    "verdict",
    "rule",
]


def _row(
    claim,
    paper_value,
    rule,
    scope="all",
    best=None,
    typical=None,
    best_value=None,
    typical_value=None,
    n=0,
    conditions="",
    verdict=NOT_MEASURED,
) -> dict:
    return {
        "claim": claim,
        "scope": scope,
        "paper_value": paper_value,
        "best_measured": best or text.DASH,
        "typical_measured": typical or text.DASH,
        "best_value": best_value,
        "typical_value": typical_value,
        "n_compared": n,
        "conditions": conditions,
        "verdict": verdict,
        "rule": rule,
    }


def _describe_comparison(pair) -> str:
    runs = dict.fromkeys([pair["locost_run_id"], pair["baseline_run_id"]])
    return (
        f"vs {pair['baseline_model']}, {pair['mode']}, {text.integer(pair['input_len'])} tokens, "
        f"{text.condition_label(pair)}: {text.number(pair['locost_mib'])} vs "
        f"{text.number(pair['baseline_mib'])} MiB above weights (run {' / '.join(map(str, runs))})"
    )


def _saving_rows(claim, threshold, modes, comparisons) -> list[dict]:
    mode_words = " / ".join(modes)
    rule = (
        f"best saving = max(1 − LOCOST/baseline peak memory above weights) over (baseline, length) "
        f"pairs with both ok in {mode_words} under identical conditions, "
        f"baselines {', '.join(PAPER_BASELINES)}; reproduced iff ≥ {threshold:.0f}%"
    )
    paper = comparisons["baseline_family"].isin(PAPER_BASELINES)
    pairs = comparisons[comparisons["mode"].isin(modes) & paper]
    measured = pairs[pairs["saving_pct"].notna()]
    baseline_failed = pairs[
        pairs["locost_status"].eq("ok") & ~pairs["baseline_status"].isin(["ok", "skipped"])
    ]

    def row(scope, measured, baseline_failed):
        extra = ""
        if not baseline_failed.empty:
            first = baseline_failed.sort_values("input_len").iloc[0]
            extra = (
                f"; the baseline failed where LOCOST ran in {len(baseline_failed)} cell(s), "
                f"first {first['baseline_model']} {first['mode']} at {text.integer(first['input_len'])}: "
                f"{first['note']}"
            )
        if measured.empty:
            return _row(
                claim,
                f"{threshold:.0f}%",
                rule,
                scope=scope,
                conditions="no LOCOST/baseline pair ok under identical conditions" + extra,
            )
        best = measured.loc[measured["saving_pct"].idxmax()]
        typical = float(measured["saving_pct"].median())
        verdict = REPRODUCED if best["saving_pct"] >= threshold else NOT_REPRODUCED
        return _row(
            claim,
            f"{threshold:.0f}%",
            rule,
            scope=scope,
            best=text.percent(best["saving_pct"]),
            typical=text.percent(typical),
            best_value=float(best["saving_pct"]),
            typical_value=typical,
            n=len(measured),
            conditions=_describe_comparison(best) + extra,
            verdict=verdict,
        )

    rows = [row("all", measured, baseline_failed)]
    for family in sorted(pairs["baseline_family"].dropna().unique()):
        rows.append(
            row(
                f"vs {family}",
                measured[measured["baseline_family"].eq(family)],
                baseline_failed[baseline_failed["baseline_family"].eq(family)],
            )
        )
    return rows


def _long_input_rows(records: pd.DataFrame) -> list[dict]:
    claim = "handles more than 600K tokens at inference"
    rule = (
        f"reproduced iff a LOCOST {' or '.join(INFERENCE_MODES)} cell is ok at ≥ {LONG_INPUT:,} tokens; "
        f"not reproduced if LOCOST was tried there and failed (oom/timeout/error/unsupported); "
        f"else not measured"
    )
    locost = records[records["family"].eq(LOCOST) & records["mode"].isin(INFERENCE_MODES)]
    ok = locost[locost["status"].eq("ok")]
    long = locost[locost["input_len"].ge(LONG_INPUT).fillna(False)]
    failed_long = long[~long["status"].isin(["ok", "skipped"])]
    if ok.empty:
        conditions = "no LOCOST inference cell ran ok"
        best = typical = None
    else:
        longest = ok.loc[ok["input_len"].astype(float).idxmax()]
        per_series = ok.groupby(["model", "mode", "condition_key"], dropna=False)["input_len"].max()
        best, typical = int(longest["input_len"]), float(per_series.median())
        conditions = f"{longest['model']} {longest['mode']}, {text.condition_label(longest)}"
    if not long[long["status"].eq("ok")].empty:
        verdict = REPRODUCED
    elif not failed_long.empty:
        verdict = NOT_REPRODUCED
        first = failed_long.sort_values("input_len").iloc[0]
        conditions += (
            f"; failed at {text.integer(first['input_len'])}: {first['model']} {first['mode']} "
            f"{first['status']} ({first['message'] or 'no message'})"
        )
    else:
        verdict = NOT_MEASURED
        skipped = long[long["status"].eq("skipped")]
        conditions += (
            f"; not tried at ≥ {LONG_INPUT:,}"
            if skipped.empty
            else f"; skipped at {text.integer(skipped['input_len'].min())}: {skipped.iloc[0]['message']}"
        )
    return [
        _row(
            claim,
            "> 600K tokens",
            rule,
            best=None if best is None else f"{best:,} tokens (longest ok)",
            typical=None if typical is None else f"{typical:,.0f} tokens (median longest per series)",
            best_value=best,
            typical_value=typical,
            n=len(ok),
            conditions=conditions,
            verdict=verdict,
        )
    ]


def _time_rows(records: pd.DataFrame) -> list[dict]:
    claim = "O(L log L) time in input length"
    rule = (
        f"exponent k of time ∝ L^k, least squares on log-log over LOCOST's ok encode lengths (generate "
        f"if no encode series has ≥ 3 points), the series with the widest length range; reproduced iff the "
        f"upper bound of k's 95% CI ≤ {MAX_EXPONENT} (L log L over 1K–600K fits k slightly above 1, "
        f"quadratic attention ≈ 2)"
    )
    locost = records[records["family"].eq(LOCOST) & records["mode"].isin(INFERENCE_MODES)]
    fits = scaling_fits(locost)
    if not fits.empty:
        fits = fits[fits["metric"].eq("time") & fits["ci_high"].notna()]
    if fits is None or fits.empty:
        return [
            _row(
                claim,
                "O(L log L)",
                rule,
                conditions="no LOCOST inference series with ok times at ≥ 3 lengths",
            )
        ]
    mode = "encode" if fits["mode"].eq("encode").any() else "generate"
    candidates = fits[fits["mode"].eq(mode)].assign(range=lambda f: f["max_len"] / f["min_len"])
    primary = candidates.sort_values(["range", "n"]).iloc[-1]

    def row(scope, fit, typical=None, n=1):
        verdict = REPRODUCED if fit["ci_high"] <= MAX_EXPONENT else NOT_REPRODUCED
        conditions = (
            f"{fit['model']} {fit['mode']}, {text.integer(fit['min_len'])}–"
            f"{text.integer(fit['max_len'])} tokens ({fit['n']} lengths), {text.condition_label(fit)}, "
            f"{text.integer(fit['threads'])} thread(s), run {fit['run_id']}"
        )
        return _row(
            claim,
            "O(L log L)",
            rule,
            scope=scope,
            best=text.exponent(fit["slope"], fit["ci_low"], fit["ci_high"]),
            typical=None if typical is None else f"{typical:.2f} (median exponent)",
            best_value=float(fit["slope"]),
            typical_value=typical,
            n=n,
            conditions=conditions,
            verdict=verdict,
        )

    rows = [row("all", primary, float(fits["slope"].median()), len(fits))]
    if len(fits) > 1:
        for _, fit in fits.iterrows():
            rows.append(
                row(f"{fit['model']} {fit['mode']}, {fit['device']} {fit['dtype']}, run {fit['run_id']}", fit)
            )
    return rows


def _rouge_rows(relative: pd.DataFrame | None) -> list[dict]:
    claim = "ROUGE 93–96% of sparse-attention transformers of the same size"
    rule = (
        f"LOCOST's ROUGE F1 as % of each model baseline's of the same size, from relative.jsonl (same run: "
        f"dataset, input length, documents, training budget), over all metrics; reproduced iff the median "
        f"≥ {ROUGE_SHARE:.0f}%"
    )
    relative = rouge_relative(relative)
    same_size = relative["size"].fillna("").astype(str).eq(relative["baseline_size"].fillna("").astype(str))
    is_locost = relative["family"].astype(str).eq(LOCOST)
    relative = relative[is_locost & ~relative["baseline_family"].astype(str).eq(LOCOST) & same_size]
    if relative.empty:
        return [
            _row(claim, "93–96%", rule, conditions="no LOCOST/baseline ROUGE pair under identical conditions")
        ]
    best = relative.loc[relative["relative_pct"].idxmax()]
    typical = float(relative["relative_pct"].median())
    conditions = (
        f"best: {best['metric']} vs {best['baseline_system']}, {text.length(best['input_len'])} tokens, "
        f"{best['dataset']}, {text.integer(best['n_docs'])} documents, "
        f"{text.integer(best['train_steps'])} steps: {text.percent(best['relative_pct'])} "
        f"[{text.percent(best['relative_lo_pct'])}, {text.percent(best['relative_hi_pct'])}] "
        "(paired bootstrap)"
    )
    return [
        _row(
            claim,
            "93–96%",
            rule,
            best=text.percent(best["relative_pct"]),
            typical=text.percent(typical),
            best_value=float(best["relative_pct"]),
            typical_value=typical,
            n=len(relative),
            conditions=conditions,
            verdict=REPRODUCED if typical >= ROUGE_SHARE else NOT_REPRODUCED,
        )
    ]


LENGTH_CLAIM = "quality rises with input length"
#: nats/token: a mean NLL gain smaller than this is no effect. A model that ignores the extra input still
#: gets float32 differences of ~1e-5 between lengths (measured: LED tiny, 2026-11-30), which thousands of
#: reference tokens make "significant"; 1e-3 is 0.1% of perplexity.
NLL_NOISE = 1e-3
LENGTH_RULE = (
    "per model: paired per-document difference of the reference summary's NLL (nats/token, teacher "
    "forcing, shared tokenizer) between its shortest and its longest evaluated input length, mean with "
    "bootstrap 95% CI over documents (rouge.jsonl nll_gain); reproduced iff the CI lies above 0 (NLL falls), "
    f"not reproduced iff below 0, both only when |mean| ≥ {NLL_NOISE:g} nats/token; otherwise inconclusive; "
    "headline: LOCOST"
)


def length_verdict(gain, low, high) -> tuple[str, str]:
    """(verdict, reason) of "quality rises with input length" from the paired NLL gain (nats/token,
    NLL at the shortest length minus NLL at the longest) and its 95% CI."""
    if any(text.is_missing(v) for v in (gain, low, high)):
        return NOT_MEASURED, "no paired NLL at two input lengths"
    figures = f"NLL gain {gain:+.4f} nats/token, 95% CI [{low:+.4f}, {high:+.4f}]"
    if abs(gain) < NLL_NOISE:
        return INCONCLUSIVE, f"{figures}: |gain| < {NLL_NOISE:g}, no effect beyond numerical noise"
    if low > 0:
        return REPRODUCED, f"{figures}: the longer input makes the reference more likely"
    if high < 0:
        return NOT_REPRODUCED, f"{figures}: the longer input makes the reference less likely"
    return INCONCLUSIVE, f"{figures} contains 0: the documents cannot tell the lengths apart"


def _longest_rows(rouge: pd.DataFrame | None) -> pd.DataFrame:
    """Per model system and dataset, its rouge.jsonl row at the longest length with a paired NLL gain."""
    if rouge is None or "nll_gain" not in rouge.columns:
        return pd.DataFrame()
    rows = rouge[rouge["kind"].eq("model") & rouge["nll_gain"].notna() & rouge["nll_gain_from"].notna()]
    rows = rows[rows["input_len"].isna() | rows["input_len"].ne(rows["nll_gain_from"])]
    longest = rows.assign(_len=rows["input_len"].astype(float).fillna(float("inf")))
    longest = longest.sort_values("_len").groupby(["system", "dataset"], dropna=False).tail(1)
    return longest.drop(columns="_len").sort_values(["dataset", "system"])


def _length_rows(rouge: pd.DataFrame | None) -> list[dict]:
    longest = _longest_rows(rouge)
    if longest.empty:
        return [_row(LENGTH_CLAIM, "rises", LENGTH_RULE,
                     conditions="no model's reference NLL at two lengths")]

    def row(scope, r, typical=None, n=1):
        verdict, reason = length_verdict(r["nll_gain"], r["nll_gain_lo"], r["nll_gain_hi"])
        conditions = (
            f"{r['system']}: NLL at {text.length(r['nll_gain_from'])} → {text.length(r['input_len'])} input: "
            f"{r['nll'] + r['nll_gain']:.4f} → {r['nll']:.4f} nats/token; {reason}; {r['dataset']}, "
            f"{text.integer(r['n_docs'])} documents, {text.integer(r['train_steps'])} steps"
        )
        best = f"{r['nll_gain']:+.4f} [{r['nll_gain_lo']:+.4f}, {r['nll_gain_hi']:+.4f}] nats/token"
        return _row(LENGTH_CLAIM, "rises", LENGTH_RULE, scope=scope, best=best,
                    typical=None if typical is None else f"{typical:+.4f} nats/token (median gain)",
                    best_value=float(r["nll_gain"]), typical_value=typical, n=n, conditions=conditions,
                    verdict=verdict)

    locost = longest[longest["family"].astype(str).eq(LOCOST)]
    per_model = [row(f"{r['system']} ({r['dataset']})", r) for _, r in longest.iterrows()]
    if locost.empty:
        headline = _row(LENGTH_CLAIM, "rises", LENGTH_RULE, n=len(longest),
                        conditions="no LOCOST model's reference NLL at two lengths")
    else:
        first = locost.sort_values("n_docs", ascending=False, kind="stable").iloc[0]
        headline = row("all", first, float(longest["nll_gain"].median()), len(longest))
    return [headline, *per_model]


def evaluate(records: pd.DataFrame, rouge: pd.DataFrame | None = None,
             relative: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim (and per baseline / series), computed from the records, ROUGE results and
    relative.jsonl's pairs (``runs.relative_frame``)."""
    comparisons = memory_comparisons(records)
    rows = [
        *_saving_rows("up to 50% less memory in training", TRAIN_SAVING, ["train"], comparisons),
        *_saving_rows("up to 87% less memory in inference", INFERENCE_SAVING, INFERENCE_MODES, comparisons),
        *_long_input_rows(records),
        *_time_rows(records),
        *_rouge_rows(relative),
        *_length_rows(rouge),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
