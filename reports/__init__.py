"""Reports: run directories (results.jsonl, rouge.jsonl) -> tidy CSVs + one self-contained report.html.

>>> from reports import build
>>> build(["reports/out/memory-cpu"])  # doctest: +SKIP
PosixPath('reports/out/memory-cpu/report.html')

``reports.fit_power_law`` (from ``reports.analysis``) is the one home of the power-law scaling fit.
A report never imports a model or the bench: it reads only the records.
"""

from reports import mplconfig  # noqa: F401 - first: matplotlib's directory before matplotlib is imported
from reports.analysis import Fit, fit_power_law
from reports.build import build
from reports.runs import ReportError

__all__ = ["Fit", "ReportError", "build", "fit_power_law"]
