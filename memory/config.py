"""What a store needs to open: which backend, where it is, and the limits every backend enforces.

A plain frozen value, built in code or from the server's settings; nothing here reads the
environment. Also how a store's URL may be shown: without its credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit

import httpx
import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from memory.errors import ConfigurationError

APP_NAME = "session-memory-mcp"
SEVEN_DAYS_SECONDS = 7 * 24 * 60 * 60

Backend = Literal["upstash", "redis", "sqlite", "postgres"]
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def default_sqlite_path() -> Path:
    """The embedded store's file in the user's data directory."""
    return platformdirs.user_data_path(APP_NAME) / "sessions.sqlite3"


class StoreConfig(BaseModel):
    """Which store to use and the limits every store enforces; each field is the setting of that name."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    upstash_redis_rest_url: str | None = None
    upstash_redis_rest_token: SecretStr | None = None
    redis_url: SecretStr | None = None
    sqlite_path: Path = Field(default_factory=default_sqlite_path)
    database_url: SecretStr | None = None
    # Which store, when more than one is configured (or to insist on one): unset, the one whose
    # settings are given.
    session_store: Backend | None = None

    session_ttl_seconds: int = Field(default=SEVEN_DAYS_SECONDS, ge=1)
    key_prefix: str = Field(default="", max_length=256, pattern=r"^\S*$")
    max_content_chars: int = Field(default=100_000, ge=1)
    max_session_bytes: int = Field(default=1_048_576, ge=1024)
    store_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    store_retries: int = Field(default=2, ge=0, le=10)
    # A small index of each key space's sessions, kept by every save: what lists them. Off, a
    # save on Upstash costs one billed command less, and sessions cannot be listed.
    session_index: bool = True
    # What a save that would pass max_session_bytes does: drop the session's oldest turns (to
    # three quarters of the limit, so that it happens rarely), or store nothing and say so.
    when_full: Literal["drop-oldest", "refuse"] = "drop-oldest"
    # How many replicas of a Redis primary must have each save before it is reported stored:
    # WAIT, in the save's round trip. 0 trusts the primary alone, and a failover right after
    # a save can lose it (replication is asynchronous).
    redis_replica_acks: int = Field(default=0, ge=0, le=16)

    @field_validator("upstash_redis_rest_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://example.upstash.io")
        _check_port(url)
        _refuse_port_zero(urlsplit(url.strip()))
        return url.strip()

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None:
            return None
        parts = urlsplit(url.get_secret_value())
        if parts.scheme not in ("redis", "rediss", "unix", *CLUSTER_SCHEMES):
            raise ValueError(
                "must start with redis://, rediss://, unix:// or, for a Redis Cluster, "
                "redis+cluster:// or rediss+cluster://"
            )
        # Well-formedness first: a `/` in an unencoded password otherwise reads as a database.
        if not _well_formed_redis_url(url.get_secret_value()):
            # Never quote the URL or a part of it: the part would be the password's.
            raise ValueError(
                "is not a well-formed URL; percent-encode any / # ? @ in the user name and "
                "password (for example / as %2F)"
            )
        if parts.scheme in CLUSTER_SCHEMES and parts.path.removeprefix("/") not in ("", "0"):
            raise ValueError("names a database, and a Redis Cluster has only database 0")
        _refuse_port_zero(parts)
        return url

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None:
            return None
        text = url.get_secret_value().strip()
        parts = urlsplit(text)
        if parts.scheme not in ("postgresql", "postgres"):
            # Never quote the URL or a part of it: the part would be the password's.
            raise ValueError("must start with postgresql:// or postgres://")
        try:
            # An unencoded `#` or `/` in the password ends the host part early: what follows
            # lands in the fragment or the path, and a part of the password would be taken for
            # the host (and named in errors).
            if parts.fragment or "@" in parts.path:
                raise ValueError("split in the wrong place")
            if "," not in parts.netloc:  # libpq's host1:port1,host2:port2 lists no one port
                _check_port(text)
        except ValueError:
            raise ValueError(
                "is not a well-formed URL; percent-encode any / # ? @ : in the user name and "
                "password (for example / as %2F)"
            ) from None
        if "," not in parts.netloc:
            _refuse_port_zero(parts)
        _check_libpq_options(text)
        return SecretStr(text)

    @field_validator("sqlite_path")
    @classmethod
    def _absolute_path(cls, path: Path) -> Path:
        # Hosts start servers in directories of their choosing: resolve once, here, so the
        # file does not depend on it, and `~` means the home directory, not a folder named `~`.
        return path.expanduser().resolve()

    @model_validator(mode="after")
    def _upstash_needs_both(self) -> StoreConfig:
        if (self.upstash_redis_rest_url is None) != (self.upstash_redis_rest_token is None):
            raise ConfigurationError(
                "set both UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN, or neither"
            )
        return self

    @model_validator(mode="after")
    def _one_store(self) -> StoreConfig:
        configured = {
            "upstash": self.upstash_redis_rest_url is not None,
            "redis": self.redis_url is not None,
            "postgres": self.database_url is not None,
            "sqlite": True,
        }
        if self.session_store is not None:
            if not configured[self.session_store]:
                variables = _STORE_VARIABLES[self.session_store]
                are = "are" if " and " in variables else "is"
                raise ConfigurationError(
                    f"SESSION_STORE={self.session_store} needs {variables}, which {are} not set"
                )
            return self
        if self.database_url is not None:
            others = [_STORE_VARIABLES[name] for name in ("upstash", "redis") if configured[name]] + (
                ["SQLITE_PATH"] if "sqlite_path" in self.model_fields_set else []
            )
            if others:
                raise ConfigurationError(
                    f"both DATABASE_URL and {' and '.join(others)} are set: set SESSION_STORE to "
                    "postgres, redis, upstash or sqlite to say which store to use, or unset one"
                )
        return self

    @model_validator(mode="after")
    def _acks_need_redis(self) -> StoreConfig:
        if self.redis_replica_acks and self.backend != "redis":
            raise ConfigurationError(
                "REDIS_REPLICA_ACKS applies to a store at REDIS_URL only (Upstash keeps its own replicas)"
            )
        return self

    @property
    def redis_cluster(self) -> bool:
        """Whether REDIS_URL names a Redis Cluster (redis+cluster:// or rediss+cluster://)."""
        return (
            self.redis_url is not None
            and urlsplit(self.redis_url.get_secret_value()).scheme in CLUSTER_SCHEMES
        )

    @property
    def backend(self) -> Backend:
        """SESSION_STORE when set; else Upstash when its URL and token are set, else Redis when
        REDIS_URL is set, else PostgreSQL when DATABASE_URL is set, else SQLite."""
        if self.session_store is not None:
            return self.session_store
        if self.upstash_redis_rest_url is not None:
            return "upstash"
        if self.redis_url is not None:
            return "redis"
        if self.database_url is not None:
            return "postgres"
        return "sqlite"


_STORE_VARIABLES: dict[str, str] = {
    "upstash": "UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN",
    "redis": "REDIS_URL",
    "postgres": "DATABASE_URL",
    "sqlite": "SQLITE_PATH",
}


def _check_port(url: str) -> None:
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None


def _check_libpq_options(url: str) -> None:
    """An option libpq does not know fails every connection, reported as nothing more than a
    ProgrammingError: refuse it here, by what is wrong, never quoting it (an option may hold a
    password)."""
    import psycopg  # here, so that a server on another store does not load the driver
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ValueError(
            "has a query option libpq does not know, or a malformed one: check its options "
            "(such as sslmode, sslrootcert, connect_timeout)"
        ) from None


def _refuse_port_zero(parts: SplitResult) -> None:
    """Port 0 parses, but no server can be reached on it: say so rather than report an outage."""
    if parts.port == 0:
        raise ValueError("has port 0, which no server listens on: give the server's port")


def _well_formed_redis_url(url: str) -> bool:
    """False for a URL that an unencoded character in its password split in the wrong place."""
    parts = urlsplit(url)
    if parts.fragment or "@" in parts.query:
        return False
    if parts.scheme == "unix":
        return bool(parts.path) and "@" not in parts.path
    try:
        parts.port  # noqa: B018 - raises ValueError when the password ran into the port
    except ValueError:
        return False
    database = parts.path.removeprefix("/")
    return bool(parts.hostname) and (database == "" or database.isdigit())


def redact_url(url: str) -> str:
    """Scheme, host, port and path only: `redis://[::1]:6379/0`, `unix:///run/redis.sock`.

    The query goes too: redis-py reads a `password=` option from it.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        # Never fall back to the text itself: the unparsable part may be the password.
        return "(a URL that could not be parsed)"
    # `netloc` brackets an IPv6 host and leaves the user name and password out.
    host = parsed.netloc.decode("ascii")
    path = "" if parsed.path == "/" else parsed.path  # httpx gives "/" for a URL with no path
    return f"{parsed.scheme}://{host}{path}"
