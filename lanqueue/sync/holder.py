"""The holder side: leases this node asked for, the prints it runs under them, and its outbox.

Rules (S7, S5):

- A lease is valid until (time this node SENT the request that was granted) + TTL x (1 - margin),
  on this node's monotonic clock. Counting from the send, not the reply, makes network delay
  shorten the lease instead of lengthening it; the margin covers clock-rate differences.
- Renew every `renew_every`; never start a print without a valid lease; a print in progress is
  finished even if the lease lapses, and reported: the home's fencing decides if it counts.
- A finished print goes to a durable outbox (with the next idempotency seq, same transaction)
  before it is reported, and is retried until the home acknowledges it. One unacknowledged
  completion per job at a time: the next print of a job waits for the ack, so the holder always
  knows the counts it prints against.
- After a crash, every lease in the durable table is released with its token (once the job's
  outbox is empty), so the job returns at once instead of after TTL + lock-delay.

This module returns actions but does not know records; the core passes the job's home in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import LocalProtocolError
from .messages import (
    AcquireFailed,
    AcquireRequest,
    Action,
    CompletionReport,
    CompletionSettled,
    DenyReason,
    HeldLease,
    LeaseAcquired,
    LeaseLost,
    OutboxEntry,
    Persist,
    ProgressReport,
    ReleaseRequest,
    RenewRequest,
    Send,
)
from .records import Timings

__all__ = ["HolderPhase", "HolderLease", "HolderSide", "REQ_BOOT_SHIFT"]

#: Request ids are `boot << REQ_BOOT_SHIFT | counter`, so a reply to a request of an earlier
#: incarnation can never be mistaken for a reply to a new one (its send time would be wrong).
REQ_BOOT_SHIFT = 32
#: Pending requests kept at most (oldest dropped: their replies could not extend a lease anyway).
MAX_PENDING = 1024


class HolderPhase(enum.Enum):
    ACQUIRING = "acquiring"
    HELD = "held"
    RELEASING = "releasing"


@dataclass
class HolderLease:
    phase: HolderPhase
    token: int = 0
    valid_until: float = float("-inf")
    next_renew: float = 0.0
    next_retry: float = 0.0  # RELEASING: when to send the release again; ACQUIRING: give up
    printing: int | None = None  # set index of the print in progress
    print_token: int = 0  # the token the print in progress was started under
    durable: bool = False  # a HeldLease row exists for it
    req: int = 0  # ACQUIRING: the one acquire request whose grant this lease accepts


@dataclass
class HolderSide:
    node_id: str
    timings: Timings
    boot: int = 0
    next_seq: int = 1
    leases: dict[str, HolderLease] = field(default_factory=dict)
    outbox: dict[int, OutboxEntry] = field(default_factory=dict)
    _outbox_next_try: dict[int, float] = field(default_factory=dict)
    _pending: dict[int, tuple[str, float]] = field(default_factory=dict)
    _counter: int = 0

    # -- helpers ---------------------------------------------------------------------------------
    def _req(self, job_id: str, now: float) -> int:
        self._counter += 1
        req = (self.boot << REQ_BOOT_SHIFT) | self._counter
        self._pending[req] = (job_id, now)
        if len(self._pending) > MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        return req

    def _validity(self, sent: float) -> float:
        return sent + self.timings.ttl * (1.0 - self.timings.holder_margin)

    def lease_valid(self, job_id: str, now: float) -> bool:
        lease = self.leases.get(job_id)
        return lease is not None and lease.phase is HolderPhase.HELD and now < lease.valid_until

    def outbox_pending(self, job_id: str) -> bool:
        return any(e.job_id == job_id for e in self.outbox.values())

    # -- local requests ------------------------------------------------------------------------
    def want(self, job_id: str, home: str, now: float) -> list[Action]:
        lease = self.leases.get(job_id)
        if lease is not None:
            if lease.phase is HolderPhase.RELEASING:
                raise LocalProtocolError(f"lease on {job_id} is being released")
            return []  # already asked or held
        req = self._req(job_id, now)
        self.leases[job_id] = HolderLease(HolderPhase.ACQUIRING, next_retry=now + self.timings.retry_every, req=req)
        return [Send(home, AcquireRequest(self.node_id, job_id, req))]

    def start_print(self, job_id: str, set_index: int, now: float) -> None:
        lease = self.leases.get(job_id)
        if lease is None or not self.lease_valid(job_id, now):
            raise LocalProtocolError(f"no valid lease on {job_id}: a new print needs one")
        if lease.printing is not None:
            raise LocalProtocolError(f"already printing {job_id}")
        if self.outbox_pending(job_id):
            raise LocalProtocolError(f"last print of {job_id} not acknowledged yet")
        lease.printing = set_index
        lease.print_token = lease.token

    def abort_print(self, job_id: str) -> None:
        lease = self.leases.get(job_id)
        if lease is not None:
            lease.printing = None

    def complete(self, job_id: str, home: str, now: float) -> list[Action]:
        lease = self.leases.get(job_id)
        if lease is None or lease.printing is None:
            raise LocalProtocolError(f"no print of {job_id} in progress")
        entry = OutboxEntry(job_id, lease.print_token, self.next_seq, lease.printing)
        lease.printing = None
        self.next_seq += 1
        self.outbox[entry.seq] = entry
        self._outbox_next_try[entry.seq] = now + self.timings.retry_every
        if lease.phase is not HolderPhase.HELD:
            self._forget(job_id)  # the lease was lost while printing; the report still goes out
        return [
            Persist(outbox_put=(entry,), next_seq=self.next_seq),
            Send(home, CompletionReport(self.node_id, job_id, entry.token, entry.seq, entry.set_index)),
        ]

    def progress(self, job_id: str, home: str, progress: float) -> list[Action]:
        lease = self.leases.get(job_id)
        if lease is None or lease.printing is None:
            raise LocalProtocolError(f"no print of {job_id} in progress")
        return [Send(home, ProgressReport(self.node_id, job_id, lease.print_token, progress))]

    def release(self, job_id: str, home: str, now: float) -> list[Action]:
        lease = self.leases.get(job_id)
        if lease is None:
            return []
        if lease.printing is not None:
            raise LocalProtocolError(f"cannot release {job_id} while printing it; abort the print first")
        if lease.phase is HolderPhase.ACQUIRING:
            del self.leases[job_id]  # a late grant will be released when it arrives
            return []
        lease.phase = HolderPhase.RELEASING
        if self.outbox_pending(job_id):
            # Completions first: once released, another holder's grant would fence them out.
            lease.next_retry = now  # sent as soon as the outbox empties (or by the next tick)
            return []
        lease.next_retry = now + self.timings.retry_every
        return [Send(home, ReleaseRequest(self.node_id, job_id, lease.token))]

    def _forget(self, job_id: str) -> list[Action]:
        lease = self.leases.pop(job_id, None)
        if lease is None or not lease.durable:
            return []
        return [Persist(held_delete=(job_id,))]

    # -- replies -------------------------------------------------------------------------------
    def on_granted(self, sender: str, job_id: str, token: int, req: int, now: float) -> list[Action]:
        pend = self._pending.get(req)
        lease = self.leases.get(job_id)
        if (pend is None or pend[0] != job_id or lease is None or lease.phase is HolderPhase.RELEASING
                or (lease.phase is HolderPhase.ACQUIRING and req != lease.req)):
            if lease is not None and lease.token == token:
                return []  # a late duplicate for a lease we are releasing anyway
            # Nobody here wants this grant (duplicate or very late reply): give it back now.
            return [Send(sender, ReleaseRequest(self.node_id, job_id, token))]
        sent = pend[1]
        out: list[Action] = []
        if lease.phase is HolderPhase.ACQUIRING or token != lease.token:
            if lease.phase is HolderPhase.HELD and token < lease.token:
                return []  # an older grant replaced by a newer one: ignore
            # A newer token while printing under the old one (lease freed and re-granted to us):
            # the print keeps `print_token` and its report is fenced by the home.
            lease.phase, lease.token = HolderPhase.HELD, token
            lease.valid_until = float("-inf")
            lease.next_renew = sent + self.timings.renew_every
            lease.durable = True
            out.append(Persist(held_put=(HeldLease(job_id, token),)))
            out.append(LeaseAcquired(job_id, token))
        lease.valid_until = max(lease.valid_until, self._validity(sent))
        return out

    def on_denied(self, job_id: str, req: int, reason: DenyReason) -> list[Action]:
        pend = self._pending.pop(req, None)
        lease = self.leases.get(job_id)
        if pend is None or lease is None:
            return []
        if lease.phase is HolderPhase.ACQUIRING:
            del self.leases[job_id]
            return [AcquireFailed(job_id, reason)]
        if lease.phase is HolderPhase.HELD and reason in (DenyReason.STALE_TOKEN, DenyReason.NOT_AVAILABLE):
            return self._lost(job_id, lease, reason.value)
        return []  # NOT_HOME: the record was merged; the next renew goes to the new home

    def _lost(self, job_id: str, lease: HolderLease, why: str) -> list[Action]:
        lease.durable = False
        if lease.printing is not None:
            # Keep the entry for the print's report; it is no longer a lease.
            lease.phase, lease.valid_until = HolderPhase.RELEASING, float("-inf")
            return [Persist(held_delete=(job_id,)), LeaseLost(job_id, lease.token, why)]
        del self.leases[job_id]
        return [Persist(held_delete=(job_id,)), LeaseLost(job_id, lease.token, why)]

    def on_progress_rejected(self, job_id: str, token: int) -> list[Action]:
        lease = self.leases.get(job_id)
        if lease is None or lease.token != token or lease.phase is not HolderPhase.HELD:
            return []
        return self._lost(job_id, lease, "progress rejected: token no longer current")

    def on_release_ack(self, job_id: str, token: int) -> list[Action]:
        lease = self.leases.get(job_id)
        if lease is None or lease.token != token or lease.phase is not HolderPhase.RELEASING:
            return []
        if lease.printing is not None:
            return []
        return self._forget(job_id)

    def on_completion_ack(self, seq: int, accepted: bool) -> list[Action]:
        entry = self.outbox.pop(seq, None)
        self._outbox_next_try.pop(seq, None)
        if entry is None:
            return []
        return [Persist(outbox_delete=(seq,)), CompletionSettled(entry.job_id, seq, accepted)]

    def pending_release(self, job_id: str, home: str, now: float) -> list[Action]:
        """Send a deferred release now that nothing blocks it (outbox empty, not printing)."""
        lease = self.leases.get(job_id)
        if (lease is None or lease.phase is not HolderPhase.RELEASING or lease.printing is not None
                or self.outbox_pending(job_id)):
            return []
        lease.next_retry = now + self.timings.retry_every
        return [Send(home, ReleaseRequest(self.node_id, job_id, lease.token))]

    # -- time ------------------------------------------------------------------------------------
    def tick(self, now: float, home_of: Callable[[str], str | None]) -> list[Action]:
        out: list[Action] = []
        t = self.timings
        for job_id, lease in list(self.leases.items()):
            home = home_of(job_id)
            if lease.phase is HolderPhase.ACQUIRING and now >= lease.next_retry:
                del self.leases[job_id]
                self._pending.pop(lease.req, None)
                out.append(AcquireFailed(job_id, DenyReason.TIMEOUT))
            elif lease.phase is HolderPhase.HELD and now >= lease.next_renew and home is not None:
                lease.next_renew = now + t.renew_every
                out.append(Send(home, RenewRequest(self.node_id, job_id, lease.token, self._req(job_id, now))))
            elif (lease.phase is HolderPhase.RELEASING and now >= lease.next_retry and home is not None
                  and lease.printing is None and not self.outbox_pending(job_id)):
                lease.next_retry = now + t.retry_every
                out.append(Send(home, ReleaseRequest(self.node_id, job_id, lease.token)))
        out.extend(self.report_outbox(now, home_of))
        stale = [r for r, (_, sent) in self._pending.items() if now - sent > t.ttl]
        for r in stale:
            del self._pending[r]
        return out

    def report_outbox(self, now: float, home_of: Callable[[str], str | None]) -> list[Action]:
        """Report due outbox entries again. Safe at any time, even before a restarted node knows
        its own state: each entry is a real print under its own key, counted at most once."""
        out: list[Action] = []
        t = self.timings
        for seq, entry in self.outbox.items():
            home = home_of(entry.job_id)
            if home is not None and now >= self._outbox_next_try.get(seq, now):
                self._outbox_next_try[seq] = now + t.retry_every
                out.append(Send(home, CompletionReport(self.node_id, entry.job_id, entry.token, seq, entry.set_index)))
        return out

    # -- restart ---------------------------------------------------------------------------------
    def restore(self, held: dict[str, HeldLease], outbox: dict[int, OutboxEntry], now: float) -> None:
        """After a crash: every held lease is released (the print it covered was interrupted),
        every outbox entry is reported again; `tick` sends both right away."""
        for job_id, h in held.items():
            self.leases[job_id] = HolderLease(HolderPhase.RELEASING, token=h.token, next_retry=now, durable=True)
        for seq, entry in outbox.items():
            self.outbox[seq] = entry
            self._outbox_next_try[seq] = now
