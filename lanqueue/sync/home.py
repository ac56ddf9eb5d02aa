"""The home's lease table: who may print which job, for how long, under which fencing token.

Everything that changes a grant's state lives here, as a table from (state, input) to
(effect, next state). A missing entry is a bug in the caller, raised as `LocalProtocolError`.

Why each state exists:

- FREE: nobody holds the job; the next acquire gets a new, larger token.
- LIVE: granted until `deadline` = time the home processed the request + TTL, on the home's own
  monotonic clock (S1: no wall clock, no other node's clock).
- LOCKED: the grant expired without a release. The holder stopped *starting* prints before this
  (its own validity is shorter, S7) but could not know it expired; the lock-delay (default one
  TTL) leaves room for clock-rate differences before anyone else gets the job (S4: it comes back).
- RESTORED: the home restarted (or became home by drain/adopt) and the durable record names a
  holder. It cannot know how long it was down or what the old home's clock said, so the grant
  counts as live until now + TTL + lock-delay (S6). A renew with the current token turns it LIVE.

Tokens are not chosen here: the caller computes `records.next_token`, and the grant is part of the
returned record, which the caller must persist before replying (S2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .errors import LocalProtocolError
from .records import HANDOFF_RATE_SLACK, JobRecord, Timings, next_token

__all__ = ["LeaseState", "LeaseInput", "Effect", "TRANSITIONS", "Grant", "Decision", "HomeLeases"]


class LeaseState(enum.Enum):
    FREE = "free"
    LIVE = "live"
    LOCKED = "locked"
    RESTORED = "restored"


class LeaseInput(enum.Enum):
    ACQUIRE_REPEAT = "acquire_repeat"  # the same acquire request again (duplicate, lost reply)
    ACQUIRE_BY_HOLDER = "acquire_by_holder"  # the holder asks anew: it gave up the old holding
    ACQUIRE_STALE = "acquire_stale"  # an older request of the holder, delayed in the network
    ACQUIRE_BY_OTHER = "acquire_by_other"
    RENEW = "renew"  # by the current holder with the current token
    RELEASE = "release"  # by the current holder with the current token
    DEADLINE = "deadline"  # the state's deadline passed on the home's clock


class Effect(enum.Enum):
    GRANT = "grant"  # new token, persist, reply granted
    REGRANT = "regrant"  # the holder asks anew: the old holding ends, a new token (so a delayed
    #                      release or report of the old holding can never touch the new one)
    EXTEND = "extend"  # same token, new deadline, reply granted (no write: the token is durable)
    DENY_HELD = "deny_held"
    DENY_LOCKED = "deny_locked"
    DENY_STALE = "deny_stale"
    FREE = "free"  # clear the holder in the record, persist, the job is back in the queue
    ACK = "ack"  # nothing to change
    LOCK = "lock"  # expired: start the lock-delay


S, I, E = LeaseState, LeaseInput, Effect
TRANSITIONS: dict[tuple[LeaseState, LeaseInput], tuple[Effect, LeaseState]] = {
    (S.FREE, I.ACQUIRE_BY_OTHER): (E.GRANT, S.LIVE),
    (S.FREE, I.RENEW): (E.DENY_STALE, S.FREE),
    (S.FREE, I.RELEASE): (E.ACK, S.FREE),
    (S.LIVE, I.ACQUIRE_REPEAT): (E.EXTEND, S.LIVE),
    (S.LIVE, I.ACQUIRE_BY_HOLDER): (E.REGRANT, S.LIVE),
    (S.LIVE, I.ACQUIRE_STALE): (E.DENY_STALE, S.LIVE),
    (S.LIVE, I.ACQUIRE_BY_OTHER): (E.DENY_HELD, S.LIVE),
    (S.LIVE, I.RENEW): (E.EXTEND, S.LIVE),
    (S.LIVE, I.RELEASE): (E.FREE, S.FREE),
    (S.LIVE, I.DEADLINE): (E.LOCK, S.LOCKED),
    (S.LOCKED, I.ACQUIRE_REPEAT): (E.EXTEND, S.LIVE),
    (S.LOCKED, I.ACQUIRE_BY_HOLDER): (E.REGRANT, S.LIVE),
    (S.LOCKED, I.ACQUIRE_STALE): (E.DENY_STALE, S.LOCKED),
    (S.LOCKED, I.ACQUIRE_BY_OTHER): (E.DENY_LOCKED, S.LOCKED),
    (S.LOCKED, I.RENEW): (E.EXTEND, S.LIVE),
    (S.LOCKED, I.RELEASE): (E.FREE, S.FREE),
    (S.LOCKED, I.DEADLINE): (E.FREE, S.FREE),
    (S.RESTORED, I.ACQUIRE_REPEAT): (E.EXTEND, S.LIVE),
    (S.RESTORED, I.ACQUIRE_BY_HOLDER): (E.REGRANT, S.LIVE),
    (S.RESTORED, I.ACQUIRE_STALE): (E.DENY_STALE, S.RESTORED),
    (S.RESTORED, I.ACQUIRE_BY_OTHER): (E.DENY_LOCKED, S.RESTORED),
    (S.RESTORED, I.RENEW): (E.EXTEND, S.LIVE),
    (S.RESTORED, I.RELEASE): (E.FREE, S.FREE),
    (S.RESTORED, I.DEADLINE): (E.FREE, S.FREE),
}
del S, I, E


@dataclass
class Grant:
    """Volatile per-job lease state of the home. The durable part is in the record."""

    state: LeaseState = LeaseState.FREE
    deadline: float = 0.0  # LIVE: expiry; LOCKED: end of lock-delay; RESTORED: end of S6 window
    #: The job is not freed before this, whatever renewals do: an announced window (restart,
    #: handoff) never moves earlier, except by the holder's own release.
    floor: float = 0.0


@dataclass(frozen=True)
class Decision:
    effect: Effect
    record: JobRecord  # the record after the decision (persist it if `changed`)
    changed: bool
    live_until: float | None = None  # set when the grant is live after the decision


class HomeLeases:
    """The lease table of one home for the jobs it is home of.

    Records stay with the caller; every method takes the current record and returns a
    `Decision` holding the new one. Bounded: one entry per job the node is home of, and the
    caller bounds the number of jobs.
    """

    def __init__(self, timings: Timings) -> None:
        self.timings = timings
        self._grants: dict[str, Grant] = {}

    # -- membership ---------------------------------------------------------------------------
    def take(self, record: JobRecord, now: float) -> float | None:
        """Become responsible for `record` (submit, restart, drain, adopt).

        A holder named in the durable record may still be printing under a grant this node cannot
        date: it stays live until `restored_deadline(now)` (S6). Returns that deadline, if any.
        """
        if record.lease_holder is not None and not record.tombstone:
            # A drained record also says how long its old home would still have held the job.
            deadline = max(self.restored_deadline(now), now + record.handoff_hold * HANDOFF_RATE_SLACK)
            self._grants[record.id] = Grant(LeaseState.RESTORED, deadline, floor=deadline)
            return deadline
        self._grants[record.id] = Grant()
        return None

    def restored_deadline(self, now: float) -> float:
        """S6: restart time + TTL + lock-delay."""
        return now + self.timings.ttl + self.timings.lock_delay

    def hold_for(self, job_id: str, now: float) -> float:
        """How much longer (on this clock) the job stays unavailable to other holders."""
        g = self._grants.get(job_id)
        if g is None or g.state is LeaseState.FREE:
            return 0.0
        end = g.deadline + (self.timings.lock_delay if g.state is LeaseState.LIVE else 0.0)
        return max(0.0, end - now, g.floor - now)

    def drop(self, job_id: str) -> None:
        self._grants.pop(job_id, None)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._grants

    def state(self, job_id: str) -> LeaseState:
        return self._grants[job_id].state

    def live_until(self, job_id: str, now: float) -> float | None:
        """When the current grant stops counting as live, or None if none is live now."""
        g = self._grants.get(job_id)
        if g is None or g.state not in (LeaseState.LIVE, LeaseState.RESTORED) or now >= g.deadline:
            return None
        return g.deadline

    # -- inputs --------------------------------------------------------------------------------
    def _step(self, job_id: str, inp: LeaseInput) -> tuple[Grant, Effect, LeaseState]:
        g = self._grants.get(job_id)
        if g is None:
            raise LocalProtocolError(f"not home of job {job_id}")
        try:
            effect, nxt = TRANSITIONS[(g.state, inp)]
        except KeyError:
            raise LocalProtocolError(f"no transition for {g.state.name} on {inp.name}") from None
        return g, effect, nxt

    def _apply(self, record: JobRecord, g: Grant, effect: Effect, nxt: LeaseState, holder: str | None,
               now: float, req: int = 0) -> Decision:
        t = self.timings
        if effect in (Effect.GRANT, Effect.REGRANT):
            if not record.acquirable:
                # Nothing to print: no grant, no write.
                return Decision(Effect.DENY_STALE, record, False)
            new = record.bump(lease_holder=holder, lease_token=next_token(record), lease_req=req)
            g.state, g.deadline, g.floor = nxt, now + t.ttl, 0.0  # REGRANT: the holder let go
            return Decision(effect, new, True, g.deadline)
        if effect is Effect.EXTEND:
            g.state, g.deadline = nxt, now + t.ttl
            return Decision(effect, record, False, g.deadline)
        if effect is Effect.LOCK:
            g.state, g.deadline = nxt, max(g.deadline + t.lock_delay, g.floor)
            return Decision(effect, record, False)
        if effect is Effect.FREE:
            g.state, g.deadline, g.floor = nxt, 0.0, 0.0
            return Decision(effect, record.bump(lease_holder=None), True)
        g.state = nxt
        return Decision(effect, record, False)

    def _catch_up(self, record: JobRecord, now: float) -> tuple[JobRecord, bool]:
        """Apply deadlines that passed since the last tick, so an input never sees a stale state
        (the answer must not depend on how often the adapter ticks)."""
        if record.id in self._grants and self._due(record.id, now):
            d = self.deadline(record, now)
            return d.record, d.changed
        return record, False

    def _due(self, job_id: str, now: float) -> bool:
        g = self._grants[job_id]
        return g.state is not LeaseState.FREE and now >= g.deadline

    def acquire(self, record: JobRecord, holder: str, now: float, req: int) -> Decision:
        """`req` orders one holder's requests (they increase across its restarts): the same
        request again is a repeat, a larger one means the holder gave up its old holding."""
        record, caught_up = self._catch_up(record, now)
        d = self._acquire(record, holder, now, req)
        return replace(d, changed=d.changed or caught_up) if caught_up else d

    def _acquire(self, record: JobRecord, holder: str, now: float, req: int) -> Decision:
        g = self._grants.get(record.id)
        if g is not None and g.state is LeaseState.FREE and not record.acquirable:
            return Decision(Effect.DENY_STALE, record, False)
        inp = LeaseInput.ACQUIRE_BY_OTHER
        if record.lease_holder == holder and g is not None and g.state is not LeaseState.FREE:
            inp = (LeaseInput.ACQUIRE_REPEAT if req == record.lease_req else
                   LeaseInput.ACQUIRE_BY_HOLDER if req > record.lease_req else LeaseInput.ACQUIRE_STALE)
        g, effect, nxt = self._step(record.id, inp)
        return self._apply(record, g, effect, nxt, holder, now, req)

    def renew(self, record: JobRecord, holder: str, token: int, now: float) -> Decision:
        g = self._grants.get(record.id)
        if g is None:
            raise LocalProtocolError(f"not home of job {record.id}")
        record, caught_up = self._catch_up(record, now)
        if caught_up:
            return Decision(Effect.DENY_STALE, record, True)  # the grant ran out before this renew
        if token != record.lease_token or record.lease_holder != holder or record.tombstone:
            return Decision(Effect.DENY_STALE, record, False)
        g, effect, nxt = self._step(record.id, LeaseInput.RENEW)
        return self._apply(record, g, effect, nxt, holder, now)

    def release(self, record: JobRecord, holder: str, token: int, now: float) -> Decision:
        g = self._grants.get(record.id)
        if g is None:
            raise LocalProtocolError(f"not home of job {record.id}")
        record, caught_up = self._catch_up(record, now)
        if caught_up and record.lease_holder is None:
            return Decision(Effect.ACK if token == record.lease_token else Effect.DENY_STALE, record, True)
        if token != record.lease_token or (record.lease_holder not in (None, holder)):
            return Decision(Effect.DENY_STALE, record, False)
        g, effect, nxt = self._step(record.id, LeaseInput.RELEASE)
        return self._apply(record, g, effect, nxt, holder, now)

    def due(self, now: float) -> list[str]:
        """Jobs whose grant deadline has passed: feed each to `deadline`."""
        return [j for j, g in self._grants.items() if g.state is not LeaseState.FREE and now >= g.deadline]

    def deadline(self, record: JobRecord, now: float) -> Decision:
        """Apply every deadline that has passed (expiry, then possibly the lock-delay too)."""
        g, effect, nxt = self._step(record.id, LeaseInput.DEADLINE)
        d = self._apply(record, g, effect, nxt, None, now)
        while self._due(record.id, now):
            g, effect, nxt = self._step(record.id, LeaseInput.DEADLINE)
            nd = self._apply(d.record, g, effect, nxt, None, now)
            d = Decision(nd.effect, nd.record, d.changed or nd.changed, nd.live_until)
        return d

    def force_free(self, record: JobRecord) -> JobRecord:
        """Delete: the grant ends with the job (later reports become conflicts)."""
        g = self._grants.get(record.id)
        if g is not None:
            g.state, g.deadline = LeaseState.FREE, 0.0
        return replace(record, lease_holder=None)
