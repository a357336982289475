"""A small regex sentence splitter (nltk's punkt data is not installed and cannot be downloaded).

Rules, in order:

1. A line break always ends a sentence (documents here are paragraphs joined by newlines).
2. Inside a line, a sentence ends after ``.``, ``!``, ``?`` or ``।`` (optionally followed by closing
   quotes or brackets) when whitespace follows and the next visible character (after an opening quote
   or bracket) can start a sentence: a digit or a letter that is not lower-case, in any script
   (``É``, ``Д``, ``Ω``, and letters of scripts without case such as Han, Arabic or Devanagari).
   After the full-width ``。``, ``！`` or ``？`` a sentence always ends, with or without whitespace.
3. A period does not end a sentence after a known abbreviation (``Fig.``, ``Eq.``, ``e.g.``,
   ``i.e.``, ``et al.``, ``cf.``, ``vs.``, ``Sec.``, ``Tab.``, ``No.``, ...) or after a single letter
   (initials such as ``J. Smith``, ``U.S. Army``).
4. Periods not followed by whitespace never split (decimals ``3.5``, versions ``v1.2``, ``e.g.,``).

Known limits: a sentence that really ends with an abbreviation ("... and so on, etc. Then") is
joined with the next one; a sentence starting with a lower-case word is joined with the previous.
"""

from __future__ import annotations

import re

DESCRIPTION = ("regex splitter (suites/rouge/sentences.py): newline always splits; [.!?] + "
               "whitespace + a digit or non-lower-case letter of any script (after an optional opening "
               "bracket) splits, except after known abbreviations (Fig., Eq., e.g., et al., ...) and "
               "single-letter initials; full-width 。！？ always split")

ABBREVIATIONS = frozenset("""
    al approx cf ch dr e.g eq eqs etc fig figs i.e inc jr ltd mr mrs ms no nos p pp prof ref refs
    resp sec secs sect sr st tab tabs vol vs viz cit ca
""".split())

_CLOSING = re.escape("\"'”’»)]」』")
_OPENING = "\"'“‘«([「『"
_BOUNDARY = re.compile(f"[.!?।]+[{_CLOSING}]*\\s+|[。！？]+[{_CLOSING}]*\\s*")
_WORD_BEFORE = re.compile(r"(\S+)$")


def _ends_with_abbreviation(text_before: str) -> bool:
    match = _WORD_BEFORE.search(text_before)
    if not match:
        return False
    word = match.group(1).lstrip("\"'“‘([").lower()
    initials = re.fullmatch(r"(?:[a-z]\.)*[a-z]", word)  # "J", "U.S", "E.G"
    return word in ABBREVIATIONS or initials is not None


def _can_start_sentence(text: str) -> bool:
    """A digit or a letter that is not lower-case (any script), after an optional opening bracket."""
    first = text.lstrip(_OPENING)[:1]
    return first.isdigit() or (first.isalpha() and not first.islower())


def _split_line(line: str) -> list[str]:
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(line):
        full_width = match.group(0)[0] in "。！？"
        if not full_width and not _can_start_sentence(line[match.end():]):
            continue
        ends_with_period = match.group(0)[0] == "."
        if ends_with_period and _ends_with_abbreviation(line[start:match.start()]):
            continue
        sentences.append(line[start:match.end()].strip())
        start = match.end()
    sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, stripped, in order; empty input gives an empty list."""
    return [sentence for line in text.splitlines() for sentence in _split_line(line)]


def one_sentence_per_line(text: str) -> str:
    """The form rouge-score's ``rougeLsum`` expects: sentences separated by newlines."""
    return "\n".join(split_sentences(text))
