"""A cell: one measured configuration, the unit of isolation (one process, one record).

The key of a cell is (family, size, mode, input_len, target_len, new_tokens, batch, dtype, device,
threads, and the inputs when they are real text); ``cell_id`` is a stable hash of it, so a rerun of
the same sweep recognises finished cells.
Fields a mode does not use are ``None`` (a generate cell has no target length, a train cell no new
tokens), so that they do not split one measurement into several ids.

A cell normally measures a model from ``models``; ``workload="module:function"`` names another
importable workload (see ``bench.workloads``) with keyword arguments ``workload_args``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from records import DTYPES, FAILURES_THAT_SKIP_LONGER, MODES, STATUSES

DEVICES = ("cpu", "cuda")
__all__ = ["DEVICES", "DTYPES", "FAILURES_THAT_SKIP_LONGER", "MODES", "STATUSES", "Cell"]


@dataclass(frozen=True)
class Cell:
    """One measured configuration; its fields are the identity of the record it ends as."""
    family: str  #: model family (``models.FAMILIES``), or a label of a synthetic workload
    size: str  #: preset size: tiny, small, base
    mode: str  #: train (forward + backward), encode (encoder forward) or generate
    input_len: int  #: input tokens per sequence
    target_len: int | None = None  #: label tokens per sequence of a train step (None otherwise)
    new_tokens: int | None = None  #: tokens a generate step produces, greedy and exact (None otherwise)
    batch: int = 1  #: sequences per step
    dtype: str = "fp32"  #: fp32, or bf16/fp16 autocast over fp32 weights
    device: str = "cpu"  #: cpu or cuda[:N]
    threads: int = 1  #: CPU threads of the worker (OMP_NUM_THREADS and torch)
    workload: str | None = None  #: ``module:function`` replacing the model; None: family and size
    #: a tensor file of token ids (real text, repeated or cut to the length); None: random ids
    inputs: str | None = None
    workload_args: tuple[tuple[str, object], ...] = field(default=())
    #: the GPU a simulated cell stands on (``bench.gpusim.GPUS`` name or its memory in bytes): the step
    #: runs on fake tensors on this host's CPU; None: measured on ``device``
    simulate: str | None = None

    def __post_init__(self):
        # fields the mode does not use are dropped, so that they do not change the id
        if self.mode != "train":
            object.__setattr__(self, "target_len", None)
        if self.mode != "generate":
            object.__setattr__(self, "new_tokens", None)

    @property
    def model(self) -> str:
        return f"{self.family}-{self.size}"

    def key(self) -> dict:
        key = {name: getattr(self, name) for name in (
            "family", "size", "mode", "input_len", "target_len", "new_tokens", "batch", "dtype",
            "device", "threads")}
        if self.inputs is not None:
            key["inputs"] = self.inputs
        if self.workload is not None:
            key["workload"] = self.workload
            key["workload_args"] = [list(pair) for pair in self.workload_args]
        if self.simulate is not None:
            key["simulate"] = self.simulate
        return key

    @property
    def cell_id(self) -> str:
        text = json.dumps(self.key(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def series(self) -> tuple:
        """The cell's key without its input length: cells of one series differ only in length."""
        return tuple((name, self.workload_args if name == "workload_args" else value)
                     for name, value in self.key().items() if name != "input_len")

    @property
    def host_device(self) -> str:
        """Where the worker computes: ``device``, or the CPU for a simulated cell."""
        return "cpu" if self.simulate is not None else self.device

    @property
    def label(self) -> str:
        extra = {"train": f" +{self.target_len} target", "generate": f" +{self.new_tokens} new"}
        dtype = "" if self.dtype == "fp32" else f" {self.dtype}"
        simulated = f" (simulated {self.simulate})" if self.simulate is not None else ""
        return f"{self.model} {self.mode} {self.input_len:,}{extra.get(self.mode, '')}{dtype}{simulated}"

    def to_json(self) -> dict:
        data = asdict(self)
        data["workload_args"] = [list(pair) for pair in self.workload_args]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Cell:
        data = dict(data)
        data["workload_args"] = tuple(tuple(pair) for pair in data.get("workload_args", ()))
        return cls(**data)

    def with_length(self, input_len: int) -> Cell:
        return replace(self, input_len=input_len)


class Failures:
    """The shortest failing length of each series (a model, mode and conditions). A generate step
    runs the encoder first, so an encode failure at a length also skips generate from that length on."""

    def __init__(self):
        self.first: dict[tuple, tuple[int, str, str]] = {}

    def note(self, cell: Cell, status: str) -> None:
        if status in FAILURES_THAT_SKIP_LONGER:
            known = self.first.get(cell.series)
            if known is None or cell.input_len < known[0]:
                self.first[cell.series] = (cell.input_len, status, cell.mode)

    def reason_to_skip(self, cell: Cell) -> str | None:
        candidates = [(self.first.get(cell.series), False)]
        if cell.mode == "generate":
            candidates.append((self.first.get(replace(cell, mode="encode").series), True))
        for known, contained in candidates:
            if known is not None and (cell.input_len > known[0] or contained and cell.input_len == known[0]):
                length, status, mode = known
                return f"skipped: {cell.model} {mode} was {status} at {length:,} tokens"
        return None
