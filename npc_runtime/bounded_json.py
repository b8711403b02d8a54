"""The one bounded JSON reader behind every door: REST bodies, the OpenAI-compatible door and
the game websocket's frames.

A JSON text from outside is read only if it nests at most ``max_depth`` levels and every number
in it fits what the rest of the system can hold: integers within 64 bits (what orjson, Redis
and the engines take as integers) and other numbers within a double's range. Anything else is a
:class:`JsonRefused` naming the reason and, for a number, where it sits in the document — never a
``RecursionError`` or ``OverflowError`` further in.

How it stays cheap on a hot path:

* Depth is measured on the text before any parser recurses, with byte operations that run in
  C: the brackets are kept (``translate``), and a text with no more of them than the limit
  cannot be too deep; otherwise strings are cut out, a few innermost levels peeled
  (``replace``) and the rest measured by a running sum.
* orjson reads the text when it is installed (the server has it). It reads an integer past 64
  bits as a float and refuses NaN and numbers past a double, so a text with a run of 19 or more
  digits, or one orjson refuses, is read again by the standard library with hooks that mark each
  out-of-range number; the first mark's place is reported.

It lives in ``npc_runtime`` because that is the lowest layer without Django: the game client,
the websocket protocol and the server's HTTP doors all import it from here.
"""

from __future__ import annotations

import json
import math
from array import array
from itertools import accumulate
from typing import Any

try:  # orjson reads JSON several times faster; the standard library does without it
    import orjson
except ImportError:  # pragma: no cover - orjson is in the server's requirements
    orjson = None  # type: ignore[assignment]

MAX_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1  # unsigned 64 bits: orjson reads and writes integers up to here

# Reasons a text is refused.
INVALID = "invalid"
TOO_DEEP = "too_deep"
NUMBER_TOO_LARGE = "number_too_large"
NOT_FINITE = "not_finite"

Path = tuple[str | int, ...]


class JsonRefused(ValueError):
    """A JSON text refused: ``reason`` (one of the constants above), a ``message`` a caller can
    show, and for a number ``path``: the keys and list indices leading to it. ``document`` is
    what was read (with the refused numbers as ``None``) when the text parsed at all, so a caller
    can still read fields such as a frame's ``ref``."""

    def __init__(
        self, reason: str, message: str, path: Path | None = None, document: Any = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.path = path
        self.document = document

    @property
    def dotted(self) -> str | None:
        """``path`` as ``messages.0.content`` (``None`` without a path)."""
        return None if self.path is None else ".".join(str(part) for part in self.path)


# ----------------------------------------------------------------------------------------------
# Depth, measured on the text

# Quotes and brackets are kept, "{" and "}" becoming "[" and "]" (a mismatched pair is the
# parser's business, not depth's); every other byte is deleted.
_MARKS = bytes.maketrans(b"{}", b"[]")
_NOT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}')
# "[" and "]" as the signed steps +1 and -1 of an array("b").
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")
_PEELS = 8


def check_depth(text: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Refuse ``text`` if its arrays and objects nest deeper than ``max_depth``.

    Exact for valid JSON; an invalid text is never let through if a parser reading it would
    nest deeper than ``max_depth`` before failing. Every step is one pass in C over the text or
    over its brackets.
    """
    if b"\\" in text:
        # Escapes first (an escaped backslash, then an escaped quote), so every quote left
        # opens or closes a string.
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = text.translate(_MARKS, _NOT_MARKS)
    if marks.count(b"[") <= max_depth:
        return
    # Two adjacent quotes are an empty string or the gap between two strings: dropping them
    # keeps every bracket on its side. What is left between quotes is inside a string.
    marks = marks.replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])
    if b"[" * (max_depth + 1) in marks:
        raise JsonRefused(TOO_DEEP, f"the JSON nests deeper than {max_depth} levels")
    # Each pass removes the innermost level ("[]" pairs with nothing inside): a few passes
    # finish most documents. Whatever is left is measured by its running sum of +1 and -1,
    # whose peak bounds how deep a parser goes.
    peeled = 0
    while marks and peeled < _PEELS:
        inner = marks.replace(b"[]", b"")
        if len(inner) == len(marks):
            break  # unbalanced: the parser will fail; the peak below still bounds its depth
        marks = inner
        peeled += 1
    if peeled + _peak(marks) > max_depth:
        raise JsonRefused(TOO_DEEP, f"the JSON nests deeper than {max_depth} levels")


def _peak(marks: bytes) -> int:
    """The highest running sum of the brackets ("[" +1, "]" -1), from 0."""
    return max(accumulate(array("b", marks.translate(_STEPS)), initial=0))


# ----------------------------------------------------------------------------------------------
# Numbers, read exactly

# A run of this many digits may be an integer past 64 bits (which orjson reads as a float):
# 19 digits can fall below -2**63, 20 above 2**64 - 1.
_LONG_RUN = 19
# Digits become "0" and every other byte a space, so "0" * _LONG_RUN is found only in one run.
_DIGIT_RUNS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))


def _has_long_digit_run(text: bytes) -> bool:
    return b"0" * _LONG_RUN in text.translate(_DIGIT_RUNS)


class _Refused:
    """Stands where the standard parser met a number it must not hand on."""

    __slots__ = ("message", "reason")

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message


def _exact_read(text: str, allow_nan: bool) -> Any:
    marks: list[_Refused] = []

    def parse_int(literal: str) -> Any:
        if len(literal) <= 19:  # within 64 bits whatever the digits
            return int(literal)
        value = int(literal) if len(literal) <= _LONG_RUN + 1 else None
        if value is not None and INT_MIN <= value <= INT_MAX:
            return value
        shown = literal if len(literal) <= 24 else f"{literal[:20]}… ({len(literal)} chars)"
        mark = _Refused(NUMBER_TOO_LARGE, f"the integer {shown} does not fit in 64 bits")
        marks.append(mark)
        return mark

    def parse_float(literal: str) -> Any:
        value = float(literal)
        if math.isfinite(value):
            return value
        shown = literal if len(literal) <= 24 else f"{literal[:20]}… ({len(literal)} chars)"
        mark = _Refused(NUMBER_TOO_LARGE, f"the number {shown} is past a double's range")
        marks.append(mark)
        return mark

    def parse_constant(name: str) -> Any:
        if allow_nan:
            return float(name)
        mark = _Refused(NOT_FINITE, f"{name} is not a JSON number")
        marks.append(mark)
        return mark

    try:
        document = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant
        )
    except ValueError as exc:
        raise JsonRefused(INVALID, f"not valid JSON: {exc}") from None
    if marks:
        path, mark = _first_mark(document)
        raise JsonRefused(mark.reason, mark.message, path, _without_marks(document))
    return document


def _first_mark(document: Any) -> tuple[Path, _Refused]:
    """Where the first refused number sits, depth first in document order."""
    stack: list[tuple[Path, Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Refused):
            return path, value
        if isinstance(value, dict):
            stack.extend((path + (key,), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(
                (path + (index,), item) for index, item in reversed(list(enumerate(value)))
            )
    raise AssertionError("a refused number was marked but not found")  # pragma: no cover


def _without_marks(document: Any) -> Any:
    if isinstance(document, _Refused):
        return None
    if isinstance(document, dict):
        return {key: _without_marks(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_without_marks(value) for value in document]
    return document


# ----------------------------------------------------------------------------------------------
# The reader


def read_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH, allow_nan: bool = False) -> Any:
    """Read one JSON text from outside, bounded as the module docstring says.

    ``allow_nan`` lets ``NaN`` and ``±Infinity`` through as floats (for a caller whose own
    checks name the field that holds one); otherwise they are refused like numbers out of range.
    Raises :class:`JsonRefused`.
    """
    text = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    check_depth(text, max_depth)
    if orjson is not None and not _has_long_digit_run(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # refused numbers and NaN are named below; so is anything else wrong
    try:
        decoded = raw if isinstance(raw, str) else raw.decode()
    except UnicodeDecodeError:
        raise JsonRefused(INVALID, "not valid JSON: the text is not UTF-8") from None
    return _exact_read(decoded, allow_nan)
