"""The session index every backend keeps beside the sessions of a key space: when each was last
saved and its title. What it is made of, and the cursors that page through it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from memory.errors import InvalidRequestError, invalid_cursor

# A title is the first user message of a session's first save, on one line, cut to this many
# characters: enough to recognise a conversation in a list, short enough for a menu.
TITLE_CHARS = 80
MOST_PER_PAGE = 100
_SPACES = re.compile(r"\s+")
# Control and format characters (NUL, a right-to-left override, zero-width ones) and lone
# surrogates (a broken emoji as JSON.stringify writes it): a title is shown in menus.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ud800-\udfff]")


def session_title(turns: Sequence[tuple[str, str]]) -> str | None:
    """The title of a session whose first save holds `turns` ((role, content) pairs): its first
    user message, or its first message when none is the user's; None when all are blank."""
    contents = [content for role, content in turns if role == "user"] or [content for _, content in turns]
    for content in contents:
        line = _SPACES.sub(" ", _UNSHOWABLE.sub(" ", content)).strip()
        if line:
            if len(line) <= TITLE_CHARS:
                return line
            cut = line[: TITLE_CHARS - 1]
            # At a word's end when one is near, so that the title does not stop mid-word.
            word_end = cut.rfind(" ")
            return (cut[:word_end] if word_end > TITLE_CHARS // 2 else cut).rstrip() + "…"
    return None


def index_keys(space: str, cluster: bool = False) -> tuple[str, str]:
    """The index of the key space `space` (prefix and namespace): a sorted set of session ids
    scored by their last save (ms), and a hash of their titles.

    On a Redis Cluster the two share a hash tag, so that one script may read both; whatever
    braces `space` holds, both names are equal up to the tag's end, so they share its slot.
    """
    if cluster:
        return f"{space}{{session-index}}", f"{space}{{session-index}}:titles"
    return f"{space}session-index", f"{space}session-titles"


def key_space(key: str, session_id: str) -> str:
    """The key space (prefix and namespace) of a session key."""
    return key[: len(key) - len("session:") - len(session_id)]


def split_session_key(key: str, key_prefix: str) -> tuple[str, str] | None:
    """The key space and session id of a key this server would write under `key_prefix`:
    `{prefix}session:{id}`, or `{prefix}client:{name}:session:{id}` in a client's namespace
    (names are percent-encoded, so they hold no ':'). None for any other key."""
    if not key.startswith(key_prefix):
        return None
    rest = key[len(key_prefix) :]
    namespace = ""
    if rest.startswith("client:"):
        end = rest.find(":", len("client:"))
        if end < 0:
            return None
        namespace, rest = rest[: end + 1], rest[end + 1 :]
    if not rest.startswith("session:") or rest == "session:":
        return None
    return key_prefix + namespace, rest[len("session:") :]


def title_from_head(head: str) -> str | None:
    """The title of a session whose stored value begins with `head` (a value's first bytes, maybe
    cut inside a turn): from the complete turns it holds."""
    decoder = json.JSONDecoder()
    at = head.find("[") + 1
    turns: list[tuple[str, str]] = []
    while 0 < at < len(head):
        while at < len(head) and head[at] in " \t\n\r,":
            at += 1
        try:
            item, at = decoder.raw_decode(head, at)
        except ValueError:
            break  # the end of the head, or not a turn: the title comes from what was read
        if isinstance(item, dict) and isinstance(item.get("content"), str):
            turns.append((str(item.get("role")), item["content"]))
    return session_title(turns)


def check_page_size(limit: int) -> int:
    if isinstance(limit, bool) or not 1 <= limit <= MOST_PER_PAGE:
        raise InvalidRequestError(f"limit must be from 1 to {MOST_PER_PAGE} (got {limit})")
    return limit


@dataclass(frozen=True)
class ListPosition:
    """Where a page ended: its last session. The next page starts after it, in the order of the
    list (most recent save first, then session id, descending)."""

    updated_at: int
    session_id: str


def encode_cursor(secret: bytes, space: str, position: ListPosition) -> str:
    """An opaque cursor: the position, signed for this key space (another client's cursor, or an
    altered one, is refused rather than read)."""
    payload = f"{position.updated_at}:{position.session_id}".encode()
    return f"{_b64(payload)}.{_b64(_signature(secret, space, payload))}"


def decode_cursor(secret: bytes, space: str, cursor: str) -> ListPosition:
    """The position a cursor holds, or InvalidRequestError when this key space did not sign it."""
    try:
        encoded_payload, encoded_signature = cursor.split(".")
        payload, signature = _unb64(encoded_payload), _unb64(encoded_signature)
        if not hmac.compare_digest(signature, _signature(secret, space, payload)):
            raise ValueError("not signed for this key space")
        stamp, session_id = payload.decode().split(":", 1)
        return ListPosition(int(stamp), session_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor() from None


def _signature(secret: bytes, space: str, payload: bytes) -> bytes:
    return hmac.new(secret, space.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or len(text) > 1024:
        raise ValueError("not a cursor")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
