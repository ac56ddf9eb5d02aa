"""mDNS registration and browsing of `_lanqueue._tcp.local.`: a thin python-zeroconf adapter.

It turns the node's `PeerInfo` into one service registration and turns what the browser sees
into `PeerInfo` observations and goodbyes for the peer table; it decides nothing itself.

The instance name is derived from the node's stable id (`lanqueue-<id>`), not its display name,
so several nodes on one host never collide and a goodbye maps back to a node id without a
lookup. Each node also uses its own SRV host name for the same reason. IPv4 only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable, Iterable

import ifaddr
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from .info import SERVICE_TYPE, BadPeerInfo, PeerInfo

__all__ = [
    "SERVICE_TYPE",
    "MdnsAdapter",
    "instance_name",
    "node_id_from_instance",
    "resolve_interfaces",
]

log = logging.getLogger(__name__)

_PREFIX = "lanqueue-"
_RESOLVE_TIMEOUT_MS = 3000


def instance_name(node_id: str) -> str:
    return f"{_PREFIX}{node_id}.{SERVICE_TYPE}"


def node_id_from_instance(name: str) -> str | None:
    suffix = "." + SERVICE_TYPE
    if not name.endswith(suffix) or not name.startswith(_PREFIX):
        return None
    return name[len(_PREFIX) : -len(suffix)] or None


def resolve_interfaces(interfaces: Iterable[str] | None) -> list[str] | None:
    """Map interface names ("eth0") or IPv4 addresses to IPv4 addresses; None means all."""
    if interfaces is None:
        return None
    wanted = list(interfaces)
    if not wanted:
        return None
    by_name: dict[str, list[str]] = {}
    for adapter in ifaddr.get_adapters():
        by_name[adapter.nice_name] = [ip.ip for ip in adapter.ips if isinstance(ip.ip, str)]
    out: list[str] = []
    for item in wanted:
        try:
            socket.inet_aton(item)
            out.append(item)
        except OSError:
            if item not in by_name or not by_name[item]:
                raise ValueError(f"no IPv4 address on interface {item!r}") from None
            out.extend(by_name[item])
    return out


def _advertised_addresses(interfaces: list[str] | None) -> list[str]:
    """The addresses to put in our A records: the chosen interfaces, or every non-loopback
    IPv4 address (loopback only when nothing else exists, so a lone test host still works)."""
    if interfaces is not None:
        return interfaces
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127.") and ip.network_prefix != 32:
                found.append(ip.ip)
    return found or ["127.0.0.1"]


class MdnsAdapter:
    """One AsyncZeroconf instance: registers this node and reports peers it browses."""

    def __init__(
        self,
        on_info: Callable[[PeerInfo], None],
        on_removed: Callable[[str], None],
        *,
        interfaces: list[str] | None = None,
    ) -> None:
        self._on_info = on_info
        self._on_removed = on_removed
        self._interfaces = resolve_interfaces(interfaces)
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def addresses(self) -> list[str]:
        return _advertised_addresses(self._interfaces)

    def _service_info(self, info: PeerInfo) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            instance_name(info.node_id),
            addresses=[socket.inet_aton(a) for a in self.addresses],
            port=info.api_port,
            properties=info.to_txt(),
            server=f"{_PREFIX}{info.node_id}.local.",
        )

    async def async_start(self, own: PeerInfo) -> None:
        """Register (awaiting probing and the first announcement) and start browsing."""
        if self._interfaces is None:
            self._aiozc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        else:
            self._aiozc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        # Browse first so peers show up while our own probing (about 1 s) runs.
        self._browser = AsyncServiceBrowser(
            self._aiozc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change]
        )
        self._info = self._service_info(own)
        # async_register_service returns once probing is done; its result is the announce task.
        await (await self._aiozc.async_register_service(self._info))

    async def async_update(self, own: PeerInfo) -> None:
        """Re-announce changed TXT properties (name, profile, queues)."""
        if self._aiozc is None or self._closed:
            return
        self._info = self._service_info(own)
        await (await self._aiozc.async_update_service(self._info))

    async def async_close(self) -> None:
        """Unregister (awaited: peers receive the goodbye) and shut zeroconf down."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._aiozc is not None:
            if self._info is not None:
                try:
                    await (await self._aiozc.async_unregister_service(self._info))
                except Exception:  # noqa: BLE001 - shutdown must go on (e.g. link down)
                    log.warning("mDNS unregister failed", exc_info=True)
            await self._aiozc.async_close()

    # -- browsing --

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if self._closed:
            return
        log.debug("mDNS %s %s", state_change.name, name)
        if state_change is ServiceStateChange.Removed:
            node_id = node_id_from_instance(name)
            if node_id is not None:
                self._on_removed(node_id)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zeroconf, _RESOLVE_TIMEOUT_MS):
            log.debug("could not resolve %s", name)
            return
        try:
            peer = PeerInfo.from_txt(
                info.properties or {}, tuple(info.parsed_addresses(IPVersion.V4Only))
            )
        except BadPeerInfo as exc:
            log.info("ignoring mDNS service %s: %s", name, exc.message)
            return
        if info.port and info.port != peer.api_port:
            # SRV is what zeroconf resolved; trust it over a TXT copy.
            peer = dataclasses.replace(peer, api_port=info.port)
        if not self._closed:
            self._on_info(peer)
