"""The LOCOST paper's claims, checked against what was measured (never typed in).

Each claim gives one headline row (scope "all") with its verdict and, where useful, rows per baseline or
per measured series that carry measured figures only (best, typical, where): the paper's "up to" figures
are maxima over baselines, so a single baseline's figure is no verdict. Verdicts: ``reproduced``,
``not reproduced``, ``inconclusive`` (there are data, but they cannot decide: the reason says why, with
the figures) and ``not measured``. Every headline row carries its rule and a one-line reason.

Gates shared by the claims: efficiency claims are judged only from the preset sizes the paper's claims
are about (``records.CLAIM_SIZES``; ``records.SIZE_ROLES`` says what each size is for): figures from
smoke-test presets alone give ``inconclusive``. The quality claim is judged only when every compared
model beats the Lead-k reference (``analysis.lead_margins``).
"""

from __future__ import annotations

import pandas as pd

from records import CLAIM_SIZES, SIZE_ROLES
from reports import text
from reports.analysis import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    BUSY_HOST_SHARE,
    CROSSOVER_RULE,
    crossovers,
    is_simulated,
    lead_margins,
    memory_comparisons,
    rouge_relative,
    scaling_fits,
)
from reports.runs import INFERENCE_MODES, LOCOST, PAPER_BASELINES, key_of

REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
INCONCLUSIVE, NOT_MEASURED = "inconclusive", "not measured"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED)
#: the verdict of a row per baseline or per series: none (measured figures only)
NO_VERDICT = ""

TRAIN_SAVING = 50.0
INFERENCE_SAVING = 87.0
LONG_INPUT = 600_000
MAX_EXPONENT = 1.25
#: an exponent is judged only from this many lengths (2 degrees of freedom for its CI) ...
MIN_FIT_LENGTHS = 4
#: ... spanning at least this factor (three doublings)
MIN_FIT_RANGE = 8
ROUGE_SHARE = 93.0
#: a bootstrap CI over fewer documents than this says little: no quality claim is judged from it
MIN_DOCS = 10
DOCS_RULE = f"judged only from ≥ {MIN_DOCS} evaluation documents (fewer: inconclusive)"

SIZE_RULE = (
    f"judged only from {' / '.join(CLAIM_SIZES)} presets; figures from other presets alone (tiny: "
    f"{SIZE_ROLES['tiny']}) are inconclusive"
)

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
    "judged_on",
    "reason",
    "rule",
]
#: ``judged_on`` of a claim judged from measured figures (the others: ``simulated <gpu>``, bench.gpusim)
MEASURED = "measured"


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
    reason="",
    judged_on=MEASURED,
) -> dict:
    headline = scope == "all"
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
        "verdict": verdict if headline else NO_VERDICT,
        "judged_on": judged_on,
        "reason": reason if headline else "",
        "rule": rule,
    }


def _claim_sized(frame: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """(the rows a claim is judged from, whether they are of ``CLAIM_SIZES``): those rows when there
    are any, else every row (their figures are shown, never decisive)."""
    sized = frame[frame["size"].isin(CLAIM_SIZES)]
    return (sized, True) if not sized.empty or frame.empty else (frame, False)


def _size_gate(verdict: str, reason: str, frame: pd.DataFrame, claim_sized: bool) -> tuple[str, str]:
    """(verdict, reason), made inconclusive when the figures come from presets no claim is about."""
    if claim_sized or verdict == NOT_MEASURED:
        return verdict, reason
    sizes = sorted({str(size) for size in frame["size"]})
    smoke = all(SIZE_ROLES.get(size) == SIZE_ROLES["tiny"] for size in sizes)
    who = "smoke-test models" if smoke else "models of no claimed size"
    return INCONCLUSIVE, f"{who} ({', '.join(sizes)}): {reason}"


def _describe_comparison(pair) -> str:
    runs = dict.fromkeys([pair["locost_run_id"], pair["baseline_run_id"]])
    return (
        f"vs {pair['baseline_model']}, {pair['mode']}, {text.integer(pair['input_len'])} tokens, "
        f"{text.condition_label(pair)}: {text.number(pair['locost_mib'])} vs "
        f"{text.number(pair['baseline_mib'])} MiB above weights (run {' / '.join(map(str, runs))})"
    )


def _where(pair) -> str:
    """'led-small train 16K' of one comparison."""
    return f"{pair['baseline_model']} {pair['mode']} {text.length(pair['input_len'])}"


def _saving_verdict(measured: pd.DataFrame, baseline_oom: pd.DataFrame, threshold: float) -> tuple[str, str]:
    """(verdict, reason) of an "up to T% less memory" claim from the measured pairs and the pairs whose
    baseline ran out of memory where LOCOST ran ok."""
    oom = None if baseline_oom.empty else baseline_oom.sort_values("input_len").iloc[0]
    oom_words = "" if oom is None else (
        f"{_where(oom)} ran out of memory where LOCOST used {text.number(oom['locost_mib'])} MiB "
        f"({len(baseline_oom)} such pair(s)): the saving there is unmeasured")
    if measured.empty:
        if oom is not None:
            return INCONCLUSIVE, f"no pair with both ok; {oom_words}"
        return NOT_MEASURED, "no LOCOST/baseline pair ok under identical conditions"
    best = measured.loc[measured["saving_pct"].idxmax()]
    figures = f"best saving {text.percent(best['saving_pct'])}, vs {_where(best)}"
    if not text.is_missing(simulated := best.get("simulated_gpu")):  # figures of no GPU run: say so
        figures = f"simulated {simulated} (bench.gpusim): {figures}"
    if best["saving_pct"] >= threshold:
        return REPRODUCED, f"{figures} ≥ {threshold:.0f}%"
    if oom is not None:
        return INCONCLUSIVE, f"{figures} < {threshold:.0f}%, but {oom_words}"
    return NOT_REPRODUCED, f"{figures} < {threshold:.0f}%"


def _saving_rows(claim, threshold, modes, comparisons) -> list[dict]:
    rule = (
        f"best saving = max(1 − LOCOST/baseline peak memory above weights) over (baseline, length) "
        f"pairs with both ok in {' / '.join(modes)} under identical conditions, baselines "
        f"{', '.join(PAPER_BASELINES)}; {SIZE_RULE}. Reproduced iff best ≥ {threshold:.0f}%; below it, "
        f"inconclusive if a baseline ran out of memory (oom) where LOCOST ran ok (the saving there is "
        f"unmeasured), else not reproduced; not measured without any pair. Rows per baseline give the "
        f"figures only: the paper's figure is a maximum over baselines"
    )
    paper = comparisons["baseline_family"].isin(PAPER_BASELINES)
    pairs, claim_sized = _claim_sized(comparisons[comparisons["mode"].isin(modes) & paper])
    measured = pairs[pairs["saving_pct"].notna()]
    locost_ok = pairs["locost_status"].eq("ok")
    baseline_failed = pairs[locost_ok & ~pairs["baseline_status"].isin(["ok", "skipped"])]
    baseline_oom = pairs[locost_ok & pairs["baseline_status"].eq("oom")]

    def row(scope, measured, baseline_failed, verdict=NO_VERDICT, reason=""):
        extra = ""
        if not baseline_failed.empty:
            first = baseline_failed.sort_values("input_len").iloc[0]
            extra = (
                f"; the baseline failed where LOCOST ran in {len(baseline_failed)} cell(s), "
                f"first {first['baseline_model']} {first['mode']} at {text.integer(first['input_len'])}: "
                f"{first['note']}"
            )
        common = dict(scope=scope, verdict=verdict, reason=reason)
        if measured.empty:
            return _row(claim, f"{threshold:.0f}%", rule, **common,
                        conditions="no LOCOST/baseline pair ok under identical conditions" + extra)
        best = measured.loc[measured["saving_pct"].idxmax()]
        typical = float(measured["saving_pct"].median())
        return _row(claim, f"{threshold:.0f}%", rule, **common, best=text.percent(best["saving_pct"]),
                    typical=text.percent(typical), best_value=float(best["saving_pct"]),
                    typical_value=typical, n=len(measured), conditions=_describe_comparison(best) + extra)

    verdict, reason = _size_gate(*_saving_verdict(measured, baseline_oom, threshold), pairs, claim_sized)
    rows = [row("all", measured, baseline_failed, verdict, reason)]
    for family in sorted(pairs["baseline_family"].dropna().unique()):
        rows.append(
            row(
                f"vs {family}",
                measured[measured["baseline_family"].eq(family)],
                baseline_failed[baseline_failed["baseline_family"].eq(family)],
            )
        )
    return rows


def _long_input_verdict(locost: pd.DataFrame) -> tuple[str, str]:
    """(verdict, reason) of the > 600K claim from LOCOST's inference cells."""
    long = locost[locost["input_len"].ge(LONG_INPUT).fillna(False)].sort_values("input_len")
    ok = long[long["status"].eq("ok")]
    if not ok.empty:
        first = ok.iloc[0]
        return REPRODUCED, f"{first['model']} {first['mode']} ok at {text.integer(first['input_len'])} tokens"
    for statuses, verdict, why in [
        (("oom", "unsupported"), NOT_REPRODUCED, ""),
        (("timeout", "error"), INCONCLUSIVE, ": a time limit or an error says nothing of the model's reach"),
    ]:
        failed = long[long["status"].isin(statuses)]
        if not failed.empty:
            first = failed.iloc[0]
            return verdict, (f"{first['model']} {first['mode']} {first['status']} at "
                             f"{text.integer(first['input_len'])} tokens ({first['message'] or 'no message'})"
                             + why)
    skipped = long[long["status"].eq("skipped")]
    if skipped.empty:
        return NOT_MEASURED, f"no LOCOST inference cell tried at ≥ {LONG_INPUT:,} tokens"
    return NOT_MEASURED, (f"skipped at {text.integer(skipped['input_len'].min())}: "
                          f"{skipped.iloc[0]['message']}")


#: the claim on input length, whose best figure is the longest input LOCOST ran ok at, at any length
LONG_INPUT_CLAIM = "handles more than 600K tokens at inference"


def _long_input_rows(records: pd.DataFrame) -> list[dict]:
    claim = LONG_INPUT_CLAIM
    rule = (
        f"reproduced iff a LOCOST {' or '.join(INFERENCE_MODES)} cell is ok at ≥ {LONG_INPUT:,} tokens; "
        f"not reproduced if LOCOST was tried there and ran out of memory or refused the length (oom, "
        f"unsupported); inconclusive if it only timed out or failed with an error there; {SIZE_RULE}; "
        f"else not measured"
    )
    inference = records[records["family"].eq(LOCOST) & records["mode"].isin(INFERENCE_MODES)]
    locost, claim_sized = _claim_sized(inference)
    ok = locost[locost["status"].eq("ok")]
    if ok.empty:
        conditions = "no LOCOST inference cell ran ok"
        best = typical = None
    else:
        longest = ok.loc[ok["input_len"].astype(float).idxmax()]
        per_series = ok.groupby(["model", "mode", "condition_key"], dropna=False)["input_len"].max()
        best, typical = int(longest["input_len"]), float(per_series.median())
        typical = int(typical) if typical.is_integer() else typical  # a length, unless halfway between two
        conditions = f"{longest['model']} {longest['mode']}, {text.condition_label(longest)}"
    verdict, reason = _size_gate(*_long_input_verdict(locost), locost, claim_sized)
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
            reason=reason,
        )
    ]


def _exponent_verdict(fit) -> tuple[str, str]:
    """(verdict, reason) of the O(L log L) claim from one fitted time exponent."""
    span = fit["max_len"] / fit["min_len"]
    figures = (f"k = {text.exponent(fit['slope'], fit['ci_low'], fit['ci_high'])} from {fit['n']} lengths "
               f"over {span:,.0f}× ({text.length(fit['min_len'])}–{text.length(fit['max_len'])})")
    if fit["n"] < MIN_FIT_LENGTHS or span < MIN_FIT_RANGE:
        return INCONCLUSIVE, f"{figures}: too few lengths (the rule needs ≥ {MIN_FIT_LENGTHS} over ≥ " \
                             f"{MIN_FIT_RANGE}×)"
    if not text.is_missing(fit.get("contention")) and fit["contention"] > 1:
        return INCONCLUSIVE, (f"{figures}: timed with up to {text.integer(fit['contention'])} cells "
                              "at once on the same cores (--allow-contention)")
    if not text.is_missing(fit.get("cores_taken")) and fit["cores_taken"] > BUSY_HOST_SHARE:
        return INCONCLUSIVE, (f"{figures}: timed while other work on the host took up to "
                              f"{fit['cores_taken']:.0%} of a cell's cores (host_other_cores)")
    if fit["ci_high"] <= MAX_EXPONENT:
        return REPRODUCED, f"{figures}: the CI lies at or below {MAX_EXPONENT}"
    if fit["ci_low"] > MAX_EXPONENT:
        return NOT_REPRODUCED, f"{figures}: the CI lies above {MAX_EXPONENT}"
    return INCONCLUSIVE, f"{figures}: the CI straddles {MAX_EXPONENT}"


def _time_rows(records: pd.DataFrame) -> list[dict]:
    claim = "O(L log L) time in input length"
    rule = (
        f"exponent k of time ∝ L^k with its 95% CI, least squares on log-log over the ok lengths of one "
        f"LOCOST series (encode if any, else generate; the widest length range); {SIZE_RULE}. "
        f"Reproduced iff the CI lies at or below {MAX_EXPONENT} (L log L over 1K–600K fits k slightly "
        f"above 1, quadratic attention ≈ 2); not reproduced iff it lies above; inconclusive if it "
        f"straddles {MAX_EXPONENT}, the series has fewer than {MIN_FIT_LENGTHS} lengths or spans less "
        f"than {MIN_FIT_RANGE}×, or its cells were timed while others ran on the same cores "
        f"(--allow-contention) or while other work on the host took more than {BUSY_HOST_SHARE:.0%} of a "
        f"cell's cores (host_other_cores beyond the cores it left free, over its threads); not measured "
        f"without a series of ≥ 2 lengths. Rows per series: figures only"
    )
    locost = records[records["family"].eq(LOCOST) & records["mode"].isin(INFERENCE_MODES)]
    fits = scaling_fits(locost)
    if not fits.empty:
        fits = fits[fits["metric"].eq("time")]
    if fits.empty:
        return [_row(claim, "O(L log L)", rule, conditions="no LOCOST inference series with ok times",
                     reason="no LOCOST inference series with ok times at ≥ 2 lengths")]
    fits, claim_sized = _claim_sized(fits)
    mode = "encode" if fits["mode"].eq("encode").any() else "generate"
    candidates = fits[fits["mode"].eq(mode)].assign(range=lambda f: f["max_len"] / f["min_len"])
    primary = candidates.sort_values(["range", "n"]).iloc[-1]

    def row(scope, fit, typical=None, n=1, verdict=NO_VERDICT, reason=""):
        conditions = (
            f"{fit['model']} {fit['mode']}, {text.integer(fit['min_len'])}–"
            f"{text.integer(fit['max_len'])} tokens ({fit['n']} lengths), {text.condition_label(fit)}, "
            f"{text.integer(fit['threads'])} thread(s), run {fit['run_id']}"
        )
        return _row(claim, "O(L log L)", rule, scope=scope,
                    best=text.exponent(fit["slope"], fit["ci_low"], fit["ci_high"]),
                    typical=None if typical is None else f"{typical:.2f} (median exponent)",
                    best_value=float(fit["slope"]), typical_value=typical, n=n, conditions=conditions,
                    verdict=verdict, reason=reason)

    verdict, reason = _size_gate(*_exponent_verdict(primary), fits, claim_sized)
    rows = [row("all", primary, float(fits["slope"].median()), len(fits), verdict, reason)]
    if len(fits) > 1:
        for _, fit in fits.iterrows():
            rows.append(
                row(f"{fit['model']} {fit['mode']}, {fit['device']} {fit['dtype']}, run {fit['run_id']}", fit)
            )
    return rows


def _margin_words(margin) -> str:
    """'locost-tiny rouge1 23.4 vs 31.6 at 1K' of one model-against-Lead-k row."""
    return (f"{margin['system']} {margin['metric']} {100 * margin['model']:.1f} vs "
            f"{100 * margin['lead']:.1f} at {text.length(margin['input_len'])}")


def _lead_gate(margins: pd.DataFrame) -> str | None:
    """Why the compared models do not show that they beat Lead-k (the inconclusive reason), or None."""
    if margins.empty:
        return "no ROUGE figure of the compared models to set against Lead-k"
    missing = margins[margins["method"].eq("no Lead-k")]
    if not missing.empty:
        first = missing.iloc[0]
        return (f"no Lead-k reference on the same documents and lengths ({first['system']} at "
                f"{text.length(first['input_len'])}, {first['dataset']})")
    lead = margins["lead_system"].iloc[0].capitalize()
    below = margins[margins["difference"].le(0)]
    if not below.empty:
        pairs = below.drop_duplicates(["system", "dataset", "input_len"])
        everything = margins.drop_duplicates(["system", "dataset", "input_len"])
        worst = below.loc[below["difference"].idxmin()]
        return (f"models below {lead}: {len(pairs)} of {len(everything)} model–length pairs, worst "
                f"{_margin_words(worst)}")
    unsure = margins[~margins["ci_low"].gt(0)]
    if not unsure.empty:
        first = unsure.loc[unsure["ci_low"].idxmin()]
        return (f"margin over {lead} not shown: {_margin_words(first)}, difference 95% CI "
                f"[{100 * first['ci_low']:+.1f}, {100 * first['ci_high']:+.1f}] ({first['method']})")
    return None


def _docs_gate(n_docs) -> str | None:
    """Why a verdict from ``n_docs`` evaluation documents cannot stand (the inconclusive reason), or
    None: every quality verdict needs ``MIN_DOCS`` documents (``DOCS_RULE``)."""
    if text.is_missing(n_docs) or int(n_docs) < MIN_DOCS:
        shown = "no count of" if text.is_missing(n_docs) else int(n_docs)
        return f"{shown} evaluation documents (the rule needs ≥ {MIN_DOCS})"
    return None


def _system_keys(frame: pd.DataFrame) -> pd.Series:
    """One key per (system, dataset, input length, documents); lengths compared as whole numbers."""
    counts = {c: pd.to_numeric(frame[c]).astype("Int64") for c in ("input_len", "n_docs")}
    return key_of(frame.assign(**counts), ["system", "dataset", "input_len", "n_docs"])


def _rouge_rows(relative: pd.DataFrame | None, rouge: pd.DataFrame | None,
                docs: pd.DataFrame | None = None) -> list[dict]:
    claim = "ROUGE 93–96% of sparse-attention transformers of the same size"
    rule = (
        f"LOCOST's ROUGE F1 as % of each of the paper's baselines ({', '.join(PAPER_BASELINES)}) of the "
        f"same size, from relative.jsonl (same run: dataset, input length, documents, training budget; "
        f"paired bootstrap CIs), over all metrics; LOCOST's own variants (LOCOST-S4, SPADE) are no "
        f"baseline of this claim. {DOCS_RULE[0].upper()}{DOCS_RULE[1:]}; judged only "
        f"when every compared model beats Lead-k on the "
        f"same dataset, documents and input length on every metric by a margin whose 95% CI lies above "
        f"zero (paired bootstrap over documents, {BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}, "
        f"where per-document scores are recorded; else the difference of the two systems' CIs, which is "
        f"wider), else inconclusive; then reproduced iff the median ≥ {ROUGE_SHARE:.0f}%, else not "
        f"reproduced"
    )
    relative = rouge_relative(relative)
    same_size = relative["size"].fillna("").astype(str).eq(relative["baseline_size"].fillna("").astype(str))
    is_locost = relative["family"].astype(str).eq(LOCOST)
    paper = relative["baseline_family"].astype(str).isin(PAPER_BASELINES)
    relative = relative[is_locost & paper & same_size]
    if relative.empty:
        none = "no LOCOST/baseline ROUGE pair under identical conditions"
        return [_row(claim, "93–96%", rule, conditions=none, reason=none)]
    best = relative.loc[relative["relative_pct"].idxmax()]
    typical = float(relative["relative_pct"].median())
    conditions = (
        f"best: {best['metric']} vs {best['baseline_system']}, {text.length(best['input_len'])} tokens, "
        f"{best['dataset']}, {text.integer(best['n_docs'])} documents, "
        f"{text.integer(best['train_steps'])} steps: {text.percent(best['relative_pct'])} "
        f"[{text.percent(best['relative_lo_pct'])}, {text.percent(best['relative_hi_pct'])}] "
        "(paired bootstrap)"
    )
    compared = pd.concat([relative.assign(system=relative[column])
                          for column in ("locost_system", "baseline_system")])
    margins = lead_margins(rouge, docs)
    margins = margins[_system_keys(margins).isin(set(_system_keys(compared)))]
    verdict = REPRODUCED if typical >= ROUGE_SHARE else NOT_REPRODUCED
    reason = f"median {text.percent(typical)} {'≥' if verdict == REPRODUCED else '<'} {ROUGE_SHARE:.0f}%"
    if (why := _docs_gate(relative["n_docs"].min())) is not None:
        verdict, reason = INCONCLUSIVE, why
    elif (why := _lead_gate(margins)) is not None:
        verdict, reason = INCONCLUSIVE, why
    return [
        _row(claim, "93–96%", rule, best=text.percent(best["relative_pct"]), typical=text.percent(typical),
             best_value=float(best["relative_pct"]), typical_value=typical, n=len(relative),
             conditions=conditions, verdict=verdict, reason=reason)
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
    f"not reproduced iff below 0, both only when |mean| ≥ {NLL_NOISE:g} nats/token and the model beats "
    "Lead-k at both lengths by a margin whose 95% CI lies above zero (as for the ROUGE claim: a model that "
    f"has not learned the task cannot show whether it uses the extra input); {DOCS_RULE}; otherwise "
    "inconclusive; "
    "headline: LOCOST; rows per model give the figures"
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


def _length_lead_gate(row, margins: pd.DataFrame) -> str | None:
    """Why ``row``'s model does not show that it beats Lead-k at both lengths it compares, or None;
    ``margins``: ``analysis.lead_margins`` of the run."""
    length = margins["input_len"]
    longest = length.isna() if pd.isna(row["input_len"]) else length.eq(row["input_len"])  # NaN: full text
    mine = margins[margins["system"].eq(row["system"]) & margins["dataset"].eq(row["dataset"])
                   & (length.eq(row["nll_gain_from"]) | longest)]
    return _lead_gate(mine)


def _length_rows(rouge: pd.DataFrame | None, docs: pd.DataFrame | None = None) -> list[dict]:
    longest = _longest_rows(rouge)
    if longest.empty:
        none = "no model's reference NLL at two lengths"
        return [_row(LENGTH_CLAIM, "rises", LENGTH_RULE, conditions=none, reason=none)]
    margins = lead_margins(rouge, docs)  # once for every row below

    def row(scope, r, typical=None, n=1):
        verdict, reason = length_verdict(r["nll_gain"], r["nll_gain_lo"], r["nll_gain_hi"])
        conditions = (
            f"{r['system']}: NLL at {text.length(r['nll_gain_from'])} → {text.length(r['input_len'])} input: "
            f"{r['nll'] + r['nll_gain']:.4f} → {r['nll']:.4f} nats/token; {reason}; {r['dataset']}, "
            f"{text.integer(r['n_docs'])} documents, {text.integer(r['train_steps'])} steps"
        )
        if verdict in (REPRODUCED, NOT_REPRODUCED) and (
                why := _docs_gate(r["n_docs"]) or _length_lead_gate(r, margins)):
            verdict, reason = INCONCLUSIVE, why
        best = f"{r['nll_gain']:+.4f} [{r['nll_gain_lo']:+.4f}, {r['nll_gain_hi']:+.4f}] nats/token"
        return _row(LENGTH_CLAIM, "rises", LENGTH_RULE, scope=scope, best=best,
                    typical=None if typical is None else f"{typical:+.4f} nats/token (median gain)",
                    best_value=float(r["nll_gain"]), typical_value=typical, n=n, conditions=conditions,
                    verdict=verdict, reason=reason)

    locost = longest[longest["family"].astype(str).eq(LOCOST)]
    per_model = [row(f"{r['system']} ({r['dataset']})", r) for _, r in longest.iterrows()]
    if locost.empty:
        none = "no LOCOST model's reference NLL at two lengths"
        headline = _row(LENGTH_CLAIM, "rises", LENGTH_RULE, n=len(longest), conditions=none, reason=none)
    else:
        first = locost.sort_values("n_docs", ascending=False, kind="stable").iloc[0]
        headline = row("all", first, float(longest["nll_gain"].median()), len(longest))
    return [headline, *per_model]


CROSSOVER_CLAIMS = {"time": "LOCOST needs less time than the baseline from (crossover length)",
                    "memory": "LOCOST needs less memory than the baseline from (crossover length)"}


def crossover_rows(records: pd.DataFrame) -> pd.DataFrame:
    """claims.csv's rows of the crossover lengths (``analysis.crossovers``): one per metric, baseline,
    mode and conditions, in ``COLUMNS``, with no verdict (a measured figure, not a claim of the paper),
    the length in ``best_value`` (None where it does not cross) and the rule."""
    rows = [_row(CROSSOVER_CLAIMS[r["metric"]], text.DASH, CROSSOVER_RULE,
                 scope=f"vs {r['baseline_model']}, {r['mode']}", best=r["where"],
                 best_value=None if text.is_missing(r["crossover_len"]) else int(r["crossover_len"]),
                 n=r["lengths"], conditions=text.condition_label(r), judged_on=basis_of(r))
            for r in crossovers(records).to_dict("records")]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["best_value"] = pd.Series([row["best_value"] for row in rows], index=frame.index, dtype=object)
    return frame


def basis_of(row) -> str:
    """What a record's (or a comparison's) figures are: ``measured``, or ``simulated <gpu>``."""
    gpu = row.get("simulated_gpu")
    return MEASURED if text.is_missing(gpu) else f"simulated {gpu}"


def bases(records: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(basis, its records): the measured records, then those simulated on each GPU (``bench.gpusim``),
    so that no claim mixes measured and simulated figures; ``[("measured", records)]`` when nothing was
    simulated (no records at all included: the claims then say what was not measured)."""
    if records.empty:
        return [(MEASURED, records)]
    simulated = is_simulated(records)
    groups = [] if simulated.all() else [(MEASURED, records[~simulated])]
    by_gpu = records[simulated].groupby("simulated_gpu", sort=True)
    return groups + [(f"simulated {gpu}", rows) for gpu, rows in by_gpu]


def verdict_words(claim: dict) -> str:
    """The verdict as shown: ``reproduced``, or ``reproduced, simulated h100-80gb`` where it was judged on
    simulated peaks; '' for a row without a verdict."""
    verdict, basis = claim.get("verdict") or "", claim.get("judged_on")
    return verdict if not verdict or text.is_missing(basis) or basis == MEASURED else f"{verdict}, {basis}"


def _record_claims(records: pd.DataFrame) -> list[list[dict]]:
    """The rows of each claim judged from cell records (memory in training, in inference, long inputs,
    time), from ``records`` of one basis."""
    comparisons = memory_comparisons(records)
    training = _saving_rows("up to 50% less memory in training", TRAIN_SAVING, ["train"], comparisons)
    inference = _saving_rows("up to 87% less memory in inference", INFERENCE_SAVING, INFERENCE_MODES,
                             comparisons)
    return [training, inference, _long_input_rows(records), _time_rows(records)]


def evaluate(records: pd.DataFrame, rouge: pd.DataFrame | None = None, relative: pd.DataFrame | None = None,
             rouge_docs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim (and per baseline / series), computed from the records, ROUGE results,
    relative.jsonl's pairs (``runs.relative_frame``) and per-document ROUGE (records.RougeDocRow, for
    the paired comparison with Lead-k). A claim judged from records gets its rows once per basis
    (``bases``: measured, then each simulated GPU), its ``judged_on`` column naming it."""
    per_basis = [(basis, _record_claims(group)) for basis, group in bases(records)]
    rows = [dict(row, judged_on=basis) for index in range(len(per_basis[0][1]))
            for basis, claims in per_basis for row in claims[index]]
    rows += [*_rouge_rows(relative, rouge, rouge_docs), *_length_rows(rouge, rouge_docs)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    # the value columns hold token lengths (int) beside percentages and exponents (float): a float
    # column would turn a length of 1,024 into 1024.0 in claims.csv, so each value keeps its own type
    values = ["best_value", "typical_value"]
    frame[values] = pd.DataFrame([[row[c] for c in values] for row in rows], columns=values, dtype=object)
    return frame
