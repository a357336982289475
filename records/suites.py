"""What the report makes of each measured suite's records, declared once beside the record schema.

Each suite of ``suites`` (``suites.memory`` etc.) carries its ``SuiteReport`` as ``Suite.report`` and
takes its name from it; the report (``reports``) reads the same declarations to choose a record's
section, its layout and which suite's figures to trust, so it never matches suite names itself. The
declarations live here, not in ``suites``, because the report may import ``records`` only (``suites``
imports the engine and the models, torch with them).

A record belongs to the suite whose name its ``Record.suite`` starts with (``report_of``); a record of
no declared suite (a caller's own ``run_sweep``) is reported as the memory suite's.
"""

from __future__ import annotations

from dataclasses import dataclass

#: a suite's report section: ``metric`` against input length per model: figures, then one table per figure
LENGTH_LAYOUT = "lengths"
#: or memory and time against length with fitted power laws; the fits and reach tables
SCALING_LAYOUT = "scaling"
LAYOUTS = (LENGTH_LAYOUT, SCALING_LAYOUT)


@dataclass(frozen=True)
class SuiteReport:
    """How the report shows one suite's records.

    ``suite``: the suite's name, which its records carry (``Record.suite``); the section's id, its CSV
    (``<suite>.csv``) and its figures' file names start with it. ``title``: the section's heading.
    ``layout``: ``LENGTH_LAYOUT`` or ``SCALING_LAYOUT``. ``metric``: the record column a length layout
    shows (its unit in its name, e.g. ``mem_peak_above_base_mib``). ``time_figures``: a length layout
    also plots the time per step of its cells. ``comparisons_follow``: the savings and crossover
    sections (LOCOST against the baselines, from every suite's cells) come right after this section.
    ``memory_rank`` / ``time_rank``: where several suites measured the same cell, the report's memory
    (time) figures take the record of the suite ranked lowest (0 first) among them.
    Raises ValueError for an unknown layout or a length layout without a metric.
    """

    suite: str
    title: str
    layout: str
    memory_rank: int
    time_rank: int
    metric: str | None = None
    time_figures: bool = False
    comparisons_follow: bool = False

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"suite {self.suite}: layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.layout == LENGTH_LAYOUT and not self.metric:
            raise ValueError(f"suite {self.suite}: a {LENGTH_LAYOUT} layout needs a metric column")


#: one peak per cell, each measured in a fresh process: the memory figures trusted first
MEMORY = SuiteReport("memory", "Peak memory vs input length", LENGTH_LAYOUT, memory_rank=0, time_rank=2,
                     metric="mem_peak_above_base_mib", time_figures=True, comparisons_follow=True)
#: repeated timed steps: the time figures trusted first
THROUGHPUT = SuiteReport("throughput", "Throughput vs input length", LENGTH_LAYOUT, memory_rank=2,
                         time_rank=0, metric="tokens_per_s")
#: one step per length, doubling until each model fails
SCALING = SuiteReport("scaling", "Scaling", SCALING_LAYOUT, memory_rank=1, time_rank=1)
#: every measured suite's declaration, in the order of their report sections
SUITE_REPORTS = (MEMORY, THROUGHPUT, SCALING)


def report_of(suite) -> SuiteReport:
    """The declaration of the suite a record's ``suite`` (a name, or None) belongs to: the declared suite
    its name starts with, else ``MEMORY``."""
    return next((report for report in SUITE_REPORTS if str(suite).startswith(report.suite)), MEMORY)
