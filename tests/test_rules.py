"""What every backend obeys, checked before a request reaches any store."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from memory import MAX_BATCH_TURNS, ChatTurn, InvalidRequestError, NewTurn, SessionFullError, StoreConfig
from memory.rules import PlannedTurn, deletion_marker_key, encode_turn, plan_save

CONFIG = StoreConfig(max_session_bytes=1024)


def turn_of_size(stored_bytes: int, timestamp: int = 1) -> ChatTurn:
    """A turn whose JSON.stringify text, its id included, takes `stored_bytes` bytes."""
    turn_id = f"turn-{timestamp}"
    empty = len(encode_turn(ChatTurn(role="user", content="", timestamp=timestamp, id=turn_id)))
    return ChatTurn(role="user", content="x" * (stored_bytes - empty), timestamp=timestamp, id=turn_id)


def plan_turns(turns: list[ChatTurn] | list[NewTurn], config: StoreConfig) -> list[PlannedTurn]:
    return plan_save(turns, config).turns


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


# -- where a delete leaves its marker -----------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "session:user-42",
        "app:session:x",
        "session:{tagged}rest",
        "session:a{b",
        "p{1}:session:q",
    ],
)
def test_the_deletion_marker_lies_in_the_session_keys_cluster_slot(key: str) -> None:
    marker = deletion_marker_key(key)
    assert marker != key
    assert key_slot(marker.encode()) == key_slot(key.encode())


def test_markers_of_different_sessions_differ() -> None:
    keys = ["session:a", "session:b", "session:{a}", "x:session:a"]
    assert len({deletion_marker_key(key) for key in keys}) == len(keys)


# -- a save's id ----------------------------------------------------------------------------------


def test_a_save_without_an_id_gets_one_and_a_batch_numbers_its_turns() -> None:
    single = plan_save([NewTurn(role="user", content="x")], CONFIG)
    assert len(single.id) == 12
    assert [turn.id for turn in single.turns] == [single.id]
    batch = plan_save(
        [NewTurn(role="user", content="q"), NewTurn(role="assistant", content="a")], CONFIG, "ex"
    )
    assert (batch.id, [turn.id for turn in batch.turns]) == ("ex", ["ex#0", "ex#1"])


def test_a_turn_saved_alone_with_its_own_id_gives_the_save_that_id() -> None:
    save = plan_save([NewTurn(role="user", content="x", id="msg-9")], CONFIG)
    assert (save.id, save.turns[0].id) == ("msg-9", "msg-9")


def test_two_turns_of_one_save_with_the_same_id_are_refused() -> None:
    turns = [NewTurn(role="user", content="a", id="same"), NewTurn(role="user", content="b", id="same")]
    with pytest.raises(InvalidRequestError, match="two turns of the save have the same id"):
        plan_save(turns, CONFIG)


def test_a_stored_turn_with_a_foreign_id_is_refused_when_saved_again() -> None:
    foreign = ChatTurn(role="user", content="x", timestamp=1, id='with "quotes"')
    with pytest.raises(InvalidRequestError, match="is not one this store writes"):
        plan_save([foreign], CONFIG)
