"""LAN records as the queue model: a replicated `JobRecord` becomes a `model.Job` whose
`replica` carries what only a LAN job has (lease holder, home and whether it is reachable,
epoch and version, file digest, conflicts, why it waits). The wire format is shaped once, by the
presenter in `lanqueue.api.views`, for jobs of every queue.

Ids as the original plugin shows LAN jobs: the job's UUID, `<uuid>_<n>` for its n-th set, and
the set's position as its rank."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..model import Job, PrintSet, Replica, set_printable
from . import codec
from .records import JobRecord

if TYPE_CHECKING:
    from .directory import LanQueue, PeerDirectory

__all__ = ["job_of", "ordered", "peers_of", "printable_set", "set_id", "set_index"]


def ordered(q: LanQueue) -> list[JobRecord]:
    """The queue's live jobs in rank order (ties: oldest first)."""
    recs = [r for r in q.core.records.values() if not r.tombstone]
    return sorted(recs, key=lambda r: (r.rank, r.created, r.id))


def set_id(job_id: str, index: int) -> str:
    return f"{job_id}_{index}"


def set_index(job_id: str, sid: Any) -> int | None:
    """The position named by a `<uuid>_<n>` set id of this job, or None."""
    prefix = f"{job_id}_"
    if not isinstance(sid, str) or not sid.startswith(prefix) or not sid[len(prefix):].isdigit():
        return None
    return int(sid[len(prefix):])


def printable_set(rec: JobRecord, node_id: str, online: dict[str, str] | Sequence[str], profile: str,
                  loaded: Sequence[str | None], fits: Callable[[PrintSet], bool] | None = None) -> int | None:
    """The index of the set this printer could print next from `rec`, or None: the job must
    have something left, its home must be reachable (to grant a lease), no other node may hold
    it, the set must suit the printer's profile and loaded materials, and `fits` (the printer's
    limit of the moment: attended hours) must accept it."""
    index = rec.next_set()
    if index is None or (rec.home != node_id and rec.home not in online):
        return None
    if rec.lease_holder not in (None, node_id):
        return None
    s = rec.sets[index]
    wanted = PrintSet(id=index, path=s.path, materials=[m or None for m in s.materials], profiles=list(s.profiles),
                      gcode=gcode_of(s.gcode))  # a set naming no materials needs its file's
    if fits is not None and not fits(wanted):
        return None
    return index if set_printable(wanted, profile, loaded) else None


def job_of(q: LanQueue, r: JobRecord, node_id: str, directory: PeerDirectory,
           online: dict[str, str] | None = None) -> Job:
    """The record as a model job (pass `online` when converting many, to ask discovery once)."""
    online = directory.online(q.name) if online is None else online
    home_online = r.home == node_id or r.home in online
    home_name = "this node" if r.home == node_id else directory.name_of(r.home)
    holder = r.lease_holder
    waiting = None
    if not home_online and r.acquirable:
        waiting = f"waiting for its home {home_name} (offline): adopt its jobs to print them"
    replica = Replica(
        acquired_by=holder,
        acquired_by_name=None if holder is None else ("this node" if holder == node_id else directory.name_of(holder)),
        home=r.home, home_name=home_name, home_online=home_online,
        epoch=r.epoch, version=r.version,
        hash=r.sets[0].hash if r.sets else None,
        conflicts=tuple(codec.encode(c) for c in r.conflicts),
        waiting_reason=waiting,
    )
    sets = [
        PrintSet(id=set_id(r.id, i), path=s.path, count=s.count, remaining=s.remaining, completed=s.completed,
                 rank=float(i), sd=False, materials=list(s.materials), profiles=list(s.profiles),
                 metadata=None, missing_file=False, hash=s.hash, gcode=gcode_of(s.gcode))
        for i, s in enumerate(r.sets)
    ]
    return Job(id=r.id, queue=q.name, name=r.name, count=r.count, remaining=r.remaining, draft=r.draft,
               created=int(r.created), rank=r.rank, sets=sets, acquired=holder is not None, replica=replica)


def gcode_of(text: str) -> dict[str, Any] | None:
    """The slicer's metadata a record carries; a peer's malformed text is shown as none."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def peers_of(q: LanQueue, directory: PeerDirectory) -> dict[str, Any]:
    """The queue's members as the original's `peers` object, keyed by node id."""
    live = ordered(q)
    return {
        p["node_id"]: {
            "name": p.get("name"),
            "status": _peer_status(p),
            "profile": {"name": p.get("profile")},
            "active_set": None,
            "run": next((r.name for r in live if r.lease_holder == p["node_id"]), None),
            "acquired": [r.id for r in q.core.records.values() if r.lease_holder == p["node_id"]],
            "online": p.get("status") == "online",
        }
        for p in directory.snapshot()
        if q.name in (p.get("queues") or [])
    }


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
