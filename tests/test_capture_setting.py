"""CAPTURE: with hooks saving the conversation, the model is told to read it, not to save it."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.types import TextContent
from pydantic import ValidationError

from memory import open_store
from server.app import build_server, instructions
from server.prompts import memory_guide
from server.settings import Capture, Settings, describe_validation_error
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio

WEEK = 7 * 24 * 3600


def test_the_default_is_that_the_model_saves() -> None:
    assert Settings(_env_file=None).capture == "model"


def test_an_unknown_capture_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE", "both")
    with pytest.raises(ValueError, match="capture"):
        Settings(_env_file=None)


def test_with_hooks_the_instructions_forbid_saving_and_say_how_to_read() -> None:
    text = instructions("hooks")
    assert "do not save them with save_turn or save_turns" in text
    assert "Save every new message" not in text
    assert "get_session" in text
    assert "list_sessions" in text


def test_by_default_the_instructions_ask_the_model_to_save_every_message() -> None:
    assert "Save every new message with save_turn" in instructions("model")


def test_with_hooks_the_memory_guide_forbids_saving() -> None:
    guide = memory_guide(WEEK, capture="hooks")
    assert "Do not call save_turn or save_turns" in guide
    assert "Save every message" not in guide
    assert "call list_sessions" in guide
    assert "get_session" in guide
    assert "7 days after its last save" in guide


def test_with_hooks_and_a_session_id_the_guide_says_to_read_it_first() -> None:
    guide = memory_guide(WEEK, "chat-9", capture="hooks")
    assert "This conversation's session id is 'chat-9': call get_session with it" in guide
    assert "pass it as session_id to every save_turn" not in guide


@pytest.mark.parametrize("capture", ["model", "hooks"])
async def test_the_server_sends_the_instructions_and_guide_of_its_capture_setting(
    capture: Capture, make_settings: SettingsFactory
) -> None:
    config = make_settings("sqlite")
    settings = Settings(**config.model_dump(), capture=capture)
    async with open_store(config) as store, Client(build_server(store, settings)) as client:
        assert client.instructions == instructions(capture)
        (message,) = (await client.get_prompt("remember_conversation", {})).messages
        assert isinstance(message.content, TextContent)
        assert message.content.text == memory_guide(WEEK, capture=capture)


def test_an_invalid_hook_session_id_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SESSION_ID", "my secret id")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    described = describe_validation_error(caught.value)
    assert described.startswith("HOOK_SESSION_ID: the session id has a whitespace or unprintable character")
    assert "secret" not in described
