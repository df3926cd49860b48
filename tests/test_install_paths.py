"""Installing without a clone's virtual environment: `uvx --from <path>` and `pipx install <path>`.

Both build the package from this checkout, as they would from a git URL, and fetch the
dependencies from the package index; the checks then run the installed command as a host does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from localservers.processes import START_PATIENCE_SECONDS, child_env

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("install_paths")]

CHECKOUT = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent  # uv and pipx come with the dev extra
INSTALL_TIMEOUT = 600
# How this machine reaches the package index (certificates, proxies, mirrors), and nothing else.
INDEX_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "XDG_CACHE_HOME")


def installer_env(**settings: str) -> dict[str, str]:
    passed = {
        name: value
        for name, value in os.environ.items()
        if name.upper() in INDEX_VARIABLES or name.startswith(("PIP_", "UV_", "SSL_CERT_"))
    }
    return child_env(**passed, **settings)


async def save_and_read_back(parameters: StdioServerParameters) -> None:
    async with Client(parameters) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == {"save_turn", "save_turns", "get_session", "list_sessions", "delete_session"}
        saved = await client.call_tool("save_turn", {"session_id": "i", "role": "user", "content": "hej"})
        assert not saved.is_error, saved.content
        read = await client.call_tool("get_session", {"session_id": "i"})
        assert isinstance(read.structured_content, dict)
        assert [turn["content"] for turn in read.structured_content["turns"]] == ["hej"]


async def test_uvx_from_the_checkout_serves_over_stdio(tmp_path: Path) -> None:
    env = installer_env(SQLITE_PATH=str(tmp_path / "s.sqlite3"))
    # The host snippet: {"command": "uvx", "args": ["--from", "<path or git URL>", "session-memory-mcp"]}.
    # The first run builds and caches the environment; the host's wait for it is not ours to test.
    warm = subprocess.run(
        [str(TOOLS / "uvx"), "--from", str(CHECKOUT), "session-memory-mcp", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith("session-memory-mcp ")
    parameters = StdioServerParameters(
        command=str(TOOLS / "uvx"), args=["--from", str(CHECKOUT), "session-memory-mcp"], env=env
    )
    await save_and_read_back(parameters)


@pytest.fixture(scope="module")
def pipx_command(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pipx install <checkout>` into a throwaway PIPX_HOME, once for this module."""
    home = tmp_path_factory.mktemp("pipx")
    env = installer_env(PIPX_HOME=str(home), PIPX_BIN_DIR=str(home / "bin"), PIPX_MAN_DIR=str(home / "man"))
    installed = subprocess.run(
        [str(TOOLS / "pipx"), "install", str(CHECKOUT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    return home / "bin" / "session-memory-mcp"


async def test_pipx_install_from_the_checkout_serves_over_stdio(pipx_command: Path, tmp_path: Path) -> None:
    parameters = StdioServerParameters(
        command=str(pipx_command), env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3"))
    )
    await save_and_read_back(parameters)


def test_the_installed_help_points_to_nothing_the_package_lacks(pipx_command: Path) -> None:
    finished = subprocess.run(
        [str(pipx_command), "--help"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=True,
    )
    assert ".env.example" not in finished.stdout
    assert "UPSTASH_REDIS_REST_TOKEN" in finished.stdout  # the settings are named in the help itself


def test_the_package_carries_the_mit_license() -> None:
    license_text = (CHECKOUT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert "Copyright (c) 2026 the session-memory-mcp authors" in license_text
