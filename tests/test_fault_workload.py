"""The campaign's clients retry as the README says, on the timestamp protocol and on the id one."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from bench.faults.workload import CampaignClient, Outcome, Workload, speaks_new_protocol

pytestmark = pytest.mark.anyio


class Turn(BaseModel):
    role: str
    content: str
    timestamp: int | None = None


def flaky_server(with_ids: bool) -> tuple[MCPServer, list[tuple[str, dict[str, Any]]]]:
    """save_turn and save_turns that fail every first attempt as an outage after the write would."""
    server = MCPServer("flaky")
    seen: list[tuple[str, dict[str, Any]]] = []

    def answer(tool: str, arguments: dict[str, Any], count: int) -> dict[str, Any]:
        first = not seen or seen[-1][0] != "retry"
        seen.append((tool, copy.deepcopy(arguments)))
        if first:
            seen.append(("retry", {}))
            stamps = ", ".join(str(1796000000000 + n) for n in range(count))
            firsts = sum(1 for tool, _ in seen if tool == "retry") - 1
            own = arguments.get("id") or f"srv.{firsts}"
            which = f'id "{own}"' if with_ids else f"timestamps (in order) {stamps}"
            raise ToolError(
                f"Store unavailable: too slow (the save may have reached the store: retry with {which})"
            )
        seen.append(("done", {}))
        stamps_given = [1796000000000 + n for n in range(count)]
        return {"session_id": arguments["session_id"], "timestamps": stamps_given}

    if with_ids:

        async def save_turn(
            role: str, content: str, session_id: str, timestamp: int | None = None, id: str | None = None
        ) -> dict[str, Any]:
            args = {
                "role": role,
                "content": content,
                "session_id": session_id,
                "timestamp": timestamp,
                "id": id,
            }
            return answer("save_turn", args, 1)

        async def save_turns(turns: list[Turn], session_id: str, id: str | None = None) -> dict[str, Any]:
            args = {"turns": [t.model_dump() for t in turns], "session_id": session_id, "id": id}
            return answer("save_turns", args, len(turns))

    else:

        async def save_turn(  # type: ignore[misc]
            role: str, content: str, session_id: str, timestamp: int | None = None
        ) -> dict[str, Any]:
            args = {"role": role, "content": content, "session_id": session_id, "timestamp": timestamp}
            return answer("save_turn", args, 1)

        async def save_turns(turns: list[Turn], session_id: str) -> dict[str, Any]:  # type: ignore[misc]
            args = {"turns": [t.model_dump() for t in turns], "session_id": session_id}
            return answer("save_turns", args, len(turns))

    server.add_tool(save_turn)
    server.add_tool(save_turns)
    return server, seen


def attempts(seen: list[tuple[str, dict[str, Any]]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(first attempt, retry) pairs."""
    calls = [arguments for tool, arguments in seen if tool.startswith("save")]
    return list(zip(calls[0::2], calls[1::2], strict=True))


def timestamps(arguments: dict[str, Any]) -> list[int | None]:
    return [turn["timestamp"] for turn in arguments.get("turns", [arguments])]


async def campaign_calls(server: MCPServer) -> tuple[bool, Outcome]:
    outcome = Outcome()
    campaign = CampaignClient(0, "unused", Workload(clients=1, seed=3), outcome)
    async with Client(server) as client:
        new_protocol = await speaks_new_protocol(client)
        for _ in range(12):
            await campaign.save(client, new_protocol)
    return new_protocol, outcome


async def test_on_the_id_protocol_a_retry_carries_the_errors_id_and_only_the_first_attempts_timestamps() -> (
    None
):
    server, seen = flaky_server(with_ids=True)
    new_protocol, outcome = await campaign_calls(server)
    assert new_protocol
    pairs = attempts(seen)
    assert len(pairs) == 12
    for index, (first, retry) in enumerate(pairs):
        assert retry["id"] == (first["id"] or f"srv.{index}")
        assert timestamps(retry) == timestamps(first), "no timestamp added, none changed"
        assert {k: v for k, v in retry.items() if k != "id"} == {k: v for k, v in first.items() if k != "id"}
    assert any(first["id"] is not None for first, _ in pairs), "some calls choose their own id"
    assert all(call.acked and call.attempts == 2 for call in outcome.calls)


async def test_on_the_timestamp_protocol_a_retry_carries_the_timestamps_the_error_names() -> None:
    server, seen = flaky_server(with_ids=False)
    new_protocol, outcome = await campaign_calls(server)
    assert not new_protocol
    for first, retry in attempts(seen):
        named = [1796000000000 + n for n in range(len(timestamps(first)))]
        assert timestamps(retry) == named
        assert "id" not in first
        assert "id" not in retry
    assert all(call.acked for call in outcome.calls)
