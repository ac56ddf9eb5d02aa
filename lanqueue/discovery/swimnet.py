"""SWIM over HTTP: the wire format of `swim.py`'s messages, the route that receives them and the
asyncio adapter that ticks the core and sends what it says.

`POST /lanqueue/peer/v1/swim` carries one message as a small JSON object (at most
`MAX_SWIM_BYTES`, at most `MAX_UPDATES` pieces of news) and is answered 204 at once: an ack is a
message of its own, sent back by the receiver's core, so a slow or dead sender costs the
receiver nothing but one POST that fails. Each message also carries its sender's hello (who it
is, its queues and printer state), so the peers a node talks to keep a fresh view of it without
a separate request.

Why this route needs no secret: membership says what mDNS already tells every host on the LAN
(a node id, an address and port, the queues' names, the printer's state), and nothing in it
grants anything: LAN records and leases are authenticated by the queue's secret elsewhere
(sync/auth.py). A forged message can at worst claim a live node is suspect or dead, and the SWIM
merge rule makes that node refute it with a higher incarnation as soon as the news reaches it;
a flood of invented members is stopped by the core's `max_members` and the peer table's
`max_peers`, a large body by `MAX_SWIM_BYTES`.

The sender's address in a message is not trusted from the body: the receiver takes the host the
request came from and the port the body names, so a node never needs to know its own LAN
address (it may bind 0.0.0.0).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from .info import BadPeerInfo, PeerInfo, check_node_id
from .swim import Ack, Action, Message, Ping, PingReq, Send, Status, Swim, Update

__all__ = [
    "SWIM_PATH",
    "MAX_SWIM_BYTES",
    "MAX_UPDATES",
    "BadSwim",
    "SwimSink",
    "SWIM_SINK",
    "encode",
    "decode",
    "join_addr",
    "SwimRunner",
    "swim_routes",
]

log = logging.getLogger(__name__)

SWIM_PATH = "/lanqueue/peer/v1/swim"
MAX_SWIM_BYTES = 24 * 1024
"""A message is a few hundred bytes; the bound leaves room for a hello with 64 long queue names."""
MAX_UPDATES = 16
MAX_ADDR_LEN = 270
MAX_INCARNATION = 1 << 53
_KINDS = {"ping": Ping, "ack": Ack, "ping-req": PingReq}
_KIND_OF = {Ping: "ping", Ack: "ack", PingReq: "ping-req"}


class BadSwim(ValueError):
    """A SWIM message that does not parse or breaks a bound (the route answers 400)."""


def join_addr(host: str, port: int) -> str:
    """`host:port` as SWIM addresses are written (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_addr(addr: str) -> tuple[str, int]:
    """The inverse of `join_addr`; raises BadSwim."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadSwim(f"bad address {addr[:40]!r}")
    return host.strip("[]"), int(port)


def encode(message: Message, port: int, hello: dict[str, Any]) -> bytes:
    obj: dict[str, Any] = {
        "kind": _KIND_OF[type(message)],
        "from": message.sender,
        "port": port,
        "seq": message.seq,
        "updates": [[u.node, int(u.status), u.incarnation, u.addr] for u in message.updates[:MAX_UPDATES]],
        "hello": hello,
    }
    if not isinstance(message, Ping):
        obj["target"] = message.target
    return json.dumps(obj, separators=(",", ":")).encode()


def _node(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadSwim(f"{what} must be a node id")
    try:
        check_node_id(value)
    except (BadPeerInfo, ValueError):
        raise BadSwim(f"{what} is not a valid node id") from None
    return value


def _int(value: Any, what: str, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise BadSwim(f"{what} must be an integer in 0..{hi}")
    return value


def _update(item: Any) -> Update:
    if not isinstance(item, list) or len(item) != 4:
        raise BadSwim("an update is [node, status, incarnation, address]")
    node, status, inc, addr = item
    if not isinstance(addr, str) or len(addr) > MAX_ADDR_LEN:
        raise BadSwim("an update's address must be a short string")
    if addr:
        split_addr(addr)
    return Update(_node(node, "update node"), Status(_int(status, "status", 2)),
                  _int(inc, "incarnation", MAX_INCARNATION), addr)


def decode(body: bytes, remote: str) -> tuple[Message, PeerInfo, dict[str, Any]]:
    """Parse one message received from host `remote`: the message, its sender's hello and the
    printer state that hello reports. The sender's address becomes `remote` and the port it
    names, in the message and in the news about itself. Raises BadSwim."""
    if len(body) > MAX_SWIM_BYTES:
        raise BadSwim("message too large")
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting is refused too
        raise BadSwim("message is not JSON (or nested too deeply)") from None
    if not isinstance(obj, dict):
        raise BadSwim("message must be an object")
    kind = _KINDS.get(obj.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise BadSwim("kind must be ping, ack or ping-req")
    sender = _node(obj.get("from"), "from")
    addr = join_addr(remote, _int(obj.get("port"), "port", 65535))
    seq = _int(obj.get("seq"), "seq", MAX_INCARNATION)
    raw = obj.get("updates", [])
    if not isinstance(raw, list) or len(raw) > MAX_UPDATES:
        raise BadSwim(f"updates must be a list of at most {MAX_UPDATES}")
    updates = tuple(
        Update(u.node, u.status, u.incarnation, addr) if u.node == sender else u
        for u in map(_update, raw)
    )
    try:
        info = PeerInfo.from_hello(obj.get("hello"), remote)
    except BadPeerInfo as exc:
        raise BadSwim(f"hello: {exc.message}") from None
    if info.node_id != sender:
        raise BadSwim("hello names another node than the sender")
    hello = obj["hello"]
    state, job = hello.get("status"), hello.get("current_job")
    remote_status = {"status": state if isinstance(state, str) and len(state) <= 100 else None,
                     "current_job": job if isinstance(job, str) and len(job) <= 100 else None}
    if kind is Ping:
        return Ping(sender, addr, seq, updates), info, remote_status
    target = _node(obj.get("target"), "target")
    return kind(sender, addr, seq, target, updates), info, remote_status


class SwimSink(Protocol):
    """What the route needs from the node (DiscoveryService implements it)."""

    @property
    def leaving(self) -> bool: ...

    def swim_received(self, message: Message, info: PeerInfo, status: dict[str, Any]) -> None: ...


SWIM_SINK: web.AppKey[SwimSink] = web.AppKey("lanqueue.discovery.swim_sink")

swim_routes = web.RouteTableDef()


@swim_routes.post(SWIM_PATH)
async def swim_handler(request: web.Request) -> web.Response:
    """Take one membership message; answered at once (the core's answer is a message of its own)."""
    sink = request.app[SWIM_SINK]
    if sink.leaving:
        return web.json_response({"error": "node is shutting down"}, status=503)
    if request.content_length is not None and request.content_length > MAX_SWIM_BYTES:
        return web.json_response({"error": "message too large"}, status=413)
    body = await request.content.read(MAX_SWIM_BYTES + 1)
    if not request.remote:
        return web.json_response({"error": "no peer address"}, status=400)
    try:
        message, info, remote_status = decode(body, request.remote)
    except BadSwim as exc:
        return web.json_response({"error": str(exc)}, status=400)
    sink.swim_received(message, info, remote_status)
    return web.Response(status=204)


class SwimRunner:
    """Ticks a `Swim` core `ticks_per_period` times a period and POSTs what it sends (each in a
    task of its own, at most `max_in_flight` at once: a send that would exceed it is dropped,
    which SWIM treats as a lost packet). `on_actions` gets every action, sends included."""

    def __init__(
        self,
        swim: Swim,
        session: aiohttp.ClientSession,
        port: int,
        hello: Callable[[], dict[str, Any]],
        on_actions: Callable[[list[Action]], None],
        *,
        ticks_per_period: int = 5,
        max_in_flight: int = 64,
    ) -> None:
        self.swim = swim
        self._session = session
        self._port = port
        self._hello = hello
        self._on_actions = on_actions
        self._step = swim.settings.period / ticks_per_period
        self._max = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent_bytes = 0
        self.dropped = 0

    async def run(self) -> None:
        """Run until cancelled."""
        try:
            while True:
                self.perform(self.swim.tick(time.monotonic()))
                await asyncio.sleep(self._step)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def perform(self, actions: list[Action]) -> None:
        if not actions:
            return
        hello = self._hello()
        for action in actions:
            if isinstance(action, Send) and action.addr:
                if len(self._tasks) >= self._max:
                    self.dropped += 1
                    continue
                body = encode(action.message, self._port, hello)
                task = asyncio.get_running_loop().create_task(self._post(action.addr, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._on_actions(actions)

    async def send_now(self, actions: list[Action]) -> None:
        """Send `actions` and wait for them (at most one period): the farewell at shutdown."""
        hello = self._hello()
        await asyncio.gather(*(self._post(a.addr, encode(a.message, self._port, hello))
                               for a in actions if isinstance(a, Send) and a.addr))

    async def _post(self, addr: str, body: bytes) -> None:
        host, port = split_addr(addr)
        url = f"http://{join_addr(host, port)}{SWIM_PATH}"
        self.sent_bytes += len(body)
        timeout = aiohttp.ClientTimeout(total=self.swim.settings.period)
        try:
            async with self._session.post(url, data=body, timeout=timeout, allow_redirects=False,
                                          headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.debug("swim message to %s lost: %r", addr, exc)
