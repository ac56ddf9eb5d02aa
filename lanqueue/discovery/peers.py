"""The peer table: who is out there, and who is alive.

Everything that decides a peer's status lives here, free of I/O and clocks: callers pass in what
they observed (an mDNS record, a heartbeat answer or failure) together with `now`, a monotonic
time in seconds, and get back the events it caused. That way liveness is tested by passing
`now + 10` instead of sleeping, and the asyncio adapters (`mdns.py`, `heartbeat.py`,
`service.py`) stay thin.

Why two sources: mDNS tells us a peer exists and where (and says goodbye on a clean shutdown),
but says nothing when a node is killed or its cable pulled. Application heartbeats over HTTP say
whether it is alive. Status therefore changes only on heartbeats (or on an mDNS goodbye):

- a peer first seen on mDNS starts ONLINE (it just announced itself) and is checked at once;
- a peer is marked OFFLINE after `max_missed` failed heartbeats in a row, or when nothing
  succeeded for `offline_after` seconds (a heartbeat that hangs counts as missed too);
- an OFFLINE peer that answers a heartbeat is ONLINE again;
- an OFFLINE peer not heard from for `forget_after` seconds is dropped (PeerGone), except static
  peers, which the user configured and which are kept for good.

A peer whose protocol version differs from ours is listed but not trusted: no LAN traffic goes
to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .events import (
    Peer,
    PeerAppeared,
    PeerChanged,
    PeerEvent,
    PeerGone,
    PeerOffline,
    PeerOnline,
    PeerStatus,
)
from .info import MAX_ADDRESSES, MAX_QUEUES, BadPeerInfo, PeerInfo

__all__ = [
    "BadPeerInfo",
    "HeartbeatTarget",
    "PeerInfo",
    "PeerStatus",
    "Peer",
    "PeerEvent",
    "PeerAppeared",
    "PeerChanged",
    "PeerOffline",
    "PeerOnline",
    "PeerGone",
    "PeerTable",
    "MAX_QUEUES",
]

MAX_CONTACTS = 64
CONTACT_TTL = 30.0


# -- the table -----------------------------------------------------------------------------


@dataclass
class _Entry:
    info: PeerInfo
    status: PeerStatus
    static: bool
    address: str | None
    port: int
    first_seen: float
    last_seen: float
    missed: int = 0
    offline_reason: str | None = None
    remote_status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatTarget:
    """Where to send the next heartbeat: a known peer, or a static address not yet answered."""

    host: str
    port: int
    node_id: str | None


class PeerTable:
    """Peers and their liveness; every method takes `now` and returns the events it caused."""

    def __init__(
        self,
        own_id: str,
        protocol_version: int,
        *,
        max_missed: int = 3,
        offline_after: float = 6.0,
        forget_after: float = 3600.0,
        max_peers: int = 256,
    ) -> None:
        if max_missed < 1 or offline_after <= 0 or max_peers < 1:
            raise ValueError("max_missed, offline_after and max_peers must be positive")
        self.own_id = own_id
        self.protocol_version = protocol_version
        self.max_missed = max_missed
        self.offline_after = offline_after
        self.forget_after = forget_after
        self.max_peers = max_peers
        self._peers: dict[str, _Entry] = {}
        # static "host:port" -> node id that last answered there (None until one did)
        self._static: dict[tuple[str, int], str | None] = {}
        # addresses that called us but are not in the table yet -> when they called
        self._contacts: dict[tuple[str, int], float] = {}
        self.dropped = 0
        """Observations ignored because the table was full of online peers."""

    # -- views --

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, node_id: str) -> Peer | None:
        entry = self._peers.get(node_id)
        return None if entry is None else self._view(entry)

    def peers(self) -> list[Peer]:
        return [self._view(e) for e in self._peers.values()]

    def snapshot(self, now: float, wall_now: float | None = None) -> list[dict[str, Any]]:
        peers = sorted(self.peers(), key=lambda p: (p.info.name, p.node_id))
        return [p.to_dict(now, wall_now) for p in peers]

    def online_peers(self, queue: str | None = None) -> list[Peer]:
        """Trusted, online peers with a known address, optionally only members of `queue`."""
        return [
            p
            for p in self.peers()
            if p.online
            and p.trusted
            and p.address is not None
            and (queue is None or queue in p.info.queues)
        ]

    def targets(self) -> list[HeartbeatTarget]:
        """Everything the heartbeat loop should contact now: known peers (online or not) at
        their current address, plus static addresses no known peer answers on."""
        out: list[HeartbeatTarget] = []
        covered: set[tuple[str, int]] = set()
        for e in self._peers.values():
            if e.address is not None:
                out.append(HeartbeatTarget(e.address, e.port, e.info.node_id))
                covered.add((e.address, e.port))
        for host, port in self._static:
            if (host, port) not in covered:
                out.append(HeartbeatTarget(host, port, None))
                covered.add((host, port))
        for host, port in self._contacts:
            if (host, port) not in covered:
                out.append(HeartbeatTarget(host, port, None))
        return out

    # -- inputs --

    def add_static(self, host: str, port: int) -> None:
        """A peer address the user configured (for networks where multicast does not pass)."""
        self._static.setdefault((host, port), None)

    def add_contact(self, node_id: str, host: str, port: int, now: float) -> None:
        """A node we do not know (or think offline) sent us a heartbeat: contact it back
        soon, so a `--peer` configured on one side only is enough. Bounded, and forgotten
        after CONTACT_TTL seconds without an answer."""
        entry = self._peers.get(node_id)
        if node_id == self.own_id or (entry is not None and entry.status is PeerStatus.ONLINE):
            return
        if len(self._contacts) >= MAX_CONTACTS and (host, port) not in self._contacts:
            self.dropped += 1
            return
        self._contacts[(host, port)] = now

    def observe_mdns(self, info: PeerInfo, now: float) -> list[PeerEvent]:
        """An mDNS announcement or resolution. Adds the peer (ONLINE: it just spoke) or
        refreshes its info; does not bring an offline peer back, only a heartbeat does."""
        if info.node_id == self.own_id:
            return []
        entry = self._peers.get(info.node_id)
        if entry is None:
            return self._add(info, now, static=False, address=_first(info.addresses))
        events = self._update_info(entry, info)
        entry.port = info.api_port  # a restarted peer may listen elsewhere now
        if entry.address not in entry.info.addresses and entry.info.addresses:
            entry.address = entry.info.addresses[0]
        if entry.status is PeerStatus.ONLINE:
            entry.last_seen = max(entry.last_seen, now)
        return events

    def mdns_removed(self, node_id: str, now: float) -> list[PeerEvent]:
        """The peer said goodbye on mDNS (clean shutdown): offline at once."""
        entry = self._peers.get(node_id)
        if entry is None or entry.status is PeerStatus.OFFLINE:
            return []
        return self._go_offline(entry, "goodbye")

    def heartbeat_ok(
        self,
        node_id: str,
        info: PeerInfo,
        now: float,
        *,
        address: str,
        port: int | None = None,
        remote_status: Mapping[str, Any] | None = None,
    ) -> list[PeerEvent]:
        """A hello answer from `address`. `node_id` is who we meant to reach (None-like ""
        for a static address not yet known); `info.node_id` is who answered."""
        if info.node_id == self.own_id:
            return []
        events: list[PeerEvent] = []
        static_key = (address, port if port is not None else info.api_port)
        is_static = static_key in self._static
        self._contacts.pop(static_key, None)
        if is_static:
            self._static[static_key] = info.node_id
        if node_id and node_id != info.node_id:
            # another node now answers at that address (e.g. restarted with a new data dir):
            # the one we meant to reach did not answer.
            events += self.heartbeat_failed(node_id, now)
        entry = self._peers.get(info.node_id)
        if entry is None:
            merged = replace(info, addresses=(address,))
            events += self._add(merged, now, static=is_static, address=address, port=static_key[1])
            entry = self._peers.get(info.node_id)
            if entry is None:
                return events
        else:
            addresses = entry.info.addresses
            if address not in addresses:
                addresses = (address,) + addresses[: MAX_ADDRESSES - 1]
            events += self._update_info(entry, replace(info, addresses=addresses))
            entry.static = entry.static or is_static
        entry.address = address
        entry.port = static_key[1]
        entry.missed = 0
        entry.last_seen = max(entry.last_seen, now)
        if remote_status is not None:
            entry.remote_status = dict(remote_status)
        if entry.status is PeerStatus.OFFLINE:
            entry.status = PeerStatus.ONLINE
            entry.offline_reason = None
            events.append(PeerOnline(self._view(entry)))
        return events

    def heartbeat_failed(self, node_id: str, now: float) -> list[PeerEvent]:
        """A heartbeat to a known peer failed (refused, timed out, bad answer). Try its next
        advertised address next time; offline after `max_missed` in a row."""
        entry = self._peers.get(node_id)
        if entry is None:
            return []
        entry.missed += 1
        addresses = entry.info.addresses
        if len(addresses) > 1 and entry.address in addresses:
            entry.address = addresses[(addresses.index(entry.address) + 1) % len(addresses)]
        if entry.status is PeerStatus.ONLINE and entry.missed >= self.max_missed:
            return self._go_offline(entry, "heartbeat")
        return []

    def set_online(self, node_id: str, online: bool, now: float, reason: str) -> list[PeerEvent]:
        """A verdict from membership (SWIM): up or down. An offline peer keeps the reason it
        went offline with (an mDNS goodbye stays a goodbye when SWIM later agrees)."""
        entry = self._peers.get(node_id)
        if entry is None:
            return []
        if online and entry.status is PeerStatus.OFFLINE:
            entry.status = PeerStatus.ONLINE
            entry.offline_reason = None
            entry.missed = 0
            entry.last_seen = max(entry.last_seen, now)
            return [PeerOnline(self._view(entry))]
        if not online and entry.status is PeerStatus.ONLINE:
            return self._go_offline(entry, reason)
        return []

    def tick(self, now: float) -> list[PeerEvent]:
        """Time-driven changes: silent online peers go offline, long-offline peers are forgotten."""
        events: list[PeerEvent] = []
        for key, since in list(self._contacts.items()):
            if now - since > CONTACT_TTL:
                del self._contacts[key]
        for node_id, entry in list(self._peers.items()):
            silent = now - entry.last_seen
            if entry.status is PeerStatus.ONLINE and silent > self.offline_after:
                events += self._go_offline(entry, "heartbeat")
            elif (
                entry.status is PeerStatus.OFFLINE
                and not entry.static
                and silent > self.forget_after
            ):
                del self._peers[node_id]
                events.append(PeerGone(self._view(entry)))
        return events

    # -- internals --

    def _view(self, e: _Entry) -> Peer:
        return Peer(
            info=e.info,
            status=e.status,
            trusted=e.info.protocol == self.protocol_version,
            static=e.static,
            address=e.address,
            port=e.port,
            first_seen=e.first_seen,
            last_seen=e.last_seen,
            missed=e.missed,
            offline_reason=e.offline_reason,
            remote_status=dict(e.remote_status),
        )

    def _add(
        self,
        info: PeerInfo,
        now: float,
        *,
        static: bool,
        address: str | None,
        port: int | None = None,
    ) -> list[PeerEvent]:
        events: list[PeerEvent] = []
        if len(self._peers) >= self.max_peers:
            victim = self._eviction_candidate()
            if victim is None:
                self.dropped += 1
                return []
            del self._peers[victim.info.node_id]
            events.append(PeerGone(self._view(victim)))
        entry = _Entry(
            info=info,
            status=PeerStatus.ONLINE,
            static=static,
            address=address,
            port=info.api_port if port is None else port,
            first_seen=now,
            last_seen=now,
        )
        self._peers[info.node_id] = entry
        events.append(PeerAppeared(self._view(entry)))
        return events

    def _eviction_candidate(self) -> _Entry | None:
        # Only offline, non-static peers make room: a full table never pushes out a live one.
        offline = [
            e for e in self._peers.values() if e.status is PeerStatus.OFFLINE and not e.static
        ]
        return min(offline, key=lambda e: e.last_seen, default=None)

    def _update_info(self, entry: _Entry, info: PeerInfo) -> list[PeerEvent]:
        if not info.addresses:  # the source did not say where: keep what we knew
            info = replace(info, addresses=entry.info.addresses)
        if info == entry.info:
            return []
        old = entry.info
        entry.info = info
        return [PeerChanged(self._view(entry), old)]

    def _go_offline(self, entry: _Entry, reason: str) -> list[PeerEvent]:
        entry.status = PeerStatus.OFFLINE
        entry.offline_reason = reason
        return [PeerOffline(self._view(entry), reason)]


def _first(addresses: tuple[str, ...]) -> str | None:
    return addresses[0] if addresses else None
