"""The aiohttp application of a node: middlewares for errors and auth, and the route tables.

Errors are mapped once, here: a `LanqueueError` becomes `{"error": message}` with its status,
aiohttp's own HTTP errors (unknown route, wrong method, body too large) keep their status but
get the same JSON shape, and anything unexpected is logged and answered 500 without details.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import LanqueueError
from .connections import ConnectionGuard, connection_limit
from .keys import NODE

__all__ = ["PUBLIC_PREFIXES", "api_key_of", "auth_middleware", "error_middleware", "json_response", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that need no API key: the web page's static files (the page asks for the key itself),
# the API description, and the peer protocol (authenticated by the LAN queue's secret instead).
PUBLIC_EXACT = ("/", "/index.html", "/favicon.ico", "/lanqueue/openapi.json")
PUBLIC_PREFIXES = ("/static/", "/lanqueue/peer/")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LanqueueError as e:
        if e.http_status >= 500:
            log.warning("%s %s: %s", request.method, request.path, e.message)
        return _error(e.http_status, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        reason = e.text if e.text and not e.text.startswith(str(e.status)) else e.reason
        answer = _error(e.status, reason)
        if isinstance(e, web.HTTPMethodNotAllowed):  # RFC 9110: a 405 says which methods work
            answer.headers["Allow"] = ", ".join(sorted(e.allowed_methods))
        return answer
    except HttpProcessingError as e:  # a malformed body part (multipart headers, encodings)
        status = e.code if 400 <= e.code < 500 else 400
        return _error(status, f"malformed request body: {e.message}"[:300])
    except (ConnectionResetError, TimeoutError):
        raise
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            log.exception("unexpected error on %s %s", request.method, request.path)
            return _error(500, "internal error; see the node's log")
        # an upload or any other file write that found the disk full (the store's own
        # writes say so themselves): what was half-written is removed where it was staged
        return _error(507, "the node's disk is full: nothing was stored; free space on the node and retry")
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal error; see the node's log")


def api_key_of(request: web.Request) -> str | None:
    """The key a client presented, in any of the three ways OctoPrint accepts."""
    key = request.headers.get("X-Api-Key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("apikey")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    given = api_key_of(request)
    expected = request.app[NODE].api_key
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return _error(403, "a valid API key is required (X-Api-Key header, Bearer token or ?apikey=)")
    return await handler(request)


KEEPALIVE_TIMEOUT = 15.0  # an idle keep-alive connection is closed after this
# connections waiting to be accepted: a burst of a flood larger than this makes the kernel drop
# SYNs, and a client's retry comes a second later; asyncio accepts up to this many at once, so
# the connection cap leaves this many descriptors free
BACKLOG = 512


async def serve(app: web.Application, host: str | None, port: int, *, shutdown_timeout: float = 10.0,
                ready: Callable[[], None] | None = None) -> None:
    """Run `app` on host:port until SIGINT or SIGTERM, behind a `ConnectionGuard` (read
    timeouts, a cap on connections). Unlike `web.run_app`, a service that fails to start is
    torn down again (run_app skips the cleanup then, which left the database's threads
    running and the process hanging instead of exiting)."""
    loop = asyncio.get_running_loop()
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT,
                           shutdown_timeout=shutdown_timeout)
    listener: asyncio.Server | None = None
    guard: ConnectionGuard | None = None
    try:
        await runner.setup()
        assert runner.server is not None
        loop.set_exception_handler(_loop_exception)
        guard = ConnectionGuard(runner.server, connection_limit(reserve=128 + BACKLOG), on_refusal=_refused)
        listener = await loop.create_server(guard, host or None, port, reuse_address=True, backlog=BACKLOG)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready()
        await stop.wait()
    finally:
        if listener is not None:
            listener.close()
        if guard is not None:
            await guard.async_close()
        await runner.cleanup()


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's accept loop reports running out of descriptors with the socket in the text,
    so every report looked new to the log's rate limit: say it in one fixed line instead."""
    if "out of system resource" in str(context.get("message", "")):
        log.error("cannot accept connections: %s", context.get("exception"))
        return
    loop.default_exception_handler(context)


def _refused(what: str) -> None:
    """Refused and timed-out connections, one line per kind (the log filter limits the rate)."""
    log.warning("%s", what)
