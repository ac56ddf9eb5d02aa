"""Issue 11 on the pure core: what people do with Raspberry Pis, one scenario each.

A restored SD image of a home or of a holder, a cloned card, adopting from a stale copy, a frozen
holder. The seeded simulator (test_lan_sim.py) runs these faults at random; here each is played
out step by step, so a failure names the rule that broke.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_lan_protocol import Cluster, T, past_gate, submit  # noqa: E402

from lanqueue.sync.identity import IdentityWatch  # noqa: E402
from lanqueue.sync.messages import (  # noqa: E402
    AcquireFailed,
    Alert,
    ConflictRecorded,
    DenyReason,
    IdentityClash,
    LeaseGranted,
    RenewRequest,
    Send,
)
from lanqueue.sync.protocol import LanNodeCore  # noqa: E402
from lanqueue.sync.records import ConflictKind  # noqa: E402


def print_one(c: Cluster, holder: str, job: str, now: float) -> None:
    c.do(holder, "want_to_print", job, now=now)
    c.cores[holder].start_print(job, now + 0.1)
    c.do(holder, "report_complete", job, now=now + 0.2)


def test_restored_home_takes_its_peers_newer_records_and_never_reissues_a_token() -> None:
    c = Cluster("h", "p", "q")
    submit(c, count=2)
    image = c.stores["h"].copy()  # the SD card image, taken here
    old_key = image.records["j1"].key
    print_one(c, "p", "j1", 1.0)  # p still holds the job afterwards (one more copy to print)
    token = c.cores["h"].records["j1"].lease_token
    c.stores["h"] = image  # the card is put back
    c.crash("h", 100.0)
    c.tick(100.0)
    assert c.cores["h"].records["j1"].key > old_key  # caught up from p and q
    assert c.cores["h"].records["j1"].lease_token == token
    c.do("q", "want_to_print", "j1", now=101.0)
    assert [e.reason for e in c.of(AcquireFailed, "q")] == [DenyReason.SYNCING]  # nothing before the gate
    past_gate(c, 100.0)
    alerts = [e for e in c.of(Alert, "h") if e.kind == "rolled_back"]
    assert alerts and "went back in time" in alerts[0].detail
    rec = c.cores["h"].records["j1"]
    assert any(x.kind is ConflictKind.ROLLED_BACK for x in rec.conflicts)  # the user sees it
    assert rec.sets[0].completed == 1  # the print counted before the rollback still counts
    assert all(r.records["j1"] == rec for r in c.cores.values())  # one record everywhere
    assert c.cores["h"].status(200.0)["rolled_back"]


def test_restored_holder_continues_above_the_sequence_numbers_its_peers_hold() -> None:
    c = Cluster("h", "p")
    submit(c, count=3)
    image = c.stores["p"].copy()
    print_one(c, "p", "j1", 1.0)
    print_one(c, "p", "j1", 2.0)
    assert c.cores["h"].records["j1"].applied == (("p", 2),)
    c.stores["p"] = image  # next_seq goes back to 1
    c.crash("p", 50.0)
    now = past_gate(c, 50.0)
    assert c.cores["p"].holder.next_seq == 3  # learnt from h's record, and persisted
    assert c.stores["p"].next_seq == 3
    print_one(c, "p", "j1", now + 1)  # counted, not taken for a repeat of seq 1
    done = c.cores["h"].records["j1"]
    assert done.count * sum(s.count for s in done.sets) - sum(s.remaining for s in done.sets) >= 3


def test_a_completion_under_a_token_held_by_another_node_is_a_conflict() -> None:
    c = Cluster("h", "p", "q")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    token = c.cores["h"].records["j1"].lease_token
    from lanqueue.sync.messages import CompletionReport

    c.run("h", c.cores["h"].handle(CompletionReport("q", "j1", token, 1, 0), 1.0))
    assert [e.entry.kind for e in c.of(ConflictRecorded, "h")] == [ConflictKind.STALE_TOKEN]
    assert c.cores["h"].records["j1"].sets[0].completed == 0


def test_identity_watch_tells_a_restart_from_a_clone() -> None:
    w = IdentityWatch(grace=15.0, hold=100.0)
    w.heard("n", "a", 0.0)
    w.heard("n", "b", 10.0)  # restarted
    w.heard("n", "a", 12.0)  # a late message of the old run
    w.heard("n", "b", 40.0)
    assert w.clash("n", 40.0) is None
    w.heard("n", "a", 41.0)  # the old run is still alive: two nodes with one id
    assert w.clash("n", 41.0) == ("a", "b")
    assert w.other_than("n", "b", 41.0) == "a"
    assert not w.vouch("n", "b", 41.0, 10.0)  # nobody vouches for a run while its id is used twice
    assert w.clash("n", 300.0) is None  # neither heard for `hold`: it ended


def test_cloned_node_is_refused_and_both_runs_stop_acting() -> None:
    c = Cluster("h", "p")
    submit(c)
    clone, _ = LanNodeCore.restore("h", "farm", c.stores["h"].copy(), 0.0, T, ["p"], instance="clone")
    c.cores["h"].instance = "original"
    p = c.cores["p"]
    # p hears both runs of "h", each speaking regularly (anti-entropy, sync rounds).
    for t in range(0, 60, 5):
        p.handle(_digest(c.cores["h"]), float(t), "original")
        p.handle(_digest(clone), float(t) + 1, "clone")
    answer = p.handle(_digest(c.cores["h"]), 61.0, "original")
    notices = [a.message for a in answer if isinstance(a, Send) and isinstance(a.message, IdentityClash)]
    assert notices and set(notices[0].instances) == {"original", "clone"}
    actions = c.cores["h"].handle(notices[0], 62.0, "p-run")
    assert any(isinstance(a, Alert) and a.kind == "identity_clash" for a in actions)
    status = c.cores["h"].status(63.0)
    assert status["state"] == "identity_clash" and "reset-identity" in str(status["detail"])
    assert not c.cores["h"].ready
    # A renew from the clone's id is not answered with a grant while the clash lasts.
    replies = p.handle(RenewRequest("h", "j1", 1, 5), 64.0, "clone")
    assert not any(isinstance(a, Send) and isinstance(a.message, LeaseGranted) for a in replies)


def _digest(core: LanNodeCore):  # type: ignore[no-untyped-def]
    from lanqueue.sync.messages import DigestRequest

    return DigestRequest(core.node_id, tuple((j, r.epoch, r.version) for j, r in sorted(core.records.items())))


def test_adopting_a_stale_copy_is_flagged_by_any_replica_that_is_newer() -> None:
    c = Cluster("h", "p", "q")
    submit(c, count=2)
    c.cut.add(frozenset(("h", "q")))
    c.cut.add(frozenset(("p", "q")))  # q misses what follows
    print_one(c, "p", "j1", 1.0)  # counted by h; p holds the newer copy
    c.cut.add(frozenset(("h", "p")))  # h is gone for good
    c.do("q", "adopt", "h", now=5.0)  # from its stale copy
    assert c.cores["q"].records["j1"].sets[0].completed == 0
    c.cut.discard(frozenset(("p", "q")))
    c.tick(40.0)
    c.tick(80.0)
    kinds = [e.entry for e in c.of(ConflictRecorded, "q")]
    assert any(x.kind is ConflictKind.DIVERGED and x.holder == "p" for x in kinds), kinds


def test_holder_lease_is_invalid_while_its_home_id_is_cloned() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.do("p", "want_to_print", "j1", now=0.0)
    assert c.cores["p"].lease_valid("j1", 1.0)
    w = c.cores["p"].identity
    w.heard("h", "a", 0.0)
    w.heard("h", "b", 0.5)
    w.heard("h", "a", 16.0)
    w.heard("h", "b", 16.5)
    c.do("p", "want_to_print", "j1", now=16.6)
    assert not c.cores["p"].lease_valid("j1", 16.7)  # the driver stops the print


def test_gate_waits_for_every_peer_and_for_the_grace() -> None:
    c = Cluster("h", "p")
    submit(c)
    c.crash("h", 10.0)
    assert not c.cores["h"].ready
    c.tick(10.0 + T.identity_grace)  # answered, but not yet vouched for
    assert not c.cores["h"].ready
    past_gate(c, 10.0)
    assert c.cores["h"].ready


# ----------------------------------------------------------- one transaction: history + outbox
def test_a_finished_run_and_its_outbox_entry_commit_together(tmp_path: Path) -> None:
    """Issue 11 (7): the run's history row and the completion's outbox entry are one transaction,
    in a real SQLite file: when the outbox write fails, the run is not marked finished either
    (it is still open, so the restart rule records it as interrupted, and the copy is not lost
    silently); when it succeeds, both are there."""
    import asyncio

    from lanqueue.store import Store
    from lanqueue.sync.messages import OutboxEntry, Persist
    from lanqueue.sync.persistence import LanPersistence, end_run_in

    async def scenario() -> tuple[list[object], list[object], dict[int, object]]:
        store = await Store.open(tmp_path / "lanqueue.sqlite3")
        try:
            lan = LanPersistence(store)
            await lan.async_setup()
            run = await store.begin_run("farm", "j1", "part", "j1_0", "part.gcode")
            broken = Persist(outbox_put=(OutboxEntry("j1", 1, 1, object()),), next_seq=2)  # type: ignore[arg-type]
            try:
                await lan.apply("farm", broken, end_run_in(run, "success"))
            except Exception:  # noqa: BLE001 - the write fails: that is the point
                pass
            after_failure = [r.result for r in await store.history()]
            await lan.apply("farm", Persist(outbox_put=(OutboxEntry("j1", 1, 1, 0),), next_seq=2),
                            end_run_in(run, "success"))
            after_success = [r.result for r in await store.history()]
            return after_failure, after_success, (await lan.load("farm")).outbox
        finally:
            await store.async_close()

    after_failure, after_success, outbox = asyncio.run(scenario())
    assert after_failure == [None]  # still open: not "success" without its outbox entry
    assert after_success == ["success"] and list(outbox) == [1]


def test_lanqueue_status_says_what_went_wrong_and_the_fix() -> None:
    """`lanqueue status` prints the node's standing from /lanqueue/peers (issue 11)."""
    from rich.console import Console

    from lanqueue.client import _print_lan_standing

    c = Cluster("h", "p")
    c.cores["h"]._clashed("other-run", 1.0, c.cores["h"]._out())
    c.cores["h"].rolled_back = "this node's data went back in time (an older SD card image?): x"
    console = Console(record=True, width=300)
    _print_lan_standing(console, {"farm": c.cores["h"].status(2.0), "shop": c.cores["p"].status(2.0)})
    text = console.export_text()
    assert "lanqueue reset-identity --data-dir" in text and "another node is running with this node's id" in text
    assert "went back in time" in text and "shop" not in text  # a queue in good standing says nothing
