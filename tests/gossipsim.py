"""A farm of N nodes in virtual time: SWIM membership (discovery/swim.py) and record
dissemination (sync/gossip.py), with crashed nodes and message loss. Deterministic per seed.

One round is one SWIM protocol period. Within a round every live node ticks its membership core
and the pings, ping-reqs and acks it sends are delivered at once (a LAN's round trip is far below
a period), each dropped with probability `loss`. Record pushes take one round per hop (so the
round count of a version's spread is a hop count), and every `ae_every` rounds each live node
runs one anti-entropy exchange (summary, then differing buckets) with one member.

`run()` answers: the round at which every live node had the record, the round at which every
live node knew every crashed node DEAD, live nodes wrongly believed dead at the end, and the
messages each live node sent per round (membership and records together).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from lanqueue.discovery.swim import Send, Status, Swim, SwimSettings
from lanqueue.sync import gossip

Version = tuple[int, int]


@dataclass
class SimNode:
    name: str
    swim: Swim
    fan: gossip.Fanout
    versions: dict[str, Version] = field(default_factory=dict)
    crashed: bool = False
    sent: int = 0  # record messages (pushes, anti-entropy requests and answers)


@dataclass
class Result:
    n: int
    spread_round: int | None  # the round every live node had the record
    dead_round: int | None  # the round every live node knew every crashed node dead
    false_dead: int  # (observer, live node) pairs wrongly believed DEAD at the end
    messages_per_node_round: float
    max_messages_node_round: float


def run(n: int, *, seed: int = 1, crashed: float = 0.05, loss: float = 0.01, rounds: int = 60,
        fanout: int = 3, ae_every: int = 2, settings: SwimSettings | None = None) -> Result:
    rng = random.Random(seed)
    names = [f"n{i:04d}" for i in range(n)]
    settings = settings or SwimSettings(period=1.0)
    nodes = {name: SimNode(name, Swim(name, name, 1, settings, random.Random(rng.random())),
                           gossip.Fanout(name, fanout, random.Random(rng.random()))) for name in names}
    for node in nodes.values():  # everyone was found by mDNS or static addresses
        for other in names:
            node.swim.join(other, other, 0.0)
    home = names[0]
    for name in rng.sample(names[1:], int(n * crashed)):
        nodes[name].crashed = True
    live = [x for x in nodes.values() if not x.crashed]
    dead_set = {x.name for x in nodes.values() if x.crashed}

    # the home writes a record at round 0 and pushes it
    record = ("job-1", (1, 1))
    nodes[home].versions[record[0]] = record[1]
    pushes: deque[tuple[str, str, str, Version]] = deque()  # (from, to, id, version) for next round
    for t in nodes[home].fan.push_targets(_members(nodes[home])):
        pushes.append((home, t, *record))
        nodes[home].sent += 1

    spread_round = dead_round = None
    for r in range(1, rounds + 1):
        # membership: one protocol period (a ping at its start, ping-reqs at the direct
        # timeout), each message delivered within the period
        for now in (float(r), r + settings.direct_timeout):
            inbox: deque[Send] = deque()
            for node in live:
                inbox.extend(a for a in node.swim.tick(now) if isinstance(a, Send))
            while inbox:
                send = inbox.popleft()
                target = nodes.get(send.to)
                if target is None or target.crashed or rng.random() < loss:
                    continue
                inbox.extend(a for a in target.swim.receive(send.message, now) if isinstance(a, Send))
        # records: last round's pushes arrive; a node that learns something new forwards it
        arriving, pushes = pushes, deque()
        for sender, to, job_id, version in arriving:
            target = nodes[to]
            if target.crashed or rng.random() < loss:
                continue
            if version > target.versions.get(job_id, (-1, -1)):
                target.versions[job_id] = version
                for t in target.fan.push_targets(_members(target), exclude=[sender]):
                    pushes.append((to, t, job_id, version))
                    target.sent += 1
        if r % ae_every == 0:
            for node in live:
                _anti_entropy(node, nodes, rng, loss)
        if spread_round is None and all(record[0] in x.versions for x in live):
            spread_round = r
        if dead_round is None and all(
                all(x.swim.status_of(d) == Status.DEAD for d in dead_set) for x in live):
            dead_round = r
        if spread_round is not None and dead_round is not None and r >= 30:
            break
    false_dead = sum(1 for x in live for y in live if x is not y and x.swim.status_of(y.name) == Status.DEAD)
    per = [(x.swim.sent + x.sent) / r for x in live]
    return Result(n, spread_round, dead_round, false_dead, sum(per) / len(per), max(per))


def _members(node: SimNode) -> list[str]:
    return list(node.swim.alive())


def _anti_entropy(node: SimNode, nodes: dict[str, SimNode], rng: random.Random, loss: float) -> None:
    """One push-pull exchange: summary -> differing buckets' entries -> the newer records."""
    partner_name = node.fan.partner(_members(node))
    if partner_name is None:
        return
    partner = nodes[partner_name]
    node.sent += 1
    if partner.crashed or rng.random() < loss:
        return
    buckets = gossip.differing(gossip.summary(partner.versions), gossip.summary(node.versions))
    partner.sent += 1
    if not buckets:
        return
    mine, theirs = gossip.entries(node.versions, buckets), gossip.entries(partner.versions, buckets)
    pull, push = gossip.compare(mine, theirs)
    node.sent += 1  # the entries of the differing buckets, with what the node has newer
    for job_id in pull:
        node.versions[job_id] = partner.versions[job_id]
    for job_id in push:
        partner.versions[job_id] = node.versions[job_id]
