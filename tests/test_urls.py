"""Store URLs as shown in errors and logs: credentials and query removed, IPv6 hosts bracketed."""

from __future__ import annotations

import pytest

from memory.config import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("redis://default:s3cret@[::1]:6379/0", "redis://[::1]:6379/0"),
        ("rediss://[2001:db8::7]/3", "rediss://[2001:db8::7]/3"),
        ("redis://alice:s3cret@redis.example:6380/2", "redis://redis.example:6380/2"),
        ("redis://:s3cret@127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("redis://alice:p%40ss%2Fword@host/1", "redis://host/1"),
        ("redis://host:6379/0?password=s3cret", "redis://host:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("unix://:s3cret@/run/redis.sock?db=1", "unix:///run/redis.sock"),
        ("unix://alice@/run/redis.sock?password=s3cret", "unix:///run/redis.sock"),
        ("https://eu1-fine-fox-12345.upstash.io", "https://eu1-fine-fox-12345.upstash.io"),
        ("http://127.0.0.1:8079", "http://127.0.0.1:8079"),
        ("http://[::1]:8079", "http://[::1]:8079"),
    ],
)
def test_a_url_is_shown_without_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_url_that_does_not_parse_is_not_quoted() -> None:
    shown = redact_url("redis://alice:s3cret@[not-an-address/0")
    assert "s3cret" not in shown
    assert "alice" not in shown
