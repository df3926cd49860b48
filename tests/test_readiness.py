"""What /readyz may tell a probe: the kind of store problem, never a path, an address or a token."""

from __future__ import annotations

import pytest

from memory import SessionMemoryError, StoreAuthError, StoreError, StoreSettingsError, StoreUnavailableError
from server.readiness import public_reason

DETAIL = "the session database at /home/me/private/sessions.sqlite3 via redis://user:pw@10.0.0.7:6379"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (StoreAuthError(DETAIL), "the store rejected the credentials"),
        (StoreSettingsError(DETAIL), "a store setting is wrong"),
        (StoreUnavailableError(DETAIL), "the store is unavailable or did not answer within 2 s"),
        (StoreError(DETAIL), "the store failed"),
    ],
)
def test_the_reason_names_the_kind_of_problem_without_the_detail(
    error: SessionMemoryError, reason: str
) -> None:
    told = public_reason(error)
    assert told.startswith(reason)
    for secret in ("/home/me", "sessions.sqlite3", "pw", "10.0.0.7"):
        assert secret not in told
