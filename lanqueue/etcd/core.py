"""The rules of a queue kept in etcd, as pure functions that build whole transactions.

Where a LAN queue has a home node that grants leases by hand (lanqueue/sync), an etcd queue lets
etcd do it. Everything of one queue lives under `/lanqueue/q/<queue>/`:

    job/<id>          the job document (JSON): name, counts, sets with file digests, conflicts
    hold/<id>         who prints it now; attached to the holder's *print lease* (TTL). Its
                      create revision is the fencing token: etcd revisions only grow, across
                      restarts of any node and of etcd itself.
    fence/<id>        attached to the holder's *lock-delay lease* (TTL + lock-delay), so a job
                      whose holder vanished is granted again only after TTL + lock-delay (S4, L2)
                      by etcd's own clock: no wall clock of any node is compared with another.
    done/<id>/<key>   one per completion report, written in the transaction that counts it:
                      a report retried after a lost answer finds its key and is not counted twice.
    node/<node id>    a member's name and printer, attached to its print lease (the peer list).
    files/secret      random bytes made by the first node, the key that signs file fetches
                      between the queue's nodes (readable only with etcd's credentials).

Each transaction compares what it read (the job's mod revision, the hold's create revision)
so two nodes acting at once cannot both win: the loser sees `succeeded = false` and reads again.
A completion counts only if the hold it names is still the current one (S3); otherwise it is
recorded as a conflict in the job, idempotently, and counts nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..model import Job, PrintSet, apply_success, next_set
from .txn import Compare, Delete, Put, prefix_end

__all__ = [
    "MAX_DOC",
    "DocError",
    "Hold",
    "JobDoc",
    "Keys",
    "Plan",
    "plan_complete",
    "plan_conflict",
    "plan_create",
    "plan_delete",
    "plan_grant",
    "plan_release",
    "plan_update",
]

MAX_DOC = 512 * 1024  # a job document larger than this in etcd is refused as damaged
MAX_CONFLICTS = 50


class DocError(ValueError):
    """A value read from etcd is not a document this version understands."""


@dataclass(frozen=True)
class Keys:
    queue: str

    @property
    def prefix(self) -> bytes:
        return f"/lanqueue/q/{self.queue}/".encode()

    def job(self, job_id: str) -> bytes:
        return self.prefix + b"job/" + job_id.encode()

    def hold(self, job_id: str) -> bytes:
        return self.prefix + b"hold/" + job_id.encode()

    def fence(self, job_id: str) -> bytes:
        return self.prefix + b"fence/" + job_id.encode()

    def done(self, job_id: str, key: str) -> bytes:
        return self.prefix + b"done/" + job_id.encode() + b"/" + key.encode()

    def done_prefix(self, job_id: str) -> bytes:
        return self.prefix + b"done/" + job_id.encode() + b"/"

    def node(self, node_id: str) -> bytes:
        return self.prefix + b"node/" + node_id.encode()

    @property
    def secret(self) -> bytes:
        return self.prefix + b"files/secret"

    def kind(self, key: bytes) -> tuple[str, str]:
        """(kind, id) of a key under this queue's prefix, e.g. ("job", "<uuid>")."""
        rest = key[len(self.prefix):].decode("utf-8", "replace")
        kind, _, ident = rest.partition("/")
        return kind, ident


@dataclass(frozen=True)
class JobDoc:
    """A job as stored in etcd: the model's job (string ids: `<job id>_<n>` for sets) plus each
    set's file digest and the conflicts its completions raised."""

    job: Job
    hashes: tuple[str, ...]
    conflicts: tuple[dict[str, Any], ...] = ()

    def encode(self) -> bytes:
        j = self.job
        return json.dumps({
            "v": 1, "id": j.id, "name": j.name, "count": j.count, "remaining": j.remaining,
            "draft": j.draft, "created": j.created, "rank": j.rank,
            "sets": [{"path": s.path, "count": s.count, "remaining": s.remaining, "completed": s.completed,
                      "materials": s.materials, "profiles": s.profiles, "metadata": s.metadata,
                      "sha256": h} for s, h in zip(j.sets, self.hashes, strict=True)],
            "conflicts": list(self.conflicts),
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, queue: str, raw: bytes) -> JobDoc:
        if len(raw) > MAX_DOC:
            raise DocError("job document too large")
        try:
            d = json.loads(raw)
            job_id = _text(d["id"])
            sets = [
                PrintSet(id=f"{job_id}_{i}", path=_text(s["path"]), count=_count(s["count"]),
                         remaining=_count(s["remaining"]), completed=_count(s.get("completed", 0)),
                         rank=float(i), materials=[None if m is None else _text(m) for m in s.get("materials", [])],
                         profiles=[_text(p) for p in s.get("profiles", [])], metadata=s.get("metadata"))
                for i, s in enumerate(d["sets"])
            ]
            hashes = tuple(_text(s["sha256"]) for s in d["sets"])
            job = Job(id=job_id, queue=queue, name=_text(d["name"]), count=_count(d["count"]),
                      remaining=_count(d["remaining"]), draft=bool(d["draft"]), created=int(d["created"]),
                      rank=_finite(d["rank"]), sets=sets)
            conflicts = tuple(c for c in d.get("conflicts", []) if isinstance(c, dict))
        except (KeyError, TypeError, ValueError, RecursionError) as e:
            raise DocError(f"not a lanqueue job document: {e}") from None
        return cls(job, hashes, conflicts)

    def counted(self, set_index: int) -> JobDoc:
        """The document after one successful print of set `set_index` (the model's one rule)."""
        return replace(self, job=apply_success(self.job, self.job.sets[set_index].id))

    def next_index(self) -> int | None:
        s = next_set(self.job)
        return None if s is None else self.job.sets.index(s)


@dataclass(frozen=True)
class Hold:
    """hold/<id>: which node prints which set, under which token (the key's create revision)."""

    holder: str
    holder_name: str
    set_index: int
    token: int = 0

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "name": self.holder_name, "set": self.set_index}).encode()

    @classmethod
    def decode(cls, raw: bytes, create_revision: int) -> Hold:
        try:
            d = json.loads(raw)
            return cls(_text(d["holder"]), _text(d.get("name", "")), int(d["set"]), create_revision)
        except (KeyError, TypeError, ValueError, RecursionError) as e:
            raise DocError(f"not a lanqueue hold: {e}") from None


@dataclass(frozen=True)
class Plan:
    """One transaction to send: if every comparison holds, do `success`."""

    compare: tuple[Compare, ...]
    success: tuple[Put | Delete, ...]
    failure: tuple[Put | Delete, ...] = field(default=())


def plan_create(keys: Keys, doc: JobDoc) -> Plan:
    key = keys.job(str(doc.job.id))
    return Plan((Compare(key, "CREATE", 0),), (Put(key, doc.encode()),))


def plan_update(keys: Keys, doc: JobDoc, read_revision: int) -> Plan:
    """Write `doc` if the job is unchanged since it was read at `read_revision` (its mod revision)."""
    key = keys.job(str(doc.job.id))
    return Plan((Compare(key, "MOD", read_revision),), (Put(key, doc.encode()),))


def plan_delete(keys: Keys, job_id: str, read_revision: int) -> Plan:
    """Remove a job that nobody holds (a held job is refused: the hold must be absent)."""
    return Plan(
        (Compare(keys.job(job_id), "MOD", read_revision), Compare(keys.hold(job_id), "CREATE", 0)),
        (Delete(keys.job(job_id)), Delete(keys.fence(job_id)), Delete(keys.done_prefix(job_id), prefix_end(keys.done_prefix(job_id)))),
    )


def plan_grant(keys: Keys, job_id: str, read_revision: int, hold: Hold, print_lease: int, fence_lease: int) -> Plan:
    """Hold the job for this node: only if nobody holds it, its lock-delay fence has expired and
    the job did not change since it was read (still printable as the node judged it)."""
    return Plan(
        (Compare(keys.job(job_id), "MOD", read_revision),
         Compare(keys.hold(job_id), "CREATE", 0),
         Compare(keys.fence(job_id), "CREATE", 0)),
        (Put(keys.hold(job_id), hold.encode(), print_lease),
         Put(keys.fence(job_id), b"", fence_lease)),
    )


def plan_release(keys: Keys, job_id: str, token: int) -> Plan:
    """Let go of a hold, only if it is still ours (the token is the hold's create revision)."""
    return Plan((Compare(keys.hold(job_id), "CREATE", token),),
                (Delete(keys.hold(job_id)), Delete(keys.fence(job_id))))


def plan_complete(keys: Keys, doc: JobDoc, read_revision: int, token: int, key: str, set_index: int,
                  report: bytes) -> Plan:
    """Count one finished print: only while the hold that started it is current (fencing), once
    per idempotency key, on the job as read. The hold and fence go with it."""
    job_id = str(doc.job.id)
    return Plan(
        (Compare(keys.job(job_id), "MOD", read_revision),
         Compare(keys.hold(job_id), "CREATE", token),
         Compare(keys.done(job_id, key), "CREATE", 0)),
        (Put(keys.job(job_id), doc.counted(set_index).encode()),
         Put(keys.done(job_id, key), report),
         Delete(keys.hold(job_id)),
         Delete(keys.fence(job_id))),
    )


def plan_conflict(keys: Keys, doc: JobDoc, read_revision: int, key: str, conflict: dict[str, Any],
                  report: bytes) -> Plan:
    """Record a completion that cannot count (its hold is gone or another's): a conflict in the
    job, once per key, counts untouched."""
    job_id = str(doc.job.id)
    conflicts = (*doc.conflicts, conflict)[-MAX_CONFLICTS:]
    return Plan(
        (Compare(keys.job(job_id), "MOD", read_revision), Compare(keys.done(job_id, key), "CREATE", 0)),
        (Put(keys.job(job_id), replace(doc, conflicts=conflicts).encode()), Put(keys.done(job_id, key), report)),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise TypeError("expected text")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise TypeError("expected a count")
    return value


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("rank must be finite")
    return number
