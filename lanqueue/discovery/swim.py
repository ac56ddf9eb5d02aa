"""Membership whose cost per node does not grow with the farm: SWIM, as a pure core.

Every node heartbeating every other node costs each node O(N) messages per interval and the farm
O(N^2). SWIM (Das, Gupta, Motivala, 2002) keeps failure detection and membership spreading
O(1) per node per protocol period, whatever N:

- each period a node pings ONE member (round-robin over a shuffled list, so every member is
  probed within N periods and the expected wait is one period);
- without an ack by `direct_timeout` it asks `indirect` other members to ping the target for it
  (ping-req), so one lost packet or one bad link does not condemn a node;
- still no ack by the period's end: the target is SUSPECT, not dead; only after
  `suspect_periods` periods without news is it DEAD. A suspected node that hears of it refutes
  by raising its own incarnation number, which supersedes the suspicion everywhere;
- membership changes travel piggybacked on pings and acks (no extra messages): each change is
  sent `retransmit_mult x log2(N+1)` times, which reaches every node with high probability
  (epidemic spreading), then dropped.

Which news wins (the whole merge rule, one table): a higher incarnation always wins; at the same
incarnation DEAD beats SUSPECT beats ALIVE. A node that restarts comes back with a higher
incarnation (the adapter persists it), so a DEAD entry is left behind by a rejoin.

Like the other protocol cores this module does no I/O and reads no clock: the adapter feeds it
messages and the time (`now`, seconds on a monotonic clock) and performs the actions it returns.
Every table here is bounded (`max_members`, `max_piggyback`).
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from dataclasses import dataclass, field

__all__ = [
    "Status",
    "Update",
    "Ping",
    "Ack",
    "PingReq",
    "Message",
    "Send",
    "MemberChanged",
    "Action",
    "SwimSettings",
    "Swim",
    "supersedes",
]


class Status(enum.IntEnum):
    """A member's state; the order is the precedence at equal incarnation."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2


@dataclass(frozen=True)
class Update:
    """News about one member, gossiped piggyback: (node, status, incarnation, address)."""

    node: str
    status: Status
    incarnation: int
    addr: str = ""


def supersedes(new: Update, old: Update | None) -> bool:
    """Whether `new` replaces what is known (`old`) about a member: the merge rule of SWIM."""
    if old is None:
        return True
    if new.incarnation != old.incarnation:
        return new.incarnation > old.incarnation
    return new.status > old.status


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping:
    sender: str
    addr: str  # where the sender is reached (so a receiver can answer a member it did not know)
    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True)
class Ack:
    """`target` is the member that answered (for an ack relayed after a ping-req, not the relay)."""

    sender: str
    addr: str
    seq: int
    target: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True)
class PingReq:
    sender: str
    addr: str
    seq: int
    target: str
    updates: tuple[Update, ...] = ()


Message = Ping | Ack | PingReq


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    to: str
    addr: str
    message: Message


@dataclass(frozen=True)
class MemberChanged:
    node: str
    status: Status
    addr: str


Action = Send | MemberChanged


@dataclass(frozen=True)
class SwimSettings:
    period: float = 1.0
    direct_timeout: float = 0.4  # of a period: then ask others (ping-req)
    indirect: int = 3
    suspect_periods: int = 5  # a suspect is declared dead after this many periods (x log N)
    retransmit_mult: int = 3
    max_piggyback: int = 8
    max_gossip: int = 64  # news waiting to be piggybacked; past it the most-sent, oldest goes
    max_members: int = 4096
    dead_probe_every: int = 5  # every this many periods, ping one member believed DEAD


@dataclass
class _Probe:
    target: str
    seq: int
    started: float
    indirect_sent: bool = False
    acked: bool = False


@dataclass
class _Relay:
    """A ping we send for someone else's ping-req: its ack goes back to `requester`."""

    requester: str
    requester_seq: int
    target: str
    expires: float


@dataclass
class Swim:
    """One node's membership view. Feed `receive(message, now)` and `tick(now)`; send what the
    returned `Send` actions say; `MemberChanged` tells the rest of the node."""

    me: str
    addr: str
    incarnation: int
    settings: SwimSettings = field(default_factory=SwimSettings)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.members: dict[str, Update] = {}
        self._since: dict[str, float] = {}  # when a member became SUSPECT
        self._gossip: dict[str, tuple[Update, int, int]] = {}  # node -> (news, times sent, when queued)
        self._queued = 0
        self._order: list[str] = []
        self._seq = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._next_period = float("-inf")
        self._periods = 0
        self.leaving = False
        self.sent = 0  # messages sent, for the simulator's and bench's per-node cost
        self._queue_gossip(Update(self.me, Status.ALIVE, self.incarnation, self.addr))

    # --- what others ask ------------------------------------------------------------------

    def alive(self) -> dict[str, str]:
        """Members believed up (ALIVE or SUSPECT) -> address."""
        return {n: u.addr for n, u in self.members.items() if u.status != Status.DEAD}

    def status_of(self, node: str) -> Status | None:
        u = self.members.get(node)
        return None if u is None else u.status

    # --- inputs ---------------------------------------------------------------------------

    def join(self, node: str, addr: str, now: float) -> list[Action]:
        """A member found by mDNS or a static address: ALIVE at incarnation 0 unless known."""
        if node == self.me or node in self.members:
            return []
        return self._apply(Update(node, Status.ALIVE, 0, addr), now)

    def leave(self, node: str, now: float) -> list[Action]:
        """A member said goodbye (an mDNS goodbye, a clean shutdown): DEAD at the incarnation
        known, so that its restart (a higher incarnation) is news again."""
        u = self.members.get(node)
        if u is None or u.status == Status.DEAD:
            return []
        return self._apply(Update(node, Status.DEAD, u.incarnation, u.addr), now)

    def farewell(self) -> list[Action]:
        """This node is leaving (a clean shutdown): tell every member now, one ping each carrying
        its own death, instead of letting each find out by failed probes. Once per life."""
        gone = (Update(self.me, Status.DEAD, self.incarnation, self.addr),)
        self.leaving = True  # and never refute it: an echo of this news must not revive us
        self._seq += 1
        return [self._send(n, Ping(self.me, self.addr, self._seq, gone))
                for n, u in self.members.items() if u.status != Status.DEAD]

    def receive(self, message: Message, now: float) -> list[Action]:
        actions: list[Action] = []
        for u in message.updates:
            actions += self._apply(u, now)
        if message.sender != self.me and message.sender not in self.members:
            actions += self.join(message.sender, message.addr, now)  # a member we had not heard of
        if isinstance(message, Ping):
            news = self._verdict(message.sender) + self._piggyback()
            actions.append(self._send(message.sender, Ack(self.me, self.addr, message.seq, self.me, news)))
        elif isinstance(message, PingReq):
            actions += self._relay(message, now)
        else:
            actions += self._on_ack(message)
        return actions

    def tick(self, now: float) -> list[Action]:
        if self.leaving:
            return []
        actions: list[Action] = []
        probe = self._probe
        if probe is not None and not probe.acked and not probe.indirect_sent and \
                now >= probe.started + self.settings.direct_timeout * self.settings.period:
            actions += self._ask_others(probe)
        if now >= self._next_period:
            actions += self._end_period(now)
            actions += self._start_period(now)
        actions += self._expire_suspects(now)
        for seq in [s for s, r in self._relays.items() if r.expires <= now]:
            del self._relays[seq]
        return actions

    # --- the protocol period ----------------------------------------------------------------

    def _start_period(self, now: float) -> list[Action]:
        self._next_period = now + self.settings.period
        self._periods += 1
        actions = self._probe_dead() if self._periods % self.settings.dead_probe_every == 0 else []
        target = self._next_target()
        if target is None:
            self._probe = None
            return actions
        self._seq += 1
        self._probe = _Probe(target, self._seq, now)
        return actions + [self._send(target, Ping(self.me, self.addr, self._seq, self._piggyback()))]

    def _probe_dead(self) -> list[Action]:
        """Ping one member believed DEAD, telling it so. A partition that healed (a cable put
        back) would otherwise never heal in the views: nobody probes the dead. A live one
        refutes with a higher incarnation; a dead one costs one unanswered ping."""
        dead = [n for n, u in self.members.items() if u.status == Status.DEAD]
        if not dead:
            return []
        node = self.rng.choice(dead)
        self._seq += 1
        return [self._send(node, Ping(self.me, self.addr, self._seq, self._verdict(node) + self._piggyback()))]

    def _verdict(self, node: str) -> tuple[Update, ...]:
        """What we believe of `node` if it is DEAD, to send to it: a node hears that it was
        declared dead (the news may have stopped travelling long ago) and refutes."""
        u = self.members.get(node)
        return (u,) if u is not None and u.status == Status.DEAD else ()

    def _end_period(self, now: float) -> list[Action]:
        probe, self._probe = self._probe, None
        if probe is None or probe.acked:
            return []
        known = self.members.get(probe.target)
        if known is None or known.status != Status.ALIVE:
            return []
        return self._apply(Update(probe.target, Status.SUSPECT, known.incarnation, known.addr), now)

    def _ask_others(self, probe: _Probe) -> list[Action]:
        probe.indirect_sent = True
        helpers = [n for n, u in self.members.items() if u.status == Status.ALIVE and n != probe.target]
        chosen = self.rng.sample(helpers, min(self.settings.indirect, len(helpers)))
        return [self._send(h, PingReq(self.me, self.addr, probe.seq, probe.target, self._piggyback())) for h in chosen]

    def _relay(self, req: PingReq, now: float) -> list[Action]:
        target = self.members.get(req.target)
        if target is None or req.target == self.me:
            return []
        self._seq += 1
        self._relays[self._seq] = _Relay(req.sender, req.seq, req.target, now + self.settings.period)
        return [self._send(req.target, Ping(self.me, self.addr, self._seq, self._piggyback()))]

    def _on_ack(self, ack: Ack) -> list[Action]:
        probe = self._probe
        if probe is not None and ack.seq == probe.seq and ack.target == probe.target:
            probe.acked = True
            return []
        relay = self._relays.pop(ack.seq, None)
        if relay is not None and ack.target == relay.target:
            return [self._send(relay.requester, Ack(self.me, self.addr, relay.requester_seq, relay.target, self._piggyback()))]
        return []

    def _next_target(self) -> str | None:
        """Round-robin over a shuffled list of members not known dead (reshuffled each pass)."""
        for _ in range(2):
            while self._order:
                node = self._order.pop()
                u = self.members.get(node)
                if u is not None and u.status != Status.DEAD:
                    return node
            self._order = [n for n, u in self.members.items() if u.status != Status.DEAD]
            self.rng.shuffle(self._order)
        return None

    def _expire_suspects(self, now: float) -> list[Action]:
        limit = self.settings.suspect_periods * self.settings.period * max(1.0, math.log2(len(self.members) + 1) / 2)
        actions: list[Action] = []
        for node, since in list(self._since.items()):
            u = self.members.get(node)
            if u is None or u.status != Status.SUSPECT:
                del self._since[node]
            elif now - since >= limit:
                actions += self._apply(Update(node, Status.DEAD, u.incarnation, u.addr), now)
        return actions

    # --- news ---------------------------------------------------------------------------------

    def _apply(self, news: Update, now: float) -> list[Action]:
        if news.node == self.me:
            return self._about_me(news)
        old = self.members.get(news.node)
        if not supersedes(news, old):
            return []
        if old is None and len(self.members) >= self.settings.max_members:
            return []  # bounded: a flood of invented members cannot grow the table
        addr = news.addr or (old.addr if old else "")
        news = Update(news.node, news.status, news.incarnation, addr)
        self.members[news.node] = news
        if news.status == Status.SUSPECT:
            self._since.setdefault(news.node, now)
        else:
            self._since.pop(news.node, None)
        self._queue_gossip(news)
        if old is not None and old.status == news.status:
            return []
        return [MemberChanged(news.node, news.status, addr)]

    def _about_me(self, news: Update) -> list[Action]:
        """Refute a suspicion (or a death) of this node by raising its incarnation."""
        if news.status != Status.ALIVE and news.incarnation >= self.incarnation and not self.leaving:
            self.incarnation = news.incarnation + 1
            self._queue_gossip(Update(self.me, Status.ALIVE, self.incarnation, self.addr))
        return []

    def _queue_gossip(self, news: Update) -> None:
        self._queued += 1
        self._gossip[news.node] = (news, 0, self._queued)
        if len(self._gossip) > self.settings.max_gossip:
            stale = max(self._gossip.items(), key=lambda kv: (kv[1][1], -kv[1][2]))[0]
            del self._gossip[stale]

    def _piggyback(self) -> tuple[Update, ...]:
        """Up to `max_piggyback` pieces of news, least sent first and, among those, newest
        first (a suspicion or its refutation never waits behind a backlog of old joins); each is
        sent retransmit_mult x log2(N+1) times, then dropped."""
        limit = self.settings.retransmit_mult * max(1, math.ceil(math.log2(len(self.members) + 2)))
        chosen = heapq.nsmallest(self.settings.max_piggyback, self._gossip.items(),
                                 key=lambda kv: (kv[1][1], -kv[1][2]))
        out = []
        for node, (news, times, queued) in chosen:
            out.append(news)
            if times + 1 >= limit:
                del self._gossip[node]
            else:
                self._gossip[node] = (news, times + 1, queued)
        return tuple(out)

    def _send(self, to: str, message: Message) -> Send:
        self.sent += 1
        member = self.members.get(to)
        return Send(to, member.addr if member else "", message)
