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

MODES = ("train", "encode", "generate")
DTYPES = ("fp32", "bf16", "fp16")
DEVICES = ("cpu", "cuda")
#: statuses a cell ends with; ``skipped`` is given by the runner, never measured
STATUSES = ("ok", "oom", "timeout", "unsupported", "error", "skipped")
#: failures after which longer inputs of the same model and mode are not attempted
FAILURES_THAT_SKIP_LONGER = ("oom", "timeout", "unsupported")


@dataclass(frozen=True)
class Cell:
    family: str
    size: str
    mode: str
    input_len: int
    target_len: int | None = None
    new_tokens: int | None = None
    batch: int = 1
    dtype: str = "fp32"
    device: str = "cpu"
    threads: int = 1
    workload: str | None = None  # None: the model named by family and size
    #: a tensor file of token ids (real text, repeated or cut to the length); None: random ids
    inputs: str | None = None
    workload_args: tuple[tuple[str, object], ...] = field(default=())

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
    def label(self) -> str:
        extra = {"train": f" +{self.target_len} target", "generate": f" +{self.new_tokens} new"}
        return f"{self.model} {self.mode} {self.input_len:,}{extra.get(self.mode, '')}"

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
