"""What every program's command line shares: one parser class, one length grammar, one device and
thread resolution, and one way to fail (one ``error:`` line on stderr, exit status 2)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import select
import signal
import sys
from collections.abc import Callable
from pathlib import Path

_SUFFIXES = {"": 1, "k": 1024, "m": 1024**2}
#: the longest input length taken, in tokens: the int32 maximum, beyond which torch's CUDA kernels can
#: no longer index a sequence dimension with 32-bit math (ATen ``canUse32BitIndexMath``; some refuse),
#: ~1,000x the longest length the harness measures (2m = 2,097,152)
MAX_LENGTH = 2**31 - 1


class UsageError(Exception):
    """Bad input from the command line: printed as one ``error:`` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise ``UsageError`` instead of printing the usage."""

    def error(self, message: str):
        raise UsageError(message)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (exit status 143)."""


def _terminate(signum, frame):
    raise Terminated()


def guard(work: Callable[[], int], kept: Callable[[], str], *,
          errors: tuple[type[BaseException], ...] = (), resumes: bool = True) -> int:
    """Run ``work()`` and return its exit status; what goes wrong ends in one line on stderr:

    - ``UsageError`` or one of ``errors`` (a locked run directory, a drifted environment): ``error:``, 2;
    - ``OSError`` (permissions, a full disk): ``error: <what>; <kept()>``, 2;
    - Ctrl-C (SIGINT) / SIGTERM: ``interrupted: <kept()>; rerun the same command to resume``, 130 / 143
      (without the advice to resume where ``resumes`` is false: a rerun starts again).

    ``kept()`` says what the run directory holds (``"3 records kept in reports/out/x/results.jsonl"``).
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return work()
    except (UsageError, *errors) as exc:
        return fail(exc)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and stdout_closed():
            raise  # the reader of stdout left (| head): program() ends quietly
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}; {kept()}")
    except KeyboardInterrupt as exc:
        print(f"interrupted: {kept()}" + ("; rerun the same command to resume" if resumes else ""),
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def program(module: str, *args) -> int:
    """``module.main(*args)``, imported only once SIGTERM and Ctrl-C are taken: the programs' imports
    (torch, transformers) take seconds, and an interrupt then still ends in one line (130 / 143)."""
    import importlib

    signal.signal(signal.SIGTERM, _terminate)
    try:
        status = importlib.import_module(module).main(*args)
        sys.stdout.flush()  # a reader that left shows here at the latest, not in the interpreter's exit
        return status
    except BrokenPipeError:
        # stdout's reader left (``| head``): end quietly with status 1, as Python's docs recommend
        # (signal module, "Note on SIGPIPE"); stdout goes to devnull so that no later flush fails
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt as exc:
        print("interrupted while starting: nothing was measured or written", file=sys.stderr, flush=True)
        # a half-imported torch can die of the same signal again while the interpreter shuts down
        os._exit(143 if isinstance(exc, Terminated) else 130)


def stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    poller = select.poll()
    try:
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (OSError, ValueError):  # no file descriptor (a test's captured stdout): not a pipe
        return False
    return any(events & select.POLLERR for _, events in poller.poll(0))


def fail(message) -> int:
    """Print ``error: <message>`` on stderr; the exit status of bad input (2)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def parse_length(text: str, full: bool = False) -> int | None:
    """Tokens: ``4096``, ``4k``/``4K`` (4,096), ``1m`` (1,048,576), ``1.5k``, at most ``MAX_LENGTH``;
    with ``full``, also ``full`` (None: the whole document). Raises ``argparse.ArgumentTypeError``."""
    if full and text.strip().lower() == "full":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"not a length: {text!r} (use e.g. 4096, 4k, 1m{' or full' if full else ''})")
    value = float(match.group(1)) * _SUFFIXES[match.group(2).lower()]
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"a length must be a positive whole number of tokens: {text!r}")
    if value > MAX_LENGTH:
        raise argparse.ArgumentTypeError(
            f"a length must be at most {MAX_LENGTH:,} tokens (2**31 - 1, the int32 limit of torch's "
            f"32-bit index math): {text!r}")
    return int(value)


def parse_lengths(text: str, full: bool = False) -> tuple[int | None, ...]:
    """A comma list of lengths, each once, shortest first (``full`` last)."""
    lengths = {parse_length(item, full) for item in text.split(",") if item.strip()}
    if not lengths:
        raise argparse.ArgumentTypeError("the list of lengths is empty")
    return (*sorted(x for x in lengths if x is not None), *([None] if None in lengths else []))


def lengths_or_full(text: str) -> tuple[int | None, ...]:
    return parse_lengths(text, full=True)


def names(text: str) -> tuple[str, ...]:
    """A comma list of names, each once, in the order given."""
    items = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise argparse.ArgumentTypeError("the list is empty")
    return items


def positive(kind, at_most: float | None = None):
    """An argparse type: a finite ``kind(text)`` > 0 (and <= ``at_most``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"must be at most {at_most:g}: {text!r}")
        return value
    return parse


def finite(low: float, high: float = math.inf):
    """An argparse type: a finite float in [low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            where = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {where}: {text!r}")
        return value
    return parse


def path_name(text: str) -> str:
    """An argparse type for a name that becomes one path component (a run id): letters, digits and
    ``. _ + -``, not ``.`` or ``..``, so that it stays inside its parent directory."""
    if not re.fullmatch(r"[\w.+-]+", text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a directory name (use letters, digits and . _ + -, not . or ..)")
    if (why := name_too_long(Path(text))) is not None:
        raise argparse.ArgumentTypeError(why)
    return text


def check_output(out: Path, run_dir: Path | None = None) -> None:
    """``--out`` (and the run directory under it) must be a directory or not exist yet: a regular file
    there is bad input, refused before anything starts. Raises ``UsageError``."""
    for path in (out, run_dir):
        if path is not None and (why := name_too_long(path)):
            raise UsageError(why)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output directory {str(out)!r} is a file")
    if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"run directory {str(run_dir)!r} is a file")


def name_too_long(path: Path) -> str | None:
    """Why ``path`` cannot be created: a component longer than its filesystem's file-name limit
    (``NAME_MAX``, bytes: 255 on Linux's filesystems), or None."""
    existing = next((p for p in [path, *path.parents] if os.path.exists(p)), Path("."))  # never raises
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            return f"the name {part[:24]!r}... is {size} bytes long, over the {limit}-byte name limit here"
    return None


def non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0: {text!r}")
    return int(text)


def parse_model_config(text: str) -> tuple[tuple[str, object], ...]:
    """``cross_attention=absorbed,reuse_kernel=true``: config fields given to every model built (JSON
    values such as true, 3 or 0.5; anything else is a string)."""
    pairs = []
    for item in (part for part in text.split(",") if part.strip()):
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key) or not raw:
            raise argparse.ArgumentTypeError(f"not a KEY=VALUE config field: {item.strip()!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        pairs.append((key, value))
    if not pairs:
        raise argparse.ArgumentTypeError("the list of config fields is empty")
    return tuple(sorted(dict(pairs).items()))


def _value_problem(key: str, default, value) -> str | None:
    """Why ``value`` cannot replace the config field ``key`` whose default is ``default`` (its JSON type
    and range), or None. An integer whose default is positive is a size or a count (d_model, layers,
    heads, d_state, a window, the vocabulary): at least 1. A token id: at least 0. A float whose default
    is not negative (a dropout probability, an epsilon, a time step): finite and not negative."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "expected true or false"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        if not (number and isinstance(value, int)):
            return "expected an integer"
        if key.endswith("token_id") and value < 0:
            return "a token id is at least 0"
        if not key.endswith("token_id") and default > 0 and value < 1:
            return "a size or count: expected an integer of at least 1"
        return None
    if isinstance(default, float):
        if not number:
            return "expected a number"
        if default >= 0 and not (math.isfinite(value) and value >= 0):
            return "expected a finite number of at least 0"
        return None
    if isinstance(default, str):
        return None if isinstance(value, str) else "expected a string"
    return None


def check_model_config(models, size: str, pairs) -> None:
    """Every field of ``--model-config`` must already be a config field of every model of the sweep, of
    the default's type (true/false for a flag, an integer for an integer field, ...), and the model must
    build with it (on the meta device: no memory, no weights). Raises UsageError naming the field."""
    from models import build, config

    for name in models:
        defaults = config(name, size).to_dict()
        unknown = [key for key, _ in pairs if key not in defaults]
        if unknown:
            raise UsageError(f"{name} has no config field {', '.join(map(repr, unknown))} (--model-config; "
                             "give --models only the families that have it)")
        for key, value in pairs:
            if (why := _value_problem(key, defaults[key], value)) is not None:
                raise UsageError(f"--model-config {key}={json.dumps(value)} for {name}: {why}")
        try:
            build(name, size, device="meta", **dict(pairs))
        except Exception as exc:  # any failure to build is the value's fault: the defaults build
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"--model-config for {name}: {first}") from None


def check_choices(kind: str, given, known) -> None:
    unknown = [item for item in given or () if item not in known]
    if unknown:
        raise UsageError(f"unknown {kind} {', '.join(map(repr, unknown))}; known: {', '.join(known)}")


def device(requested: str | None) -> str:
    """``bench.env.resolve_device``, its refusal as a ``UsageError``."""
    from bench.env import resolve_device

    try:
        return resolve_device(requested)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_report(run_dir, *more_run_dirs) -> None:
    """Build one report.html of the run (and of ``more_run_dirs`` beside it) in ``run_dir``; a failure is a
    warning, never a lost measurement."""
    from reports import build

    try:
        path = build([run_dir, *more_run_dirs], out_dir=run_dir)
    except Exception as exc:  # a failing report must not lose the measurements
        print(f"warning: the report could not be built: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        print(f"report: {path}")
