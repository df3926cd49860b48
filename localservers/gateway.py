"""A local Upstash-REST-compatible gateway in front of a real Redis-protocol server.

It speaks the protocol the official SDKs use (POST `/`, `/pipeline`,
`/multi-exec`; bearer token; `Upstash-Encoding: base64`; JSON results and
errors) so that the real `upstash-redis` client runs against it unchanged, and
it can misbehave on demand (stall, answer 500 with HTML, drop the connection
after executing, execute late) for the fault tests.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import enum
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from localservers.redis_server import free_port
from localservers.resp import Reply, RespConnection, RespError, SimpleString


class Fault(enum.Enum):
    STALL = "stall"  # hold the request `seconds` (or until `restore()`), then close without running it
    HTML_500 = "html_500"  # answer 500 with an HTML page, without running it
    DROP_AFTER_EXECUTE = "drop_after_execute"  # run it, then reset the connection
    EXECUTE_LATE = "execute_late"  # wait `seconds`, run it (even if the client left), answer
    UNAUTHORIZED = "unauthorized"  # answer 401 as for a revoked token, without running it
    JSON_503 = "json_503"  # answer 503 with a JSON error body, as an overloaded service may


@dataclass(frozen=True)
class FaultPlan:
    fault: Fault
    seconds: float = 0.0


@dataclass(frozen=True)
class RequestRecord:
    path: str
    request_bytes: int
    response_bytes: int
    status: int


class _BadRequest(Exception):
    pass


class _Number(str):
    """A JSON number, kept as its literal text."""


@dataclass
class UpstashGateway:
    redis_port: int
    token: str
    port: int = field(default_factory=free_port)
    records: list[RequestRecord] = field(default_factory=list)
    one_shot_faults: collections.deque[FaultPlan] = field(default_factory=collections.deque)
    persistent_fault: FaultPlan | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _pool: list[RespConnection] = field(default_factory=list)
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)
    # Set to end every stall now in progress; replaced by a fresh one each time it is set.
    _stalls_released: asyncio.Event | None = None
    _in_flight: int = 0
    # Upstash's key-locking flag, which Valkey refuses: the SHA1 a client computed over the
    # flagged source, mapped to Valkey's SHA1 of the source without it.
    _flagged_sha1s: dict[bytes, bytes] = field(default_factory=dict)
    key_locking_scripts: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control, from any thread -------------------------------------------------

    def start(self) -> UpstashGateway:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stalls_released = asyncio.Event()
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port, limit=2**26)
            )
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="upstash-gateway", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the gateway did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every connection, as an outage would."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    def restore(self) -> None:
        """Back to a plain, running gateway: no fault pending or in progress, no records.

        Stalls still holding a request end now (as they would have, later); late executions
        are waited for, since what they write is part of what the test left behind.
        """
        self.reset()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release_stalls)
        self.wait_idle()
        self.records.clear()
        if not self.is_running:
            self.start()

    def inject(self, fault: Fault, seconds: float = 0.0, count: int = 1) -> None:
        """Apply `fault` to the next `count` requests."""
        self.one_shot_faults.extend(FaultPlan(fault, seconds) for _ in range(count))

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no request is being handled (late executions included)."""
        deadline = time.monotonic() + timeout
        while self._in_flight or self.one_shot_faults:
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway is still busy")
            time.sleep(0.01)

    def reset(self) -> None:
        self.records.clear()
        self.one_shot_faults.clear()
        self.persistent_fault = None

    # -- serving, on the gateway's own loop ----------------------------------------

    def _release_stalls(self) -> None:
        if self._stalls_released is not None:
            self._stalls_released.set()
        self._stalls_released = asyncio.Event()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        for connection in self._pool:
            await connection.close()
        self._pool.clear()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        request_line = await reader.readline()
        if not request_line:
            return False
        if len(request_line.decode("latin-1").split()) != 3:
            # Not HTTP (a TLS handshake sent to this plain port): close, as a web server does.
            return False
        size = len(request_line)
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            size += len(line)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        size += len(body)
        _method, target, _version = request_line.decode("latin-1").split()

        plan = self.one_shot_faults.popleft() if self.one_shot_faults else self.persistent_fault
        self._in_flight += 1
        try:
            answer = await self._answer(plan, target, headers, body, writer)
        finally:
            self._in_flight -= 1
        if answer is None:
            return False
        status, payload, content_type = answer

        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
            f"Upstash-Sync-Token: {uuid.uuid4().hex}\r\n\r\n"
        ).encode()
        # Recorded before the answer leaves, so a client that has its answer sees the record.
        self.records.append(RequestRecord(target.partition("?")[0], size, len(head) + len(payload), status))
        writer.write(head + payload)
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    async def _answer(
        self,
        plan: FaultPlan | None,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> tuple[int, bytes, str] | None:
        """(status, body, content type), or None when the fault leaves the client without an answer."""
        fault = plan.fault if plan is not None else None
        if fault is Fault.STALL and plan is not None:
            released = self._stalls_released
            assert released is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(released.wait(), plan.seconds)
            writer.transport.abort()
            return None
        if fault is Fault.HTML_500:
            return 500, b"<html><body>Internal Server Error</body></html>", "text/html"
        if fault is Fault.UNAUTHORIZED:
            return 401, b'{"error":"WRONGPASS invalid or missing auth token"}', "application/json"
        if fault is Fault.JSON_503:
            return 503, b'{"error":"ERR service temporarily unavailable"}', "application/json"
        if fault is Fault.EXECUTE_LATE and plan is not None:
            await asyncio.sleep(plan.seconds)
        status, result = await self._handle(target, headers, body)
        if fault is Fault.DROP_AFTER_EXECUTE:
            writer.transport.abort()
            return None
        return status, json.dumps(result, separators=(",", ":")).encode(), "application/json"

    async def _handle(self, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        # Not urlsplit: it would read the SDK's "//pipeline" as a host name.
        path, _, query = target.partition("?")
        given = headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else parse_qs(query).get("_token", [""])[0]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401, {"error": "WRONGPASS invalid or missing auth token"}
        base64_encoding = headers.get("upstash-encoding", "").lower() == "base64"
        route = "/" + path.lstrip("/")  # the Python SDK posts to //pipeline for a URL ending in /
        try:
            parsed = json.loads(body or b"null", parse_int=_Number, parse_float=_Number)
            if route == "/":
                reply = await self._run([_command(parsed)])
                return _single(reply[0], base64_encoding)
            if route in ("/pipeline", "/multi-exec"):
                if not isinstance(parsed, list):
                    raise _BadRequest("ERR the body must be an array of commands")
                commands = [_command(item) for item in parsed]
                if route == "/pipeline":
                    return 200, [_item(reply, base64_encoding) for reply in await self._run(commands)]
                return await self._multi_exec(commands, base64_encoding)
            return 404, {"error": f"ERR unknown endpoint {route}"}
        except (_BadRequest, json.JSONDecodeError) as exc:
            return 400, {"error": str(exc) if isinstance(exc, _BadRequest) else "ERR the body is not JSON"}

    async def _run(self, commands: list[list[bytes]]) -> list[Reply]:
        commands = [self._as_valkey_runs_it(command) for command in commands]
        connection = (
            self._pool.pop() if self._pool else await RespConnection.open("127.0.0.1", self.redis_port)
        )
        try:
            replies = [await connection.call(command) for command in commands]
        except BaseException:
            await connection.close()
            raise
        self._pool.append(connection)
        return replies

    async def _multi_exec(self, commands: list[list[bytes]], base64_encoding: bool) -> tuple[int, Any]:
        replies = await self._run([[b"MULTI"], *commands, [b"EXEC"]])
        executed = replies[-1]
        if isinstance(executed, RespError):
            return 400, {"error": str(executed)}
        assert isinstance(executed, list)
        return 200, [_item(reply, base64_encoding) for reply in executed]

    def _as_valkey_runs_it(self, command: list[bytes]) -> list[bytes]:
        """Strip Upstash's `allow-key-locking` script flag, as Upstash understands it and Valkey does not."""
        name = command[0].upper()
        if name == b"EVAL" or (name == b"SCRIPT" and len(command) > 2 and command[1].upper() == b"LOAD"):
            at = 1 if name == b"EVAL" else 2
            source = command[at]
            stripped = _without_key_locking(source)
            if stripped != source:
                client_sha1, valkey_sha1 = _sha1(source), _sha1(stripped)
                self._flagged_sha1s[client_sha1] = valkey_sha1
                self.key_locking_scripts.add(client_sha1.decode())
                return [*command[:at], stripped, *command[at + 1 :]]
        if name == b"EVALSHA" and len(command) > 1:
            mapped = self._flagged_sha1s.get(command[1].lower())
            if mapped is not None:
                self.key_locking_scripts.add(command[1].decode())
                return [command[0], mapped, *command[2:]]
        return command


def _sha1(source: bytes) -> bytes:
    return hashlib.sha1(source, usedforsecurity=False).hexdigest().encode()


def _without_key_locking(source: bytes) -> bytes:
    first, newline, rest = source.partition(b"\n")
    if not first.startswith(b"#!lua") or b"allow-key-locking" not in first:
        return source
    words = first.split()
    flags = next((word[len(b"flags=") :] for word in words if word.startswith(b"flags=")), b"")
    kept = [flag for flag in flags.split(b",") if flag and flag != b"allow-key-locking"]
    if not kept:
        return rest
    return b"#!lua flags=" + b",".join(kept) + newline + rest


def _command(item: object) -> list[bytes]:
    if not isinstance(item, list) or not item:
        raise _BadRequest("ERR a command must be a non-empty JSON array")
    args: list[bytes] = []
    for arg in item:
        if isinstance(arg, bool):
            args.append(b"true" if arg else b"false")
        elif isinstance(arg, str):  # _Number is a str holding the literal text
            args.append(arg.encode("utf-8"))
        else:
            raise _BadRequest(f"ERR unsupported argument type {type(arg).__name__}")
    return args


def _single(reply: Reply, base64_encoding: bool) -> tuple[int, Any]:
    if isinstance(reply, RespError):
        return 400, {"error": str(reply)}
    return 200, {"result": _to_json(reply, base64_encoding, top=True)}


def _item(reply: Reply, base64_encoding: bool) -> dict[str, Any]:
    if isinstance(reply, RespError):
        return {"error": str(reply)}
    return {"result": _to_json(reply, base64_encoding, top=True)}


def _to_json(reply: Reply, base64_encoding: bool, top: bool = False) -> Any:
    if isinstance(reply, SimpleString):
        if not base64_encoding or (top and reply.text == "OK"):
            return reply.text
        return base64.b64encode(reply.text.encode()).decode()
    if isinstance(reply, bytes):
        return base64.b64encode(reply).decode() if base64_encoding else reply.decode("utf-8", "replace")
    if isinstance(reply, list):
        return [_to_json(item, base64_encoding) for item in reply]
    if isinstance(reply, RespError):
        return str(reply)
    return reply  # int or None
