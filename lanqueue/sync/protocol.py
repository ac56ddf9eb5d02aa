"""The LAN queue protocol core: one object per (node, LAN queue), no I/O, no clock of its own.

Inputs: `handle(message, now)` for peer messages, `tick(now)` for timers (call it about once a
second), and local calls. `now` is this node's monotonic clock in seconds; it is never compared
with another node's clock. Outputs: lists of actions (`messages.Persist`, `messages.Send`,
`messages.Event` subclasses). Messages a node sends to itself (it prints a job it is home of) are
delivered inside the core, so the adapter never sees a `Send` to its own node id.

Local calls: `submit_job`, `update_job`, `delete_job` (home only, else `NotHomeError`),
`drain(targets, now)`, `adopt(gone_home, now)`, `set_peers`; as a printer: `want_to_print`,
`lease_valid`, `start_print` (returns the set index; raises without a valid lease),
`report_progress`, `report_complete`, `abort_print`, `release`. Queries: `records`, `is_home`,
`grant_live_until`, `holder.leases`, `holder.outbox`. Errors: `LocalProtocolError` (this node's
misuse), `RemoteProtocolError` (a peer's bad message; nothing from it was applied).

What the adapter must persist, and when
---------------------------------------
Every `Persist` action is one transaction, committed and fsynced (SQLite WAL, synchronous=FULL)
BEFORE any later action of the same list is executed. The core orders each list as one
persist, then events, then sends. Concretely:

- `records`: upsert the job records (the node's replica of the queue). For a home this includes
  each lease grant: holder, `lease_token` and `lease_req` are fields of the record, so the token
  is on disk before the `LeaseGranted` reply leaves (S2), and the restart rule S6 can see which
  grants were outstanding. Also completions applied and their idempotency marks (`applied`),
  conflicts, tombstones, epoch changes (drain: `handoff_hold`; adopt: `adoptions`). Records are
  never deleted (a deletion is a tombstone record).
- `held_put` / `held_delete`: the holder's table of leases it may hold (job id, token), written
  when a grant arrives, before a print may start; after a crash they are released.
- `outbox_put` / `outbox_delete` and `next_seq`: finished prints not yet acknowledged, written
  (with the next idempotency seq, same transaction) before the completion is reported (S5).
- `boot`: incremented by `restore`, written before any request of the new incarnation leaves, so
  request ids never repeat across restarts.

After a restart (`restore`, any boot but the first) the core keeps a sync gate closed: it grants,
completes, releases and edits nothing until every online peer has answered a `SyncRequest`
(bringing newer copies of its records: its disk may be an older image) and vouched for this run
(a second live run of the same node id, a cloned card, makes both stop: `IdentityClash`). Pass
each message's sender run id to `handle(message, now, instance)`: the adapter takes it from the
request's signature. `status(now)` says where the node stands, for the user.

Nothing else is durable: lease deadlines (meaningless after a restart: S6 replaces them),
pending requests, progress, retry timers. `durable_state()` returns exactly what the persisted
rows should contain (`DurableState.apply` folds a `Persist` in); `LanNodeCore.restore(node_id,
queue, state, now, timings, peers)` rebuilds a core from them and returns its first actions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from .durable import DurableState, _Out
from .errors import LocalProtocolError, NotHomeError, RemoteProtocolError
from .holder import REQ_BOOT_SHIFT, HolderPhase, HolderSide
from .home import Effect, HomeLeases, LeaseState
from .identity import IdentityWatch
from .messages import (
    AcquireRequest,
    Action,
    Alert,
    CompletionAck,
    CompletionApplied,
    CompletionReport,
    ConflictNotice,
    ConflictRecorded,
    DenyReason,
    DigestRequest,
    GrantEnded,
    GrantLive,
    HeldLease,
    IdentityClash,
    LeaseDenied,
    LeaseGranted,
    Message,
    NotHome,
    Persist,
    ProgressRejected,
    ProgressReport,
    RecordChanged,
    RecordFetch,
    RecordPush,
    ReleaseAck,
    ReleaseRequest,
    RenewRequest,
    Send,
    SyncReply,
    SyncRequest,
)
from .records import (
    MAX_ADOPTIONS,
    CompletionOutcome,
    ConflictEntry,
    ConflictKind,
    JobRecord,
    SetRecord,
    Timings,
    apply_completion,
    is_newer,
    record_problem,
)

__all__ = ["DurableState", "LanNodeCore"]

#: Marks a divergence entry that this node (an old home) added to its own copy of an adopted
#: record until the new home records it; see `LanNodeCore._merge`.
_PENDING = "[not yet recorded by the new home] "  # DurableState is re-exported from .durable
#: The command that gives a node a new identity (shown wherever a clash is reported).
RESET_IDENTITY = "lanqueue reset-identity --data-dir <its data dir>"


@dataclass
class _SyncGate:
    """A node that restarted, or heard its id used by another node, acts on nothing until every
    online peer answered a `SyncRequest` sent at or after `open_at`, none reporting a clash.

    Why: a restored SD image makes a home forget grants and counts its peers still hold (it would
    reissue tokens and print finished copies again), and a cloned card makes two homes of one id.
    The first answered round (`caught_up`) brings the newer records; `open_at` leaves the time a
    second live run of this id needs to be heard by the peers (`LanNodeCore.gate_time`)."""

    open_at: float
    round: int = 0
    round_at: float = float("-inf")
    next_send: float = float("-inf")
    answered: set[str] = field(default_factory=set)  # this round
    vouched: set[str] = field(default_factory=set)  # this round, with `SyncReply.vouched`
    caught_up: bool = False


class LanNodeCore:
    """One node's side of one LAN queue: replica, home (lease authority) and holder in one.

    Tests replace `fence_completions` or override `HomeLeases.restored_deadline` only to prove
    the simulator catches a core without fencing (S3) or without the restart rule (S6); the
    other flags likewise switch off one defence each (issue 11) for the simulator to catch.
    """

    fence_completions: bool = True
    sync_on_restart: bool = True  # the sync gate, and taking newer copies of its own records
    detect_clones: bool = True
    any_replica_raises_divergence: bool = True
    home_leases_factory: Callable[[Timings], HomeLeases] = HomeLeases

    def __init__(self, node_id: str, queue: str, timings: Timings | None = None,
                 peers: Iterable[str] = (), *, boot: int = 0, next_seq: int = 1, instance: str = "") -> None:
        self.node_id = node_id
        self.instance = instance  # random per run: tells a restart from a clone
        self.queue = queue
        self.timings = timings or Timings()
        self.peers: list[str] = sorted(p for p in set(peers) if p != node_id)
        self.records: dict[str, JobRecord] = {}
        self.home = type(self).home_leases_factory(self.timings)
        self.holder = HolderSide(node_id, self.timings, boot=boot, next_seq=next_seq)
        self.progress: dict[str, float] = {}
        self._next_anti_entropy = 0.0
        self._diverged: dict[str, ConflictEntry] = {}  # adopt notices not yet in the new home's record
        self._ae_index = 0
        t = self.timings
        self.clash_hold = t.identity_grace + 3 * t.anti_entropy_every
        #: How long a restarted node waits at least before it acts: a second live run of its id
        #: speaks to every peer once per anti-entropy period, twice in this time after the grace.
        self.gate_time = t.identity_grace + 2 * t.anti_entropy_every
        #: A peer vouches for a run it has heard alone this long: a second live run would have
        #: been heard, twice, after the grace (one more period for lost messages).
        self.vouch_span = t.identity_grace + 4 * t.anti_entropy_every
        self.identity = IdentityWatch(t.identity_grace, self.clash_hold)
        self._gate: _SyncGate | None = None
        self._gate_round = 0
        self.clash: str = ""  # the other run's instance id while this node's id is used twice
        self.clash_until = float("-inf")
        self.rolled_back: str = ""  # what this node found when its data had gone back in time
        self._rollback_found: dict[str, ConflictEntry] = {}  # home side, recorded when the gate opens
        self._handlers: dict[type[Message], Callable[[Message, float, _Out], None]] = {
            AcquireRequest: self._on_acquire,  # type: ignore[dict-item]
            RenewRequest: self._on_renew,  # type: ignore[dict-item]
            ReleaseRequest: self._on_release,  # type: ignore[dict-item]
            ProgressReport: self._on_progress,  # type: ignore[dict-item]
            CompletionReport: self._on_completion,  # type: ignore[dict-item]
            LeaseGranted: self._on_granted,  # type: ignore[dict-item]
            LeaseDenied: self._on_denied,  # type: ignore[dict-item]
            ReleaseAck: self._on_release_ack,  # type: ignore[dict-item]
            ProgressRejected: self._on_progress_rejected,  # type: ignore[dict-item]
            CompletionAck: self._on_completion_ack,  # type: ignore[dict-item]
            NotHome: self._on_not_home,  # type: ignore[dict-item]
            RecordPush: self._on_push,  # type: ignore[dict-item]
            DigestRequest: self._on_digest,  # type: ignore[dict-item]
            RecordFetch: self._on_fetch,  # type: ignore[dict-item]
            ConflictNotice: self._on_conflict_notice,  # type: ignore[dict-item]
            SyncRequest: self._on_sync_request,  # type: ignore[dict-item]
            SyncReply: self._on_sync_reply,  # type: ignore[dict-item]
            IdentityClash: self._on_identity_clash,  # type: ignore[dict-item]
        }

    # ------------------------------------------------------------------------- durable state
    def durable_state(self) -> DurableState:
        held = {j: HeldLease(j, lease.token) for j, lease in self.holder.leases.items() if lease.durable}
        return DurableState(dict(self.records), held, dict(self.holder.outbox), self.holder.next_seq,
                            self.holder.boot)

    @classmethod
    def restore(cls, node_id: str, queue: str, state: DurableState, now: float,
                timings: Timings | None = None, peers: Iterable[str] = (), *,
                instance: str = "") -> tuple[LanNodeCore, list[Action]]:
        """Rebuild after a restart (clean or crash) from durable state only.

        Becomes home again of the jobs whose record names this node (S6 applies to the grants
        they name); releases the leases it held; re-reports its outbox. Returns the core and the
        actions to run first (a `Persist` of the new boot number, then events and sends). Nothing
        is granted, completed or released before the sync gate opens (`_SyncGate`).
        """
        core = cls(node_id, queue, timings, peers, boot=state.boot + 1, next_seq=state.next_seq, instance=instance)
        if cls.sync_on_restart and state.boot > 0:  # boot 0: its first run, nothing to go back to
            core._gate = _SyncGate(now + core.gate_time)  # closed before any record is taken home
        out = core._out()
        out.persists.append(Persist(boot=core.holder.boot))
        for rec in state.records.values():
            if rec.queue != queue:
                continue
            core.records[rec.id] = rec
            if rec.home == node_id and not rec.tombstone:
                core._take_home(rec, now, out)
        for rec in core.records.values():  # adopt notices the new home had not recorded yet
            for c in rec.conflicts:
                if c.kind in (ConflictKind.DIVERGED, ConflictKind.ROLLED_BACK) and c.holder == node_id \
                        and c.detail.startswith(_PENDING):
                    core._diverged[rec.id] = replace(c, detail=c.detail[len(_PENDING):])
        core.holder.restore(state.held, state.outbox, now)
        if core._gate is not None:
            core._new_round(now, out)
        else:
            out.add(core.holder.tick(now, core._home_of))
        return core, core._finish(out, now)

    # -------------------------------------------------------------------------- local: queue
    def set_peers(self, peers: Iterable[str]) -> None:
        self.peers = sorted(p for p in set(peers) if p != self.node_id)

    def submit_job(self, job_id: str, name: str, sets: Sequence[SetRecord], count: int, now: float, *,
                   draft: bool = False, created: float = 0.0, rank: float = 0.0) -> list[Action]:
        """Add a job with this node as its home (epoch 1). Allowed while catching up after a
        restart (a new job cannot collide with anything forgotten), not during an id clash."""
        if self.clash:
            self._require_open()
        if job_id in self.records:
            raise LocalProtocolError(f"job {job_id} exists")
        if len(self.records) >= self.timings.max_jobs:
            raise LocalProtocolError("queue is full")
        if count < 1 or any(s.count < 1 for s in sets):
            raise LocalProtocolError("counts must be positive")
        sets = tuple(replace(s, remaining=s.count, completed=0) for s in sets)
        rec = JobRecord(id=job_id, queue=self.queue, home=self.node_id, epoch=1, version=1, name=name,
                        count=count, remaining=count, sets=sets, draft=draft, created=created, rank=rank)
        out = self._out()
        self._write(rec, out)
        self._take_home(rec, now, out)
        return self._finish(out, now)

    def update_job(self, job_id: str, now: float, **fields: object) -> list[Action]:
        """Home only: change name, draft, rank, or the number of runs (`count`).

        A new count keeps the runs already done: remaining = count - done, never below 0. The
        lease is untouched, so a print in progress still reports under its token.
        """
        rec = self._own(job_id)
        allowed = {"name", "draft", "rank", "count"}
        if not set(fields) <= allowed:
            raise LocalProtocolError(f"only {sorted(allowed)} can be changed")
        if "count" in fields:
            count = fields["count"]
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise LocalProtocolError("count must be a positive integer")
            done = rec.count - rec.remaining
            fields = {**fields, "remaining": max(0, count - done)}
        out = self._out()
        self._write(rec.bump(**fields), out)
        return self._finish(out, now)

    def reset_job(self, job_id: str, now: float) -> list[Action]:
        """Home only: print the whole job again (every run, every copy)."""
        rec = self._own(job_id)
        sets = tuple(replace(s, remaining=s.count, completed=0) for s in rec.sets)
        out = self._out()
        self._write(rec.bump(sets=sets, remaining=rec.count), out)
        return self._finish(out, now)

    def delete_job(self, job_id: str, now: float) -> list[Action]:
        """Home only: tombstone the job. A live grant ends; later reports become conflicts."""
        rec = self._own(job_id)
        out = self._out()
        had = self.home.state(job_id) is not LeaseState.FREE
        self._write(self.home.force_free(rec).bump(tombstone=True), out)
        if had:
            out.events.append(GrantEnded(job_id, rec.lease_token, False))
        self.home.drop(job_id)
        return self._finish(out, now)

    def drain(self, targets: Sequence[str], now: float) -> list[Action]:
        """Graceful shutdown: hand every job this node is home of to `targets` (epoch + 1).

        The lease (holder and token) moves with the record, with how long this node would still
        have held the job; the new home holds it at least that long (scaled for clock rates) and
        at least its own S6 window, since it cannot read this node's clock.
        """
        if not targets:
            raise LocalProtocolError("drain needs at least one live peer")
        self._require_open()
        out = self._out()
        mine = [r for r in self.records.values() if r.home == self.node_id and r.id in self.home and not r.tombstone]
        for i, rec in enumerate(sorted(mine, key=lambda r: r.id)):
            target = targets[i % len(targets)]
            hold = self.home.hold_for(rec.id, now)
            self.home.drop(rec.id)
            self._write(replace(rec, home=target, epoch=rec.epoch + 1, version=1, handoff_hold=hold), out)
        return self._finish(out, now)

    def adopt(self, gone_home: str, now: float) -> list[Action]:
        """A user's decision that `gone_home` is gone: become home of its jobs at epoch + 1.

        Its grants may still be live on its own clock, so they are treated as restored (S6
        window); new tokens start in the new epoch's range, above anything the old home can issue.
        """
        if gone_home == self.node_id:
            raise LocalProtocolError("cannot adopt own jobs")
        self._require_open()
        out = self._out()
        for rec in sorted(self.records.values(), key=lambda r: r.id):
            if rec.home == gone_home and not rec.tombstone:
                new = replace(rec, home=self.node_id, epoch=rec.epoch + 1, version=1, adopted_from=rec.key,
                              adoptions=(rec.adoptions + (rec.key,))[-MAX_ADOPTIONS:])
                self._write(new, out)
                self._take_home(new, now, out)
        return self._finish(out, now)

    # ------------------------------------------------------------------------ local: holder
    def want_to_print(self, job_id: str, now: float) -> list[Action]:
        self._require_open()
        rec = self.records.get(job_id)
        if rec is None or not rec.acquirable:
            raise LocalProtocolError(f"job {job_id} cannot be printed")
        out = self._out()
        out.add(self.holder.want(job_id, rec.home, now))
        return self._finish(out, now)

    def lease_valid(self, job_id: str, now: float) -> bool:
        """May the print of `job_id` go on? False once the lease lapsed on this node's clock, and
        while this node is not sure of its own state (sync gate, id clash): the driver checks this
        before every further line and stops the print when it turns False."""
        if self._gate is not None or not self.holder.lease_valid(job_id, now):
            return False
        home = self._home_of(job_id)  # two live runs of the home's id answer: neither is trusted
        return home is None or home == self.node_id or self.identity.clash(home, now) is None

    def start_print(self, job_id: str, now: float) -> int:
        """Claim the next print of a held job; returns the set index to print. Needs a valid
        lease (S7) and the previous print's completion acknowledged."""
        rec = self.records.get(job_id)
        index = rec.next_set() if rec is not None and not rec.tombstone else None
        if index is None:
            raise LocalProtocolError(f"nothing left to print in {job_id}")
        self._require_open()
        self.holder.start_print(job_id, index, now)
        return index

    def abort_print(self, job_id: str) -> None:
        self.holder.abort_print(job_id)

    def report_progress(self, job_id: str, progress: float, now: float) -> list[Action]:
        out = self._out()
        out.add(self.holder.progress(job_id, self._home(job_id), progress))
        return self._finish(out, now)

    def report_complete(self, job_id: str, now: float) -> list[Action]:
        out = self._out()
        out.add(self.holder.complete(job_id, self._home(job_id), now))
        return self._finish(out, now)

    def release(self, job_id: str, now: float) -> list[Action]:
        out = self._out()
        out.add(self.holder.release(job_id, self._home(job_id), now))
        return self._finish(out, now)

    # ------------------------------------------------------------------------ inputs
    def handle(self, message: Message, now: float, instance: str = "") -> list[Action]:
        """Process one message from a peer. Raises `RemoteProtocolError` for a bad message,
        in which case nothing from it was applied.

        `instance` is the sender's run id as its signature carries it. A node id heard from two
        live runs (a cloned card) is acted on for nothing: a sync request is answered with the
        clash, anything else with an `IdentityClash` notice, so both runs learn it and stop."""
        handler = self._handlers.get(type(message))
        if handler is None:
            raise RemoteProtocolError(f"unexpected message {type(message).__name__}")
        if message.sender == self.node_id:
            raise RemoteProtocolError("message claims to come from this node")
        out = self._out()
        if self.detect_clones:
            self.identity.heard(message.sender, instance, now)
        other = self.identity.other_than(message.sender, instance, now) if instance and self.detect_clones else ""
        if isinstance(message, SyncRequest):
            self._on_sync_request(message, now, out, instance, other)
        elif other:
            out.sends.append(Send(message.sender, IdentityClash(self.node_id, (instance, other))))
        else:
            handler(message, now, out)
        return self._finish(out, now)

    @property
    def ready(self) -> bool:
        """False while the sync gate is closed (after a restart, during an id clash)."""
        return self._gate is None

    def status(self, now: float) -> dict[str, object]:
        """This node's standing in the queue, for the page, `lanqueue status` and the log."""
        if self._gate is not None and self.clash and now < self.clash_until:
            state, detail = "identity_clash", (
                f"another node is running with this node's id {self.node_id} (a copied SD card?); "
                f"this node does nothing on the LAN queue {self.queue!r} until one of them gets a "
                f"new identity: {RESET_IDENTITY}")
        elif self._gate is not None:
            state, detail = "syncing", "catching up with the other nodes before granting or printing"
        else:
            state, detail = "ok", ""
        return {"state": state, "detail": detail, "rolled_back": self.rolled_back,
                "reset_identity": RESET_IDENTITY if state == "identity_clash" else ""}

    def tick(self, now: float) -> list[Action]:
        """Timers: grant expiry and lock-delay, renewals, retries, anti-entropy. While the sync
        gate is closed only the sync rounds run: nothing is freed, renewed or released."""
        out = self._out()
        if self._gate is not None:
            self._gate_tick(now, out)
            if self._gate is not None:
                out.add(self.holder.report_outbox(now, self._home_of))
                if now >= self._next_anti_entropy:
                    self._next_anti_entropy = now + self.timings.anti_entropy_every
                    self._resend_notices(out)
                return self._finish(out, now)
        for job_id in self.home.due(now):
            rec = self.records[job_id]
            d = self.home.deadline(rec, now)
            if d.changed:
                self._write(d.record, out)
            if d.effect is Effect.FREE:
                out.events.append(GrantEnded(job_id, rec.lease_token, False))
        out.add(self.holder.tick(now, self._home_of))
        if now >= self._next_anti_entropy and self.peers:
            self._next_anti_entropy = now + self.timings.anti_entropy_every
            self._resend_notices(out)
            # Every peer, every period: a second run of this node id is heard within one period.
            digest = self._digest()
            out.sends.extend(Send(peer, DigestRequest(self.node_id, digest)) for peer in self.peers)
        return self._finish(out, now)

    def _resend_notices(self, out: _Out) -> None:
        """Conflict notices this node owes a job's home, repeated until its record shows them."""
        for job_id, entry in list(self._diverged.items()):
            rec = self.records[job_id]
            if entry in rec.conflicts:
                del self._diverged[job_id]
            elif rec.home == self.node_id:
                if self._gate is None and self.is_home(job_id):
                    self._write(rec.with_conflict(entry), out)  # this node is the home now
                    out.events.append(ConflictRecorded(job_id, entry))
                    del self._diverged[job_id]
            else:
                out.sends.append(Send(rec.home, ConflictNotice(self.node_id, job_id, entry)))

    # ------------------------------------------------------------------------ the sync gate
    def _digest(self) -> tuple[tuple[str, int, int], ...]:
        return tuple((j, r.epoch, r.version) for j, r in sorted(self.records.items()))

    def _require_open(self) -> None:
        if self._gate is not None:
            why = ("its node id is in use by another node" if self.clash else
                   "it is catching up with the other nodes after a restart")
            raise LocalProtocolError(f"this node cannot act on the LAN queue {self.queue!r} now: {why}")

    def _close_gate(self, open_at: float, now: float, out: _Out) -> None:
        if self._gate is None:
            self._gate = _SyncGate(open_at)
            self._new_round(now, out)
        else:  # the next round starts from `tick` once `open_at` has passed
            self._gate.open_at = max(self._gate.open_at, open_at)

    def _new_round(self, now: float, out: _Out) -> None:
        gate = self._gate
        assert gate is not None
        self._gate_round += 1
        gate.round, gate.round_at, gate.answered, gate.vouched = self._gate_round, now, set(), set()
        self._sync_sends(now, out)

    def _sync_sends(self, now: float, out: _Out) -> None:
        gate = self._gate
        assert gate is not None
        gate.next_send = now + self.timings.retry_every
        digest = self._digest()
        out.sends.extend(Send(p, SyncRequest(self.node_id, gate.round, digest))
                         for p in self.peers if p not in gate.vouched)

    def _gate_tick(self, now: float, out: _Out) -> None:
        gate = self._gate
        assert gate is not None
        if gate.round_at < gate.open_at <= now:
            self._new_round(now, out)  # the confirming round: sent once the grace has passed
            return
        if set(self.peers) <= gate.answered and not gate.caught_up:
            gate.caught_up = True
            self._learn_own_past(out)
            self._note_lost_prints(out)
        if gate.caught_up and set(self.peers) <= gate.vouched and gate.round_at >= gate.open_at:
            self._open_gate(now, out)
            return
        if now >= gate.next_send:
            self._sync_sends(now, out)

    def _open_gate(self, now: float, out: _Out) -> None:
        """Every online peer answered after the grace, none hears this id twice: act again.
        Record what the sync found (a rollback of this node's data) as conflicts users see."""
        self._gate = None
        self.clash = ""
        self._learn_own_past(out)
        for job_id, entry in sorted(self._rollback_found.items()):
            rec = self.records.get(job_id)
            if rec is not None and self.is_home(job_id) and entry not in rec.conflicts:
                self._write(rec.with_conflict(entry), out)
                out.events.append(ConflictRecorded(job_id, entry))
        self._rollback_found.clear()
        for rec in sorted(self.records.values(), key=lambda r: r.id):
            if rec.lease_holder == self.node_id and rec.id not in self.holder.leases and not rec.tombstone:
                out.sends.append(Send(rec.home, ReleaseRequest(self.node_id, rec.id, rec.lease_token)))
        out.add(self.holder.tick(now, self._home_of))

    def _note_lost_prints(self, out: _Out) -> None:
        """Once caught up: the home's copy names this node as holder under a token it has no row
        of (its data went back past the grant, or it stopped between the grant and writing it
        down), or under a token it restored from data known to have gone back in time. A copy
        printed then, and its report, may be lost: say so rather than let an extra copy go
        unexplained. The notice is kept in this node's copy (pending) until the home records it,
        so a restart does not lose it."""
        for rec in sorted(self.records.values(), key=lambda r: r.id):
            held = self.holder.leases.get(rec.id)
            unknown = held is None or (bool(self.rolled_back) and held.token == rec.lease_token)
            if rec.lease_holder != self.node_id or not unknown or rec.tombstone or rec.id in self._diverged:
                continue
            entry = ConflictEntry(ConflictKind.ROLLED_BACK, self.node_id, rec.lease_token, rec.version,
                                  f"this printer was granted token {rec.lease_token} but has no record of it "
                                  "(its data was restored from an older image, or it stopped right after the "
                                  "grant): a copy may have been printed twice")
            self._diverged[rec.id] = entry
            pending = replace(rec, conflicts=rec.conflicts + (replace(entry, detail=_PENDING + entry.detail),))
            self.records[rec.id] = out.records[rec.id] = pending
            out.sends.append(Send(rec.home, ConflictNotice(self.node_id, rec.id, entry)))

    def _learn_own_past(self, out: _Out) -> None:
        """Idempotency keys and request ids this node used before its data went back in time are
        in its peers' records: continue above them, so a reused key is never taken for a repeat."""
        seen = max((r.applied_seq(self.node_id) for r in self.records.values()), default=-1)
        for r in self.records.values():
            for c in r.conflicts:
                if c.holder == self.node_id and c.kind not in (ConflictKind.ROLLED_BACK, ConflictKind.DIVERGED):
                    seen = max(seen, c.seq)
        if seen >= self.holder.next_seq:
            self._found_rollback(f"the other nodes hold completions up to number {seen} from this printer, "
                                 f"its own data only up to {self.holder.next_seq - 1}", out)
            self.holder.next_seq = seen + 1
            out.persists.append(Persist(next_seq=self.holder.next_seq))
        if any(r.lease_holder == self.node_id and (r.lease_req >> REQ_BOOT_SHIFT) >= self.holder.boot
               for r in self.records.values()):
            self._found_rollback("a lease was granted to a run of this node that its data does not know", out)

    def _found_rollback(self, detail: str, out: _Out) -> None:
        if not self.rolled_back:
            self.rolled_back = f"this node's data went back in time (an older SD card image?): {detail}"
            out.events.append(Alert("rolled_back", self.rolled_back))

    def _on_sync_request(self, msg: SyncRequest, now: float, out: _Out, instance: str, clash: str) -> None:
        newer, want = self._compare(msg.digest)
        vouched = not clash and (not self.detect_clones or self.identity.vouch(msg.sender, instance, now,
                                                                               self.vouch_span))
        out.sends.append(Send(msg.sender, SyncReply(self.node_id, msg.round, newer, clash, vouched)))
        if want and not clash:
            out.sends.append(Send(msg.sender, RecordFetch(self.node_id, want[: self.timings.max_jobs])))

    def _on_sync_reply(self, msg: SyncReply, now: float, out: _Out) -> None:
        self._check_records(msg.records)
        for rec in msg.records:
            self._merge(rec, now, out)
        if msg.clash:
            self._clashed(msg.clash, now, out)
        elif self._gate is not None and msg.round == self._gate.round:
            self._gate.answered.add(msg.sender)
            if msg.vouched:
                self._gate.vouched.add(msg.sender)

    def _on_identity_clash(self, msg: IdentityClash, now: float, out: _Out) -> None:
        others = [i for i in msg.instances if i != self.instance]
        if others and self.instance in msg.instances:
            self._clashed(others[0], now, out)

    def _clashed(self, other: str, now: float, out: _Out) -> None:
        """A peer hears this node id from another live run too: stop acting until that ends."""
        if not self.clash:
            out.events.append(Alert("identity_clash", f"node id {self.node_id} is used by another running node "
                                    f"(run {other[:8]}, this run {self.instance[:8]}); give one of them a new "
                                    f"identity: {RESET_IDENTITY}"))
        self.clash, self.clash_until = other, now + self.clash_hold
        for lease in list(self.holder.leases.values()):
            lease.valid_until = float("-inf")  # a print under this id must not go on
        self._close_gate(now + self.clash_hold, now, out)

    # ------------------------------------------------------------------------ queries
    def is_home(self, job_id: str) -> bool:
        rec = self.records.get(job_id)
        return rec is not None and rec.home == self.node_id and job_id in self.home

    def grant_live_until(self, job_id: str, now: float) -> float | None:
        return self.home.live_until(job_id, now) if job_id in self.home else None

    # ------------------------------------------------------------------------ internals
    def _out(self) -> _Out:
        return _Out(self.node_id, self.peers)

    def _finish(self, out: _Out, now: float) -> list[Action]:
        """Deliver messages this node sends to itself (it is home of a job it prints) in-process,
        then order everything: persists, events, sends."""
        for _ in range(64):
            loop = [s for s in out.sends if s.to == self.node_id]
            if not loop:
                return out.actions()
            out.sends = [s for s in out.sends if s.to != self.node_id]
            for s in loop:
                self._handlers[type(s.message)](s.message, now, out)
        raise LocalProtocolError("message loop did not settle")  # pragma: no cover

    def _home_of(self, job_id: str) -> str | None:
        rec = self.records.get(job_id)
        return rec.home if rec is not None else None

    def _home(self, job_id: str) -> str:
        rec = self.records.get(job_id)
        if rec is None:
            raise LocalProtocolError(f"unknown job {job_id}")
        return rec.home

    def _own(self, job_id: str) -> JobRecord:
        self._require_open()
        rec = self.records.get(job_id)
        if rec is None or rec.tombstone:
            raise LocalProtocolError(f"unknown job {job_id}")
        if not self.is_home(job_id):
            raise NotHomeError(f"job {job_id} lives on {rec.home}", rec.home)
        return rec

    def _write(self, rec: JobRecord, out: _Out) -> None:
        """A write by this node as the job's writer: persist, notify, push to every peer."""
        self.records[rec.id] = rec
        out.records[rec.id] = rec
        out.written[rec.id] = rec
        out.events.append(RecordChanged(rec))

    def _take_home(self, rec: JobRecord, now: float, out: _Out) -> None:
        deadline = self.home.take(rec, now)
        if deadline is not None and rec.lease_holder is not None:
            out.events.append(GrantLive(rec.id, rec.lease_holder, rec.lease_token, deadline))

    def _check_records(self, records: Sequence[JobRecord]) -> None:
        """Everything that makes a peer's records unacceptable, checked for a whole message
        before any of it is merged: a refused message changes nothing (`handle`'s promise)."""
        new: set[str] = set()
        for rec in records:
            problem = record_problem(rec, self.queue)
            if problem:
                raise RemoteProtocolError(f"record {rec.id[:8]}: {problem}")
            if rec.id not in self.records:
                new.add(rec.id)
        if new and len(self.records) + len(new) > self.timings.max_jobs:
            raise RemoteProtocolError("too many jobs in this queue")

    def _merge(self, rec: JobRecord, now: float, out: _Out) -> None:
        """Apply a replica from a peer: highest (epoch, version) wins."""
        if rec.queue != self.queue:
            raise RemoteProtocolError(f"record of queue {rec.queue!r} sent to {self.queue!r}")
        cur = self.records.get(rec.id)
        if not is_newer(rec, cur):
            return
        if cur is None and len(self.records) >= self.timings.max_jobs:
            raise RemoteProtocolError("too many jobs in this queue")
        was_home = rec.id in self.home
        if not self.sync_on_restart and was_home and cur is not None and rec.epoch == cur.epoch:
            return  # the old rule: "only this node writes its epoch, keep ours"
        rolled_back = rec.home == self.node_id and (
            (cur is None and (rec.epoch == 1 or rec.version > 1)) or
            (cur is not None and rec.epoch == cur.epoch and cur.home == self.node_id))
        if rolled_back:
            # Only this node writes its epoch of its jobs: a newer copy (or a job of ours we do not
            # know) was written by a run of this node whose data is gone, an older image restored.
            # Take it (the grants and counts in it are real) and record what happened.
            self._found_rollback(f"the other nodes hold newer copies of jobs this node is home of "
                                 f"({rec.id[:8]}: version {rec.version}, here {cur.version if cur else 'none'})", out)
            self._rollback_found[rec.id] = ConflictEntry(
                ConflictKind.ROLLED_BACK, self.node_id, rec.lease_token, rec.version,
                f"the home's data was restored from an older image (it had version "
                f"{cur.version if cur else 0}, the other nodes {rec.version}); prints it counted or granted "
                "meanwhile may have been repeated")
            if self._gate is None:  # found after the gate opened (that peer was away): record now
                entry = self._rollback_found.pop(rec.id)
                rec = replace(rec.with_conflict(entry), version=rec.version + 1)
                out.events.append(ConflictRecorded(rec.id, entry))
                out.written[rec.id] = rec
        if cur is not None and rec.epoch > cur.epoch and rec.home != self.node_id and (
                self.any_replica_raises_divergence or cur.home == self.node_id):
            if cur.home == self.node_id:
                self.home.drop(rec.id)  # another node adopted this job: our grants are stale
            taken = next((k for k in reversed(rec.adoptions) if k[0] == cur.epoch), None)
            if taken is not None and cur.key > taken:
                # Our copy is newer than the one the adopter started from (prints counted in it
                # are not counted there): tell the new home, and repeat from `tick` until its
                # record shows the conflict. Until then our copy carries the entry (a local
                # annotation, same key), so the notice survives a restart of this node.
                who = "old home" if cur.home == self.node_id else f"a copy held by {self.node_id}"
                entry = ConflictEntry(ConflictKind.DIVERGED, self.node_id, cur.lease_token, cur.version,
                                      f"{who} changed the job up to version {cur.version} after the copy "
                                      f"adopted at {taken}")
                if entry not in rec.conflicts:
                    self._diverged[rec.id] = entry
                    pending = replace(entry, detail=_PENDING + entry.detail)
                    rec = replace(rec, conflicts=rec.conflicts + (pending,))
                    out.sends.append(Send(rec.home, ConflictNotice(self.node_id, rec.id, entry)))
        if cur is not None and rec.id in self._diverged:
            # Carry our not-yet-recorded adopt notice over to newer copies until one shows it.
            clean = self._diverged[rec.id]
            pending = replace(clean, detail=_PENDING + clean.detail)
            if clean not in rec.conflicts and pending not in rec.conflicts:
                rec = replace(rec, conflicts=rec.conflicts + (pending,))
        self.records[rec.id] = rec
        out.records[rec.id] = rec
        out.events.append(RecordChanged(rec))
        if was_home and rec.home != self.node_id:
            self.home.drop(rec.id)
        if rec.home == self.node_id and not rec.tombstone and (
                not was_home or cur is None or rec.epoch > cur.epoch or rolled_back):
            self._take_home(rec, now, out)
        hw = rec.applied_seq(self.node_id)
        if hw >= self.holder.next_seq:
            self._learn_own_past(out)

    def _reply_not_home(self, msg: Message, job_id: str, out: _Out) -> None:
        out.sends.append(Send(msg.sender, NotHome(self.node_id, job_id, self.records.get(job_id))))

    def _homed(self, job_id: str) -> JobRecord | None:
        rec = self.records.get(job_id)
        if rec is None or not self.is_home(job_id):
            return None
        return rec

    def _deleted_here(self, job_id: str) -> JobRecord | None:
        """A job this node deleted as its home: answer for it, so holders stop retrying."""
        rec = self.records.get(job_id)
        if rec is not None and rec.tombstone and rec.home == self.node_id:
            return rec
        return None

    # -- home handlers
    def _grant_reply(self, msg: AcquireRequest | RenewRequest, rec: JobRecord, effect: Effect,
                     live_until: float | None, out: _Out) -> None:
        if effect in (Effect.GRANT, Effect.REGRANT, Effect.EXTEND):
            assert live_until is not None and rec.lease_holder is not None
            out.events.append(GrantLive(rec.id, rec.lease_holder, rec.lease_token, live_until))
            out.sends.append(Send(msg.sender, LeaseGranted(self.node_id, rec.id, rec.lease_token, msg.req, rec)))
            return
        reason = {Effect.DENY_HELD: DenyReason.HELD, Effect.DENY_LOCKED: DenyReason.LOCKED}.get(
            effect, DenyReason.STALE_TOKEN if isinstance(msg, RenewRequest) else DenyReason.NOT_AVAILABLE)
        out.sends.append(Send(msg.sender, LeaseDenied(self.node_id, rec.id, msg.req, reason, rec)))

    def _home_waits(self, job_id: str, now: float, *, renew: bool = False) -> bool:
        """While the sync gate is closed a home writes nothing: requests wait for their retry. A
        renew (it writes nothing) is answered once the records are caught up, so the printers of
        this home's jobs keep their leases across its restart."""
        gate = self._gate
        if gate is None:
            return False
        return not (renew and gate.caught_up and job_id not in self.home.due(now))

    def _on_acquire(self, msg: AcquireRequest, now: float, out: _Out) -> None:
        if self._gate is not None:
            out.sends.append(Send(msg.sender, LeaseDenied(self.node_id, msg.job_id, msg.req, DenyReason.SYNCING)))
            return
        rec = self._homed(msg.job_id)
        if rec is None and (dead := self._deleted_here(msg.job_id)) is not None:
            out.sends.append(Send(msg.sender, LeaseDenied(self.node_id, dead.id, msg.req, DenyReason.NOT_AVAILABLE, dead)))
            return
        if rec is None:
            out.sends.append(Send(msg.sender, LeaseDenied(self.node_id, msg.job_id, msg.req, DenyReason.NOT_HOME,
                                                          self.records.get(msg.job_id))))
            return
        d = self.home.acquire(rec, msg.sender, now, msg.req)
        if d.changed:
            self._write(d.record, out)
        if d.effect is Effect.REGRANT:
            out.events.append(GrantEnded(rec.id, rec.lease_token, True))
        self._grant_reply(msg, d.record, d.effect, d.live_until, out)

    def _on_renew(self, msg: RenewRequest, now: float, out: _Out) -> None:
        if self._home_waits(msg.job_id, now, renew=True):
            return
        rec = self._homed(msg.job_id)
        if rec is None and (dead := self._deleted_here(msg.job_id)) is not None:
            out.sends.append(Send(msg.sender, LeaseDenied(self.node_id, dead.id, msg.req, DenyReason.NOT_AVAILABLE, dead)))
            return
        if rec is None:
            out.sends.append(Send(msg.sender, LeaseDenied(self.node_id, msg.job_id, msg.req, DenyReason.NOT_HOME,
                                                          self.records.get(msg.job_id))))
            return
        d = self.home.renew(rec, msg.sender, msg.token, now)
        if d.changed:
            self._write(d.record, out)
        self._grant_reply(msg, d.record, d.effect, d.live_until, out)

    def _on_release(self, msg: ReleaseRequest, now: float, out: _Out) -> None:
        if self._home_waits(msg.job_id, now):
            return
        rec = self._homed(msg.job_id)
        if rec is None and self._deleted_here(msg.job_id) is not None:
            out.sends.append(Send(msg.sender, ReleaseAck(self.node_id, msg.job_id, msg.token, True)))
            return
        if rec is None:
            self._reply_not_home(msg, msg.job_id, out)
            return
        d = self.home.release(rec, msg.sender, msg.token, now)
        if d.changed:
            self._write(d.record, out)
        if d.effect is Effect.FREE:
            out.events.append(GrantEnded(rec.id, rec.lease_token, True))
        out.sends.append(Send(msg.sender, ReleaseAck(self.node_id, rec.id, msg.token, d.effect is not Effect.DENY_STALE)))

    def _on_progress(self, msg: ProgressReport, now: float, out: _Out) -> None:
        rec = self._homed(msg.job_id)
        if rec is None:
            self._reply_not_home(msg, msg.job_id, out)
        elif msg.token == rec.lease_token and rec.lease_holder == msg.sender:
            self.progress[rec.id] = msg.progress
        else:
            out.sends.append(Send(msg.sender, ProgressRejected(self.node_id, rec.id, msg.token)))

    def _on_completion(self, msg: CompletionReport, now: float, out: _Out) -> None:
        if self._home_waits(msg.job_id, now):
            return
        rec = self._homed(msg.job_id) or self._deleted_here(msg.job_id)
        if rec is None:
            self._reply_not_home(msg, msg.job_id, out)
            return
        outcome, new = apply_completion(rec, msg.sender, msg.token, msg.seq, msg.set_index,
                                        fenced=self.fence_completions)
        if new is not rec:
            self._write(new, out)
        if outcome is CompletionOutcome.APPLIED:
            out.events.append(CompletionApplied(rec.id, msg.sender, msg.token, msg.seq, msg.set_index))
        elif outcome is CompletionOutcome.CONFLICT:
            out.events.append(ConflictRecorded(rec.id, new.conflicts[-1]))
        accepted = outcome in (CompletionOutcome.APPLIED, CompletionOutcome.DUPLICATE)
        out.sends.append(Send(msg.sender, CompletionAck(self.node_id, rec.id, msg.seq, accepted, new)))

    def _on_conflict_notice(self, msg: ConflictNotice, now: float, out: _Out) -> None:
        if self._home_waits(msg.job_id, now):
            return
        rec = self._homed(msg.job_id) or self._deleted_here(msg.job_id)
        if rec is None:
            return
        if msg.entry in rec.conflicts:
            return
        self._write(rec.with_conflict(msg.entry), out)
        out.events.append(ConflictRecorded(rec.id, msg.entry))

    # -- holder handlers
    def _on_granted(self, msg: LeaseGranted, now: float, out: _Out) -> None:
        self._merge(msg.record, now, out)
        out.add(self.holder.on_granted(msg.sender, msg.job_id, msg.token, msg.req, now))

    def _on_denied(self, msg: LeaseDenied, now: float, out: _Out) -> None:
        if msg.record is not None:
            self._merge(msg.record, now, out)
        out.add(self.holder.on_denied(msg.job_id, msg.req, msg.reason))

    def _on_release_ack(self, msg: ReleaseAck, now: float, out: _Out) -> None:
        out.add(self.holder.on_release_ack(msg.job_id, msg.token))

    def _on_progress_rejected(self, msg: ProgressRejected, now: float, out: _Out) -> None:
        out.add(self.holder.on_progress_rejected(msg.job_id, msg.token))

    def _on_completion_ack(self, msg: CompletionAck, now: float, out: _Out) -> None:
        self._merge(msg.record, now, out)
        out.add(self.holder.on_completion_ack(msg.seq, msg.accepted))
        rec = self.records.get(msg.job_id)
        if self._gate is not None:
            return  # releases wait for the gate: a clone must not give back the other run's leases
        if rec is not None:
            out.add(self.holder.pending_release(msg.job_id, rec.home, now))
        lease = self.holder.leases.get(msg.job_id)
        if rec is not None and lease is not None and lease.phase is HolderPhase.HELD and lease.printing is None \
                and (rec.done or rec.tombstone):
            out.add(self.holder.release(msg.job_id, rec.home, now))

    def _on_not_home(self, msg: NotHome, now: float, out: _Out) -> None:
        if msg.record is not None:
            self._merge(msg.record, now, out)

    # -- replication handlers
    def _on_push(self, msg: RecordPush, now: float, out: _Out) -> None:
        self._check_records(msg.records)
        for rec in msg.records:
            self._merge(rec, now, out)

    def _compare(self, digest: tuple[tuple[str, int, int], ...]) -> tuple[tuple[JobRecord, ...], tuple[str, ...]]:
        """A peer's digest against ours: our records newer than its copies, and the jobs it has
        newer copies of."""
        if len(digest) > self.timings.max_jobs:
            raise RemoteProtocolError("digest larger than any queue may be")
        theirs = {j: (e, v) for j, e, v in digest}
        newer_here = tuple(r for j, r in sorted(self.records.items()) if theirs.get(j, (-1, -1)) < r.key)
        want = tuple(j for j, k in theirs.items() if j not in self.records or self.records[j].key < k)
        return newer_here, want

    def _on_digest(self, msg: DigestRequest, now: float, out: _Out) -> None:
        newer_here, want = self._compare(msg.digest)
        if newer_here:
            out.sends.append(Send(msg.sender, RecordPush(self.node_id, newer_here)))
        if want:
            out.sends.append(Send(msg.sender, RecordFetch(self.node_id, want[: self.timings.max_jobs])))

    def _on_fetch(self, msg: RecordFetch, now: float, out: _Out) -> None:
        if len(msg.job_ids) > self.timings.max_jobs:
            raise RemoteProtocolError("fetch larger than any queue may be")
        found = tuple(self.records[j] for j in msg.job_ids if j in self.records)
        if found:
            out.sends.append(Send(msg.sender, RecordPush(self.node_id, found)))

