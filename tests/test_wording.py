"""The phrases shared by the tools' descriptions and the prompts."""

from __future__ import annotations

import pytest

from server.wording import ttl_words


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (604_800, "7 days"),
        (86_400, "1 day"),
        (172_800, "2 days"),
        (90_000, "90000 seconds"),
        (3_600, "3600 seconds"),
        (1, "1 second"),
    ],
)
def test_ttl_words_says_whole_days_in_days_and_the_rest_in_seconds(seconds: int, words: str) -> None:
    assert ttl_words(seconds) == words
