"""Peer views and the events the peer table emits (small frozen dataclasses, one base class)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .info import PeerInfo

__all__ = [
    "Peer",
    "PeerAppeared",
    "PeerChanged",
    "PeerEvent",
    "PeerGone",
    "PeerOffline",
    "PeerOnline",
    "PeerStatus",
]


class PeerStatus(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Peer:
    """An immutable view of one table entry, safe to hand to other modules."""

    info: PeerInfo
    status: PeerStatus
    trusted: bool
    static: bool
    address: str | None
    """The address that last answered a heartbeat (else the first advertised one)."""
    port: int
    """The port that last answered (differs from `info.api_port` behind a port mapping)."""
    first_seen: float
    last_seen: float
    """Monotonic time of the last sign of life (heartbeat answer, or mDNS announcement)."""
    missed: int
    offline_reason: str | None
    remote_status: Mapping[str, Any] = field(default_factory=dict)
    """`status` and `current_job` from the peer's last hello answer."""

    @property
    def node_id(self) -> str:
        return self.info.node_id

    @property
    def online(self) -> bool:
        return self.status is PeerStatus.ONLINE

    @property
    def base_url(self) -> str | None:
        """`http://host:port` of the peer's API, or None if no address is known yet."""
        if self.address is None:
            return None
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def to_dict(self, now: float, wall_now: float | None = None) -> dict[str, Any]:
        """JSON-able form for the API. `last_seen_age` is in seconds; `last_seen` is a Unix
        time only if the caller passes `wall_now` (monotonic times mean nothing elsewhere)."""
        age = max(0.0, now - self.last_seen)
        return {
            "node_id": self.info.node_id,
            "name": self.info.name,
            "addresses": list(self.info.addresses),
            "address": self.address,
            "port": self.port,
            "api_port": self.info.api_port,
            "base_url": self.base_url,
            "profile": self.info.profile,
            "queues": list(self.info.queues),
            "protocol": self.info.protocol,
            "trusted": self.trusted,
            "status": self.status.value,
            "offline_reason": self.offline_reason,
            "static": self.static,
            "missed": self.missed,
            "last_seen": None if wall_now is None else round(wall_now - age, 3),
            "last_seen_age": round(age, 3),
            "printer_status": self.remote_status.get("status"),
            "current_job": self.remote_status.get("current_job"),
        }


# -- events (frozen, one base class) -------------------------------------------------------


@dataclass(frozen=True)
class PeerEvent:
    peer: Peer


@dataclass(frozen=True)
class PeerAppeared(PeerEvent):
    """A node we did not know is in the table."""


@dataclass(frozen=True)
class PeerChanged(PeerEvent):
    """Name, addresses, port, profile, queues or protocol changed."""

    old: PeerInfo


@dataclass(frozen=True)
class PeerOffline(PeerEvent):
    """An online peer stopped answering ("heartbeat") or said goodbye on mDNS ("goodbye")."""

    reason: str


@dataclass(frozen=True)
class PeerOnline(PeerEvent):
    """An offline peer answered a heartbeat again."""


@dataclass(frozen=True)
class PeerGone(PeerEvent):
    """The peer left the table (offline for `forget_after`, or evicted for room)."""
