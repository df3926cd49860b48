"""Reading the reply out of a Claude Code transcript: which entries count, and in what order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.transcript import (
    Reply,
    TranscriptError,
    assistant_texts,
    is_prompt,
    last_entry_uuid,
    last_reply,
    parse_timestamp,
    read_lines,
)

FIXTURE = Path(__file__).parent / "fixtures" / "claude_code_transcript.jsonl"
FIRST_REPLY = (
    "Let me look at how the forecast is cached.\n\n"
    "`cached_forecast` is wrapped in `lru_cache`, which keys on the city alone: the first forecast "
    "downloaded is served until the process restarts, so after midnight you still get yesterday's.\n\n"
    "Add the date to the key, e.g. `cached_forecast(city, date.today())`, and update the two callers "
    "in api.py and cli.py."
)
SECOND_PROMPT_UUID = "2f3a4b5c-6d7e-4f8a-9b0c-1d2e3f4a5b6c"


def fixture_lines() -> list[str]:
    return FIXTURE.read_text().splitlines()


def lines_before(uuid: str) -> list[str]:
    """The fixture as it stood when the entry `uuid` was about to be written."""
    lines = fixture_lines()
    return lines[: next(i for i, line in enumerate(lines) if json.loads(line).get("uuid") == uuid)]


def user(content: Any, uuid: str = "u", **extra: Any) -> str:
    return json.dumps(
        {"type": "user", "uuid": uuid, "message": {"role": "user", "content": content}, **extra}
    )


def assistant(
    content: Any, uuid: str = "a", timestamp: str = "2026-11-20T09:00:00.000Z", **extra: Any
) -> str:
    message = {"role": "assistant", "content": content}
    return json.dumps(
        {"type": "assistant", "uuid": uuid, "timestamp": timestamp, "message": message, **extra}
    )


def text(words: str) -> dict[str, str]:
    return {"type": "text", "text": words}


def test_the_recorded_transcripts_last_reply_is_the_second_answer() -> None:
    reply = last_reply(fixture_lines())
    assert reply.text == (
        "Done: the cache now keys on the city and the date, and tests/test_cache.py checks that a "
        "forecast fetched at 23:59 is not served at 00:01."
    )
    assert reply.timestamp == parse_timestamp("2026-11-20T09:16:09.930Z")
    assert reply.anchor == SECOND_PROMPT_UUID


def test_a_reply_around_tool_calls_and_a_subagent_is_all_its_text_in_order() -> None:
    # Thinking, tool calls, tool results and the subagent's own prompt and answer are left out.
    reply = last_reply(lines_before("4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a7b"))
    assert reply.text == FIRST_REPLY
    assert reply.timestamp == 1795166061761  # 2026-11-20T09:14:21.761Z: its last entry's
    assert reply.anchor == "9a0d3e64-2f1b-4c55-8e07-6b2d1f93c8a1"  # the prompt it answers


def test_a_tool_result_is_not_a_prompt() -> None:
    lines = [
        user("Run the tests", uuid="p"),
        assistant([text("Running them.")]),
        user([{"type": "tool_result", "tool_use_id": "t1", "content": "3 passed"}], uuid="r"),
        assistant([text("All 3 pass.")], uuid="a2"),
    ]
    reply = last_reply(lines)
    assert reply.parts == ("Running them.", "All 3 pass.")
    assert reply.anchor == "p"


def test_a_prompt_given_as_parts_is_a_prompt() -> None:
    lines = [
        user("first", uuid="p1"),
        assistant([text("one")]),
        user([text("second"), {"type": "image", "source": {"type": "base64", "data": ""}}], uuid="p2"),
        assistant([text("two")]),
    ]
    assert last_reply(lines).parts == ("two",)
    assert last_reply(lines).anchor == "p2"


def test_an_assistant_message_given_as_a_string_is_its_text() -> None:
    assert last_reply([user("hi"), assistant("Hello!")]).parts == ("Hello!",)


def test_thinking_and_tool_use_parts_are_left_out() -> None:
    entry = json.loads(
        assistant(
            [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "redacted_thinking", "data": "x"},
                text("Answer."),
                {"type": "tool_use", "id": "t", "name": "Bash", "input": {}},
                text("   "),
            ]
        )
    )
    assert assistant_texts(entry) == ["Answer."]


def test_sidechain_and_meta_entries_are_skipped() -> None:
    lines = [
        user("the prompt", uuid="p"),
        assistant([text("Asking a subagent.")]),
        user("the subagent's prompt", uuid="s", isSidechain=True),
        assistant([text("the subagent's answer")], isSidechain=True),
        user("Caveat: local command output follows.", uuid="m", isMeta=True),
        assistant([text("Done.")], uuid="last"),
    ]
    reply = last_reply(lines)
    assert reply.parts == ("Asking a subagent.", "Done.")
    assert reply.anchor == "p"


def test_entries_of_other_types_and_broken_lines_are_skipped() -> None:
    lines = [
        user("prompt", uuid="p"),
        json.dumps({"type": "summary", "summary": "Weather cache", "leafUuid": "x"}),
        assistant([text("Fine.")]),
        json.dumps({"type": "system", "subtype": "stop_hook_summary", "uuid": "sys"}),
        '{"type": "assistant", "message": {"content": [{"type": "te',  # a line still being written
        "",
    ]
    assert last_reply(lines).parts == ("Fine.",)


def test_a_transcript_that_ends_with_a_prompt_has_no_reply_yet() -> None:
    reply = last_reply([user("one", uuid="p1"), assistant([text("1")]), user("two", uuid="p2")])
    assert reply == Reply(parts=(), timestamp=None, anchor="p2")


def test_the_reply_takes_the_time_of_its_last_entry_even_one_without_text() -> None:
    lines = [
        user("p"),
        assistant([text("Checking.")], timestamp="2026-11-20T09:00:00.000Z"),
        assistant(
            [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}],
            timestamp="2026-11-20T09:00:01.500Z",
        ),
    ]
    assert last_reply(lines).timestamp == parse_timestamp("2026-11-20T09:00:01.500Z")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T09:16:09.930Z", 1795166169930),
        ("2026-11-20T10:16:09.930+01:00", 1795166169930),
        ("2026-11-20T09:16:09", None),  # no zone: no moment
        ("yesterday", None),
        (1795166169930, None),
        (None, None),
    ],
)
def test_timestamps_are_iso_8601_with_a_zone(value: object, expected: int | None) -> None:
    assert parse_timestamp(value) == expected


def test_the_position_is_the_newest_entry_with_a_uuid() -> None:
    lines = [user("p", uuid="p"), json.dumps({"type": "file-history-snapshot", "messageId": "m"})]
    assert last_entry_uuid(lines) == "p"
    assert last_entry_uuid([]) is None


def test_a_reply_completed_from_the_event_ends_with_it() -> None:
    reply = Reply(parts=("Looking.",), timestamp=5, anchor="p")
    assert not reply.ends_with("Found it.")
    completed = reply.completed_with("Found it.")
    assert completed.ends_with("Found it.")
    assert completed == Reply(parts=("Looking.", "Found it."), timestamp=None, anchor="p")


def test_is_prompt_needs_user_words() -> None:
    assert is_prompt(json.loads(user("hi")))
    assert not is_prompt(json.loads(user([{"type": "tool_result", "tool_use_id": "t", "content": "ok"}])))
    assert not is_prompt({"type": "user"})


def test_a_missing_transcript_says_where_it_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match=r"no transcript at .*nowhere\.jsonl"):
        read_lines(tmp_path / "nowhere.jsonl")
