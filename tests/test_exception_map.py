"""`map_exceptions`: the first matching row of a backend's table decides the error and the retry."""

from __future__ import annotations

import pytest

from memory import CorruptSessionError, StoreError, StoreUnavailableError
from memory.exception_map import Endpoint, ErrorRule, map_exceptions, rule_for, starts_with

ENDPOINT = Endpoint("Redis", "redis://127.0.0.1:6379/0", "REDIS_URL")


class ClientError(Exception):
    pass


def corrupt(exc: Exception, endpoint: Endpoint) -> CorruptSessionError:
    return CorruptSessionError(f"corrupt ({exc})")


def outage(exc: Exception, endpoint: Endpoint) -> StoreUnavailableError:
    return StoreUnavailableError(f"{endpoint.what} is out")


TABLE = (
    ErrorRule(ClientError, corrupt, when=starts_with("WRONGTYPE")),
    ErrorRule(ClientError, outage, retry=True),
)


def test_the_first_matching_row_wins_and_the_client_exception_is_the_cause() -> None:
    original = ClientError("WRONGTYPE Operation against a key")
    with (
        pytest.raises(CorruptSessionError, match=r"^corrupt \(WRONGTYPE") as caught,
        map_exceptions(TABLE, ENDPOINT),
    ):
        raise original
    assert caught.value.__cause__ is original
    rule = rule_for(TABLE, original)
    assert rule is not None
    assert not rule.retry


def test_a_later_row_catches_what_the_earlier_conditions_leave() -> None:
    expected = r"^Redis at redis://127\.0\.0\.1:6379/0 is out$"
    with pytest.raises(StoreUnavailableError, match=expected), map_exceptions(TABLE, ENDPOINT):
        raise ClientError("ERR something else")
    rule = rule_for(TABLE, ClientError("ERR"))
    assert rule is not None
    assert rule.retry


@pytest.mark.parametrize("error", [KeyError("not in the table"), StoreError("already a memory error")])
def test_an_exception_no_row_covers_passes_through_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as caught, map_exceptions(TABLE, ENDPOINT):
        raise error
    assert caught.value is error
    assert rule_for(TABLE, error) is None
