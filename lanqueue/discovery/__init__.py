"""Discovery and membership: mDNS registration and browsing, static peers, SWIM liveness.

`DiscoveryService` (service.py) is the entry point. The pure parts: `info.py` (what a peer says
about itself, validated), `events.py` (peer views and events), `peers.py` (the peer table, time
passed in), `swim.py` (SWIM membership: failure detection and gossip at a cost per node that
does not grow with the farm). The I/O adapters: `mdns.py` (python-zeroconf), `swimnet.py` (SWIM
over HTTP) and `heartbeat.py` (the hello route: who a static address or new member is).
"""

from __future__ import annotations

from .heartbeat import HELLO_PATH, HELLO_SOURCE, hello_handler, routes
from .info import SERVICE_TYPE
from .peers import (
    BadPeerInfo,
    Peer,
    PeerAppeared,
    PeerChanged,
    PeerEvent,
    PeerGone,
    PeerInfo,
    PeerOffline,
    PeerOnline,
    PeerStatus,
    PeerTable,
)
from .service import DiscoveryService, parse_peer_address

__all__ = [
    "BadPeerInfo",
    "DiscoveryService",
    "HELLO_PATH",
    "HELLO_SOURCE",
    "Peer",
    "PeerAppeared",
    "PeerChanged",
    "PeerEvent",
    "PeerGone",
    "PeerInfo",
    "PeerOffline",
    "PeerOnline",
    "PeerStatus",
    "PeerTable",
    "SERVICE_TYPE",
    "hello_handler",
    "parse_peer_address",
    "routes",
]
