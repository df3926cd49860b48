"""get_session's windows, `before` and `max_chars` (with `last`), on every backend, against a plain
model over generated sessions."""

from __future__ import annotations

import random
import time

import pytest

from memory import ChatTurn, InvalidRequestError, SessionStore

pytestmark = pytest.mark.anyio

_ALPHABET = 'ab é€😀\n"{}'


def model(
    turns: list[ChatTurn], last: int | None, before: int | None, max_chars: int | None
) -> list[ChatTurn]:
    """The rule, written out: turns below `before`; of those, the longest run of newest turns that
    `last` allows and whose code points add up to `max_chars` at most."""
    kept = [t for t in turns if before is None or t.timestamp < before]
    count = 0
    for size in range(len(kept) + 1):
        newest = kept[len(kept) - size :]
        if last is not None and size > last:
            break
        if max_chars is not None and sum(len(t.content) for t in newest) > max_chars:
            break
        count = size
    return kept[len(kept) - count :]


def generated_session(rnd: random.Random) -> list[ChatTurn]:
    stamp, turns = 1_700_000_000_000, []
    for i in range(rnd.randrange(0, 40)):
        stamp += rnd.choice([0, 1, 7, 1000])  # equal timestamps happen
        content = "".join(rnd.choice(_ALPHABET) for _ in range(rnd.choice([0, 1, 5, 40, 300])))
        turns.append(ChatTurn(role="user" if i % 2 == 0 else "assistant", content=content, timestamp=stamp))
    return turns


async def test_windows_agree_with_the_model_over_generated_sessions(store: SessionStore) -> None:
    rnd = random.Random(20261204)
    expires = int(time.time() * 1000) + 86_400_000
    for number in range(25):
        turns = generated_session(rnd)
        session_id = f"g{number}"
        if turns:
            assert await store.put_session(session_id, turns, expires) == "written"
        stamps = [t.timestamp for t in turns] or [1_700_000_000_000]
        for _ in range(8):
            before = rnd.choice([None, rnd.choice(stamps), rnd.choice(stamps) + 1, 0])
            last = rnd.choice([None, 1, 3, 100])
            max_chars = rnd.choice([None, 0, 1, 10, 50, 400, 10_000])
            got = await store.get_session(session_id, last, before=before, max_chars=max_chars)
            expected = model(turns, last, before, max_chars)
            assert [(t.role, t.content, t.timestamp) for t in got] == [
                (t.role, t.content, t.timestamp) for t in expected
            ], (session_id, last, before, max_chars)


async def test_paging_back_with_before_visits_every_turn_once(store: SessionStore) -> None:
    turns = [ChatTurn(role="user", content=f"m{i}", timestamp=1_000 + i) for i in range(23)]
    await store.put_session("p", turns, int(time.time() * 1000) + 86_400_000)
    seen: list[str] = []
    before: int | None = None
    while True:
        page = await store.get_session("p", 5, before=before)
        if not page:
            break
        seen = [t.content for t in page] + seen
        before = page[0].timestamp
    assert seen == [f"m{i}" for i in range(23)]


async def test_the_newest_turn_alone_too_long_gives_nothing(store: SessionStore) -> None:
    turns = [
        ChatTurn(role="user", content="short", timestamp=1),
        ChatTurn(role="user", content="x" * 50, timestamp=2),
    ]
    await store.put_session("s", turns, int(time.time() * 1000) + 86_400_000)
    assert await store.get_session("s", max_chars=49) == []
    assert [t.content for t in await store.get_session("s", max_chars=55)] == ["short", "x" * 50]


@pytest.mark.parametrize(("before", "max_chars"), [(-1, None), (None, -1), (2**53, None)])
async def test_a_window_out_of_range_is_refused(
    store: SessionStore, before: int | None, max_chars: int | None
) -> None:
    with pytest.raises(InvalidRequestError):
        await store.get_session("s", before=before, max_chars=max_chars)
