"""Settings: the backend choice, validation, and .env.example kept in step with the code."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env
from memory import ConfigurationError, StoreConfig
from server.settings import Settings, describe_validation_error

ENV_EXAMPLE = Path(__file__).parent.parent / ".env.example"
BACKEND_VARIABLES = (
    "UPSTASH_REDIS_REST_URL",
    "UPSTASH_REDIS_REST_TOKEN",
    "REDIS_URL",
    "DATABASE_URL",
    "SESSION_STORE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BACKEND_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_env_example_lists_every_setting_once() -> None:
    listed = re.findall(r"^([A-Z_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    assert sorted(listed) == sorted(name.upper() for name in Settings.model_fields)


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ENV_EXAMPLE.parent / "README.md").read_text()
    listed = re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE)
    assert sorted(set(listed)) == sorted(name.upper() for name in Settings.model_fields)


def test_env_example_starts_with_the_design_notes_variables() -> None:
    listed = re.findall(r"^([A-Z_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    assert listed[:2] == ["UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"]


def test_every_setting_in_env_example_has_a_comment() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z_]+=", line):
            assert lines[index - 1].startswith("#"), f"{line} has no comment above it"


def test_env_example_as_copied_selects_the_embedded_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.match(r"^([A-Z_]+)=(.*)$", line):
            monkeypatch.setenv(match[1], match[2])
    settings = Settings()
    assert settings.backend == "sqlite"
    assert settings.mcp_auth_token is None
    assert settings.session_ttl_seconds == 604800


def test_no_configuration_selects_sqlite() -> None:
    assert Settings().backend == "sqlite"


def test_redis_url_selects_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    assert Settings().backend == "redis"


def test_upstash_variables_select_upstash_even_with_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTASH_REDIS_REST_URL", "https://example.upstash.io")
    monkeypatch.setenv("UPSTASH_REDIS_REST_TOKEN", "token")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    assert Settings().backend == "upstash"


@pytest.mark.parametrize("present", ["UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"])
def test_half_an_upstash_configuration_is_refused(monkeypatch: pytest.MonkeyPatch, present: str) -> None:
    monkeypatch.setenv(present, "https://example.upstash.io")
    with pytest.raises(
        ConfigurationError, match="set both UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN"
    ):
        Settings()


def test_validation_errors_are_described_without_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://user:hunter2@localhost")
    monkeypatch.setenv("SESSION_TTL_SECONDS", "0")
    with pytest.raises(ValidationError) as caught:
        Settings()
    described = describe_validation_error(caught.value)
    assert "REDIS_URL: must start with redis://, rediss://, unix:// or, for a Redis Cluster" in described
    assert "SESSION_TTL_SECONDS: Input should be greater than or equal to 1" in described
    assert "hunter2" not in described


def test_a_store_config_built_in_code_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("SESSION_TTL_SECONDS", "60")
    config = StoreConfig()
    assert config.backend == "sqlite"
    assert config.session_ttl_seconds == 604800


def test_the_store_config_of_the_settings_holds_the_store_fields_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@localhost:6379/0")
    monkeypatch.setenv("KEY_PREFIX", "app:")
    monkeypatch.setenv("MCP_AUTH_TOKEN", "a-token-of-sixteen-chars")
    config = Settings().store_config()
    assert type(config) is StoreConfig
    assert config.backend == "redis"
    assert config.key_prefix == "app:"
    assert config.redis_url is not None
    assert config.redis_url.get_secret_value() == "redis://:s3cret@localhost:6379/0"
    assert "s3cret" not in repr(config)
    assert not hasattr(config, "mcp_auth_token")
    with pytest.raises(ValidationError, match="frozen"):
        config.key_prefix = "other:"  # type: ignore[misc]


def test_a_store_config_built_in_code_is_checked_like_the_settings() -> None:
    with pytest.raises(ValidationError) as caught:
        StoreConfig(redis_url="http://user:hunter2@localhost", session_ttl_seconds=0)
    described = describe_validation_error(caught.value)
    assert "REDIS_URL: must start with redis://, rediss://, unix:// or, for a Redis Cluster" in described
    assert "SESSION_TTL_SECONDS: Input should be greater than or equal to 1" in described
    assert "hunter2" not in described
    with pytest.raises(
        ConfigurationError, match="set both UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN"
    ):
        StoreConfig(upstash_redis_rest_url="https://example.upstash.io")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        StoreConfig(redis_uri="redis://localhost")  # type: ignore[call-arg]


def test_allowed_hosts_and_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_ALLOWED_HOSTS", "memory.example.com, memory.example.com:443")
    monkeypatch.setenv("MCP_ALLOWED_ORIGINS", "https://app.example.com")
    settings = Settings()
    assert settings.mcp_allowed_hosts == ["memory.example.com", "memory.example.com:443"]
    assert settings.mcp_allowed_origins == ["https://app.example.com"]


def test_a_short_auth_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_AUTH_TOKEN", "short")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "MCP_AUTH_TOKEN: must be at least 16 characters" in describe_validation_error(caught.value)


# Each store URL whose password, unencoded, splits it in the wrong place: refused, and named without
# any part of it (the piece before a `/` or `#` would be taken for the host, and shown).
@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("REDIS_URL", "redis://:hun/ter2@redis-host.test:6379/0"),
        ("REDIS_URL", "redis://:hun#ter2@redis-host.test:6379"),
        ("REDIS_URL", "redis://:hun?ter2@redis-host.test:6379/0"),
        ("REDIS_URL", "rediss://user:hun/ter2@redis-host.test/0"),
        ("REDIS_URL", "redis://:hunter2@redis-host.test:zzport"),
        ("REDIS_URL", "unix://:hun/ter2@/run/redis.sock"),
        # On a cluster too: the `/` must not make the rest read as a database number.
        ("REDIS_URL", "redis+cluster://:hun/ter2@redis-host.test:6379"),
        ("REDIS_URL", "redis+cluster://:hun/ter2#x@redis-host.test:6379"),
        ("DATABASE_URL", "postgresql://app:hun#ter2@db.test:5432/memory"),
        ("DATABASE_URL", "postgresql://app:hun/ter2@db.test:5432/memory"),
        ("DATABASE_URL", "postgres://app:p@hun/ter2#x@db.test/memory"),
    ],
)
def test_a_url_split_by_its_password_is_refused_without_any_part_of_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    with pytest.raises(ValidationError) as caught:
        Settings()
    described = describe_validation_error(caught.value)
    assert described.startswith(f"{variable}: is not a well-formed URL; percent-encode")
    for fragment in ("hun", "ter2", "redis-host", "db.test", "6379", "5432", "zzport"):
        assert fragment not in described


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pass%2Fword@redis.example.com:6379/0",
        "rediss://user:p%23w%3F@redis.example.com",
        "redis://localhost",
        "unix:///run/redis.sock?db=1",
        "unix://:secret@/run/redis.sock",
    ],
)
def test_well_formed_redis_urls_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    assert Settings().backend == "redis"


def test_a_malformed_redis_url_stops_the_console_script_without_a_traceback() -> None:
    finished = subprocess.run(
        [CONSOLE_SCRIPT],
        env=child_env(REDIS_URL="redis://:hunter/2@redis.example.com:6379/0"),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert finished.returncode != 0
    assert "REDIS_URL: is not a well-formed URL" in finished.stderr
    assert "hunter" not in finished.stderr
    assert "Traceback" not in finished.stderr


def test_jwt_scopes_without_the_jwt_mode_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_JWT_REQUIRED_SCOPES", "memory:write")
    with pytest.raises(ConfigurationError, match="MCP_JWT_REQUIRED_SCOPES needs the JWT mode"):
        Settings()


def test_session_isolation_takes_only_its_two_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_ISOLATION", "per-user")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "SESSION_ISOLATION: Input should be 'shared' or 'per-client'" in describe_validation_error(
        caught.value
    )


def test_database_url_selects_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db.example:5432/memory")
    settings = Settings()
    assert settings.backend == "postgres"
    assert settings.store_config().backend == "postgres"


def test_a_postgres_scheme_alias_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app@db.example/memory?sslmode=require")
    assert Settings().backend == "postgres"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"REDIS_URL": "redis://localhost:6379/0"}, "REDIS_URL"),
        (
            {"UPSTASH_REDIS_REST_URL": "https://example.upstash.io", "UPSTASH_REDIS_REST_TOKEN": "t"},
            "UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN",
        ),
        ({"SQLITE_PATH": "/tmp/x.sqlite3"}, "SQLITE_PATH"),
    ],
)
def test_database_url_beside_another_store_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db.example/memory")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"both DATABASE_URL and {named} are set") as caught:
        Settings()
    assert "SESSION_STORE" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("chosen", ["postgres", "redis", "sqlite"])
def test_session_store_chooses_between_configured_stores(
    monkeypatch: pytest.MonkeyPatch, chosen: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.example/memory")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("SESSION_STORE", chosen)
    settings = Settings()
    assert settings.backend == chosen
    assert settings.store_config().backend == chosen


@pytest.mark.parametrize(
    ("chosen", "missing"),
    [
        ("postgres", "DATABASE_URL, which is"),
        ("redis", "REDIS_URL, which is"),
        ("upstash", "UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN, which are"),
    ],
)
def test_session_store_without_its_settings_is_refused(
    monkeypatch: pytest.MonkeyPatch, chosen: str, missing: str
) -> None:
    monkeypatch.setenv("SESSION_STORE", chosen)
    with pytest.raises(ConfigurationError, match=f"SESSION_STORE={chosen} needs {missing} not set"):
        Settings()


def test_an_unknown_session_store_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_STORE", "mysql")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_validation_error(caught.value).startswith("SESSION_STORE: Input should be")


@pytest.mark.parametrize("url", ["mysql://app:hunter2@db/memory", "postgresql://app:hunter2@db:port/memory"])
def test_a_database_url_that_cannot_work_is_refused_without_its_value(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError) as caught:
        Settings()
    described = describe_validation_error(caught.value)
    assert described.startswith("DATABASE_URL: ")
    assert "hunter2" not in described


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("REDIS_URL", "redis://:hunter2@redis.test:0/0"),
        ("REDIS_URL", "redis+cluster://:hunter2@redis.test:0"),
        ("DATABASE_URL", "postgresql://app:hunter2@db.test:0/memory"),
    ],
)
def test_port_zero_is_refused_as_a_setting_not_reported_as_an_outage(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    with pytest.raises(ValidationError) as caught:
        Settings()
    described = describe_validation_error(caught.value)
    assert described == f"{variable}: has port 0, which no server listens on: give the server's port"


def test_a_cluster_url_naming_a_database_is_refused_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis+cluster://:hunter2@redis.test:6379/3")
    with pytest.raises(ValidationError) as caught:
        Settings()
    described = describe_validation_error(caught.value)
    assert described == "REDIS_URL: names a database, and a Redis Cluster has only database 0"


@pytest.mark.parametrize(
    "url",
    ["postgresql://app:hunter2@db.test/memory?sslmod=require", "postgresql://app:hunter2@db.test/memory?x=1"],
)
def test_a_database_url_with_an_option_libpq_does_not_know_is_refused_without_it(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError) as caught:
        Settings()
    described = describe_validation_error(caught.value)
    assert described.startswith("DATABASE_URL: has a query option libpq does not know, or a malformed one")
    for fragment in ("hunter2", "sslmod=", "x=1", "db.test"):
        assert fragment not in described


def test_a_database_url_with_libpq_options_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DATABASE_URL",
        "postgresql://app:pw@db.test:5432/memory?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5",
    )
    assert Settings().backend == "postgres"


def test_a_database_url_listing_several_hosts_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgresql://app:pw@db1:5432,db2:5432/memory?target_session_attrs=read-write"
    )
    assert Settings().backend == "postgres"
