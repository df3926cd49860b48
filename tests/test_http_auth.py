"""Named clients over HTTP: tokens file with reload, JWTs from a JWKS, per-client sessions, denial logs."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client

from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env, stop, wait_until_healthy
from localservers.redis_server import free_port
from tests.support.jwks import AUDIENCE, ISSUER, JwksServer, SigningKey
from tests.support.logged_server import LoggedServer, logged_http_server
from tests.support.mcp_http import mcp_client, post_list_tools
from tests.support.results import structured

pytestmark = pytest.mark.anyio

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"
STATIC = "static-token-0123456789abcdef"


def tokens_file(directory: Path, text: str) -> Path:
    path = directory / "tokens"
    path.write_text(text)
    path.chmod(0o600)
    return path


def start_with_tokens_file(directory: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """The console script over HTTP with this tokens file, for a file that must stop it."""
    return subprocess.run(
        [CONSOLE_SCRIPT, "--transport", "http", "--port", "1"],
        env=child_env(SQLITE_PATH=str(directory / "s.sqlite3"), MCP_TOKENS_FILE=str(path)),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )


def stored_keys(database: Path) -> list[str]:
    # sqlite3's own context manager only commits; closing() is what closes the connection.
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return sorted(row[0] for row in connection.execute("SELECT key FROM conversations"))


async def save(client: Client, session_id: str, content: str) -> None:
    arguments = {"session_id": session_id, "role": "user", "content": content}
    structured(await client.call_tool("save_turn", arguments))


async def contents(client: Client, session_id: str) -> list[str]:
    read = structured(await client.call_tool("get_session", {"session_id": session_id}))
    return [turn["content"] for turn in read["turns"]]


# -- tokens file and per-client isolation ---------------------------------------------------------


@pytest.fixture
def per_client_server(tmp_path: Path) -> Iterator[LoggedServer]:
    settings = {
        "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
        "MCP_TOKENS_FILE": str(tokens_file(tmp_path, f"# clients\nalice:{ALICE}\n\nbob:{BOB}\n# end\n")),
        "SESSION_ISOLATION": "per-client",
        "KEY_PREFIX": "app:",
    }
    with logged_http_server(settings, tmp_path / "server.log") as server:
        yield server


async def test_per_client_sessions_with_one_id_are_two_sessions(
    per_client_server: LoggedServer, tmp_path: Path
) -> None:
    url = per_client_server.base_url
    async with mcp_client(url, ALICE) as alice, mcp_client(url, BOB) as bob:
        await save(alice, "chat-1", "alice's secret")
        await save(bob, "chat-1", "bob's note")
        # Read: each sees only its own turn.
        assert await contents(alice, "chat-1") == ["alice's secret"]
        assert await contents(bob, "chat-1") == ["bob's note"]
        # Append: bob's save never lands in alice's session.
        await save(bob, "chat-1", "forged assistant turn")
        assert await contents(alice, "chat-1") == ["alice's secret"]
        # Delete: bob deletes his own session only.
        deleted = structured(await bob.call_tool("delete_session", {"session_id": "chat-1"}))
        assert deleted["deleted"] is True
        assert await contents(alice, "chat-1") == ["alice's secret"]
        assert await contents(bob, "chat-1") == []
    assert stored_keys(tmp_path / "s.sqlite3") == ["app:client:alice:session:chat-1"]


async def test_shared_isolation_keeps_the_typescript_key_layout(tmp_path: Path) -> None:
    settings = {
        "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
        "MCP_TOKENS_FILE": str(tokens_file(tmp_path, f"alice:{ALICE}\nbob:{BOB}\n# end\n")),
    }
    with logged_http_server(settings, tmp_path / "server.log") as server:
        async with mcp_client(server.base_url, ALICE) as alice, mcp_client(server.base_url, BOB) as bob:
            await save(alice, "together", "from alice")
            assert await contents(bob, "together") == ["from alice"]
    assert stored_keys(tmp_path / "s.sqlite3") == ["session:together"]


async def test_static_token_and_tokens_file_work_together(tmp_path: Path) -> None:
    settings = {
        "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
        "MCP_AUTH_TOKEN": STATIC,
        "MCP_TOKENS_FILE": str(tokens_file(tmp_path, f"alice:{ALICE}\n# end\n")),
        "SESSION_ISOLATION": "per-client",
    }
    with logged_http_server(settings, tmp_path / "server.log") as server:
        async with mcp_client(server.base_url, STATIC) as static, mcp_client(server.base_url, ALICE) as alice:
            await save(static, "s", "static")
            await save(alice, "s", "alice")
    assert stored_keys(tmp_path / "s.sqlite3") == [
        "client:alice:session:s",
        "client:mcp-auth-token:session:s",
    ]


def test_a_token_removed_from_the_file_is_refused_without_a_restart(
    per_client_server: LoggedServer, tmp_path: Path
) -> None:
    url = per_client_server.base_url
    assert post_list_tools(url, BOB).status_code == 200
    tokens_file(tmp_path, f"alice:{ALICE}\n# end\n")  # bob revoked
    deadline = time.monotonic() + 5
    while post_list_tools(url, BOB).status_code != 401:
        assert time.monotonic() < deadline, "bob's revoked token still accepted after 5 s"
        time.sleep(0.2)
    assert post_list_tools(url, ALICE).status_code == 200
    per_client_server.wait_for_log("MCP_TOKENS_FILE reloaded: 1 token(s)")


def test_sighup_reloads_the_tokens_file_at_once(per_client_server: LoggedServer, tmp_path: Path) -> None:
    url = per_client_server.base_url
    new_client = "carol-token-0123456789abcdef"
    assert post_list_tools(url, new_client).status_code == 401
    before = (tmp_path / "tokens").stat()
    text = f"alice:{ALICE}\ncarol:{new_client}\n# end\n"
    # Padded to the same size, rewritten in place (same inode), its mtime put back: only the
    # signal can tell the server.
    path = tokens_file(tmp_path, "#" * (before.st_size - len(text) - 1) + "\n" + text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    per_client_server.process.send_signal(signal.SIGHUP)
    per_client_server.wait_for_log("MCP_TOKENS_FILE reloaded: 2 token(s)")
    assert post_list_tools(url, new_client).status_code == 200
    assert post_list_tools(url, BOB).status_code == 401


def test_a_malformed_reload_keeps_the_previous_clients(
    per_client_server: LoggedServer, tmp_path: Path
) -> None:
    url = per_client_server.base_url
    tokens_file(tmp_path, f"alice:{ALICE}\nbob {BOB}\n# end\n")
    per_client_server.process.send_signal(signal.SIGHUP)
    per_client_server.wait_for_log("not reloaded, the previous 2 token(s) stay in force: line 2")
    assert post_list_tools(url, BOB).status_code == 200
    assert post_list_tools(url, ALICE).status_code == 200
    assert BOB not in per_client_server.log()


def test_a_half_written_tokens_file_is_not_taken_and_the_clients_stay(
    per_client_server: LoggedServer, tmp_path: Path
) -> None:
    url = per_client_server.base_url
    # Rewritten in place and caught after its first line: no end line yet. Picked up by the
    # change check on a request, not by a signal.
    tokens_file(tmp_path, f"# clients\nalice:{ALICE}\n")
    deadline = time.monotonic() + 5
    while "not reloaded" not in per_client_server.log():
        assert time.monotonic() < deadline, "the half-written file was not noticed within 5 s"
        assert post_list_tools(url, BOB).status_code == 200
        time.sleep(0.2)
    per_client_server.wait_for_log("the previous 2 token(s) stay in force: incomplete: its last")
    assert post_list_tools(url, BOB).status_code == 200
    assert post_list_tools(url, ALICE).status_code == 200


def test_a_tokens_file_without_its_end_line_stops_startup_naming_the_rule(tmp_path: Path) -> None:
    path = tokens_file(tmp_path, f"alice:{ALICE}\nbob:{BOB}\n")
    finished = start_with_tokens_file(tmp_path, path)
    assert finished.returncode != 0
    assert f"MCP_TOKENS_FILE {path}: incomplete: its last non-empty line must be '# end'" in finished.stderr
    assert ALICE not in finished.stderr
    assert BOB not in finished.stderr
    assert "Traceback" not in finished.stderr


def test_a_malformed_tokens_file_stops_startup_naming_the_line_not_the_token(tmp_path: Path) -> None:
    path = tokens_file(tmp_path, f"alice:{ALICE}\n# fine\nbob:short-secret\n# end\n")
    finished = start_with_tokens_file(tmp_path, path)
    assert finished.returncode != 0
    assert "line 3: a token is 16 or more characters" in finished.stderr
    assert "short-secret" not in finished.stderr
    assert ALICE not in finished.stderr
    assert "Traceback" not in finished.stderr


def test_denied_requests_are_logged_with_address_and_reason_never_the_token(
    per_client_server: LoggedServer,
) -> None:
    url = per_client_server.base_url
    guessed = "guessed-token-0123456789abcdef"
    assert post_list_tools(url, guessed).status_code == 401
    assert post_list_tools(url, None).status_code == 401
    per_client_server.wait_for_log("no bearer token")
    log = per_client_server.log()
    assert "denied POST /mcp from 127.0.0.1:" in log
    assert "(client unknown): unknown or revoked token" in log
    # Behind a reverse proxy on loopback, the log names the proxy's client.
    assert post_list_tools(url, guessed, **{"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    per_client_server.wait_for_log("denied POST /mcp from 203.0.113.9:")
    assert guessed not in log
    assert ALICE not in log
    assert BOB not in log


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"SESSION_ISOLATION": "per-client"}, "SESSION_ISOLATION=per-client names each client"),
        (
            {"MCP_JWT_JWKS_URL": "https://idp.example.test/jwks", "MCP_AUTH_TOKEN": STATIC},
            "the JWT mode needs all of",
        ),
        (
            {
                "MCP_JWT_JWKS_URL": "https://idp.example.test/jwks",
                "MCP_JWT_ISSUER": ISSUER,
                "MCP_JWT_AUDIENCE": AUDIENCE,
                "MCP_AUTH_TOKEN": STATIC,
            },
            "cannot be combined with MCP_AUTH_TOKEN or MCP_TOKENS_FILE",
        ),
        (
            {"MCP_JWT_JWKS_URL": "http://idp.example.test/jwks", "MCP_JWT_ISSUER": ISSUER},
            "MCP_JWT_JWKS_URL: must be an https:// URL",
        ),
    ],
)
def test_contradictory_auth_settings_stop_startup(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    finished = subprocess.run(
        [CONSOLE_SCRIPT, "--transport", "http", "--port", "1"],
        env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3"), **settings),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert finished.returncode != 0
    assert message in finished.stderr
    assert STATIC not in finished.stderr
    assert "Traceback" not in finished.stderr


def test_per_client_isolation_over_stdio_is_refused(tmp_path: Path) -> None:
    finished = subprocess.run(
        [CONSOLE_SCRIPT],
        env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3"), SESSION_ISOLATION="per-client"),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert finished.returncode != 0
    assert "it needs --transport http" in finished.stderr


# -- JWT ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp_key() -> SigningKey:
    return SigningKey("key-1")


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory, idp_key: SigningKey) -> Iterator[LoggedServer]:
    directory = tmp_path_factory.mktemp("jwt")
    with JwksServer(idp_key) as jwks:
        settings = {
            "SQLITE_PATH": str(directory / "s.sqlite3"),
            "MCP_JWT_JWKS_URL": jwks.url,
            "MCP_JWT_ISSUER": ISSUER,
            "MCP_JWT_AUDIENCE": AUDIENCE,
            "MCP_PUBLIC_URL": AUDIENCE,
            "SESSION_ISOLATION": "per-client",
        }
        with logged_http_server(settings, directory / "server.log") as server:
            yield server


def test_a_jwt_signed_by_the_providers_key_is_accepted(jwt_server: LoggedServer, idp_key: SigningKey) -> None:
    assert post_list_tools(jwt_server.base_url, idp_key.token()).status_code == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"expires_in": -3600}, "JWT expired"),
        ({"audience": "https://other.example.test/mcp"}, "JWT for another audience"),
        ({"issuer": "https://evil.example.test"}, "JWT from another issuer"),
    ],
)
def test_a_jwt_with_a_bad_claim_gets_401_and_names_its_subject_in_the_log(
    jwt_server: LoggedServer, idp_key: SigningKey, claims: dict[str, object], reason: str
) -> None:
    subject = f"user-{reason.split()[-1]}"
    token = idp_key.token(subject, **claims)  # type: ignore[arg-type]
    answer = post_list_tools(jwt_server.base_url, token)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    jwt_server.wait_for_log(f"(client {subject!r}): {reason}")
    assert token not in jwt_server.log()


def test_a_jwt_signed_by_another_key_gets_401(jwt_server: LoggedServer) -> None:
    impostor = SigningKey("key-1")  # the right kid, the wrong key
    token = impostor.token("mallory")
    assert post_list_tools(jwt_server.base_url, token).status_code == 401
    jwt_server.wait_for_log("(client unknown): JWT signature not valid")
    assert "mallory" not in jwt_server.log()


def test_a_jwt_with_an_unknown_key_id_gets_401(jwt_server: LoggedServer) -> None:
    token = SigningKey("key-2").token("mallory")
    assert post_list_tools(jwt_server.base_url, token).status_code == 401


def test_an_hmac_jwt_is_refused(jwt_server: LoggedServer, idp_key: SigningKey) -> None:
    import jwt

    now = int(time.time())
    claims = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300}
    token = jwt.encode(claims, "a-shared-secret-of-32-bytes-long!", algorithm="HS256")
    assert post_list_tools(jwt_server.base_url, token).status_code == 401


def test_protected_resource_metadata_names_the_issuer(jwt_server: LoggedServer) -> None:
    answer = httpx.get(f"{jwt_server.base_url}/.well-known/oauth-protected-resource/mcp")
    assert answer.status_code == 200
    metadata = answer.json()
    assert metadata["resource"] == AUDIENCE
    assert metadata["authorization_servers"] == [ISSUER]
    unauthorised = post_list_tools(jwt_server.base_url, None)
    assert "/.well-known/oauth-protected-resource/mcp" in unauthorised.headers["WWW-Authenticate"]


async def test_jwt_subjects_get_their_own_sessions_whatever_their_characters(
    jwt_server: LoggedServer, idp_key: SigningKey
) -> None:
    odd = "auth0|user:42/session:x"
    async with (
        mcp_client(jwt_server.base_url, idp_key.token(odd)) as first,
        mcp_client(jwt_server.base_url, idp_key.token("auth0|user")) as second,
    ):
        await save(first, "shared-id", "first")
        assert await contents(second, "shared-id") == []
        assert await contents(first, "shared-id") == ["first"]
    database = Path(jwt_server.log_path.parent / "s.sqlite3")
    assert "client:auth0%7Cuser%3A42%2Fsession%3Ax:session:shared-id" in stored_keys(database)


def test_a_provider_that_dribbles_its_keys_lets_the_server_start_and_says_why(
    tmp_path: Path, idp_key: SigningKey
) -> None:
    # A byte a second never trips a per-read timeout; only the deadline on the whole fetch ends it.
    with JwksServer(idp_key, dribble=1.0) as jwks:
        settings = {
            "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
            "MCP_JWT_JWKS_URL": jwks.url,
            "MCP_JWT_ISSUER": ISSUER,
            "MCP_JWT_AUDIENCE": AUDIENCE,
        }
        port = free_port()
        log_path = tmp_path / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [CONSOLE_SCRIPT, "--transport", "http", "--port", str(port)],
                env=child_env(**settings),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        server = LoggedServer(f"http://127.0.0.1:{port}", process, log_path)
        try:
            # The startup fetch gives up at its deadline; how long the process takes to reach it
            # depends on how busy the machine is, hence the generous wait.
            server.wait_for_log("(no complete answer within 5 s); 0 key(s) stay in use", timeout=90)
            wait_until_healthy(server.base_url, process, server.log)
            assert post_list_tools(server.base_url, idp_key.token()).status_code == 401
            server.wait_for_log("(client unknown): JWT signed by a key not in the JWKS")
            assert jwks.fetches == 1
        finally:
            stop(process)


def test_a_jwt_without_a_required_scope_gets_403(tmp_path: Path, idp_key: SigningKey) -> None:
    with JwksServer(idp_key) as jwks:
        settings = {
            "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
            "MCP_JWT_JWKS_URL": jwks.url,
            "MCP_JWT_ISSUER": ISSUER,
            "MCP_JWT_AUDIENCE": AUDIENCE,
            "MCP_JWT_REQUIRED_SCOPES": "memory",
        }
        with logged_http_server(settings, tmp_path / "server.log") as server:
            assert (
                post_list_tools(server.base_url, idp_key.token("reader", scope="profile")).status_code == 403
            )
            server.wait_for_log("(client 'reader'): insufficient scope")
            assert (
                post_list_tools(server.base_url, idp_key.token("writer", scope="profile memory")).status_code
                == 200
            )
            metadata = httpx.get(f"{server.base_url}/.well-known/oauth-protected-resource/mcp").json()
            assert metadata["scopes_supported"] == ["memory"]
            assert metadata["resource"] == f"{server.base_url}/mcp"
