"""Peer messages and the actions the LAN core hands to its adapter.

Messages travel between nodes of one LAN queue (the adapter serialises them, signs them with the
queue secret, and checks that the signed node id equals `sender`). Actions are what the core asks
its adapter to do, in list order:

- `Persist`: write in ONE transaction and make it durable (fsync) before executing any later
  action of the same list. The core always puts persists first: a grant's reply must never leave
  before the grant is on disk (S2), a completion must be in the outbox before it is reported (S5).
- `Send`: deliver a message to a peer; best effort (the core retries what matters).
- `Event` subclasses: notifications for the rest of the node (runner, UI, tests); no I/O needed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .records import ConflictEntry, JobRecord

__all__ = [
    "Message",
    "AcquireRequest",
    "RenewRequest",
    "LeaseGranted",
    "DenyReason",
    "LeaseDenied",
    "ReleaseRequest",
    "ReleaseAck",
    "ProgressReport",
    "ProgressRejected",
    "CompletionReport",
    "CompletionAck",
    "NotHome",
    "RecordPush",
    "DigestRequest",
    "RecordFetch",
    "ConflictNotice",
    "SyncRequest",
    "SyncReply",
    "IdentityClash",
    "HeldLease",
    "OutboxEntry",
    "Action",
    "Send",
    "Persist",
    "Event",
    "LeaseAcquired",
    "LeaseLost",
    "AcquireFailed",
    "CompletionSettled",
    "GrantLive",
    "GrantEnded",
    "CompletionApplied",
    "ConflictRecorded",
    "RecordChanged",
    "Alert",
]


# --------------------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class Message:
    """Base of every peer message. `sender` is the node id the request was signed by."""

    sender: str


@dataclass(frozen=True)
class AcquireRequest(Message):
    job_id: str
    req: int  # holder-chosen request id, unique across the holder's restarts


@dataclass(frozen=True)
class RenewRequest(Message):
    job_id: str
    token: int
    req: int


@dataclass(frozen=True)
class LeaseGranted(Message):
    """Reply to acquire or renew. The holder's validity starts from when IT sent `req`."""

    job_id: str
    token: int
    req: int
    record: JobRecord


class DenyReason(enum.Enum):
    HELD = "held"  # another holder has a live grant
    LOCKED = "locked"  # lock-delay after an expired grant, or the restart rule
    NOT_AVAILABLE = "not_available"  # done, draft, deleted
    STALE_TOKEN = "stale_token"  # renew with a token that is not current
    NOT_HOME = "not_home"
    SYNCING = "syncing"  # the home is catching up with its peers after a restart or a clash
    TIMEOUT = "timeout"  # holder-local: no answer in time


@dataclass(frozen=True)
class LeaseDenied(Message):
    job_id: str
    req: int
    reason: DenyReason
    record: JobRecord | None = None


@dataclass(frozen=True)
class ReleaseRequest(Message):
    job_id: str
    token: int


@dataclass(frozen=True)
class ReleaseAck(Message):
    job_id: str
    token: int
    accepted: bool


@dataclass(frozen=True)
class ProgressReport(Message):
    job_id: str
    token: int
    progress: float


@dataclass(frozen=True)
class ProgressRejected(Message):
    job_id: str
    token: int


@dataclass(frozen=True)
class CompletionReport(Message):
    job_id: str
    token: int
    seq: int  # idempotency key is (sender, seq); seq strictly increases per holder, durably
    set_index: int


@dataclass(frozen=True)
class CompletionAck(Message):
    job_id: str
    seq: int
    accepted: bool  # False: recorded as a conflict, counts unchanged
    record: JobRecord


@dataclass(frozen=True)
class NotHome(Message):
    """The receiver is not the job's home; `record` is its newest copy, if any."""

    job_id: str
    record: JobRecord | None


@dataclass(frozen=True)
class RecordPush(Message):
    records: tuple[JobRecord, ...]


@dataclass(frozen=True)
class DigestRequest(Message):
    """Anti-entropy: (job id, epoch, version) of everything the sender has."""

    digest: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class RecordFetch(Message):
    job_ids: tuple[str, ...]


@dataclass(frozen=True)
class ConflictNotice(Message):
    """An old home tells the new home that it accepted work the new home never saw."""

    job_id: str
    entry: ConflictEntry


@dataclass(frozen=True)
class SyncRequest(Message):
    """A node that restarted (or saw its id used twice) asks each peer for everything newer than
    what it holds, before it grants or completes anything: its disk may have gone back in time."""

    round: int
    digest: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class SyncReply(Message):
    """Records newer than the asker's digest, and whether this peer hears the asker's node id
    from a second live node (`clash`: the other run's instance id, or empty) or has heard the
    asker's run alone long enough to say there is none (`vouched`)."""

    round: int
    records: tuple[JobRecord, ...]
    clash: str = ""
    vouched: bool = False  # this peer has heard the asker's run alone for a whole gate time


@dataclass(frozen=True)
class IdentityClash(Message):
    """Your node id is in use by two live nodes (`instances`); nothing from it is acted on."""

    instances: tuple[str, ...]


# ----------------------------------------------------------------------- durable holder-side rows
@dataclass(frozen=True)
class HeldLease:
    """A lease this node (as holder) may hold. Persisted on grant, deleted on release/loss."""

    job_id: str
    token: int


@dataclass(frozen=True)
class OutboxEntry:
    """A finished print not yet acknowledged by the job's home."""

    job_id: str
    token: int
    seq: int
    set_index: int


# ----------------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Action:
    """Base of everything the core returns."""


@dataclass(frozen=True)
class Send(Action):
    to: str
    message: Message


@dataclass(frozen=True)
class Persist(Action):
    """One durable transaction. Upserts and deletes; `None`/empty means unchanged."""

    records: tuple[JobRecord, ...] = ()
    held_put: tuple[HeldLease, ...] = ()
    held_delete: tuple[str, ...] = ()  # job ids
    outbox_put: tuple[OutboxEntry, ...] = ()
    outbox_delete: tuple[int, ...] = ()  # seqs
    next_seq: int | None = None
    boot: int | None = None


@dataclass(frozen=True)
class Event(Action):
    """A notification; the adapter forwards it to whoever cares."""


@dataclass(frozen=True)
class LeaseAcquired(Event):
    job_id: str
    token: int


@dataclass(frozen=True)
class LeaseLost(Event):
    job_id: str
    token: int
    reason: str


@dataclass(frozen=True)
class AcquireFailed(Event):
    job_id: str
    reason: DenyReason


@dataclass(frozen=True)
class CompletionSettled(Event):
    """The home acknowledged a completion (accepted or recorded as a conflict)."""

    job_id: str
    seq: int
    accepted: bool


@dataclass(frozen=True)
class GrantLive(Event):
    """Home side: a grant is live until `live_until` on this node's clock (grant, renew, restore)."""

    job_id: str
    holder: str
    token: int
    live_until: float


@dataclass(frozen=True)
class GrantEnded(Event):
    """Home side: the grant ended; the job is free again.

    `released` is True only when the holder gave the lease back (its release or a restart of
    the holder); False when it ran out (expiry + lock-delay, the S6 window) or the job was deleted.
    """

    job_id: str
    token: int
    released: bool


@dataclass(frozen=True)
class CompletionApplied(Event):
    job_id: str
    holder: str
    token: int
    seq: int
    set_index: int


@dataclass(frozen=True)
class ConflictRecorded(Event):
    job_id: str
    entry: ConflictEntry


@dataclass(frozen=True)
class Alert(Event):
    """Something the user must know about this node (data rolled back, id cloned); for the log."""

    kind: str
    detail: str


@dataclass(frozen=True)
class RecordChanged(Event):
    """A record in this node's view changed (local write or newer replica)."""

    record: JobRecord
