"""Stateful property test of the home's lease table against a simple model.

The model keeps, per token, the true time until which its grant may be live (grant or renewal
time + TTL), cut short only by the holder's release. Invariants: at most one live grant per job,
tokens strictly increase, the durable token never goes down, and (liveness) when the model is sure
the job is free and no lock-delay or restart window applies, an acquire is granted.

The same machine run against a table without the restart rule must fail: the test can fail.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from lanqueue.sync.home import Effect, HomeLeases
from lanqueue.sync.records import JobRecord, SetRecord, Timings

TIMINGS = Timings(ttl=10.0, renew_every=3.0, lock_delay=10.0)
HOLDERS = st.sampled_from(["a", "b", "c"])


def fresh_record() -> JobRecord:
    return JobRecord(id="j", queue="q", home="h", epoch=1, version=1, name="j", count=5, remaining=5,
                     sets=(SetRecord("f.gcode", 1, 1),))


class HomeLeaseMachine(RuleBasedStateMachine):
    table_cls: type[HomeLeases] = HomeLeases

    @initialize()
    def start(self) -> None:
        self.true = 0.0
        self.offset = 1000.0  # home clock = true time + offset (monotonic, restarts anywhere)
        self.durable = fresh_record()  # what is on disk: every changed record is persisted
        self.table = self.table_cls(TIMINGS)
        self.table.take(self.durable, self.now)
        self.reqs = {"a": 0, "b": 0, "c": 0}
        self.last_req: dict[str, int] = {}
        self.live: dict[int, tuple[str, float]] = {}  # token -> (holder, true live end)
        self.blocked_until = 0.0  # conservative: the model is sure the job is free after this
        self.max_token = 0

    @property
    def now(self) -> float:
        return self.true + self.offset

    def _persist(self, record: JobRecord) -> None:
        assert record.lease_token >= self.durable.lease_token, "S2: durable token went down"
        self.durable = record

    def _on_new_token(self, holder: str, regrant: bool) -> None:
        token = self.durable.lease_token
        assert token > self.max_token, "S2: tokens must strictly increase"
        for old, (h, end) in list(self.live.items()):
            if regrant and h == holder:
                del self.live[old]  # the holder itself gave up its old holding
                continue
            assert end <= self.true, f"S1: token {token} granted while {old} of {h} is live until {end}"
        self.max_token = token
        self.live[token] = (holder, self.true + TIMINGS.ttl)
        self.blocked_until = max(self.blocked_until, self.true + TIMINGS.ttl + TIMINGS.lock_delay)

    def _extend(self, holder: str) -> None:
        token = self.durable.lease_token
        h, _ = self.live.get(token, (holder, 0.0))
        assert h == holder
        self.live[token] = (holder, self.true + TIMINGS.ttl)
        self.blocked_until = max(self.blocked_until, self.true + TIMINGS.ttl + TIMINGS.lock_delay)

    @rule(holder=HOLDERS)
    def acquire(self, holder: str) -> None:
        self.reqs[holder] += 1
        req = self.reqs[holder]
        self.last_req[holder] = req
        must_grant = self.true >= self.blocked_until or self.durable.lease_holder is None
        d = self.table.acquire(self.durable, holder, self.now, req)
        if d.changed:
            self._persist(d.record)
        if d.effect in (Effect.GRANT, Effect.REGRANT):
            self._on_new_token(holder, d.effect is Effect.REGRANT)
        elif d.effect is Effect.EXTEND:
            self._extend(holder)
        else:
            assert not must_grant, f"L2: free job not granted ({d.effect})"

    @rule(holder=HOLDERS)
    def repeat_acquire(self, holder: str) -> None:
        """The network delivers the holder's last acquire again."""
        req = self.last_req.get(holder)
        if req is None:
            return
        d = self.table.acquire(self.durable, holder, self.now, req)
        if d.changed:
            self._persist(d.record)
        if d.effect in (Effect.GRANT, Effect.REGRANT):
            self._on_new_token(holder, d.effect is Effect.REGRANT)
        elif d.effect is Effect.EXTEND:
            self._extend(holder)

    @rule(holder=HOLDERS, stale=st.booleans())
    def renew(self, holder: str, stale: bool) -> None:
        token = self.durable.lease_token - (1 if stale else 0)
        d = self.table.renew(self.durable, holder, token, self.now)
        if d.changed:
            self._persist(d.record)
        if d.effect is Effect.EXTEND:
            assert not stale and self.durable.lease_holder == holder
            self._extend(holder)

    @rule(holder=HOLDERS, stale=st.booleans())
    def release(self, holder: str, stale: bool) -> None:
        token = self.durable.lease_token - (1 if stale else 0)
        d = self.table.release(self.durable, holder, token, self.now)
        if d.changed:
            self._persist(d.record)
        if d.effect is Effect.FREE:
            assert not stale
            self.live.pop(token, None)
            self.blocked_until = self.true

    @rule(dt=st.floats(min_value=0.0, max_value=15.0))
    def advance(self, dt: float) -> None:
        self.true += dt
        for job_id in self.table.due(self.now):
            d = self.table.deadline(self.durable, self.now)
            assert job_id == "j"
            if d.changed:
                self._persist(d.record)

    @rule(offset=st.floats(min_value=0.0, max_value=5000.0))
    def restart(self, offset: float) -> None:
        """Crash and restart: volatile state gone, the monotonic clock starts somewhere else."""
        self.offset = offset - self.true
        self.table = self.table_cls(TIMINGS)
        self.table.take(self.durable, self.now)
        if self.durable.lease_holder is not None:
            self.blocked_until = max(self.blocked_until, self.true + TIMINGS.ttl + TIMINGS.lock_delay)

    @invariant()
    def at_most_one_live_grant(self) -> None:
        if not hasattr(self, "live"):
            return
        live = [t for t, (_, end) in self.live.items() if end > self.true]
        assert len(live) <= 1, f"S1: live tokens {live}"

    @invariant()
    def table_agrees_with_record(self) -> None:
        if not hasattr(self, "table"):
            return
        if self.table.live_until("j", self.now) is not None:
            assert self.durable.lease_holder is not None


HomeLeaseMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
TestHomeLeases = HomeLeaseMachine.TestCase


class _NoRestartRule(HomeLeases):
    def restored_deadline(self, now: float) -> float:
        return now


class BrokenHomeLeaseMachine(HomeLeaseMachine):
    table_cls = _NoRestartRule


def test_machine_catches_a_table_without_the_restart_rule() -> None:
    with pytest.raises(AssertionError, match="S1"):
        run_state_machine_as_test(
            BrokenHomeLeaseMachine,
            settings=settings(max_examples=2000, stateful_step_count=40, deadline=None, database=None,
                              suppress_health_check=list(HealthCheck)),
        )
