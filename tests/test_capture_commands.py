"""`session-memory-mcp hook` and `save`: what they store, what a repeat stores, how they fail."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from localservers.gateway import Fault, UpstashGateway
from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env
from localservers.redis_server import free_port
from memory import ChatTurn, StoreConfig, open_store
from server.capture_commands import (
    HOOK_PROG,
    HookError,
    claude_settings,
    hook_main,
    prompt_turn,
    reply_turn,
    run_hook,
    turn_id,
)
from server.settings import Settings
from tests.conftest import GATEWAY_TOKEN, SettingsFactory
from tests.test_transcript import FIRST_REPLY, FIXTURE, SECOND_PROMPT_UUID, fixture_lines, lines_before

EVENTS = Path(__file__).parent / "fixtures" / "claude_code_hook_events.jsonl"
SESSION_ID = "3f6c1a52-8d0e-4b7a-9c21-5e8f0d4a7b19"
FIRST_PROMPT = "Why does fetch_forecast() return stale data after midnight?"
SECOND_PROMPT = "Do it, and add a test for the midnight case."
SECOND_REPLY = (
    "Done: the cache now keys on the city and the date, and tests/test_cache.py checks that a "
    "forecast fetched at 23:59 is not served at 00:01."
)
FIRST_PROMPT_UUID = "9a0d3e64-2f1b-4c55-8e07-6b2d1f93c8a1"
FIRST_REPLY_START = "c41b7f20-5a6e-4f3d-b1c8-0e92d7a5f364"
# Where the first reply ends: the line before the hook summary written after it.
FIRST_REPLY_END = "4e5f6a7b-8c9d-4e0f-8a1b-2c3d4e5f6a7b"


def recorded_events(transcript: Path) -> list[dict[str, Any]]:
    """The recorded events (prompt, Stop, prompt, Stop), pointed at `transcript`."""
    events = [json.loads(line) for line in EVENTS.read_text().splitlines()]
    return [event | {"transcript_path": str(transcript)} for event in events]


def write_transcript(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def hook_args(**overrides: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"env_file": None, "session_id": None, "print_settings": False} | overrides)


def loader(config: StoreConfig, **settings: Any) -> Callable[[Sequence[Path]], Settings]:
    return lambda files: Settings(**config.model_dump() | settings)


def stored(config: StoreConfig, session_id: str = SESSION_ID) -> list[ChatTurn]:
    async def read() -> list[ChatTurn]:
        async with open_store(config) as store:
            return await store.get_session(session_id)

    return anyio.run(read)


def hook(event: dict[str, Any], config: StoreConfig, **settings: Any) -> bool | None:
    """Run the hook in process; whether it stored a turn (None: it had nothing to store)."""
    result = run_hook(json.dumps(event).encode(), hook_args(), loader(config, **settings))
    return None if result is None else result.stored


# -- what the hook stores -----------------------------------------------------------------------


def test_prompts_and_replies_are_stored_in_order_and_a_repeated_stop_stores_nothing(
    backend: str, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    config = make_settings(backend)
    transcript = tmp_path / "transcript.jsonl"
    first_prompt, stop, second_prompt, _ = recorded_events(transcript)

    write_transcript(transcript, lines_before(FIRST_PROMPT_UUID))
    assert hook(first_prompt, config) is True
    write_transcript(transcript, lines_before(FIRST_REPLY_END))
    assert hook(stop, config) is True
    assert hook(stop, config) is False
    write_transcript(transcript, lines_before(SECOND_PROMPT_UUID))
    assert hook(second_prompt, config) is True
    write_transcript(transcript, fixture_lines())
    assert hook(stop, config) is True
    assert hook(stop | {"stop_hook_active": True}, config) is False

    turns = stored(config)
    assert [(turn.role, turn.content) for turn in turns] == [
        ("user", FIRST_PROMPT),
        ("assistant", FIRST_REPLY),
        ("user", SECOND_PROMPT),
        ("assistant", SECOND_REPLY),
    ]
    assert turns[1].timestamp == 1795166061761  # the reply's last entry: 2026-11-20T09:14:21.761Z
    assert turns[3].timestamp == 1795166169930


def test_a_repeated_prompt_event_is_stored_once(make_settings: SettingsFactory, tmp_path: Path) -> None:
    config = make_settings("sqlite")
    event = recorded_events(write_transcript(tmp_path / "t.jsonl", []))[0]
    assert hook(event, config) is True
    assert hook(event, config) is False
    assert len(stored(config)) == 1


def test_the_same_words_prompted_again_later_are_stored_again(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    config = make_settings("sqlite")
    transcript = tmp_path / "t.jsonl"
    event = recorded_events(transcript)[0] | {"prompt": "yes"}
    write_transcript(transcript, lines_before(FIRST_REPLY_END))
    assert hook(event, config) is True
    write_transcript(transcript, fixture_lines())
    assert hook(event, config) is True
    assert [turn.content for turn in stored(config)] == ["yes", "yes"]


def test_other_events_are_ignored(make_settings: SettingsFactory, tmp_path: Path) -> None:
    config = make_settings("sqlite")
    for name in ("SessionStart", "PreToolUse", "SubagentStop", None):
        assert hook({"hook_event_name": name, "session_id": SESSION_ID}, config) is None
    assert stored(config) == []


def test_a_session_id_given_on_the_command_line_or_in_the_settings_wins(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    config = make_settings("sqlite")
    event = recorded_events(tmp_path / "absent.jsonl")[0]
    run_hook(json.dumps(event).encode(), hook_args(session_id="from-flag"), loader(config))
    run_hook(json.dumps(event).encode(), hook_args(), loader(config, hook_session_id="from-setting"))
    assert [turn.content for turn in stored(config, "from-flag")] == [FIRST_PROMPT]
    assert [turn.content for turn in stored(config, "from-setting")] == [FIRST_PROMPT]
    assert stored(config) == []


def test_a_stop_before_any_reply_stores_nothing(make_settings: SettingsFactory, tmp_path: Path) -> None:
    config = make_settings("sqlite")
    transcript = write_transcript(tmp_path / "t.jsonl", lines_before(FIRST_REPLY_START))
    assert hook(recorded_events(transcript)[1], config) is None
    assert stored(config) == []


# -- a Stop that comes before the transcript holds the reply's end --------------------------------


def test_the_final_message_the_event_carries_completes_a_transcript_not_yet_written(tmp_path: Path) -> None:
    # The transcript stops before the reply's last entry; the event carries that message.
    lines = lines_before("9d0e1f2a-3b4c-4d5e-9f6a-7b8c9d0e1f2a")
    transcript = write_transcript(tmp_path / "t.jsonl", lines)
    final = FIRST_REPLY.split("\n\n", 1)[1]
    event = recorded_events(transcript)[1] | {"last_assistant_message": final}
    turn = reply_turn(event, flush_wait=0)
    assert turn is not None
    assert turn.content == FIRST_REPLY
    assert turn.timestamp is None  # the store's clock: the transcript has no time for it yet
    # Once the transcript holds it, the same reply gets the same id: a repeat stores nothing.
    write_transcript(transcript, lines_before(FIRST_REPLY_END))
    again = reply_turn(event, flush_wait=0)
    assert again is not None
    assert again.content == FIRST_REPLY
    assert again.id == turn.id


def test_a_final_message_already_in_the_transcript_is_not_added_twice(tmp_path: Path) -> None:
    transcript = write_transcript(tmp_path / "t.jsonl", fixture_lines())
    event = recorded_events(transcript)[3] | {"last_assistant_message": SECOND_REPLY}
    turn = reply_turn(event, flush_wait=0)
    assert turn is not None
    assert turn.content == SECOND_REPLY
    assert turn.timestamp == 1795166169930


def test_a_reply_found_only_in_the_event_is_stored(tmp_path: Path) -> None:
    transcript = write_transcript(tmp_path / "t.jsonl", lines_before(FIRST_REPLY_START))
    event = recorded_events(transcript)[1] | {"last_assistant_message": "Short answer."}
    turn = reply_turn(event, flush_wait=0)
    assert turn is not None
    assert turn.content == "Short answer."
    assert turn.id == turn_id("r", FIRST_PROMPT_UUID, "Short answer.")


# -- the hook's own failures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "stdin is not a JSON hook event"),
        (b"[1, 2]", "stdin is not a JSON hook event (not an object)"),
        (b'{"hook_event_name": "UserPromptSubmit", "prompt": "hi"}', "the event has no session_id"),
        (
            b'{"hook_event_name": "UserPromptSubmit", "session_id": "s"}',
            "the UserPromptSubmit event has no prompt",
        ),
        (b'{"hook_event_name": "Stop", "session_id": "s"}', "the Stop event has no transcript_path"),
        (
            b'{"hook_event_name": "Stop", "session_id": "s", "transcript_path": "/nowhere/t.jsonl"}',
            "no transcript at /nowhere/t.jsonl",
        ),
        (
            b'{"hook_event_name": "UserPromptSubmit", "session_id": "a b", "prompt": "hi"}',
            "the session id has a whitespace",
        ),
        (
            b'{"hook_event_name": "Stop", "session_id": "s", "transcript_path": "/dev/zero"}',
            "the transcript /dev/zero is not a file",
        ),
    ],
)
def test_a_bad_event_is_named_in_one_message(
    data: bytes, message: str, make_settings: SettingsFactory
) -> None:
    with pytest.raises(HookError) as caught:
        run_hook(data, hook_args(), loader(make_settings("sqlite")))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_settings_block_runs_the_hook_on_prompts_and_replies() -> None:
    block = claude_settings(hook_args())
    handler = {"type": "command", "command": "session-memory-mcp hook", "timeout": 10}
    assert block == {"hooks": {"UserPromptSubmit": [{"hooks": [handler]}], "Stop": [{"hooks": [handler]}]}}


def test_the_settings_block_carries_the_flags_it_was_given() -> None:
    block = claude_settings(hook_args(env_file=Path("/home/ada/my memory.env"), session_id="ada"))
    command = block["hooks"]["Stop"][0]["hooks"][0]["command"]
    assert command == "session-memory-mcp hook --env-file '/home/ada/my memory.env' --session-id ada"


def test_a_prompt_of_white_space_only_is_not_stored() -> None:
    assert prompt_turn({"hook_event_name": "UserPromptSubmit", "prompt": "  \n"}) is None


# -- the console script -------------------------------------------------------------------------------


def run_script(*args: str, stdin: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSOLE_SCRIPT, *args],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )


def test_the_console_script_stores_a_recorded_conversation_once(tmp_path: Path) -> None:
    database = tmp_path / "sessions.sqlite3"
    env = child_env(SQLITE_PATH=str(database))
    transcript = tmp_path / f"{SESSION_ID}.jsonl"
    prompt, stop, _, _ = recorded_events(transcript)
    write_transcript(transcript, lines_before(FIRST_PROMPT_UUID))
    runs = [run_script("hook", stdin=json.dumps(prompt), env=env, cwd=tmp_path)]
    write_transcript(transcript, lines_before(FIRST_REPLY_END))
    runs += [run_script("hook", stdin=json.dumps(stop), env=env, cwd=tmp_path) for _ in range(2)]
    for run in runs:
        assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    turns = stored(StoreConfig(sqlite_path=database))
    assert [(turn.role, turn.content) for turn in turns] == [
        ("user", FIRST_PROMPT),
        ("assistant", FIRST_REPLY),
    ]


def test_the_console_script_reads_the_settings_of_the_directory_the_host_runs_it_in(tmp_path: Path) -> None:
    # Claude Code runs hooks in the project's directory, where it also starts the server.
    database = tmp_path / "from-dotenv.sqlite3"
    (tmp_path / ".env").write_text(f"SQLITE_PATH={database}\nHOOK_SESSION_ID=from-dotenv\n")
    event = recorded_events(tmp_path / "absent.jsonl")[0]
    run = run_script("hook", stdin=json.dumps(event), env=child_env(), cwd=tmp_path)
    assert (run.returncode, run.stderr) == (0, "")
    assert [turn.content for turn in stored(StoreConfig(sqlite_path=database), "from-dotenv")] == [
        FIRST_PROMPT
    ]


def test_the_console_script_exits_0_with_one_line_when_redis_is_unreachable(tmp_path: Path) -> None:
    env = child_env(REDIS_URL=f"redis://:hunter2@127.0.0.1:{free_port()}/0", HOOK_TIMEOUT_SECONDS="1")
    event = recorded_events(tmp_path / "t.jsonl")[0]
    run = run_script("hook", stdin=json.dumps(event), env=env, cwd=tmp_path)
    assert run.returncode == 0
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith(f"{HOOK_PROG}: Redis at redis://127.0.0.1:")
    assert "hunter2" not in run.stderr


def test_the_console_script_exits_0_with_one_line_when_upstash_stalls(
    gateway: UpstashGateway, tmp_path: Path
) -> None:
    gateway.inject(Fault.STALL, seconds=60, count=10)  # longer than any budget the hook has
    env = child_env(
        UPSTASH_REDIS_REST_URL=gateway.url, UPSTASH_REDIS_REST_TOKEN=GATEWAY_TOKEN, HOOK_TIMEOUT_SECONDS="1"
    )
    transcript = write_transcript(tmp_path / "t.jsonl", fixture_lines())
    run = run_script("hook", stdin=json.dumps(recorded_events(transcript)[3]), env=env, cwd=tmp_path)
    gateway.restore()
    assert run.returncode == 0
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    # Whichever deadline ends it, the store's own or the hook's around opening it too, says so.
    assert run.stderr.startswith(f"{HOOK_PROG}: the upstash store did not answer within 1 s")
    assert GATEWAY_TOKEN not in run.stderr


def test_the_console_script_exits_0_with_one_line_on_invalid_settings(tmp_path: Path) -> None:
    env = child_env(SESSION_TTL_SECONDS="0", HOOK_TIMEOUT_SECONDS="soon")
    run = run_script("hook", stdin=json.dumps(recorded_events(FIXTURE)[0]), env=env, cwd=tmp_path)
    assert run.returncode == 0
    assert run.stderr.splitlines() == [
        f"{HOOK_PROG}: invalid settings; SESSION_TTL_SECONDS: Input should be greater than or equal to 1; "
        "HOOK_TIMEOUT_SECONDS: Input should be a valid number, unable to parse string as a number"
    ]


# -- save ---------------------------------------------------------------------------------------------


def test_save_stores_stdin_and_prints_the_result(tmp_path: Path) -> None:
    database = tmp_path / "sessions.sqlite3"
    env = child_env(SQLITE_PATH=str(database))
    args = (
        "save",
        "--session-id",
        "chat-1",
        "--role",
        "assistant",
        "--timestamp",
        "1732540000000",
        "--id",
        "m-1",
    )
    first = run_script(*args, stdin="Paris.\n", env=env, cwd=tmp_path)
    again = run_script(*args, stdin="Paris.\n", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["session_id"] == "chat-1"
    assert result["id"] == "m-1"
    assert (result["new_session"], result["stored"], result["timestamp"]) == (True, True, 1732540000000)
    assert json.loads(again.stdout)["stored"] is False
    turns = stored(StoreConfig(sqlite_path=database), "chat-1")
    assert [(turn.role, turn.content, turn.timestamp) for turn in turns] == [
        ("assistant", "Paris.", 1732540000000)
    ]


def test_save_fails_with_one_line_and_status_1_when_the_store_is_unreachable(tmp_path: Path) -> None:
    env = child_env(REDIS_URL=f"redis://:hunter2@127.0.0.1:{free_port()}/0", STORE_TIMEOUT_SECONDS="1")
    run = run_script("save", "--session-id", "s", "--role", "user", stdin="hi", env=env, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith("session-memory-mcp save: Redis at redis://127.0.0.1:")
    assert "retry the same call with id" in run.stderr
    assert "hunter2" not in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--role", "user"), "the following arguments are required: --session-id"),
        (("--session-id", "s", "--role", "bot"), "argument --role: invalid choice: 'bot'"),
        (("--session-id", "a b", "--role", "user"), "argument --session-id: the session id has a whitespace"),
        (
            ("--session-id", "s", "--role", "user", "--timestamp", "-5"),
            "argument --timestamp: must be a whole",
        ),
        (("--session-id", "s", "--role", "user", "--id", "a#1"), "argument --id: an id is 1 to 64"),
    ],
)
def test_save_refuses_bad_flags_naming_the_flag(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    run = run_script(
        "save", *args, stdin="hi", env=child_env(SQLITE_PATH=str(tmp_path / "s.db")), cwd=tmp_path
    )
    assert run.returncode == 2
    assert message in run.stderr.splitlines()[-1]


def test_save_names_every_invalid_setting_on_one_line(tmp_path: Path) -> None:
    env = child_env(SESSION_TTL_SECONDS="0", CAPTURE="both")
    run = run_script("save", "--session-id", "s", "--role", "user", stdin="hi", env=env, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "session-memory-mcp save: invalid settings; SESSION_TTL_SECONDS: Input should be greater than or "
        "equal to 1; CAPTURE: Input should be 'model' or 'hooks'"
    ]


def test_hook_help_is_help(capsys: pytest.CaptureFixture[str]) -> None:
    hook_main(["--help"], lambda files: Settings())
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: session-memory-mcp hook")
    assert captured.err == ""


def test_hook_refuses_an_unknown_flag_on_one_line_without_failing(capsys: pytest.CaptureFixture[str]) -> None:
    hook_main(["--bogus"], lambda files: Settings())
    assert (
        capsys.readouterr().err == f"{HOOK_PROG}: unrecognized arguments: --bogus (see {HOOK_PROG} --help)\n"
    )


def test_the_hooks_page_shows_the_block_print_settings_prints() -> None:
    page = (Path(__file__).parent.parent / "docs" / "hooks.md").read_text()
    assert f"```json\n{json.dumps(claude_settings(hook_args()), indent=2)}\n```" in page


def test_the_hook_starts_without_importing_the_mcp_server() -> None:
    # A hook runs on every prompt and reply: mcp and uvicorn would add about half a second to each.
    probe = (
        "import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO(b'{}')); "
        "from server.entry import main; main(['hook']); "
        "print(sorted(m for m in ('mcp', 'uvicorn', 'starlette') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_broken_emoji_in_a_prompt_is_kept_as_a_replacement_character(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings("sqlite")
    data = b'{"hook_event_name": "UserPromptSubmit", "session_id": "s", "prompt": "broken \\ud83d emoji"}'
    result = run_hook(data, hook_args(), loader(settings))
    assert result is not None
    assert result.stored

    async def read() -> list[str]:
        async with open_store(settings) as store:
            return [turn.content for turn in await store.get_session("s")]

    assert anyio.run(read) == ["broken \ufffd emoji"]
