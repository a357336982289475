"""What a suite is, as data: a ``Suite`` holds one ``Sweep`` per device kind; a ``Drop`` leaves cells
out of a default sweep (see ``suites``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import product

from bench.cells import Cell
from bench.settings import Settings
from models import FAMILIES
from records.suites import SuiteReport

#: every registered family, in the registry's order
FAMILY_NAMES = tuple(FAMILIES)
K = 1024


@dataclass(frozen=True)
class Drop:
    """Cells of ``family`` in ``mode`` (None: any) from ``min_len`` tokens on, and in ``dtype`` if given, are
    left out of a default sweep; with ``machine``, only where that test of this machine holds."""
    family: str | None
    mode: str | None
    min_len: int
    reason: str
    dtype: str | None = None
    machine: Callable[[], bool] | None = None

    def matches(self, cell: Cell) -> bool:
        return (self.family in (None, cell.family) and self.mode in (None, cell.mode)
                and cell.input_len >= self.min_len and self.dtype in (None, cell.dtype)
                and (self.machine is None or self.machine()))


@dataclass(frozen=True)
class Sweep:
    """A suite's default measurement on one device kind: the cells are the product models x sizes x
    modes x lengths (minus ``drop``); lengths are input tokens, times are seconds."""
    models: tuple[str, ...] = FAMILY_NAMES  #: families (models.FAMILIES)
    sizes: tuple[str, ...] = ("small",)  #: presets: tiny, small, base
    modes: tuple[str, ...] = ("train", "generate")  #: of train, encode, generate
    lengths: tuple[int, ...] = (1 * K, 2 * K, 4 * K, 8 * K, 16 * K)  #: input tokens per sequence
    target_len: int = 128  #: label tokens of a train step
    new_tokens: int = 16  #: tokens a generate step produces (greedy, exact)
    batch: int = 1  #: sequences per step
    #: fp32, or bf16/fp16 autocast over fp32 weights; several: every cell in each (``--dtype`` picks one)
    dtype: str | tuple[str, ...] = "fp32"
    #: token-id tensor file of a real text (see ``suites.texts``); None: random ids
    inputs: str | None = None
    #: how each cell is measured and supervised (``bench.settings``: warm-up, repeats, FLOPs, timeout, ...)
    settings: Settings = Settings()
    drop: tuple[Drop, ...] = field(default=())
    #: config fields given to every model built, e.g. (("cross_attention", "absorbed"),); cells with
    #: any run the model workload with them as ``workload_args``, which every record then carries
    model_config: tuple[tuple[str, object], ...] = ()
    #: the GPU every cell is simulated on (``bench.gpusim``: fake tensors, no GPU needed); None: measured
    simulate: str | None = None

    def with_options(self, **options) -> Sweep:
        """This sweep with the given fields replaced (None values ignored); choosing the models or
        lengths explicitly measures the cells a ``Drop`` of lengths would leave out, choosing the dtype
        those a ``Drop`` of a dtype would."""
        options = {k: v for k, v in options.items() if v is not None}
        by_length, by_dtype = bool({"models", "lengths"} & options.keys()), "dtype" in options
        if (by_length or by_dtype) and "drop" not in options:
            options["drop"] = tuple(drop for drop in self.drop if not (by_dtype if drop.dtype else by_length))
        return replace(self, **options)

    def cells(self, device: str, threads: int) -> list[Cell]:
        dtypes = (self.dtype,) if isinstance(self.dtype, str) else self.dtype
        cells = [Cell(family, size, mode, length, target_len=self.target_len, new_tokens=self.new_tokens,
                      batch=self.batch, dtype=dtype, device=device, threads=threads,
                      inputs=self.inputs, simulate=self.simulate, **self._workload())
                 for family, size, mode, dtype, length in product(
                     self.models, self.sizes, self.modes, dtypes, self.lengths)]
        return [cell for cell in cells if not self.dropped(cell)]

    def _workload(self) -> dict:
        if not self.model_config:
            return {}
        return {"workload": "bench.workloads:model", "workload_args": self.model_config}

    def dropped(self, cell: Cell) -> Drop | None:
        return next((drop for drop in self.drop if drop.matches(cell)), None)


@dataclass(frozen=True)
class Suite:
    """A measured suite: its default sweep per device kind and, in ``report``, its name and what the
    report makes of its records (``records.suites``, where the report reads it too)."""
    report: SuiteReport
    description: str
    cpu: Sweep
    cuda: Sweep
    #: the GPU (``bench.gpusim.GPUS`` name) on which a machine without one simulates the ``cuda`` sweep
    #: beside the ``cpu`` default, into one report (``cli.sweep.simulated_beside``); None: it does not
    simulated_beside_cpu: str | None = None

    @property
    def name(self) -> str:
        return self.report.suite

    def sweep(self, device: str) -> Sweep:
        return self.cuda if device.startswith("cuda") else self.cpu
