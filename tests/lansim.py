"""A seeded, deterministic simulator of a LAN queue cluster over `LanNodeCore`.

One process, virtual true time `T`, N nodes. Each node's monotonic clock runs at its own rate
(0.9..1.1 of true time) and restarts from an arbitrary value on every boot. The network drops,
duplicates, delays and reorders messages, and partitions heal and split. Nodes crash (sometimes
halfway through executing an action list) and restart from their durable state only: the store
is exactly the fold of the `Persist` actions the node executed. Nodes print: a print takes virtual
time and ends in `report_complete`.

The checker is omniscient (true time, every node's events) and checks after every step:

- S1: per job, the true-time intervals in which a home counts a grant live never overlap for two
  tokens. A grant's interval ends at its true expiry; only a release by the holder cuts it short.
  A home that crashes does not end its grants: its clock keeps running in reality.
- S2: a new token of a job is larger than every earlier one; a token is never granted to two
  holders; a home's durable token never decreases.
- S3: an applied completion carries the latest token ever granted for its job; a home's record
  changes counts only together with an applied completion, by exactly one print.
- S4: a job is done only when its applied completions equal its requested prints; tombstoned only
  if deleted; durable records never vanish.
- S7 (holder side, ties S1 to printing): a print starts only inside the home's grant interval of
  the token it starts under.
- S5 at the end: after healing and quiescence, for every job not deleted, applied completions ==
  requested prints, all replicas agree, no outbox and no lease is left.
- Physical prints (issue 11): a print that reaches its end is a copy on the plate. It must end
  inside the home's live grant of its token (S7b: a holder whose lease lapsed, a freeze included,
  prints no further line), and at the end every job's finished copies equal its count, or each
  extra copy is explained by a conflict in the job's record.

Faults of people running printers on Raspberry Pis (issue 11), each off by default:
- `rollback_p`: a restart comes up from an older image of the node's disk (a restored SD card).
- `clone_rate`: a copy of a running node's disk boots as a second node with the same id (a cloned
  card) and is switched off for good after `clone_time`.
- `freeze_rate`: a node stops (SIGSTOP) for `freeze_time`; its monotonic clock runs on, its printer
  gets no lines, and everything addressed to it waits.
- `adopt_partitioned`: a user adopts the jobs of a home that is up but cut off from the adopter.
- Clocks off by hours: a node's monotonic clock starts anywhere (0..10^4 s) on every boot already,
  and nothing in the core reads a wall clock, so there is nothing more to simulate here; the
  peer authentication (which used to read it) is tested with clocks hours apart in
  test_sync_auth.py.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field, replace
from typing import Any

from lanqueue.sync.messages import (
    Action,
    CompletionApplied,
    ConflictRecorded,
    Event,
    GrantEnded,
    GrantLive,
    Persist,
    RecordPush,
    Send,
)
from lanqueue.sync import spread
from lanqueue.sync.gossip import Fanout
from lanqueue.sync.protocol import _PENDING, DurableState, LanNodeCore
from lanqueue.sync.records import ConflictKind, JobRecord, SetRecord, Timings, requested_prints

__all__ = ["SimConfig", "Sim", "SimResult", "Violation"]

#: identity_grace exceeds the longest simulated message delay (`long_delay`, 10 s).
SIM_TIMINGS = Timings(ttl=6.0, renew_every=2.0, lock_delay=6.0, retry_every=1.0, anti_entropy_every=2.0,
                      identity_grace=11.0)


class Violation(AssertionError):
    pass


@dataclass
class SimConfig:
    n_nodes: int = 3
    n_jobs: int = 2
    chaos_time: float = 60.0
    quiesce_limit: float = 400.0
    drop: float = 0.05
    dup: float = 0.05
    delay: tuple[float, float] = (0.002, 0.3)
    long_delay_p: float = 0.05
    long_delay: tuple[float, float] = (1.0, 10.0)
    crash_rate: float = 0.01  # per node per true second
    mid_crash_p: float = 0.01  # per action list: crash part-way through executing it
    down_time: tuple[float, float] = (0.2, 25.0)
    partition_rate: float = 0.02
    partition_time: tuple[float, float] = (1.0, 30.0)
    drain_rate: float = 0.002  # graceful shutdowns per node per second
    adopt_rate: float = 0.0  # a user adopts the jobs of a crashed home (per second, cluster-wide)
    delete_rate: float = 0.001
    rate_range: tuple[float, float] = (0.9, 1.1)
    print_time: tuple[float, float] = (0.3, 12.0)
    tick_every: float = 0.5
    timings: Timings = SIM_TIMINGS
    core_cls: type[LanNodeCore] = LanNodeCore
    rollback_p: float = 0.0  # per restart: the disk comes back as an older image
    snapshot_every: tuple[float, float] = (3.0, 20.0)  # when the images are taken
    clone_rate: float = 0.0  # cluster-wide, per second
    clone_time: tuple[float, float] = (5.0, 60.0)
    freeze_rate: float = 0.0  # per node per second
    freeze_time: tuple[float, float] = (1.0, 30.0)
    adopt_partitioned: bool = False
    #: 0: every version a node writes is pushed to every peer (the core's broadcast); k > 0: the
    #: nodes' dissemination (lanqueue/sync/spread.py): pushed to k peers, forwarded once by each
    #: node it is new to.
    fanout: int = 0
    #: Broken adapters, for tests that prove the checker catches them.
    send_before_persist: bool = False
    skip_grant_persist: bool = False
    #: Broken driver: finishes a print whose lease lapsed (the old behaviour).
    print_after_lapse: bool = False


@dataclass
class SimNode:
    id: str  # the node id it claims (a clone shares its original's)
    rate: float
    key: str = ""  # unique within the simulation
    instance: str = ""
    frozen_until: float = 0.0
    images: list[DurableState] = field(default_factory=list)
    gone: bool = False  # a clone switched off for good
    store: DurableState = field(default_factory=DurableState)
    core: LanNodeCore | None = None
    boot: int = 0
    boot_T: float = 0.0
    offset: float = 0.0
    printing: tuple[str, int] | None = None  # (job id, token)
    next_pick: float = 0.0

    @property
    def up(self) -> bool:
        return self.core is not None

    def clock(self, T: float) -> float:
        return self.offset + self.rate * (T - self.boot_T)


@dataclass
class _Grant:
    holder: str
    start: float
    end: float
    epoch: int  # epoch of the home that granted it
    #: A home whose sync gate is closed (restarted, or its id cloned) may extend a grant; such a
    #: claim counts for the holder's own checks (S7, S7b) but is not the home's grant for S1.
    soft_end: float = 0.0
    dead: bool = False  # its holder crashed while it was live
    forgotten: bool = False  # only a rolled-back disk knew of it, and it is over (or its holder crashed)
    @property
    def holder_end(self) -> float:
        return max(self.end, self.soft_end)


@dataclass
class SimResult:
    seed: int
    violations: list[str]
    T: float
    steps: int
    applied: dict[str, int]
    conflicts: int
    stats: dict[str, int]


class Sim:
    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.cfg = cfg = config or SimConfig()
        self.rng = random.Random(seed)
        self.T = 0.0
        self.steps = 0
        self.calm = False
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        ids = [f"n{i}" for i in range(cfg.n_nodes)]
        self.nodes = {i: SimNode(i, self.rng.uniform(*cfg.rate_range), key=i) for i in ids}
        self.group: dict[str, int] = {i: 0 for i in ids}  # partition side of each node
        # Checker state.
        self.grants: dict[str, dict[tuple[int, int], _Grant]] = {}  # job -> (home epoch, token) -> grant
        self.adopted: set[str] = set()
        self.applied: dict[str, int] = {}
        self.requested: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.conflicts = 0
        self.violations: list[str] = []
        self.physical: dict[str, int] = {}  # finished copies per job
        self.history: dict[tuple[str, tuple[int, int]], JobRecord] = {}
        self.printing_now: dict[str, tuple[str, int]] = {}
        self.applied_keys: dict[str, set[tuple[str, int, int]]] = {}  # (holder, seq, token) per job
        self._fans: dict[str, Fanout] = {}  # node key -> its fan-out (cfg.fanout > 0)
        self.forgotten: set[str] = set()  # jobs whose history only a rolled-back disk held  # node key -> (job, token) on its plate
        self.stats = {"msgs": 0, "dropped": 0, "crashes": 0, "prints": 0, "drains": 0, "grants": 0, "adopts": 0,
                      "rollbacks": 0, "forgotten": 0, "clones": 0, "freezes": 0, "aborted": 0, "extra_copies": 0}
        for n in self.nodes.values():
            self._boot(n, fresh=True)

    # ------------------------------------------------------------------ plumbing
    def _at(self, T: float, kind: str, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (T, self._seq, kind, data))

    def _fail(self, what: str) -> None:
        if not self.violations:
            self.violations.append(f"seed={self.seed} T={self.T:.3f}: {what}")
        raise Violation(self.violations[0])

    def _boot(self, n: SimNode, fresh: bool = False) -> None:
        n.boot += 1
        n.boot_T = self.T
        n.offset = self.rng.uniform(0.0, 10_000.0)  # a monotonic clock starts anywhere
        n.printing = None
        n.instance = f"{n.key}.{n.boot}.{self.rng.getrandbits(32):08x}"
        peers = sorted({p.id for p in self.nodes.values() if p.id != n.id})
        now = n.clock(self.T)
        if fresh:  # a first start: from an empty disk, like the adapter always starts
            n.core, actions = self.cfg.core_cls.restore(n.id, "q", n.store.copy(), now, self.cfg.timings, peers,
                                                        instance=n.instance)
            if self.cfg.rollback_p:
                self._at(self.T + self.rng.uniform(*self.cfg.snapshot_every), "image", n.key)
        else:
            if n.images and self.rng.random() < self.cfg.rollback_p and not self.calm:
                self.stats["rollbacks"] += 1
                image = self.rng.choice(n.images).copy()
                self._note_forgotten(n, image)
                n.store = image
            n.core, actions = self.cfg.core_cls.restore(n.id, "q", n.store.copy(), now, self.cfg.timings, peers,
                                                        instance=n.instance)
        n.next_pick = self.T + self.rng.uniform(0.0, 1.0)
        self._at(self.T + self.rng.uniform(0.0, self.cfg.tick_every), "tick", (n.key, n.boot))
        self._execute(n, actions)

    def _crash(self, n: SimNode) -> None:
        if not n.up:
            return
        self.stats["crashes"] += 1
        if not any(m.up and m.id == n.id and m is not n for m in self.nodes.values()):
            for grants in self.grants.values():  # a crashed printer prints nothing any more
                for g in grants.values():
                    if g.holder == n.id and g.end > self.T:
                        g.end, g.dead = self.T, True
        n.core = None
        n.printing = None
        self.printing_now.pop(n.key, None)
        if not n.gone:
            self._at(self.T + self.rng.uniform(*self.cfg.down_time), "restart", n.key)

    def _fan(self, n: SimNode) -> Fanout:
        fan = self._fans.get(n.key)
        if fan is None:
            fan = self._fans[n.key] = Fanout(n.id, self.cfg.fanout, random.Random(self.rng.random()))
        return fan

    def _connected(self, a: str, b: str) -> bool:
        return self.group[a] == self.group[b]

    def _address(self, node_id: str) -> str | None:
        """The node a message to `node_id` reaches: with a clone running, either of the two
        (peers see one node id at two addresses and flap between them)."""
        keys = [n.key for n in self.nodes.values() if n.id == node_id and not n.gone]
        if not keys:
            return None
        return keys[0] if len(keys) == 1 else self.rng.choice(keys)

    def _send(self, src: SimNode, s: Send, reply_to: tuple[str, str] | None = None) -> None:
        self.stats["msgs"] += 1
        cfg, rng = self.cfg, self.rng
        # A reply travels back on the request's own HTTP answer, to the run that asked.
        dst = reply_to[1] if reply_to is not None and s.to == reply_to[0] else self._address(s.to)
        if dst is None or not self._connected(src.key, dst) or (not self.calm and rng.random() < cfg.drop):
            self.stats["dropped"] += 1
            return
        copies = 2 if (not self.calm and rng.random() < cfg.dup) else 1
        for _ in range(copies):
            if not self.calm and rng.random() < cfg.long_delay_p:
                d = rng.uniform(*cfg.long_delay)
            else:
                d = rng.uniform(*cfg.delay)
            self._at(self.T + d, "deliver", (src.key, dst, s.message, src.instance))

    # ------------------------------------------------------------------ executing actions
    def _execute(self, n: SimNode, actions: list[Action], crash_midway: bool = False,
                 reply_to: tuple[str, str] | None = None) -> None:
        """Run one action list like an adapter would: persists, then events, then sends."""
        if self.cfg.fanout:
            actions = spread.thin_broadcasts(n.id, actions, self._fan(n))[0]
        persists = [a for a in actions if isinstance(a, Persist)]
        events = [a for a in actions if isinstance(a, Event)]
        sends = [a for a in actions if isinstance(a, Send)]
        if self.cfg.send_before_persist:
            cut = self.rng.randint(0, len(sends)) if crash_midway else len(sends)
            for s in sends[:cut]:
                self._send(n, s, reply_to)
            if crash_midway:
                self._crash(n)
                return
            for p in persists:
                self._persist(n, p, events)
            self._observe(n, events)
            return
        for p in persists:
            self._persist(n, p, events)
        self._observe(n, events)
        if persists and not self.cfg.skip_grant_persist and n.core is not None \
                and n.core.durable_state() != n.store:
            self._fail(f"{n.id}: what the core persisted differs from its durable_state()")
        cut = self.rng.randint(0, len(sends)) if crash_midway else len(sends)
        for s in sends[:cut]:
            self._send(n, s, reply_to)
        if crash_midway:
            self._crash(n)

    def _persist(self, n: SimNode, p: Persist, events: list[Event]) -> None:
        applied_jobs = [e.job_id for e in events if isinstance(e, CompletionApplied)]
        fresh = [e.job_id for e in events if isinstance(e, CompletionApplied)
                 and (e.holder, e.seq, e.token) not in self.applied_keys.get(e.job_id, set())]
        records = p.records
        if self.cfg.skip_grant_persist:
            # Broken adapter: does not write a record whose only news is a lease grant.
            records = tuple(r for r in records if not (
                r.id in n.store.records and r.home == n.id and r.lease_holder is not None
                and r.lease_token != n.store.records[r.id].lease_token))
        for r in records:
            prev = n.store.records.get(r.id)
            self._check_record_write(n, prev, r, applied_jobs, fresh)
        n.store.apply(Persist(records=records, held_put=p.held_put, held_delete=p.held_delete,
                              outbox_put=p.outbox_put, outbox_delete=p.outbox_delete,
                              next_seq=p.next_seq, boot=p.boot))

    def _check_record_write(self, n: SimNode, prev: JobRecord | None, r: JobRecord, applied_jobs: list[str],
                            fresh: list[str]) -> None:
        if prev is not None and prev.key > r.key:
            self._fail(f"S4/replication: {n.id} overwrote {r.id} {prev.key} with older {r.key}")
        # Every (job, epoch, version) names one record in the whole cluster's history: a copy of
        # one already written is no new write (a restored or cloned disk catching up), and two
        # different records under one key would never converge.
        plain = replace(r, conflicts=tuple(c for c in r.conflicts if not c.detail.startswith(_PENDING)))
        known = self.history.get((r.id, r.key))
        if known is not None:
            if known != plain and self._survives(known):
                self._fail(f"replication: two different records of {r.id} at {r.key}: {known} / {plain}")
            if known == plain:
                return
        self.history[(r.id, r.key)] = plain
        new_applied = [j for j in fresh if j == r.id]
        if r.done and not r.tombstone and r.id not in self.adopted and r.id not in self.forgotten and \
                self.applied.get(r.id, 0) + len(new_applied) != requested_prints(r):
            self._fail(f"S4: {r.id} done with {self.applied.get(r.id, 0)} applied of {requested_prints(r)}")
        if r.tombstone and r.id not in self.deleted:
            self._fail(f"S4: {r.id} tombstoned but never deleted")
        if prev is None or prev.home != n.id or r.home != n.id or prev.epoch != r.epoch:
            return
        # A write by the home itself within one epoch.
        if r.lease_token < prev.lease_token:
            self._fail(f"S2: durable token of {r.id} went down {prev.lease_token} -> {r.lease_token}")
        done_before = prev.count * sum(s.count for s in prev.sets) - _left(prev)
        done_after = r.count * sum(s.count for s in r.sets) - _left(r)
        if done_after != done_before:
            if r.id not in applied_jobs or done_after != done_before + 1:
                self._fail(f"S3: counts of {r.id} changed {done_before}->{done_after} without one applied completion")

    def _note_forgotten(self, n: SimNode, image: DurableState) -> None:
        """History only `n`'s disk held, lost with the rollback: no node can learn it again, so
        prints counted or made in it may be repeated unexplained (the documented limit). The
        checks that count such jobs are relaxed for them, and the cases are counted."""
        for job_id, mine in n.store.records.items():
            best = max([r.key for r in self._copies_elsewhere(n, job_id)] + [(0, 0)])
            lost_outbox = [e for s, e in n.store.outbox.items() if e.job_id == job_id and s not in image.outbox]
            newest = max((r for r in self._copies_elsewhere(n, job_id)), key=lambda r: r.key, default=None)
            # A finished copy whose report never left the lost disk is known to nobody.
            named = newest is not None and all(newest.applied_seq(n.id) >= e.seq for e in lost_outbox)
            if mine.key > best or (lost_outbox and not named):
                self.forgotten.add(job_id)
                self.stats["forgotten"] += 1
            known = max([r.lease_token for r in self._copies_elsewhere(n, job_id)] +
                        [image.records[job_id].lease_token if job_id in image.records else 0])
            for (_, tok), g in self.grants.get(job_id, {}).items():
                if tok > known and (g.dead or g.end <= self.T):  # over: nobody prints under it
                    g.forgotten = True

    def _copies_elsewhere(self, n: SimNode, job_id: str) -> list[JobRecord]:
        out = [m.store.records[job_id] for m in self.nodes.values() if m is not n and job_id in m.store.records]
        for _, _, kind, data in self._heap:
            if kind == "deliver":
                msg = data[2]
                out += [r for r in list(getattr(msg, "records", ())) + [getattr(msg, "record", None)]
                        if r is not None and r.id == job_id]
        return out

    def _survives(self, rec: JobRecord) -> bool:
        """Is `rec` still on some disk or on its way somewhere? A write that every copy lost (a
        disk rolled back before it was sent anywhere) can be written anew without harm."""
        def same(r: JobRecord | None) -> bool:
            return r is not None and r.key == rec.key and r.id == rec.id and r.sets == rec.sets
        if any(same(n.store.records.get(rec.id)) for n in self.nodes.values() if not n.gone):  # a gone clone's disk is gone
            return True
        for _, _, kind, data in self._heap:
            if kind == "deliver":
                msg = data[2]
                carried = list(getattr(msg, "records", ())) + [getattr(msg, "record", None)]
                if any(same(r) for r in carried):
                    return True
        return False

    def _observe(self, n: SimNode, events: list[Event]) -> None:
        now = n.clock(self.T)
        for e in events:
            if isinstance(e, GrantLive) and n.core is not None and not n.core.ready:
                for (_, tok), g in self.grants.get(e.job_id, {}).items():
                    if tok == e.token and g.holder == e.holder:
                        g.soft_end = max(g.soft_end, self.T + (e.live_until - now) / n.rate)
            elif isinstance(e, GrantLive):
                self._on_grant(n, e, self.T + (e.live_until - now) / n.rate)
            elif isinstance(e, GrantEnded):
                if e.released:  # the holder gave it back: it ends wherever it was inherited
                    for (_, tok), g in self.grants.get(e.job_id, {}).items():
                        if tok == e.token:
                            g.end = min(g.end, self.T)
            elif isinstance(e, CompletionApplied):
                key = (e.holder, e.seq, e.token)
                if key in self.applied_keys.setdefault(e.job_id, set()):
                    continue  # a home whose disk went back applies a report it had applied before
                self.applied_keys[e.job_id].add(key)
                epoch = self._epoch(n, e.job_id)
                latest = self._latest_token(e.job_id, epoch)
                if latest is not None and e.token != latest:
                    self._fail(f"S3: completion of {e.job_id} applied with token {e.token}, "
                               f"latest granted is {latest}")
                self.applied[e.job_id] = self.applied.get(e.job_id, 0) + 1
                if self.applied[e.job_id] > self.requested[e.job_id] and e.job_id not in self.adopted | self.forgotten:
                    self._fail(f"S5: {e.job_id} over-counted: {self.applied[e.job_id]} > {self.requested[e.job_id]}")
            elif isinstance(e, ConflictRecorded):
                self.conflicts += 1

    def _epoch(self, n: SimNode, job_id: str) -> int:
        assert n.core is not None
        return n.core.records[job_id].epoch

    def _rivals(self, job_id: str, epoch: int) -> list[tuple[int, _Grant]]:
        """Grants that must not overlap one of `epoch`: all of them, unless a user adopted the
        job; then an old home may be stale (the design's documented limit) and only grants of
        the same home epoch are compared."""
        same = job_id in self.adopted
        # A grant only a rolled-back disk remembered, to a holder that crashed: nobody can know it
        # (the documented limit) and nobody prints under it any more.
        return [(tok, g) for (ep, tok), g in self.grants.get(job_id, {}).items()
                if (not same or ep == epoch) and not g.forgotten]

    def _latest_token(self, job_id: str, epoch: int) -> int | None:
        toks = [tok for tok, g in self._rivals(job_id, epoch) if g.epoch <= epoch]
        return max(toks) if toks else None

    def _on_grant(self, n: SimNode, e: GrantLive, true_end: float) -> None:
        self.stats["grants"] += 1
        epoch = self._epoch(n, e.job_id)
        tokens = self.grants.setdefault(e.job_id, {})
        same_token = [g for (ep, tok), g in tokens.items() if tok == e.token and not g.forgotten]
        for prev in same_token:
            if prev.holder != e.holder:
                self._fail(f"S2: token {e.token} of {e.job_id} granted to {prev.holder} and {e.holder}")
        g: _Grant | None = tokens.get((epoch, e.token))
        if g is not None and g.forgotten:
            g = None  # the token is granted anew: the forgotten grant is gone with its holder's run
        if g is None and same_token:  # inherited by drain or adopt: the same grant, a new home
            g = tokens[(epoch, e.token)] = _Grant(e.holder, min(x.start for x in same_token), self.T, epoch)
        if g is not None:
            if true_end > g.end:
                g.end = true_end
                for tok, other in self._rivals(e.job_id, epoch):  # must not reach into a later grant
                    if tok != e.token and g.start < other.end and other.start < g.end:
                        self._fail(f"S1: {n.id} extended {e.job_id} token {e.token} of {e.holder} to "
                                   f"T={g.end:.3f}, overlapping token {tok} of {other.holder}")
            return
        latest = self._latest_token(e.job_id, epoch)
        if latest is not None and e.token <= latest:
            self._fail(f"S2: new token {e.token} of {e.job_id} not above {latest}")
        for tok, other in self._rivals(e.job_id, epoch):
            if other.end > self.T:
                self._fail(f"S1: {n.id} granted {e.job_id} token {e.token} to {e.holder} while token {tok} "
                           f"of {other.holder} is live until T={other.end:.3f}")
        tokens[(epoch, e.token)] = _Grant(e.holder, self.T, true_end, epoch)

    # ------------------------------------------------------------------ the printer driver
    def _drive(self, n: SimNode) -> None:
        core = n.core
        if core is None:
            return
        now = n.clock(self.T)
        if n.printing is not None and not self.cfg.print_after_lapse and not core.lease_valid(n.printing[0], now):
            self._abort(n, now)  # the driver checks the lease before every line it sends
            return
        if n.printing is not None or not core.ready:
            return
        for job_id, lease in list(core.holder.leases.items()):
            rec = core.records.get(job_id)
            if lease.phase.name != "HELD" or rec is None:
                continue
            if rec.done or rec.tombstone:
                self._execute(n, core.release(job_id, now))
                return
            if core.lease_valid(job_id, now) and not core.holder.outbox_pending(job_id):
                core.start_print(job_id, now)
                gs = [g for (_, tok), g in self.grants.get(job_id, {}).items() if tok == lease.token]
                if not any(g.holder == n.id and g.start <= self.T < g.holder_end for g in gs):
                    self._fail(f"S7: {n.id} starts {job_id} under token {lease.token} outside the home's grant {gs}")
                for other, (job, tok) in self.printing_now.items():
                    # A stopped process sends its printer no lines; an adopt overrides a home
                    # that may be alive (its extra copies must show as conflicts: final check).
                    if job == job_id and other != n.key and self.nodes[other].frozen_until <= self.T \
                            and job_id not in self.adopted:
                        self._fail(f"S1p: {n.key} starts {job_id} (token {lease.token}) while {other} prints it "
                                   f"(token {tok})")
                self.printing_now[n.key] = (job_id, lease.token)
                n.printing = (job_id, lease.token)
                self.stats["prints"] += 1
                self._at(self.T + self.rng.uniform(*self.cfg.print_time), "print_done", (n.key, n.boot, job_id))
                return
            if not self.calm and self.rng.random() < 0.01:
                self._execute(n, core.release(job_id, now))  # the user stops the printer
                return
        if core.holder.leases or self.T < n.next_pick:
            return
        n.next_pick = self.T + self.rng.uniform(0.2, 3.0)
        choices = [r.id for r in core.records.values() if r.acquirable and r.lease_holder is None]
        if not choices:
            choices = [r.id for r in core.records.values() if r.acquirable]
        if choices:
            self._execute(n, core.want_to_print(self.rng.choice(choices), now))

    def _abort(self, n: SimNode, now: float) -> None:
        """The lease lapsed on the holder's clock: the print stops where it is (no copy) and the
        lease is given back."""
        assert n.core is not None and n.printing is not None
        job_id = n.printing[0]
        n.printing = None
        self.printing_now.pop(n.key, None)
        self.stats["aborted"] += 1
        n.core.abort_print(job_id)
        self._execute(n, n.core.release(job_id, now))

    def _print_done(self, n: SimNode, job_id: str) -> None:
        assert n.core is not None and n.printing is not None
        now = n.clock(self.T)
        if not self.cfg.print_after_lapse and not n.core.lease_valid(job_id, now):
            self._abort(n, now)
            return
        token = n.printing[1]
        gs = [g for (_, tok), g in self.grants.get(job_id, {}).items() if tok == token and g.holder == n.id]
        self.printing_now.pop(n.key, None)
        if not any(g.start <= self.T < g.holder_end for g in gs):
            self._fail(f"S7b: {n.key} finished a copy of {job_id} under token {token} after the home's grant "
                       f"ended {[(round(g.start, 3), round(g.end, 3)) for g in gs]}")
        self.physical[job_id] = self.physical.get(job_id, 0) + 1
        n.printing = None
        self._execute(n, n.core.report_complete(job_id, now), self._midway())

    # ------------------------------------------------------------------ scenario
    def _submit(self, n: SimNode) -> None:
        assert n.core is not None
        rng = self.rng
        job_id = f"job{len(self.requested)}"
        sets = [SetRecord(path=f"{job_id}-{i}.gcode", count=rng.randint(1, 2), remaining=0, hash=f"{i:064x}")
                for i in range(rng.randint(1, 2))]
        count = rng.randint(1, 2)
        self.requested[job_id] = count * sum(s.count for s in sets)
        self._execute(n, n.core.submit_job(job_id, job_id, sets, count, n.clock(self.T)))

    def _chaos(self) -> None:
        """Schedule the random faults of the chaos phase as events."""
        cfg, rng = self.cfg, self.rng
        for nid in self.nodes:
            T = 0.0
            while cfg.freeze_rate > 0:
                T += rng.expovariate(cfg.freeze_rate)
                if T >= cfg.chaos_time:
                    break
                self._at(T, "freeze", nid)
            T = 0.0
            while cfg.crash_rate > 0:
                T += rng.expovariate(cfg.crash_rate)
                if T >= cfg.chaos_time:
                    break
                self._at(T, "crash", nid)
            T = 0.0
            while cfg.drain_rate > 0:
                T += rng.expovariate(cfg.drain_rate)
                if T >= cfg.chaos_time:
                    break
                self._at(T, "drain", nid)
        T = 0.0
        while cfg.partition_rate > 0:
            T += rng.expovariate(cfg.partition_rate)
            if T >= cfg.chaos_time:
                break
            self._at(T, "partition", None)
        T = 0.0
        while cfg.clone_rate > 0:
            T += rng.expovariate(cfg.clone_rate)
            if T >= cfg.chaos_time:
                break
            self._at(T, "clone", None)
        T = 0.0
        while cfg.adopt_rate > 0:
            T += rng.expovariate(cfg.adopt_rate)
            if T >= cfg.chaos_time:
                break
            self._at(T, "adopt", None)
        T = 0.0
        while cfg.delete_rate > 0:
            T += rng.expovariate(cfg.delete_rate)
            if T >= cfg.chaos_time:
                break
            self._at(T, "delete", None)
        for i in range(cfg.n_jobs):
            self._at(rng.uniform(0.0, cfg.chaos_time * 0.5) if i else 0.0, "submit", None)
        self._at(cfg.chaos_time, "calm", None)

    def _frozen(self, kind: str, data: Any) -> bool:
        """A stopped process does nothing: its timers, messages and print lines wait for the thaw."""
        key = data[0] if kind in ("tick", "print_done") else data[1] if kind == "deliver" else None
        n = self.nodes.get(key) if key is not None else None
        if n is None or n.frozen_until <= self.T or n.core is None:
            return False
        self._at(n.frozen_until + self.rng.uniform(0.0, 0.01), kind, data)
        return True

    def _step(self, kind: str, data: Any) -> None:
        rng = self.rng
        if self._frozen(kind, data):
            return
        if kind == "tick":
            nid, boot = data
            n = self.nodes[nid]
            if n.core is None or n.boot != boot:
                return
            self._execute(n, n.core.tick(n.clock(self.T)), self._midway())
            self._drive(n)
            self._at(self.T + self.cfg.tick_every * rng.uniform(0.8, 1.2) / n.rate, "tick", data)
        elif kind == "deliver":
            src, dst, msg, instance = data
            n = self.nodes[dst]
            if n.core is None or not self._connected(src, dst):
                self.stats["dropped"] += 1
                return
            before = spread.held_keys(msg, n.core.records) if self.cfg.fanout and isinstance(msg, RecordPush) \
                else None
            actions = n.core.handle(msg, n.clock(self.T), instance)
            if before is not None:
                actions += spread.forwards(n.id, msg, before, n.core.records, n.core.peers, self._fan(n))
            self._execute(n, actions, self._midway(), reply_to=(msg.sender, src))
            self._drive(n)
        elif kind == "print_done":
            nid, boot, job_id = data
            n = self.nodes[nid]
            if n.core is None or n.boot != boot or n.printing is None:
                return
            self._print_done(n, job_id)
            self._drive(n)
        elif kind == "freeze":
            n = self.nodes[data]
            if n.up and not self.calm:
                self.stats["freezes"] += 1
                n.frozen_until = self.T + rng.uniform(*self.cfg.freeze_time)
        elif kind == "image":
            n = self.nodes[data]
            if not n.gone:
                n.images = (n.images + [n.store.copy()])[-4:]
                self._at(self.T + rng.uniform(*self.cfg.snapshot_every), "image", data)
        elif kind == "clone":
            self._clone()
        elif kind == "unclone":
            n = self.nodes[data]
            n.gone = True
            n.core, n.printing = None, None
            self.printing_now.pop(n.key, None)
        elif kind == "crash":
            if not self.calm:
                self.nodes[data].frozen_until = 0.0
                self._crash(self.nodes[data])
        elif kind == "restart":
            n = self.nodes[data]
            if not n.up and not n.gone:
                self._boot(n)
        elif kind == "drain":
            n = self.nodes[data]
            live = sorted({m.id for m in self.nodes.values() if m.up and m.id != n.id and self._connected(m.key, n.key)})
            if n.core is None or self.calm or not live or n.printing is not None or not n.core.ready:
                return
            self.stats["drains"] += 1
            self._execute(n, n.core.drain(live, n.clock(self.T)))
            self._crash(n)  # graceful shutdown: the node goes away for a while
        elif kind == "partition":
            if self.calm:
                return
            for nid in self.group:
                self.group[nid] = rng.randint(0, 1)
            self._at(self.T + rng.uniform(*self.cfg.partition_time), "heal", None)
        elif kind == "heal":
            for nid in self.group:
                self.group[nid] = 0
        elif kind == "delete":
            homes = [(n, r) for n in self.nodes.values() if n.core and n.core.ready for r in n.core.records.values()
                     if n.core.is_home(r.id) and not r.tombstone]
            if homes and not self.calm:
                n, r = rng.choice(homes)
                self.deleted.add(r.id)
                assert n.core is not None
                self._execute(n, n.core.delete_job(r.id, n.clock(self.T)))
        elif kind == "adopt":
            self._adopt()
        elif kind == "submit":
            up = [n for n in self.nodes.values() if n.core is not None and n.core.ready]
            if up:
                self._submit(rng.choice(up))
            else:
                self._at(self.T + 1.0, "submit", None)
        elif kind == "calm":
            self.calm = True
            for n in self.nodes.values():
                if n.key != n.id:  # the user has found the cloned printer and switched it off
                    n.gone, n.core, n.printing = True, None, None
                    self.printing_now.pop(n.key, None)
            for nid in self.group:
                self.group[nid] = 0
            for n in self.nodes.values():
                if not n.up and not n.gone:
                    n.frozen_until = 0.0
                    self._boot(n)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def _adopt(self) -> None:
        """A user tells an up node to adopt the jobs of a crashed home. The user is assumed to
        look at current records: the adopter must have the newest epoch of each job it takes
        (two concurrent adoptions of one job are a user error the protocol cannot resolve)."""
        if self.calm:
            return
        up = [n for n in self.nodes.values() if n.core is not None and n.core.ready]
        if not up:
            return
        adopter = self.rng.choice(up)
        down = sorted({n.id for n in self.nodes.values() if not n.up and not n.gone and n.id != adopter.id} | (
            {n.id for n in self.nodes.values() if n.up and n.id != adopter.id and not self._connected(n.key, adopter.key)}
            if self.cfg.adopt_partitioned else set()))
        if not down:
            return
        gone = self.rng.choice(down)
        assert adopter.core is not None
        newest: dict[str, tuple[int, int]] = {}
        for n in self.nodes.values():
            for r in n.store.records.values():
                newest[r.id] = max(newest.get(r.id, (0, 0)), (r.epoch, 0))
        jobs = [r.id for r in adopter.core.records.values() if r.home == gone and not r.tombstone]
        if not jobs or any(adopter.core.records[j].epoch < newest[j][0] for j in jobs):
            return
        self.stats["adopts"] += 1
        self.adopted.update(jobs)
        self._execute(adopter, adopter.core.adopt(gone, adopter.clock(self.T)))

    def _clone(self) -> None:
        """Someone copies a running node's SD card into a second printer and switches it on."""
        if self.calm or any(n.key != n.id for n in self.nodes.values() if not n.gone):
            return  # one clone at a time
        originals = [n for n in self.nodes.values() if n.up and n.key == n.id]
        if not originals:
            return
        orig = self.rng.choice(originals)
        key = f"{orig.id}'{self.stats['clones']}"
        self.stats["clones"] += 1
        clone = SimNode(orig.id, self.rng.uniform(*self.cfg.rate_range), key=key, store=orig.store.copy())
        self.nodes[key] = clone
        self.group[key] = self.group[orig.key]
        self._boot(clone)
        self._at(self.T + self.rng.uniform(*self.cfg.clone_time), "unclone", key)

    def _midway(self) -> bool:
        return not self.calm and self.rng.random() < self.cfg.mid_crash_p

    # ------------------------------------------------------------------ running
    def quiescent(self) -> bool:
        if not self.calm or not all(n.up for n in self.nodes.values() if not n.gone):
            return False
        live_jobs = [j for j in self.requested if j not in self.deleted and not self._vanished(j)]
        for n in self.nodes.values():
            core = n.core
            if n.gone:
                continue
            assert core is not None
            if n.printing or core.holder.leases or core.holder.outbox or not core.ready:
                return False
            for j in live_jobs:
                r = core.records.get(j)
                if r is None or not r.done or r.lease_holder is not None:
                    return False
        cores = [n.core for n in self.nodes.values() if n.core is not None]
        return all(all(j in c.records for c in cores) and all(c.records[j] == cores[0].records[j] for c in cores)
                   for j in live_jobs)

    def _vanished(self, job_id: str) -> bool:
        """A job whose only copy was on a disk that went back to before it existed."""
        return job_id in self.forgotten and not any(job_id in n.store.records for n in self.nodes.values())

    def run(self) -> SimResult:
        self._chaos()
        limit = self.cfg.chaos_time + self.cfg.quiesce_limit
        try:
            while self._heap:
                T, _, kind, data = heapq.heappop(self._heap)
                self.T = T
                self.steps += 1
                self._step(kind, data)
                if self.calm and kind == "tick" and self.quiescent():
                    self._final_checks()
                    break
                if T > limit:
                    self._fail("S5/L2: no quiescence after healing: " + self._describe())
        except Violation:
            pass
        return SimResult(self.seed, self.violations, self.T, self.steps, dict(self.applied), self.conflicts,
                         self.stats)

    def _final_checks(self) -> None:
        for j, want in self.requested.items():
            if j in self.deleted or self._vanished(j):
                continue
            got = self.applied.get(j, 0)
            if got != want and not (j in self.adopted | self.forgotten and got > want):
                # After an adopt, an old home may have counted prints the adopter never saw:
                # those are extra prints, never fewer, and they must be reported as a conflict.
                self._fail(f"S5: {j} has {got} accepted completions, {want} requested")
            copies = [n.core.records[j] for n in self.nodes.values() if n.core is not None]
            if any(c != copies[0] for c in copies):
                self._fail(f"replication: copies of {j} differ after quiescence")
            if got > want and j not in self.forgotten and not any(c.kind is ConflictKind.DIVERGED for c in copies[0].conflicts):
                self._fail(f"L3: {j} was printed {got - want} extra times after an adopt, with no conflict shown")
            made = self.physical.get(j, 0)
            self.stats["extra_copies"] += max(0, made - want)
            shown = copies[0].conflicts
            if made > want and len(shown) < made - want and j not in self.forgotten and \
                    not any(c.kind is ConflictKind.DIVERGED for c in shown):
                self._fail(f"copies: {j} was printed {made} times for {want} requested, with "
                           f"{len(shown)} conflict(s) shown: {[c.kind.value for c in shown]}")
            for n in self.nodes.values():
                if n.gone:
                    continue
                assert n.core is not None
                r = n.core.records[j]
                if any(s.completed != s.count * r.count or s.remaining != 0 for s in r.sets):
                    self._fail(f"S5: {j} sets on {n.id} do not add up: {r.sets}")
        for n in self.nodes.values():
            if n.gone:
                continue
            assert n.core is not None
            if n.core.durable_state() != n.store:
                self._fail(f"durable_state() of {n.id} differs from what it persisted")

    def _describe(self) -> str:
        parts = []
        for n in self.nodes.values():
            if n.core is None:
                parts.append(f"{n.id}: down")
                continue
            leases = {j: (lease.phase.name, lease.printing) for j, lease in n.core.holder.leases.items()}
            parts.append(f"{n.id}: printing={n.printing} leases={leases} outbox={list(n.core.holder.outbox)}")
        for j in self.requested:
            recs = [(n.id, n.core.records[j].key, n.core.records[j].home, n.core.records[j].remaining,
                     n.core.records[j].lease_holder)
                    for n in self.nodes.values() if n.core and j in n.core.records]
            parts.append(f"{j}: applied={self.applied.get(j, 0)}/{self.requested[j]} {recs}")
        return "; ".join(parts)


def _left(r: JobRecord) -> int:
    """Prints still to do: the current run's remaining sets plus every later run."""
    per_run = sum(s.count for s in r.sets)
    if r.remaining <= 0:
        return 0
    return sum(s.remaining for s in r.sets) + (r.remaining - 1) * per_run


def run_seed(seed: int, config: SimConfig | None = None) -> SimResult:
    return Sim(seed, config).run()


