"""The systems of a ROUGE run: models trained with the budget (or loaded), their predictions at every
input length, and the extractive references; finished work is reused under a fingerprint.

Files in the run directory: ``checkpoints/<system>/`` (weights, ``tokenizer.json``, ``harness.json``),
``predictions/<system>-<length>.jsonl`` (one row per document: id, prediction, reference, input_len),
``nll/<system>-<length>.jsonl`` (one row per document: id, input_len, reference_tokens, nll_sum in
nats, nll in nats/token; ``suites.rouge.likelihood``), ``curves/<system>.jsonl`` (the learning curve
of a model trained in this run: one row per point, ``training.Validation``) and ``state.json`` (what
finished, under the fingerprint of everything that determines it).
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from pathlib import Path

import torch

from records import read_jsonl, write_json, write_jsonl
from suites.rouge import extractive
from suites.rouge.config import ModelSpec, RougeConfig, length_label
from suites.rouge.data import SummarizationData
from suites.rouge.errors import SuiteError
from suites.rouge.generation import generate, visible_text
from suites.rouge.likelihood import examples_nll
from suites.rouge.tokenizer import SharedTokenizer
from suites.rouge.training import Budget, TrainingExample, TrainLog, Validation, summarization_example, train


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prediction_path(system: str, length: int | None) -> str:
    """The predictions file of ``system`` at ``length``, relative to the run directory."""
    return f"predictions/{system}-{length_label(length)}.jsonl"


def nll_path(system: str, length: int | None) -> str:
    """The per-document reference NLL file of ``system`` at ``length``, relative to the run directory."""
    return f"nll/{system}-{length_label(length)}.jsonl"


def curve_path(system: str) -> str:
    return f"curves/{system}.jsonl"


def read_predictions(path: Path) -> list[dict]:
    return read_jsonl(path)[0]


class State:
    """What earlier runs in this directory finished: trained systems and prediction files, each
    under the fingerprint of everything that determines it."""

    def __init__(self, path: Path, reset: bool):
        self.path = path
        data = {} if reset or not path.is_file() else json.loads(path.read_text())
        self.systems: dict = data.get("systems", {})
        self.predictions: dict = data.get("predictions", {})
        self.nll: dict = data.get("nll", {})

    def save(self) -> None:
        write_json(self.path, {"systems": self.systems, "predictions": self.predictions, "nll": self.nll})

    def part(self, system: str, lengths: list) -> dict:
        """What this state holds of ``system`` at ``lengths`` (its entry, prediction and NLL records),
        in ``save``'s layout, for ``merge`` into another state."""
        predictions = [prediction_path(system, x) for x in lengths]
        scored = [nll_path(system, x) for x in lengths]
        return {"systems": {system: self.systems[system]},
                "predictions": {p: self.predictions[p] for p in predictions if p in self.predictions},
                "nll": {p: self.nll[p] for p in scored if p in self.nll}}

    def merge(self, part: dict) -> None:
        """Take ``part`` (``State.part`` of another state) over this state's records of the same names."""
        for name in ("systems", "predictions", "nll"):
            getattr(self, name).update(part[name])


# --- building, loading, training -------------------------------------------------------------------

def _training_examples(examples: list, tokenizer: SharedTokenizer, budget: Budget):
    documents = tokenizer.encode_batch([e.document for e in examples])
    summaries = tokenizer.encode_batch([e.summary for e in examples])
    eos = tokenizer.special.eos
    return [summarization_example(d.ids, s.ids, eos, budget.train_len, budget.target_len)
            for d, s in zip(documents, summaries, strict=True)]


def _gsg_examples(examples: list, tokenizer: SharedTokenizer, budget: Budget, rouge_tokenizer: str):
    from suites.rouge.gsg import gap_sentence_example

    if tokenizer.special.mask is None:
        raise SuiteError("gap-sentence pre-training needs a mask token (<mask>, [MASK], <mask_1> or "
                         "<extra_id_0>) and the tokenizer has none")
    made = [gap_sentence_example(e.document, tokenizer, budget.train_len, budget.target_len,
                                 budget.gsg_ratio, rouge_tokenizer) for e in examples]
    return [e for e in made if e is not None]


def _build(spec: ModelSpec, tokenizer: SharedTokenizer, budget: Budget, device: torch.device):
    from models import ModelError, build

    try:
        handle = build(spec.family, spec.size, seed=budget.seed, device=device,
                       **tokenizer.model_overrides())
        handle.check_lengths(budget.train_len, budget.target_len, budget.batch_size)
    except ModelError as exc:
        raise SuiteError(f"{spec.name}: {exc}") from None
    except ImportError as exc:
        raise SuiteError(f"cannot build {spec.name}: {exc}") from None
    return handle


def _load(path: Path, tokenizer: SharedTokenizer, device: torch.device):
    from models import ModelError, load

    try:
        handle = load(path, device=device)
    except ModelError as exc:
        raise SuiteError(str(exc)) from None
    if handle.model.config.vocab_size < tokenizer.vocab_size:
        raise SuiteError(f"{path}: the model's vocabulary ({handle.model.config.vocab_size}) is smaller "
                         f"than the tokenizer's ({tokenizer.vocab_size}); pass the matching --tokenizer")
    return handle


def _params(handle) -> dict:
    p = handle.params
    return {"total": p.total, "embedding": p.embedding, "non_embedding": p.non_embedding}


class ModelRunner:
    """Trains (or loads) one system and makes its predictions, reusing finished work."""

    def __init__(self, cfg: RougeConfig, run_dir: Path, state: State, tokenizer: SharedTokenizer,
                 data: SummarizationData, device: torch.device):
        self.cfg, self.run_dir, self.state = cfg, run_dir, state
        self.tokenizer, self.data, self.device = tokenizer, data, device
        self._examples: dict[str, list] = {}

    def examples(self, phase: str, held_out: bool = False) -> list[TrainingExample]:
        """The training examples of ``phase`` (gsg or finetune), or its learning curve's held-out ones."""
        key = (phase, held_out)
        if key not in self._examples:
            split = self.data.validation if held_out else self.data.train
            source = split.examples if split is not None else []
            if phase == "gsg":
                made = _gsg_examples(source, self.tokenizer, self.cfg.budget, self.cfg.rouge_tokenizer)
            else:
                made = _training_examples(source, self.tokenizer, self.cfg.budget)
            self._examples[key] = made
        return self._examples[key]

    def validation(self, phase: str) -> Validation | None:
        """The learning curve of ``phase``: None when off (``curve_every`` 0) or no held-out split."""
        if not self.cfg.curve_every or self.data.validation is None:
            return None
        examples = self.examples(phase, held_out=True)
        return Validation(examples, self.cfg.curve_every) if examples else None

    def fingerprint(self, spec: ModelSpec) -> str:
        if spec.checkpoint is not None:
            weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime)
                             for p in Path(spec.checkpoint).iterdir() if p.is_file())
            return digest("checkpoint", str(Path(spec.checkpoint).resolve()), weights,
                          self.tokenizer.fingerprint)
        from models import config

        preset = config(spec.family, spec.size, **self.tokenizer.model_overrides()).to_dict()
        preset.pop("transformers_version", None)
        gsg_sentences = [self.cfg.rouge_tokenizer] if self.cfg.budget.gsg_steps else []  # picks the gaps
        return digest("trained", spec.family, spec.size, preset, self.tokenizer.fingerprint,
                      self.cfg.budget.describe(), [e.id for e in self.data.train.examples],
                      self.data.name, self.data.columns, str(self.device.type), *gsg_sentences)

    def obtain(self, spec: ModelSpec, fingerprint: str):
        """(handle, system entry): loaded, reused from this run directory, or built and trained."""
        if spec.checkpoint is not None:
            handle = _load(Path(spec.checkpoint), self.tokenizer, self.device)
            harness = Path(spec.checkpoint) / "harness.json"
            saved = json.loads(harness.read_text()) if harness.is_file() else {}  # saved by this suite
            return handle, {"fingerprint": fingerprint, "params": _params(handle),
                            "train_steps": saved.get("train_steps"), "family": handle.family.name,
                            "size": saved.get("size"), "source": str(spec.checkpoint), "training": None}
        directory = self.run_dir / "checkpoints" / spec.name
        harness = directory / "harness.json"
        if not self.cfg.force and harness.is_file():
            saved = json.loads(harness.read_text())
            if saved.get("fingerprint") == fingerprint:
                handle = _load(directory, self.tokenizer, self.device)
                return handle, {**saved, "source": f"reused {directory}"}
        handle = _build(spec, self.tokenizer, self.cfg.budget, self.device)
        entry = {"fingerprint": fingerprint, "params": _params(handle), "train_steps": self.cfg.budget.steps,
                 "family": spec.family, "size": spec.size, "budget": self.cfg.budget.describe(),
                 "training": self._train(spec, handle)}
        directory.mkdir(parents=True, exist_ok=True)
        handle.model.save_pretrained(str(directory))
        self.tokenizer.save(directory / "tokenizer.json")
        write_json(harness, entry)
        return handle, {**entry, "source": "trained in this run"}

    def _train(self, spec: ModelSpec, handle) -> list[dict]:
        """Gap-sentence pre-training (when budgeted), then fine-tuning; the logs of both."""
        budget, logs, curve = self.cfg.budget, [], []
        for phase, steps in (("gsg", budget.gsg_steps), ("finetune", budget.steps)):
            if steps:
                log: TrainLog = train(handle, self.examples(phase), budget, steps, phase,
                                      self.tokenizer.special.pad, spec.name, self.cfg.progress,
                                      self.validation(phase))
                logs.append(log.describe())
                curve += [{"system": spec.name, **point} for point in log.curve]
                val = (f", validation NLL {log.curve[0]['val_nll']} -> {log.curve[-1]['val_nll']}"
                       if log.curve else "")
                print(f"  {spec.name}: {phase} {steps} steps in {log.seconds:.0f} s, loss "
                      f"{logs[-1]['loss_first']} -> {logs[-1]['loss_last']}{val}", flush=True)
        path = self.run_dir / curve_path(spec.name)
        if curve:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(path, curve)
        else:
            path.unlink(missing_ok=True)
        return logs

    def run(self, spec: ModelSpec, inputs: dict, references: list[str], ids: list[str],
            labels: list[list[int]]) -> dict:
        """Predictions and reference NLL of ``spec`` at every length (``inputs``: length -> list of id
        lists; ``labels``: the reference token ids scored, per document); returns the system's entry,
        with the lengths it cannot take under ``unsupported``."""
        fingerprint = self.fingerprint(spec)
        settings = self.cfg.generation.describe()
        keys = {length: digest(fingerprint, ids, length, settings) for length in inputs}
        nll_keys = {length: digest(fingerprint, ids, length, labels) for length in inputs}
        entry = self.state.systems.get(spec.name)
        if entry is not None and entry.get("fingerprint") != fingerprint:
            entry = None
        todo = list(inputs) if entry is None else [x for x in inputs if not self._done(spec, x, keys[x])]
        nll_todo = [x for x in inputs if not self._scored(spec, x, nll_keys[x])]
        if entry is not None and not todo and not nll_todo:
            print(f"  {spec.name}: predictions reused from {self.run_dir}", flush=True)
            return {**entry, "unsupported": self._unsupported(spec, inputs)}
        handle, entry = self.obtain(spec, fingerprint)
        self.state.systems[spec.name] = entry
        for length in todo:
            self.state.predictions[prediction_path(spec.name, length)] = {"key": keys[length],
                                                                         "unsupported": None}
            self._predict(spec, handle, entry, length, inputs[length], references, ids)
            self.state.save()
        for length in nll_todo:
            self._score(spec, handle, length, inputs[length], labels, ids, nll_keys[length])
            self.state.save()
        del handle
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        entry["unsupported"] = self._unsupported(spec, inputs)
        self.state.save()
        return entry

    def _scored(self, spec: ModelSpec, length: int | None, key: str) -> bool:
        path = nll_path(spec.name, length)
        record = self.state.nll.get(path) or {}
        return record.get("key") == key and (
            record.get("unsupported") is not None or (self.run_dir / path).is_file())

    def _score(self, spec: ModelSpec, handle, length: int | None, inputs: list[list[int]],
               labels: list[list[int]], ids: list[str], key: str) -> None:
        """Write the per-document reference NLL at one length, or mark the length unsupported."""
        path = nll_path(spec.name, length)
        self.state.nll[path] = {"key": key, "unsupported": None}
        try:
            handle.check_lengths(max(len(x) for x in inputs), max(len(y) for y in labels))
        except ValueError as exc:
            self.state.nll[path]["unsupported"] = str(exc)
            (self.run_dir / path).unlink(missing_ok=True)
            return
        examples = [TrainingExample(x, y) for x, y in zip(inputs, labels, strict=True)]
        documents = examples_nll(handle, examples, self.tokenizer.special.pad)
        (self.run_dir / path).parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(self.run_dir / path, [
            {"id": i, "input_len": len(x), "reference_tokens": d.tokens, "nll_sum": d.nll_sum, "nll": d.nll}
            for i, x, d in zip(ids, inputs, documents, strict=True)])

    def _done(self, spec: ModelSpec, length: int | None, key: str) -> bool:
        path = prediction_path(spec.name, length)
        record = self.state.predictions.get(path) or {}
        return record.get("key") == key and (
            record.get("unsupported") is not None or (self.run_dir / path).is_file())

    def _unsupported(self, spec: ModelSpec, inputs: dict) -> dict:
        records = {length_label(x): self.state.predictions[prediction_path(spec.name, x)] for x in inputs}
        return {label: r["unsupported"] for label, r in records.items() if r["unsupported"]}

    def _predict(self, spec: ModelSpec, handle, entry: dict, length: int | None, inputs: list[list[int]],
                 references: list[str], ids: list[str]) -> None:
        """Generate and write the predictions at one length, or mark the length unsupported."""
        path = prediction_path(spec.name, length)
        try:
            handle.check_lengths(max(len(x) for x in inputs), self.cfg.generation.max_new_tokens + 1,
                                 self.cfg.generation.batch_size)
        except ValueError as exc:
            print(f"  {spec.name} @ {length_label(length)}: unsupported: {exc}", flush=True)
            self.state.predictions[path]["unsupported"] = str(exc)
            (self.run_dir / path).unlink(missing_ok=True)
            return
        started = time.perf_counter()
        predictions = generate(handle, self.tokenizer, inputs, self.cfg.generation,
                               desc=f"generate {spec.name} @ {length_label(length)}",
                               progress=self.cfg.progress)
        entry.setdefault("generation_s", {})[length_label(length)] = round(time.perf_counter() - started, 2)
        write_jsonl(self.run_dir / path, [
            {"id": i, "prediction": p, "reference": r, "input_len": len(x)}
            for i, p, r, x in zip(ids, predictions, references, inputs, strict=True)])


def extractive_systems(cfg: RougeConfig, run_dir: Path, eval_set) -> list[dict]:
    """Lead-k and the greedy oracle on the text each input length keeps; their system entries."""
    systems = []
    for name, make in ((f"lead-{cfg.lead_k}", lambda text, ref: extractive.lead(text, cfg.lead_k)),
                       ("oracle", lambda text, ref: extractive.oracle(text, ref, cfg.rouge_tokenizer))):
        for length, rows in eval_set.truncated.items():
            write_jsonl(run_dir / prediction_path(name, length), [
                {"id": i, "prediction": make(visible_text(doc, enc, kept), ref), "reference": ref,
                 "input_len": len(x)}
                for i, doc, enc, (x, kept), ref in zip(eval_set.ids, eval_set.documents, eval_set.encoded,
                                                       rows, eval_set.references, strict=True)])
        systems.append({"system": name, "kind": "extractive", "params": None, "train_steps": None})
    return systems
