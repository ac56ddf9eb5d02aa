"""How LAN queues and their jobs look to clients: the original's fields (`acquired`,
`acquired_by_`, `peer_`, `hash`, UUID ids, `<uuid>_<n>` set ids) plus lanqueue's own (home,
whether it is online and why a job waits, epoch and version, conflicts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import codec
from .records import JobRecord

if TYPE_CHECKING:
    from .service import LanQueue, PeerDirectory

__all__ = ["ordered", "queue_view", "job_view"]


def ordered(q: LanQueue) -> list[JobRecord]:
    """The queue's live jobs in rank order (ties: oldest first)."""
    recs = [r for r in q.core.records.values() if not r.tombstone]
    return sorted(recs, key=lambda r: (r.rank, r.created, r.id))


def queue_view(q: LanQueue, node_id: str, directory: PeerDirectory) -> dict[str, Any]:
    online = directory.online(q.name)
    peers = {
        p["node_id"]: {
            "name": p.get("name"),
            "status": _peer_status(p),
            "profile": {"name": p.get("profile")},
            "active_set": None,
            "run": next((r.name for r in ordered(q) if r.lease_holder == p["node_id"]), None),
            "acquired": [r.id for r in q.core.records.values() if r.lease_holder == p["node_id"]],
            "online": p.get("status") == "online",
        }
        for p in directory.snapshot()
        if q.name in (p.get("queues") or [])
    }
    return {
        "name": q.name,
        "addr": node_id,
        "peers": peers,
        "jobs": [job_view(q, r, node_id, directory, online) for r in ordered(q)],
    }


def job_view(q: LanQueue, r: JobRecord, node_id: str, directory: PeerDirectory,
             online: dict[str, str] | None = None) -> dict[str, Any]:
    online = directory.online(q.name) if online is None else online
    home_online = r.home == node_id or r.home in online
    home_name = "this node" if r.home == node_id else directory.name_of(r.home)
    holder = r.lease_holder
    view = {
        "id": r.id, "queue": q.name, "name": r.name, "count": r.count, "remaining": r.remaining,
        "draft": r.draft, "created": int(r.created), "rank": r.rank,
        "acquired": holder is not None,
        # the holder's node id, a key of the queue's `peers` (or this node's `addr`), as the original
        "acquired_by_": holder,
        "acquired_by_name": None if holder is None else ("this node" if holder == node_id else directory.name_of(holder)),
        "peer_": r.home, "home": r.home, "home_name": home_name, "home_online": home_online,
        "epoch": r.epoch, "version": r.version,
        "hash": r.sets[0].hash if r.sets else None,
        "conflicts": [codec.encode(c) for c in r.conflicts],
        "sets": [
            {
                "id": f"{r.id}_{i}", "path": s.path, "count": s.count, "remaining": s.remaining,
                "completed": s.completed, "rank": float(i), "sd": False, "materials": list(s.materials),
                "profiles": list(s.profiles), "metadata": None, "hash": s.hash, "missing_file": False,
            }
            for i, s in enumerate(r.sets)
        ],
    }
    if not home_online and r.acquirable:
        view["waiting_reason"] = f"waiting for its home {home_name} (offline): adopt its jobs to print them"
    return view


def _peer_status(p: dict[str, Any]) -> str:
    """The original's peer states from what the peer's heartbeat said about its printer."""
    if p.get("status") != "online":
        return "OFFLINE"
    status = str(p.get("printer_status") or "").lower()
    if "print" in status:
        return "BUSY"
    if "pause" in status:
        return "PAUSED"
    return "IDLE"
