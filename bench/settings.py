"""How a sweep measures its cells, declared once: ``Measurement`` (what the worker follows) and
``Supervision`` (what the parent runner enforces around it), carried together as ``Settings``.

One object travels from the command line to the worker: a suite declares its ``Settings``
(``suites.Sweep.settings``), ``cli.sweep`` overrides the fields given as flags (``Settings.replace``),
the sweep (``bench.sweep``) resolves the budget once and hands it to an executor (``bench.executors``),
whose task calls ``bench.runner.run_cell``; that one writes ``Settings.measurement`` unchanged into the
worker's spec (``bench.protocol.WorkerSpec``) and watches the worker under ``Settings.supervision``.
run.json keeps them as one flat object (``Settings.to_json``: the field names of the two parts differ).

Adding a setting: one ``setting(...)`` field below (default, unit, help) and its flag in
``cli.sweep.build_parser`` (whose destination is the field's name; the help comes from here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from bench.env import mem_available_bytes


def setting(default, unit: str | None, help: str):
    """A settings field: its ``default``, its ``unit`` (None: a flag or a name) and its ``help``, which
    the command line's flag shows."""
    return field(default=default, metadata={"unit": unit, "help": help})


@dataclass(frozen=True)
class Measurement:
    """How a worker measures a cell (not part of the cell's identity); the worker's spec carries it."""
    warmup: int = setting(1, "steps", "untimed steps before the timed ones")
    warmup_max_len: int | None = setting(
        None, "tokens", "warm up only inputs up to this many tokens (None: always)")
    repeats: int = setting(3, "steps", "timed steps per cell (at least)")
    min_time_s: float = setting(
        0.0, "s", "keep repeating until the timed steps add up to this many seconds")
    flops: bool = setting(
        False, None, "count FLOPs (fvcore + analytic) of train/encode cells up to --flops-max-len")
    flops_max_len: int = setting(2048, "tokens", "longest input whose FLOPs are counted")
    flops_cache: str | None = setting(
        None, "path", "the run's FLOP counts (bench.flops.FlopCache), reused by every cell and resume; "
                      "the sweep sets it to the run directory's (None: count each cell's anew)")

    def warmup_for(self, input_len: int) -> int:
        """Warm-up steps of a cell of ``input_len`` tokens (none beyond ``warmup_max_len``)."""
        return self.warmup if self.warmup_max_len is None or input_len <= self.warmup_max_len else 0


#: how a cell's worker starts: forked from a preloaded server, a new interpreter, or auto (see runner)
WORKER_STARTS = ("auto", "forkserver", "exec")


@dataclass(frozen=True)
class Supervision:
    """What the parent runner enforces while a worker measures (``bench.runner.run_cell``)."""
    timeout_s: float = setting(600.0, "s", "seconds per cell, process start and model build included")
    budget_bytes: int | None = setting(
        None, "bytes", "host-memory budget per cell (total RSS); None: budget_fraction x MemAvailable "
                       "when the sweep starts (on Slurm: when the task starts, on its node)")
    budget_fraction: float = setting(0.8, "of MemAvailable", "the budget when none is given")
    poll_s: float = setting(0.05, "s", "how often the runner reads the worker's RSS")
    worker_start: str = setting(
        "auto", None, "how each cell's process starts: forkserver (forked from a server with torch, "
                      "transformers and the models imported) or exec (a new interpreter that imports them); "
                      "auto: forkserver on CPU, exec on CUDA")


@dataclass(frozen=True)
class Settings:
    """A sweep's settings: the worker's ``measurement`` and the runner's ``supervision``."""
    measurement: Measurement = Measurement()
    supervision: Supervision = Supervision()

    @classmethod
    def of(cls, **values) -> Settings:
        """The defaults with the named fields of either part replaced: ``Settings.of(repeats=1,
        timeout_s=300)``. Raises ``TypeError`` for a name neither part declares."""
        return cls().replace(**values)

    def replace(self, **values) -> Settings:
        """These settings with the named fields of either part replaced (None is a value: it sets
        None). Raises ``TypeError`` for a name neither part declares."""
        unknown = set(values) - set(setting_fields())
        if unknown:
            raise TypeError(f"no setting named {', '.join(sorted(unknown))}")
        part = {name: {k: v for k, v in values.items() if k in _names(type(getattr(self, name)))}
                for name in ("measurement", "supervision")}
        return Settings(replace(self.measurement, **part["measurement"]),
                        replace(self.supervision, **part["supervision"]))

    def resolved(self) -> Settings:
        """With ``budget_bytes`` set: ``budget_fraction`` of MemAvailable now, where none was given
        (still None where /proc/meminfo cannot be read)."""
        if self.supervision.budget_bytes is not None:
            return self
        available = mem_available_bytes()
        budget = int(self.supervision.budget_fraction * available) if available else None
        return self.replace(budget_bytes=budget)

    def to_json(self) -> dict:
        """Both parts as one flat object (run.json's ``settings``)."""
        return {**asdict(self.measurement), **asdict(self.supervision)}


def _names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def setting_fields() -> dict:
    """Every setting's ``dataclasses.Field`` by name, the measurement's first (names are unique)."""
    return {f.name: f for cls in (Measurement, Supervision) for f in fields(cls)}


def setting_help(name: str) -> str:
    """The help of setting ``name``, with its unit and default: what its command-line flag says."""
    spec = setting_fields()[name]
    unit = f"; unit: {spec.metadata['unit']}" if spec.metadata["unit"] else ""
    return f"{spec.metadata['help']} (default: the suite's{unit})"
