"""Turns as tests compare them."""

from __future__ import annotations

from collections.abc import Sequence

from memory import ChatTurn


def without_ids(turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """The turns without the ids of the saves that stored them, which a test rarely chose."""
    return [turn.model_copy(update={"id": None}) for turn in turns]
