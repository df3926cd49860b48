"""Every published tool through two agent SDKs' schema converters, run as their MCP integrations run them.

Each SDK connects to the real console script over stdio, lists the tools, and converts them the
way it does before a model sees them: openai-agents into strict function tools, google-genai into
Gemini function declarations. A tool the converter drops, degrades or crashes on cannot be used.
No model is called: the conversions happen before any request leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agents import Agent, FunctionTool, RunContextWrapper
from agents.mcp import MCPServerStdio
from google.genai import types
from google.genai._extra_utils import parse_config_for_mcp_sessions
from mcp import Client, StdioServerParameters

from localservers.processes import CONSOLE_SCRIPT, child_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    return child_env(SQLITE_PATH=str(tmp_path / "sessions.sqlite3"))


def agents_server(env: dict[str, str]) -> MCPServerStdio:
    return MCPServerStdio(params={"command": CONSOLE_SCRIPT, "env": env}, name="session-memory")


async def strict_agent_tools(server: MCPServerStdio) -> list[FunctionTool]:
    """The tools an agent with strict schemas gets from `server`, as its runner fetches them."""
    agent: Agent[None] = Agent(
        name="assistant", mcp_servers=[server], mcp_config={"convert_schemas_to_strict": True}
    )
    tools = await agent.get_mcp_tools(RunContextWrapper(context=None))
    assert all(isinstance(tool, FunctionTool) for tool in tools)
    return [tool for tool in tools if isinstance(tool, FunctionTool)]


async def test_openai_agents_converts_every_published_tool_to_a_strict_function_tool(
    server_env: dict[str, str],
) -> None:
    # The SDK falls back to a non-strict schema silently (an info log line) when conversion fails.
    async with agents_server(server_env) as server:
        published = [tool.name for tool in await server.list_tools()]
        tools = await strict_agent_tools(server)
    assert published
    assert {tool.name: tool.strict_json_schema for tool in tools} == dict.fromkeys(published, True)


async def test_a_strict_mode_call_with_every_optional_value_null_is_accepted(
    server_env: dict[str, str],
) -> None:
    # Strict mode makes every property required, so a model sends null for what it would omit.
    async with agents_server(server_env) as server:
        tools = {tool.name: tool for tool in await strict_agent_tools(server)}
        assert tools["save_turns"].params_json_schema["properties"]["turns"]["items"]["required"] == [
            "role",
            "content",
            "timestamp",
        ]
        arguments = {"session_id": None, "turns": [{"role": "user", "content": "hi", "timestamp": None}]}
        result = await server.call_tool("save_turns", arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["new_session"] is True


def declared_parameters(config: types.GenerateContentConfig | None) -> dict[str, types.Schema | None]:
    """Each Gemini function declaration's name and parameters, from one tool per declaration."""
    assert config is not None
    assert config.tools is not None
    declared: dict[str, types.Schema | None] = {}
    for tool in config.tools:
        assert isinstance(tool, types.Tool)
        for declaration in tool.function_declarations or []:
            assert declaration.name is not None
            declared[declaration.name] = declaration.parameters
    return declared


async def test_google_genai_declares_a_function_for_every_published_tool(server_env: dict[str, str]) -> None:
    async with Client(StdioServerParameters(command=CONSOLE_SCRIPT, env=server_env)) as client:
        published = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        # What generate_content does with an MCP session among its tools, before any request.
        config, adapters = await parse_config_for_mcp_sessions(
            types.GenerateContentConfig(tools=[client.session])
        )
    assert published
    declared = declared_parameters(config)
    assert set(declared) == set(published) == set(adapters)
    for name, parameters in declared.items():
        assert parameters is not None, name
        assert set(parameters.properties or {}) == set(published[name]["properties"]), name


async def test_google_genai_keeps_the_shape_of_a_turn_in_save_turns(server_env: dict[str, str]) -> None:
    # Its converter drops the camelCase length and count limits (maxLength, maxItems) of every
    # schema; the server enforces them whatever a host declares.
    async with Client(StdioServerParameters(command=CONSOLE_SCRIPT, env=server_env)) as client:
        config, _ = await parse_config_for_mcp_sessions(types.GenerateContentConfig(tools=[client.session]))
    parameters = declared_parameters(config)["save_turns"]
    assert parameters is not None
    assert parameters.properties is not None
    turns = parameters.properties["turns"]
    assert turns.type == types.Type.ARRAY
    assert turns.items is not None
    assert turns.items.properties is not None
    turn: dict[str, types.Schema] = turns.items.properties
    assert set(turn) == {"role", "content", "timestamp"}
    assert turn["role"].enum == ["user", "assistant"]
    assert turns.items.required == ["role", "content"]
