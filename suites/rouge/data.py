"""Summarization data through ``datasets``: one schema (id, document, summary) for every source.

Sources (``--data``):

- ``aclsum`` (default, offline): the ACLSum papers shipped with the installed ``aclsum`` package,
  250 ACL Anthology papers with their S2ORC full-text parse. Document = the body text (paragraphs
  joined by newlines), summary = the authors' abstract; ACLSum's own train / val / test split
  (100 / 50 / 100 papers; ``val`` is named ``validation`` here). Converted once to JSONL files in
  the cache directory and loaded with ``datasets`` offline.
- a local file (``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet``/``.arrow``) or directory
  (files named by split, e.g. ``train.jsonl`` + ``test.jsonl``, or a ``save_to_disk`` folder).
- ``hub:ID`` (needs a network), e.g. the long-document benchmarks of the LOCOST paper::

      --data hub:ccdv/arxiv-summarization  --doc-column article --summary-column abstract
      --data hub:ccdv/pubmed-summarization --doc-column article --summary-column abstract
      --data hub:ccdv/govreport-summarization --doc-column report --summary-column summary
      --data hub:kmfoda/booksum --doc-column chapter --summary-column summary_text
      (add --data-config NAME for datasets with configurations, e.g. scrolls' gov_report)

A source with a single split (e.g. one JSONL file) is split deterministically (seeded permutation,
80 / 10 / 10 into train / validation / test) when a requested split is missing. Malformed rows
(missing, empty or non-string document or summary, duplicate ids) are skipped and counted.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from records import atomic_path
from suites.rouge.errors import SuiteError

_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet",
             ".arrow": "arrow"}
DERIVED_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class Example:
    id: str
    document: str
    summary: str


@dataclass
class Split:
    """The valid examples taken from one split, and what was skipped on the way."""
    name: str
    examples: list[Example]
    scanned: int
    skipped: Counter = field(default_factory=Counter)

    def describe(self) -> dict:
        return {"split": self.name, "n_examples": len(self.examples), "rows_scanned": self.scanned,
                "rows_skipped": sum(self.skipped.values()), "skipped_by_reason": dict(self.skipped)}


@dataclass
class SummarizationData:
    name: str  # "aclsum", a path, or "hub:ID"
    train: Split
    eval: Split
    columns: dict
    derived_splits: bool
    validation: Split | None = None  #: the learning curves' held-out documents; None: no such split

    def describe(self) -> dict:
        return {"name": self.name, "columns": self.columns, "derived_splits": self.derived_splits,
                "derived_fractions": DERIVED_FRACTIONS if self.derived_splits else None,
                "train": self.train.describe(), "eval": self.eval.describe(),
                "validation": self.validation.describe() if self.validation else None}


def default_cache_dir() -> Path:
    return Path(os.environ.get("LOCOST_HARNESS_CACHE", Path.home() / ".cache" / "locost-harness"))


# --- the embedded default: ACLSum ---------------------------------------------------------------

def aclsum_files(cache_dir: Path) -> dict[str, Path]:
    """ACLSum converted to (id, document, summary) JSONL files, one per split, written once."""
    from importlib.metadata import version

    import aclsum.aclsum as package

    out = Path(cache_dir) / f"aclsum-{version('aclsum')}"
    files = {"train": out / "train.jsonl", "validation": out / "validation.jsonl",
             "test": out / "test.jsonl"}
    if all(path.is_file() for path in files.values()):
        return files
    out.mkdir(parents=True, exist_ok=True)
    for split, path in files.items():
        source = package.DATA_DIR / f"{'val' if split == 'validation' else split}.jsonl"
        with atomic_path(path) as tmp, open(source) as lines, open(tmp, "w") as sink:
            for line in lines:
                if not line.strip():
                    continue
                paper_id = json.loads(line)["id"]
                paper = json.loads((package.DATA_DIR / "paper_jsons" / f"{paper_id}.json").read_text())
                body = "\n".join(p["text"].strip() for p in paper["pdf_parse"]["body_text"]
                                 if p["text"].strip())
                sink.write(json.dumps({"id": paper_id, "document": body,
                                       "summary": (paper.get("abstract") or "").strip()}) + "\n")
    return files


# --- loading ------------------------------------------------------------------------------------

def _load_dataset_dict(spec: str, cache_dir: Path, config_name: str | None):
    """A ``datasets.DatasetDict`` for the source named by ``spec``."""
    if not spec.startswith("hub:"):
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    hf_cache = str(Path(cache_dir) / "hf-datasets")
    if spec == "aclsum":
        files = {k: str(v) for k, v in aclsum_files(cache_dir).items()}
        return datasets.load_dataset("json", data_files=files, cache_dir=hf_cache)
    if spec.startswith("hub:"):
        hub_id = spec[len("hub:"):]
        try:
            return datasets.load_dataset(hub_id, name=config_name, cache_dir=hf_cache)
        except Exception as exc:  # connection, missing repo, missing config: all one line for the user
            offline = [v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
                       if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")]
            hint = f"; {' and '.join(offline)} set: unset to download" if offline else ""
            raise SuiteError(f"cannot load {spec} from the hub ({_first_line(exc)}){hint}") from None
    path = check_source(spec)
    try:
        if path.is_dir() and (path / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(path))
        if path.is_dir():
            return datasets.load_dataset(str(path), cache_dir=hf_cache)
        builder = _BUILDERS.get("".join(path.suffixes[-1:]).lower())
        if builder is None:
            raise SuiteError(f"unsupported data file type {path.suffix!r}; use one of {', '.join(_BUILDERS)}")
        kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        return datasets.load_dataset(builder, data_files={"train": str(path)}, cache_dir=hf_cache,
                                     **kwargs)
    except SuiteError:
        raise
    except Exception as exc:  # a malformed file: pyarrow / datasets errors of many kinds
        raise SuiteError(f"cannot read {path} ({_first_line(exc)})") from None


def check_source(spec: str) -> Path | None:
    """The local path ``spec`` names (None for aclsum and hub ids); ``SuiteError`` when it is missing.
    Cheap: the CLI calls it before importing torch."""
    if spec == "aclsum" or spec.startswith("hub:"):
        return None
    path = Path(spec)
    if not path.exists():
        raise SuiteError(f"data not found: {path} (use 'aclsum', a local file or directory, or hub:ID)")
    texts = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
    for text in texts:
        if text.suffix.lower() in TEXT_SUFFIXES and text.is_file():
            check_utf8(text)
    return path


#: data files read as text (the others, parquet and arrow, are binary and typed)
TEXT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


def check_utf8(path: Path, chunk: int = 1 << 20) -> None:
    """Raise ``SuiteError`` naming the first byte of ``path`` that is not UTF-8 (read in ``chunk``-byte
    pieces: a data file may be larger than memory)."""
    import codecs

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    try:
        with open(path, "rb") as f:
            while True:
                piece, pending = f.read(chunk), len(decoder.getstate()[0])  # pending: a split character
                decoder.decode(piece, final=not piece)
                if not piece:
                    return
                offset += len(piece)
    except UnicodeDecodeError as exc:
        where = offset - pending + exc.start
        raise SuiteError(f"{path} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {where:,} "
                         "(convert it, e.g. iconv -f latin1 -t utf-8)") from None
    except OSError as exc:
        raise SuiteError(f"cannot read {path} ({exc.strerror or exc})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _derive_splits(single, seed: int) -> dict:
    order = list(range(len(single)))
    random.Random(seed).shuffle(order)
    n_val = round(DERIVED_FRACTIONS["validation"] * len(order))
    n_test = round(DERIVED_FRACTIONS["test"] * len(order))
    n_train = len(order) - n_val - n_test
    bounds = {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
              "test": order[n_train + n_val:]}
    return {name: single.select(sorted(indices)) for name, indices in bounds.items()}


def take_examples(rows, name: str, doc_column: str, summary_column: str, id_column: str | None,
                  limit: int | None = None) -> Split:
    """Valid examples of ``rows`` in order (at most ``limit``); malformed rows are counted by reason."""
    split = Split(name=name, examples=[], scanned=0)
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if limit is not None and len(split.examples) >= limit:
            break
        split.scanned += 1
        reason = None
        for column in (doc_column, summary_column):
            value = row.get(column)
            if value is None:
                reason = f"missing {column}"
            elif not isinstance(value, str):
                reason = f"non-string {column}"
            elif not value.strip():
                reason = f"empty {column}"
            if reason:
                break
        raw_id = row.get(id_column) if id_column else None
        example_id = str(raw_id) if raw_id not in (None, "") else f"{name}-{index}"
        if reason is None and example_id in seen:
            reason = "duplicate id"
        if reason:
            split.skipped[reason] += 1
            continue
        seen.add(example_id)
        split.examples.append(Example(example_id, row[doc_column], row[summary_column]))
    return split


def load_data(spec: str = "aclsum", *, doc_column: str = "document", summary_column: str = "summary",
              id_column: str | None = None, train_split: str = "train", eval_split: str = "test",
              train_docs: int | None = None, eval_docs: int | None = None,
              config_name: str | None = None, cache_dir: Path | None = None,
              seed: int = 0, val_split: str | None = None, val_docs: int | None = None) -> SummarizationData:
    """Load ``spec`` and take the training and evaluation examples, and the first ``val_docs`` of
    ``val_split`` when that split exists (else ``validation`` is None); raises ``SuiteError`` on a
    missing source, unknown split or column, or a split left empty after skipping malformed rows."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    splits = dict(_load_dataset_dict(spec, cache_dir, config_name))
    derived = False
    if len(splits) == 1 and not {train_split, eval_split} <= set(splits):
        splits = _derive_splits(next(iter(splits.values())), seed)
        derived = True
    for wanted in (train_split, eval_split):
        if wanted not in splits:
            raise SuiteError(f"unknown split {wanted!r} in {spec}; splits: {', '.join(splits)}")
    for split_name in (train_split, eval_split):
        columns = splits[split_name].column_names
        for option, column in (("--doc-column", doc_column), ("--summary-column", summary_column),
                               ("--id-column", id_column)):
            if column is not None and column not in columns:
                raise SuiteError(f"unknown column {column!r} ({option}) in split {split_name!r} of "
                                 f"{spec}; columns: {', '.join(columns)}")
    if id_column is None and "id" in splits[eval_split].column_names:
        id_column = "id"

    def take(split_name: str, limit: int | None) -> Split:
        split = take_examples(splits[split_name], split_name, doc_column, summary_column, id_column, limit)
        if not split.examples:
            raise SuiteError(f"no valid examples in split {split_name!r} of {spec} "
                             f"({split.scanned} rows scanned, skipped: {dict(split.skipped) or 'none'})")
        return split

    validation = None
    if val_split in splits and val_docs:
        validation = take_examples(splits[val_split], val_split, doc_column, summary_column, id_column,
                                   val_docs)
    return SummarizationData(
        name=spec, train=take(train_split, train_docs), eval=take(eval_split, eval_docs),
        columns={"id": id_column, "document": doc_column, "summary": summary_column},
        derived_splits=derived, validation=validation if validation and validation.examples else None)
