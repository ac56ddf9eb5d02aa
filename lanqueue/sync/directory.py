"""What the LAN service works with, apart from the service itself: the queues this node joined
(each with its secret, protocol core and lock) and where their peers are.

Kept out of `service.py` so the modules the service uses (views, file fetching) can name these
types without importing the service (no import cycle, type-checking imports included).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .protocol import LanNodeCore

__all__ = ["LanQueue", "PeerDirectory"]


@dataclass
class LanQueue:
    """A joined LAN queue: its name and secret, its protocol core, and the lock under which a
    core call and the persisting of its results happen (the core never sees two inputs at once)."""

    name: str
    secret: bytes
    core: LanNodeCore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PeerDirectory:
    """Where peers are: node id -> base URL of the online, trusted peers of a queue (from
    discovery; empty without it)."""

    def __init__(self, discovery: Any) -> None:
        self.discovery = discovery

    def online(self, queue: str) -> dict[str, str]:
        if self.discovery is None:
            return {}
        return {p.node_id: p.base_url for p in self.discovery.online_peers(queue) if p.base_url}

    def name_of(self, node_id: str) -> str:
        if self.discovery is not None:
            for p in self.discovery.peers:
                if p.node_id == node_id:
                    return p.info.name
        return node_id[:8]

    def snapshot(self) -> list[dict[str, Any]]:
        return self.discovery.snapshot() if self.discovery is not None else []
