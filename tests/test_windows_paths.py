"""No Unix-only import or call on a path Windows takes.

A simulation on Linux: the console script runs with a `sitecustomize` that makes `resource`
unimportable and removes `os.fchmod`, as on Windows (where `os.fchmod` exists only from 3.13).
It proves the server no longer needs either; it cannot prove everything else Windows differs in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import TextContent

from localservers.processes import CONSOLE_SCRIPT, child_env
from tests.support.logged_server import logged_http_server
from tests.support.mcp_http import post_list_tools

pytestmark = pytest.mark.anyio

WITHOUT_UNIX_PARTS = """\
import os
import sys

sys.modules["resource"] = None  # `import resource` now raises ImportError
del os.fchmod
sys.stderr.write("simulating Windows: no resource module, no os.fchmod\\n")
"""


@pytest.fixture
def windows_like_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WITHOUT_UNIX_PARTS)
    return child_env(PYTHONPATH=str(site), SQLITE_PATH=str(tmp_path / "data" / "s.sqlite3"))


async def test_the_stdio_server_saves_and_reads_without_resource_or_fchmod(
    windows_like_env: dict[str, str], tmp_path: Path
) -> None:
    errors = (tmp_path / "stderr.txt").open("w")
    with errors:
        parameters = StdioServerParameters(command=CONSOLE_SCRIPT, env=windows_like_env)
        async with Client(stdio_client(parameters, errlog=errors)) as client:
            saved = await client.call_tool("save_turn", {"session_id": "w", "role": "user", "content": "hej"})
            assert not saved.is_error, saved.content
            read = await client.call_tool("get_session", {"session_id": "w"})
    assert isinstance(read.content[0], TextContent)
    assert "hej" in read.content[0].text
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "simulating Windows" in stderr, "the simulation did not run"
    assert "Traceback" not in stderr
    mode = os.stat(windows_like_env["SQLITE_PATH"]).st_mode
    assert mode & 0o777 == 0o600  # os.chmod did what os.fchmod did


def test_the_http_server_serves_without_resource_and_says_the_cap_is_fixed(
    windows_like_env: dict[str, str], tmp_path: Path
) -> None:
    settings = {name: windows_like_env[name] for name in ("PYTHONPATH", "SQLITE_PATH")}
    with logged_http_server(settings, tmp_path / "server.log") as server:
        assert post_list_tools(server.base_url, None).status_code == 200
    log = server.log()
    assert "simulating Windows" in log, "the simulation did not run"
    assert "no descriptor limit to read" in log
    assert "Traceback" not in log
