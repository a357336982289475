"""Text tables of a ROUGE run for the terminal: ROUGE per system and length, relative quality."""

from __future__ import annotations

from suites.rouge import scoring
from suites.rouge.config import length_label


def _format_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(r, widths, strict=True)).rstrip()
             for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rouge_table(rows: list[dict], lengths: list) -> str:
    """System x input length; each entry ROUGE-1/2/L F1 x 100."""
    systems = list(dict.fromkeys(row["system"] for row in rows))
    scores = {(r["system"], r["input_len"]): f"{100 * r['rouge1']:.1f}/{100 * r['rouge2']:.1f}/"
              f"{100 * r['rougeL']:.1f}" for r in rows}
    params = {r["system"]: r["params_total"] for r in rows}
    header = ["system", "params"] + [f"R1/R2/RL @ {length_label(x)}" for x in lengths]
    body = [[s, f"{params[s] / 1e6:.1f}M" if params[s] else "-"]
            + [scores.get((s, x), "n/a") for x in lengths] for s in systems]
    return _format_table(header, body)


def relative_table(rows: list[dict]) -> str:
    """Relative quality, % of the baseline's ROUGE with the 95% CI."""
    def pct(row, metric):
        if row[metric] is None:
            return "n/a"
        lo, hi = (row[f"{metric}_{side}"] for side in ("lo", "hi"))  # None: unbounded (scoring.ratio_ci)
        return (f"{100 * row[metric]:.0f}% [{'-inf' if lo is None else f'{100 * lo:.0f}'}, "
                f"{'inf' if hi is None else f'{100 * hi:.0f}'}]")
    header = ["system / baseline", "input"] + [m.upper().replace("ROUGE", "R") for m in scoring.METRICS]
    body = [[f"{r['system']} / {r['baseline']}", length_label(r["input_len"])]
            + [pct(r, m) for m in scoring.METRICS] for r in rows]
    title = "Relative quality (system ROUGE / baseline ROUGE, paired bootstrap 95% CI)"
    return title + "\n" + _format_table(header, body)


def nll_table(rows: list[dict], lengths: list) -> str:
    """Model x input length; each entry the reference NLL (nats/token) with its 95% CI."""
    rows = [r for r in rows if r["nll"] is not None]
    systems = list(dict.fromkeys(row["system"] for row in rows))
    cells = {(r["system"], r["input_len"]): f"{r['nll']:.3f} [{r['nll_lo']:.3f}, {r['nll_hi']:.3f}]"
             for r in rows}
    header = ["system"] + [f"NLL @ {length_label(x)}" for x in lengths]
    body = [[s] + [cells.get((s, x), "n/a") for x in lengths] for s in systems]
    title = ("Reference-summary NLL, nats per token under teacher forcing (mean over documents, "
             "bootstrap 95% CI)")
    return title + "\n" + _format_table(header, body)
