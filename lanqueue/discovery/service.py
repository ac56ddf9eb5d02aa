"""DiscoveryService: one node's view of its peers, wired from the pure cores and the adapters.

Liveness is SWIM (`swim.py`, over HTTP by `swimnet.py`): each period the node probes ONE member,
so what a node spends on membership does not grow with the farm. mDNS and static peers are how
members are found: each becomes a SWIM join. The peer table (`peers.py`) keeps what the node
shows (info, address, online/offline); its online/offline follows SWIM's verdicts
(`MemberChanged`), an mDNS goodbye, and nothing else.

The hello route (`heartbeat.py`) stays: a static address is asked who is there, and a member
heard of only through gossip is asked once for its info (name, queues) before it is shown.
The service owns the clock (`time.monotonic`, read once per input and passed down) and the HTTP
session, and dispatches the table's events to listeners. The node mounts the routes with
`install(app)` and reads `snapshot()`; the LAN protocol asks `online_peers(queue)`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from .heartbeat import HELLO_SOURCE, NODE_HEADER, PORT_HEADER, HeartbeatLoop, routes
from .info import BadPeerInfo, check_node_id
from .peers import HeartbeatTarget, Peer, PeerEvent, PeerInfo, PeerTable
from .swim import Action, MemberChanged, Message, Status, Swim, SwimSettings
from .swimnet import SWIM_SINK, BadSwim, SwimRunner, join_addr, split_addr, swim_routes

if TYPE_CHECKING:
    from .mdns import MdnsAdapter

__all__ = ["DiscoveryService", "next_incarnation", "parse_peer_address"]

log = logging.getLogger(__name__)

Listener = Callable[[PeerEvent], None]


def parse_peer_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) as given to `--peer`; raises ValueError with the reason."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"peer address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


INCARNATION_FILE = "swim_incarnation"


def next_incarnation(data_dir: Path) -> int:
    """This start's SWIM incarnation: one more than the last start's, kept in the data dir, so
    a restarted node's news supersedes the DEAD entry the farm keeps for it (written and synced
    before the node announces itself)."""
    path = data_dir / INCARNATION_FILE
    try:
        last = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        last = 0
    value = max(0, last) + 1
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        # a data dir that cannot be written: the store's check at start says so in one line
        # and stops the node; failing here first would print a traceback instead
        pass
    return value


def _check_own(info: PeerInfo) -> None:
    """What we advertise must pass the checks peers apply, or they would silently ignore us:
    fail loudly here instead (ValueError: local misuse)."""
    try:
        PeerInfo.from_hello(
            {
                "node_id": info.node_id,
                "name": info.name,
                "protocol": info.protocol,
                "api_port": info.api_port,
                "profile": info.profile,
                "queues": list(info.queues),
            }
        )
    except BadPeerInfo as exc:
        raise ValueError(f"cannot advertise this node: {exc.message}") from None


class DiscoveryService:
    """Finds the other lanqueue nodes of the LAN and keeps track of which are alive."""

    def __init__(
        self,
        node_id: str,
        name: str,
        api_port: int,
        profile: str,
        queues: list[str],
        *,
        mdns: bool = True,
        interfaces: list[str] | None = None,
        static_peers: Iterable[str] = (),
        protocol_version: int = 1,
        status_provider: Callable[[], dict[str, Any]] | None = None,
        heartbeat_interval: float = 2.0,
        max_missed: int = 3,
        heartbeat_timeout: float | None = None,
        forget_after: float = 3600.0,
        max_peers: int = 256,
        incarnation: int = 0,
    ) -> None:
        check_node_id(node_id)
        if not 0 < api_port < 65536:
            raise ValueError(f"api_port must be the port the API is bound to, got {api_port}")
        self._own = PeerInfo(
            node_id=node_id,
            name=name,
            protocol=protocol_version,
            api_port=api_port,
            profile=profile,
            queues=tuple(queues),
        )
        _check_own(self._own)
        timeout = min(heartbeat_interval, 2.0) if heartbeat_timeout is None else heartbeat_timeout
        self.table = PeerTable(
            node_id,
            protocol_version,
            max_missed=max_missed,
            offline_after=math.inf,  # SWIM says when a peer is down, not a silence timer
            forget_after=forget_after,
            max_peers=max_peers,
        )
        # One probe per `heartbeat_interval`; a peer that misses one is suspect, and dead
        # `max_missed - 1` periods later unless it (or anyone) refutes.
        self.swim = Swim(
            node_id,
            "",  # peers take our address from where our messages come from
            incarnation,
            SwimSettings(period=heartbeat_interval, suspect_periods=max(1, max_missed - 1),
                         max_members=max_peers * 4),
        )
        self._wanted: dict[str, str] = {}  # members alive by SWIM, not in the table yet -> addr
        for peer in static_peers:
            self.table.add_static(*parse_peer_address(peer))
        self._use_mdns = mdns
        self._interfaces = interfaces
        self._status_provider = status_provider
        self._interval = heartbeat_interval
        self._timeout = timeout
        self._listeners: list[Listener] = []
        self._mdns: MdnsAdapter | None = None
        self._session: aiohttp.ClientSession | None = None
        self._heartbeat: HeartbeatLoop | None = None
        self._runner: SwimRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._swim_task: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    # -- lifecycle --

    async def async_start(self) -> None:
        """Start heartbeats, register on mDNS and browse (returns once registered)."""
        if self._started:
            raise RuntimeError("DiscoveryService already started")
        self._started = True
        self._session = aiohttp.ClientSession(
            # one kept-alive connection per peer; no global cap, or a large farm's heartbeats
            # would queue behind each other (the table itself is bounded by max_peers)
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=2, keepalive_timeout=30)
        )
        self._heartbeat = HeartbeatLoop(
            self._session,
            self._hello_targets,
            self._on_heartbeat_ok,
            self._on_heartbeat_fail,
            self._on_round,
            interval=self._interval,
            timeout=self._timeout,
            headers={NODE_HEADER: self._own.node_id, PORT_HEADER: str(self._own.api_port)},
        )
        self._runner = SwimRunner(self.swim, self._session, self._own.api_port, self.hello, self._on_swim)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._heartbeat.run())
        self._swim_task = loop.create_task(self._runner.run())
        if self._use_mdns:
            from .mdns import MdnsAdapter  # zeroconf is loaded only by a node that uses mDNS

            self._mdns = MdnsAdapter(
                self._on_mdns_info, self._on_mdns_removed, interfaces=self._interfaces
            )
            try:
                await self._mdns.async_start(self._own)
            except BaseException:
                await self.async_close()
                raise

    async def async_close(self) -> None:
        """Unregister from mDNS (awaited, so peers see us go), stop heartbeats. Idempotent."""
        if self._closed:
            return
        farewell = self.swim.farewell() if self._runner is not None and self._swim_task is not None else []
        self._closed = True  # the hello and SWIM routes answer 503 from now on
        if self._runner is not None and farewell:
            await self._runner.send_now(farewell)
        if self._mdns is not None:
            await self._mdns.async_close()
        for task in (self._task, self._swim_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> DiscoveryService:
        await self.async_start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.async_close()

    def install(self, app: web.Application) -> None:
        """Mount the hello and SWIM routes on the node's application."""
        app[HELLO_SOURCE] = self
        app[SWIM_SINK] = self
        app.add_routes(routes)
        app.add_routes(swim_routes)

    async def async_update(
        self,
        *,
        profile: str | None = None,
        queues: list[str] | None = None,
        name: str | None = None,
    ) -> None:
        """Change what we advertise; re-announces the TXT record only if something changed."""
        new = PeerInfo(
            node_id=self._own.node_id,
            name=self._own.name if name is None else name,
            protocol=self._own.protocol,
            api_port=self._own.api_port,
            profile=self._own.profile if profile is None else profile,
            queues=self._own.queues if queues is None else tuple(queues),
        )
        if new == self._own:
            return
        _check_own(new)
        self._own = new
        if self._mdns is not None:
            await self._mdns.async_update(new)

    # -- views --

    @property
    def own(self) -> PeerInfo:
        return self._own

    @property
    def peers(self) -> list[Peer]:
        return self.table.peers()

    def snapshot(self) -> list[dict[str, Any]]:
        """JSON-able peer list for the API (sorted by name)."""
        self._tick()
        return self.table.snapshot(time.monotonic(), time.time())

    def online_peers(self, queue: str | None = None) -> list[Peer]:
        """Trusted, online peers (optionally members of `queue`); each has a `base_url`."""
        self._tick()
        return self.table.online_peers(queue)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(event)` for every PeerEvent; returns the unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    # -- HelloSource --

    @property
    def leaving(self) -> bool:
        return self._closed

    def hello(self) -> dict[str, Any]:
        status: dict[str, Any] = {}
        if self._status_provider is not None:
            try:
                status = self._status_provider()
            except Exception:  # noqa: BLE001 - a broken provider must not silence heartbeats
                log.exception("status provider failed")
        return {
            "node_id": self._own.node_id,
            "name": self._own.name,
            "protocol": self._own.protocol,
            "api_port": self._own.api_port,
            "profile": self._own.profile,
            "queues": list(self._own.queues),
            "status": status.get("status", "unknown"),
            "current_job": status.get("current_job"),
        }

    def observe_contact(self, node_id: str, host: str, port: int) -> None:
        if self._closed:
            return
        known = self.table.get(node_id)
        self.table.add_contact(node_id, host, port, time.monotonic())
        if known is None or not known.online:
            self._poke()

    # -- inputs from the adapters --

    def _dispatch(self, events: list[PeerEvent]) -> None:
        for event in events:
            log.info("%s %s (%s)", type(event).__name__, event.peer.info.name, event.peer.node_id)
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - one bad listener must not starve the rest
                    log.exception("peer listener failed")

    def _poke(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.poke()

    def _tick(self) -> None:
        self._dispatch(self.table.tick(time.monotonic()))

    def _hello_targets(self) -> list[HeartbeatTarget]:
        """Whom to ask `hello` this round: static addresses and callers no member answers at,
        and members alive by SWIM whose info we lack. Known members are not asked: SWIM
        watches them, and their messages carry their info."""
        out = [t for t in self.table.targets() if t.node_id is None]
        for node_id, addr in list(self._wanted.items()):
            if self.table.get(node_id) is not None or self.swim.status_of(node_id) == Status.DEAD:
                del self._wanted[node_id]
                continue
            try:
                host, port = split_addr(addr)
            except BadSwim:
                del self._wanted[node_id]
                continue
            out.append(HeartbeatTarget(host, port, node_id))
        return out

    def _join(self, node_id: str, host: str | None, port: int) -> None:
        if host is not None and not self._closed and self._runner is not None:
            self._runner.perform(self.swim.join(node_id, join_addr(host, port), time.monotonic()))

    def _follow_swim(self, node_id: str) -> None:
        """Bring the table's online/offline in line with SWIM's verdict on `node_id`."""
        status = self.swim.status_of(node_id)
        if status is None:
            return
        online = status != Status.DEAD
        self._dispatch(self.table.set_online(node_id, online, time.monotonic(), "heartbeat"))

    def _on_swim(self, actions: list[Action]) -> None:
        for action in actions:
            if not isinstance(action, MemberChanged):
                continue
            if self.table.get(action.node) is not None:
                self._follow_swim(action.node)
            elif action.status != Status.DEAD and action.addr and len(self._wanted) < self.table.max_peers:
                self._wanted[action.node] = action.addr  # ask it who it is, then show it
                self._poke()

    def swim_received(self, message: Message, info: PeerInfo, status: dict[str, Any]) -> None:
        """A SWIM message from a peer (the route decoded it): run it through the core, then
        refresh what we show of its sender from the hello it carries."""
        if self._closed or self._runner is None:
            return
        if any(u.node == message.sender and u.status == Status.DEAD for u in message.updates):
            self._dispatch(self.table.mdns_removed(message.sender, time.monotonic()))  # goodbye
        self._runner.perform(self.swim.receive(message, time.monotonic()))
        if self.swim.status_of(message.sender) == Status.DEAD:
            return  # it has not refuted yet: do not show it back online from its own word
        host, port = split_addr(message.addr)
        self._dispatch(
            self.table.heartbeat_ok(message.sender, info, time.monotonic(), address=host, port=port,
                                    remote_status=status)
        )

    def _on_mdns_info(self, info: PeerInfo) -> None:
        self._dispatch(self.table.observe_mdns(info, time.monotonic()))
        peer = self.table.get(info.node_id)
        if peer is not None:
            self._join(info.node_id, peer.address, peer.port)
            self._follow_swim(info.node_id)

    def _on_mdns_removed(self, node_id: str) -> None:
        self._dispatch(self.table.mdns_removed(node_id, time.monotonic()))
        if self._runner is not None:
            self._runner.perform(self.swim.leave(node_id, time.monotonic()))

    def _on_heartbeat_ok(
        self, target: HeartbeatTarget, info: PeerInfo, remote: dict[str, Any]
    ) -> None:
        if self.swim.status_of(info.node_id) == Status.DEAD:
            return  # SWIM will hear it refute; a hello alone does not bring it back
        self._dispatch(
            self.table.heartbeat_ok(
                target.node_id or "",
                info,
                time.monotonic(),
                address=target.host,
                port=target.port,
                remote_status=remote,
            )
        )
        self._wanted.pop(info.node_id, None)
        self._join(info.node_id, target.host, target.port)

    def _on_heartbeat_fail(self, target: HeartbeatTarget, exc: BaseException) -> None:
        log.debug("hello to %s:%s failed: %r", target.host, target.port, exc)

    def _on_round(self) -> None:
        self._tick()
