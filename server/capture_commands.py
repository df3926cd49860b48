"""Saving without the model: `session-memory-mcp hook` (Claude Code's hooks) and `save` (any script).

`hook` reads one Claude Code hook event on stdin: `UserPromptSubmit` saves the prompt as a user
turn, `Stop` saves the reply (the assistant's text since the last prompt, read from the
transcript). It must never disturb its host: whatever goes wrong, it exits 0 with one line on
stderr, and its whole run is held to HOOK_TIMEOUT_SECONDS. Each save has an id derived from what
it saves, so an event handled twice stores its turn once.

`save` saves one turn given on stdin; a script wants to know when that failed, so it exits 1
with one line on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio
from pydantic import ValidationError

from memory import (
    ID_PATTERN,
    ID_RULE,
    MAX_SAFE_INTEGER,
    NewTurn,
    SaveResult,
    SessionMemoryError,
    check_session_id,
    open_store,
)
from server.envfiles import env_files
from server.results import SavedTurn
from server.settings import Settings
from server.transcript import Reply, TranscriptError, last_entry_uuid, last_reply, read_lines

HOOK_PROG = "session-memory-mcp hook"
SAVE_PROG = "session-memory-mcp save"
HOOK_EVENTS = ("UserPromptSubmit", "Stop")
# What Claude Code may wait for the whole command, in seconds: the interpreter's start (about a
# second, more on a loaded machine) and the hook's own budget. Past it, Claude Code stops it.
HOST_TIMEOUT_SECONDS = 10
# A Stop can come before the reply's last entry is in the transcript; the event then carries
# that message as `last_assistant_message`. The transcript is read again, this often, for up to
# half the hook's budget, before the message is taken from the event instead.
FLUSH_POLL_SECONDS = 0.1

LoadSettings = Callable[[Sequence[Path]], Settings]


class HookError(Exception):
    """Why an event could not be stored: its one line on stderr."""


class _HookParser(argparse.ArgumentParser):
    # argparse would exit 2, which Claude Code takes as "block this prompt", and print the usage too.
    def error(self, message: str) -> NoReturn:
        raise HookError(f"{message} (see {HOOK_PROG} --help)")


# -- hook ---------------------------------------------------------------------------------------


def hook_main(argv: Sequence[str], load_settings: LoadSettings) -> None:
    """Store one Claude Code hook event read on stdin; exit 0 whatever happens."""
    # Libraries would otherwise speak on stderr too: the hook's output is its one line.
    logging.disable(logging.CRITICAL)
    try:
        args = _hook_parser().parse_args(argv)
        if args.print_settings:
            print(json.dumps(claude_settings(args), indent=2))
            return
        run_hook(sys.stdin.buffer.read(), args, load_settings)
    except HookError as exc:
        print(f"{HOOK_PROG}: {exc}", file=sys.stderr)
    except SystemExit as exc:  # load_settings refuses bad settings this way, on several lines
        if exc.code in (0, None):  # --help
            return
        print(one_line(exc, HOOK_PROG), file=sys.stderr)
    except Exception as exc:  # the host must never see a failing hook
        # Only the kind: the message of an exception nobody translated could hold a store URL.
        print(f"{HOOK_PROG}: unexpected error ({type(exc).__name__}); nothing was saved", file=sys.stderr)


def _hook_parser() -> argparse.ArgumentParser:
    parser = _HookParser(
        prog=HOOK_PROG,
        description="Store one Claude Code hook event read on stdin: UserPromptSubmit saves the prompt, "
        "Stop saves the reply from the transcript; other events are ignored. Always exits 0, with one "
        "line on stderr when nothing could be saved.",
    )
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file")
    parser.add_argument(
        "--session-id", metavar="ID", help="save to this session, not Claude Code's (or HOOK_SESSION_ID)"
    )
    parser.add_argument(
        "--print-settings",
        action="store_true",
        help="print the hooks block of ~/.claude/settings.json that runs this command, and exit",
    )
    return parser


def claude_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `hooks` block of Claude Code's settings.json that runs this command with `args`."""
    command = ["session-memory-mcp", "hook"]
    if args.env_file is not None:
        command += ["--env-file", str(args.env_file)]
    if args.session_id is not None:
        command += ["--session-id", args.session_id]
    handler = {"type": "command", "command": shlex.join(command), "timeout": HOST_TIMEOUT_SECONDS}
    return {"hooks": {event: [{"hooks": [handler]}] for event in HOOK_EVENTS}}


def run_hook(data: bytes, args: argparse.Namespace, load_settings: LoadSettings) -> SaveResult | None:
    """Store the event in `data`; None when there is nothing to store. Raises HookError."""
    started = time.monotonic()
    event = parse_event(data)
    name = event.get("hook_event_name")
    if name not in HOOK_EVENTS:
        return None
    settings = load_settings(env_files(args.env_file, Path.cwd()))
    budget = settings.hook_timeout_seconds
    session_id = _session_id(args.session_id or settings.hook_session_id or event.get("session_id"))
    turn = prompt_turn(event) if name == "UserPromptSubmit" else reply_turn(event, flush_wait=budget / 2)
    if turn is None:
        return None
    # To a tenth of a second, so that an error reads "within 2 s", not "within 1.9874 s".
    remaining = max(round(budget - (time.monotonic() - started), 1), budget / 10)
    return anyio.run(_save, settings, session_id, turn, remaining)


def parse_event(data: bytes) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise HookError(f"stdin is not a JSON hook event ({exc})") from None
    if not isinstance(event, dict):
        raise HookError("stdin is not a JSON hook event (not an object)")
    return event


def prompt_turn(event: dict[str, Any]) -> NewTurn | None:
    """The user's prompt as a turn; its id names the prompt and where the transcript stood."""
    prompt = event.get("prompt")
    if not isinstance(prompt, str):
        raise HookError("the UserPromptSubmit event has no prompt")
    if not prompt.strip():
        return None
    # The same words typed again later are another message: what precedes them tells them apart.
    position = event.get("prompt_id") or _transcript_position(event)
    return _new_turn(role="user", content=prompt, id=turn_id("p", str(position or ""), prompt))


def reply_turn(event: dict[str, Any], flush_wait: float) -> NewTurn | None:
    """The reply since the last prompt as a turn, at its last entry's time; None when there is none."""
    path = _transcript_path(event)
    final = event.get("last_assistant_message")
    final = final if isinstance(final, str) and final.strip() else None
    deadline = time.monotonic() + flush_wait
    reply = _read_reply(path)
    while final is not None and not reply.ends_with(final) and time.monotonic() < deadline:
        time.sleep(FLUSH_POLL_SECONDS)
        reply = _read_reply(path)
    if final is not None and not reply.ends_with(final):
        reply = reply.completed_with(final)
    if not reply.parts:
        return None
    return _new_turn(
        role="assistant",
        content=reply.text,
        timestamp=reply.timestamp,
        id=turn_id("r", reply.anchor or "", reply.text),
    )


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _new_turn(**fields: Any) -> NewTurn:
    # A broken emoji (a lone surrogate, as JSON.stringify writes it) reads as U+FFFD, as stored
    # turns do: the rest of the message is worth keeping.
    fields["content"] = _LONE_SURROGATE.sub("\ufffd", fields["content"])
    try:
        return NewTurn(**fields)
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]["msg"].removeprefix("Value error, ")
        raise HookError(f"the {fields['role']} turn cannot be stored: {problem}") from None


def turn_id(kind: str, anchor: str, content: str) -> str:
    """`cc-{kind}-` and 40 hex digits of a hash of the anchor and the content: the same event
    gives the same id, so a repeat is stored once."""
    digest = hashlib.sha256(f"{anchor}\0{content}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"cc-{kind}-{digest[:40]}"


async def _save(settings: Settings, session_id: str, turn: NewTurn, seconds: float) -> SaveResult:
    # The hook's budget is the store's deadline too; retries (STORE_RETRIES) fit inside it.
    config = settings.store_config().model_copy(update={"store_timeout_seconds": seconds})
    try:
        # Opening and closing the store are held to the same budget: the store's own deadline
        # covers each call only.
        with anyio.fail_after(seconds):
            async with open_store(config) as store:
                return await store.save_turn(session_id, turn)
    except TimeoutError:
        raise HookError(f"the {settings.backend} store did not answer within {seconds:g} s") from None
    except SessionMemoryError as exc:
        raise HookError(str(exc)) from None


def _session_id(value: object) -> str:
    if not isinstance(value, str):
        raise HookError("the event has no session_id, and neither --session-id nor HOOK_SESSION_ID is set")
    try:
        return check_session_id(value)
    except SessionMemoryError as exc:
        raise HookError(str(exc)) from None


def _transcript_path(event: dict[str, Any]) -> Path:
    path = event.get("transcript_path")
    if not isinstance(path, str) or not path:
        raise HookError(f"the {event.get('hook_event_name')} event has no transcript_path")
    return Path(path).expanduser()


def _transcript_position(event: dict[str, Any]) -> str | None:
    try:
        return last_entry_uuid(read_lines(_transcript_path(event)))
    except (HookError, TranscriptError):
        return None  # a new conversation's transcript may not exist yet


def _read_reply(path: Path) -> Reply:
    try:
        return last_reply(read_lines(path))
    except TranscriptError as exc:
        raise HookError(f"{exc}; nothing was saved") from None


def one_line(exit: SystemExit, prog: str) -> str:
    """`load_settings`'s refusal (one line per invalid setting) as one line under `prog`."""
    return f"{prog}: " + "; ".join(str(exit.code).removeprefix("session-memory-mcp: ").splitlines())


# -- save ---------------------------------------------------------------------------------------


def save_main(argv: Sequence[str], load_settings: LoadSettings) -> None:
    """Save one turn whose content is stdin; print the result as JSON, or exit 1 with one line."""
    args = _save_parser().parse_args(argv)
    try:
        settings = load_settings(env_files(args.env_file, Path.cwd()))
    except SystemExit as exc:
        raise SystemExit(one_line(exc, SAVE_PROG)) from None
    try:
        content = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SystemExit(f"{SAVE_PROG}: stdin is not UTF-8 text (byte {exc.start})") from None
    # `echo`, heredocs and most editors end the text with a newline the writer did not type.
    content = content.removesuffix("\n").removesuffix("\r")
    try:
        turn = NewTurn(role=args.role, content=content, timestamp=args.timestamp, id=args.id)
        result = anyio.run(_save_one, settings, args.session_id, turn)
    except SessionMemoryError as exc:
        raise SystemExit(f"{SAVE_PROG}: {exc}") from None
    print(SavedTurn.of(result).model_dump_json())


def _save_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=SAVE_PROG,
        description="Save one turn whose content is read from stdin (one final newline dropped), and "
        "print the result as JSON. Exits 1 with one line on stderr when it was not saved; "
        "repeat the same command with the same --id to retry: the turn is stored once.",
    )
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file")
    parser.add_argument("--session-id", required=True, type=_cli_session_id, metavar="ID")
    parser.add_argument("--role", required=True, choices=("user", "assistant"))
    parser.add_argument(
        "--timestamp",
        type=_cli_timestamp,
        metavar="MS",
        help="ms since the epoch (default: the store's clock)",
    )
    parser.add_argument(
        "--id", type=_cli_save_id, metavar="ID", help="the save's id, for retries; " + ID_RULE
    )
    return parser


async def _save_one(settings: Settings, session_id: str, turn: NewTurn) -> SaveResult:
    async with open_store(settings.store_config()) as store:
        return await store.save_turn(session_id, turn)


def _cli_session_id(text: str) -> str:
    try:
        return check_session_id(text)
    except SessionMemoryError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cli_timestamp(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > MAX_SAFE_INTEGER:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of milliseconds since the epoch, 0 to {MAX_SAFE_INTEGER}"
        )
    return int(text)


def _cli_save_id(text: str) -> str:
    if not re.fullmatch(ID_PATTERN, text):
        raise argparse.ArgumentTypeError(ID_RULE)
    return text
