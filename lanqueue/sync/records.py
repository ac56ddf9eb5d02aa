"""Replicated LAN job records, how completions are counted in them, and the protocol's timings.

A record is the whole job as every peer of a LAN queue sees it. Only the job's home writes it, so
replication needs no merge logic: the copy with the highest `(epoch, version)` wins. `epoch` moves
when the home changes (drain, adopt); `version` moves on every write by the home, including lease
grants, because the grant (holder and fencing token) is part of the durable record: persisting
the record *is* persisting the token (guarantee S2).

Everything here is immutable; changes return new records. No I/O; the counting rule is
`model.count_print`, shared with the local queue.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from ..model import count_print

__all__ = [
    "Timings",
    "SetRecord",
    "ConflictKind",
    "ConflictEntry",
    "JobRecord",
    "Digest",
    "digest_of",
    "is_newer",
    "first_token_of_epoch",
    "next_token",
    "requested_prints",
    "CompletionOutcome",
    "apply_completion",
    "record_problem",
    "MAX_CONFLICTS",
    "MAX_HOLDERS_TRACKED",
    "HANDOFF_RATE_SLACK",
]

#: Conflicts kept per record (oldest dropped first): they are for users to see, not for counting.
MAX_CONFLICTS = 32
#: Adoption starting points kept per record.
MAX_ADOPTIONS = 16
#: Per-holder idempotency high-water marks kept per record.
MAX_HOLDERS_TRACKED = 256
#: Tokens are `epoch << TOKEN_EPOCH_SHIFT | counter`, so every token of a later epoch is larger
#: than every token an earlier home could still hand out (adopt while the old home is cut off).
TOKEN_EPOCH_SHIFT = 32
#: A duration measured on one node's monotonic clock, re-measured on another's: monotonic clock
#: rates of healthy machines differ far less than 1.1/0.9 = 1.22, so 1.25 covers it.
HANDOFF_RATE_SLACK = 1.25


@dataclass(frozen=True)
class Timings:
    """Protocol timings in seconds of each node's own monotonic clock.

    `holder_margin` must cover the worst clock-rate ratio between two nodes: the holder's lease of
    `ttl * (1 - margin)` must end (in real time) before the home's `ttl`. With rates within
    0.9..1.1 of real time the ratio is at most 1.1/0.9, which needs margin >= 0.19.
    """

    ttl: float = 60.0
    renew_every: float = 20.0
    lock_delay: float = 60.0
    holder_margin: float = 0.25
    retry_every: float = 5.0
    anti_entropy_every: float = 30.0
    max_jobs: int = 10_000
    #: Longer than any message of a node's previous run can take to arrive: a node id heard from
    #: an older run this long after a newer run spoke is a second node with the same id (clone).
    identity_grace: float = 15.0

    def __post_init__(self) -> None:
        if not (0 < self.renew_every < self.ttl):
            raise ValueError("renew_every must be positive and shorter than ttl")
        if not (0.0 <= self.holder_margin < 1.0):
            raise ValueError("holder_margin must be in [0, 1)")
        if self.renew_every >= self.ttl * (1.0 - self.holder_margin):
            raise ValueError("renew_every must be shorter than the holder's lease, ttl * (1 - holder_margin)")
        if self.lock_delay < 0 or self.retry_every <= 0 or self.anti_entropy_every <= 0:
            raise ValueError("lock_delay must be >= 0, retry and anti-entropy periods > 0")


@dataclass(frozen=True)
class SetRecord:
    """One file of a job: `count` prints per run of the job, `remaining` in the current run."""

    path: str
    count: int
    remaining: int
    completed: int = 0
    materials: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    hash: str = ""  # sha256 hex of the file's content: files are content-addressed
    # what the slicer wrote in the file (the `gcode` view of lanqueue.gcodemeta) as JSON text,
    # so members that have not fetched the file yet see it too; "" when the file says nothing
    gcode: str = ""


class ConflictKind(enum.Enum):
    STALE_TOKEN = "stale_token"  # completion under a token that is no longer current
    OVER_COMPLETION = "over_completion"  # nothing left to count (job done or set exhausted)
    DELETED = "deleted"  # the job was deleted while it was printed
    DIVERGED = "diverged"  # an old home accepted work after another node adopted the job
    ROLLED_BACK = "rolled_back"  # a node's data went back in time (an older SD card image)


@dataclass(frozen=True)
class ConflictEntry:
    """A report the home could not count; kept in the record so every user sees it."""

    kind: ConflictKind
    holder: str
    token: int
    seq: int
    detail: str = ""


@dataclass(frozen=True)
class JobRecord:
    """A LAN job as replicated to every peer. Written only by `home`."""

    id: str
    queue: str
    home: str
    epoch: int
    version: int
    name: str
    count: int
    remaining: int
    sets: tuple[SetRecord, ...]
    draft: bool = False
    created: float = 0.0  # wall-clock seconds, for display only: never compared between nodes
    rank: float = 0.0
    lease_holder: str | None = None
    lease_token: int = 0  # the current (latest granted) token; never decreases
    lease_req: int = 0  # the holder's acquire request id that created the current holding
    tombstone: bool = False
    #: (holder node id, highest completion seq applied): idempotency across retries and homes.
    applied: tuple[tuple[str, int], ...] = ()
    conflicts: tuple[ConflictEntry, ...] = ()
    #: (epoch, version) of the record an adopter started from, to detect divergent old homes.
    adopted_from: tuple[int, int] | None = None
    #: Every adoption's starting point (bounded, oldest dropped), so an old home from before
    #: several adoptions still finds the copy that was taken from its epoch.
    adoptions: tuple[tuple[int, int], ...] = ()
    #: Drain: how long (seconds of the old home's clock) the old home would still have kept the
    #: job from anyone else. The new home holds it for that times `HANDOFF_RATE_SLACK`.
    handoff_hold: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        return (self.epoch, self.version)

    @property
    def done(self) -> bool:
        return self.remaining <= 0

    @property
    def acquirable(self) -> bool:
        return not (self.done or self.draft or self.tombstone or not self.sets)

    def next_set(self) -> int | None:
        """Index of the set the next print of this job comes from, or None."""
        if self.done:
            return None
        for i, s in enumerate(self.sets):
            if s.remaining > 0:
                return i
        return None

    def applied_seq(self, holder: str) -> int:
        for h, seq in self.applied:
            if h == holder:
                return seq
        return -1

    def bump(self, **changes: object) -> JobRecord:
        """A new version of this record (same epoch) with `changes`."""
        return replace(self, version=self.version + 1, **changes)  # type: ignore[arg-type]

    def with_conflict(self, entry: ConflictEntry) -> JobRecord:
        conflicts = (self.conflicts + (entry,))[-MAX_CONFLICTS:]
        return self.bump(conflicts=conflicts)


Digest = dict[str, tuple[int, int]]


def digest_of(records: dict[str, JobRecord]) -> Digest:
    """The anti-entropy summary: job id -> (epoch, version)."""
    return {job_id: r.key for job_id, r in records.items()}


def is_newer(candidate: JobRecord, current: JobRecord | None) -> bool:
    return current is None or candidate.key > current.key


def first_token_of_epoch(epoch: int) -> int:
    return (epoch << TOKEN_EPOCH_SHIFT) + 1


def next_token(record: JobRecord) -> int:
    """The next fencing token: above the current one and inside the record's epoch range."""
    return max(record.lease_token + 1, first_token_of_epoch(record.epoch))


def requested_prints(record: JobRecord) -> int:
    return record.count * sum(s.count for s in record.sets)


class CompletionOutcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this idempotency key was applied before: acknowledge, change nothing
    DUPLICATE_CONFLICT = "duplicate_conflict"  # this key was recorded as a conflict before
    CONFLICT = "conflict"


def apply_completion(
    record: JobRecord, holder: str, token: int, seq: int, set_index: int, *, fenced: bool = True
) -> tuple[CompletionOutcome, JobRecord]:
    """The home's decision on one completion report, and the record after it.

    Counting is `model.count_print`, the one rule for every queue. A rejected report becomes a
    recorded conflict and never changes counts (S3).
    """
    if any(c.holder == holder and c.seq == seq for c in record.conflicts):
        return CompletionOutcome.DUPLICATE_CONFLICT, record
    if seq <= record.applied_seq(holder):
        return CompletionOutcome.DUPLICATE, record

    def conflict(kind: ConflictKind, detail: str) -> tuple[CompletionOutcome, JobRecord]:
        # The key is decided too: a late duplicate must not be counted in a later run.
        entry = ConflictEntry(kind=kind, holder=holder, token=token, seq=seq, detail=detail)
        decided = record.with_conflict(entry)
        return CompletionOutcome.CONFLICT, replace(decided, applied=_with_seq(record, holder, seq))

    if record.tombstone:
        return conflict(ConflictKind.DELETED, "job deleted")
    if fenced and token != record.lease_token:
        return conflict(ConflictKind.STALE_TOKEN, f"current token is {record.lease_token}")
    if fenced and record.lease_holder not in (None, holder):
        # The same token granted to another node: only a home whose data went back in time does
        # that (it is why tokens are compared with the holder too).
        return conflict(ConflictKind.STALE_TOKEN, f"token {token} is held by {record.lease_holder}")
    if record.done or not (0 <= set_index < len(record.sets)) or record.sets[set_index].remaining <= 0:
        return conflict(ConflictKind.OVER_COMPLETION, f"nothing left to count in set {set_index}")

    remaining, counts = count_print(record.remaining, [(x.count, x.remaining, x.completed) for x in record.sets],
                                    set_index)
    sets = tuple(replace(x, remaining=r, completed=done) for x, (_, r, done) in zip(record.sets, counts))
    applied = _with_seq(record, holder, seq)
    return CompletionOutcome.APPLIED, record.bump(sets=sets, remaining=remaining, applied=applied)


def record_problem(rec: JobRecord, queue: str) -> str | None:
    """Why a peer's record cannot be taken into `queue`, or None: checked for every record of a
    message before any is merged."""
    if rec.queue != queue:
        return f"record of queue {rec.queue!r} sent to {queue!r}"
    if rec.count < 0 or rec.remaining < 0:
        return "negative job counts"
    if any(s.count < 0 or s.remaining < 0 or s.completed < 0 for s in rec.sets):
        return "negative set counts"
    return None


def _with_seq(record: JobRecord, holder: str, seq: int) -> tuple[tuple[str, int], ...]:
    applied = dict(record.applied)
    applied[holder] = max(seq, applied.get(holder, -1))
    return tuple(sorted(applied.items()))[-MAX_HOLDERS_TRACKED:]

