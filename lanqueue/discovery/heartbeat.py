"""The hello route and loop: who is at an address.

Liveness is SWIM's (`swimnet.py`); hello answers only "who is there": a static address not yet
known, a caller that named itself, a member heard of only through gossip (asked once, then SWIM
watches it and its messages carry its info). `HeartbeatLoop` asks those each `interval`, so
its cost is that of the farm's changes, not of its size. The farm view also reads hello answers.

The hello answer is public (no secret, no key): it carries only what mDNS TXT already tells
everyone, plus the printer's status. The request carries the caller's node id and API port in
headers so a node configured with `--peer` on one side only is still found by the other side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from .info import BadPeerInfo, PeerInfo
from .peers import HeartbeatTarget

__all__ = [
    "HELLO_PATH",
    "HELLO_SOURCE",
    "HelloSource",
    "HeartbeatLoop",
    "fetch_hello",
    "hello_handler",
    "routes",
]

log = logging.getLogger(__name__)

HELLO_PATH = "/lanqueue/peer/v1/hello"
NODE_HEADER = "X-Lanqueue-Node"
PORT_HEADER = "X-Lanqueue-Port"
MAX_HELLO_BYTES = 16 * 1024
"""A hello answer is a few hundred bytes; anything far larger is a remote error, not a buffer."""


class HelloSource(Protocol):
    """What the hello route needs from the node (DiscoveryService implements it)."""

    @property
    def leaving(self) -> bool: ...

    def hello(self) -> dict[str, Any]: ...

    def observe_contact(self, node_id: str, host: str, port: int) -> None: ...


HELLO_SOURCE: web.AppKey[HelloSource] = web.AppKey("lanqueue.discovery.hello_source")

routes = web.RouteTableDef()


@routes.get(HELLO_PATH)
async def hello_handler(request: web.Request) -> web.Response:
    """Answer who this node is; note who asked, so one-sided static configuration works."""
    source = request.app[HELLO_SOURCE]
    if source.leaving:
        # Between our mDNS goodbye and the server stopping, answering would make peers
        # take us back online for a moment.
        return web.json_response({"error": "node is shutting down"}, status=503)
    caller = request.headers.get(NODE_HEADER)
    port = request.headers.get(PORT_HEADER, "")
    if caller and port.isdigit() and request.remote:
        source.observe_contact(caller, request.remote, int(port))
    return web.json_response(source.hello())


async def fetch_hello(
    session: aiohttp.ClientSession,
    host: str,
    port: int,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> tuple[PeerInfo, dict[str, Any]]:
    """One heartbeat. Returns the peer's info and its remote status; raises BadPeerInfo for a
    bad answer and aiohttp/asyncio errors when the peer cannot be reached."""
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}{HELLO_PATH}"
    async with session.get(
        url, timeout=aiohttp.ClientTimeout(total=timeout), headers=headers, allow_redirects=False
    ) as resp:
        if resp.status != 200:
            raise BadPeerInfo(f"hello answered HTTP {resp.status}")
        body = await resp.content.read(MAX_HELLO_BYTES + 1)
    if len(body) > MAX_HELLO_BYTES:
        raise BadPeerInfo("hello answer too large")
    try:
        obj = json.loads(body)
    except ValueError:
        raise BadPeerInfo("hello answer is not JSON") from None
    info = PeerInfo.from_hello(obj, host)
    status = obj.get("status")
    remote = {
        "status": status if isinstance(status, str) else None,
        "current_job": obj.get("current_job"),
    }
    return info, remote


class HeartbeatLoop:
    """Every `interval` (with 10 % jitter so nodes do not synchronise) contact every target at
    once; report each answer or failure. `poke()` runs a round early (a new peer appeared).

    All targets are probed concurrently (up to `concurrency`, above the table's bounds), so
    unreachable peers that time out do not delay the verdict on the others."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        targets: Callable[[], list[HeartbeatTarget]],
        on_ok: Callable[[HeartbeatTarget, PeerInfo, dict[str, Any]], None],
        on_fail: Callable[[HeartbeatTarget, BaseException], None],
        on_round: Callable[[], None],
        *,
        interval: float = 2.0,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        concurrency: int = 512,
    ) -> None:
        self._session = session
        self._targets = targets
        self._on_ok = on_ok
        self._on_fail = on_fail
        self._on_round = on_round
        self.interval = interval
        self.timeout = timeout if timeout is not None else min(interval, 2.0)
        self._headers = headers or {}
        self._limit = asyncio.Semaphore(concurrency)
        self._poked = asyncio.Event()
        self.rounds = 0

    def poke(self) -> None:
        self._poked.set()

    async def run(self) -> None:
        """Run until cancelled."""
        while True:
            self._poked.clear()
            started = asyncio.get_running_loop().time()
            await self.run_round()
            self._on_round()
            delay = self.interval * random.uniform(0.9, 1.1)
            elapsed = asyncio.get_running_loop().time() - started
            try:
                await asyncio.wait_for(self._poked.wait(), max(0.0, delay - elapsed))
                await asyncio.sleep(0.1)  # coalesce a burst of pokes into one round
            except TimeoutError:
                pass

    async def run_round(self) -> None:
        self.rounds += 1
        await asyncio.gather(*(self._probe(t) for t in self._targets()))

    async def _probe(self, target: HeartbeatTarget) -> None:
        async with self._limit:
            try:
                info, remote = await fetch_hello(
                    self._session,
                    target.host,
                    target.port,
                    timeout=self.timeout,
                    headers=self._headers,
                )
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError, BadPeerInfo) as exc:
                self._on_fail(target, exc)
                return
        self._on_ok(target, info, remote)
