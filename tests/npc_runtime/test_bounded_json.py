"""The one bounded JSON reader: depth measured exactly on the text (strings and escapes
included), integers kept exact within 64 bits and refused past them with their place named,
the same answers with or without orjson."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from npc_runtime import bounded_json
from npc_runtime.bounded_json import (
    INT_MAX,
    INT_MIN,
    INVALID,
    MAX_DEPTH,
    NOT_FINITE,
    NUMBER_TOO_LARGE,
    TOO_DEEP,
    JsonRefused,
    check_depth,
    read_json,
)


@pytest.fixture(params=["orjson", "standard library"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test runs with orjson (the server) and without it (a game without orjson)."""
    if request.param == "standard library":
        monkeypatch.setattr(bounded_json, "orjson", None)
    yield request.param


def _nested(depth: int, kind: str = "[]") -> bytes:
    inner = b"1"
    for level in range(depth):
        inner = b"[" + inner + b"]" if kind == "[]" or level % 2 else b'{"k":' + inner + b"}"
    return inner


def _true_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("kind", ["[]", "mixed"])
def test_nesting_up_to_the_limit_is_read_and_one_more_is_refused(reader: str, kind: str) -> None:
    at_limit = _nested(MAX_DEPTH, kind)
    assert _true_depth(read_json(at_limit)) == MAX_DEPTH
    with pytest.raises(JsonRefused) as caught:
        read_json(_nested(MAX_DEPTH + 1, kind))
    assert caught.value.reason == TOO_DEEP and caught.value.path is None


@pytest.mark.parametrize(
    "text",
    [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000, b"[{" * 50_000],
    ids=["open brackets", "balanced", "objects", "mixed"],
)
def test_hostile_nesting_is_refused_not_a_recursion_error(reader: str, text: bytes) -> None:
    with pytest.raises(JsonRefused) as caught:
        read_json(text)
    assert caught.value.reason in (TOO_DEEP, INVALID)


def test_brackets_inside_strings_do_not_count(reader: str) -> None:
    text = json.dumps({"a": "[" * 500, "b": ["}" * 500, '\\"[[[', "\\"], "c": '"[{'}).encode()
    assert read_json(text) == json.loads(text)
    # and a deep document does not hide behind string brackets that would balance it
    deep = b'["]",' * 70 + b"1" + b"]" * 70
    with pytest.raises(JsonRefused) as caught:
        read_json(deep)
    assert caught.value.reason == TOO_DEEP


def _random_document(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.25:
        return rng.choice(
            [1, -2.5, None, True, "plain", "[{", '"]}', "\\", '\\"[', "ü[", "]]]]", ""]
        )
    if roll < 0.6:
        return [_random_document(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(["k", "[", '"{', "\\"]) + str(i): _random_document(rng, depth - 1)
        for i in range(rng.randint(0, 3))
    }


def test_the_depth_measured_on_the_text_is_the_documents_depth() -> None:
    rng = random.Random(13)
    for _ in range(400):
        document = _random_document(rng, rng.randint(1, 12))
        depth = _true_depth(document)
        text = json.dumps(document).encode()
        for limit in (depth - 1, depth):
            if limit < 0:
                continue
            if depth <= limit:
                check_depth(text, limit)
            else:
                with pytest.raises(JsonRefused):
                    check_depth(text, limit)


def test_integers_within_64_bits_are_exact_and_past_them_refused_with_their_place(
    reader: str,
) -> None:
    for value in (INT_MIN, INT_MAX, 2**63 - 1, -1, 0, 10**18):
        assert read_json(json.dumps({"n": [value]})) == {"n": [value]}
    for value, path in [
        (INT_MIN - 1, ("n",)),
        (INT_MAX + 1, ("n",)),
        (10**400, ("n",)),
        (-(10**30), ("n",)),
    ]:
        with pytest.raises(JsonRefused) as caught:
            read_json(json.dumps({"ok": 1, "n": value}))
        assert (caught.value.reason, caught.value.path) == (NUMBER_TOO_LARGE, path)
        assert caught.value.document == {"ok": 1, "n": None}
    with pytest.raises(JsonRefused) as caught:
        read_json('{"messages": [{"content": "x"}, {"max": [1, 2, 1' + "0" * 400 + "]}]}")
    assert caught.value.path == ("messages", 1, "max", 2)
    assert caught.value.dotted == "messages.1.max.2"
    assert "401 chars" in caught.value.message  # the literal is shortened, not echoed whole


def test_numbers_past_a_double_and_nan_are_refused_unless_asked_for(reader: str) -> None:
    with pytest.raises(JsonRefused) as caught:
        read_json('{"t": 1e400}')
    assert (caught.value.reason, caught.value.path) == (NUMBER_TOO_LARGE, ("t",))
    with pytest.raises(JsonRefused) as caught:
        read_json('{"t": [NaN]}')
    assert (caught.value.reason, caught.value.path) == (NOT_FINITE, ("t", 0))
    read = read_json('{"t": [NaN, -Infinity]}', allow_nan=True)
    assert read["t"][0] != read["t"][0] and read["t"][1] == float("-inf")


def test_long_digit_runs_in_strings_and_fractions_read_normally(reader: str) -> None:
    text = json.dumps({"id": "1" * 40, "f": 0.1234567890123456789012, "n": 12345678901234567})
    assert read_json(text) == json.loads(text)
    assert read_json(b'{"x": 1.0000000000000000000000001}') == {"x": 1.0}


@pytest.mark.parametrize("text", [b"{nope", b"", b"\xff\xfe", b'{"a": 1} x', b"[1, 2"])
def test_invalid_json_is_refused_as_invalid(reader: str, text: bytes) -> None:
    with pytest.raises(JsonRefused) as caught:
        read_json(text)
    assert caught.value.reason == INVALID and caught.value.path is None


def test_what_it_reads_is_what_the_standard_library_reads(reader: str) -> None:
    rng = random.Random(7)
    for _ in range(200):
        document = _random_document(rng, rng.randint(1, 8))
        text = json.dumps(document)
        assert read_json(text) == json.loads(text)
        assert read_json(text.encode()) == json.loads(text)
