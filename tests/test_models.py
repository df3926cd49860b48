"""The turn model and its stored form."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from memory import (
    MAX_SAFE_INTEGER,
    ChatTurn,
    CorruptSessionError,
    InvalidRequestError,
    NewTurn,
    StoreConfig,
    check_session_id,
    new_session_id,
)
from memory.rules import decode_session, encode_turn, plan_save


def test_encoding_matches_javascript_json_stringify() -> None:
    # Expected texts are what JSON.stringify prints for the same objects in Node.js.
    cases = {
        "plain": '{"role":"user","content":"plain","timestamp":1}',
        'q"b\\s/': '{"role":"user","content":"q\\"b\\\\s/","timestamp":1}',
        "\n\r\t\b\f": '{"role":"user","content":"\\n\\r\\t\\b\\f","timestamp":1}',
        "\x00\x1f\x7f": '{"role":"user","content":"\\u0000\\u001f\x7f","timestamp":1}',
        "é👋\u2028": '{"role":"user","content":"é👋\u2028","timestamp":1}',
    }
    for content, expected in cases.items():
        assert encode_turn(ChatTurn(role="user", content=content, timestamp=1)) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "system", "content": "x", "timestamp": 1},
        {"role": "user", "content": "x", "timestamp": -1},
        {"role": "user", "content": "x", "timestamp": MAX_SAFE_INTEGER + 1},
        {"role": "user", "content": "x", "timestamp": "1"},
        {"role": "user", "content": "x", "timestamp": 1, "extra": 1},
    ],
)
def test_invalid_turns_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatTurn.model_validate(fields)


def test_a_turn_with_a_lone_surrogate_is_refused_when_made_or_saved() -> None:
    with pytest.raises(ValidationError, match="unpaired surrogate"):
        NewTurn(role="user", content="\ud800")
    read = ChatTurn(role="user", content="\ud800", timestamp=1)  # as a caller may build one
    with pytest.raises(InvalidRequestError, match="the turn's content holds an unpaired surrogate"):
        plan_save([read], StoreConfig())


def test_decode_names_the_first_problem() -> None:
    with pytest.raises(CorruptSessionError, match=r"turn 0 has role 'bot'"):
        decode_session('[{"role":"bot","content":"x","timestamp":1}]', "s1")


def test_new_session_ids_are_url_safe_random_and_valid() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    for session_id in ids:
        assert len(session_id) == 22  # 128 bits in URL-safe base64
        assert set(session_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert check_session_id(session_id) == session_id
