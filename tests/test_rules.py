"""What every backend obeys, checked before a request reaches any store."""

from __future__ import annotations

import pytest

from memory import MAX_BATCH_TURNS, ChatTurn, InvalidRequestError, NewTurn, SessionFullError, StoreConfig
from memory.rules import encode_turn, plan_turns

CONFIG = StoreConfig(max_session_bytes=1024)


def turn_of_size(stored_bytes: int, timestamp: int = 1) -> ChatTurn:
    """A turn whose JSON.stringify text takes `stored_bytes` bytes."""
    empty = len(encode_turn(ChatTurn(role="user", content="", timestamp=timestamp)))
    return ChatTurn(role="user", content="x" * (stored_bytes - empty), timestamp=timestamp)


def test_a_batch_exactly_as_large_as_a_session_may_be_is_planned() -> None:
    # `[` + turn + `,` + turn + `]`: the array the batch makes in an empty session.
    turns = [turn_of_size(511, 1), turn_of_size(510, 2)]
    assert len(plan_turns(turns, CONFIG)) == 2


def test_one_byte_more_and_the_batch_is_refused_saying_both_sizes() -> None:
    turns = [turn_of_size(511, 1), turn_of_size(511, 2)]
    with pytest.raises(SessionFullError) as caught:
        plan_turns(turns, CONFIG)
    assert str(caught.value) == (
        "the 2 turns take 1025 bytes as stored, more than a whole session may hold (1024 bytes); "
        "nothing was saved (save fewer or shorter turns)"
    )


def test_bytes_are_counted_as_utf8_not_as_characters() -> None:
    with pytest.raises(SessionFullError, match="the turn takes"):
        plan_turns([ChatTurn(role="user", content="ü" * 500, timestamp=1)], CONFIG)


def test_a_batch_of_more_turns_than_the_maximum_is_refused() -> None:
    turns = [NewTurn(role="user", content="x")] * (MAX_BATCH_TURNS + 1)
    with pytest.raises(InvalidRequestError, match=f"the maximum is {MAX_BATCH_TURNS}"):
        plan_turns(turns, StoreConfig())


def test_a_turn_without_a_timestamp_gets_the_servers_and_moves_past_equal_turns() -> None:
    (planned,) = plan_turns([NewTurn(role="user", content="x")], CONFIG)
    assert planned.mode == "move"
    (kept,) = plan_turns([NewTurn(role="user", content="x", timestamp=5)], CONFIG)
    assert (kept.mode, kept.timestamp) == ("keep", 5)
