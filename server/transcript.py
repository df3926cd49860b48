"""Claude Code's transcript (a JSONL file, one entry a line): the reply that ends it.

An entry is `{type, uuid, parentUuid, timestamp, sessionId, isSidechain, message: {role,
content}, ...}`. The model's reply to one prompt spans several `assistant` entries (one per
content part: text, thinking, tool_use) with `user` entries between them whose content is
`tool_result` parts: those are the tools' answers, not the user speaking. Entries of a subagent
(`isSidechain: true`), meta entries (`isMeta: true`) and bookkeeping entries of other types
(`summary`, `system`, `file-history-snapshot`, ...) are not part of the conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from memory import MAX_SAFE_INTEGER


@dataclass(frozen=True)
class Reply:
    """The assistant's text parts after the last prompt, and where the reply sits in the transcript."""

    parts: tuple[str, ...]
    # The last assistant entry's own time (ms since the epoch), if it carries a readable one.
    timestamp: int | None
    # The uuid of the prompt the reply answers, else of the reply's first entry: what stays
    # the same while more of the reply is written.
    anchor: str | None

    @property
    def text(self) -> str:
        return "\n\n".join(self.parts)

    def ends_with(self, text: str) -> bool:
        """True when the reply's text ends with `text` (both stripped of outer white space)."""
        return bool(self.parts) and self.text.rstrip().endswith(text.strip())

    def completed_with(self, final: str) -> Reply:
        """The reply with `final` added as its last part, at no known time: the host gave the
        reply's final message, which the transcript does not hold yet."""
        return Reply(parts=(*self.parts, final), timestamp=None, anchor=self.anchor)


class TranscriptError(Exception):
    """The transcript cannot be read."""


# What a transcript is read up to: Claude Code's are JSONL files of a few MB; a path to something
# that never ends (a device, a pipe) must not hold the hook past its budget.
MOST_TRANSCRIPT_BYTES = 512 * 1024 * 1024


def read_lines(path: Path) -> list[str]:
    """The transcript's lines; raises TranscriptError when it cannot be read, or is not a file."""
    try:
        if path.exists() and not path.is_file():
            raise TranscriptError(f"the transcript {path} is not a file")
        with path.open("rb") as file:
            data = file.read(MOST_TRANSCRIPT_BYTES + 1)
        if len(data) > MOST_TRANSCRIPT_BYTES:
            raise TranscriptError(f"the transcript {path} is larger than {MOST_TRANSCRIPT_BYTES} bytes")
        return data.decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise TranscriptError(f"no transcript at {path}") from None
    except OSError as exc:
        raise TranscriptError(f"cannot read the transcript {path}: {exc.strerror or exc}") from None


def entries_backwards(lines: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The conversation's entries, newest first; unreadable lines (a line being written) are skipped."""
    for line in reversed(lines):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and not entry.get("isSidechain") and not entry.get("isMeta"):
            yield entry


def last_reply(lines: Sequence[str]) -> Reply:
    """The text parts of every assistant entry after the last prompt, oldest first (none when
    the transcript has no reply yet)."""
    texts: list[str] = []
    timestamp: int | None = None
    anchor: str | None = None
    seen_assistant = False
    for entry in entries_backwards(lines):
        kind = entry.get("type")
        if kind == "user" and is_prompt(entry):
            anchor = _text_or_none(entry.get("uuid")) or anchor
            break
        if kind != "assistant":
            continue
        if not seen_assistant:
            timestamp = parse_timestamp(entry.get("timestamp"))
            seen_assistant = True
        anchor = _text_or_none(entry.get("uuid")) or anchor
        texts.extend(reversed(assistant_texts(entry)))
    return Reply(parts=tuple(reversed(texts)), timestamp=timestamp, anchor=anchor)


def last_entry_uuid(lines: Sequence[str]) -> str | None:
    """The uuid of the newest entry that has one: where the transcript stands."""
    for entry in entries_backwards(lines):
        if uuid := _text_or_none(entry.get("uuid")):
            return uuid
    return None


def is_prompt(entry: dict[str, Any]) -> bool:
    """A `user` entry the user wrote: text, not only the results of tool calls."""
    content = _message(entry).get("content")
    if isinstance(content, str):
        return True
    if isinstance(content, list):
        return any(isinstance(part, dict) and part.get("type") != "tool_result" for part in content)
    return False


def assistant_texts(entry: dict[str, Any]) -> list[str]:
    """The non-blank text parts of an assistant entry, in order (thinking and tool calls left out)."""
    content = _message(entry).get("content")
    if isinstance(content, str):
        return [content] if content.strip() else []
    if not isinstance(content, list):
        return []
    return [
        part["text"]
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
        and part["text"].strip()
    ]


def parse_timestamp(value: object) -> int | None:
    """An ISO 8601 time with its zone (`2026-12-04T21:59:28.123Z`) in ms since the epoch, else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:  # a time without a zone names no moment
        return None
    ms = round(moment.timestamp() * 1000)
    return ms if 0 <= ms <= MAX_SAFE_INTEGER else None


def _message(entry: dict[str, Any]) -> dict[str, Any]:
    message = entry.get("message")
    return message if isinstance(message, dict) else {}


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
