"""Host and Origin checks, no redirect built from Host, no GET event streams, any loopback bind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.http_edges import HostNames, Origins, split_host
from tests.support.logged_server import LoggedServer, logged_http_server
from tests.support.mcp_http import post_list_tools

TOKEN = "edges-test-token-0123456789"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", None)),
        ("LOCALHOST:8000", ("localhost", "8000")),
        ("localhost.:8000", ("localhost", "8000")),
        ("[::1]:8000", ("::1", "8000")),
        ("[::1]", ("::1", None)),
        ("Memory.Example.COM.", ("memory.example.com", None)),
        ("memory.example.com:*", ("memory.example.com", "*")),
        ("", None),
        ("host:port", None),
        ("[::1", None),
    ],
)
def test_host_headers_are_split_and_normalised(header: str, expected: tuple[str, str | None] | None) -> None:
    assert split_host(header) == expected


def test_loopback_names_and_addresses_pass_with_or_without_a_port() -> None:
    hosts = HostNames("127.0.0.1", [])
    for header in ("127.0.0.1", "127.0.0.1:8000", "127.0.0.2:1", "LOCALHOST:8000", "localhost.", "[::1]:80"):
        assert hosts.accepts(header), header
    for refused in ("evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.example.com", None, ""):
        assert not hosts.accepts(refused), refused


def test_configured_names_compare_without_case_trailing_dot_or_port() -> None:
    hosts = HostNames("0.0.0.0", ["Memory.Example.COM.", "api.example.com:8443"])
    assert hosts.accepts("memory.example.com")
    assert hosts.accepts("MEMORY.example.com.:443")
    assert hosts.accepts("api.example.com:8443")
    assert not hosts.accepts("api.example.com:9000")
    assert not hosts.accepts("example.com")


def test_the_bound_name_is_accepted() -> None:
    assert HostNames("10.1.2.3", []).accepts("10.1.2.3:8000")
    assert not HostNames("0.0.0.0", []).accepts("0.0.0.0:8000")


def test_origins_loopback_and_configured_pass_others_do_not() -> None:
    origins = Origins(["https://App.Example.com/", "http://tools.example.com:*"], check_disabled=False)
    assert origins.accepts(None)
    assert origins.accepts("http://localhost:5173")
    assert origins.accepts("http://127.0.0.1")
    assert origins.accepts("https://app.example.com")
    assert origins.accepts("http://tools.example.com:3000")
    assert not origins.accepts("http://tools.example.com.evil.test:3000")
    assert not origins.accepts("https://evil.example.com")
    assert not origins.accepts("null")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    directory = tmp_path_factory.mktemp("edges")
    settings = {
        "SQLITE_PATH": str(directory / "s.sqlite3"),
        "MCP_AUTH_TOKEN": TOKEN,
        "MCP_ALLOWED_HOSTS": "Memory.Example.COM",
    }
    with logged_http_server(settings, directory / "server.log") as running:
        yield running


def port_of(server: LoggedServer) -> str:
    return server.base_url.rsplit(":", 1)[1]


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "LOCALHOST:{port}", "localhost.:{port}", "memory.example.com.", "MEMORY.EXAMPLE.COM:443"],
)
def test_host_header_variants_are_served(server: LoggedServer, host: str) -> None:
    answer = post_list_tools(server.base_url, TOKEN, Host=host.format(port=port_of(server)))
    assert answer.status_code == 200, answer.text


def test_a_foreign_host_gets_421_and_one_log_line(server: LoggedServer) -> None:
    for _ in range(3):
        assert post_list_tools(server.base_url, TOKEN, Host="evil.example.com").status_code == 421
    server.wait_for_log("refused a request with Host 'evil.example.com'")
    assert server.log().count("refused a request with Host") == 1


def test_a_foreign_origin_gets_403(server: LoggedServer) -> None:
    assert post_list_tools(server.base_url, TOKEN, Origin="https://evil.example.com").status_code == 403
    assert post_list_tools(server.base_url, TOKEN, Origin="http://localhost:5173").status_code == 200


@pytest.mark.parametrize("token", [None, TOKEN])
def test_mcp_with_a_slash_is_not_redirected(server: LoggedServer, token: str | None) -> None:
    headers = {"Host": "memory.example.com"} | ({"Authorization": f"Bearer {token}"} if token else {})
    for method in ("GET", "POST"):
        answer = httpx.request(
            method, f"{server.base_url}/mcp/", headers=headers, json={}, follow_redirects=False
        )
        assert answer.status_code == 404, answer.status_code
        assert "location" not in answer.headers


def test_get_on_mcp_is_405_so_no_event_stream_stays_open(server: LoggedServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    answer = httpx.get(f"{server.base_url}/mcp", headers=headers, timeout=5)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"


def test_healthz_answers_any_host(server: LoggedServer) -> None:
    assert httpx.get(f"{server.base_url}/healthz", headers={"Host": "10.0.0.5:8000"}).status_code == 200


def test_a_server_bound_to_another_loopback_address_serves_requests(tmp_path: Path) -> None:
    settings = {"SQLITE_PATH": str(tmp_path / "s.sqlite3")}
    with logged_http_server(settings, tmp_path / "server.log", host="127.0.0.2") as running:
        assert running.base_url.startswith("http://127.0.0.2:")
        answer = post_list_tools(running.base_url, None)
        assert answer.status_code == 200, answer.text
