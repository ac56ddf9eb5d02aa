"""The seeded LAN simulator (tests/lansim.py) running the nodes' dissemination (issue 14):
each version a node writes is pushed to 2 of its 5 peers and forwarded once by every node it is
new to (lanqueue/sync/spread.py), under the simulator's usual faults (crashes, also part-way
through an action list, partitions, drains, deletes, loss, duplicates, long delays). S1-S7 are
checked after every step and the replicas must end identical, as with the full broadcast.
`LANQUEUE_SIM_SEEDS` scales the seed count (a twentieth of it, at least 20)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lansim import SimConfig, run_seed  # noqa: E402

from lanqueue.sync import spread  # noqa: E402
from lanqueue.sync.gossip import Fanout  # noqa: E402
from lanqueue.sync.messages import DigestRequest, RecordPush, Send  # noqa: E402
from lanqueue.sync.records import JobRecord, SetRecord  # noqa: E402

SEEDS = max(20, int(os.environ.get("LANQUEUE_SIM_SEEDS", "2000")) // 20)
FANOUT = SimConfig(n_nodes=6, n_jobs=6, chaos_time=120.0, fanout=2)


@pytest.mark.timeout(600)
def test_fanout_dissemination_keeps_every_guarantee() -> None:
    failures = [v for seed in range(5_000_000, 5_000_000 + SEEDS) for v in run_seed(seed, FANOUT).violations]
    assert failures == []


def _rec(job: str, version: int) -> JobRecord:
    return JobRecord(id=job, queue="q", home="h", epoch=1, version=version, name=job, count=1, remaining=1,
                     sets=(SetRecord("a", 1, 1),))


def test_thinning_and_forwarding_rules() -> None:
    """What the simulator and the nodes run: a broadcast of this node's push goes to 2 of 5; a
    push addressed to one peer (an anti-entropy answer) and others' messages are left alone; a
    version new here is forwarded to 2 peers, never to its sender; a version not new is not."""
    fan = Fanout("h", 2, random.Random(1))
    pushed = (_rec("j", 2),)  # as the core broadcasts: one tuple of records, one message per peer
    peers = ["a", "b", "c", "d", "e"]
    answer = Send("a", RecordPush("h", (_rec("k", 1),)))
    other = Send("b", DigestRequest("h", ()))
    actions: list = [Send(p, RecordPush("h", pushed)) for p in peers] + [answer, other]
    kept, pushes, requests = spread.thin_broadcasts("h", actions, fan)
    to_all = [a for a in kept if getattr(a.message, "records", None) is pushed]
    assert len(to_all) == 2 and pushes == 2 and requests == 3
    assert answer in kept and other in kept
    held = {"j": _rec("j", 2)}
    members = ["b", "c", "d", "h"]  # h: the record's home, b: who sent it here
    fwd = spread.forwards("a", RecordPush("b", (_rec("j", 2),)), {"j": (1, 1)}, held, members, fan)
    assert len(fwd) == 2 and all(s.to in ("c", "d") and s.message.sender == "a" for s in fwd)
    assert spread.forwards("a", RecordPush("b", (_rec("j", 2),)), {"j": (1, 2)}, held, members, fan) == []
    # a farm of fanout + 1 nodes: the writer reached everyone, nothing to forward
    assert spread.forwards("a", RecordPush("b", (_rec("j", 2),)), {"j": (1, 1)}, held, ["b", "h"], fan) == []
