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
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from lanqueue.sync.messages import (
    Action,
    CompletionApplied,
    ConflictRecorded,
    Event,
    GrantEnded,
    GrantLive,
    Persist,
    Send,
)
from lanqueue.sync.protocol import DurableState, LanNodeCore
from lanqueue.sync.records import ConflictKind, JobRecord, SetRecord, Timings, requested_prints

__all__ = ["SimConfig", "Sim", "SimResult", "Violation"]

SIM_TIMINGS = Timings(ttl=6.0, renew_every=2.0, lock_delay=6.0, retry_every=1.0, anti_entropy_every=2.0)


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
    #: Broken adapters, for tests that prove the checker catches them.
    send_before_persist: bool = False
    skip_grant_persist: bool = False


@dataclass
class SimNode:
    id: str
    rate: float
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
        self.nodes = {i: SimNode(i, self.rng.uniform(*cfg.rate_range)) for i in ids}
        self.group: dict[str, int] = {i: 0 for i in ids}  # partition side of each node
        # Checker state.
        self.grants: dict[str, dict[tuple[int, int], _Grant]] = {}  # job -> (home epoch, token) -> grant
        self.adopted: set[str] = set()
        self.applied: dict[str, int] = {}
        self.requested: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.conflicts = 0
        self.violations: list[str] = []
        self.stats = {"msgs": 0, "dropped": 0, "crashes": 0, "prints": 0, "drains": 0, "grants": 0, "adopts": 0}
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
        peers = [p for p in self.nodes if p != n.id]
        now = n.clock(self.T)
        if fresh:
            n.core = self.cfg.core_cls(n.id, "q", self.cfg.timings, peers)
            actions: list[Action] = []
        else:
            n.core, actions = self.cfg.core_cls.restore(n.id, "q", n.store.copy(), now, self.cfg.timings, peers)
        n.next_pick = self.T + self.rng.uniform(0.0, 1.0)
        self._at(self.T + self.rng.uniform(0.0, self.cfg.tick_every), "tick", (n.id, n.boot))
        self._execute(n, actions)

    def _crash(self, n: SimNode) -> None:
        if not n.up:
            return
        self.stats["crashes"] += 1
        n.core = None
        n.printing = None
        self._at(self.T + self.rng.uniform(*self.cfg.down_time), "restart", n.id)

    def _connected(self, a: str, b: str) -> bool:
        return self.group[a] == self.group[b]

    def _send(self, src: SimNode, s: Send) -> None:
        self.stats["msgs"] += 1
        cfg, rng = self.cfg, self.rng
        if not self._connected(src.id, s.to) or (not self.calm and rng.random() < cfg.drop):
            self.stats["dropped"] += 1
            return
        copies = 2 if (not self.calm and rng.random() < cfg.dup) else 1
        for _ in range(copies):
            if not self.calm and rng.random() < cfg.long_delay_p:
                d = rng.uniform(*cfg.long_delay)
            else:
                d = rng.uniform(*cfg.delay)
            self._at(self.T + d, "deliver", (src.id, s.to, s.message))

    # ------------------------------------------------------------------ executing actions
    def _execute(self, n: SimNode, actions: list[Action], crash_midway: bool = False) -> None:
        """Run one action list like an adapter would: persists, then events, then sends."""
        persists = [a for a in actions if isinstance(a, Persist)]
        events = [a for a in actions if isinstance(a, Event)]
        sends = [a for a in actions if isinstance(a, Send)]
        if self.cfg.send_before_persist:
            cut = self.rng.randint(0, len(sends)) if crash_midway else len(sends)
            for s in sends[:cut]:
                self._send(n, s)
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
            self._send(n, s)
        if crash_midway:
            self._crash(n)

    def _persist(self, n: SimNode, p: Persist, events: list[Event]) -> None:
        applied_jobs = [e.job_id for e in events if isinstance(e, CompletionApplied)]
        records = p.records
        if self.cfg.skip_grant_persist:
            # Broken adapter: does not write a record whose only news is a lease grant.
            records = tuple(r for r in records if not (
                r.id in n.store.records and r.home == n.id and r.lease_holder is not None
                and r.lease_token != n.store.records[r.id].lease_token))
        for r in records:
            prev = n.store.records.get(r.id)
            self._check_record_write(n, prev, r, applied_jobs)
        n.store.apply(Persist(records=records, held_put=p.held_put, held_delete=p.held_delete,
                              outbox_put=p.outbox_put, outbox_delete=p.outbox_delete,
                              next_seq=p.next_seq, boot=p.boot))

    def _check_record_write(self, n: SimNode, prev: JobRecord | None, r: JobRecord, applied_jobs: list[str]) -> None:
        if prev is not None and prev.key > r.key:
            self._fail(f"S4/replication: {n.id} overwrote {r.id} {prev.key} with older {r.key}")
        if r.done and not r.tombstone and r.id not in self.adopted and \
                self.applied.get(r.id, 0) + applied_jobs.count(r.id) != requested_prints(r):
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

    def _observe(self, n: SimNode, events: list[Event]) -> None:
        now = n.clock(self.T)
        for e in events:
            if isinstance(e, GrantLive):
                self._on_grant(n, e, self.T + (e.live_until - now) / n.rate)
            elif isinstance(e, GrantEnded):
                if e.released:  # the holder gave it back: it ends wherever it was inherited
                    for (_, tok), g in self.grants.get(e.job_id, {}).items():
                        if tok == e.token:
                            g.end = min(g.end, self.T)
            elif isinstance(e, CompletionApplied):
                epoch = self._epoch(n, e.job_id)
                latest = self._latest_token(e.job_id, epoch)
                if latest is not None and e.token != latest:
                    self._fail(f"S3: completion of {e.job_id} applied with token {e.token}, "
                               f"latest granted is {latest}")
                self.applied[e.job_id] = self.applied.get(e.job_id, 0) + 1
                if self.applied[e.job_id] > self.requested[e.job_id] and e.job_id not in self.adopted:
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
        return [(tok, g) for (ep, tok), g in self.grants.get(job_id, {}).items() if not same or ep == epoch]

    def _latest_token(self, job_id: str, epoch: int) -> int | None:
        toks = [tok for tok, g in self._rivals(job_id, epoch) if g.epoch <= epoch]
        return max(toks) if toks else None

    def _on_grant(self, n: SimNode, e: GrantLive, true_end: float) -> None:
        self.stats["grants"] += 1
        epoch = self._epoch(n, e.job_id)
        tokens = self.grants.setdefault(e.job_id, {})
        same_token = [g for (ep, tok), g in tokens.items() if tok == e.token]
        for prev in same_token:
            if prev.holder != e.holder:
                self._fail(f"S2: token {e.token} of {e.job_id} granted to {prev.holder} and {e.holder}")
        g: _Grant | None = tokens.get((epoch, e.token))
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
        if core is None or n.printing is not None:
            return
        now = n.clock(self.T)
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
                if not any(g.holder == n.id and g.start <= self.T < g.end for g in gs):
                    self._fail(f"S7: {n.id} starts {job_id} under token {lease.token} outside the home's grant {gs}")
                n.printing = (job_id, lease.token)
                self.stats["prints"] += 1
                self._at(self.T + self.rng.uniform(*self.cfg.print_time), "print_done", (n.id, n.boot, job_id))
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

    def _step(self, kind: str, data: Any) -> None:
        rng = self.rng
        if kind == "tick":
            nid, boot = data
            n = self.nodes[nid]
            if n.core is None or n.boot != boot:
                return
            self._execute(n, n.core.tick(n.clock(self.T)), self._midway())
            self._drive(n)
            self._at(self.T + self.cfg.tick_every * rng.uniform(0.8, 1.2) / n.rate, "tick", data)
        elif kind == "deliver":
            src, dst, msg = data
            n = self.nodes[dst]
            if n.core is None or not self._connected(src, dst):
                self.stats["dropped"] += 1
                return
            self._execute(n, n.core.handle(msg, n.clock(self.T)), self._midway())
            self._drive(n)
        elif kind == "print_done":
            nid, boot, job_id = data
            n = self.nodes[nid]
            if n.core is None or n.boot != boot or n.printing is None:
                return
            n.printing = None
            self._execute(n, n.core.report_complete(job_id, n.clock(self.T)), self._midway())
            self._drive(n)
        elif kind == "crash":
            if not self.calm:
                self._crash(self.nodes[data])
        elif kind == "restart":
            n = self.nodes[data]
            if not n.up:
                self._boot(n)
        elif kind == "drain":
            n = self.nodes[data]
            live = [p for p, m in self.nodes.items() if m.up and p != n.id and self._connected(p, n.id)]
            if n.core is None or self.calm or not live or n.printing is not None:
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
            homes = [(n, r) for n in self.nodes.values() if n.core for r in n.core.records.values()
                     if n.core.is_home(r.id) and not r.tombstone]
            if homes and not self.calm:
                n, r = rng.choice(homes)
                self.deleted.add(r.id)
                assert n.core is not None
                self._execute(n, n.core.delete_job(r.id, n.clock(self.T)))
        elif kind == "adopt":
            self._adopt()
        elif kind == "submit":
            up = [n for n in self.nodes.values() if n.up]
            if up:
                self._submit(rng.choice(up))
        elif kind == "calm":
            self.calm = True
            for nid in self.group:
                self.group[nid] = 0
            for n in self.nodes.values():
                if not n.up:
                    self._boot(n)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def _adopt(self) -> None:
        """A user tells an up node to adopt the jobs of a crashed home. The user is assumed to
        look at current records: the adopter must have the newest epoch of each job it takes
        (two concurrent adoptions of one job are a user error the protocol cannot resolve)."""
        if self.calm:
            return
        down = [n.id for n in self.nodes.values() if not n.up]
        up = [n for n in self.nodes.values() if n.up]
        if not down or not up:
            return
        gone = self.rng.choice(down)
        adopter = self.rng.choice(up)
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

    def _midway(self) -> bool:
        return not self.calm and self.rng.random() < self.cfg.mid_crash_p

    # ------------------------------------------------------------------ running
    def quiescent(self) -> bool:
        if not self.calm or not all(n.up for n in self.nodes.values()):
            return False
        live_jobs = [j for j in self.requested if j not in self.deleted]
        for n in self.nodes.values():
            core = n.core
            assert core is not None
            if n.printing or core.holder.leases or core.holder.outbox:
                return False
            for j in live_jobs:
                r = core.records.get(j)
                if r is None or not r.done or r.lease_holder is not None:
                    return False
        cores = [n.core for n in self.nodes.values() if n.core is not None]
        return all(all(j in c.records for c in cores) and all(c.records[j] == cores[0].records[j] for c in cores)
                   for j in self.requested)

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
            if j in self.deleted:
                continue
            got = self.applied.get(j, 0)
            if got != want and not (j in self.adopted and got > want):
                # After an adopt, an old home may have counted prints the adopter never saw:
                # those are extra prints, never fewer, and they must be reported as a conflict.
                self._fail(f"S5: {j} has {got} accepted completions, {want} requested")
            copies = [n.core.records[j] for n in self.nodes.values() if n.core is not None]
            if any(c != copies[0] for c in copies):
                self._fail(f"replication: copies of {j} differ after quiescence")
            if got > want and not any(c.kind is ConflictKind.DIVERGED for c in copies[0].conflicts):
                self._fail(f"L3: {j} was printed {got - want} extra times after an adopt, with no conflict shown")
            for n in self.nodes.values():
                assert n.core is not None
                r = n.core.records[j]
                if any(s.completed != s.count * r.count or s.remaining != 0 for s in r.sets):
                    self._fail(f"S5: {j} sets on {n.id} do not add up: {r.sets}")
        for n in self.nodes.values():
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


