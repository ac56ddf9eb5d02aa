"""DiscoveryService: one node's view of its peers, wired from the pure table and two adapters.

The service owns the clock (`time.monotonic`, read once per input and passed down), the mDNS
adapter, the heartbeat loop and its HTTP session, and dispatches the table's events to
listeners. The node mounts `routes` (the hello answer) with `install(app)` and reads
`snapshot()` for its API; the LAN protocol asks `online_peers(queue)` where to send traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from .heartbeat import HELLO_SOURCE, NODE_HEADER, PORT_HEADER, HeartbeatLoop, routes
from .info import BadPeerInfo, check_node_id
from .peers import HeartbeatTarget, Peer, PeerEvent, PeerInfo, PeerTable

if TYPE_CHECKING:
    from .mdns import MdnsAdapter

__all__ = ["DiscoveryService", "parse_peer_address"]

log = logging.getLogger(__name__)

Listener = Callable[[PeerEvent], None]


def parse_peer_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) as given to `--peer`; raises ValueError with the reason."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"peer address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


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
            # a round of heartbeats may take `timeout`: allow that on top of the misses
            offline_after=heartbeat_interval * max_missed + timeout,
            forget_after=forget_after,
            max_peers=max_peers,
        )
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
        self._task: asyncio.Task[None] | None = None
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
            self.table.targets,
            self._on_heartbeat_ok,
            self._on_heartbeat_fail,
            self._on_round,
            interval=self._interval,
            timeout=self._timeout,
            headers={NODE_HEADER: self._own.node_id, PORT_HEADER: str(self._own.api_port)},
        )
        self._task = asyncio.get_running_loop().create_task(self._heartbeat.run())
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
        self._closed = True  # also makes the hello route answer 503 from now on
        if self._mdns is not None:
            await self._mdns.async_close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> DiscoveryService:
        await self.async_start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.async_close()

    def install(self, app: web.Application) -> None:
        """Mount the hello route on the node's application."""
        app[HELLO_SOURCE] = self
        app.add_routes(routes)

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

    def _on_mdns_info(self, info: PeerInfo) -> None:
        known = self.table.get(info.node_id)
        self._dispatch(self.table.observe_mdns(info, time.monotonic()))
        if known is None or not known.online or known.info.api_port != info.api_port:
            self._poke()  # check a new or returning peer now rather than at the next round

    def _on_mdns_removed(self, node_id: str) -> None:
        self._dispatch(self.table.mdns_removed(node_id, time.monotonic()))

    def _on_heartbeat_ok(
        self, target: HeartbeatTarget, info: PeerInfo, remote: dict[str, Any]
    ) -> None:
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

    def _on_heartbeat_fail(self, target: HeartbeatTarget, exc: BaseException) -> None:
        log.debug("heartbeat to %s:%s failed: %r", target.host, target.port, exc)
        if target.node_id is not None:
            self._dispatch(self.table.heartbeat_failed(target.node_id, time.monotonic()))

    def _on_round(self) -> None:
        self._tick()
