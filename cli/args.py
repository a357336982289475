"""What every program's command line shares: one parser class, one length grammar, one device and
thread resolution, and one way to fail (one ``error:`` line on stderr, exit status 2)."""

from __future__ import annotations

import argparse
import re
import sys

_SUFFIXES = {"": 1, "k": 1024, "m": 1024**2}


class UsageError(Exception):
    """Bad input from the command line: printed as one ``error:`` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise ``UsageError`` instead of printing the usage."""

    def error(self, message: str):
        raise UsageError(message)


def fail(message) -> int:
    """Print ``error: <message>`` on stderr; the exit status of bad input (2)."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def parse_length(text: str, full: bool = False) -> int | None:
    """Tokens: ``4096``, ``4k``/``4K`` (4,096), ``1m`` (1,048,576), ``1.5k``; with ``full``, also
    ``full`` (None: the whole document). Raises ``argparse.ArgumentTypeError``."""
    if full and text.strip().lower() == "full":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"not a length: {text!r} (use e.g. 4096, 4k, 1m{' or full' if full else ''})")
    value = float(match.group(1)) * _SUFFIXES[match.group(2).lower()]
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"a length must be a positive whole number of tokens: {text!r}")
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


def positive(kind):
    """An argparse type: ``kind(text)`` > 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return parse


def non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0: {text!r}")
    return int(text)


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


def build_report(run_dir) -> None:
    """Build the run's report.html; a failure is a warning, never a lost measurement."""
    from reports import build

    try:
        path = build([run_dir])
    except Exception as exc:  # a failing report must not lose the measurements
        print(f"warning: the report could not be built: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        print(f"report: {path}")
