"""LAN queues: the pure protocol core (no I/O) and the pieces around it.

The core is `LanNodeCore` (one per node and LAN queue): feed it peer messages, ticks and local
requests with the node's monotonic `now`; execute the actions it returns in order (persist, then
events, then sends). Module map: `records` (replicated job records, counting rules, timings),
`messages` (peer messages and actions), `home` (the lease table of a job's home), `holder`
(leases, prints and outbox of a printing node), `durable` (what is on disk), `identity` (a
restart told from a cloned card by per-run instance ids), `protocol` (the core, with its sync
gate after restarts), `auth` (HMAC request signing without clocks), `errors`.
"""

from __future__ import annotations

from .durable import DurableState
from .errors import LocalProtocolError, NotHomeError, RemoteProtocolError
from .protocol import LanNodeCore
from .records import JobRecord, SetRecord, Timings

__all__ = [
    "DurableState",
    "JobRecord",
    "LanNodeCore",
    "LocalProtocolError",
    "NotHomeError",
    "RemoteProtocolError",
    "SetRecord",
    "Timings",
]
