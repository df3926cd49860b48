"""The console script's first seconds: which settings it reads, how it checks the store, how it stops."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

from localservers.gateway import UpstashGateway
from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env, http_server
from localservers.redis_server import RedisServer, free_port
from memory.adapters import PROBE_SECONDS
from server.cli import STARTUP_CHECK_SECONDS
from server.readiness import READY_CHECK_SECONDS
from server.settings import Settings
from tests.conftest import GATEWAY_TOKEN
from tests.support.sqlite_lock import locked_by_another_process

pytestmark = pytest.mark.anyio

STARTUP_LINE = "session TTL"
CHECK_LINE = "checking the"
STOPPING_LINE = "stopping: the store refused the settings"
# A wrong setting stops the server within seconds of its store check starting: the check's own
# deadline (2 s), the plain-text probe of a TLS port (1 s), and a margin. It is timed by the
# server's own log clock, from its check to its decision to stop: the cold start before (importing
# mcp alone is about a second of CPU) and the interpreter's exit after are not part of the promise,
# and a loaded machine stretches both.
CONFIG_EXIT_SECONDS = STARTUP_CHECK_SECONDS + PROBE_SECONDS + 2.0
# A signal stops a serving process at once (about 0.3 s measured); before the stdin reader, it
# waited for the next line forever. The bound only tells the two apart, with room for a load.
STOP_SECONDS = 5.0


def run_once(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The console script with an empty stdin: it starts, serves nothing, and exits."""
    return subprocess.run(
        [CONSOLE_SCRIPT, *args],
        env=env,
        cwd=cwd,
        input="",
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )


# -- stopping ---------------------------------------------------------------------------------


def start_in_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, int, str]:
    """Start the console script with a pseudo-terminal as stdin, stdout and stderr, as a user does."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: becomes the console script
        os.execve(CONSOLE_SCRIPT, [CONSOLE_SCRIPT, *args], env)
    output = read_until(terminal, STARTUP_LINE, seconds=START_PATIENCE_SECONDS)
    return pid, terminal, output


def read_until(terminal: int, text: str, seconds: float) -> str:
    output = ""
    deadline = time.monotonic() + seconds
    while text not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([terminal], [], [], 0.1)
        if ready:
            try:
                output += os.read(terminal, 4096).decode(errors="replace")
            except OSError:  # the child closed the terminal
                break
    assert text in output, output
    return output


def wait_for_exit(pid: int, terminal: int, seconds: float) -> tuple[int | None, str]:
    """(exit code, further output); the code is None if the process still runs after `seconds`."""
    output = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return os.waitstatus_to_exitcode(status), output + drain(terminal)
        output += drain(terminal)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None, output


def drain(terminal: int) -> str:
    output = ""
    while select.select([terminal], [], [], 0)[0]:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk.decode(errors="replace")
    return output


def wait_until_serving(transport: str, terminal: int, port: int) -> None:
    """Until the server is past its startup: over stdio, blocked reading the terminal."""
    if transport == "stdio":
        # An answer proves stdin is being read; the terminal echoes the request, not "result".
        os.write(terminal, b'{"jsonrpc":"2.0","id":7,"method":"ping"}\n')
        read_until(terminal, '"result"', seconds=START_PATIENCE_SECONDS)
        time.sleep(0.2)  # the reader is back in its blocking read
        return
    deadline = time.monotonic() + START_PATIENCE_SECONDS
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "HTTP never came up"
            time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_signal_stops_the_serving_server_in_a_terminal_at_once(
    tmp_path: Path, stop: signal.Signals, transport: str
) -> None:
    port = free_port()
    args = ["--transport", transport, "--port", str(port)]
    pid, terminal, _ = start_in_a_terminal(args, child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3")))
    try:
        wait_until_serving(transport, terminal, port)
        os.kill(pid, stop)
        code, output = wait_for_exit(pid, terminal, seconds=STOP_SECONDS)
    finally:
        os.close(terminal)
    assert code == 0, f"still running {STOP_SECONDS:g} s after {stop.name}" if code is None else output
    assert "Traceback" not in output
    assert f"stopping on {stop.name}" in output


def test_ctrl_c_typed_in_the_terminal_stops_the_stdio_server_at_once(tmp_path: Path) -> None:
    pid, terminal, _ = start_in_a_terminal([], child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3")))
    try:
        wait_until_serving("stdio", terminal, 0)
        os.write(terminal, b"\x03")  # the terminal turns it into SIGINT for the foreground group
        code, output = wait_for_exit(pid, terminal, seconds=STOP_SECONDS)
    finally:
        os.close(terminal)
    assert code == 0, f"still running {STOP_SECONDS:g} s after Ctrl-C" if code is None else output
    assert "Traceback" not in output


# -- settings files -----------------------------------------------------------------------------


def test_env_file_flag_is_read_and_named_in_the_startup_line(tmp_path: Path) -> None:
    database = tmp_path / "from-flag.sqlite3"
    env_file = tmp_path / "memory.env"
    env_file.write_text(f"SQLITE_PATH={database}\nSESSION_TTL_SECONDS=3600\n")
    finished = run_once("--env-file", str(env_file), env=child_env())
    assert finished.returncode == 0, finished.stderr
    assert f"store sqlite ({database})" in finished.stderr
    assert "session TTL 3600 s" in finished.stderr
    assert f"settings from the environment and {env_file}" in finished.stderr


def test_a_missing_env_file_is_an_error_naming_it(tmp_path: Path) -> None:
    finished = run_once("--env-file", str(tmp_path / "nope.env"), env=child_env())
    assert finished.returncode != 0
    assert f"--env-file {tmp_path / 'nope.env'}: no such file" in finished.stderr


def config_dir_env(home: Path, text: str) -> dict[str, str]:
    """An environment whose user config directory (XDG_CONFIG_HOME on Linux) holds a .env."""
    config_home = home / "config"
    (config_home / "session-memory-mcp").mkdir(parents=True)
    (config_home / "session-memory-mcp" / ".env").write_text(text)
    return child_env(XDG_CONFIG_HOME=str(config_home))


def test_the_user_config_directory_env_is_read_wherever_the_host_starts_the_server(tmp_path: Path) -> None:
    database = tmp_path / "from-config-dir.sqlite3"
    env = config_dir_env(tmp_path, f"SQLITE_PATH={database}\n")
    elsewhere = tmp_path / "host-working-directory"
    elsewhere.mkdir()
    finished = run_once(env=env, cwd=elsewhere)
    assert finished.returncode == 0, finished.stderr
    assert f"store sqlite ({database})" in finished.stderr
    config_file = tmp_path / "config" / "session-memory-mcp" / ".env"
    assert f"settings from the environment and {config_file}" in finished.stderr


def test_precedence_environment_then_working_directory_then_config_directory(tmp_path: Path) -> None:
    env = config_dir_env(tmp_path, f"SESSION_TTL_SECONDS=111\nSQLITE_PATH={tmp_path / 'config.db'}\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"SESSION_TTL_SECONDS=222\nSQLITE_PATH={tmp_path / 'work.db'}\n")
    env["SQLITE_PATH"] = str(tmp_path / "environment.db")
    finished = run_once(env=env, cwd=work)
    assert finished.returncode == 0, finished.stderr
    assert "session TTL 222 s" in finished.stderr  # the working directory's over the config dir's
    assert f"store sqlite ({tmp_path / 'environment.db'})" in finished.stderr  # the environment over both
    config_file = tmp_path / "config" / "session-memory-mcp" / ".env"
    assert f"settings from the environment and {config_file} and {work / '.env'}" in finished.stderr


def test_env_file_flag_replaces_both_discovered_files(tmp_path: Path) -> None:
    env = config_dir_env(tmp_path, "SESSION_TTL_SECONDS=111\n")
    (tmp_path / ".env").write_text("SESSION_TTL_SECONDS=222\n")
    flag_file = tmp_path / "flag.env"
    flag_file.write_text(f"SQLITE_PATH={tmp_path / 's.sqlite3'}\n")
    finished = run_once("--env-file", str(flag_file), env=env, cwd=tmp_path)
    assert "session TTL 604800 s" in finished.stderr
    assert f"settings from the environment and {flag_file}\n" in finished.stderr


def test_sqlite_path_expands_the_home_directory_and_is_shown_absolute(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = child_env() | {"HOME": str(home), "SQLITE_PATH": "~/memory/s.sqlite3"}
    finished = run_once(env=env, cwd=work)
    assert finished.returncode == 0, finished.stderr
    assert f"store sqlite ({home / 'memory' / 's.sqlite3'})" in finished.stderr
    assert (home / "memory" / "s.sqlite3").is_file()
    assert not (work / "~").exists()


def test_a_relative_sqlite_path_is_resolved_against_the_starting_directory(tmp_path: Path) -> None:
    finished = run_once(env=child_env(SQLITE_PATH="data/s.sqlite3"), cwd=tmp_path)
    assert f"store sqlite ({tmp_path / 'data' / 's.sqlite3'})" in finished.stderr


def test_help_names_the_settings_files_and_no_file_an_installed_package_lacks() -> None:
    finished = subprocess.run(
        [CONSOLE_SCRIPT, "--help"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=True,
    )
    assert ".env.example" not in finished.stdout
    assert "--env-file PATH" in finished.stdout
    assert "session-memory-mcp/.env" in finished.stdout.replace("\n", " ").replace("  ", "")
    help_text = " ".join(finished.stdout.split())
    for name in Settings.model_fields:
        assert name.upper() in help_text, f"--help does not name {name.upper()}"


# -- the startup check --------------------------------------------------------------------------


def exits_quickly_naming(
    env: dict[str, str], variable: str, secret: str | None = None, *, checks_the_store: bool = True
) -> str:
    """Run the console script until it exits; time it from its store check to its decision to stop.

    A setting refused before the store is asked (`checks_the_store=False`) involves no network
    and no deadline: the test then proves that no check ran instead.
    """
    finished = run_once("--log-level", "DEBUG", env=env)
    stderr = finished.stderr
    assert finished.returncode != 0, stderr
    if checks_the_store:
        elapsed = logged_at(stderr, STOPPING_LINE) - logged_at(stderr, CHECK_LINE)
        assert elapsed < CONFIG_EXIT_SECONDS, f"took {elapsed:.1f} s from the store check to stopping"
    else:
        assert CHECK_LINE not in stderr, "a malformed setting must stop the server before the store is asked"
    assert variable in stderr
    assert STARTUP_LINE not in stderr, "it must not have started serving"
    assert "Traceback" not in stderr
    if secret is not None:
        assert secret not in stderr
    return stderr


def logged_at(stderr: str, text: str) -> float:
    """When the server logged the line holding `text`, by its own clock, in seconds."""
    line = next((line for line in stderr.splitlines() if text in line), None)
    assert line is not None, f"{text!r} was not logged:\n{stderr}"
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_rejected_upstash_token_stops_the_server_within_seconds_of_its_check(
    gateway: UpstashGateway,
) -> None:
    env = child_env(UPSTASH_REDIS_REST_URL=gateway.url, UPSTASH_REDIS_REST_TOKEN="wrong-token-7f3a9c")
    stderr = exits_quickly_naming(env, "UPSTASH_REDIS_REST_TOKEN", secret="wrong-token-7f3a9c")
    assert "rejected the token" in stderr


def test_a_rejected_redis_password_stops_the_server_within_seconds_of_its_check(
    redis_server: RedisServer,
) -> None:
    # The test server has no password; a user that does not exist is rejected the same way.
    env = child_env(REDIS_URL=f"redis://nobody:hunter2-wrong@127.0.0.1:{redis_server.port}/0")
    stderr = exits_quickly_naming(env, "REDIS_URL", secret="hunter2-wrong")
    assert "rejected the credentials" in stderr


def test_https_against_a_plain_http_endpoint_stops_the_server_within_seconds_of_its_check(
    gateway: UpstashGateway,
) -> None:
    url = gateway.url.replace("http://", "https://")
    env = child_env(UPSTASH_REDIS_REST_URL=url, UPSTASH_REDIS_REST_TOKEN=GATEWAY_TOKEN)
    stderr = exits_quickly_naming(env, "UPSTASH_REDIS_REST_URL", secret=GATEWAY_TOKEN)
    assert "does not speak TLS on that port: set UPSTASH_REDIS_REST_URL to a http:// URL" in stderr


def test_rediss_against_a_plain_redis_stops_the_server_within_seconds_of_its_check(
    redis_server: RedisServer,
) -> None:
    env = child_env(REDIS_URL=f"rediss://127.0.0.1:{redis_server.port}/0")
    stderr = exits_quickly_naming(env, "REDIS_URL")
    assert "does not speak TLS on that port: set REDIS_URL to a redis:// URL" in stderr


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        # A port that is not a number may as well be a password that ran into it.
        ("REDIS_URL", "redis://:pw-secret@localhost:63x9/0", "is not a well-formed URL"),
        ("UPSTASH_REDIS_REST_URL", "https://x.upstash.io:abc", "has a port that is not a number"),
    ],
)
def test_a_malformed_url_stops_the_server_naming_the_variable(
    variable: str, value: str, problem: str
) -> None:
    env = child_env(**{variable: value, "UPSTASH_REDIS_REST_TOKEN": "t"})
    if variable == "REDIS_URL":
        del env["UPSTASH_REDIS_REST_TOKEN"]
    stderr = exits_quickly_naming(env, f"{variable}: {problem}", secret="pw-secret", checks_the_store=False)
    assert "invalid settings" in stderr


async def test_an_unreachable_store_still_serves_warns_once_and_tools_report_it() -> None:
    port = free_port()  # nothing listens there
    parameters = StdioServerParameters(
        command=CONSOLE_SCRIPT, env=child_env(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    )
    errors: list[str] = []
    async with Client(parameters) as client:
        for _ in range(2):
            result = await client.call_tool("get_session", {"session_id": "s"})
            assert result.is_error
            assert isinstance(result.content[0], TextContent)
            errors.append(result.content[0].text)
    assert all(f"Store unavailable: Redis at redis://127.0.0.1:{port}/0 refused" in e for e in errors)
    assert all(e.count("try again") == 1 for e in errors)


def test_an_unreachable_store_is_one_warning_in_the_log() -> None:
    port = free_port()
    finished = run_once(env=child_env(REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    assert finished.returncode == 0, finished.stderr
    warnings = [line for line in finished.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, finished.stderr
    assert "did not answer at startup; serving anyway" in warnings[0]
    assert STARTUP_LINE in finished.stderr


async def test_a_sqlite_file_locked_at_startup_does_not_stop_the_server(tmp_path: Path) -> None:
    database = tmp_path / "s.sqlite3"
    env = child_env(SQLITE_PATH=str(database), STORE_TIMEOUT_SECONDS="0.5")
    assert run_once(env=env).returncode == 0  # creates the database (in WAL mode)
    parameters = StdioServerParameters(command=CONSOLE_SCRIPT, env=env)
    with locked_by_another_process(database):
        async with Client(parameters) as client:
            result = await client.call_tool("get_session", {"session_id": "s"})
            assert not result.is_error, result.content
            saved = await client.call_tool("save_turn", {"session_id": "s", "role": "user", "content": "x"})
            assert saved.is_error  # the other process still holds the write lock
    async with Client(parameters) as client:
        saved = await client.call_tool("save_turn", {"session_id": "s", "role": "user", "content": "x"})
        assert not saved.is_error, saved.content


# -- /readyz --------------------------------------------------------------------------------------


def test_readyz_is_200_when_the_store_answers(tmp_path: Path) -> None:
    with http_server({"SQLITE_PATH": str(tmp_path / "s.sqlite3")}) as url:
        answer = httpx.get(f"{url}/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "store": "sqlite"}


def test_readyz_is_503_with_a_reason_when_the_store_does_not_answer(gateway: UpstashGateway) -> None:
    settings = {"UPSTASH_REDIS_REST_URL": gateway.url, "UPSTASH_REDIS_REST_TOKEN": GATEWAY_TOKEN}
    with http_server(settings) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        gateway.stop()
        started = time.monotonic()
        answer = httpx.get(f"{url}/readyz", timeout=10)
        elapsed = time.monotonic() - started
        health = httpx.get(f"{url}/healthz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert "the store is unavailable" in answer.json()["reason"]
    assert GATEWAY_TOKEN not in answer.text
    assert "127.0.0.1" not in answer.text  # no address, no path: only the kind of problem
    assert elapsed < READY_CHECK_SECONDS + 3  # its own deadline, not the store's 10 s timeout
    assert health.status_code == 200  # liveness does not depend on the store
