"""Sessions on a Redis-protocol server: GET or GETRANGE to read, one Lua script to append, one
to delete.

One store for Redis (redis-py over TCP) and Upstash (`upstash-redis` over HTTP); what differs
between the two clients is an `Adapter` (see `memory.adapters`): how to send a command, read a
value's tail, and what the client's exceptions mean.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Protocol, TypeVar

import anyio

from memory.base_store import BaseStore
from memory.config import StoreConfig
from memory.errors import (
    CorruptSessionError,
    InvalidSessionIdError,
    SessionMemoryError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
    delete_outdated,
    deleted_during_save,
    id_taken,
    not_a_session,
    not_serving_every_slot,
    session_full,
    too_slow,
    unexpected_reply,
)
from memory.index import (
    ListPosition,
    index_keys,
    key_space,
    session_title,
    split_session_key,
    title_from_head,
)
from memory.models import BatchSaveResult, ChatTurn, SessionSummary, TurnOutcome
from memory.rules import (
    DELETION_MARKER_SECONDS,
    PlannedSave,
    check_session_id,
    decode_session,
    decode_tail,
    deletion_marker_key,
    encode_session,
    expiry_ms,
    now_ms,
    shares_hash_slot,
)

logger = logging.getLogger(__name__)

Argument = str | int
T = TypeVar("T")

# A first guess at a stored turn's size, in bytes, until this store has seen some.
_INITIAL_TURN_BYTES = 512
# A tail window holds this much more than the turns asked for, so that one read suffices,
# and at least this many bytes: cheap, and it absorbs turns far larger than the average.
_WINDOW_MARGIN = 1.25
_MIN_WINDOW = 4096

# Completions look for the typed start among this many of the newest sessions.
_COMPLETION_SCAN = 1000
_PRUNE_INTERVAL_MS = 10 * 60 * 1000
# A reindex reads this much of a session's start for its title.
_TITLE_HEAD_BYTES = 4096

# Upstash runs a script under its global lock unless the script's first line says it
# touches only the keys it is given; Redis and Valkey refuse the flag.
KEY_LOCKING_SHEBANG = "#!lua flags=allow-key-locking\n"


@dataclasses.dataclass(frozen=True)
class LuaScript:
    source: str
    sha1: str


@functools.cache
def lua_script(name: str, key_locking: bool) -> LuaScript:
    """A script of this package (`append_turns.lua`, `delete_session.lua`), with Upstash's
    key-locking flag when `key_locking`."""
    source = resources.files("memory").joinpath(name).read_text(encoding="utf-8")
    if key_locking:
        source = KEY_LOCKING_SHEBANG + source
    return LuaScript(source, hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest())


def append_script(key_locking: bool) -> LuaScript:
    """The append script, `append_turns.lua`."""
    return lua_script("append_turns.lua", key_locking)


class Adapter(Protocol):
    """One client library of a Redis-protocol server, as the store uses it."""

    backend: str  # `redis` or `upstash`
    location: str  # the URL without credentials
    what: str  # the store as errors name it: "Redis at redis://host:6379/0"
    variable: str  # the setting that points at it
    key_locking: bool  # whether the append script carries Upstash's key-locking flag
    cluster: bool  # a Redis Cluster: the session index lies in another hash slot than a session

    async def command(self, *args: Argument) -> object:
        """Send one command; raise the client's own exceptions."""
        ...

    async def tail(self, key: str, size: int) -> tuple[str, bool]:
        """About the last `size` bytes of the value, from a character boundary, and whether
        that is the whole value ('' and True for a missing key)."""
        ...

    def translate(self, exc: Exception) -> SessionMemoryError | None:
        """The memory error a client exception means, or None to let it through."""
        ...

    def is_noscript(self, exc: Exception) -> bool: ...

    async def scan(self, cursor: str, pattern: str, count: int) -> tuple[str, list[str]]:
        """One page of the keys matching `pattern`: the next cursor ("0" at the end) and the keys."""
        ...

    async def together(self, key: str, commands: Sequence[Sequence[Argument]]) -> list[object]:
        """Send `commands` in one round trip on one connection (to the node that serves `key`):
        each reply, or the exception it raised."""
        ...

    async def diagnose(self) -> SessionMemoryError | None:
        """Why the startup check failed, when the adapter can tell better than the error did:
        a TLS URL aimed at a port that speaks plain text, a cluster missing a shard. Or None."""
        ...

    async def aclose(self) -> None: ...


class RedisStore(BaseStore):
    """A session store on a Redis-protocol server, through one client's adapter."""

    def __init__(self, config: StoreConfig, adapter: Adapter) -> None:
        super().__init__(config)
        self.adapter = adapter
        self.backend = adapter.backend
        self._turn_bytes = float(_INITIAL_TURN_BYTES)
        # The most a turn this server accepts can take as stored: JSON.stringify writes a
        # character in at most 6 bytes (a \u00XX escape), plus the keys, role and timestamp.
        self._largest_turn_bytes = 6 * config.max_content_chars + 64
        self._secret: bytes | None = None
        self._next_prune: dict[str, int] = {}
        self.cluster = adapter.cluster

    @property
    def location(self) -> str:
        return self.adapter.location

    async def aclose(self) -> None:
        await self.adapter.aclose()

    async def check(self, timeout_seconds: float | None = None) -> None:
        """One PING, so the settings are proven before the first tool call needs them."""
        try:
            async with self._within_timeout(timeout_seconds):
                await self._call(lambda: self.adapter.command("PING"))
                if self.cluster:
                    await self._check_cluster_state()
        except StoreAuthError:
            raise
        except (StoreUnavailableError, StoreSettingsError):
            # A plain server mostly does not answer a TLS handshake at all: it waits for a line
            # of text, so the handshake times out (or fails, if the handshake held a newline).
            # Asking the port in plain text tells that apart from an outage or a certificate.
            misconfigured = await self.adapter.diagnose()
            if misconfigured is not None:
                raise misconfigured from None
            raise
        except StoreError as exc:
            # A store refuses PING only when the URL leads elsewhere (on Upstash, a URL with a
            # path answers "unknown endpoint"): a setting to fix, not an outage.
            raise StoreSettingsError(
                f"{self.adapter.what} refused PING: check {self.adapter.variable} (the store's URL; "
                f"for Upstash, the database's REST URL with no path); it answered: {exc.__cause__ or exc}"
            ) from exc

    async def _check_cluster_state(self) -> None:
        # One node answering PING says little of a cluster: it may serve none of the slots.
        info = await self._call(lambda: self.adapter.command("CLUSTER", "INFO"))
        state = cluster_state(info)
        if state != "ok":
            raise not_serving_every_slot(self.adapter.what, state)

    async def _read(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]:
        async with self._within_timeout():
            if last is not None:
                tail = await self._read_tail(key, session_id, last)
                if tail is not None:
                    return tail
            value = await self._call(lambda: self.adapter.command("GET", key))
        if value is None:
            return []
        if not isinstance(value, (str, bytes)):
            raise unexpected_reply("GET", value)
        turns = decode_session(value, session_id)
        return turns if last is None else turns[-last:]

    async def _append(self, key: str, session_id: str, save: PlannedSave) -> BatchSaveResult:
        self._learn_turn_bytes(sum(len(turn.text.encode()) for turn in save.turns), len(save.turns))
        keys = [key, self._marker_key(key, session_id), *self._index_keys(key, session_id)]
        arguments = self._arguments(session_id, save, deep=save.caller_ids)
        attempts = 0

        # A retry may follow an attempt that ran: the script then finds that attempt's turns by
        # their ids (as far back as they are), and stores nothing again.
        async def send() -> object:
            nonlocal attempts, arguments
            attempts += 1
            if attempts == 2 and not save.caller_ids:
                arguments = self._arguments(session_id, save, deep=True)
            return await self._eval(append_script(self.adapter.key_locking), keys, arguments, write=True)

        async with self._within_timeout():
            reply = await self._call(send)
        saved = self._saved(reply, session_id, save, retried=attempts > 1)
        if self._separate_index:
            title = (save.title or "") if saved.new_session else ""
            await self._index_apart(key, session_id, save.started_at, "GT", title, "set")
        return saved

    async def _delete(self, key: str, session_id: str) -> bool:
        script = lua_script("delete_session.lua", self.adapter.key_locking)
        keys = [key, self._marker_key(key, session_id), *self._index_keys(key, session_id)]
        started = now_ms()
        arguments = [str(started), str(DELETION_MARKER_SECONDS), session_id]
        async with self._within_timeout():
            if self._separate_index and await self._indexed_after(key, session_id, started):
                raise delete_outdated(session_id)
            deleted = await self._call(lambda: self._eval(script, keys, arguments, write=True))
            if deleted == -1:
                raise delete_outdated(session_id)
            if self._separate_index:
                await self._unindex_apart(key, session_id, started)
        return bool(deleted)

    async def _put(
        self, key: str, session_id: str, turns: Sequence[ChatTurn], expires_at: int, updated_at: int
    ) -> bool:
        script = lua_script("put_session.lua", self.adapter.key_locking)
        keys = [key, *self._index_keys(key, session_id)]
        title = session_title([(turn.role, turn.content) for turn in turns]) or ""
        time_to_live = max(1, expires_at - now_ms())
        arguments = [encode_session(list(turns)), str(time_to_live), session_id, str(updated_at), title]
        async with self._within_timeout():
            written = await self._call(lambda: self._eval(script, keys, arguments, write=True))
        if written == 1 and self._separate_index:
            await self._index_apart(key, session_id, updated_at, "GT", title, "set")
        return written == 1

    def _index_keys(self, key: str, session_id: str) -> tuple[str, ...]:
        """The index keys a session's own script updates: none on a cluster (see `_index_apart`)."""
        if not self.config.session_index or self.cluster:
            return ()
        return index_keys(key_space(key, session_id))

    @property
    def _separate_index(self) -> bool:
        """Whether the index is updated by a command of its own, after the session's script."""
        return self.cluster and self.config.session_index

    def _marker_key(self, key: str, session_id: str) -> str:
        marker = deletion_marker_key(key)
        if self.cluster and not shares_hash_slot(key, marker):
            raise InvalidSessionIdError(
                f"session id {session_id!r} cannot be stored on a Redis Cluster: an id with a '}}' "
                "needs a '{' before it (a hash tag), so that the session and its deletion marker "
                "share a hash slot"
            )
        return marker

    async def _index_apart(
        self, key: str, session_id: str, score: int, mode: str, title: str, title_mode: str
    ) -> None:
        """The index's own command on a cluster. The session is stored by then: if the index
        cannot be updated, the save stands (reads find it) and the list misses it until its
        next save or a reindex; that is logged, not raised."""
        script = lua_script("index_session.lua", self.adapter.key_locking)
        keys = list(index_keys(key_space(key, session_id), cluster=True))
        arguments = [session_id, str(score), mode, title, title_mode]
        try:
            async with self._within_timeout():
                await self._call(lambda: self._eval(script, keys, arguments))
        except StoreError as exc:
            logger.warning("a session was saved but not listed (run reindex to list it): %s", exc)

    async def _indexed_after(self, key: str, session_id: str, started: int) -> bool:
        """Whether a save that began after `started` has indexed the session (a cluster's delete
        asks before it deletes; elsewhere its script does)."""
        index, _ = index_keys(key_space(key, session_id), cluster=True)
        score = await self._call(lambda: self.adapter.command("ZSCORE", index, session_id))
        return score is not None and float(_text(score)) > started

    async def _unindex_apart(self, key: str, session_id: str, started: int) -> None:
        script = lua_script("unindex_session.lua", self.adapter.key_locking)
        keys = list(index_keys(key_space(key, session_id), cluster=True))
        try:
            await self._call(lambda: self._eval(script, keys, [str(started), session_id]))
        except StoreError as exc:
            # The session is gone; its entry goes when it would have expired (lists skip it then).
            logger.warning("a deleted session is still listed until it would have expired: %s", exc)

    async def _list(
        self, space: str, live_after: int, after: ListPosition | None, limit: int
    ) -> tuple[list[SessionSummary], bool]:
        await self._prune_if_due(space, live_after)
        script = lua_script("list_sessions.lua", self.adapter.key_locking)
        position = ["", ""] if after is None else [str(after.updated_at), after.session_id]
        arguments = [str(live_after), str(limit), *position]
        async with self._within_timeout():
            reply = await self._call(lambda: self._eval(script, list(self._space_index(space)), arguments))
        if not isinstance(reply, list) or not reply or (len(reply) - 1) % 3:
            raise StoreError("the store answered the list script with an unexpected reply")
        more, *rows = reply
        sessions = [
            self.summary(
                _text(rows[i]),
                int(float(_text(rows[i + 1]))),
                None if not rows[i + 2] else _text(rows[i + 2]),
            )
            for i in range(0, len(rows), 3)
        ]
        return sessions, more == 1

    async def _ids_starting_with(self, space: str, live_after: int, typed: str, limit: int) -> list[str]:
        index, _ = self._space_index(space)
        async with self._within_timeout():
            newest = await self._call(
                lambda: self.adapter.command(
                    "ZREVRANGEBYSCORE", index, "+inf", f"({live_after}", "LIMIT", 0, _COMPLETION_SCAN
                )
            )
        if not isinstance(newest, list):
            raise unexpected_reply("ZREVRANGEBYSCORE", newest)
        return [id for id in map(_text, newest) if id.startswith(typed)][:limit]

    async def _cursor_secret(self) -> bytes:
        if self._secret is None:
            key = f"{self.config.key_prefix}cursor-secret"
            async with self._within_timeout():
                await self._call(lambda: self.adapter.command("SET", key, secrets.token_hex(32), "NX"))
                value = await self._call(lambda: self.adapter.command("GET", key))
            if not isinstance(value, (str, bytes)):
                raise unexpected_reply("GET", value)
            self._secret = _text(value).encode()
        return self._secret

    async def reindex(self, page_size: int = 200) -> tuple[int, int, list[str]]:
        """Put sessions the index does not know (written by the TypeScript layer, or before the
        index existed) into it: SCAN the key prefix page by page, safe while servers run.

        Returns how many keys were indexed, how many were looked at, and the keys that looked
        like sessions but could not be indexed, each with why. Keys that are not sessions
        (markers, the index itself, other data) and ids the tools refuse are left alone.
        """
        prefix = self.config.key_prefix
        pattern = _glob_escape(prefix) + "*"
        cursor, indexed, seen, skipped = "0", 0, 0, []
        while True:
            scan = functools.partial(self.adapter.scan, cursor, pattern, page_size)
            async with self._within_timeout():
                cursor, keys = await self._call(scan)
            for key in keys:
                seen += 1
                parsed = split_session_key(key, prefix)
                if parsed is None or not _valid_session_id(parsed[1]):
                    continue
                try:
                    indexed += await self._reindex_one(key, *parsed)
                except (CorruptSessionError, StoreSettingsError) as exc:
                    # Another type at a session key, say: this key is left, the others go on.
                    skipped.append(f"{key}: {exc}")
            if cursor == "0":
                return indexed, seen, skipped

    async def _reindex_one(self, key: str, space: str, session_id: str) -> int:
        head_of = functools.partial(self.adapter.command, "GETRANGE", key, 0, _TITLE_HEAD_BYTES - 1)
        async with self._within_timeout():
            head = _text(await self._call(head_of))
        if not head.lstrip("\ufeff \t\n\r").startswith("["):
            return 0  # not a session (a deletion marker, another program's value)
        script = lua_script("reindex_session.lua", self.adapter.key_locking)
        keys = [key] if self.cluster else [key, *index_keys(space)]
        ttl_ms = str(self.config.session_ttl_seconds * 1000)
        title = title_from_head(head) or ""
        arguments = [session_id, ttl_ms, title]
        async with self._within_timeout():
            done = await self._call(functools.partial(self._eval, script, keys, arguments))
        if self.cluster and isinstance(done, list) and len(done) == 2:
            # The session's age, read in its own slot; the index is in another.
            score, mode = int(done[0]), _text(done[1])
            await self._index_apart(key, session_id, score, mode, title, "nx")
            return 1
        return int(done == 1)

    async def _prune_if_due(self, space: str, live_after: int) -> None:
        # Expired sessions are never listed (the list reads only live scores); this only gives
        # the index's space back, so it runs at most once in a while per key space.
        now = now_ms()
        if self._next_prune.get(space, 0) > now:
            return
        self._next_prune[space] = now + _PRUNE_INTERVAL_MS
        script = lua_script("prune_index.lua", self.adapter.key_locking)
        async with self._within_timeout():
            await self._call(
                lambda: self._eval(script, list(self._space_index(space)), [str(live_after), "1000"])
            )

    def _space_index(self, space: str) -> tuple[str, str]:
        return index_keys(space, cluster=self.cluster)

    def _arguments(self, session_id: str, save: PlannedSave, deep: bool) -> list[str]:
        """ARGV for the append script, in the order it reads them."""
        config = self.config
        arguments = [
            str(config.session_ttl_seconds),
            str(config.max_session_bytes),
            str(save.started_at),
            session_id,
            save.title or "",
            "1" if deep else "0",
            "drop" if config.when_full == "drop-oldest" else "refuse",
        ]
        for turn in save.turns:
            arguments += [turn.prefix, str(turn.timestamp), turn.mode, turn.id]
        return arguments

    async def _eval_durably(self, script: LuaScript, keys: list[str], arguments: list[str]) -> object:
        """The script, then WAIT for REDIS_REPLICA_ACKS replicas, in one round trip on one
        connection: a failover after the reply cannot lose what the replicas acknowledged."""
        wanted = self.config.redis_replica_acks
        wait = ("WAIT", wanted, self._wait_ms)
        replies = await self.adapter.together(
            keys[0], [("EVALSHA", script.sha1, len(keys), *keys, *arguments), wait]
        )
        if isinstance(replies[0], Exception) and self.adapter.is_noscript(replies[0]):
            replies = await self.adapter.together(
                keys[0], [("EVAL", script.source, len(keys), *keys, *arguments), wait]
            )
        reply, acknowledged = replies
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if not isinstance(acknowledged, int) or acknowledged < wanted:
            raise StoreUnavailableError(
                f"{self.adapter.what} stored the change, but only {acknowledged} of the {wanted} replicas "
                f"REDIS_REPLICA_ACKS asks for acknowledged it within {self._wait_ms} ms: a failover now "
                "could lose it; try again later"
            )
        return reply

    @property
    def _wait_ms(self) -> int:
        # A third of each attempt's share of the deadline: an attempt may wait twice (when the
        # node had to be sent the script's source, the first WAIT ran too), with room left for
        # the script and the network. Replicas that keep up acknowledge in milliseconds.
        config = self.config
        return max(1, int(config.store_timeout_seconds * 1000 / (3 * (config.store_retries + 1))))

    def _saved(self, reply: object, session_id: str, save: PlannedSave, retried: bool) -> BatchSaveResult:
        """The script's reply, whichever client decoded it, as the save's result.

        The reply is `[outcome, created, timestamp_1, state_1, …]`, state 1 stored, 0 the turn
        was there, 2 likewise and it is the session's first turn.
        """
        if isinstance(reply, list) and len(reply) >= 2:
            outcome, created, *rest = reply
            dropped, pairs = (rest[0], rest[1:]) if rest else (None, [])
            if isinstance(outcome, bytes):
                outcome = outcome.decode("ascii", "replace")
            if outcome == "not_a_session":
                raise not_a_session(session_id)
            if outcome == "session_full":
                raise session_full(session_id, self.config.max_session_bytes)
            if outcome == "deleted":
                raise deleted_during_save(session_id)
            if outcome == "id_taken" and isinstance(created, int) and 0 <= created < len(save.turns):
                raise id_taken(save.turns[created].id, session_id)
            if (
                outcome == "saved"
                and isinstance(created, int)
                and isinstance(dropped, int)
                and len(pairs) == 2 * len(save.turns)
                and all(isinstance(item, int) for item in pairs)
            ):
                stamps, states = pairs[0::2], pairs[1::2]
                return BatchSaveResult(
                    session_id=session_id,
                    id=save.id,
                    # After a retry, an equal turn is the earlier attempt's own write.
                    new_session=created == 1 or (retried and states[0] == 2),
                    turns=[
                        TurnOutcome(timestamp=stamp, stored=state == 1 or retried)
                        for stamp, state in zip(stamps, states, strict=True)
                    ],
                    expires_at=expiry_ms(self.config),
                    dropped=dropped,
                )
        raise StoreError("the store answered the append script with an unexpected reply")

    async def _eval(
        self, script: LuaScript, keys: list[str], arguments: list[str], write: bool = False
    ) -> object:
        """Run a script by its digest, sending its source when the store has not cached it; a
        `write` waits for the replicas REDIS_REPLICA_ACKS asks for."""
        if write and self.config.redis_replica_acks:
            return await self._eval_durably(script, keys, arguments)
        try:
            return await self.adapter.command("EVALSHA", script.sha1, len(keys), *keys, *arguments)
        except Exception as exc:
            if not self.adapter.is_noscript(exc):
                raise
        # The script cache is empty (a restart, SCRIPT FLUSH): send the source once.
        logger.debug("script not cached by the store; sending it with EVAL")
        return await self.adapter.command("EVAL", script.source, len(keys), *keys, *arguments)

    async def _read_tail(self, key: str, session_id: str, last: int) -> list[ChatTurn] | None:
        """The newest `last` turns from a window at the value's end: one GETRANGE, at most two.

        The first window is sized from the turns this store has seen. When it holds fewer than
        `last` turns, the second is sized so that the missing ones fit even at the largest size
        a turn this server accepts can take. None when a window cannot be read on its own (or a
        foreign turn is larger still): the caller then reads the value whole, which reports a
        corrupt one with its position.
        """
        size = max(_MIN_WINDOW, int(last * self._turn_bytes * _WINDOW_MARGIN) + 64)
        for attempt in range(2):
            window, whole = await self._call(functools.partial(self.adapter.tail, key, size))
            if whole and not window:
                return []  # no such key, as GET would say
            turns = decode_session(window, session_id) if whole else decode_tail(window, session_id)
            if turns and attempt == 0:
                self._learn_turn_bytes(len(window.encode("utf-8")), len(turns))
            if turns is not None and (whole or len(turns) >= last):
                return turns[-last:]
            # Too few turns, or none that starts in the window (it lies inside one large turn).
            size += (last - len(turns or ()) + 1) * self._largest_turn_bytes
        return None

    def _learn_turn_bytes(self, total_bytes: int, count: int) -> None:
        # A moving average: recent sessions matter more than old ones.
        self._turn_bytes = 0.8 * self._turn_bytes + 0.2 * (total_bytes / count)

    @asynccontextmanager
    async def _within_timeout(self, seconds: float | None = None) -> AsyncIterator[None]:
        """One deadline for a whole operation: retries and the NOSCRIPT fallback included."""
        seconds = self.config.store_timeout_seconds if seconds is None else seconds
        try:
            # asyncio's own timeout, not anyio.fail_after: the server runs on asyncio, and this
            # is on every call's path, where anyio's scope cost 26 µs against asyncio's 10 µs
            # (a tenth of a 20-turn read).
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError as exc:
            raise too_slow(self.backend, seconds) from exc

    async def _call(self, send: Callable[[], Awaitable[T]]) -> T:
        """Send; a failure that means the store is unavailable is sent again (up to STORE_RETRIES
        times): it may not have reached the store, and the script finds a write that did."""
        attempt = 0
        while True:
            try:
                return await send()
            except Exception as exc:
                error = exc if isinstance(exc, SessionMemoryError) else self.adapter.translate(exc)
                if error is None:
                    raise
                if not isinstance(error, StoreUnavailableError) or attempt >= self.config.store_retries:
                    if error is exc:
                        raise
                    raise error from exc
                logger.debug("retrying after %s", type(exc).__name__)
            attempt += 1
            await anyio.sleep(0.05 * 2**attempt)


def _text(value: object) -> str:
    """A reply item as text, whichever client decoded it."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def cluster_state(info: object) -> str:
    """`cluster_state` from a CLUSTER INFO reply, as text or as redis-py's dict of it; '' if absent."""
    if isinstance(info, dict):
        value = info.get("cluster_state", "")
        return (value.decode() if isinstance(value, bytes) else str(value)).strip()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return fields.get("cluster_state", "").strip()


def _valid_session_id(session_id: str) -> bool:
    try:
        check_session_id(session_id)
    except InvalidSessionIdError:
        return False
    return True


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
