"""Connection hygiene for the node's HTTP server: read timeouts and a cap on connections.

aiohttp waits for a request's headers and body as long as the client likes, and accepts
connections until the process runs out of file descriptors; then asyncio's accept loop fails
(`socket.accept() out of system resource`) and nobody, the farm's own clients included, gets an
answer. 300 connections sending their headers a byte at a time were enough.

`Framing` is the pure part (h11 style: fed bytes and a clock, no I/O): it follows where a
connection is in its requests from the bytes the client sends (waiting, in the headers, in a
body of known length, in a chunked body) and says by when the client must have sent more.
`GuardedProtocol` wraps each of aiohttp's protocol objects, feeds the framing and passes every
byte on unchanged; `ConnectionGuard` keeps the set of connections, closes those past their
deadline (408) and, at the cap, makes room by closing the oldest connection that has not yet
sent a whole request head: a slow-header flood only ever pushes out its own connections, while
a client that sends its request at once is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ConnectionGuard", "Framing", "Phase", "connection_limit"]

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # from the first byte (or the connection) to the end of the request head
BODY_IDLE_TIMEOUT = 30.0  # longest silence inside a request body
MAX_HEAD = 64 * 1024  # aiohttp refuses longer heads itself; keep no more than that here


class Phase(enum.Enum):
    FRESH = "fresh"  # connected, nothing sent yet
    IDLE = "idle"  # between requests (or the server is answering the last one)
    HEAD = "head"  # in a request's head
    BODY = "body"  # in a body of known length
    CHUNKED = "chunked"  # in a chunked body


class Framing:
    """Where a connection is in its requests, and its deadline (None: no deadline)."""

    def __init__(self, now: float, header_timeout: float = HEADER_TIMEOUT,
                 body_idle_timeout: float = BODY_IDLE_TIMEOUT) -> None:
        self.phase = Phase.FRESH
        self.header_timeout = header_timeout
        self.body_idle_timeout = body_idle_timeout
        self.deadline: float | None = now + header_timeout
        self._head = bytearray()
        self._left = 0  # body bytes still to come
        self._tail = b""  # last bytes of a chunked body, to find its end across reads

    @property
    def evictable(self) -> bool:
        """Has not yet sent a whole request head (the kind of connection a flood is made of)."""
        return self.phase in (Phase.FRESH, Phase.HEAD)

    def feed(self, data: bytes, now: float) -> None:
        view = memoryview(data)
        while view:
            if self.phase in (Phase.FRESH, Phase.IDLE):
                self.phase = Phase.HEAD
                self.deadline = now + self.header_timeout
                self._head.clear()
            if self.phase is Phase.HEAD:
                view = self._feed_head(view, now)
            elif self.phase is Phase.BODY:
                take = min(self._left, len(view))
                self._left -= take
                view = view[take:]
                self.deadline = now + self.body_idle_timeout
                if self._left == 0:
                    self._request_read()
            else:
                view = self._feed_chunked(view, now)

    def _feed_head(self, view: memoryview, now: float) -> memoryview:
        start = max(0, len(self._head) - 3)
        self._head += view
        end = self._head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._head) > MAX_HEAD:  # aiohttp answers 431 and closes; stop keeping it
                del self._head[: len(self._head) - 3]
            return view[len(view):]
        rest = bytes(self._head[end + 4:])
        length, chunked = _body_of(bytes(self._head[:end]))
        self._head.clear()
        if chunked:
            self.phase, self._tail = Phase.CHUNKED, b""
            self.deadline = now + self.body_idle_timeout
        elif length > 0:
            self.phase, self._left = Phase.BODY, length
            self.deadline = now + self.body_idle_timeout
        else:
            self._request_read()
        return memoryview(rest)

    def _feed_chunked(self, view: memoryview, now: float) -> memoryview:
        self.deadline = now + self.body_idle_timeout
        data = self._tail + bytes(view)
        end = data.find(b"0\r\n\r\n")
        while end > 0 and data[end - 2:end] != b"\r\n":
            end = data.find(b"0\r\n\r\n", end + 1)
        if end < 0:
            self._tail = data[-7:]
            return view[len(view):]
        self._request_read()
        return memoryview(data[end + 5:])

    def _request_read(self) -> None:
        self.phase, self.deadline = Phase.IDLE, None


def _body_of(head: bytes) -> tuple[int, bool]:
    """(Content-Length, chunked?) from a request head; a bad length counts as none (aiohttp
    answers 400 for it)."""
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                length = max(0, int(value.strip()))
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return length, chunked


def connection_limit(reserve: int = 256, ceiling: int = 10_000) -> int:
    """Connections to allow: what the file-descriptor limit leaves after the database, the
    printer, the LAN and a burst of accepts still waiting to be turned away."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ceiling
    return max(16, min(ceiling, soft - reserve))


def _raw_answer(status: str, message: str, extra: str = "") -> bytes:
    """A whole HTTP answer, for connections aiohttp never saw a request on."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


_TIMEOUT_ANSWER = _raw_answer("408 Request Timeout", "the request was not sent in time; send it again")
_BUSY_ANSWER = _raw_answer("503 Service Unavailable", "too many connections; try again shortly", "Retry-After: 1\r\n")


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with its framing followed on the way in."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard = guard
        self.inner = inner
        self.framing = Framing(guard.clock(), guard.header_timeout, guard.body_idle_timeout)
        self.transport: asyncio.Transport | None = None
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.guard.admit(self):
            transport.write(_BUSY_ANSWER)  # type: ignore[attr-defined]
            transport.close()
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.framing.feed(data, self.guard.clock())
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self.admitted:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def close_late(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_TIMEOUT_ANSWER)
            self.transport.close()


class ConnectionGuard:
    """A protocol factory around aiohttp's, holding every connection to its deadline and the
    whole server to `limit` connections."""

    def __init__(self, factory: Callable[[], Any], limit: int, *, header_timeout: float = HEADER_TIMEOUT,
                 body_idle_timeout: float = BODY_IDLE_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 on_refusal: Callable[[str], None] | None = None) -> None:
        self.factory = factory
        self.limit = limit
        self.header_timeout = header_timeout
        self.body_idle_timeout = body_idle_timeout
        self.clock = clock
        self.on_refusal = on_refusal or (lambda what: None)
        self.connections: dict[GuardedProtocol, None] = {}  # insertion order = age
        self._sweeper: asyncio.Task[None] | None = None

    def __call__(self) -> GuardedProtocol:
        return GuardedProtocol(self, self.factory())

    def admit(self, conn: GuardedProtocol) -> bool:
        if len(self.connections) >= self.limit:
            oldest = next((c for c in self.connections if c.framing.evictable), None)
            if oldest is None:
                self.on_refusal("connection refused: the node holds its maximum of connections")
                return False
            self.on_refusal("connection closed to make room: it had not sent a whole request")
            self.forget(oldest)
            oldest.close_late()
        self.connections[conn] = None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return True

    def forget(self, conn: GuardedProtocol) -> None:
        self.connections.pop(conn, None)

    def expire(self) -> int:
        """Close every connection past its deadline; returns how many."""
        now = self.clock()
        late = [c for c in self.connections if c.framing.deadline is not None and c.framing.deadline <= now]
        for conn in late:
            self.forget(conn)
            conn.close_late()
            self.on_refusal("connection closed: the request was not sent in time")
        return len(late)

    async def _sweep(self) -> None:
        while self.connections:
            await asyncio.sleep(0.5)
            self.expire()

    async def async_close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
