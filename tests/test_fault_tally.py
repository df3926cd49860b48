"""The fault campaign's counting on crafted stores: lost, doubled, reordered, equal contents too."""

from __future__ import annotations

import json
from typing import Any

from bench.faults.stacks import read_sessions
from bench.faults.tally import Call, Message, count
from bench.faults.workload import retry_arguments
from localservers.raw import RedisRaw
from localservers.redis_server import RedisServer


def unique(client: int, seq: int, session: str = "s", epoch: int = 0) -> Message:
    return Message(client, session, seq, "user", f"c{client} n{seq}", equal=False, epoch=epoch)


def equal(client: int, seq: int, content: str = "ok", session: str = "s") -> Message:
    return Message(client, session, seq, "user", content, equal=True)


def turns(*messages: Message) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": m.content, "timestamp": 1} for m in messages]


def acked(*messages: Message) -> Call:
    return Call(list(messages), acked=True)


def test_everything_stored_once_in_order_counts_no_failure() -> None:
    a, b, c = unique(0, 1), unique(0, 2), unique(1, 1)
    tally = count([acked(a, b), acked(c)], {"s": turns(a, c, b)}, {})
    assert (tally.acknowledged, tally.lost, tally.doubled, tally.reordered) == (3, 0, 0, 0)


def test_an_acknowledged_message_missing_is_lost() -> None:
    a, b = unique(0, 1), unique(0, 2)
    tally = count([acked(a), acked(b)], {"s": turns(a)}, {})
    assert (tally.lost, tally.doubled) == (1, 0)


def test_a_message_stored_twice_is_doubled_once() -> None:
    a = unique(0, 1)
    tally = count([acked(a)], {"s": turns(a, a)}, {})
    assert (tally.lost, tally.doubled) == (0, 1)


def test_one_clients_messages_out_of_send_order_are_reordered() -> None:
    a, b, c = unique(0, 1), unique(0, 2), unique(0, 3)
    tally = count([acked(a), acked(b), acked(c)], {"s": turns(b, a, c)}, {})
    assert tally.reordered == 1
    assert tally.lost == tally.doubled == 0


def test_two_clients_interleaved_is_not_reordered() -> None:
    a1, a2, b1, b2 = unique(0, 1), unique(0, 2), unique(1, 1), unique(1, 2)
    tally = count([acked(a1), acked(b1), acked(a2), acked(b2)], {"s": turns(b1, a1, b2, a2)}, {})
    assert tally.reordered == 0


def test_equal_contents_fewer_stored_than_acknowledged_are_lost() -> None:
    first, second = equal(0, 1), equal(1, 1)
    tally = count([acked(first), acked(second)], {"s": turns(first)}, {})
    assert (tally.acknowledged, tally.lost, tally.doubled) == (2, 1, 0)


def test_equal_contents_more_stored_than_sent_are_doubled() -> None:
    first, second = equal(0, 1), equal(1, 1)
    tally = count([acked(first), acked(second)], {"s": turns(first, first, first)}, {})
    assert (tally.lost, tally.doubled) == (0, 1)


def test_two_acknowledgements_of_one_stored_turn_are_a_loss_even_when_a_double_hides_it() -> None:
    first, second, third = equal(0, 1), equal(1, 1), equal(2, 1)
    calls = [
        Call([first], acked=True, timestamps=[100]),
        Call([second], acked=True, timestamps=[100]),  # answered with the other's turn
        Call([third], acked=True, timestamps=[200]),
    ]
    stored = {"s": [{"role": "user", "content": "ok", "timestamp": stamp} for stamp in (100, 200, 201)]}
    tally = count(calls, stored, {})
    assert (tally.acknowledged, tally.lost) == (3, 1), "three stored for three sent, yet one is missing"


def test_equal_contents_each_with_its_own_stored_timestamp_are_not_lost() -> None:
    first, second = equal(0, 1), equal(1, 1)
    calls = [Call([first], acked=True, timestamps=[100]), Call([second], acked=True, timestamps=[101])]
    stored = {"s": [{"role": "user", "content": "ok", "timestamp": stamp} for stamp in (100, 101)]}
    assert count(calls, stored, {}).failures == 0


def test_equal_contents_of_unacknowledged_calls_may_be_stored_or_not() -> None:
    sure, maybe = equal(0, 1), equal(1, 1)
    calls = [acked(sure), Call([maybe], acked=False)]
    assert count(calls, {"s": turns(sure)}, {}).failures == 0
    stored_both = count(calls, {"s": turns(sure, maybe)}, {})
    assert stored_both.failures == 0
    assert stored_both.unacked_calls == 1


def test_equal_contents_are_told_apart_by_role_and_session() -> None:
    user = equal(0, 1)
    reply = Message(0, "s", 2, "assistant", "ok", equal=True)
    elsewhere = equal(0, 3, session="t")
    tally = count([acked(user), acked(reply), acked(elsewhere)], {"s": turns(user, user)}, {})
    assert (tally.lost, tally.doubled) == (2, 1)


def test_an_unacknowledged_message_is_never_lost_and_is_reported_stored_or_not() -> None:
    a, b = unique(0, 1), unique(0, 2)
    tally = count([Call([a], acked=False), Call([b], acked=False)], {"s": turns(b)}, {})
    assert (tally.lost, tally.unacked_calls, tally.unacked_messages, tally.unacked_stored) == (0, 2, 2, 1)


def test_a_message_sent_before_a_delete_and_found_after_it_is_resurrected() -> None:
    before, after = unique(0, 1, epoch=0), unique(0, 2, epoch=1)
    tally = count([acked(before), acked(after)], {"s": turns(before, after)}, {"s": 1})
    assert (tally.resurrected, tally.lost, tally.acknowledged) == (1, 0, 1)


def test_messages_missing_at_the_start_of_a_deleted_session_were_erased_by_a_late_delete() -> None:
    gone, kept = unique(0, 1, epoch=1), unique(0, 2, epoch=1)
    tally = count([acked(gone), acked(kept)], {"s": turns(kept)}, {"s": 1})
    assert (tally.erased_by_late_delete, tally.lost) == (1, 0)


def test_a_message_missing_after_a_found_one_in_a_deleted_session_is_lost() -> None:
    kept, gone = unique(0, 1, epoch=1), unique(0, 2, epoch=1)
    tally = count([acked(kept), acked(gone)], {"s": turns(kept)}, {"s": 1})
    assert (tally.erased_by_late_delete, tally.lost) == (0, 1)


def test_stored_turns_no_client_sent_are_unexpected() -> None:
    a = unique(0, 1)
    stray = {"role": "user", "content": "nobody", "timestamp": 1}
    assert count([acked(a)], {"s": [*turns(a), stray]}, {}).unexpected == 1


def test_sessions_are_read_straight_from_valkey(redis_server: RedisServer, key_prefix: str) -> None:
    a, b = unique(0, 1), unique(0, 2)
    with RedisRaw(redis_server.port) as raw:
        raw.set(f"{key_prefix}session:s", json.dumps(turns(a, b, a)))
        raw.set(f"{key_prefix}session:t", json.dumps(turns(b)))
    stored = read_sessions(redis_server.port, key_prefix)
    assert stored == {"s": turns(a, b, a), "t": turns(b)}
    assert count([acked(a, b)], stored, {}).doubled == 1


OLD_SINGLE = (
    "Store unavailable: the upstash store did not answer within 1 s; try again later (the save may "
    "have reached the store: retry with timestamp 1796418528072, so that it is not stored twice)"
)
OLD_BATCH = (
    "Store unavailable: ... (the save may have reached the store: retry with timestamps (in order) "
    "1500000000013, 1796418529394, so that it is not stored twice)"
)


def test_an_old_protocol_retry_carries_the_timestamps_the_error_names() -> None:
    single = retry_arguments(
        {"session_id": "s", "role": "user", "content": "ok"}, OLD_SINGLE, new_protocol=False
    )
    assert single["timestamp"] == 1796418528072
    batch = {"session_id": "s", "turns": [{"role": "user", "content": "a", "timestamp": 1500000000013}, {}]}
    retried = retry_arguments(batch, OLD_BATCH, new_protocol=False)
    assert [turn["timestamp"] for turn in retried["turns"]] == [1500000000013, 1796418529394]
    assert "timestamp" not in batch["turns"][1], "the first call's arguments are left alone"


def test_a_new_protocol_retry_carries_the_id_and_only_the_first_calls_timestamps() -> None:
    error = 'Store unavailable: ... retry with id "k3.x_9:a-b" and timestamp 1796418528072 ...'
    first = {"session_id": "s", "turns": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    retried = retry_arguments(first, error, new_protocol=True)
    assert retried["id"] == "k3.x_9:a-b"
    assert retried["turns"] == first["turns"]
