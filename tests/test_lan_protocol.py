"""Scenario tests of the LAN protocol core with a tiny in-memory harness (no simulation noise)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanqueue.sync.errors import LocalProtocolError, NotHomeError, RemoteProtocolError
from lanqueue.sync.messages import (
    AcquireFailed,
    AcquireRequest,
    Action,
    CompletionAck,
    CompletionApplied,
    CompletionReport,
    ConflictRecorded,
    DigestRequest,
    DenyReason,
    GrantLive,
    LeaseAcquired,
    LeaseGranted,
    LeaseLost,
    Persist,
    RecordFetch,
    RecordPush,
    Send,
)
from lanqueue.sync.protocol import DurableState, LanNodeCore
from lanqueue.sync.records import (
    CompletionOutcome,
    ConflictKind,
    JobRecord,
    SetRecord,
    Timings,
    apply_completion,
    digest_of,
    requested_prints,
)

T = Timings(ttl=60.0, renew_every=20.0, lock_delay=60.0, retry_every=5.0, anti_entropy_every=30.0)
SETS = [SetRecord("a.gcode", count=2, remaining=0, hash="a" * 64), SetRecord("b.gcode", count=1, remaining=0)]


class Cluster:
    """Nodes with durable stores; `flush` delivers every queued message in order."""

    def __init__(self, *ids: str) -> None:
        self.ids = ids
        self.runs = 0
        self.stores = {i: DurableState() for i in ids}
        self.cores = {}
        for i in ids:  # a first start, as the adapter makes it: from an empty disk
            self.cores[i], actions = LanNodeCore.restore(i, "farm", DurableState(), 0.0, T, ids, instance=f"{i}.0")
            for a in actions:
                if isinstance(a, Persist):
                    self.stores[i].apply(a)
        self.queue: list[tuple[str, Send]] = []
        self.events: list[tuple[str, Action]] = []
        self.cut: set[frozenset[str]] = set()

    def run(self, node: str, actions: list[Action]) -> list[Action]:
        seen_send = False
        for a in actions:
            if isinstance(a, Persist):
                assert not seen_send, "a Persist came after a Send"
                self.stores[node].apply(a)
            elif isinstance(a, Send):
                seen_send = True
                if frozenset((node, a.to)) not in self.cut:
                    self.queue.append((node, a))
            else:
                self.events.append((node, a))
        return actions

    def flush(self, now: float, limit: int = 1000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            src, send = self.queue.pop(0)
            if send.to in self.cores and frozenset((src, send.to)) not in self.cut:
                sender = self.cores.get(src)
                self.run(send.to, self.cores[send.to].handle(send.message, now, sender.instance if sender else ""))
        raise AssertionError("messages did not settle")

    def do(self, node: str, method: str, *args: object, now: float) -> list[Action]:
        actions = self.run(node, getattr(self.cores[node], method)(*args, now))
        self.flush(now)
        return actions

    def tick(self, now: float) -> None:
        for i, core in self.cores.items():
            self.run(i, core.tick(now))
        self.flush(now)

    def crash(self, node: str, now: float) -> None:
        self.runs += 1
        core, actions = LanNodeCore.restore(node, "farm", self.stores[node].copy(), now, T, self.ids,
                                            instance=f"{node}.{self.runs}")
        self.cores[node] = core
        self.run(node, actions)
        self.flush(now)

    def of(self, kind: type, node: str | None = None) -> list:
        return [e for n, e in self.events if isinstance(e, kind) and (node is None or n == node)]


def past_gate(c: Cluster, restarted_at: float) -> float:
    """Tick every 5 s until every core has passed its sync gate (the grace, then every peer
    vouching for its new run). Returns the time reached."""
    now = restarted_at
    while not all(core.ready for core in c.cores.values()):
        now += 5.0
        assert now < restarted_at + 600, "the sync gate did not open"
        c.tick(now)
    return now


def submit(c: Cluster, home: str = "h", job: str = "j1", count: int = 1) -> None:
    c.do(home, "submit_job", job, "benchy", SETS, count, now=0.0)


def test_submit_replicates_to_every_peer() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    for i in c.ids:
        rec = c.cores[i].records["j1"]
        assert (rec.home, rec.epoch, rec.version, rec.remaining) == ("h", 1, 1, 1)
        assert [s.remaining for s in rec.sets] == [2, 1]
        assert c.stores[i].records["j1"] == rec


def test_grant_is_persisted_before_the_reply_leaves() -> None:
    c = Cluster("h", "p")
    submit(c)
    actions = c.cores["h"].handle(AcquireRequest("p", "j1", req=1), 1.0)
    kinds = [type(a).__name__ for a in actions]
    assert kinds[0] == "Persist" and "LeaseGranted" in repr(actions)
    persisted = actions[0]
    assert isinstance(persisted, Persist) and persisted.records[0].lease_holder == "p"
    reply = next(a.message for a in actions if isinstance(a, Send) and isinstance(a.message, LeaseGranted))
    assert isinstance(reply, LeaseGranted) and reply.token == persisted.records[0].lease_token


def test_full_cycle_counting_rules_and_release_when_done() -> None:
    c = Cluster("h", "p")
    submit(c, count=2)
    c.do("p", "want_to_print", "j1", now=1.0)
    assert c.of(LeaseAcquired, "p")
    prints = []
    t = 2.0
    while True:
        rec = c.cores["p"].records["j1"]
        if rec.done:
            break
        prints.append(c.cores["p"].start_print("j1", t))
        c.do("p", "report_complete", "j1", now=t + 1)
        c.tick(t + 1.5)
        t += 2.0
    # Two runs of (a, a, b): sets reset when a run ends.
    assert prints == [0, 0, 1, 0, 0, 1]
    rec = c.cores["h"].records["j1"]
    assert rec.remaining == 0 and [s.completed for s in rec.sets] == [4, 2]
    assert len(c.of(CompletionApplied, "h")) == requested_prints(rec) == 6
    assert rec.lease_holder is None  # the holder released when the job was done
    assert not c.cores["p"].holder.leases and not c.stores["p"].held


def test_no_print_without_a_valid_lease() -> None:
    c = Cluster("h", "p")
    submit(c)
    with pytest.raises(LocalProtocolError):
        c.cores["p"].start_print("j1", 1.0)
    c.do("p", "want_to_print", "j1", now=1.0)
    # Valid until send time + TTL * (1 - margin) on the holder's clock, not a moment longer.
    assert c.cores["p"].lease_valid("j1", 1.0 + 60 * 0.75 - 0.01)
    assert not c.cores["p"].lease_valid("j1", 1.0 + 60 * 0.75)
    with pytest.raises(LocalProtocolError):
        c.cores["p"].start_print("j1", 50.0)


def test_renewal_keeps_the_lease_and_needs_no_write() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    version = c.cores["h"].records["j1"].version
    for t in range(0, 300, 5):
        c.tick(float(t))
    assert c.cores["p"].lease_valid("j1", 300.0)
    assert c.cores["h"].records["j1"].version == version


def test_second_holder_is_denied_while_the_first_holds() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=1.0)
    c.do("q", "want_to_print", "j1", now=2.0)
    assert [e.reason for e in c.of(AcquireFailed, "q")] == [DenyReason.HELD]


def test_expiry_then_lock_delay_then_the_job_returns() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cut.add(frozenset(("h", "p")))  # p vanishes from the network
    c.tick(61.0)  # expired, now in lock-delay
    c.do("q", "want_to_print", "j1", now=61.0)
    assert [e.reason for e in c.of(AcquireFailed, "q")] == [DenyReason.LOCKED]
    c.tick(100.0)
    c.tick(121.0)  # TTL + lock-delay after the grant
    c.do("q", "want_to_print", "j1", now=121.0)
    assert c.of(LeaseAcquired, "q")


def test_stale_completion_becomes_a_conflict_and_counts_nothing() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    c.cut.add(frozenset(("h", "p")))
    c.tick(130.0)  # p's grant expired and the lock-delay passed
    c.do("q", "want_to_print", "j1", now=130.0)
    assert c.of(LeaseAcquired, "q")
    c.cut.clear()
    c.do("p", "report_complete", "j1", now=140.0)  # p finished its lapsed print and reports it
    rec = c.cores["h"].records["j1"]
    assert [s.remaining for s in rec.sets] == [2, 1] and not c.of(CompletionApplied)
    (conflict,) = c.of(ConflictRecorded, "h")
    assert conflict.entry.kind is ConflictKind.STALE_TOKEN
    assert rec.conflicts == (conflict.entry,)  # visible to every user through the record
    assert not c.cores["p"].holder.outbox  # acknowledged (as a conflict): no more retries


def test_completion_is_applied_once_per_idempotency_key() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    actions = c.cores["p"].report_complete("j1", 2.0)
    report = next(a.message for a in actions if isinstance(a, Send))
    assert isinstance(report, CompletionReport)
    for _ in range(3):  # duplicates in the network
        replies = c.cores["h"].handle(report, 3.0)
        ack = next(a.message for a in replies if isinstance(a, Send) and isinstance(a.message, CompletionAck))
        assert ack.accepted
    assert c.cores["h"].records["j1"].sets[0].completed == 1


def test_outbox_survives_holder_crash_and_is_retried() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    c.cut.add(frozenset(("h", "p")))
    c.do("p", "report_complete", "j1", now=2.0)  # lost
    assert c.stores["p"].outbox
    c.crash("p", 3.0)
    c.cut.clear()
    c.tick(10.0)
    assert c.cores["h"].records["j1"].sets[0].completed == 1  # reported even before the gate opens
    assert not c.stores["p"].outbox
    past_gate(c, 3.0)
    # The crashed holder also gave its lease back (after its outbox emptied): the job is free.
    assert c.cores["h"].records["j1"].lease_holder is None and not c.stores["p"].held


def test_holder_restart_releases_its_leases_once_it_knows_its_state() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    c.crash("p", 5.0)  # the print was interrupted
    assert c.cores["h"].records["j1"].lease_holder == "p"  # not before the sync gate opens
    now = past_gate(c, 5.0)
    assert c.cores["h"].records["j1"].lease_holder is None
    c.do("q", "want_to_print", "j1", now=now)
    assert c.of(LeaseAcquired, "q")


def test_home_restart_keeps_outstanding_grants_live_for_ttl_plus_lock_delay() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    token = c.cores["h"].records["j1"].lease_token
    c.cut.add(frozenset(("h", "p")))
    c.crash("h", 1000.0)  # its clock restarts; it cannot know how long it was down
    c.cores["h"].set_peers(["q"])  # p is unreachable: it went offline (heartbeats)
    c.tick(1000.0)  # caught up with q: the restored grant is announced
    (restored,) = [e for e in c.of(GrantLive, "h") if e.live_until > 1000.0]
    assert restored.live_until == 1000.0 + 60 + 60 and restored.token == token
    c.do("q", "want_to_print", "j1", now=1001.0)
    assert [e.reason for e in c.of(AcquireFailed, "q")] == [DenyReason.SYNCING]
    assert c.cores["h"].grant_live_until("j1", 1119.0) == 1120.0  # the S6 window, whatever the gate does
    now = past_gate(c, 1000.0)  # the gate outlasts the window here (vouching takes 135 s)
    c.events.clear()
    c.do("q", "want_to_print", "j1", now=now)
    assert c.of(LeaseAcquired, "q")
    assert c.cores["h"].records["j1"].lease_token > token  # S2 across the restart


def test_a_holder_renewing_across_a_home_restart_keeps_its_lease() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    token = c.cores["h"].records["j1"].lease_token
    c.crash("h", 10.0)
    c.tick(20.0)  # p renews with its token: the restored grant turns live
    assert c.cores["p"].lease_valid("j1", 21.0)
    assert c.cores["h"].records["j1"].lease_token == token


def test_drain_moves_jobs_and_leases_to_a_new_home() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    token = c.cores["h"].records["j1"].lease_token
    c.do("h", "drain", ["q"], now=5.0)
    del c.cores["h"]  # h shuts down
    rec = c.cores["q"].records["j1"]
    assert (rec.home, rec.epoch, rec.lease_token) == ("q", 2, token)
    assert c.cores["q"].is_home("j1")
    c.tick(25.0)  # p renews at the new home with the same token
    assert c.cores["p"].lease_valid("j1", 26.0)
    c.cores["p"].start_print("j1", 26.0)
    c.do("p", "report_complete", "j1", now=30.0)
    assert c.cores["q"].records["j1"].sets[0].completed == 1


def test_adopt_makes_the_old_home_stale_and_reports_divergence() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    for peer in ("p", "q"):
        c.cut.add(frozenset(("h", peer)))  # h looks gone
    c.do("q", "adopt", "h", now=2.0)
    rec = c.cores["q"].records["j1"]
    assert (rec.home, rec.epoch, rec.adopted_from) == ("q", 2, (1, 2))
    # p's print finishes; it can only reach q, whose current token is the inherited one.
    c.do("p", "report_complete", "j1", now=3.0)
    assert c.cores["q"].records["j1"].sets[0].completed == 1
    # Meanwhile the old home, cut off, granted another lease in its stale epoch.
    c.cut.discard(frozenset(("h", "q")))
    c.cut.add(frozenset(("p", "q")))
    # p's old grant ran out on h's clock; x (still on h's side) gets a grant in epoch 1.
    granted = c.cores["h"].handle(AcquireRequest("x", "j1", 99), 200.0)
    assert any(isinstance(a, Send) and isinstance(a.message, LeaseGranted) for a in granted)
    c.cut.clear()
    c.tick(240.0)  # anti-entropy: h learns of epoch 2
    assert not c.cores["h"].is_home("j1")
    assert c.cores["h"].records["j1"].epoch == 2
    kinds = {e.entry.kind for e in c.of(ConflictRecorded, "q")}
    assert ConflictKind.DIVERGED in kinds
    # Tokens of the new epoch are above anything the old home could issue.
    assert c.cores["q"].records["j1"].lease_token < (3 << 32)


def test_delete_by_home_tombstones_and_later_reports_conflict() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    c.do("h", "delete_job", "j1", now=2.0)
    assert c.cores["p"].records["j1"].tombstone
    c.do("p", "report_complete", "j1", now=3.0)
    assert [e.entry.kind for e in c.of(ConflictRecorded)] == [ConflictKind.DELETED]
    c.tick(10.0)
    c.tick(20.0)
    assert not c.cores["p"].holder.leases
    with pytest.raises(LocalProtocolError):
        c.cores["h"].delete_job("j1", 30.0)  # already deleted


def test_only_home_deletes() -> None:
    c = Cluster("h", "p")
    submit(c)
    with pytest.raises(NotHomeError) as e:
        c.cores["p"].delete_job("j1", 1.0)
    assert e.value.home == "h"


def test_anti_entropy_catches_up_a_node_that_was_off() -> None:
    c = Cluster("h", "p")
    c.cut.add(frozenset(("h", "p")))
    submit(c)
    submit(c, job="j2")
    assert not c.cores["p"].records
    c.cut.clear()
    c.tick(0.0)
    assert digest_of(c.cores["p"].records) == digest_of(c.cores["h"].records)


def test_wrong_queue_is_a_remote_error_and_stores_nothing() -> None:
    c = Cluster("h", "p")
    submit(c)
    bad = replace(c.cores["h"].records["j1"], id="j9", queue="other")
    with pytest.raises(RemoteProtocolError):
        c.cores["p"].handle(RecordPush("h", (bad,)), 1.0)
    assert "j9" not in c.cores["p"].records


def test_record_table_is_bounded() -> None:
    small = Timings(max_jobs=2)
    h = LanNodeCore("h", "farm", small, ["p"])
    p = LanNodeCore("p", "farm", small, ["h"])
    for i in range(2):
        h.submit_job(f"j{i}", "x", SETS, 1, 0.0)
    with pytest.raises(LocalProtocolError):
        h.submit_job("j2", "x", SETS, 1, 0.0)
    recs = tuple(h.records.values())
    p.handle(RecordPush("h", recs), 0.0)
    extra = replace(recs[0], id="j3")
    with pytest.raises(RemoteProtocolError):
        p.handle(RecordPush("h", (extra,)), 0.0)


def test_oversized_anti_entropy_messages_are_remote_errors() -> None:
    core = LanNodeCore("p", "farm", Timings(max_jobs=3), ["h"])
    with pytest.raises(RemoteProtocolError):
        core.handle(DigestRequest("h", tuple((f"j{i}", 1, 1) for i in range(4))), 0.0)
    with pytest.raises(RemoteProtocolError):
        core.handle(RecordFetch("h", tuple(f"j{i}" for i in range(4))), 0.0)
    with pytest.raises(RemoteProtocolError):
        core.handle(AcquireRequest("p", "j1", 1), 0.0)  # claims to come from this node


def test_restore_state_equals_durable_state() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    c.cut.add(frozenset(("h", "p")))
    c.do("p", "report_complete", "j1", now=2.0)
    for i in c.ids:
        assert c.cores[i].durable_state() == c.stores[i]


def test_apply_completion_rules() -> None:
    rec = JobRecord(id="j", queue="q", home="h", epoch=1, version=1, name="j", count=1, remaining=1,
                    sets=(SetRecord("a", 1, 1),), lease_holder="p", lease_token=5)
    outcome, new = apply_completion(rec, "p", 4, 1, 0)
    assert outcome is CompletionOutcome.CONFLICT and new.sets == rec.sets
    outcome, new = apply_completion(rec, "p", 5, 2, 0)
    assert outcome is CompletionOutcome.APPLIED and new.done
    assert apply_completion(new, "p", 5, 2, 0)[0] is CompletionOutcome.DUPLICATE
    outcome, over = apply_completion(new, "p", 5, 3, 0)
    assert outcome is CompletionOutcome.CONFLICT and over.conflicts[-1].kind is ConflictKind.OVER_COMPLETION
    assert apply_completion(over, "p", 5, 3, 0)[0] is CompletionOutcome.DUPLICATE_CONFLICT


def test_lost_lease_is_reported_to_the_holder() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cut.add(frozenset(("h", "p")))
    c.tick(130.0)
    c.do("q", "want_to_print", "j1", now=130.0)
    c.cut.clear()
    c.tick(151.0)  # p renews with its old token
    assert c.of(LeaseLost, "p") and not c.cores["p"].holder.leases


def test_timings_are_validated() -> None:
    with pytest.raises(ValueError):
        Timings(ttl=10, renew_every=10)
    with pytest.raises(ValueError):
        Timings(holder_margin=1.0)
    with pytest.raises(ValueError):
        Timings(ttl=10, renew_every=8, holder_margin=0.25)  # would lapse between renewals


@given(
    count=st.integers(min_value=1, max_value=4),
    set_counts=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=4),
    noise=st.lists(st.sampled_from(["stale", "dup", "wrong_set"]), max_size=30),
)
def test_counting_rules_reach_exactly_the_requested_prints(count: int, set_counts: list[int],
                                                           noise: list[str]) -> None:
    sets = tuple(SetRecord(f"{i}.gcode", c, c) for i, c in enumerate(set_counts))
    rec = JobRecord(id="j", queue="q", home="h", epoch=1, version=1, name="j", count=count, remaining=count,
                    sets=sets, lease_holder="p", lease_token=7)
    seq, applied, noise_iter = 0, 0, iter(noise)
    while not rec.done:
        index = rec.next_set()
        assert index is not None
        seq += 1
        outcome, rec = apply_completion(rec, "p", 7, seq, index)
        assert outcome is CompletionOutcome.APPLIED
        applied += 1
        kind = next(noise_iter, None)
        before = (rec.remaining, rec.sets)
        if kind == "stale":
            seq += 1
            assert apply_completion(rec, "p", 6, seq, index)[1].sets == rec.sets  # S3: no count changes
        elif kind == "dup":
            assert apply_completion(rec, "p", 7, seq, index) == (CompletionOutcome.DUPLICATE, rec)
        elif kind == "wrong_set":
            seq += 1
            out, new = apply_completion(rec, "p", 7, seq, len(sets))
            assert out is CompletionOutcome.CONFLICT and (new.remaining, new.sets) == before
    assert applied == requested_prints(rec)
    assert [s.completed for s in rec.sets] == [c * count for c in set_counts]
    assert rec.next_set() is None


def test_lapsed_print_counts_if_nobody_else_got_the_job() -> None:
    """S7: the holder finishes a print whose lease lapsed; S3 counts it while its token is current."""
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    c.cores["p"].start_print("j1", 1.0)
    c.cut.add(frozenset(("h", "p")))
    c.tick(100.0)  # renewals lost: p's lease lapsed, h's grant expired (lock-delay running)
    assert not c.cores["p"].lease_valid("j1", 100.0)
    c.cut.clear()
    c.do("p", "report_complete", "j1", now=101.0)
    assert c.cores["h"].records["j1"].sets[0].completed == 1 and not c.of(ConflictRecorded)
    with pytest.raises(LocalProtocolError):
        c.cores["p"].start_print("j1", 102.0)  # but no new print without a valid lease


def test_count_edit_keeps_runs_done_and_reset_starts_over():
    from lanqueue.sync.protocol import LanNodeCore
    from lanqueue.sync.records import SetRecord

    core = LanNodeCore("home", "farm")
    core.submit_job("j", "J", [SetRecord("a.gcode", 1, 1, hash="0" * 64)], 3, 0.0)
    rec = core.records["j"]
    core.records["j"] = rec.bump(remaining=1)  # two runs done
    core.update_job("j", 1.0, count=5)
    assert (core.records["j"].count, core.records["j"].remaining) == (5, 3)
    core.update_job("j", 2.0, count=1)
    assert core.records["j"].remaining == 0
    core.reset_job("j", 3.0)
    assert core.records["j"].remaining == 1 and core.records["j"].sets[0].remaining == 1
    version = core.records["j"].version
    import pytest
    from lanqueue.sync.errors import LocalProtocolError
    with pytest.raises(LocalProtocolError):
        core.update_job("j", 4.0, count=0)
    assert core.records["j"].version == version
